//! `baton-classes` and `baton-if` as a crontab line calls them.

use crate::util::{baton, repo, TestDir};
use std::collections::BTreeSet;

const SEED_TIME: &str = "2012-01-24T16:47:00Z";

/// Check every case of a conformance file: the time classes at that instant in that TZ
/// are exactly CFEngine's, plus the `Year…` aliases.
fn check_conformance(path: &std::path::Path) -> usize {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut cases = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let case: serde_json::Value = serde_json::from_str(line).unwrap();
        let tz = case["tz"].as_str().unwrap();
        let epoch = case["epoch"].as_i64().unwrap();
        let want: BTreeSet<String> = case["classes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_string())
            .collect();
        assert!(!want.is_empty(), "{line}");
        let run = baton("baton-classes")
            .args(["--at", &format!("@{epoch}"), "--host", "h", "--state-dir"])
            .arg(std::env::temp_dir().join("baton-no-such-state"))
            .env("TZ", tz)
            .arg("--json")
            .run()
            .status(0);
        let all: serde_json::Value = serde_json::from_str(&run.stdout()).unwrap();
        let got: BTreeSet<String> = all
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["source"] == "time")
            .map(|c| c["name"].as_str().unwrap().to_string())
            .filter(|n| !n.starts_with("Year") && !n.starts_with("GMT_Year"))
            .collect();
        assert_eq!(got, want, "TZ={tz} @{epoch} ({})", case["local"]);
        let yr = want.iter().find(|c| c.starts_with("Yr")).unwrap();
        assert!(
            run.stdout().contains(&format!("\"Year{}\"", &yr[2..])),
            "{line}"
        );
        cases += 1;
    }
    cases
}

#[test]
fn time_classes_match_the_shared_cfengine_cases() {
    let path = repo().join("../shared/conformance/time_classes.jsonl");
    if path.exists() {
        assert!(check_conformance(&path) >= 10);
    } else {
        // The shared folder sits beside the checkout in CI; our own cases below cover
        // every rule either way.
        eprintln!("{} not present", path.display());
    }
}

#[test]
fn time_classes_match_our_cfengine_cases() {
    let n = check_conformance(&repo().join("tests/conformance/cfengine_time_classes.jsonl"));
    assert!(n >= 40);
}

#[test]
fn classes_are_sorted_one_per_line() {
    let state = TestDir::new("classes");
    let run = baton("baton-classes")
        .args([
            "--at",
            SEED_TIME,
            "--host",
            "Host1.example.org",
            "--state-dir",
        ])
        .arg(&state.path)
        .run()
        .status(0)
        // Host-name classes in lower case, with every domain, as CFEngine defines them.
        .stdout_has("host1")
        .stdout_has("host1_example_org")
        .stdout_has("example_org")
        .stdout_has("org")
        .stdout_lacks("Host1")
        .stdout_has("any")
        .stdout_has("Hr16")
        .stdout_has("Min45_50")
        .stdout_has("Year2012")
        .stdout_has("linux")
        .stdout_lacks("vm");
    let lines = run.lines();
    let mut sorted = lines.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(lines, sorted);
    assert!(run.stderr().is_empty());
}

#[test]
fn the_clock_comes_from_at_then_baton_now() {
    baton("baton-classes")
        .env("BATON_NOW", "@1327423620")
        .args(["--host", "h", "--state-dir", "/nonexistent"])
        .run()
        .status(0)
        .stdout_has("Min45_50");
    baton("baton-if")
        .env("BATON_NOW", "@1327423620")
        .args([
            "--at",
            "2012-01-24 17:00",
            "--host",
            "h",
            "--state-dir",
            "/nonexistent",
            "Hr17",
        ])
        .run()
        .status(0);
    // Local times are read in TZ.
    baton("baton-if")
        .env("TZ", "Asia/Kolkata")
        .args([
            "--at",
            "2012-01-24 22:17",
            "--host",
            "h",
            "--state-dir",
            "/nonexistent",
        ])
        .arg("Hr22.Min15_20.GMT_Hr16.GMT_Min45_50")
        .run()
        .status(0);
}

#[test]
fn the_seed_expressions_as_written() {
    let at = ["--at", "2012-01-24 16:47", "--state-dir", "/nonexistent"];
    let expr = "Host1.Day24.January.Year2012.Hr16.Min45_50";
    baton("baton-if")
        .args(at)
        .args(["--host", "Host1", expr])
        .run()
        .status(0);
    baton("baton-if")
        .args(at)
        .args(["--host", "Host2", expr])
        .run()
        .status(1);
    baton("baton-if")
        .args(at)
        .args([
            "--host",
            "Host2",
            "Host2.Day24.January.Year2012.Hr16.Min50_55",
        ])
        .run()
        .status(1);
    baton("baton-if")
        .args(["--at", "2012-01-24 16:52", "--state-dir", "/nonexistent"])
        .args([
            "--host",
            "Host2",
            "Host2.Day24.January.Year2012.Hr16.Min50_55",
        ])
        .run()
        .status(0);
    let or = "(Host2|Host3|Host4).hostX_did_my_job";
    baton("baton-if")
        .args(at)
        .args(["--host", "Host3", "-D", "hostX_did_my_job", or])
        .run()
        .status(0);
    baton("baton-if")
        .args(at)
        .args(["--host", "Host3", or])
        .run()
        .status(1);
    baton("baton-if")
        .args(at)
        .args(["--host", "Host3", "!succeeded"])
        .run()
        .status(0);
}

#[test]
fn stdin_and_only() {
    let expr = "Host2.hostX_did_my_job";
    baton("baton-if")
        .args(["--only", "--stdin", "-D", "Host2", expr])
        .stdin("hostX_did_my_job\n")
        .run()
        .status(0);
    // --only drops the hard classes: the host name is no longer defined.
    baton("baton-if")
        .args(["--only", "--stdin", "--host", "Host2", expr])
        .stdin("hostX_did_my_job\n")
        .run()
        .status(1);
    // Without --stdin, standard input is never read.
    baton("baton-if")
        .args(["--only", "-D", "Host2", expr])
        .stdin("hostX_did_my_job\n")
        .run()
        .status(1);
    baton("baton-if").args(["--only", "any"]).run().status(0);
    baton("baton-if")
        .args(["--only", "-D", "a,b", "a.b"])
        .run()
        .status(0);
}

#[test]
fn explain_shows_each_operand() {
    baton("baton-if")
        .args(["--at", SEED_TIME, "--host", "host1", "--state-dir", "/nonexistent"])
        .args(["--explain", "host1.Hr16.Min50_55"])
        .run()
        .status(1)
        .stdout_is(
            "host1     true   host\nHr16      true   time\nMin50_55  false  undefined\n(host1.Hr16.Min50_55) => false\n",
        );
}

#[test]
fn bad_input_is_one_line_and_exit_2() {
    baton("baton-if")
        .args(["--only", "a)"])
        .run()
        .error("baton-if", "column 2");
    baton("baton-if")
        .args(["--only", "(a)(b)"])
        .run()
        .error("baton-if", "column 4");
    baton("baton-if")
        .args(["--only", "a!u"])
        .run()
        .error("baton-if", "column 2");
    baton("baton-if")
        .args(["--only", "a-u"])
        .run()
        .error("baton-if", "column 2");
    baton("baton-if")
        .args(["--only", "a u"])
        .run()
        .error("baton-if", "operator between");
    baton("baton-if")
        .args(["--only", ""])
        .run()
        .error("baton-if", "empty expression");
    baton("baton-if")
        .args(["--only", "-D", "a-b", "a"])
        .run()
        .error("baton-if", "-D");
    baton("baton-if")
        .args(["--only", "--stdin", "a"])
        .stdin("ok\nnot ok\n")
        .run()
        .error("baton-if", "standard input line 2");
    baton("baton-if")
        .args(["--at", "yesterday", "a"])
        .run()
        .error("baton-if", "--at");
    baton("baton-if")
        .env("BATON_NOW", "soon")
        .args(["a"])
        .run()
        .error("baton-if", "BATON_NOW");
    baton("baton-if")
        .args(["--bogus", "a"])
        .run()
        .error("baton-if", "--bogus");
    baton("baton-if").run().error("baton-if", "EXPR");
    baton("baton-classes")
        .args(["--at", "2024-03-10 02:30"])
        .env("TZ", "America/New_York")
        .run()
        .error("baton-classes", "DST");
    let deep = format!("{}a{}", "(".repeat(30_000), ")".repeat(30_000));
    baton("baton-if")
        .args(["--only", &deep])
        .run()
        .error("baton-if", "nested deeper");
}

#[test]
fn a_ten_megabyte_expression_is_refused() {
    // Passed through standard input's sibling, a file, since argv has a size limit: the
    // shell would refuse 10 MB before baton-if sees it. A 64 KiB + 1 argument is enough.
    let long = "a".repeat(64 * 1024 + 1);
    baton("baton-if")
        .args(["--only", &long])
        .run()
        .error("baton-if", "too long");
}

#[test]
fn help_and_version_exit_0() {
    baton("baton-if").arg("--help").run().status(0);
    baton("baton-classes").arg("--version").run().status(0);
}

#[test]
fn closed_stdout_is_not_an_error() {
    let state = crate::util::TestDir::new("closed-stdout");
    // A pipe whose reader is already gone: every write the binary makes meets EPIPE.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut cmd = std::process::Command::new(crate::util::bin("baton-classes"));
    crate::util::without_baton_env(&mut cmd);
    let run = cmd
        .args(["--host", "h", "--state-dir"])
        .arg(&state.path)
        .env("TZ", "UTC")
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(0), "the binary's own status");
    assert!(
        String::from_utf8_lossy(&run.stderr).is_empty(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
}
