//! Every pattern of the seed guide, end to end: the crontab lines of docs/guide.md run on
//! simulated hosts on loopback through simulated days, with exact run counts.

use crate::util::cluster::Cluster;

fn day(hhmm: &str) -> String {
    format!("2012-01-24T{hhmm}:00Z")
}

#[test]
fn one_off_at_exact_times_and_why_it_is_fragile() {
    let mut c = Cluster::from_guide("one_off", &["Host1", "Host2"]);
    c.run(&day("16:00"), &day("17:30"));
    assert_eq!(c.runs("Host1", "my_job"), [day("16:45")]);
    assert_eq!(c.runs("Host2", "do_my_job_bundle"), [day("16:50")]);

    // Host1's job fails: Host2 runs anyway, because it only knows the time.
    let mut c = Cluster::from_guide("one_off", &["Host1", "Host2"]);
    c.fail("Host1", "my_job", "always");
    c.run(&day("16:00"), &day("17:30"));
    assert_eq!(c.runs("Host1", "my_job failed"), [day("16:45")]);
    assert_eq!(c.runs("Host2", "do_my_job_bundle"), [day("16:50")]);
}

#[test]
fn signalled_sequence_follows_only_real_success() {
    let mut c = Cluster::from_guide("signalled", &["Host1", "Host2"]);
    c.run(&day("16:00"), &day("17:30"));
    assert_eq!(c.runs("Host1", "my_job"), [day("16:45")]);
    assert_eq!(
        c.runs("Host2", "do_my_job_bundle"),
        [day("16:45")],
        "follows in the same tick, once"
    );
    assert_eq!(c.mail("Host2"), "", "nothing to mail when all is well");

    let mut c = Cluster::from_guide("signalled", &["Host1", "Host2"]);
    c.fail("Host1", "my_job", "always");
    c.run(&day("16:00"), &day("17:30"));
    assert!(
        c.runs("Host2", "do_my_job_bundle").is_empty(),
        "never after a failure"
    );
    assert!(c.signals("Host1").is_empty());
}

#[test]
fn signalled_sequence_needs_admission() {
    let mut c = Cluster::from_guide("signalled", &["Host1", "Host2"]);
    // Host1 admits some other host, not Host2.
    c.set_access("Host1", "allow did_my_job key:Host3\n");
    c.run(&day("16:40"), &day("17:00"));
    assert_eq!(c.runs("Host1", "my_job"), [day("16:45")]);
    assert!(c.runs("Host2", "do_my_job_bundle").is_empty());
    assert!(
        c.mail("Host2")
            .contains("access denied (403): not admitted"),
        "{}",
        c.mail("Host2")
    );
}

#[test]
fn regular_workflow_runs_once_a_day_for_a_week() {
    let mut c = Cluster::from_guide("regular", &["Host1", "Host2"]);
    let mut want = Vec::new();
    for d in 23..30 {
        // A whole day shows that nothing runs outside the 16:00 hour; the other days
        // tick through the afternoon around it, which is where a second run could come.
        let (from, to) = if d == 23 {
            ("00:00", "23:55")
        } else {
            ("14:00", "18:55")
        };
        c.run(
            &format!("2012-01-{d}T{from}:00Z"),
            &format!("2012-01-{d}T{to}:00Z"),
        );
        want.push(format!("2012-01-{d}T16:00:00Z"));
    }
    assert_eq!(c.runs("Host1", "my_job"), want);
    assert_eq!(c.runs("Host2", "do_my_job_bundle"), want);
}

#[test]
fn job_chain_on_both_hosts_with_the_same_arguments() {
    let names = ["upstream.example.org", "downstream.example.org"];
    let mut c = Cluster::from_guide("chain", &names);
    c.run(&day("16:00"), &day("16:30"));
    assert_eq!(
        c.runs("upstream.example.org", "do_job Starting remote job"),
        [day("16:10")]
    );
    assert_eq!(
        c.runs(
            "downstream.example.org",
            "do_job Starting local follow-up job"
        ),
        [day("16:10")]
    );
    assert_eq!(c.mail("downstream.example.org"), "");

    // The upstream's server is down: the seed's report, and no follow-up.
    let mut c = Cluster::from_guide("chain", &names);
    c.stop_server("upstream.example.org");
    c.run(&day("16:00"), &day("16:30"));
    assert_eq!(
        c.runs("upstream.example.org", "do_job Starting remote job"),
        [day("16:10")]
    );
    assert!(c
        .runs(
            "downstream.example.org",
            "do_job Starting local follow-up job"
        )
        .is_empty());
    let mail = c.mail("downstream.example.org");
    assert!(
        mail.contains("baton-chain: Server communication failed (upstream.example.org)"),
        "{mail}"
    );
    assert!(mail.contains("connection refused"), "{mail}");
}

const AGG: [&str; 4] = ["Host2", "Host3", "Host4", "Host5"];

fn aggregate(failing: &[&str]) -> Cluster {
    let mut c = Cluster::from_guide("aggregate", &AGG);
    for h in failing {
        c.fail(h, "my_job", "always");
    }
    c.run(&day("15:50"), &day("17:00"));
    c
}

#[test]
fn aggregation_all_succeed() {
    let c = aggregate(&[]);
    for h in ["Host2", "Host3", "Host4"] {
        assert_eq!(c.runs(h, "my_job"), [day("16:00")]);
    }
    assert_eq!(c.runs("Host5", "all_of_them"), [day("16:00")]);
    assert_eq!(c.runs("Host5", "any_of_them"), [day("16:00")]);
    assert_eq!(c.runs("Host5", "two_of_three"), [day("16:00")]);
}

#[test]
fn aggregation_one_fails() {
    let c = aggregate(&["Host3"]);
    assert!(
        c.runs("Host5", "all_of_them").is_empty(),
        "AND needs all three"
    );
    assert_eq!(c.runs("Host5", "any_of_them"), [day("16:00")]);
    assert_eq!(c.runs("Host5", "two_of_three"), [day("16:00")]);
}

#[test]
fn aggregation_two_fail() {
    let c = aggregate(&["Host3", "Host4"]);
    assert!(c.runs("Host5", "all_of_them").is_empty());
    assert_eq!(c.runs("Host5", "any_of_them"), [day("16:00")]);
    assert!(c.runs("Host5", "two_of_three").is_empty());
}

#[test]
fn fan_out_triggers_every_follow_up_once() {
    let mut c = Cluster::from_guide("fanout", &["Host1", "Host2", "Host3"]);
    c.run(&day("15:50"), &day("17:00"));
    assert_eq!(c.runs("Host1", "my_job"), [day("16:00")]);
    assert_eq!(c.runs("Host2", "do_my_job_bundle1"), [day("16:00")]);
    assert_eq!(c.runs("Host2", "do_my_job_bundle2"), [day("16:00")]);
    assert_eq!(c.runs("Host3", "do_my_job_bundle3"), [day("16:00")]);
}

#[test]
fn self_healing_converges_and_follows_once() {
    let mut c = Cluster::from_guide("healing", &["Host1", "Host2"]);
    c.fail("Host1", "my_job", "2");
    c.run(&day("15:30"), &day("19:00"));
    assert_eq!(
        c.runs("Host1", "my_job failed"),
        [day("16:00"), day("16:05")]
    );
    assert_eq!(c.runs("Host1", "my_job"), [day("16:10")]);
    assert_eq!(
        c.runs("Host2", "do_my_job_bundle"),
        [day("16:10")],
        "once for that success"
    );

    // A failing follow-up is retried at the next tick, still once per success.
    let mut c = Cluster::from_guide("healing", &["Host1", "Host2"]);
    c.fail("Host2", "do_my_job_bundle", "1");
    c.run(&day("15:30"), &day("19:00"));
    assert_eq!(c.runs("Host2", "do_my_job_bundle failed"), [day("16:00")]);
    assert_eq!(c.runs("Host2", "do_my_job_bundle"), [day("16:05")]);
}

#[test]
fn a_long_chain_stops_at_a_broken_link_and_resumes_when_fixed() {
    let hosts = ["H1", "H2", "H3", "H4"];
    let mut c = Cluster::from_guide("long", &hosts);
    c.fail("H2", "job2", "always");
    c.run(&day("15:55"), &day("16:20"));
    assert_eq!(c.runs("H1", "job1"), [day("16:00")]);
    assert_eq!(
        c.runs("H2", "job2 failed").len(),
        5,
        "retried at every tick: 16:00 to 16:20"
    );
    assert!(c.runs("H3", "job3").is_empty() && c.runs("H4", "job4").is_empty());
    let history = c
        .host("H2")
        .host
        .at("baton-run", &day("16:20"))
        .args(["--history"])
        .run();
    assert!(
        history.stdout().contains(" failed 1 "),
        "the broken link is visible: {}",
        history.stdout()
    );

    c.heal("H2", "job2");
    c.run(&day("16:25"), &day("18:00"));
    assert_eq!(c.runs("H1", "job1"), [day("16:00")]);
    assert_eq!(c.runs("H2", "job2"), [day("16:25")]);
    assert_eq!(c.runs("H3", "job3"), [day("16:25")]);
    assert_eq!(c.runs("H4", "job4"), [day("16:25")]);
}

#[test]
fn waiting_follows_the_upstream_whenever_it_succeeds() {
    let mut c = Cluster::from_guide("waiting", &["Host1", "Host2"]);
    c.background("--wait");
    follows_whenever_the_upstream_succeeds(&mut c);
}

/// With `waiting`'s crontabs: my_job fails until 17:00 (twelve attempts from 16:00, so
/// no guess would have fit), and Host2, waiting since 16:45, follows once, at the tick
/// the signal appears or the next (the clock moves in five-minute ticks).
pub fn follows_whenever_the_upstream_succeeds(c: &mut Cluster) {
    c.fail("Host1", "my_job", "12");
    c.run(&day("16:00"), &day("17:30"));
    let ended = c.finish_background();
    assert_eq!(c.runs("Host1", "my_job"), [day("17:00")]);
    let followed = c.runs("Host2", "do_my_job_bundle");
    assert_eq!(followed.len(), 1, "{followed:?}");
    assert!(
        [day("17:00"), day("17:05"), day("17:10")].contains(&followed[0]),
        "{followed:?}"
    );
    assert_eq!(ended, [("Host2".to_string(), 0)]);
}

#[test]
fn waiting_gives_up_at_its_bound() {
    let mut c = Cluster::from_guide("waiting", &["Host1", "Host2"]);
    c.background("--wait");
    c.fail("Host1", "my_job", "always");
    c.run(&day("16:40"), &day("17:30"));
    let ended = c.finish_background();
    assert!(c.runs("Host2", "do_my_job_bundle").is_empty());
    assert_eq!(
        ended,
        [("Host2".to_string(), 1)],
        "gave up: no match, every host answered"
    );
}

#[test]
fn yesterdays_signal_never_triggers_todays_follow_up() {
    let mut c = Cluster::from_guide("fresh", &["Host1", "Host2"]);
    c.run(&day("16:30"), &day("17:30"));
    assert_eq!(c.runs("Host2", "do_my_job_bundle"), [day("16:45")]);
    c.fail("Host1", "my_job", "always");
    c.run("2012-01-25T16:30:00Z", "2012-01-25T17:30:00Z");
    assert_eq!(c.runs("Host1", "my_job failed"), ["2012-01-25T16:45:00Z"]);
    assert_eq!(
        c.signals("Host1"),
        ["did_my_job"],
        "yesterday's signal is still live"
    );
    assert_eq!(
        c.runs("Host2", "do_my_job_bundle"),
        [day("16:45")],
        "but too old to follow"
    );
}

#[test]
fn make_demo_runs_and_passes() {
    let bins = crate::util::bin("baton-if").parent().unwrap().to_path_buf();
    // The caller's BATON_* variables are left in place: the demo must set aside whatever
    // a user's shell holds.
    let out = std::process::Command::new("sh")
        .arg("tests/demo.sh")
        .arg(&bins)
        .current_dir(crate::util::repo())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.lines()
            .last()
            .unwrap_or("")
            .starts_with("verdict: PASS"),
        "{text}"
    );
    assert!(text.contains("16:05  Host5  ran all_of_them"), "{text}");
}

#[test]
fn baton_chain_refuses_bad_usage_with_one_line() {
    let h = crate::util::Host::new("upstream.example.org");
    let chain = |args: &str| {
        h.sh("2012-01-24T16:10:00Z", &format!("baton-chain {args}"))
            .run()
    };
    chain("--time")
        .status(2)
        .says("baton-chain", "--time needs a value");
    chain("--bogus x")
        .status(2)
        .says("baton-chain", "unknown argument '--bogus'");
    chain("--time Hr16")
        .status(2)
        .says("baton-chain", "are all required");
    let full = "--upstream upstream.example.org --downstream d --signal s --up true --down true";
    chain(&format!("--time 'Hr16.(' {full}"))
        .status(2)
        .says("baton-if", "syntax error");
    chain("--help").status(0);
    // Primed as the upstream: runs the job and raises the signal.
    chain(&format!("--time Hr16 {full}"))
        .status(0)
        .stderr_is("");
    let list = h
        .at("baton-signal", "2012-01-24T16:10:00Z")
        .args(["list", "--names"])
        .run();
    assert_eq!(list.stdout(), "s\n");
}
