//! `baton-signal` and the signal store, through the built binaries.

use crate::util::{baton, Host};
use std::process::{Command, Stdio};
use std::time::Duration;

const T0: &str = "2012-01-24T16:47:00Z";

#[test]
fn raise_list_and_expire() {
    let h = Host::new("host1");
    h.at("baton-signal", T0)
        .args(["raise", "did_my_job"])
        .run()
        .status(0)
        .stdout_is("");
    h.at("baton-signal", "2012-01-24T16:50:00Z")
        .args(["list"])
        .run()
        .status(0)
        .stdout_is("did_my_job 2012-01-24T16:47:00Z 2012-01-24T16:57:00Z\n");
    // Live signals are classes: baton-if and baton-classes see them.
    h.at("baton-if", "2012-01-24T16:56:59Z")
        .arg("host1.did_my_job")
        .run()
        .status(0);
    h.at("baton-classes", "2012-01-24T16:56:59Z")
        .run()
        .status(0)
        .stdout_has("did_my_job");
    // Ten minutes later it is gone, and its record with it.
    h.at("baton-if", "2012-01-24T16:57:00Z")
        .arg("did_my_job")
        .run()
        .status(1);
    h.at("baton-signal", "2012-01-24T16:57:00Z")
        .args(["list"])
        .run()
        .status(1)
        .stdout_is("");
    assert!(!h.state().join("signals/did_my_job.json").exists());
}

#[test]
fn ttl_policies_and_json() {
    let h = Host::new("h");
    h.at("baton-signal", T0)
        .args(["raise", "a", "--ttl", "1h", "--policy", "preserve"])
        .run()
        .status(0);
    h.at("baton-signal", "2012-01-24T17:00:00Z")
        .args(["raise", "a", "--ttl", "1h", "--policy", "preserve"])
        .run()
        .status(0);
    h.at("baton-signal", T0)
        .args(["raise", "b", "--ttl", "5"])
        .run()
        .status(0);
    h.at("baton-signal", "2012-01-24T16:50:00Z")
        .args(["raise", "b", "--ttl", "5"])
        .run()
        .status(0);
    let run = h
        .at("baton-signal", "2012-01-24T16:51:00Z")
        .args(["list", "--json"])
        .run()
        .status(0);
    let list: serde_json::Value = serde_json::from_str(&run.stdout()).unwrap();
    assert_eq!(list[0]["name"], "a");
    assert_eq!(
        list[0]["set_at"], "2012-01-24T16:47:00Z",
        "preserve keeps the first raise"
    );
    assert_eq!(list[0]["expires_at"], "2012-01-24T17:47:00Z");
    assert_eq!(list[0]["policy"], "preserve");
    assert_eq!(list[0]["host"], "h");
    assert_eq!(list[1]["name"], "b");
    assert_eq!(
        list[1]["set_at"], "2012-01-24T16:50:00Z",
        "reset restarts the clock"
    );
    assert_eq!(list[1]["expires_at"], "2012-01-24T16:55:00Z");
    assert_eq!(list[1]["version"], 1);
    // A regex must match the whole name.
    h.at("baton-signal", "2012-01-24T16:51:00Z")
        .args(["list", "--names", "b"])
        .run()
        .status(0)
        .stdout_is("b\n");
    h.at("baton-signal", "2012-01-24T16:51:00Z")
        .args(["list", "--names", "a|b"])
        .run()
        .status(0)
        .stdout_is("a\nb\n");
    h.at("baton-signal", "2012-01-24T16:51:00Z")
        .args(["list", ""])
        .run()
        .status(1);
}

#[test]
fn clear_and_canonify() {
    let h = Host::new("h");
    // Only baton-signal has --canonify, and only its name errors suggest it.
    h.at("baton-signal", T0)
        .args(["raise", "backup-done.example"])
        .run()
        .error("baton-signal", "(use letters, digits and _, or --canonify)");
    let run = h
        .at("baton-run", T0)
        .args(["--lock", "a-b", "--", "true"])
        .run()
        .error("baton-run", "(use letters, digits and _)");
    assert!(!run.stderr().contains("--canonify"), "{}", run.stderr());
    h.at("baton-signal", T0)
        .args(["raise", "--canonify", "backup-done.example"])
        .run()
        .status(0);
    h.at("baton-signal", T0)
        .args(["list", "--names"])
        .run()
        .stdout_is("backup_done_example\n");
    h.at("baton-signal", T0)
        .args(["clear", "backup_done_example"])
        .run()
        .status(0);
    h.at("baton-signal", T0)
        .args(["clear", "backup_done_example"])
        .run()
        .status(1);
    h.at("baton-signal", T0).args(["list"]).run().status(1);
}

#[test]
fn bad_input_is_refused_and_state_untouched() {
    let h = Host::new("h");
    h.at("baton-signal", T0)
        .args(["raise", "good"])
        .run()
        .status(0);
    h.at("baton-signal", T0)
        .args(["raise", "bad-name"])
        .run()
        .error("baton-signal", "column 4");
    h.at("baton-signal", T0)
        .args(["raise", "x", "--ttl", "soon"])
        .run()
        .error("baton-signal", "invalid duration");
    h.at("baton-signal", T0)
        .args(["raise", "x", "--ttl", "0"])
        .run()
        .error("baton-signal", "--ttl");
    h.at("baton-signal", T0)
        .args(["raise", "x", "--policy", "keep"])
        .run()
        .error("baton-signal", "keep");
    h.at("baton-signal", T0)
        .args(["raise", &"x".repeat(201)])
        .run()
        .error("baton-signal", "longer than 200");
    h.at("baton-signal", T0)
        .args(["list", "(unclosed"])
        .run()
        .error("baton-signal", "invalid regex");
    h.at("baton-signal", T0)
        .args(["list", "a{1000}{1000}{1000}"])
        .run()
        .error("baton-signal", "invalid regex");
    h.at("baton-signal", T0)
        .args(["frobnicate"])
        .run()
        .error("baton-signal", "frobnicate");
    h.at("baton-signal", T0)
        .args(["list", "--names"])
        .run()
        .status(0)
        .stdout_is("good\n");
    // A damaged record is reported and skipped, never fatal.
    std::fs::write(h.state().join("signals/torn.json"), b"{\"version\":1,\"na").unwrap();
    let run = h
        .at("baton-signal", T0)
        .args(["list", "--names"])
        .run()
        .status(0)
        .stdout_is("good\n");
    assert!(run.stderr().contains("torn.json"), "{}", run.stderr());
}

#[test]
fn fifty_concurrent_writers_lose_nothing() {
    let h = Host::new("h");
    // Names n0..n24 are each raised by two processes at once; c0..c4 are raised, then
    // cleared while others write.
    let mut children = Vec::new();
    let spawn = |args: Vec<String>| {
        let mut c = Command::new(crate::util::bin("baton-signal"));
        crate::util::without_baton_env(&mut c);
        c.args(&args)
            .env("BATON_STATE_DIR", h.state())
            .env("BATON_HOST", "h")
            .env("BATON_NOW", T0)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        c.spawn().unwrap()
    };
    for i in 0..5 {
        h.at("baton-signal", T0)
            .args(["raise", &format!("c{i}")])
            .run()
            .status(0);
    }
    for i in 0..45 {
        children.push(spawn(vec![
            "raise".into(),
            format!("n{}", i % 25),
            "--ttl".into(),
            "1h".into(),
        ]));
    }
    for i in 0..5 {
        children.push(spawn(vec!["clear".into(), format!("c{i}")]));
    }
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.code() == Some(0),
            "{:?}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let run = h
        .at("baton-signal", T0)
        .args(["list", "--names"])
        .run()
        .status(0);
    let want: Vec<String> = {
        let mut v: Vec<String> = (0..25).map(|i| format!("n{i}")).collect();
        v.sort();
        v
    };
    assert_eq!(run.lines(), want);
    assert!(
        run.stderr().is_empty(),
        "no damaged record: {}",
        run.stderr()
    );
    let leftovers: Vec<_> = std::fs::read_dir(h.state().join("signals"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn a_writer_killed_at_any_instant_leaves_whole_records() {
    let h = Host::new("h");
    h.at("baton-signal", T0)
        .args(["raise", "steady", "--ttl", "1d"])
        .run()
        .status(0);
    // Kill writers after a spread of delays, some mid-write.
    for i in 0..40u64 {
        let mut child = Command::new(crate::util::bin("baton-signal"))
            .args(["raise", &format!("k{}", i % 4), "--ttl", "1d"])
            .env("BATON_STATE_DIR", h.state())
            .env("BATON_HOST", "h")
            .env("BATON_NOW", T0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_micros((i * 7919) % 3000));
        let _ = child.kill();
        let _ = child.wait();
        // Every record present parses: list reports no damage.
        let run = h
            .at("baton-signal", T0)
            .args(["list", "--json"])
            .run()
            .status(0);
        assert!(
            run.stderr().is_empty(),
            "damaged record after kill {i}: {}",
            run.stderr()
        );
        let list: serde_json::Value = serde_json::from_str(&run.stdout()).unwrap();
        assert!(list
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == "steady"));
    }
    // The next writer sweeps any temporary file a killed writer left.
    h.at("baton-signal", T0)
        .args(["raise", "last"])
        .run()
        .status(0);
    let temps = std::fs::read_dir(h.state().join("signals"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with(".tmp")
        })
        .count();
    assert_eq!(temps, 0);
}

#[test]
fn state_dir_from_flag_env_and_error() {
    let h = Host::new("h");
    let dir = h.dir.join("other");
    baton("baton-signal")
        .args(["raise", "x", "--at", T0, "--host", "h", "--state-dir"])
        .arg(&dir)
        .run()
        .status(0);
    assert!(dir.join("signals/x.json").exists());
    baton("baton-signal")
        .args(["raise", "x", "--state-dir", "/proc/forbidden"])
        .run()
        .error("baton-signal", "/proc/forbidden");
}
