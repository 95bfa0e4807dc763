//! `baton-run` as cron calls it: locks, ifelapsed, timeouts, retries, once-per, signals,
//! history and logs.

use crate::util::{wait_until, Host};
use std::time::Duration;

const T0: &str = "2012-01-24T16:00:00Z";

fn history(h: &Host, job: &str) -> Vec<serde_json::Value> {
    let run = h
        .at("baton-run", T0)
        .args(["--history", job, "--json"])
        .run();
    run.lines()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn success_raises_signal_logs_and_records() {
    let h = Host::new("host1");
    h.at("baton-run", T0)
        .args([
            "--lock",
            "my_job",
            "--on-repaired",
            "did_my_job",
            "--on-failed",
            "my_job_failed",
            "--",
        ])
        .args([
            "sh",
            "-c",
            "echo out; echo err >&2; echo \"$BATON_JOB $BATON_HOST\"",
        ])
        .run()
        .status(0)
        .stdout_is("")
        .stderr_is("");
    h.at("baton-signal", "2012-01-24T16:05:00Z")
        .args(["list", "--names"])
        .run()
        .stdout_is("did_my_job\n");
    let records = history(&h, "my_job");
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["outcome"], "repaired");
    assert_eq!(records[0]["status"], 0);
    assert_eq!(records[0]["attempts"], 1);
    let log = std::fs::read_to_string(records[0]["log"].as_str().unwrap()).unwrap();
    assert_eq!(log, "out\nerr\nmy_job host1\n");
    // The signal names the run that raised it.
    let list = h.at("baton-signal", T0).args(["list", "--json"]).run();
    let sig: serde_json::Value = serde_json::from_str(&list.stdout()).unwrap();
    assert_eq!(sig[0]["run"], records[0]["run"]);
    // Whole seconds: raised at 16:00 for ten minutes, gone at 16:10 sharp.
    assert_eq!(sig[0]["expires_at"], "2012-01-24T16:10:00Z");
    h.at("baton-if", "2012-01-24T16:10:00Z")
        .arg("did_my_job")
        .run()
        .status(1);
}

#[test]
fn failure_passes_status_through_and_raises_failed() {
    let h = Host::new("h");
    h.at("baton-run", T0)
        .args([
            "--on-repaired",
            "ok",
            "--on-failed",
            "bad",
            "--",
            "sh",
            "-c",
            "exit 3",
        ])
        .run()
        .status(3);
    h.at("baton-signal", T0)
        .args(["list", "--names"])
        .run()
        .stdout_is("bad\n");
    h.at("baton-run", T0)
        .args(["--on-failed", "gone", "--", "/nonexistent/job"])
        .run()
        .status(127)
        .says("baton-run", "cannot run '/nonexistent/job'");
    h.at("baton-signal", T0)
        .args(["list", "--names", "gone"])
        .run()
        .status(0);
    h.at("baton-run", T0)
        .args(["--", "sh", "-c", "kill -9 $$"])
        .run()
        .status(137);
}

#[test]
fn the_job_can_raise_its_own_signals() {
    let h = Host::new("h");
    h.sh(
        T0,
        "baton-run --lock j -- sh -c 'baton-signal raise from_job --ttl 1h'",
    )
    .run()
    .status(0);
    let list = h.at("baton-signal", T0).args(["list", "--json"]).run();
    let sig: serde_json::Value = serde_json::from_str(&list.stdout()).unwrap();
    assert_eq!(sig[0]["name"], "from_job");
    assert_eq!(sig[0]["host"], "h");
    assert!(
        sig[0]["run"]
            .as_str()
            .unwrap()
            .starts_with("20120124T160000Z-"),
        "BATON_RUN reaches the job"
    );
}

#[test]
fn ifelapsed_runs_once_per_window() {
    let h = Host::new("h");
    let tick = |at: &str| {
        h.at("baton-run", at)
            .args([
                "--ifelapsed",
                "100",
                "--lock",
                "daily",
                "--on-skipped",
                "daily_skipped",
                "--",
            ])
            .args(["sh", "-c", "echo ran >> runs"])
            .run()
    };
    tick("2012-01-24T16:00:00Z").status(0);
    tick("2012-01-24T16:05:00Z")
        .status(76)
        .stderr_is("baton-run: skipped daily: last started 5m ago, --ifelapsed 100m\n");
    tick("2012-01-24T17:39:59Z").status(76);
    tick("2012-01-24T17:40:00Z").status(0);
    let outcomes: Vec<String> = history(&h, "daily")
        .iter()
        .map(|r| r["outcome"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(outcomes, ["repaired", "skipped", "skipped", "repaired"]);
    assert_eq!(
        std::fs::read_to_string(h.dir.join("runs")).unwrap(),
        "ran\nran\n"
    );
    h.at("baton-signal", "2012-01-24T17:40:00Z")
        .args(["list", "--names"])
        .run()
        .stdout_is("daily_skipped\n");
    // -q silences the skip line; the status still says skipped.
    h.at("baton-run", "2012-01-24T17:41:00Z")
        .args(["-q", "--ifelapsed", "100", "--lock", "daily", "--", "true"])
        .run()
        .status(76)
        .stderr_is("");
}

#[test]
fn a_second_tick_while_running_is_refused() {
    let h = Host::new("h");
    let script = "touch started; i=0; while [ ! -e release ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done";
    let mut first = h
        .at("baton-run", T0)
        .args(["--lock", "single", "--", "sh", "-c", script])
        .cmd
        .spawn()
        .unwrap();
    wait_until("the first run to start", Duration::from_secs(20), || {
        h.dir.join("started").exists()
    });
    let run = h
        .at("baton-run", "2012-01-24T16:05:00Z")
        .args(["--lock", "single", "--", "sh", "-c", "touch second_ran"])
        .run()
        .status(75);
    assert!(
        run.stderr().starts_with("baton-run: single is busy: "),
        "{}",
        run.stderr()
    );
    std::fs::write(h.dir.join("release"), b"").unwrap();
    assert!(first.wait().unwrap().success());
    assert!(!h.dir.join("second_ran").exists());
    let outcomes: Vec<String> = history(&h, "single")
        .iter()
        .map(|r| r["outcome"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(outcomes, ["repaired", "busy"]);
}

#[test]
fn timeout_kills_the_whole_process_group() {
    let h = Host::new("h");
    h.sh(T0, "baton-run --timeout 1s --grace 1s --on-failed slow_failed -- sh -c 'sleep 300 & echo $! > grandchild; sleep 300'")
        .run()
        .status(124)
        .says("baton-run", "timed out after 1s");
    let pid = std::fs::read_to_string(h.dir.join("grandchild"))
        .expect("the job wrote its background child's pid");
    assert!(
        !crate::util::process_alive(&pid),
        "background child {pid} outlived the time-out"
    );
    h.at("baton-signal", T0)
        .args(["list", "--names"])
        .run()
        .stdout_is("slow_failed\n");
}

#[test]
fn expireafter_kills_a_stuck_run_and_proceeds() {
    let h = Host::new("h");
    let stuck = "echo $$ > stuck.pid; sleep 300 & echo $! > stuck_child.pid; touch started; wait";
    let first = h
        .at("baton-run", T0)
        .args([
            "--lock", "nightly", "--grace", "1s", "--", "sh", "-c", stuck,
        ])
        .cmd
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("the stuck run to start", Duration::from_secs(20), || {
        h.dir.join("started").exists()
    });
    // Five minutes on, the lock is not yet expired: busy.
    h.sh(
        "2012-01-24T16:05:00Z",
        "baton-run --expireafter 30m --lock nightly --grace 1s -- touch second",
    )
    .run()
    .status(75);
    // An hour on, it is: the stuck run is killed and this tick runs.
    let run = h
        .sh(
            "2012-01-24T17:00:00Z",
            "baton-run --expireafter 30m --lock nightly --grace 1s -- touch second",
        )
        .run()
        .status(0);
    assert!(
        run.stderr().contains("past --expireafter 30m"),
        "{}",
        run.stderr()
    );
    assert!(h.dir.join("second").exists());
    let out = first.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(143), "the stuck run died of TERM");
    for f in ["stuck.pid", "stuck_child.pid"] {
        let pid = std::fs::read_to_string(h.dir.join(f)).unwrap();
        assert!(!crate::util::process_alive(&pid), "{f} {pid} survived");
    }
}

#[test]
fn retries_until_success() {
    let h = Host::new("h");
    let flaky = "n=$(cat count 2>/dev/null || echo 0); n=$((n+1)); echo $n > count; [ $n -ge 3 ]";
    h.sh(
        T0,
        &format!(
            "baton-run --lock flaky --retries 5 --backoff 0s --on-repaired ok -- sh -c '{flaky}'"
        ),
    )
    .run()
    .status(0);
    assert_eq!(
        std::fs::read_to_string(h.dir.join("count")).unwrap().trim(),
        "3"
    );
    let r = history(&h, "flaky");
    assert_eq!(
        (r[0]["attempts"].as_u64(), r[0]["outcome"].as_str()),
        (Some(3), Some("repaired"))
    );
    // Retries run out: the last failure is the status.
    h.sh(
        T0,
        "baton-run --lock never --retries 2 --backoff 0s -- sh -c 'echo x >> tries; exit 4'",
    )
    .run()
    .status(4);
    assert_eq!(
        std::fs::read_to_string(h.dir.join("tries")).unwrap(),
        "x\nx\nx\n"
    );
}

#[test]
fn once_per_fires_once_per_key_and_failures_do_not_count() {
    let h = Host::new("h2");
    let tick = |key: &str, cmd: &str| {
        h.sh(
            T0,
            &format!("baton-run --lock follow --once-per '{key}' -- sh -c '{cmd}'"),
        )
        .run()
    };
    tick("2012-01-24T16:47:00Z", "exit 1").status(1);
    tick("2012-01-24T16:47:00Z", "echo a >> ran").status(0);
    tick("2012-01-24T16:47:00Z", "echo b >> ran").status(76);
    tick("2012-01-25T16:47:00Z", "echo c >> ran").status(0);
    assert_eq!(
        std::fs::read_to_string(h.dir.join("ran")).unwrap(),
        "a\nc\n"
    );
    h.sh(T0, "baton-run --once-per '' -- true")
        .run()
        .error("baton-run", "--once-per");
}

#[test]
fn history_lists_every_job_and_logs_are_bounded() {
    let h = Host::new("h");
    for i in 0..4 {
        h.at("baton-run", &format!("2012-01-24T16:0{i}:00Z"))
            .args(["--lock", "a", "--keep-logs", "2", "--", "echo", "x"])
            .run()
            .status(0);
    }
    h.at("baton-run", "2012-01-24T17:00:00Z")
        .args(["--lock", "b", "--", "false"])
        .run()
        .status(1);
    let run = h.at("baton-run", T0).arg("--history").run().status(0);
    let lines = run.lines();
    assert_eq!(lines.len(), 5);
    assert!(lines[0].starts_with("2012-01-24T16:00:00Z "), "{lines:?}");
    assert!(lines[4].contains(" b failed 1 "), "{lines:?}");
    h.at("baton-run", T0)
        .args(["--history", "a", "--limit", "1"])
        .run()
        .status(0);
    h.at("baton-run", T0)
        .args(["--history", "nosuch"])
        .run()
        .status(1);
    let logs = std::fs::read_dir(h.state().join("logs/a")).unwrap().count();
    assert_eq!(logs, 2);
}

#[test]
fn bad_input() {
    let h = Host::new("h");
    h.at("baton-run", T0).run().error("baton-run", "CMD");
    h.at("baton-run", T0)
        .args(["--ifelapsed", "often", "--", "true"])
        .run()
        .error("baton-run", "invalid duration");
    h.at("baton-run", T0)
        .args(["--on-repaired", "a-b", "--", "true"])
        .run()
        .error("baton-run", "outcome class");
    h.at("baton-run", T0)
        .args(["--lock", "../x", "--", "true"])
        .run()
        .error("baton-run", "--lock");
    h.at("baton-run", T0)
        .args(["--timeout", "0", "--", "true"])
        .run()
        .error("baton-run", "--timeout");
    h.at("baton-run", T0)
        .args(["--history", "a/b"])
        .run()
        .error("baton-run", "--history");
    assert!(
        !h.state().join("jobs").exists(),
        "nothing was written for bad input"
    );
    // A store that cannot be used is an error before the job runs, not after.
    h.sh(
        T0,
        "baton-run --store etcd://nonsense --on-repaired ok -- touch ran",
    )
    .run()
    .error("baton-run", "invalid store");
    assert!(!h.dir.join("ran").exists());
}

#[test]
fn a_job_acts_on_its_runners_clock_host_state_dir_and_store() {
    let h = Host::new("runner");
    let bins = crate::util::bin("baton-if").parent().unwrap().to_path_buf();
    let job =
        "baton-signal raise from_job && echo \"$BATON_NOW|$BATON_HOST|$BATON_STATE_DIR\" > env.txt";
    // Flags only, nothing in the environment: the job must still agree with its runner.
    let mut run =
        crate::util::baton("baton-run").env("PATH", format!("{}:/usr/bin:/bin", bins.display()));
    run.cmd.current_dir(&h.dir.path);
    run.args([
        "--at",
        "2012-01-24 16:00",
        "--host",
        "runner",
        "--state-dir",
    ])
    .arg(h.state())
    .args(["--lock", "j", "--", "sh", "-c", job])
    .run()
    .status(0);
    let env = std::fs::read_to_string(h.dir.join("env.txt")).unwrap();
    assert_eq!(
        env.trim(),
        format!("2012-01-24T16:00:00Z|runner|{}", h.state().display())
    );
    let listed = h
        .at("baton-signal", "2012-01-24T16:00:00Z")
        .args(["list", "--json"])
        .run()
        .status(0);
    let signals: serde_json::Value = serde_json::from_str(&listed.stdout()).unwrap();
    assert_eq!(signals[0]["name"], "from_job");
    assert_eq!(
        signals[0]["set_at"], "2012-01-24T16:00:00Z",
        "raised at --at"
    );
    assert_eq!(signals[0]["host"], "runner");

    // A clock file is handed on as the file, so the job's clock moves with the runner's.
    h.set_clock("2012-01-24T17:00:00Z");
    let clock = h.dir.join("now");
    h.at("baton-run", &clock.display().to_string())
        .env("PATH", format!("{}:/usr/bin:/bin", bins.display()))
        .args(["--lock", "k", "--", "sh", "-c", job])
        .run()
        .status(0);
    let env = std::fs::read_to_string(h.dir.join("env.txt")).unwrap();
    assert!(env.starts_with(&format!("{}|", clock.display())), "{env}");
}
