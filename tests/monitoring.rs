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

/// Host1's `my_job` ticks over the two days (`--once-per '{day}'`, which counts only
/// successes): day one failed at 16:00, ran at 16:05, then skipped for the rest of the
/// hour; day two ran at 16:00, then skipped.
const HOST1_RUNS: [(&str, f64); 5] = [
    ("ran", 2.0),
    ("failed", 1.0),
    ("timeout", 0.0),
    ("skipped", 21.0),
    ("busy", 0.0),
];

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
    assert_job(&s, "Host1", &my_job, HOST1_RUNS);
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

    // baton-serve's /metrics: refused to a peer the access file does not admit (the guide's
    // file admits only Host2's key), with the very answer /v1/signals gives.
    let server = c.host("Host1").server.as_ref().unwrap().addr.clone();
    let denied = get_tls(&server, "/v1/signals?match=.*");
    assert!(denied.starts_with("HTTP/1.1 403 "), "{denied}");
    assert!(
        denied.ends_with("\r\n\r\n{\"error\":\"not admitted\"}"),
        "{denied}"
    );
    let status_and_body = |a: &str| {
        let (head, body) = a.split_once("\r\n\r\n").unwrap_or((a, ""));
        (
            head.lines().next().unwrap_or("").to_string(),
            body.to_string(),
        )
    };
    for path in ["/metrics", "/", "/v1/history"] {
        let answer = get_tls(&server, path);
        assert_eq!(status_and_body(&answer), status_and_body(&denied), "{path}");
    }

    // Admitted to its signals and jobs, the same values as the file, and the live signals.
    c.set_access(
        "Host1",
        "allow did.* key:Host2\nallow .* 127.0.0.1\nallow job:.* 127.0.0.1\n",
    );
    c.host("Host1")
        .host
        .at("baton-signal", "2012-01-24T23:55:00Z")
        .args(["raise", "alive", "--ttl", "1h"])
        .run()
        .status(0);
    let answer = get_tls(&server, "/metrics");
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 "), "{answer}");
    assert!(
        head.to_lowercase()
            .contains("content-type: text/plain; version=0.0.4; charset=utf-8"),
        "{head}"
    );
    promtool_check_metrics(body);
    let s = samples(body);
    assert_job(&s, "Host1", &my_job, HOST1_RUNS);
    assert_eq!(s.get("baton_signals_live{host=\"Host1\"}"), Some(&1.0));
    assert_eq!(
        s.get("baton_signal_expiry_timestamp_seconds{host=\"Host1\",signal=\"alive\"}"),
        Some(&1_327_452_900.0),
        "2012-01-25T00:55:00Z"
    );
    // Host2 asked every tick (288 + 36) with its key; the four refusals above; this scrape
    // is counted once it is answered.
    let ok = s["baton_serve_requests_total{host=\"Host1\",code=\"200\"}"];
    assert_eq!(ok, 324.0);
    assert_eq!(
        s["baton_serve_requests_total{host=\"Host1\",code=\"403\"}"],
        4.0
    );
    assert_eq!(
        s["baton_serve_request_duration_seconds_count{host=\"Host1\"}"],
        328.0
    );
    assert!(
        s["baton_serve_connections{host=\"Host1\"}"] >= 1.0,
        "this one"
    );
}

/// One plain GET from 127.0.0.1: the whole answer, head and body.
fn get(addr: &str, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// One GET over TLS from 127.0.0.1 without a client certificate (the cluster's servers
/// serve HTTPS), by `openssl s_client`, bounded by `timeout`: the whole answer.
fn get_tls(addr: &str, path: &str) -> String {
    let mut child = Command::new("timeout")
        .args(["20", "openssl", "s_client", "-quiet", "-connect", addr])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl (.ci/run installs it)");
    write!(
        child.stdin.take().unwrap(),
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A request's head, read a byte at a time (bounded by a 10s read time-out).
fn read_head(conn: &mut std::net::TcpStream) -> Vec<u8> {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).unwrap_or(0) == 1 {
        head.push(byte[0]);
    }
    head
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
            let head = read_head(&mut conn);
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

/// Headless Chromium (as root in CI: no sandbox), in a process group of its own that is
/// killed whatever happens, bounded by a minute. Returns its stdout.
fn chromium(args: &[&str], profile: &std::path::Path) -> String {
    use std::os::unix::process::CommandExt;
    let mut child = Command::new("chromium")
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("chromium is installed (.ci/run installs it)");
    let pgid = child.id().to_string();
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        let _ = stdout.read_to_string(&mut out);
        out
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let finished = loop {
        if child.try_wait().unwrap().is_some() {
            break true;
        }
        if Instant::now() > deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // Its helpers (zygote, renderer, GPU) share the group: end them all, by the group id.
    let _ = Command::new("kill")
        .args(["-KILL", &format!("-{pgid}")])
        .stderr(Stdio::null())
        .status();
    let _ = child.wait();
    assert!(finished, "chromium {args:?} did not finish within 60s");
    reader.join().unwrap()
}

#[test]
fn status_page_across_hosts_in_headless_chromium() {
    // A day of the regular workflow where Host2's follow-up fails once.
    let mut c = Cluster::from_guide("regular", &["Host1", "Host2"]);
    c.fail("Host2", "do_my_job_bundle", "1");
    c.set_access("Host1", "allow did.* key:Host2\nallow job:.* key:Host2\n");
    c.run("2012-01-24T00:00:00Z", "2012-01-24T19:55:00Z");
    assert_eq!(
        c.runs("Host1", "my_job"),
        ["2012-01-24T16:00:00Z"],
        "{:?} {}",
        c.journal(),
        c.mail("Host1")
    );
    assert_eq!(
        c.runs("Host2", "do_my_job_bundle failed"),
        ["2012-01-24T16:00:00Z"]
    );
    let host2 = &c.host("Host2").host;
    host2
        .at("baton-signal", "2012-01-24T19:30:00Z")
        .args(["raise", "report_ready", "--ttl", "2h"])
        .run()
        .status(0);
    // Host2's status page names both hosts and one that is down (nobody listens there).
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let down = closed.local_addr().unwrap().to_string();
    drop(closed);
    let peers = c.root.join("page-peers");
    let peers_text = std::fs::read_to_string(c.root.join("peers")).unwrap();
    std::fs::write(&peers, format!("{peers_text}Host3 {down}\n")).unwrap();
    let page_server = host2.serve(
        "127.0.0.40",
        "allow .* 127.0.0.1\nallow output:.* 127.0.0.1\n",
        &[
            "--peers",
            peers.to_str().unwrap(),
            "--peer-key",
            host2.identity().1.to_str().unwrap(),
            "--peer-pin",
            &std::fs::read_to_string(c.root.join("pins")).unwrap(),
            "--peer-timeout",
            "5s",
        ],
    );
    let url = format!("http://{}/", page_server.addr);
    let profile = TestDir::new("chromium");
    let dom = chromium(&["--dump-dom", &url], &profile.path);
    for want in [
        "<title>Baton on Host2</title>",
        "class=\"hostrow host\" data-host=\"Host2\"",
        "class=\"hostrow host\" data-host=\"Host1\"",
        "class=\"hostrow peer unreachable\" data-host=\"Host3\"",
        "connection refused",
        "data-job=\"my_job_",
        "data-job=\"do_my_job_bundle_",
        "<tr class=\"run failed\" data-outcome=\"failed\"><td>failed</td><td>2012-01-24 16:00:00</td>",
        "<tr data-signal=\"report_ready\"><td>report_ready</td><td>2012-01-24 19:30:00</td><td>25m 0s</td><td>2012-01-24 21:30:00</td><td>1h 35m</td></tr>",
        "<span class=\"badge failing\">failing</span>",
        "class=\"mark ran\" data-outcome=\"ran\"",
        // Admitted to outputs: what the failed run printed (the stand-in job prints
        // nothing, so the log is empty but shown).
        "output of the last run",
    ] {
        assert!(dom.contains(want), "the page lacks {want:?}:\n{dom}");
    }
    // Host1 admitted Host2's key to its jobs, not to their output.
    let host1_row = &dom[dom.find("data-host=\"Host1\"").unwrap()..];
    let host1_row = &host1_row[..host1_row.find("data-host=\"Host3\"").unwrap()];
    assert!(host1_row.contains("class=\"mark ran\""), "{host1_row}");
    assert!(!dom.contains("<script"), "no script");

    // A screenshot for docs/monitoring.md (UPDATE_SCREENSHOT=1 replaces the committed one).
    let png = profile.join("status-page.png");
    chromium(
        &[
            &format!("--screenshot={}", png.display()),
            "--window-size=1400,900",
            &url,
        ],
        &profile.path,
    );
    let bytes = std::fs::read(&png).expect("chromium wrote the screenshot");
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 10_000);
    if std::env::var_os("UPDATE_SCREENSHOT").is_some() {
        std::fs::write(crate::util::repo().join("docs/status-page.png"), &bytes).unwrap();
    }

    // Admitted to the jobs but not to their output: ticks, never what a run printed, and
    // /v1/history carries outcomes and timings only (no log path).
    let jobs_only = host2.serve(
        "127.0.0.42",
        "allow .* 127.0.0.1\nallow job:.* 127.0.0.1\n",
        &[],
    );
    let page = get(&jobs_only.addr, "/");
    assert!(page.contains("<tr class=\"run failed\""), "{page}");
    assert!(!page.contains("output of the last run"), "{page}");
    let history = get(&jobs_only.addr, "/v1/history");
    assert!(history.starts_with("HTTP/1.1 200 "), "{history}");
    assert!(
        history.contains("\"outcome\":\"failed\",\"status\":1"),
        "{history}"
    );
    assert!(
        !history.contains("logs/") && !history.contains(".log"),
        "{history}"
    );

    // Not admitted: the page is refused as signals are.
    let refusing = host2.serve("127.0.0.41", "allow .* 10.9.9.9\n", &[]);
    let answer = get(&refusing.addr, "/");
    assert!(answer.starts_with("HTTP/1.1 403 "), "{answer}");
    assert!(answer.ends_with("{\"error\":\"not admitted\"}"), "{answer}");
    assert!(!answer.contains("Host2") && !answer.contains("do_my_job"));
}

/// The alerting rules of docs/monitoring.md: the block under `# baton-rules.yml`.
fn rules_from_docs() -> String {
    docs_block("# baton-rules.yml")
}

/// Series and expectations for `promtool test rules`: each alert fires where it must
/// and stays quiet where it must not. Times are seconds from 0, as promtool's clock.
const RULE_TESTS: &str = r#"
rule_files: [rules.yml]
evaluation_interval: 1m
tests:
  # my_job succeeded at 600s, follow_up never: behind from 2400s (600 + 30m) on.
  - interval: 1m
    input_series:
      - series: 'baton_job_last_success_timestamp_seconds{host="host1",job="my_job",instance="n1"}'
        values: '600x100'
    alert_rule_test:
      - eval_time: 20m
        alertname: BatonFollowUpBehind
        exp_alerts: []
      - eval_time: 45m
        alertname: BatonFollowUpBehind
        exp_alerts:
          - exp_labels: {severity: page}
            exp_annotations: {summary: "follow_up on host2 has not succeeded since my_job on host1 did"}
  # follow_up succeeded after my_job did: quiet.
  - interval: 1m
    input_series:
      - series: 'baton_job_last_success_timestamp_seconds{host="host1",job="my_job"}'
        values: '600x100'
      - series: 'baton_job_last_success_timestamp_seconds{host="host2",job="follow_up"}'
        values: '900x100'
    alert_rule_test:
      - eval_time: 45m
        alertname: BatonFollowUpBehind
        exp_alerts: []
  # A job fails at 2m, times out at 4m, succeeds at 5m.
  - interval: 1m
    input_series:
      - series: 'baton_job_last_exit_code{host="host1",job="my_job"}'
        values: '0 0 1 1 124 0'
    alert_rule_test:
      - eval_time: 1m
        alertname: BatonJobFailing
        exp_alerts: []
      - eval_time: 3m
        alertname: BatonJobFailing
        exp_alerts:
          - exp_labels: {severity: ticket, host: host1, job: my_job}
            exp_annotations: {summary: "my_job on host1 last exited 1"}
      - eval_time: 5m
        alertname: BatonJobFailing
        exp_alerts: []
  # did_my_job raised at 600s for 10 minutes; follow_up never succeeded.
  - interval: 1m
    input_series:
      - series: 'baton_signal_set_timestamp_seconds{host="host1",signal="did_my_job"}'
        values: '600x20'
      - series: 'baton_signal_expiry_timestamp_seconds{host="host1",signal="did_my_job"}'
        values: '1200x20'
    alert_rule_test:
      - eval_time: 10m
        alertname: BatonSignalExpiringUnseen
        exp_alerts: []
      - eval_time: 16m
        alertname: BatonSignalExpiringUnseen
        exp_alerts:
          - exp_labels: {severity: page}
            exp_annotations: {summary: "did_my_job on host1 expires unseen by follow_up on host2"}
  # The same signal, seen: follow_up succeeded at 700s.
  - interval: 1m
    input_series:
      - series: 'baton_signal_set_timestamp_seconds{host="host1",signal="did_my_job"}'
        values: '600x20'
      - series: 'baton_signal_expiry_timestamp_seconds{host="host1",signal="did_my_job"}'
        values: '1200x20'
      - series: 'baton_job_last_success_timestamp_seconds{host="host2",job="follow_up"}'
        values: '700x20'
    alert_rule_test:
      - eval_time: 16m
        alertname: BatonSignalExpiringUnseen
        exp_alerts: []
  # The same signal, unseen, in a textfile no tick rewrote since: its series stay after it
  # expired (1200s), and an expired signal is not expiring.
  - interval: 1m
    input_series:
      - series: 'baton_signal_set_timestamp_seconds{host="host1",signal="did_my_job"}'
        values: '600x40'
      - series: 'baton_signal_expiry_timestamp_seconds{host="host1",signal="did_my_job"}'
        values: '1200x40'
    alert_rule_test:
      - eval_time: 19m
        alertname: BatonSignalExpiringUnseen
        exp_alerts:
          - exp_labels: {severity: page}
            exp_annotations: {summary: "did_my_job on host1 expires unseen by follow_up on host2"}
      - eval_time: 20m
        alertname: BatonSignalExpiringUnseen
        exp_alerts: []
      - eval_time: 30m
        alertname: BatonSignalExpiringUnseen
        exp_alerts: []
"#;

fn promtool(args: &[&str], dir: &std::path::Path) {
    let mut child = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is installed (.ci/run installs prometheus)");
    crate::util::wait_child(&mut child, Duration::from_secs(60), "promtool");
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool {args:?}: {:?}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn alerting_rules_in_the_docs_pass_promtool_and_fire_when_they_must() {
    let dir = TestDir::new("rules");
    std::fs::write(dir.join("rules.yml"), rules_from_docs()).unwrap();
    std::fs::write(dir.join("rules_test.yml"), RULE_TESTS).unwrap();
    promtool(&["check", "rules", "rules.yml"], &dir.path);
    promtool(&["test", "rules", "rules_test.yml"], &dir.path);
}

/// The fenced block of docs/monitoring.md that starts with `first_line`.
fn docs_block(first_line: &str) -> String {
    let text = std::fs::read_to_string(crate::util::repo().join("docs/monitoring.md")).unwrap();
    let start = text
        .find(&format!("```yaml\n{first_line}\n"))
        .unwrap_or_else(|| panic!("docs/monitoring.md has a block {first_line:?}"))
        + "```yaml\n".len();
    let len = text[start..].find("```").unwrap();
    text[start..start + len].to_string()
}

/// `config` with the `targets` of scrape job `job` replaced by `targets`.
fn with_targets(config: &str, job: &str, targets: &[&str]) -> String {
    let mut current = String::new();
    let mut replaced = false;
    let lines: Vec<String> = config
        .lines()
        .map(|line| {
            if let Some(name) = line.trim().strip_prefix("- job_name:") {
                current = name.trim().to_string();
            }
            match line.find("- targets:") {
                Some(at) if current == job => {
                    replaced = true;
                    let list: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
                    format!("{}- targets: [{}]", &line[..at], list.join(", "))
                }
                _ => line.to_string(),
            }
        })
        .collect();
    assert!(replaced, "no targets for scrape job {job} in\n{config}");
    lines.join("\n") + "\n"
}

/// A query string value, percent-encoded.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A textfile served as node_exporter serves its collector's files: the file's text,
/// read afresh at each request, on 127.0.0.1.
fn serve_textfile(file: std::path::PathBuf) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { break };
            read_head(&mut conn);
            let body = std::fs::read(&file).unwrap_or_default();
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = conn.write_all(&body);
        }
    });
    addr
}

/// A Prometheus server, stopped (by its pid) when dropped.
struct Prometheus {
    child: std::process::Child,
    addr: String,
    log: std::path::PathBuf,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// `prometheus` on 127.0.0.1 with `config` (in `dir`), its data in `dir/data`.
    fn start(dir: &std::path::Path, config: &str) -> Prometheus {
        let port = crate::util::cfengine::free_port("127.0.0.1");
        let addr = format!("127.0.0.1:{port}");
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        let log = dir.join("prometheus.log");
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--log.level=warn")
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(dir.join("prometheus.err")).unwrap())
            .spawn()
            .expect("prometheus is installed (.ci/run installs it)");
        Prometheus { child, addr, log }
    }

    fn logs(&self) -> String {
        let err = self.log.with_file_name("prometheus.err");
        std::fs::read_to_string(&self.log).unwrap_or_default()
            + &std::fs::read_to_string(err).unwrap_or_default()
    }

    /// `GET /api/v1/PATH`: its `data`, or `None` while Prometheus is not answering.
    fn api(&self, path: &str) -> Option<serde_json::Value> {
        let mut s = std::net::TcpStream::connect(&self.addr).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
        write!(
            s,
            "GET /api/v1/{path} HTTP/1.0\r\nHost: {}\r\n\r\n",
            self.addr
        )
        .ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        let body = out.split_once("\r\n\r\n")?.1;
        let v: serde_json::Value = serde_json::from_str(body).ok()?;
        (v["status"] == "success").then(|| v["data"].clone())
    }

    /// The instant query `expr`: its series, as (labels, value).
    fn query(&self, expr: &str) -> Vec<(serde_json::Value, String)> {
        let data = self
            .api(&format!("query?query={}", encode(expr)))
            .unwrap_or_else(|| panic!("query {expr} failed\n{}", self.logs()));
        data["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["metric"].clone(),
                    r["value"][1].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }
}

#[test]
fn alerting_rules_fire_in_a_real_prometheus_with_the_docs_scrape_config() {
    // host1, scraped through its baton-serve: my_job succeeded and raised did_my_job (its
    // expiry long past in real time), nightly_backup failed.
    let host1 = Host::new("host1");
    let run = |h: &Host, at: &str, args: &[&str], status: i32| {
        h.at("baton-run", at).args(args).run().status(status);
    };
    run(
        &host1,
        "2012-01-24T16:00:00Z",
        &[
            "-q",
            "--lock",
            "my_job",
            "--on-repaired",
            "did_my_job",
            "--",
            "true",
        ],
        0,
    );
    run(
        &host1,
        "2012-01-24T16:00:00Z",
        &["-q", "--lock", "nightly_backup", "--", "false"],
        1,
    );
    host1.set_clock("2012-01-24T16:05:00Z");
    let server = host1.serve(
        "127.0.0.61",
        "allow .* 127.0.0.1\nallow job:.* 127.0.0.1\n",
        &[],
    );
    // host2, scraped the textfile way: follow_up failed.
    let host2 = Host::new("host2");
    let textfile = host2.dir.join("baton.prom");
    host2
        .at("baton-run", "2012-01-24T16:30:00Z")
        .args(["-q", "--lock", "follow_up", "--metrics-file"])
        .arg(&textfile)
        .args(["--", "false"])
        .run()
        .status(1);
    let node = serve_textfile(textfile);

    // The docs' scrape configuration and rules, every 1s, pointed at them.
    let dir = TestDir::new("prometheus");
    std::fs::write(dir.join("baton-rules.yml"), rules_from_docs()).unwrap();
    let config = docs_block("# prometheus.yml");
    let config = with_targets(&config, "baton", &[&server.addr]);
    let config = with_targets(&config, "node", &[&node]);
    let config = format!("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n{config}");
    let prometheus = Prometheus::start(&dir.path, &config);

    // Firing, each with the labels of its series: the Baton job's name in `job`.
    let firing = || -> Vec<(String, String, String, String)> {
        let Some(data) = prometheus.api("alerts") else {
            return Vec::new();
        };
        let mut out: Vec<_> = data["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["state"] == "firing")
            .map(|a| {
                let l = |k: &str| a["labels"][k].as_str().unwrap_or("").to_string();
                (
                    l("alertname"),
                    l("job"),
                    l("host"),
                    a["annotations"]["summary"]
                        .as_str()
                        .unwrap_or("")
                        .to_string(),
                )
            })
            .collect();
        out.sort();
        out
    };
    let want = |name: &str, job: &str, host: &str, summary: &str| {
        (
            name.to_string(),
            job.to_string(),
            host.to_string(),
            summary.to_string(),
        )
    };
    let expected = vec![
        want(
            "BatonFollowUpBehind",
            "",
            "",
            "follow_up on host2 has not succeeded since my_job on host1 did",
        ),
        want(
            "BatonJobFailing",
            "follow_up",
            "host2",
            "follow_up on host2 last exited 1",
        ),
        want(
            "BatonJobFailing",
            "nightly_backup",
            "host1",
            "nightly_backup on host1 last exited 1",
        ),
    ];
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = Vec::new();
    while Instant::now() < deadline {
        last = firing();
        if last.len() >= expected.len() {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // Exactly these: not my_job (it succeeded), not the expired did_my_job.
    assert_eq!(last, expected, "{}", prometheus.logs());

    // The series as stored: `job` is the Baton job's (no exported_job), `instance` the
    // target; the families without a job of their own carry the scrape job's.
    let mine = prometheus.query(r#"baton_job_last_success_timestamp_seconds{job="my_job"}"#);
    assert_eq!(mine.len(), 1, "{mine:?}");
    assert_eq!(mine[0].1, SUCCESS_24TH.to_string());
    assert_eq!(mine[0].0["host"], "host1");
    assert_eq!(mine[0].0["instance"], server.addr.as_str());
    assert!(mine[0].0.get("exported_job").is_none(), "{mine:?}");
    let live = prometheus.query(r#"baton_signals_live{host="host1"}"#);
    assert_eq!(live.len(), 1, "{live:?}");
    assert_eq!(
        (live[0].0["job"].as_str(), live[0].1.as_str()),
        (Some("baton"), "1")
    );
    let exits = prometheus.query(r#"baton_job_last_exit_code{host="host2"}"#);
    assert_eq!(exits.len(), 1, "{exits:?}");
    assert_eq!(exits[0].0["job"], "follow_up");
    assert_eq!(exits[0].0["instance"], node.as_str());
}

#[test]
fn metrics_file_is_readable_by_node_exporter_and_never_written_through_a_link() {
    use std::os::unix::fs::PermissionsExt;
    let h = Host::new("modes");
    let dir = TestDir::new("textfile-mode");
    let file = dir.join("baton.prom");
    let tick = |at: &str| {
        h.at("baton-run", at)
            .args(["--lock", "j", "--metrics-file"])
            .arg(&file)
            .args(["--", "true"])
            .run()
            .status(0)
            .stderr_is("");
    };
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    tick("2012-01-24T16:00:00Z");
    assert_eq!(mode(&file), 0o644);
    // Tightened by hand (or by a umask): the next tick makes it readable again.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    tick("2012-01-24T16:05:00Z");
    assert_eq!(mode(&file), 0o644);
    // A link planted in its place is replaced, never written through.
    let victim = dir.join("victim");
    std::fs::write(&victim, "keep").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::remove_file(&file).unwrap();
    std::os::unix::fs::symlink(&victim, &file).unwrap();
    tick("2012-01-24T16:10:00Z");
    assert!(!std::fs::symlink_metadata(&file)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(mode(&file), 0o644);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
    assert_eq!(mode(&victim), 0o600);
    promtool_check_metrics(&std::fs::read_to_string(&file).unwrap());
    // A bare file name (BATON_METRICS_FILE=baton.prom) is in the working directory,
    // written without a word on stderr.
    h.at("baton-run", "2012-01-24T16:15:00Z")
        .args(["--lock", "j", "--metrics-file", "here.prom", "--", "true"])
        .run()
        .status(0)
        .stderr_is("");
    assert_eq!(mode(&h.dir.join("here.prom")), 0o644);
}

#[test]
fn trimming_never_loses_the_last_run_and_the_last_success() {
    // The reviewer's case: a `* * * * *` job with 1 success and 1999 skipped ticks, a
    // success, 1000 skipped ticks, the last of them a real tick writing the metrics.
    use chrono::{DateTime, Duration as Span, Utc};
    let h = Host::new("trim");
    let t0: DateTime<Utc> = "2012-01-23T00:00:00Z".parse().unwrap();
    let at = |minute: i64| {
        (t0 + Span::minutes(minute))
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string()
    };
    let history = h.state().join("history/every_minute.jsonl");
    let skipped_lines = |from: i64, n: i64| -> String {
        (from..from + n)
            .map(|m| {
                format!(
                    "{{\"version\":1,\"job\":\"every_minute\",\"run\":\"r{m}\",\"host\":\"trim\",\"start\":\"{t}\",\"end\":\"{t}\",\"outcome\":\"skipped\",\"status\":76,\"attempts\":0,\"reason\":\"ifelapsed\"}}\n",
                    t = at(m)
                )
            })
            .collect()
    };
    let append = |text: String| {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&history)
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    };
    let tick = |minute: i64, want: i32| {
        h.at("baton-run", &at(minute))
            .args(["-q", "--lock", "every_minute", "--ifelapsed", "1d"])
            .arg("--metrics-file")
            .arg(h.dir.join("baton.prom"))
            .args(["--", "true"])
            .run()
            .status(want);
    };
    tick(0, 0);
    append(skipped_lines(1, 1999));
    // A day and more on, the success: the 2001st line, so the file is trimmed.
    tick(2000, 0);
    append(skipped_lines(2001, 999));
    tick(3000, 76);
    let text = std::fs::read_to_string(&history).unwrap();
    assert_eq!(text.lines().count(), 1 + 1000, "trimmed again");
    assert!(
        !text
            .lines()
            .skip(1)
            .any(|l| l.contains("\"outcome\":\"repaired\"")),
        "both successes were trimmed away"
    );

    let metrics = std::fs::read_to_string(h.dir.join("baton.prom")).unwrap();
    promtool_check_metrics(&metrics);
    let s = samples(&metrics);
    let success = (t0 + Span::minutes(2000)).timestamp() as f64;
    let key = |name: &str| format!("{name}{{host=\"trim\",job=\"every_minute\"}}");
    for (name, want) in [
        ("baton_job_last_success_timestamp_seconds", success),
        ("baton_job_last_run_timestamp_seconds", success),
        ("baton_job_last_duration_seconds", 0.0),
        ("baton_job_last_exit_code", 0.0),
    ] {
        assert_eq!(s.get(&key(name)), Some(&want), "{name}\n{metrics}");
    }
    let runs = |o: &str| {
        s[&format!("baton_job_runs_total{{host=\"trim\",job=\"every_minute\",outcome=\"{o}\"}}")]
    };
    assert_eq!(
        (runs("ran"), runs("skipped"), runs("failed")),
        (2.0, 2999.0, 0.0)
    );

    // --history still shows that success, first, before the kept 1000 (into a file: more
    // than a pipe holds).
    h.sh(
        &at(3000),
        "baton-run --history every_minute --json > history.out",
    )
    .run()
    .status(0);
    let out = std::fs::read_to_string(h.dir.join("history.out")).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1001);
    let first: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(first["outcome"], "repaired");
    assert_eq!(first["start"], at(2000));
}

#[test]
fn ping_puts_fail_before_the_query_and_refuses_urls_the_client_would() {
    let h = Host::new("pingq");
    let (addr, requests) = ping_listener(false);
    let url = format!("http://{addr}/uuid?rid=abc");
    for (cmd, status, line) in [
        ("true", 0, "GET /uuid?rid=abc HTTP/1.1"),
        ("false", 1, "GET /uuid/fail?rid=abc HTTP/1.1"),
    ] {
        h.at("baton-run", "2012-01-24T16:00:00Z")
            .args(["-q", "--lock", "q", "--ping", &url, "--", cmd])
            .run()
            .status(status);
        assert_eq!(
            requests.recv_timeout(Duration::from_secs(10)).unwrap(),
            line
        );
    }
    // Refused before the job runs: one line, exit 2, nothing run or recorded.
    for (bad, why) in [
        ("http://[::1", "invalid IPv6 address"),
        ("http://[::1]:99999/p", "invalid port number"),
        ("http://127.0.0.1:0/p", "port 0"),
        ("http://:80/p", "empty host"),
        ("http:///p", "the URL has no host"),
        ("ftp://127.0.0.1/p", "give an http:// or https:// URL"),
        ("http://exa mple.com/p", "the URL holds white space"),
    ] {
        h.at("baton-run", "2012-01-24T16:00:00Z")
            .args(["--lock", "refused", "--ping", bad, "--", "touch", "ran"])
            .run()
            .error("baton-run", &format!("--ping '{bad}': {why}"));
    }
    assert!(!h.dir.join("ran").exists(), "the job never ran");
    assert!(!h.state().join("history/refused.jsonl").exists());
}
