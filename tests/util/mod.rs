//! The test fixture: a fresh directory per test, commands with a clean environment, and
//! output assertions that dump everything on failure.

#![allow(dead_code)]

pub mod cfengine;
pub mod cluster;
pub mod etcd;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

thread_local! {
    /// Where this test's binaries come from, when not from the build (the package test
    /// runs the installed ones). Per thread, so parallel tests never see it.
    static BIN_DIR: std::cell::RefCell<Option<PathBuf>> = const { std::cell::RefCell::new(None) };
}

/// Take every Baton binary (and `bin()`'s directory on PATH) from `dir`, or from the
/// build again with `None`.
pub fn use_bin_dir(dir: Option<PathBuf>) {
    BIN_DIR.with(|d| *d.borrow_mut() = dir);
}

/// The path of a built Baton binary (or of an installed one: [`use_bin_dir`]).
pub fn bin(name: &str) -> PathBuf {
    if let Some(dir) = BIN_DIR.with(|d| d.borrow().clone()) {
        return dir.join(name);
    }
    let path = match name {
        "baton-classes" => env!("CARGO_BIN_EXE_baton-classes"),
        "baton-if" => env!("CARGO_BIN_EXE_baton-if"),
        "baton-signal" => env!("CARGO_BIN_EXE_baton-signal"),
        "baton-run" => env!("CARGO_BIN_EXE_baton-run"),
        "baton-serve" => env!("CARGO_BIN_EXE_baton-serve"),
        "baton-query" => env!("CARGO_BIN_EXE_baton-query"),
        "baton-promise" => env!("CARGO_BIN_EXE_baton-promise"),
        "baton-gen" => env!("CARGO_BIN_EXE_baton-gen"),
        "baton-key" => env!("CARGO_BIN_EXE_baton-key"),
        other => panic!("unknown binary {other}"),
    };
    PathBuf::from(path)
}

/// A scratch directory, removed when dropped.
pub struct TestDir {
    pub path: PathBuf,
}

impl TestDir {
    pub fn new(label: &str) -> TestDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "baton-test-{label}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        TestDir { path }
    }

    pub fn join(&self, p: impl AsRef<Path>) -> PathBuf {
        self.path.join(p)
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Drop every inherited `BATON_*` variable, so a developer's environment cannot leak in.
pub fn without_baton_env(cmd: &mut Command) {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("BATON_") {
            cmd.env_remove(&key);
        }
    }
}

/// A command for a Baton binary with no inherited `BATON_*` variables and `TZ=UTC`.
pub fn baton(name: &str) -> Cmd {
    let mut cmd = Command::new(bin(name));
    without_baton_env(&mut cmd);
    cmd.env("TZ", "UTC").stdin(Stdio::null());
    Cmd { cmd, stdin: None }
}

pub struct Cmd {
    pub cmd: Command,
    stdin: Option<Vec<u8>>,
}

impl Cmd {
    /// Any command, run with the same bounds and assertions as a Baton binary.
    pub fn of(cmd: Command) -> Cmd {
        Cmd { cmd, stdin: None }
    }

    pub fn args<I, S>(mut self, args: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.cmd.args(args);
        self
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Cmd {
        self.cmd.arg(arg);
        self
    }

    pub fn env(mut self, key: &str, value: impl AsRef<OsStr>) -> Cmd {
        self.cmd.env(key, value);
        self
    }

    pub fn stdin(mut self, input: impl Into<Vec<u8>>) -> Cmd {
        self.stdin = Some(input.into());
        self
    }

    /// Run to completion (bounded: a test binary that hangs is killed after 60 s).
    pub fn run(mut self) -> Run {
        let described = format!("{:?}", self.cmd);
        if self.stdin.is_some() {
            self.cmd.stdin(Stdio::piped());
        }
        self.cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = self
            .cmd
            .spawn()
            .unwrap_or_else(|e| panic!("{described}: {e}"));
        if let Some(input) = self.stdin.take() {
            let mut pipe = child.stdin.take().unwrap();
            std::thread::spawn(move || {
                use std::io::Write;
                let _ = pipe.write_all(&input);
            });
        }
        wait_child(&mut child, Duration::from_secs(60), &described);
        let output = child.wait_with_output().unwrap();
        Run { described, output }
    }
}

/// One simulated host: a state dir and a host name, passed as BATON_STATE_DIR and
/// BATON_HOST so that every binary and every job it runs acts as that host.
pub struct Host {
    pub name: String,
    pub dir: TestDir,
}

impl Host {
    pub fn new(name: &str) -> Host {
        Host {
            name: name.to_string(),
            dir: TestDir::new(name),
        }
    }

    pub fn state(&self) -> PathBuf {
        self.dir.join("state")
    }

    /// A Baton command acting as this host at `at` (any TIME form).
    pub fn at(&self, bin: &str, at: &str) -> Cmd {
        let mut cmd = baton(bin)
            .env("BATON_STATE_DIR", self.state())
            .env("BATON_HOST", &self.name)
            .env("BATON_NOW", at);
        // In the host's own directory: whatever a job writes stays out of the checkout.
        cmd.cmd.current_dir(&self.dir.path);
        cmd
    }

    /// `sh -c SCRIPT` in this host's directory, with the Baton binaries on PATH and the
    /// host's identity and clock in the environment, as a crontab line runs.
    pub fn sh(&self, at: &str, script: &str) -> Cmd {
        let bins = bin("baton-if").parent().unwrap().to_path_buf();
        let mut cmd = Command::new("sh");
        without_baton_env(&mut cmd);
        cmd.arg("-c")
            .arg(script)
            .current_dir(&self.dir.path)
            .env(
                "PATH",
                format!(
                    "{}:{}:/usr/bin:/bin",
                    bins.display(),
                    repo().join("bin").display()
                ),
            )
            .env("TZ", "UTC")
            .env("BATON_STATE_DIR", self.state())
            .env("BATON_HOST", &self.name)
            .env("BATON_NOW", at)
            .stdin(Stdio::null());
        Cmd { cmd, stdin: None }
    }
}

impl Host {
    /// Set this host's server clock (the file its baton-serve reads as BATON_NOW),
    /// replaced whole so the server never reads half a time.
    pub fn set_clock(&self, at: &str) {
        let tmp = self.dir.join("now.tmp");
        std::fs::write(&tmp, at).unwrap();
        std::fs::rename(&tmp, self.dir.join("now")).unwrap();
    }

    /// Start `baton-serve` for this host on `ip` (without a port, the kernel picks one), with
    /// `access` as its access file, its clock read from the host's clock file.
    pub fn serve(&self, ip: &str, access: &str, extra: &[&str]) -> Server {
        self.serve_under(&[], ip, access, extra)
    }

    /// This host's identity as `baton-key new NAME --out DIR` writes it: the certificate
    /// and the private key.
    pub fn identity(&self) -> (PathBuf, PathBuf) {
        (
            self.dir.join(format!("{}.crt", self.name)),
            self.dir.join(format!("{}.key", self.name)),
        )
    }

    /// `serve`, with baton-serve run by a wrapper that execs it (`prlimit --nofile=N:N`),
    /// so that the process's id is the server's.
    pub fn serve_under(&self, wrapper: &[&str], ip: &str, access: &str, extra: &[&str]) -> Server {
        std::fs::write(self.dir.join("access"), access).unwrap();
        if !self.dir.join("now").exists() {
            self.set_clock("2012-01-24T16:47:00Z");
        }
        let log = self.dir.join("serve.log");
        let mut cmd = match wrapper {
            [] => Command::new(bin("baton-serve")),
            [program, args @ ..] => {
                let mut cmd = Command::new(program);
                cmd.args(args).arg(bin("baton-serve"));
                cmd
            }
        };
        without_baton_env(&mut cmd);
        // An address without a port gets one the kernel picks.
        let listen = match ip.contains(':') {
            true => ip.to_string(),
            false => format!("{ip}:0"),
        };
        cmd.args(["--listen", &listen, "--access"])
            .arg(self.dir.join("access"))
            .args(extra)
            .current_dir(&self.dir.path)
            .env("BATON_STATE_DIR", self.state())
            .env("BATON_HOST", &self.name)
            .env("BATON_NOW", self.dir.join("now"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap());
        let mut child = cmd.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            let mut line = String::new();
            let _ = std::io::BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(20)).unwrap_or_default();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .map(str::to_string);
        let server = Server {
            child,
            addr: addr.clone().unwrap_or_default(),
            log,
        };
        assert!(
            addr.is_some(),
            "baton-serve did not start: {:?}\n{}",
            line,
            server.log_text()
        );
        server
    }
}

/// A running baton-serve, killed when dropped.
pub struct Server {
    pub child: std::process::Child,
    pub addr: String,
    pub log: PathBuf,
}

impl Server {
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether the server process is still running.
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A finished command.
pub struct Run {
    pub described: String,
    pub output: Output,
}

impl Run {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    pub fn code(&self) -> i32 {
        self.output.status.code().unwrap_or(-1)
    }

    pub fn lines(&self) -> Vec<String> {
        self.stdout().lines().map(str::to_string).collect()
    }

    fn dump(&self) -> String {
        format!(
            "command: {}\nstatus: {:?}\nstdout:\n{}\nstderr:\n{}",
            self.described,
            self.output.status,
            self.stdout(),
            self.stderr()
        )
    }

    /// Assert the exit status.
    pub fn status(self, want: i32) -> Run {
        assert_eq!(self.code(), want, "wrong exit status\n{}", self.dump());
        self
    }

    /// Assert exit 2 with exactly one line on stderr, naming the binary and containing `part`.
    pub fn error(self, bin: &str, part: &str) -> Run {
        self.status(2).says(bin, part)
    }

    /// Assert exactly one line on stderr, naming the binary and containing `part`.
    pub fn says(self, bin: &str, part: &str) -> Run {
        let run = self;
        let err = run.stderr();
        assert_eq!(
            err.lines().count(),
            1,
            "want one error line\n{}",
            run.dump()
        );
        assert!(
            err.starts_with(&format!("{bin}: ")),
            "error must name {bin}\n{}",
            run.dump()
        );
        assert!(
            err.contains(part),
            "error should mention {part:?}\n{}",
            run.dump()
        );
        assert!(
            !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
            "{}",
            run.dump()
        );
        run
    }

    pub fn stdout_has(self, line: &str) -> Run {
        assert!(
            self.lines().iter().any(|l| l == line),
            "stdout lacks line {line:?}\n{}",
            self.dump()
        );
        self
    }

    pub fn stdout_lacks(self, line: &str) -> Run {
        assert!(
            !self.lines().iter().any(|l| l == line),
            "stdout has line {line:?}\n{}",
            self.dump()
        );
        self
    }

    pub fn stdout_is(self, want: &str) -> Run {
        assert_eq!(self.stdout(), want, "\n{}", self.dump());
        self
    }

    pub fn stderr_is(self, want: &str) -> Run {
        assert_eq!(self.stderr(), want, "\n{}", self.dump());
        self
    }
}

/// Whether process `pid` (as text, as a pid file holds it) is alive and not a zombie.
pub fn process_alive(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())) {
        Ok(stat) => {
            stat.rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().next())
                != Some("Z")
        }
        Err(_) => false,
    }
}

/// `openssl ARGS` in `dir`; its stdout. The TLS tests make their certificates with it.
pub fn openssl(args: &[&str], dir: &Path) -> String {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stderr(Stdio::null())
        .output()
        .expect("openssl is installed (.ci/run installs it)");
    assert!(out.status.success(), "openssl {args:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// openssl arguments for a new unencrypted P-256 key.
pub const EC_KEY: [&str; 5] = [
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
];

/// Wait for `child` at most `limit`; kill it and fail the test past that.
pub fn wait_child(child: &mut std::process::Child, limit: Duration, what: &str) {
    let deadline = Instant::now() + limit;
    let mut pause = Duration::from_millis(1);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {limit:?}");
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// Poll `check` until it returns true or `limit` passes; panics with `what` on time-out.
pub fn wait_until(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    let mut pause = Duration::from_millis(5);
    while !check() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// Read an HTTP head (request or answer) off `conn`, up to its blank line or the end.
pub fn read_head(conn: &mut impl std::io::Read) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).unwrap_or(0) == 1 {
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}
