//! Real CFEngine hosts on loopback for the cfengine tests (Debian's cfengine3; .ci/run
//! installs it). Each simulated host has its own CFEngine work dir
//! (`CFENGINE_TEST_OVERRIDE_WORKDIR`, CFEngine's own test hook) with keys made by `cf-key`
//! and trust set by `cf-key -t`. The agent runs one policy file with `-K -f`; the server
//! runs in the foreground (`-F`) on its own loopback address and a free port and is killed
//! by PID when dropped. No failsafe policy can start a daemon: each work dir has
//! `cf-promises` for validation and an `inputs/failsafe.cf` that only reports.

use super::{without_baton_env, Cmd, Run, TestDir};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What a policy that failed validation runs instead of CFEngine's built-in failsafe
/// (which would try to start cf-execd and cf-serverd).
const FAILSAFE: &str = r#"body common control { bundlesequence => { "main" }; }
bundle agent main { reports: "FAILSAFE: the test policy did not validate"; }
"#;

/// Whether cf-serverd is installed. Outside CI a missing CFEngine skips the test (with a
/// note); in CI (CI=true) it fails it, since .ci/run installs cfengine3.
pub fn available() -> bool {
    let found = Command::new("cf-serverd")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "cf-serverd is not installed: apt-get install cfengine3 (.ci/run does)"
        );
        eprintln!("skipped: cf-serverd is not installed (apt-get install cfengine3)");
    }
    found
}

/// A free port on `ip` (the kernel picks it; cf-serverd binds it right after).
pub fn free_port(ip: &str) -> u16 {
    std::net::TcpListener::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A simulated CFEngine host: a work dir with its own key pair.
pub struct CfHost {
    pub dir: TestDir,
    pub ip: String,
}

impl CfHost {
    pub fn new(label: &str, ip: &str) -> CfHost {
        let dir = TestDir::new(label);
        let host = CfHost {
            dir,
            ip: ip.to_string(),
        };
        let work = host.work();
        for sub in ["bin", "inputs"] {
            std::fs::create_dir_all(work.join(sub)).unwrap();
        }
        let promises = which("cf-promises");
        std::os::unix::fs::symlink(promises, work.join("bin/cf-promises")).unwrap();
        std::fs::write(work.join("inputs/failsafe.cf"), FAILSAFE).unwrap();
        host.cf("cf-key").run().status(0);
        assert!(host.public_key().exists(), "cf-key made no key");
        host
    }

    /// The CFEngine work dir (BATON_CFENGINE_WORKDIR for Baton binaries on this host).
    pub fn work(&self) -> PathBuf {
        self.dir.join("work")
    }

    pub fn public_key(&self) -> PathBuf {
        self.work().join("ppkeys/localhost.pub")
    }

    /// A CFEngine command acting on this host's work dir, in its directory.
    pub fn cf(&self, program: &str) -> Cmd {
        let mut cmd = Command::new(program);
        without_baton_env(&mut cmd);
        cmd.env("CFENGINE_TEST_OVERRIDE_WORKDIR", self.work())
            .current_dir(&self.dir.path)
            .stdin(Stdio::null());
        Cmd { cmd, stdin: None }
    }

    /// Trust `other`'s key as the key of a peer at `ip` (`cf-key -t IP:FILE`).
    pub fn trust(&self, other: &CfHost, ip: &str) {
        self.cf("cf-key")
            .arg("-t")
            .arg(format!("{ip}:{}", other.public_key().display()))
            .run()
            .status(0);
    }

    /// Run `cf-agent -K -f POLICY` once; the run, asserted not to have fallen back to the
    /// failsafe policy.
    pub fn agent(&self, name: &str, policy: &str) -> Run {
        let file = self.dir.join(format!("{name}.cf"));
        std::fs::write(&file, policy).unwrap();
        let run = self.cf("cf-agent").arg("-K").arg("-f").arg(&file).run();
        assert!(
            !run.stdout().contains("FAILSAFE") && !run.stderr().contains("failsafe"),
            "the policy did not validate\n{policy}\n{}\n{}",
            run.stdout(),
            run.stderr()
        );
        run
    }

    /// Start cf-serverd on this host's address and a free port, with `access` as the body
    /// of its `access:` promises and `control` added to `body server control`; waits
    /// (bounded) until it accepts connections.
    pub fn serve(&self, access: &str, control: &str) -> CfServer {
        let port = free_port(&self.ip);
        let policy = format!(
            r#"body common control {{ bundlesequence => {{ "main" }}; }}
bundle agent main {{ }}
body server control
{{
  port => "{port}";
  bindtointerface => "{ip}";
  allowconnects => {{ "127.0.0.0/8" }};
  allowallconnects => {{ "127.0.0.0/8" }};
  {control}
}}
bundle server access
{{
  access:
{access}
}}
"#,
            ip = self.ip
        );
        let file = self.dir.join(format!("server-{port}.cf"));
        std::fs::write(&file, policy).unwrap();
        let log = self.dir.join(format!("serverd-{port}.log"));
        let mut cmd = Command::new("cf-serverd");
        without_baton_env(&mut cmd);
        let child = cmd
            .args(["-F", "-f"])
            .arg(&file)
            .env("CFENGINE_TEST_OVERRIDE_WORKDIR", self.work())
            .current_dir(&self.dir.path)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::from(
                std::fs::OpenOptions::new().append(true).open(&log).unwrap(),
            ))
            .spawn()
            .expect("cf-serverd runs");
        let mut server = CfServer {
            child,
            addr: format!("{}:{port}", self.ip),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if std::net::TcpStream::connect(&server.addr).is_ok() {
                break;
            }
            let exited = server.child.try_wait().unwrap();
            assert!(
                exited.is_none() && Instant::now() < deadline,
                "cf-serverd did not start on {} ({exited:?}):\n{}",
                server.addr,
                server.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            !server.log_text().contains("failsafe"),
            "cf-serverd fell back to failsafe:\n{}",
            server.log_text()
        );
        server
    }
}

fn which(program: &str) -> PathBuf {
    [
        "/usr/bin",
        "/usr/sbin",
        "/bin",
        "/usr/local/bin",
        "/var/lib/cfengine3/bin",
    ]
    .iter()
    .map(|d| Path::new(d).join(program))
    .find(|p| p.exists())
    .unwrap_or_else(|| panic!("{program} not found"))
}

/// A running cf-serverd, killed by PID when dropped.
pub struct CfServer {
    pub child: Child,
    /// `IP:PORT`.
    pub addr: String,
    pub log: PathBuf,
}

impl CfServer {
    /// The target that asks it: `cfengine://IP:PORT`.
    pub fn url(&self) -> String {
        format!("cfengine://{}", self.addr)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for CfServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
