//! Watching the workflow: metrics in the Prometheus text format (`baton-run
//! --metrics-file`, `baton-serve`'s `/metrics`) checked by the real `promtool`, and
//! `baton-run --ping` against a listener the test starts on loopback.

use crate::util::cluster::Cluster;
use crate::util::{baton, Host, TestDir};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// 2012-01-24T16:00:00Z, when the regular workflow's job succeeds on the second day.
const SUCCESS_24TH: f64 = 1_327_420_800.0;

/// The samples of an exposition: `name{labels}` (labels as written) to value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap();
            (series.to_string(), value.parse().unwrap())
        })
        .collect()
}

/// The job names in an exposition whose name starts with `prefix`.
fn job_named(text: &str, prefix: &str) -> String {
    let marker = format!("job=\"{prefix}");
    let at = text
        .find(&marker)
        .unwrap_or_else(|| panic!("no job {prefix}* in\n{text}"));
    let rest = &text[at + 5..];
    rest[..rest.find('"').unwrap()].to_string()
}

/// `promtool check metrics` on `text`: must pass with nothing to say.
pub fn promtool_check_metrics(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is installed (.ci/run installs prometheus)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    crate::util::wait_child(&mut child, Duration::from_secs(30), "promtool");
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {:?}\n{}{}\n{text}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Assert the per-job series of `job` on `host`.
fn assert_job(s: &BTreeMap<String, f64>, host: &str, job: &str, runs: [(&str, f64); 5]) {
    let key = |name: &str, extra: &str| format!("{name}{{host=\"{host}\",job=\"{job}\"{extra}}}");
    for (outcome, n) in runs {
        let k = key("baton_job_runs_total", &format!(",outcome=\"{outcome}\""));
        assert_eq!(s.get(&k), Some(&n), "{k} in {s:#?}");
    }
    for (name, want) in [
        ("baton_job_last_success_timestamp_seconds", SUCCESS_24TH),
        ("baton_job_last_run_timestamp_seconds", SUCCESS_24TH),
        ("baton_job_last_duration_seconds", 0.0),
        ("baton_job_last_exit_code", 0.0),
    ] {
        assert_eq!(s.get(&key(name, "")), Some(&want), "{name} of {job}");
    }
}

/// The regular workflow (docs/guide.md) through a failed day and a good one, every
/// `baton-run` writing its host's metrics file.
fn regular_two_days() -> Cluster {
    let mut c = Cluster::from_guide("regular", &["Host1", "Host2"]);
    c.write_metrics();
    c.fail("Host1", "my_job", "1");
    c.run("2012-01-23T15:00:00Z", "2012-01-23T17:55:00Z");
    c.run("2012-01-24T00:00:00Z", "2012-01-24T23:55:00Z");
    assert_eq!(c.runs("Host1", "my_job failed"), ["2012-01-23T16:00:00Z"]);
    // --once-per '{day}' counts only successes: the failure is retried at 16:05.
    let both = ["2012-01-23T16:05:00Z", "2012-01-24T16:00:00Z"];
    assert_eq!(c.runs("Host1", "my_job"), both);
    assert_eq!(c.runs("Host2", "do_my_job_bundle"), both);
    c
}

#[test]
fn metrics_file_after_two_days_of_the_regular_workflow() {
    let c = regular_two_days();
    let host1 = std::fs::read_to_string(c.metrics_file("Host1")).unwrap();
    promtool_check_metrics(&host1);
    let s = samples(&host1);
    let my_job = job_named(&host1, "my_job_");
    // Day one: failed at 16:00, ran at 16:05, skipped for the rest of the hour; day two
    // ran at 16:00, then skipped.
    assert_job(
        &s,
        "Host1",
        &my_job,
        [
            ("ran", 2.0),
            ("failed", 1.0),
            ("timeout", 0.0),
            ("skipped", 21.0),
            ("busy", 0.0),
        ],
    );
    // Host1's last baton-run was at 16:55: did_my_job (16:00, ten minutes) had expired.
    assert_eq!(s.get("baton_signals_live{host=\"Host1\"}"), Some(&0.0));

    let host2 = std::fs::read_to_string(c.metrics_file("Host2")).unwrap();
    promtool_check_metrics(&host2);
    let s = samples(&host2);
    let follow_up = job_named(&host2, "do_my_job_bundle_");
    // Each day in the tick Host1 raised did_my_job, then skipped once (--ifelapsed 100)
    // while the signal still lived.
    assert_job(
        &s,
        "Host2",
        &follow_up,
        [
            ("ran", 2.0),
            ("failed", 0.0),
            ("timeout", 0.0),
            ("skipped", 2.0),
            ("busy", 0.0),
        ],
    );
    assert!(!host2.contains(&my_job), "each host exports its own jobs");
}

/// A listener on 127.0.0.1 that answers each request 200 (or never, when `silent`) and
/// reports each request line.
fn ping_listener(silent: bool) -> (String, mpsc::Receiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { break };
            conn.set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            let line = String::from_utf8_lossy(&head)
                .lines()
                .next()
                .unwrap_or("")
                .to_string();
            if tx.send(line).is_err() {
                break;
            }
            if silent {
                held.push(conn); // never answered
            } else {
                let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK");
            }
        }
    });
    (addr, rx)
}

#[test]
fn ping_on_success_and_failure() {
    let h = Host::new("pinged");
    let (addr, requests) = ping_listener(false);
    let url = format!("http://{addr}/ping/abc-123");
    // A good ping adds nothing to stderr: a success is silent, a failure says only itself.
    let run = |cmd: &str, want: i32| {
        let run = h
            .at("baton-run", "2012-01-24T16:00:00Z")
            .args(["--lock", "pinged", "--ping", &url, "--", cmd])
            .run()
            .status(want);
        if want == 0 {
            assert_eq!(run.stderr(), "");
        } else {
            assert!(
                run.stderr()
                    .starts_with("baton-run: pinged failed with exit status 1 after ")
                    && run.stderr().lines().count() == 1,
                "{}",
                run.stderr()
            );
        }
    };
    run("true", 0);
    assert_eq!(
        requests.recv_timeout(Duration::from_secs(10)).unwrap(),
        "GET /ping/abc-123 HTTP/1.1"
    );
    run("false", 1);
    assert_eq!(
        requests.recv_timeout(Duration::from_secs(10)).unwrap(),
        "GET /ping/abc-123/fail HTTP/1.1"
    );
    // A tick that does not run the command pings nothing.
    h.at("baton-run", "2012-01-24T16:01:00Z")
        .args([
            "-q",
            "--lock",
            "pinged",
            "--ifelapsed",
            "1h",
            "--ping",
            &url,
            "--",
            "true",
        ])
        .run()
        .status(76);
    assert!(requests.recv_timeout(Duration::from_millis(300)).is_err());
    baton("baton-run")
        .args(["--ping", "hc-ping.com/x", "--", "true"])
        .run()
        .error(
            "baton-run",
            "--ping 'hc-ping.com/x': give an http:// or https:// URL",
        );
}

#[test]
fn a_ping_that_fails_never_fails_or_blocks_the_job() {
    let h = Host::new("unpinged");
    // Nobody listens: refused at once; the job's status stands.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let gone = format!("http://{}/p", closed.local_addr().unwrap());
    drop(closed);
    h.at("baton-run", "2012-01-24T16:00:00Z")
        .args(["--lock", "a", "--ping", &gone, "--", "true"])
        .run()
        .status(0)
        .says(
            "baton-run",
            &format!("cannot ping {gone}: connection refused"),
        );
    // A listener that never answers: bounded by the ping's time-out.
    let (addr, requests) = ping_listener(true);
    let silent = format!("http://{addr}/p");
    let started = Instant::now();
    let run = h
        .at("baton-run", "2012-01-24T16:00:00Z")
        .args(["--lock", "b", "--ping", &silent, "--", "false"])
        .run()
        .status(1);
    // The ping's line, then the failure's own (a job that fails always says so).
    let lines: Vec<String> = run.stderr().lines().map(str::to_string).collect();
    assert_eq!(lines.len(), 2, "{}", run.stderr());
    assert!(
        lines[0].starts_with(&format!("baton-run: cannot ping {silent}/fail: ")),
        "{}",
        run.stderr()
    );
    assert!(
        lines[1].starts_with("baton-run: b failed with exit status 1 after "),
        "{}",
        run.stderr()
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(
        requests.recv_timeout(Duration::from_secs(10)).unwrap(),
        "GET /p/fail HTTP/1.1"
    );
}

#[test]
fn metrics_file_counts_a_timeout_and_an_unwritable_file_is_only_reported() {
    let h = Host::new("timed");
    let dir = TestDir::new("textfile");
    let file = dir.join("baton.prom");
    h.at("baton-run", "2012-01-24T16:00:00Z")
        .args(["--lock", "slow", "--timeout", "1s", "--grace", "1s"])
        .arg("--metrics-file")
        .arg(&file)
        .args(["--", "sleep", "30"])
        .run()
        .status(124);
    let text = std::fs::read_to_string(&file).unwrap();
    promtool_check_metrics(&text);
    let s = samples(&text);
    let series =
        |o: &str| format!("baton_job_runs_total{{host=\"timed\",job=\"slow\",outcome=\"{o}\"}}");
    assert_eq!(s[&series("timeout")], 1.0);
    assert_eq!(s[&series("failed")], 0.0);
    assert_eq!(
        s["baton_job_last_exit_code{host=\"timed\",job=\"slow\"}"],
        124.0
    );
    assert_eq!(
        s["baton_job_last_run_timestamp_seconds{host=\"timed\",job=\"slow\"}"],
        SUCCESS_24TH
    );
    assert!(!text.contains("baton_job_last_success_timestamp_seconds{"));
    // Only the file is replaced: no temporary is left beside it.
    assert_eq!(std::fs::read_dir(&dir.path).unwrap().count(), 1);

    // An empty BATON_METRICS_FILE (a crontab header that clears it) asks for nothing.
    h.at("baton-run", "2012-01-24T16:05:00Z")
        .env("BATON_METRICS_FILE", "")
        .args(["--lock", "quiet", "--", "true"])
        .run()
        .status(0)
        .stderr_is("");
    let missing = dir.join("no/such/dir/baton.prom");
    h.at("baton-run", "2012-01-24T16:05:00Z")
        .args(["--lock", "ok"])
        .arg("--metrics-file")
        .arg(&missing)
        .args(["--", "true"])
        .run()
        .status(0)
        .says("baton-run", "cannot write --metrics-file");
}
