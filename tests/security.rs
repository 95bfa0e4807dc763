//! A hostile local user against root's state dir (docs/security.md): each attack of
//! issue 13 tried for real, as root, with a second, unprivileged user the test creates
//! (`baton-test-intruder`) and removes, and each refused with nothing written outside
//! the state dir.

use crate::util::{baton, bin, process_alive, Cmd, Host, Run, TestDir};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const INTRUDER: &str = "baton-test-intruder";
const T0: &str = "2012-01-24T16:45:00Z";

fn is_root() -> bool {
    fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// The second user, created for the test and removed when dropped. Tests that use it
/// take turns (a lock file), as they create and remove the same user.
struct Intruder {
    uid: u32,
    gid: u32,
    /// Copies of the binaries it runs, where it may execute them.
    bins: TestDir,
    _turn: fs::File,
}

impl Intruder {
    fn new() -> Option<Intruder> {
        if !is_root() {
            println!("skipped: a second user needs root (CI runs the suite as root)");
            return None;
        }
        let turn = fs::File::create(std::env::temp_dir().join("baton-test-intruder.lock")).unwrap();
        let deadline = Instant::now() + Duration::from_secs(300);
        while turn.try_lock().is_err() {
            assert!(
                Instant::now() < deadline,
                "another test kept {INTRUDER} for 300s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // A leftover of a killed run goes first.
        let _ = Command::new("userdel").arg(INTRUDER).output();
        let out = Command::new("useradd")
            .args(["--system", "--user-group", "--no-create-home"])
            .args(["--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin"])
            .arg(INTRUDER)
            .output()
            .expect("useradd is installed (.ci/run installs passwd)");
        assert!(
            out.status.success(),
            "useradd: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let id = |flag: &str| -> u32 {
            let out = Command::new("id").args([flag, INTRUDER]).output().unwrap();
            String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
        };
        let bins = TestDir::new("intruder-bins");
        fs::set_permissions(&bins.path, fs::Permissions::from_mode(0o755)).unwrap();
        for name in ["baton-signal", "baton-run", "baton-serve", "baton-if"] {
            fs::copy(bin(name), bins.join(name)).unwrap();
        }
        Some(Intruder {
            uid: id("-u"),
            gid: id("-g"),
            bins,
            _turn: turn,
        })
    }

    /// `PROGRAM ARGS` as the intruder (setpriv: its uid and gid, no supplementary groups).
    fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("setpriv");
        crate::util::without_baton_env(&mut cmd);
        cmd.arg(format!("--reuid={}", self.uid))
            .arg(format!("--regid={}", self.gid))
            .args(["--clear-groups", "--"])
            .arg(program)
            .current_dir("/")
            .env("TZ", "UTC")
            .stdin(Stdio::null());
        cmd
    }

    fn sh(&self, script: &str) -> Run {
        let mut cmd = self.command("sh");
        cmd.args(["-c", script]);
        Cmd::of(cmd).run()
    }

    /// A Baton binary as the intruder, on `state`.
    fn baton(&self, name: &str, state: &Path, at: &str) -> Cmd {
        let mut cmd = self.command(self.bins.join(name));
        cmd.env("BATON_STATE_DIR", state)
            .env("BATON_HOST", "host1")
            .env("BATON_NOW", at);
        Cmd::of(cmd)
    }

    fn chown(&self, path: &Path) {
        std::os::unix::fs::chown(path, Some(self.uid), Some(self.gid)).unwrap();
    }
}

impl Drop for Intruder {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(INTRUDER).output();
    }
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().mode() & 0o7777
}

/// Every path under `dir`, sorted.
fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut all = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if fs::symlink_metadata(&p).unwrap().is_dir() {
                todo.push(p.clone());
            }
            all.push(p);
        }
    }
    all.sort();
    all
}

fn mkfifo(path: &Path) {
    let _ = fs::remove_file(path);
    let ok = Command::new("mkfifo").arg(path).status().unwrap().success();
    assert!(ok, "mkfifo {}", path.display());
}

/// A root-only file outside the state dir, which no attack may change or copy.
fn root_only(t: &TestDir) -> PathBuf {
    let secret = t.join("root-only");
    fs::write(&secret, "root-only secret\n").unwrap();
    chmod(&secret, 0o600);
    secret
}

fn nothing_holds_the_secret(state: &Path) {
    for p in tree(state) {
        if fs::symlink_metadata(&p).unwrap().is_file() {
            let text = fs::read_to_string(&p).unwrap_or_default();
            assert!(
                !text.contains("root-only secret"),
                "{} holds the secret",
                p.display()
            );
        }
    }
}

#[test]
fn a_state_dir_another_user_controls_is_refused() {
    let Some(x) = Intruder::new() else { return };
    let t = TestDir::new("sec-foreign");
    chmod(&t.path, 0o755);
    let secret = root_only(&t);
    let victim = t.join("victim");
    fs::create_dir(&victim).unwrap();
    fs::write(victim.join("keep.log"), "not Baton's").unwrap();
    // A shared, sticky directory such as /tmp, where the intruder makes "root's" state dir
    // first and plants links in it.
    let shared = t.join("shared");
    fs::create_dir(&shared).unwrap();
    chmod(&shared, 0o1777);
    let state = shared.join("state");
    x.sh(&format!(
        "mkdir -m 0777 {s} {s}/history {s}/logs && ln -s {secret} {s}/history/nightly.jsonl && ln -s {victim} {s}/logs/nightly",
        s = state.display(),
        secret = secret.display(),
        victim = victim.display()
    ))
    .status(0);
    let run = |state: &Path| {
        baton("baton-run")
            .env("BATON_STATE_DIR", state)
            .env("BATON_NOW", T0)
            .args(["--lock", "nightly", "--keep-logs", "1", "--"])
            .arg("touch")
            .arg(t.join("ran"))
            .run()
    };
    run(&state).error("baton-run", &format!("owned by {INTRUDER}"));
    // Readers refuse it too: its records could be anything.
    baton("baton-if")
        .env("BATON_STATE_DIR", &state)
        .args(["did"])
        .run()
        .error("baton-if", "owned by");
    baton("baton-signal")
        .env("BATON_STATE_DIR", &state)
        .args(["raise", "did"])
        .run()
        .error("baton-signal", "owned by");
    // A state dir not yet made, under a directory the intruder owns.
    x.sh(&format!("mkdir -m 0755 {}/mine", shared.display()))
        .status(0);
    run(&shared.join("mine/state")).error("baton-run", &format!("owned by {INTRUDER}"));
    // Root's own, but writable by its group: the intruder may be in it.
    let group = t.join("group");
    fs::create_dir(&group).unwrap();
    chmod(&group, 0o770);
    run(&group).error("baton-run", "chmod 0700");
    // A world-writable parent that is not sticky: anyone may swap the state dir.
    let open = t.join("open");
    fs::create_dir(&open).unwrap();
    chmod(&open, 0o777);
    fs::create_dir(open.join("state")).unwrap();
    run(&open.join("state")).error("baton-run", "not sticky");

    assert!(!t.join("ran").exists(), "no job ran");
    assert_eq!(fs::read_to_string(&secret).unwrap(), "root-only secret\n");
    assert_eq!(mode(&secret), 0o600);
    assert_eq!(
        fs::read_to_string(victim.join("keep.log")).unwrap(),
        "not Baton's"
    );
    nothing_holds_the_secret(&state);

    // Root's own dir in the same sticky directory is fine, and made private.
    let mine = shared.join("root-state");
    run(&mine).status(0);
    assert!(t.join("ran").exists());
    assert_eq!(mode(&mine), 0o700);
}

#[test]
fn links_and_fifos_in_the_state_dir_are_not_followed() {
    let h = Host::new("host1");
    let state = h.state();
    let secret = root_only(&h.dir);
    let run = |extra: &[&str]| {
        h.at("baton-run", T0)
            .args(["--lock", "nightly"])
            .args(extra)
            .args(["--", "sh", "-c", "echo ran >> ran"])
            .run()
    };
    run(&[]).status(0);
    let ran = || {
        fs::read_to_string(h.dir.join("ran"))
            .unwrap_or_default()
            .lines()
            .count()
    };
    assert_eq!(ran(), 1);

    // A symlinked history file: appending, or trimming (which reads the whole file and
    // writes it back), would reach the root-only file.
    let history = state.join("history/nightly.jsonl");
    fs::remove_file(&history).unwrap();
    std::os::unix::fs::symlink(&secret, &history).unwrap();
    let r = run(&[]);
    assert_ne!(r.code(), 0, "{}", r.stderr());
    assert!(r.stderr().contains("symbolic link"), "{}", r.stderr());
    assert_eq!(fs::read_to_string(&secret).unwrap(), "root-only secret\n");
    nothing_holds_the_secret(&state);
    fs::remove_file(&history).unwrap();

    // A symlinked logs dir: pruning old logs would delete *.log files elsewhere.
    let victim = h.dir.join("victim");
    fs::create_dir(&victim).unwrap();
    for n in ["a.log", "b.log"] {
        fs::write(victim.join(n), "not Baton's").unwrap();
    }
    let logs = state.join("logs/nightly");
    fs::remove_dir_all(&logs).unwrap();
    std::os::unix::fs::symlink(&victim, &logs).unwrap();
    let before = ran();
    run(&["--keep-logs", "1"]).error("baton-run", "symbolic link");
    assert_eq!(fs::read_dir(&victim).unwrap().count(), 2, "no log removed");
    assert_eq!(ran(), before, "refused before running");
    fs::remove_file(&logs).unwrap();

    // A FIFO named like a lock or a job state: refused at once, nothing hangs.
    for path in [
        state.join("jobs/nightly.lock"),
        state.join("jobs/nightly.json"),
    ] {
        mkfifo(&path);
        run(&[]).error("baton-run", "FIFO");
        fs::remove_file(&path).unwrap();
    }
    // A FIFO named like a signal record or the store's lock.
    h.at("baton-signal", T0)
        .args(["raise", "other"])
        .run()
        .status(0);
    mkfifo(&state.join("signals/did.json"));
    h.at("baton-if", T0)
        .args(["did"])
        .run()
        .error("baton-if", "FIFO");
    let list = h.at("baton-signal", T0).args(["list"]).run();
    assert!(list.stderr().contains("FIFO"), "{}", list.stderr());
    assert!(list.stdout().contains("other"), "{}", list.stdout());
    mkfifo(&state.join("signals/.lock"));
    h.at("baton-signal", T0)
        .args(["raise", "more"])
        .run()
        .error("baton-signal", "FIFO");
    fs::remove_file(state.join("signals/.lock")).unwrap();
    run(&[]).status(0);
    assert_eq!(ran(), before + 1);
}

#[test]
fn a_planted_job_record_kills_nothing() {
    let Some(x) = Intruder::new() else { return };
    let h = Host::new("host1");
    chmod(&h.dir.path, 0o755);
    let state = h.state();
    let run = || {
        h.at("baton-run", T0)
            .args(["--lock", "nightly", "--expireafter", "1m", "--", "true"])
            .run()
    };
    run().status(0);
    // The intruder's own process group, which root's baton-run must not kill.
    let mut sleeper = x.command("sleep");
    sleeper
        .arg("300")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    std::os::unix::process::CommandExt::process_group(&mut sleeper, 0);
    let mut sleeper = sleeper.spawn().unwrap();
    let pid = sleeper.id();
    // It cannot plant a record in root's private jobs dir...
    let record = state.join("jobs/nightly.json");
    let planted = format!(
        r#"{{"version":1,"job":"nightly","running":{{"run":"x","pid":{pid},"pgid":{pid},"started":"2000-01-01T00:00:00Z"}}}}"#
    );
    let r = x.sh(&format!("printf '%s' '{planted}' > {}", record.display()));
    assert_ne!(r.code(), 0, "the intruder wrote in root's jobs dir");
    // ...and one left over from when the directory was open is refused: not root's.
    fs::write(&record, &planted).unwrap();
    x.chown(&record);
    run().error("baton-run", &format!("owned by {INTRUDER}"));
    assert!(
        process_alive(&pid.to_string()),
        "the intruder's process lives"
    );
    let _ = sleeper.kill();
    let _ = sleeper.wait();
}

#[test]
fn other_users_can_neither_read_nor_lock() {
    let Some(x) = Intruder::new() else { return };
    let h = Host::new("host1");
    chmod(&h.dir.path, 0o755);
    let state = h.state();
    let run = || {
        h.at("baton-run", T0)
            .args([
                "--lock",
                "nightly",
                "--once-per",
                "k1",
                "--on-repaired",
                "did",
            ])
            .args(["--", "sh", "-c", "echo secret-output"])
            .run()
    };
    run().status(0);
    // Every directory Baton made is 0700, every file 0600 (the state dir itself was made
    // by the install, 0755 here, and is left as it is).
    let all = tree(&state);
    for want in [
        "jobs/nightly.lock",
        "jobs/nightly.json",
        "history/nightly.jsonl",
        "signals/did.json",
        "signals/.lock",
        "once-per/nightly.json",
    ] {
        assert!(all.contains(&state.join(want)), "{want} in {all:?}");
    }
    assert!(all
        .iter()
        .any(|p| p.extension().is_some_and(|e| e == "log")));
    for p in &all {
        let want = if p.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode(p), want, "{}", p.display());
    }
    // The intruder can read none of it.
    for rel in ["logs/nightly", "history/nightly.jsonl", "signals/did.json"] {
        x.sh(&format!(
            "cat {}/{rel}/* {}/{rel}",
            state.display(),
            state.display()
        ))
        .status(1);
    }
    // Even with every directory opened to readers, the locks are 0600: not openable,
    // so not lockable, by anyone else.
    for p in all.iter().filter(|p| p.is_dir()).chain([&state]) {
        chmod(p, 0o755);
    }
    for lock in [
        "jobs/nightly.lock",
        "signals/.lock",
        "history/.nightly.lock",
        "once-per/.lock",
    ] {
        let r = x.sh(&format!("flock -n {}/{lock} true", state.display()));
        assert_ne!(r.code(), 0, "{lock} opened by another user");
        assert!(r.stderr().contains("Permission denied"), "{}", r.stderr());
    }
    // A lock file an older Baton made 0644 is tightened at the next run.
    chmod(&state.join("jobs/nightly.lock"), 0o644);
    h.at("baton-run", T0)
        .args(["--lock", "nightly", "--", "true"])
        .run()
        .status(0);
    assert_eq!(mode(&state.join("jobs/nightly.lock")), 0o600);
    // A lock file another user owns is refused: it could hold it forever.
    x.chown(&state.join("jobs/nightly.lock"));
    h.at("baton-run", T0)
        .args(["--lock", "nightly", "--", "true"])
        .run()
        .error("baton-run", "owned by");
}

#[test]
fn a_reader_reads_a_store_it_may_not_write() {
    let Some(x) = Intruder::new() else { return };
    let h = Host::new("host1");
    chmod(&h.dir.path, 0o755);
    let state = h.state();
    h.at("baton-signal", T0)
        .args(["raise", "soon_gone", "--ttl", "1m"])
        .run()
        .status(0);
    h.at("baton-signal", T0)
        .args(["raise", "stays", "--ttl", "1h"])
        .run()
        .status(0);
    // The owner shares its signals read-only (as a baton-serve run as another user needs).
    chmod(&state, 0o755);
    chmod(&state.join("signals"), 0o755);
    for n in ["soon_gone", "stays"] {
        chmod(&state.join(format!("signals/{n}.json")), 0o644);
    }
    let later = "2012-01-24T16:50:00Z";
    x.baton("baton-signal", &state, later)
        .args(["list"])
        .run()
        .status(0)
        .stdout_is("stays 2012-01-24T16:45:00Z 2012-01-24T17:45:00Z\n")
        .stderr_is("");
    assert!(
        state.join("signals/soon_gone.json").exists(),
        "the reader cleans nothing up"
    );
    x.baton("baton-signal", &state, later)
        .args(["raise", "mine"])
        .run()
        .error("baton-signal", "only its owner writes there");

    // baton-serve as the intruder answers from it (no 500 once a signal has expired).
    let access = h.dir.join("access");
    fs::write(&access, "allow .* 127.0.0.0/8\n").unwrap();
    chmod(&access, 0o644);
    fs::write(h.dir.join("now"), later).unwrap();
    chmod(&h.dir.join("now"), 0o644);
    let mut serve = x.command(x.bins.join("baton-serve"));
    serve
        .args(["--listen", "127.0.0.9:0", "--access"])
        .arg(&access)
        .env("BATON_STATE_DIR", &state)
        .env("BATON_HOST", "host1")
        .env("BATON_NOW", h.dir.join("now"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = serve.spawn().unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_default()
        .to_string();
    let answer = baton("baton-query")
        .args(["--at", later, &addr, ".*"])
        .run();
    let _ = child.kill();
    let _ = child.wait();
    answer.status(0).stdout_is("stays\n");
}

/// A hostile peer: answers every request with `signals` (a JSON array), whatever it asks.
fn hostile_peer(signals: &str) -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let body = format!(
        r#"{{"version":1,"host":"evil","now":"2012-01-24T16:45:00Z","signals":{signals}}}"#
    );
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    addr
}

fn signal(name: &str, run: &str) -> String {
    serde_json::json!({
        "name": name, "host": "evil", "run": run,
        "set_at": "2012-01-24T16:40:00Z", "expires_at": "2012-01-24T16:50:00Z",
    })
    .to_string()
}

#[test]
fn a_hostile_peer_cannot_inject_classes_or_lines() {
    let names = ["did x", "did;reboot", "", "did\nevil_class", "did_ok"];
    let list: Vec<String> = names
        .iter()
        .map(|n| signal(n, "r1\nINJECTED \u{1b}[2J"))
        .collect();
    let addr = hostile_peer(&format!("[{}]", list.join(",")));
    let query = || baton("baton-query").args(["--at", T0]);
    // Only the class name is printed; each other name is reported on stderr, escaped.
    let run = query().args([&addr, "did.*"]).run().status(0);
    assert_eq!(run.stdout(), "did_ok\n");
    let err = run.stderr();
    assert_eq!(err.lines().count(), 4, "{err}");
    assert!(
        err.contains(r"'did\nevil_class', which is not a signal name"),
        "{err}"
    );
    assert!(err.contains("'did;reboot'") && err.contains("''"), "{err}");
    // What baton-if sees: the injected class never arrives.
    baton("baton-if")
        .args(["--stdin", "evil_class"])
        .stdin(run.stdout())
        .run()
        .status(1);
    // Every --format field is escaped: the peer's run cannot split the line.
    query()
        .args(["--format", "{name} {run}", &addr, "did.*"])
        .run()
        .status(0)
        .stdout_is("did_ok r1\\nINJECTED \\u{1b}[2J\n");
}

#[test]
fn host_prefixes_tell_web_from_web_1() {
    let t = TestDir::new("sec-prefix");
    let web = hostile_peer(&format!("[{}]", signal("1_did_my_job", "r")));
    let web_1 = hostile_peer(&format!("[{}]", signal("did_my_job", "r")));
    let peers = t.join("peers");
    fs::write(&peers, format!("web {web}\nweb-1 {web_1}\nweb.1 {web_1}\n")).unwrap();
    let query = || {
        baton("baton-query")
            .args(["--at", T0, "--prefix", "{host}", "--peers"])
            .arg(&peers)
    };
    query()
        .args(["web", "web-1", ".*"])
        .run()
        .status(0)
        .stdout_is("_5_web_1_did_my_job\nweb_1_did_my_job\n");
    query()
        .args(["web-1", "web.1", ".*"])
        .run()
        .error("baton-query", "name them apart");
}
