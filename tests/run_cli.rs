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
    // A skip by a rule is the normal case: silent, and the reason is in the history.
    tick("2012-01-24T16:05:00Z").status(76).stderr_is("");
    tick("2012-01-24T17:39:59Z").status(76);
    tick("2012-01-24T17:40:00Z").status(0);
    let outcomes: Vec<String> = history(&h, "daily")
        .iter()
        .map(|r| r["outcome"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(outcomes, ["repaired", "skipped", "skipped", "repaired"]);
    assert_eq!(
        history(&h, "daily")[1]["reason"],
        "skipped daily: last started 5m ago, --ifelapsed 100m"
    );
    assert_eq!(
        std::fs::read_to_string(h.dir.join("runs")).unwrap(),
        "ran\nran\n"
    );
    h.at("baton-signal", "2012-01-24T17:40:00Z")
        .args(["list", "--names"])
        .run()
        .stdout_is("daily_skipped\n");
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
    // Before any run: a "no" that names the state dir it read, never silence.
    h.at("baton-run", T0)
        .arg("--history")
        .run()
        .status(1)
        .says("baton-run", "--history: no job has run here (in ");
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
    assert_eq!(lines.len(), 6);
    assert_eq!(lines[0], "START END JOB OUTCOME STATUS RUN REASON");
    assert!(lines[1].starts_with("2012-01-24T16:00:00Z "), "{lines:?}");
    assert!(lines[5].contains(" b failed 1 "), "{lines:?}");
    h.at("baton-run", T0)
        .args(["--history", "a", "--limit", "1"])
        .run()
        .status(0);
    h.at("baton-run", T0)
        .args(["--history", "nosuch"])
        .run()
        .status(1)
        .says("baton-run", "no job named 'nosuch' has run here");
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

/// The process whose pid the job wrote into `file` is gone.
fn assert_dead(h: &Host, file: &str) {
    let pid = std::fs::read_to_string(h.dir.join(file)).unwrap();
    assert!(
        !crate::util::process_alive(&pid),
        "{file}: {} survived",
        pid.trim()
    );
}

/// The lines of a failure report: one `baton-run:` line, then the end of the output.
fn failure_report(run: &crate::util::Run, head: &str, output: &str) {
    let err = run.stderr();
    let (first, rest) = err.split_once('\n').unwrap_or((&err, ""));
    assert!(
        first.starts_with(head) && first.contains(" (log ") && first.ends_with(".log)"),
        "{err}"
    );
    assert_eq!(rest, output, "{err}");
}

#[test]
fn failures_speak_with_or_without_q_and_successes_stay_silent() {
    let h = Host::new("h");
    for q in [&[][..], &["-q"][..]] {
        let run = h
            .at("baton-run", T0)
            .args(q)
            .args([
                "--lock",
                "j",
                "--",
                "sh",
                "-c",
                "echo working; echo disk full >&2; exit 1",
            ])
            .run()
            .status(1);
        failure_report(
            &run,
            "baton-run: j failed with exit status 1 after ",
            "working\ndisk full\n",
        );
        assert_eq!(run.stdout(), "");
        // The line names the run's log, which holds the same output.
        let first = run.stderr().lines().next().unwrap().to_string();
        let log = first.rsplit_once("(log ").unwrap().1.trim_end_matches(')');
        assert_eq!(
            std::fs::read_to_string(log).unwrap(),
            "working\ndisk full\n"
        );
    }
    let run = h
        .at("baton-run", T0)
        .args(["-q", "--", "sh", "-c", "echo $$ > pid; kill -9 $$"])
        .run()
        .status(137);
    failure_report(&run, "baton-run: sh_", "");
    assert!(
        run.stderr().contains(" was killed by SIGKILL after "),
        "{}",
        run.stderr()
    );
    // Only the end of a long output: the last 20 lines.
    let run = h
        .at("baton-run", T0)
        .args([
            "--",
            "sh",
            "-c",
            "i=1; while [ $i -le 30 ]; do echo line $i; i=$((i+1)); done; exit 3",
        ])
        .run()
        .status(3);
    let want: String = (11..=30).map(|i| format!("line {i}\n")).collect();
    failure_report(&run, "baton-run: sh_", &want);
    for q in [&[][..], &["-q"][..]] {
        h.at("baton-run", T0)
            .args(q)
            .args(["--", "sh", "-c", "echo all is well; echo noise >&2"])
            .run()
            .status(0)
            .stdout_is("")
            .stderr_is("");
    }
}

#[test]
fn a_job_that_leaves_its_session_still_dies_at_the_timeout() {
    let h = Host::new("h");
    let run = h
        .sh(
            T0,
            "baton-run --lock esc --timeout 1s --grace 1s -- sh -c 'setsid sh -c \"echo \\$\\$ > escaped; exec sleep 311\" & echo $$ > shell; sleep 312'",
        )
        .run()
        .status(124);
    failure_report(
        &run,
        "baton-run: esc timed out after 1s and was killed; ended 3 processes",
        "",
    );
    for f in ["escaped", "shell"] {
        assert_dead(&h, f);
    }
    // The next tick starts alone, and its leftovers are ended when it returns.
    h.sh(
        T0,
        "baton-run --lock esc --grace 1s -- sh -c 'setsid sh -c \"echo \\$\\$ > left; exec sleep 313\" & while [ ! -s left ]; do sleep 0.01; done'",
    )
    .run()
    .status(0)
    .stderr_is("");
    assert_dead(&h, "left");
    let r = history(&h, "esc");
    assert_eq!(r[1]["reason"], "ended 1 leftover process");
}

#[test]
fn a_job_that_ignores_term_is_killed() {
    let h = Host::new("h");
    let run = h
        .sh(
            T0,
            "baton-run --lock deaf --timeout 1s --grace 1s -- sh -c 'trap \"\" TERM; echo $$ > pid; echo deaf; while :; do sleep 1; done'",
        )
        .run()
        .status(124);
    assert!(
        run.stderr()
            .starts_with("baton-run: deaf timed out after 1s and was killed; ended "),
        "{}",
        run.stderr()
    );
    assert!(run.stderr().ends_with(".log)\ndeaf\n"), "{}", run.stderr());
    assert_dead(&h, "pid");
}

#[test]
fn a_baton_run_sent_term_ends_its_job_and_records_it() {
    let h = Host::new("h");
    // timeout(1) stops baton-run long before its own --timeout: the job must not be orphaned.
    let run = h
        .sh(T0, "timeout 2 baton-run --lock t --timeout 5m --grace 1s -- sh -c 'echo $$ > pid; exec sleep 31'")
        .run()
        .status(124);
    failure_report(&run, "baton-run: t was stopped after ", "");
    assert!(
        run.stderr()
            .contains(": baton-run got SIGTERM; ended 1 process (log "),
        "{}",
        run.stderr()
    );
    assert_dead(&h, "pid");
    let r = history(&h, "t");
    assert_eq!(r.len(), 1);
    assert_eq!(
        (r[0]["outcome"].as_str(), r[0]["status"].as_u64()),
        (Some("failed"), Some(143))
    );
    assert_eq!(
        r[0]["reason"],
        "baton-run got SIGTERM; ended 1 leftover process"
    );
}

#[test]
fn expireafter_takes_over_from_a_run_sleeping_between_retries_and_only_once() {
    let h = Host::new("h");
    let first = std::process::Command::new(crate::util::bin("baton-run"))
        .args(["--lock", "b", "--retries", "3", "--backoff", "1h", "--"])
        .args(["sh", "-c", "echo try >> tries; exit 1"])
        .current_dir(&h.dir.path)
        .env("BATON_STATE_DIR", h.state())
        .env("BATON_HOST", "h")
        .env("BATON_NOW", T0)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("the first try to fail", Duration::from_secs(20), || {
        std::fs::read_to_string(h.dir.join("tries")).is_ok_and(|t| t == "try\n")
            && history_file_has_no(&h, "b")
            && std::fs::read_to_string(h.state().join("jobs/b.json"))
                .is_ok_and(|s| s.contains("\"running\":{"))
    });
    // Two ticks at once, both past --expireafter: exactly one takes over.
    let taker = |_: usize| {
        let h = &h;
        move || {
            h.sh(
                "2012-01-24T18:00:00Z",
                "baton-run --lock b --expireafter 30m --grace 1s -- sh -c 'echo took >> took; while [ ! -e release ]; do sleep 0.05; done'",
            )
            .run()
        }
    };
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(taker(0));
        let b = s.spawn(taker(1));
        // Release the winner once it runs and the loser has answered.
        wait_until(
            "one tick to take over, one to be busy",
            Duration::from_secs(30),
            || {
                h.dir.join("took").exists()
                    && std::fs::read_to_string(h.state().join("history/b.jsonl"))
                        .is_ok_and(|t| t.contains("\"outcome\":\"busy\""))
            },
        );
        std::fs::write(h.dir.join("release"), b"").unwrap();
        (a.join().unwrap(), b.join().unwrap())
    });
    let mut codes = [a.code(), b.code()];
    codes.sort_unstable();
    assert_eq!(codes, [0, 75], "{}\n{}", a.stderr(), b.stderr());
    let (winner, loser) = if a.code() == 0 { (&a, &b) } else { (&b, &a) };
    assert!(
        winner
            .stderr()
            .starts_with("baton-run: took over from run 20120124T160000Z-")
            && winner.stderr().ends_with(" past --expireafter 30m\n"),
        "{}",
        winner.stderr()
    );
    assert!(
        loser.stderr().starts_with("baton-run: b is busy: "),
        "{}",
        loser.stderr()
    );
    assert_eq!(
        std::fs::read_to_string(h.dir.join("took")).unwrap(),
        "took\n"
    );
    let out = first.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(143),
        "the taken-over run died of TERM"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("b was stopped after "),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(h.dir.join("tries")).unwrap(),
        "try\n"
    );
    // One record per tick: the taken-over run, the busy tick, the run that took over.
    let mut outcomes: Vec<String> = history(&h, "b")
        .iter()
        .map(|r| format!("{} {}", r["outcome"].as_str().unwrap(), r["status"]))
        .collect();
    outcomes.sort();
    assert_eq!(outcomes, ["busy 75", "failed 143", "repaired 0"]);
}

fn history_file_has_no(h: &Host, job: &str) -> bool {
    !h.state().join(format!("history/{job}.jsonl")).exists()
}

/// The moment a run being taken over has let go of the job's lock and the tick taking
/// over has not yet taken it: a tick that finds the lock free then must leave it to the
/// taker (which holds the take-over lock, as this test does) and be busy, not run the job
/// and leave the taker waiting in vain for the lock.
#[test]
fn a_tick_that_finds_the_lock_free_during_a_take_over_leaves_it_to_the_taker() {
    use std::os::unix::fs::OpenOptionsExt;
    let h = Host::new("h");
    let run = h
        .at("baton-run", T0)
        .args(["--lock", "b", "--", "true"])
        .run();
    assert_eq!(run.code(), 0, "{}", run.stderr());
    let taker = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(h.state().join("jobs/b.takeover"))
        .unwrap();
    rustix::fs::fcntl_lock(&taker, rustix::fs::FlockOperation::NonBlockingLockExclusive).unwrap();
    for args in [
        &["--lock", "b", "--", "touch", "ran"][..],
        &["--lock", "b", "--expireafter", "1m", "--", "touch", "ran"],
    ] {
        h.at("baton-run", "2012-01-24T18:00:00Z")
            .args(args)
            .run()
            .status(75)
            .stderr_is("baton-run: b is busy: another tick is taking over from its expired run\n");
    }
    assert!(!h.dir.join("ran").exists());
    // The take-over done, the next tick runs.
    drop(taker);
    let run = h
        .at("baton-run", "2012-01-24T18:05:00Z")
        .args(["--lock", "b", "--", "touch", "ran"])
        .run();
    assert_eq!(run.code(), 0, "{}", run.stderr());
    assert!(h.dir.join("ran").exists());
    let outcomes: Vec<_> = history(&h, "b")
        .iter()
        .map(|r| r["outcome"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(outcomes, ["repaired", "busy", "busy", "repaired"]);
}

#[test]
fn a_recorded_pid_that_now_names_a_stranger_is_neither_busy_nor_killed() {
    let h = Host::new("h");
    // A run whose baton-run and job both died (a crash, a reboot) leaves its record.
    let mut runner = std::process::Command::new(crate::util::bin("baton-run"))
        .args([
            "--lock",
            "r",
            "--",
            "sh",
            "-c",
            "echo $$ > pid; exec sleep 300",
        ])
        .current_dir(&h.dir.path)
        .env("BATON_STATE_DIR", h.state())
        .env("BATON_HOST", "h")
        .env("BATON_NOW", T0)
        .spawn()
        .unwrap();
    wait_until("the job to start", Duration::from_secs(20), || {
        std::fs::read_to_string(h.state().join("jobs/r.json"))
            .is_ok_and(|s| !s.contains("\"pid\":0"))
            && h.dir.join("pid").exists()
    });
    let job: i32 = std::fs::read_to_string(h.dir.join("pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    runner.kill().unwrap();
    runner.wait().unwrap();
    std::process::Command::new("kill")
        .args(["-9", &job.to_string()])
        .status()
        .unwrap();
    // Dead and reaped (by init, its parent now): only then is the pid free again.
    wait_until(
        "the job to die and be reaped",
        Duration::from_secs(20),
        || !h.dir.join(format!("/proc/{job}")).exists(),
    );
    // A stranger gets the recorded pid (and leads its own group, as the job did).
    let stranger = spawn_with_pid(job);
    let Some(mut stranger) = stranger else {
        // Only root may steer the kernel's next pid; CI runs as root.
        eprintln!("skipped: cannot write /proc/sys/kernel/ns_last_pid (not root)");
        return;
    };
    let tick = |at: &str| {
        h.at("baton-run", at)
            .args([
                "--lock",
                "r",
                "--expireafter",
                "1m",
                "--grace",
                "1s",
                "--",
                "true",
            ])
            .run()
    };
    tick("2012-01-24T17:00:00Z").status(0).stderr_is("");
    tick("2012-01-24T17:05:00Z").status(0).stderr_is("");
    assert!(
        stranger.try_wait().unwrap().is_none(),
        "the stranger was killed"
    );
    let _ = stranger.kill();
    let _ = stranger.wait();
}

/// Start `sleep 300` as pid `pid` in its own process group, steering the kernel through
/// /proc/sys/kernel/ns_last_pid (root only); bounded retries, as other processes fork too.
fn spawn_with_pid(pid: i32) -> Option<std::process::Child> {
    use std::os::unix::process::CommandExt;
    for _ in 0..200 {
        std::fs::write("/proc/sys/kernel/ns_last_pid", format!("{}", pid - 1)).ok()?;
        let mut child = std::process::Command::new("sleep")
            .arg("300")
            .process_group(0)
            .spawn()
            .unwrap();
        if child.id() as i32 == pid {
            return Some(child);
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!(
        "could not get pid {pid} in 200 tries: {:?}",
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
    );
}

#[test]
fn disk_full_mid_job_still_times_out_ends_the_job_and_says_what_was_lost() {
    let h = Host::new("h");
    let state = h.state();
    std::fs::create_dir_all(&state).unwrap();
    // A 1 MiB tmpfs as the state dir (mounting needs root; CI runs as root).
    let mounted = std::process::Command::new("mount")
        // mode=0700: a state dir others may write is refused (core::safefs).
        .args(["-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs"])
        .arg(&state)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        let uid = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap());
        assert_ne!(uid, 0, "root could not mount a tmpfs");
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(state.clone());
    let job = "echo $$ > pid; head -c 2M /dev/zero > \"$BATON_STATE_DIR/fill\"; echo disk full >&2; sleep 300";
    let run = h
        .sh(
            T0,
            &format!("baton-run --lock fill --timeout 2s --grace 1s --on-failed fill_failed -- sh -c '{job}'"),
        )
        .run()
        .status(73);
    let err = run.stderr();
    let lines: Vec<&str> = err.lines().collect();
    assert!(
        lines[0].starts_with("baton-run: the log of fill run 20120124T160000Z-")
            && lines[0].ends_with(" is incomplete: no space left on device"),
        "{err}"
    );
    assert!(
        lines[1].starts_with(
            "baton-run: fill ran (exit status 124) but its outcome could not be recorded: "
        ),
        "{err}"
    );
    assert!(
        lines[2].starts_with("baton-run: fill timed out after 2s and was killed; ended "),
        "{err}"
    );
    assert!(
        err.ends_with(": No space left on device\ndisk full\n"),
        "{err}"
    );
    assert_dead(&h, "pid");
    // Space again: the next tick runs (nothing is busy), and records the lost run.
    std::fs::remove_file(state.join("fill")).unwrap();
    h.at("baton-run", "2012-01-24T16:05:00Z")
        .args(["--lock", "fill", "--", "true"])
        .run()
        .status(0)
        .stderr_is("");
    let last: Vec<String> = history(&h, "fill")
        .iter()
        .rev()
        .take(2)
        .map(|r| format!("{} {}", r["outcome"].as_str().unwrap(), r["status"]))
        .collect();
    assert_eq!(last, ["repaired 0", "failed 73"]);
}

#[test]
fn a_torn_history_line_costs_only_itself() {
    let h = Host::new("h");
    h.at("baton-run", T0)
        .args(["--lock", "t", "--", "true"])
        .run()
        .status(0);
    h.at("baton-run", T0)
        .args(["--lock", "u", "--", "true"])
        .run()
        .status(0);
    // A write cut short by a full disk or a crash: half a record, bytes that are not UTF-8.
    let file = h.state().join("history/t.jsonl");
    let mut bytes = std::fs::read(&file).unwrap();
    bytes.extend_from_slice(b"{\"version\":1,\"job\":\"t\",\"ru\xff\xfe");
    std::fs::write(&file, bytes).unwrap();
    h.at("baton-run", "2012-01-24T16:01:00Z")
        .args(["--lock", "t", "--", "true"])
        .run()
        .status(0);
    assert_eq!(history(&h, "t").len(), 2);
    let all = h
        .at("baton-run", T0)
        .arg("--history")
        .run()
        .status(0)
        .stderr_is("");
    assert_eq!(all.lines().len(), 1 + 3, "{}", all.stdout());
}

#[test]
fn history_finds_a_job_by_the_name_the_user_gave() {
    let h = Host::new("h");
    h.at("baton-run", T0)
        .args(["--", "/bin/true"])
        .run()
        .status(0);
    let run = h
        .at("baton-run", T0)
        .args(["--history", "true"])
        .run()
        .status(0)
        .stderr_is("");
    let lines = run.lines();
    assert_eq!(lines[0], "START END JOB OUTCOME STATUS RUN REASON");
    // The program's base name and a hash of the whole command line.
    let job = lines[1].split(' ').nth(2).unwrap().to_string();
    assert!(
        job.starts_with("true_") && job.len() == "true_".len() + 16,
        "{lines:?}"
    );
    assert!(lines[1].contains(" repaired 0 "), "{lines:?}");
    assert_eq!(lines.len(), 2);
    h.at("baton-run", T0)
        .args(["--history", "/bin/true"])
        .run()
        .status(0);
    h.at("baton-run", T0)
        .args(["--", "/usr/bin/true"])
        .run()
        .status(0);
    // Now `true` may mean either: both are named.
    let run = h.at("baton-run", T0).args(["--history", "true"]).run();
    let err = run.stderr();
    let run = run.error("baton-run", "--history: 'true' may mean any of true_");
    assert!(
        err.contains(", true_") && err.ends_with(": name one\n"),
        "{}",
        run.stderr()
    );
    // The derived name, exactly, is not ambiguous.
    h.at("baton-run", T0)
        .args(["--history", &job])
        .run()
        .status(0);
}

#[test]
fn derived_job_names_never_carry_the_arguments() {
    let h = Host::new("h");
    let secret = ["--user=root", "--password=hunter2"];
    h.at("baton-run", T0)
        .args(["--", "/bin/true"])
        .args(secret)
        .run()
        .status(0);
    let jobs = || {
        let run = h.at("baton-run", T0).arg("--history").run().status(0);
        let mut jobs: Vec<String> = run.lines()[1..]
            .iter()
            .map(|l| l.split(' ').nth(2).unwrap().to_string())
            .collect();
        jobs.sort();
        jobs.dedup();
        jobs
    };
    let new = jobs();
    assert_eq!(new.len(), 1);
    let (readable, hash) = new[0].rsplit_once('_').unwrap();
    assert_eq!(readable, "true", "{new:?}");
    assert!(hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()));
    let files = std::fs::read_dir(h.state().join("history")).unwrap();
    for f in files {
        let name = f.unwrap().file_name().into_string().unwrap();
        assert!(
            !name.contains("hunter2") && !name.contains("password"),
            "{name}"
        );
    }
    // The same arguments again: the same job (the hash is of the whole command line).
    h.at("baton-run", "2012-01-24T16:01:00Z")
        .args(["--", "/bin/true"])
        .args(secret)
        .run()
        .status(0);
    assert_eq!(history(&h, &new[0]).len(), 2);

    // A state dir an earlier version used: its history of this command is under the name
    // that version derived from the whole command line, and stays there. `--history`
    // lists both; `--history true` means this version's; the old one by its name.
    let old = format!("bin_true___user_root___password_hunter2_{hash}");
    let text = std::fs::read_to_string(h.state().join(format!("history/{}.jsonl", new[0])))
        .unwrap()
        .replace(&new[0], &old);
    std::fs::write(h.state().join(format!("history/{old}.jsonl")), text).unwrap();
    let mut both = vec![new[0].clone(), old.clone()];
    both.sort();
    assert_eq!(jobs(), both);
    assert_eq!(history(&h, "true").len(), 2);
    assert_eq!(history(&h, &old).len(), 2);
    assert!(history(&h, "true")
        .iter()
        .all(|r| r["job"] == new[0].as_str()));
}

#[test]
fn withdraw_on_failure_clears_the_success_signal() {
    let h = Host::new("h");
    let tick = |at: &str, cmd: &str| {
        h.at("baton-run", at)
            .args([
                "-q",
                "--lock",
                "w",
                "--on-repaired",
                "did_w",
                "--ttl",
                "1d",
                "--withdraw-on-failure",
                "--",
                "sh",
                "-c",
                cmd,
            ])
            .run()
    };
    tick(T0, "true").status(0).stderr_is("");
    h.at("baton-signal", "2012-01-24T16:05:00Z")
        .args(["list", "--names"])
        .run()
        .stdout_is("did_w\n");
    tick("2012-01-24T17:00:00Z", "exit 4").status(4);
    h.at("baton-signal", "2012-01-24T17:05:00Z")
        .args(["list", "--names"])
        .run()
        .status(1)
        .stdout_is("");
    // Without the option, a failure leaves the earlier success standing.
    h.at("baton-run", "2012-01-24T18:00:00Z")
        .args([
            "--lock",
            "v",
            "--on-repaired",
            "did_v",
            "--ttl",
            "1d",
            "--",
            "true",
        ])
        .run()
        .status(0);
    h.at("baton-run", "2012-01-24T18:01:00Z")
        .args(["-q", "--lock", "v", "--on-repaired", "did_v", "--", "false"])
        .run()
        .status(1);
    h.at("baton-signal", "2012-01-24T18:05:00Z")
        .args(["list", "--names"])
        .run()
        .stdout_is("did_v\n");
    h.at("baton-run", T0)
        .args(["--withdraw-on-failure", "--", "true"])
        .run()
        .error(
            "baton-run",
            "--withdraw-on-failure needs an --on-repaired class",
        );
}

#[test]
fn logs_keep_their_head_and_tail_within_the_limit() {
    let h = Host::new("h");
    h.at("baton-run", T0)
        .args([
            "--lock",
            "big",
            "--log-limit",
            "4k",
            "--",
            "sh",
            "-c",
            "i=1; while [ $i -le 3000 ]; do echo line $i; i=$((i+1)); done",
        ])
        .run()
        .status(0)
        .stderr_is("");
    let r = history(&h, "big");
    let log = std::fs::read_to_string(r[0]["log"].as_str().unwrap()).unwrap();
    assert!(log.len() <= 4096 + 100, "{}", log.len());
    assert!(log.starts_with("line 1\nline 2\n"), "{log}");
    assert!(log.ends_with("line 2999\nline 3000\n"), "{log}");
    assert!(
        log.contains(" bytes left out of this log, see --log-limit]\n"),
        "{log}"
    );
    h.at("baton-run", T0)
        .args(["--log-limit", "12", "--", "true"])
        .run()
        .error("baton-run", "below the least, 1k");
}

/// `--condition` decides the tick as systemd's ExecCondition= decides a start: 0 runs,
/// 1 skips silently (no `--on-skipped` class), anything else fails the tick before
/// running. Every tick is in the history with its reason, even when nothing ran. The
/// condition runs on the runner's clock and host.
#[test]
fn a_condition_decides_the_tick_and_every_tick_leaves_its_reason() {
    let h = Host::new("host2");
    let tick = |at: &str, condition: &str| {
        h.at("baton-run", at)
            .args([
                "--lock",
                "follow",
                "--on-skipped",
                "follow_skipped",
                "--condition",
                condition,
                "--",
                "sh",
                "-c",
                "echo ran >> ran",
            ])
            .run()
    };
    // On the runner's clock: 16:05 is Hr16, 17:05 is not.
    tick("2012-01-24T16:05:00Z", "baton-if host2.Hr16")
        .status(0)
        .stderr_is("");
    tick("2012-01-24T17:05:00Z", "baton-if host2.Hr16")
        .status(76)
        .stderr_is("");
    // An upstream that cannot be asked: baton-query alone fails the tick (2) ...
    let refused = "baton-query: cannot ask 127.0.0.1:1: connection refused";
    tick("2012-01-24T17:10:00Z", "baton-query 127.0.0.1:1 did_my_job")
        .status(2)
        .stderr_is(&format!(
            "{refused}\nbaton-run: follow: --condition exited with status 2, so the job did not run: {refused}\n"
        ));
    // ... in a pipeline the last command decides: skipped, and baton-query's line said.
    let run = tick(
        "2012-01-24T17:15:00Z",
        "baton-query 127.0.0.1:1 'did.*' | baton-if --stdin did_my_job",
    )
    .status(76);
    assert!(
        run.stderr()
            .starts_with("baton-query: cannot ask 127.0.0.1:1"),
        "{}",
        run.stderr()
    );
    // Its stdout is not cron mail; what it says on stderr is, whatever it answers.
    tick("2012-01-24T17:20:00Z", "echo names; exit 1")
        .status(76)
        .stderr_is("");
    tick(
        "2012-01-24T17:25:00Z",
        "echo warned >&2; echo names; exit 1",
    )
    .status(76)
    .stderr_is("warned\n");
    assert_eq!(std::fs::read_to_string(h.dir.join("ran")).unwrap(), "ran\n");
    h.at("baton-signal", T0)
        .args(["list", "follow_skipped"])
        .run()
        .status(1);

    let r = history(&h, "follow");
    let ticks: Vec<(&str, i64)> = r
        .iter()
        .map(|r| {
            (
                r["outcome"].as_str().unwrap(),
                r["status"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        ticks,
        [
            ("repaired", 0),
            ("skipped", 76),
            ("error", 2),
            ("skipped", 76),
            ("skipped", 76),
            ("skipped", 76)
        ]
    );
    assert_eq!(
        r[5]["reason"],
        "skipped follow: --condition is false: warned"
    );
    assert_eq!(r[1]["reason"], "skipped follow: --condition is false");
    assert!(
        r[2]["reason"].as_str().unwrap().ends_with(
            "so the job did not run: baton-query: cannot ask 127.0.0.1:1: connection refused"
        ),
        "{}",
        r[2]["reason"]
    );
    assert!(
        r[3]["reason"]
            .as_str()
            .unwrap()
            .starts_with("skipped follow: --condition is false: baton-query: cannot ask"),
        "{}",
        r[3]["reason"]
    );
    // The table says why, last on each line.
    let table = h
        .at("baton-run", T0)
        .args(["--history", "follow"])
        .run()
        .status(0)
        .lines();
    assert!(
        table[2].contains(" follow skipped 76 ")
            && table[2].ends_with(" skipped follow: --condition is false"),
        "{table:?}"
    );
    assert!(table[1].ends_with(" -"), "{table:?}");
}

/// A condition that hangs is bounded by --timeout and leaves nothing running.
#[test]
fn a_hanging_condition_is_ended_at_the_timeout() {
    let h = Host::new("h");
    h.sh(
        T0,
        "baton-run --lock c --timeout 1s --grace 1s --condition 'setsid sh -c \"echo \\$\\$ > cond; exec sleep 314\" & wait' -- touch ran",
    )
    .run()
    .error(
        "baton-run",
        "c: --condition timed out after 1s and was killed, so the job did not run",
    );
    assert_dead(&h, "cond");
    assert!(!h.dir.join("ran").exists());
    assert_eq!(history(&h, "c")[0]["outcome"], "error");
}

/// The condition is asked under the job's lock, after a dead run's leftovers are ended:
/// a tick meanwhile is busy, and the run's age (for --expireafter, --ifelapsed and the
/// history) starts when the job does, not when the condition began.
#[test]
fn a_condition_is_asked_under_the_lock_and_its_time_is_not_the_runs() {
    let h = Host::new("h");
    h.set_clock("2012-01-24T16:00:00Z");
    let clock = h.dir.join("now");
    let run = |args: &[&str]| {
        let mut cmd = h.at("baton-run", "2012-01-24T16:00:00Z");
        cmd = cmd.env("BATON_NOW", &clock);
        cmd.args(args).run()
    };
    // The condition takes "seven minutes" (it moves the clock file), then says yes.
    let asks = format!(
        "echo 2012-01-24T16:07:00Z > {d}/now.tmp && mv {d}/now.tmp {d}/now",
        d = h.dir.path.display()
    );
    run(&["--lock", "j", "--condition", &asks, "--", "true"])
        .status(0)
        .stderr_is("");
    let r = history(&h, "j");
    assert_eq!(r[0]["start"], "2012-01-24T16:07:00Z");
    let state = std::fs::read_to_string(h.state().join("jobs/j.json")).unwrap();
    assert!(
        state.contains("\"last_start\":\"2012-01-24T16:07:00Z\""),
        "{state}"
    );

    // A condition still asking holds the job: the tick meanwhile is busy.
    let asking_file = h.dir.join("asking");
    let condition = format!("touch {}; sleep 300", asking_file.display());
    let mut first = h.at("baton-run", "2012-01-24T17:00:00Z").args([
        "--lock",
        "k",
        "--condition",
        &condition,
        "--",
        "true",
    ]);
    first
        .cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let asking = first.cmd.spawn().unwrap();
    wait_until("the condition to start", Duration::from_secs(20), || {
        asking_file.exists()
    });
    h.at("baton-run", "2012-01-24T17:00:00Z")
        .args(["--lock", "k", "--", "true"])
        .run()
        .status(75);
    // TERM to baton-run ends its condition; the tick is an error, recorded, and nothing
    // of the condition is left.
    std::process::Command::new("kill")
        .arg(asking.id().to_string())
        .status()
        .unwrap();
    let out = asking.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("k: --condition was stopped: baton-run got SIGTERM"),
        "{said}"
    );
    let r = history(&h, "k");
    let mut outcomes: Vec<&str> = r.iter().map(|r| r["outcome"].as_str().unwrap()).collect();
    outcomes.sort();
    assert_eq!(outcomes, ["busy", "error"]);
    h.at("baton-run", "2012-01-24T17:05:00Z")
        .args(["--lock", "k", "--", "true"])
        .run()
        .status(0)
        .stderr_is("");
}

/// The log a failure line names is there to read, even when a clock stepped back sorts
/// it before the logs `--keep-logs` keeps.
#[test]
fn the_log_a_failure_names_is_kept() {
    let h = Host::new("h");
    h.at("baton-run", "2012-01-24T16:00:00Z")
        .args(["--lock", "kl", "--keep-logs", "1", "--", "true"])
        .run()
        .status(0);
    let run = h
        .at("baton-run", "2012-01-24T15:00:00Z")
        .args([
            "--lock",
            "kl",
            "--keep-logs",
            "1",
            "--",
            "sh",
            "-c",
            "echo why; exit 1",
        ])
        .run()
        .status(1);
    let err = run.stderr();
    let log = err
        .split("(log ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap_or_else(|| panic!("no log named: {err}"));
    assert_eq!(std::fs::read_to_string(log).unwrap(), "why\n");
    let kept = std::fs::read_dir(h.state().join("logs/kl"))
        .unwrap()
        .count();
    assert_eq!(kept, 1);
}
