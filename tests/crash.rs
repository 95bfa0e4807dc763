//! Crash and concurrency: processes killed with SIGKILL at any instant, and many cron
//! ticks at once, never leave a torn record, a stuck lock or a lost signal.

use crate::util::{bin, wait_until, Host};
use std::process::{Command, Stdio};
use std::time::Duration;

const T0: &str = "2012-01-24T16:00:00Z";

/// Each tick of `job` in the history: `OUTCOME STATUS`, oldest first.
fn outcomes(h: &Host, job: &str) -> Vec<String> {
    h.at("baton-run", T0)
        .args(["--history", job, "--json"])
        .run()
        .status(0)
        .lines()
        .iter()
        .map(|l| {
            let r: serde_json::Value = serde_json::from_str(l).unwrap();
            format!("{} {}", r["outcome"].as_str().unwrap(), r["status"])
        })
        .collect()
}

fn spawn(h: &Host, bin_name: &str, args: &[&str]) -> std::process::Child {
    let mut cmd = Command::new(bin(bin_name));
    crate::util::without_baton_env(&mut cmd);
    cmd.args(args)
        .current_dir(&h.dir.path)
        .env("BATON_STATE_DIR", h.state())
        .env("BATON_HOST", &h.name)
        .env("BATON_NOW", T0)
        .env("TZ", "UTC")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd.spawn().unwrap()
}

/// A spread of delays in microseconds, the same every run (no randomness in tests).
fn delays(n: u64) -> impl Iterator<Item = u64> {
    (0..n).map(|i| (i * 7919 + 13) % 4000)
}

#[test]
fn baton_run_killed_at_any_instant_leaves_no_stuck_lock_or_torn_record() {
    let h = Host::new("h");
    for (i, us) in delays(40).enumerate() {
        let mut child = spawn(
            &h,
            "baton-run",
            &["--lock", "j", "--on-repaired", "ok", "--", "true"],
        );
        std::thread::sleep(Duration::from_micros(us));
        let _ = child.kill();
        let _ = child.wait();
        // The job lock is an fcntl lock, owned by the baton-run process alone (a child
        // between fork and exec does not hold it): the kernel let go of it with the kill.
        // The next tick is never refused by a lock its dead predecessor held.
        h.at("baton-run", T0)
            .args(["--lock", "j", "--on-repaired", "ok", "--", "true"])
            .run()
            .status(0)
            .stderr_is("");
        // Every record reads back whole.
        let list = h
            .at("baton-signal", T0)
            .args(["list", "--names"])
            .run()
            .status(0);
        assert_eq!(list.stdout(), "ok\n", "kill {i}");
        assert_eq!(list.stderr(), "", "kill {i}");
    }
    let history = h
        .at("baton-run", T0)
        .args(["--history", "j", "--json"])
        .run()
        .status(0);
    // Each tick's record: the 40 that ran whole, and for each killed one that had taken
    // the lock, a record (written by the next tick) that its outcome was lost, or, if
    // its command had not started, that it ran nothing.
    let mut repaired = 0;
    for line in history.lines() {
        let r: serde_json::Value = serde_json::from_str(&line).unwrap();
        match r["outcome"].as_str().unwrap() {
            "repaired" => repaired += 1,
            "failed" => {
                assert_eq!(r["status"], 73, "{r}");
                assert!(
                    r["reason"]
                        .as_str()
                        .unwrap()
                        .starts_with("its baton-run ended before recording the outcome"),
                    "{r}"
                );
            }
            // Killed after taking the lock but before the command started: nothing ran.
            "error" => {
                assert_eq!(r["status"], 2, "{r}");
                assert!(
                    r["reason"]
                        .as_str()
                        .unwrap()
                        .starts_with("its baton-run ended before the job started"),
                    "{r}"
                );
            }
            other => panic!("unexpected outcome {other}: {r}"),
        }
    }
    assert!(repaired >= 40, "{}", history.stdout());
    let state = std::fs::read(h.state().join("jobs/j.json")).unwrap();
    let state: serde_json::Value = serde_json::from_slice(&state).unwrap();
    assert!(state["running"].is_null(), "{state}");
}

#[test]
fn what_a_killed_baton_run_left_running_is_ended_by_the_next_tick() {
    let h = Host::new("h");
    // The job's child leaves the process group and the session: only the run's marker
    // (and the subreaper, while baton-run lived) still ties it to the job.
    let script =
        "echo $$ > job.pid; setsid sh -c 'echo $$ > escaped.pid; exec sleep 300' & exec sleep 300";
    let mut runner = spawn(
        &h,
        "baton-run",
        &["--lock", "long", "--", "sh", "-c", script],
    );
    wait_until("the job to start", Duration::from_secs(20), || {
        ["job.pid", "escaped.pid"]
            .iter()
            .all(|f| std::fs::read_to_string(h.dir.join(f)).is_ok_and(|p| !p.trim().is_empty()))
            && std::fs::read_to_string(h.state().join("jobs/long.json"))
                .is_ok_and(|s| s.contains("\"pid_start\":") && !s.contains("\"pid_start\":0"))
    });
    runner.kill().unwrap();
    runner.wait().unwrap();
    let job = std::fs::read_to_string(h.dir.join("job.pid")).unwrap();
    let escaped = std::fs::read_to_string(h.dir.join("escaped.pid")).unwrap();
    assert!(crate::util::process_alive(&job) && crate::util::process_alive(&escaped));
    // The next tick ends both, says so, and runs.
    let run = h
        .at("baton-run", "2012-01-24T16:05:00Z")
        .args(["--lock", "long", "--grace", "1s", "--", "true"])
        .run()
        .status(0);
    assert!(
        run.stderr()
            .starts_with("baton-run: ended 2 processes left running by run 20120124T160000Z-")
            && run
                .stderr()
                .ends_with(" of long (started 2012-01-24T16:00:00Z), whose baton-run died\n")
            && run.lines().is_empty(),
        "{}",
        run.stderr()
    );
    for (what, pid) in [("job", &job), ("escaped child", &escaped)] {
        assert!(
            !crate::util::process_alive(pid),
            "the {what} {} survived",
            pid.trim()
        );
    }
    let history = h
        .at("baton-run", T0)
        .args(["--history", "long", "--json"])
        .run()
        .status(0);
    let outcomes: Vec<(String, u64)> = history
        .lines()
        .iter()
        .map(|l| {
            let r: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                r["outcome"].as_str().unwrap().to_string(),
                r["status"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        [("failed".to_string(), 73), ("repaired".to_string(), 0)]
    );
}

/// The tick that ends a dead run's leftovers records that run once, and forgets it even
/// when it then skips: the ticks after it do not end it and record it again.
#[test]
fn a_lost_run_is_recorded_once_when_the_ticks_after_it_skip() {
    let h = Host::new("h");
    let mut runner = spawn(
        &h,
        "baton-run",
        &[
            "--lock",
            "s",
            "--ifelapsed",
            "1h",
            "--",
            "sh",
            "-c",
            "echo $$ > job.pid; exec sleep 300",
        ],
    );
    wait_until("the job to start", Duration::from_secs(20), || {
        std::fs::read_to_string(h.dir.join("job.pid")).is_ok_and(|p| !p.trim().is_empty())
            && std::fs::read_to_string(h.state().join("jobs/s.json"))
                .is_ok_and(|s| s.contains("\"pid_start\":") && !s.contains("\"pid_start\":0"))
    });
    runner.kill().unwrap();
    runner.wait().unwrap();
    let job = std::fs::read_to_string(h.dir.join("job.pid")).unwrap();
    // Both ticks are within --ifelapsed of the lost run's start: both skip.
    let tick = |at: &str| {
        h.at("baton-run", at)
            .args([
                "--lock",
                "s",
                "--ifelapsed",
                "1h",
                "--grace",
                "1s",
                "--",
                "true",
            ])
            .run()
            .status(76)
    };
    let first = tick("2012-01-24T16:05:00Z");
    assert!(
        first
            .stderr()
            .starts_with("baton-run: ended 1 process left running by run 20120124T160000Z-"),
        "{}",
        first.stderr()
    );
    assert!(!crate::util::process_alive(&job), "the job survived");
    tick("2012-01-24T16:10:00Z").stderr_is("");
    assert_eq!(outcomes(&h, "s"), ["failed 73", "skipped 76", "skipped 76"]);
    let state = std::fs::read(h.state().join("jobs/s.json")).unwrap();
    let state: serde_json::Value = serde_json::from_slice(&state).unwrap();
    assert!(state["running"].is_null(), "{state}");
}

#[test]
fn many_ticks_at_once_run_the_job_exactly_once() {
    let h = Host::new("h");
    let children: Vec<_> = (0..20)
        .map(|_| {
            spawn(
                &h,
                "baton-run",
                &[
                    "--ifelapsed",
                    "1h",
                    "--lock",
                    "daily",
                    "--",
                    "sh",
                    "-c",
                    "echo ran >> ran",
                ],
            )
        })
        .collect();
    let mut statuses: Vec<i32> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap().status.code().unwrap())
        .collect();
    statuses.sort_unstable();
    assert_eq!(statuses[0], 0);
    assert!(
        statuses[1..].iter().all(|s| *s == 75 || *s == 76),
        "{statuses:?}"
    );
    assert_eq!(std::fs::read_to_string(h.dir.join("ran")).unwrap(), "ran\n");
    let history = h
        .at("baton-run", T0)
        .args(["--history", "daily"])
        .run()
        .status(0);
    assert_eq!(
        history.lines().len(),
        1 + 20,
        "a header, and every tick is recorded: {}",
        history.stdout()
    );
}

#[test]
fn baton_serve_killed_at_any_instant_loses_nothing() {
    let h = Host::new("host1");
    for s in ["a", "b", "c"] {
        h.at("baton-signal", "2012-01-24T16:47:00Z")
            .args(["raise", s, "--ttl", "1h"])
            .run()
            .status(0);
    }
    for us in delays(8) {
        let s = h.serve("127.0.0.2", "allow .* 127.0.0.1\n", &[]);
        // Queries in flight while it dies.
        let addr = s.addr.clone();
        let q = std::thread::spawn(move || {
            crate::util::baton("baton-query")
                .env("BATON_NOW", "2012-01-24T16:47:00Z")
                .args(["--timeout", "2s", &addr, ".*"])
                .run()
                .code()
        });
        std::thread::sleep(Duration::from_micros(us * 10));
        drop(s); // SIGKILL
        let code = q.join().unwrap();
        assert!(
            code == 0 || code == 2,
            "a dying server is an error or an answer, never a 'no': {code}"
        );
    }
    let s = h.serve("127.0.0.2", "allow .* 127.0.0.1\n", &[]);
    crate::util::baton("baton-query")
        .env("BATON_NOW", "2012-01-24T16:47:00Z")
        .args([&s.addr, ".*"])
        .run()
        .status(0)
        .stdout_is("a\nb\nc\n");
}

/// A full disk can let a run's history line through but not the state that says the run
/// is over: the next tick finds the run "lost", ends what is left of it, and records it
/// only if its record is not there already. One run, one record.
#[test]
fn a_run_already_recorded_is_not_recorded_again_as_lost() {
    let h = Host::new("h");
    h.at("baton-run", T0)
        .args(["--lock", "d", "--", "true"])
        .run()
        .status(0);
    let history = h.state().join("history/d.jsonl");
    let first: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(&history).unwrap().trim()).unwrap();
    let run = first["run"].as_str().unwrap();
    // The state as the full disk left it: the run still on record as running, its
    // baton-run (pid 1's start time never matches a process of ours) long gone.
    let state = h.state().join("jobs/d.json");
    let mut s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    s["running"] = serde_json::json!({
        "run": run, "pid": 0, "pgid": 0, "pid_start": 0,
        "holder": 4_194_303u32, "holder_start": 1, "started": T0
    });
    std::fs::write(&state, s.to_string()).unwrap();
    h.at("baton-run", "2012-01-24T16:05:00Z")
        .args(["--lock", "d", "--", "true"])
        .run()
        .status(0)
        .stderr_is("");
    let records: Vec<serde_json::Value> = std::fs::read_to_string(&history)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let runs: Vec<(&str, &str)> = records
        .iter()
        .map(|r| (r["run"].as_str().unwrap(), r["outcome"].as_str().unwrap()))
        .collect();
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert_eq!(runs[0], (run, "repaired"));
    assert_eq!(runs[1].1, "repaired");
}

/// A baton-run killed while asking its --condition ran nothing: the next tick ends what
/// the condition left and records an error tick, never a failed run of the job (which
/// would fire "job failing" alerts for a job that never started).
#[test]
fn a_run_killed_while_asking_its_condition_is_an_error_not_a_failure() {
    let h = Host::new("h");
    let mut runner = spawn(
        &h,
        "baton-run",
        &[
            "--lock",
            "c",
            "--condition",
            "echo $$ > asking.pid; sleep 300",
            "--",
            "touch",
            "ran",
        ],
    );
    wait_until("the condition to start", Duration::from_secs(20), || {
        std::fs::read_to_string(h.dir.join("asking.pid")).is_ok_and(|p| !p.trim().is_empty())
    });
    runner.kill().unwrap();
    runner.wait().unwrap();
    let asking = std::fs::read_to_string(h.dir.join("asking.pid")).unwrap();
    h.at("baton-run", "2012-01-24T16:05:00Z")
        .args(["--lock", "c", "--condition", "exit 1", "--", "touch", "ran"])
        .run()
        .status(76);
    assert!(
        !crate::util::process_alive(&asking),
        "the condition survived"
    );
    assert!(!h.dir.join("ran").exists());
    assert_eq!(outcomes(&h, "c"), ["error 2", "skipped 76"]);
}

/// Where the host lets baton-run make a cgroup (cgroup v2, root), the job's processes
/// stay in the run's own: after baton-run is killed, the next tick ends even those that
/// cleared their environment (`env -i`) or changed user (`setpriv`), which nothing else
/// would find, and removes the group.
#[test]
fn a_killed_runs_processes_are_found_by_its_cgroup_whatever_they_did() {
    let h = Host::new("h");
    let job = "env -i setsid sh -c 'echo $$ > cleared; exec sleep 351' & \
               setpriv --reuid=nobody --regid=nogroup --clear-groups sleep 352 & echo $! > other; \
               sleep 353";
    let mut runner = spawn(&h, "baton-run", &["--lock", "cg", "--", "sh", "-c", job]);
    let state = h.state().join("jobs/cg.json");
    wait_until(
        "the job's processes to start",
        Duration::from_secs(20),
        || {
            ["cleared", "other"]
                .iter()
                .all(|f| std::fs::read_to_string(h.dir.join(f)).is_ok_and(|p| !p.trim().is_empty()))
        },
    );
    let recorded: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    let group = recorded["running"]["cgroup"].as_str().map(str::to_string);
    runner.kill().unwrap();
    runner.wait().unwrap();
    let Some(group) = group else {
        // No cgroup here (not root, or cgroup v2 not writable): end what is left the way
        // the next tick does, and say why the test asserted nothing.
        h.at("baton-run", T0)
            .args(["--lock", "cg", "--", "true"])
            .run();
        for f in ["cleared", "other"] {
            let pid = std::fs::read_to_string(h.dir.join(f)).unwrap();
            let _ = std::process::Command::new("kill")
                .args(["-9", pid.trim()])
                .status();
        }
        println!("skipped: baton-run could not make a cgroup here");
        return;
    };
    // An empty group an earlier run of the job left (killed at the wrong instant) is
    // swept by the next tick that holds the job's lock.
    let stale = std::path::Path::new(&group).with_file_name("baton-cg-20000101T000000Z-1");
    std::fs::create_dir(&stale).unwrap();
    let run = h
        .at("baton-run", "2012-01-24T16:05:00Z")
        .args(["--lock", "cg", "--", "true"])
        .run()
        .status(0);
    assert!(!stale.exists(), "{} is left", stale.display());
    assert!(
        run.stderr()
            .starts_with("baton-run: ended 4 processes left running by run "),
        "{}",
        run.stderr()
    );
    for f in ["cleared", "other"] {
        let pid = std::fs::read_to_string(h.dir.join(f)).unwrap();
        assert!(
            !crate::util::process_alive(&pid),
            "{f}: {} survived",
            pid.trim()
        );
    }
    assert!(!std::path::Path::new(&group).exists(), "{group} is left");
}
