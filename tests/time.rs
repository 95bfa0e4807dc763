//! The time model (docs/time.md) through the built binaries: DST nights in several zones
//! (southern hemisphere included), repeated and skipped local times, clock steps, and skew
//! between hosts on both signal paths.

use crate::util::cluster::Cluster;
use crate::util::etcd::EtcdCluster;
use crate::util::{baton, Host};
use chrono::{DateTime, Duration as Span, Utc};

fn utc(t: &str) -> DateTime<Utc> {
    t.parse().unwrap()
}

/// The guide's nightly line on one host in `tz`, ticked every five minutes through the
/// night of a DST change (from two hours before `first` to three after) and through the
/// next night's hour around `next`: exactly one run each night, at those instants.
fn nightly(tz: &str, first: &str, next: &str) {
    let mut c = Cluster::from_guide("nightly", &["Host1"]);
    c.set_tz(tz);
    let (first, next) = (utc(first), utc(next));
    let stamp = |t: DateTime<Utc>| crate::util::cluster::stamp(t);
    c.run(
        &stamp(first - Span::hours(2)),
        &stamp(first + Span::hours(3)),
    );
    c.run(&stamp(next - Span::hours(1)), &stamp(next + Span::hours(1)));
    assert_eq!(
        c.runs("Host1", "nightly_job"),
        [stamp(first), stamp(next)],
        "{tz}: one run a night\n{}",
        c.mail("Host1")
    );
}

#[test]
fn nightly_runs_once_on_dst_nights_in_berlin() {
    // Fall back: 02:00-02:59 twice (00:00Z and 01:00Z); then 02:00 CET is 01:00Z.
    nightly(
        "Europe/Berlin",
        "2023-10-29T00:00:00Z",
        "2023-10-30T01:00:00Z",
    );
    // Spring forward: no 02:00; 03:00 CEST is 01:00Z; the next 02:00 CEST is 00:00Z.
    nightly(
        "Europe/Berlin",
        "2023-03-26T01:00:00Z",
        "2023-03-27T00:00:00Z",
    );
}

#[test]
fn nightly_runs_once_on_dst_nights_in_new_york() {
    // Fall back repeats 01:00; 02:00 EST is 07:00Z.
    nightly(
        "America/New_York",
        "2023-11-05T07:00:00Z",
        "2023-11-06T07:00:00Z",
    );
    // Spring forward: 03:00 EDT is 07:00Z; the next 02:00 EDT is 06:00Z.
    nightly(
        "America/New_York",
        "2023-03-12T07:00:00Z",
        "2023-03-13T06:00:00Z",
    );
}

#[test]
fn nightly_runs_once_on_dst_nights_in_sydney() {
    // Fall back (April): 02:00-02:59 twice, first at 15:00Z (AEDT); next night 16:00Z.
    nightly(
        "Australia/Sydney",
        "2024-04-06T15:00:00Z",
        "2024-04-07T16:00:00Z",
    );
    // Spring forward (October): no 02:00; 03:00 AEDT is 16:00Z; next 02:00 is 15:00Z.
    nightly(
        "Australia/Sydney",
        "2024-10-05T16:00:00Z",
        "2024-10-06T15:00:00Z",
    );
}

#[test]
fn nightly_runs_once_on_dst_nights_in_santiago() {
    // Changes at midnight: 02:00 comes every night, -04 after the fall back...
    nightly(
        "America/Santiago",
        "2024-04-07T06:00:00Z",
        "2024-04-08T06:00:00Z",
    );
    // ...and -03 after the spring forward.
    nightly(
        "America/Santiago",
        "2024-09-08T05:00:00Z",
        "2024-09-09T05:00:00Z",
    );
}

/// `{day}` is the local date: in Santiago the repeated 23:00 hour of 2024-04-06 is one
/// day, and the hour after the skipped midnight of 2024-09-08 is the new one.
#[test]
fn calendar_keys_follow_the_local_calendar() {
    let h = Host::new("host1");
    let run = |tz: &str, at: &str, key: &str| {
        h.at("baton-run", at)
            .env("TZ", tz)
            .args(["--lock", "j", "--once-per", key, "--", "true"])
            .run()
            .code()
    };
    let tz = "America/Santiago";
    // 23:30 -03, then 23:30 -04 an hour later: the same local day.
    assert_eq!(run(tz, "2024-04-07T02:30:00Z", "{day}"), 0);
    assert_eq!(run(tz, "2024-04-07T03:30:00Z", "{day}"), 76);
    assert_eq!(run(tz, "2024-04-07T04:05:00Z", "{day}"), 0, "00:05 the 7th");
    // 23:59 -04 on the 7th of September, then 01:00 -03 on the 8th.
    assert_eq!(run(tz, "2024-09-08T03:59:00Z", "{day}-x"), 0);
    assert_eq!(run(tz, "2024-09-08T04:00:00Z", "{day}-x"), 0);
    assert_eq!(run(tz, "2024-09-08T04:30:00Z", "{day}-x"), 76);
    // ISO weeks, months, years and hours, combined with other text.
    let keys = baton("baton-run")
        .env("BATON_STATE_DIR", h.state())
        .env("TZ", "Australia/Sydney")
        .args(["--at", "2026-11-01T02:30:00Z", "--lock", "k"])
        .args([
            "--once-per",
            "{week} {month} {year} {hour} up-1",
            "--",
            "true",
        ])
        .run()
        .status(0);
    drop(keys);
    let ledger = std::fs::read_to_string(h.state().join("once-per/k.json")).unwrap();
    assert!(
        ledger.contains("\"2026-W44 2026-11 2026 2026-11-01T13 up-1\""),
        "{ledger}"
    );
    h.at("baton-run", "2026-11-01T02:30:00Z")
        .args(["--once-per", "{date}", "--", "true"])
        .run()
        .error("baton-run", "unknown placeholder '{date}'");
}

#[test]
fn repeated_local_times_are_the_first_instant_and_gaps_are_refused() {
    // (zone, a local time that repeats, the UTC hour of its first instant)
    for (tz, local, gmt) in [
        ("Europe/Berlin", "2023-10-29 02:30", "GMT_Hr00"),
        ("America/New_York", "2023-11-05 01:30", "GMT_Hr5"),
        ("Australia/Sydney", "2024-04-07 02:30", "GMT_Hr15"),
        ("America/Santiago", "2024-04-06 23:30", "GMT_Hr2"),
    ] {
        for how in ["--at", "BATON_NOW"] {
            let mut cmd = baton("baton-if").env("TZ", tz).args(["--explain", gmt]);
            cmd = match how {
                "--at" => cmd.args(["--at", local]),
                _ => cmd.env("BATON_NOW", local),
            };
            cmd.env("BATON_STATE_DIR", "/nonexistent").run().status(0);
        }
    }
    // --since reads a local time the same way: the first 02:30 in Berlin is 00:30Z, so a
    // signal set at 00:45Z is newer and one set at 00:15Z is not.
    let h = Host::new("host1");
    h.at("baton-signal", "2023-10-29T00:15:00Z")
        .args(["raise", "old", "--ttl", "3h"])
        .run()
        .status(0);
    h.at("baton-signal", "2023-10-29T00:45:00Z")
        .args(["raise", "new", "--ttl", "3h"])
        .run()
        .status(0);
    let server = h.serve("127.0.0.61", "allow .* 127.0.0.1\n", &[]);
    h.set_clock("2023-10-29T01:00:00Z");
    baton("baton-query")
        .env("TZ", "Europe/Berlin")
        .args(["--since", "2023-10-29 02:30", &server.addr, ".*"])
        .run()
        .status(0)
        .stdout_is("new\n");
    for (tz, gap) in [
        ("Europe/Berlin", "2023-03-26 02:30"),
        ("Australia/Sydney", "2024-10-06 02:30"),
        ("America/Santiago", "2024-09-08 00:30"),
    ] {
        baton("baton-classes")
            .env("TZ", tz)
            .args(["--at", gap])
            .run()
            .error("baton-classes", "TZ skips this local time");
    }
    // An unknown zone is named, never a silent UTC.
    baton("baton-classes")
        .env("TZ", "Europe/Pariss")
        .env("BATON_STATE_DIR", h.state())
        .args(["--at", "2023-10-29 02:30"])
        .run()
        .status(0)
        .says("baton-classes", "TZ=Europe/Pariss is not a time zone");
}

/// A run stamped a year ahead, then the clock stepped back: the next tick runs (saying
/// why), and the signal of that run is not live for the months until real time catches up.
#[test]
fn a_clock_stepped_back_delays_nothing() {
    let h = Host::new("host1");
    let tick = |at: &str| {
        h.at("baton-run", at).args([
            "--lock",
            "j",
            "--ifelapsed",
            "10m",
            "--on-repaired",
            "done",
            "--",
            "true",
        ])
    };
    tick("2025-06-01T12:00:00Z").run().status(0);
    let run = tick("2024-06-01T12:00:00Z").run().status(0);
    assert!(
        run.stderr()
            .contains("its last start, 2025-06-01T12:00:00Z, is in the future of this clock (2024-06-01T12:00:00Z): the clock stepped back"),
        "{}",
        run.stderr()
    );
    // From now on, ifelapsed counts from the new start, on the stepped clock.
    // (A skip by a rule is silent; its reason is in the history.)
    tick("2024-06-01T12:05:00Z").run().status(76).stderr_is("");
    let records = h
        .at("baton-run", "2024-06-01T12:05:00Z")
        .args(["--history", "j", "--json"])
        .run()
        .status(0);
    assert!(
        records
            .stdout()
            .contains("\"reason\":\"skipped j: last started 5m ago, --ifelapsed 10m\""),
        "{}",
        records.stdout()
    );
    // The year-ahead signal was replaced by this run's, which expires in 10 minutes.
    h.at("baton-if", "2024-06-01T12:09:00Z")
        .arg("done")
        .run()
        .status(0);
    h.at("baton-if", "2024-06-01T12:10:00Z")
        .arg("done")
        .run()
        .status(1);
    // A signal raised on the fast clock alone is not live after the step, at any time.
    h.at("baton-signal", "2025-06-01T12:00:00Z")
        .args(["raise", "ahead"])
        .run()
        .status(0);
    for at in [
        "2024-06-01T12:00:00Z",
        "2024-12-01T00:00:00Z",
        "2025-06-01T11:54:00Z",
    ] {
        h.at("baton-if", at).arg("ahead").run().status(1);
    }
    // Within the tolerance, the clock's own record.
    h.at("baton-if", "2025-06-01T11:56:00Z")
        .arg("ahead")
        .run()
        .status(0);
    // A once-per day recorded on the fast clock does not hold back today.
    let once = |at: &str| {
        h.at("baton-run", at)
            .args(["--lock", "o", "--once-per", "{day}", "--", "true"])
            .run()
            .code()
    };
    assert_eq!(once("2025-06-01T12:00:00Z"), 0);
    assert_eq!(once("2024-06-01T12:00:00Z"), 0);
    assert_eq!(once("2024-06-01T12:05:00Z"), 76);
}

/// A run holding the lock with a start a year ahead counts as past --expireafter.
#[test]
fn a_lock_stamped_in_the_future_expires() {
    let h = Host::new("host1");
    let mut holder = h
        .at("baton-run", "2025-06-01T12:00:00Z")
        .args(["--lock", "j", "--", "sleep", "60"])
        .cmd
        .spawn()
        .unwrap();
    let state = h.state().join("jobs/j.json");
    crate::util::wait_until(
        "the job to start",
        std::time::Duration::from_secs(20),
        // The command started (its start time is on record): the run has let go of the
        // take-over lock, which it holds only until it is on record.
        || {
            std::fs::read_to_string(&state)
                .is_ok_and(|s| s.contains("\"running\":{") && !s.contains("\"pid_start\":0"))
        },
    );
    let run = h
        .at("baton-run", "2024-06-01T12:00:00Z")
        .args([
            "--lock",
            "j",
            "--expireafter",
            "4h",
            "--grace",
            "1s",
            "--",
            "true",
        ])
        .run()
        .status(0);
    assert!(
        run.stderr().contains("started at 2025-06-01T12:00:00Z, in the future of this clock (2024-06-01T12:00:00Z): the clock stepped back since, past --expireafter 4h"),
        "{}",
        run.stderr()
    );
    crate::util::wait_child(
        &mut holder,
        std::time::Duration::from_secs(30),
        "the killed holder",
    );
}

/// The guide's freshness pattern, Host1's clock a day fast when it raised did_my_job, then
/// corrected: Host2 follows only the real run of the day, not one every 100 minutes.
#[test]
fn a_signal_from_a_clock_a_day_fast_is_not_fresh() {
    let mut c = Cluster::from_guide("fresh", &["Host1", "Host2"]);
    c.host("Host1")
        .host
        .at("baton-signal", "2012-01-25T16:45:00Z")
        .args(["raise", "did_my_job", "--ttl", "2d"])
        .run()
        .status(0);
    c.run("2012-01-24T00:00:00Z", "2012-01-24T23:55:00Z");
    assert_eq!(
        c.runs("Host2", "do_my_job_bundle"),
        ["2012-01-24T16:45:00Z"],
        "{}",
        c.mail("Host2")
    );
}

/// A command for `bin` acting as `h`, on a clock `offset` from the real one (libfaketime
/// preloaded into the binary itself, not the faketime wrapper, which forks: killing the
/// wrapper would leave a server running).
fn on_skewed_clock(bin: &str, offset: &str, h: &Host) -> std::process::Command {
    let libfaketime = ["x86_64-linux-gnu", "aarch64-linux-gnu", "i386-linux-gnu"]
        .iter()
        .map(|a| std::path::PathBuf::from(format!("/usr/lib/{a}/faketime/libfaketime.so.1")))
        .find(|p| p.exists())
        .expect("libfaketime (Debian package faketime) is installed");
    let mut cmd = std::process::Command::new(crate::util::bin(bin));
    crate::util::without_baton_env(&mut cmd);
    cmd.env("LD_PRELOAD", &libfaketime)
        .env("FAKETIME", offset)
        .env("TZ", "UTC")
        .env("BATON_HOST", &h.name)
        .env("BATON_STATE_DIR", h.state());
    cmd
}

/// Raise `name` for `ttl` as `h` on a clock `offset` from the real one, in its state dir
/// and in `etcd`.
fn raise_on_both(h: &Host, offset: &str, etcd: &EtcdCluster, name: &str, ttl: &str) {
    for store in ["", etcd.url().as_str()] {
        let out = on_skewed_clock("baton-signal", offset, h)
            .args(["raise", name, "--ttl", ttl])
            .env("BATON_STORE", store)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }
}

/// `h`'s baton-serve on `ip`, on a clock `offset` from the real one; killed when dropped.
fn serve_on_skewed_clock(h: &Host, offset: &str, ip: &str) -> crate::util::Server {
    let log = h.dir.join("serve.log");
    std::fs::write(h.dir.join("access"), "allow .* 127.0.0.1\n").unwrap();
    let mut child = on_skewed_clock("baton-serve", offset, h)
        .args(["--listen", &format!("{ip}:0"), "--access"])
        .arg(h.dir.join("access"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut serve = crate::util::Server {
        child,
        addr: String::new(),
        log,
    };
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
    serve.addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("baton-serve did not start: {}", serve.log_text()))
        .to_string();
    serve
}

/// `baton-query` of host1's `did.*` through `store` ("" for HTTP) at `target`.
fn ask(store: &str, target: &str, newer_than: &str) -> crate::util::Run {
    baton("baton-query")
        .env("BATON_STORE", store)
        .args([
            "--newer-than",
            newer_than,
            "--prefix",
            "hostX",
            target,
            "did.*",
        ])
        .run()
}

/// Host1's clock 15 minutes slow: its 10-minute signal, read by Host2 (whose clock is
/// right) over baton-serve and in etcd, is live and fresh on both, for the same answer.
/// The real clocks are used (etcd's leases count real time); libfaketime slows Host1's.
#[test]
fn a_skewed_host_reads_the_same_over_http_and_etcd() {
    let etcd = EtcdCluster::start(1);
    let h1 = Host::new("host1");
    raise_on_both(&h1, "-15m", &etcd, "did_my_job", "10m");
    // Host1's baton-serve on its own (slow) clock.
    let serve = serve_on_skewed_clock(&h1, "-15m", "127.0.0.62");
    // libfaketime did slow Host1's clock: its record is 15 minutes old by Host2's.
    let set_at = baton("baton-query")
        .env("BATON_STORE", etcd.url())
        .args(["--format", "{set_at}", "host1", "did_my_job"])
        .run()
        .status(0)
        .stdout();
    let lag = Utc::now() - utc(set_at.trim());
    assert!(
        lag >= Span::minutes(14) && lag < Span::minutes(16),
        "{set_at}"
    );
    let http = ask("", &serve.addr, "5m").status(0);
    let shared = ask(&etcd.url(), "host1", "5m").status(0);
    assert_eq!(http.stdout(), "hostX_did_my_job\n");
    assert_eq!(shared.stdout(), http.stdout());
}

/// Host1 raised a 2-hour signal while its clock was a day fast, then, its clock put
/// right, a 10-minute one. Both paths judge Host1's records by Host1's clock now (on
/// etcd: its most recent write, not its largest stamp), so both see only the second.
#[test]
fn a_clock_stepped_back_reads_the_same_over_http_and_etcd() {
    let etcd = EtcdCluster::start(1);
    let h1 = Host::new("host1");
    raise_on_both(&h1, "+1d", &etcd, "did_a", "2h");
    raise_on_both(&h1, "+0", &etcd, "did_b", "10m");
    let serve = serve_on_skewed_clock(&h1, "+0", "127.0.0.63");
    for newer_than in ["1d", "1h"] {
        let http = ask("", &serve.addr, newer_than).status(0);
        let shared = ask(&etcd.url(), "host1", newer_than).status(0);
        assert_eq!(http.stdout(), "hostX_did_b\n", "--newer-than {newer_than}");
        assert_eq!(shared.stdout(), http.stdout(), "--newer-than {newer_than}");
    }
}

/// What the guide's nightly line replaces: CFEngine's `Hr02:: if_elapsed("100")`, as
/// `baton-if Hr02 && baton-run --ifelapsed 100`, runs twice on Berlin's fall-back night
/// (02:00 CEST, then 02:40 CET: the hour lasts 120 minutes) and never on the spring-forward
/// night, as CFEngine does (its classes at those instants are in tests/conformance).
#[test]
fn an_hour_class_with_ifelapsed_is_not_once_a_night() {
    let h = Host::new("host1");
    let night = |from: &str, to: &str| {
        let (mut t, to) = (utc(from), utc(to));
        while t <= to {
            let mut line = h.sh(
                &crate::util::cluster::stamp(t),
                "baton-if Hr02 && baton-run -q --lock old --ifelapsed 100 -- true",
            );
            line.cmd.env("TZ", "Europe/Berlin");
            line.run();
            t += Span::minutes(5);
        }
    };
    night("2023-10-28T23:00:00Z", "2023-10-29T03:00:00Z");
    night("2023-03-25T23:00:00Z", "2023-03-26T03:00:00Z");
    let runs: Vec<String> = h
        .at("baton-run", "2023-10-30T00:00:00Z")
        .args(["--history", "old"])
        .run()
        .lines()
        .into_iter()
        .filter(|l| l.contains(" repaired "))
        .map(|l| l.split(' ').next().unwrap().to_string())
        .collect();
    assert_eq!(runs, ["2023-10-29T00:00:00Z", "2023-10-29T01:40:00Z"]);
}
