//! The one clock: `--at TIME`, else `BATON_NOW`, else the system clock. Each binary builds
//! a [`Clock`] at the top of `main` and passes it down; nothing below reads the system
//! clock on its own, so a test can drive a simulated day through every binary.

use crate::error::{Error, Result};
use chrono::{DateTime, Local, LocalResult, NaiveDateTime, TimeDelta, TimeZone, Utc};
use std::path::PathBuf;

/// The environment variable that sets the clock when `--at` is not given.
pub const ENV_NOW: &str = "BATON_NOW";

/// Where "now" comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Clock {
    /// The system clock.
    System,
    /// A fixed instant, from `--at` or `BATON_NOW=TIME`.
    Fixed(DateTime<Utc>),
    /// A file holding a TIME, read at every reading: `BATON_NOW=/path`. This lets a test
    /// advance the clock of a long-running `baton-serve` without touching its code path.
    File(PathBuf),
}

impl Clock {
    /// The clock a binary uses: `at` (from `--at`) wins, then `BATON_NOW`, then the
    /// system clock. A bad value is an error now, not at the first reading.
    pub fn resolve(at: Option<&str>) -> Result<Clock> {
        // Every local time (classes, `--at`, `--once-per '{day}'`) is read in `TZ`.
        if let Some(why) = std::env::var("TZ")
            .ok()
            .as_deref()
            .and_then(crate::tz::check_tz)
        {
            crate::error::warn(&why);
        }
        if let Some(text) = at {
            return parse_time(text)
                .map(Clock::Fixed)
                .map_err(|e| e.context("--at"));
        }
        match std::env::var(ENV_NOW) {
            Ok(text) if text.trim().is_empty() => Ok(Clock::System),
            Ok(text) if text.starts_with('/') => {
                let clock = Clock::File(PathBuf::from(text));
                clock.now()?;
                Ok(clock)
            }
            Ok(text) => parse_time(&text)
                .map(Clock::Fixed)
                .map_err(|e| e.context(ENV_NOW)),
            Err(std::env::VarError::NotPresent) => Ok(Clock::System),
            Err(std::env::VarError::NotUnicode(_)) => {
                Err(Error::new(format!("{ENV_NOW} is not valid UTF-8")))
            }
        }
    }

    /// The current instant, to the second.
    pub fn now(&self) -> Result<DateTime<Utc>> {
        match self {
            Clock::System => Ok(truncate(Utc::now())),
            Clock::Fixed(t) => Ok(*t),
            Clock::File(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| Error::io("read the clock file", path, e))?;
                parse_time(text.trim()).map_err(|e| e.context(path.display()))
            }
        }
    }
}

impl Clock {
    /// Sleep `d` as this clock counts time. The system clock and a fixed instant sleep in
    /// real time; a clock file (a simulated day) is watched until it has moved on by `d`,
    /// but never longer than `d` of real time, so every wait stays bounded.
    pub fn sleep(&self, d: std::time::Duration) -> Result<()> {
        let Clock::File(_) = self else {
            std::thread::sleep(d);
            return Ok(());
        };
        let start = self.now()?;
        let real_end = std::time::Instant::now() + d;
        let step = chrono::TimeDelta::from_std(d).unwrap_or(chrono::TimeDelta::MAX);
        while std::time::Instant::now() < real_end {
            if self.now()? >= start + step {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10).min(d));
        }
        Ok(())
    }
}

/// A bound on a wait, by the clock and by real time, whichever passes first (a fixed
/// clock never moves, and a clock file may stop moving).
#[derive(Debug, Clone)]
pub struct Deadline {
    clock_end: DateTime<Utc>,
    real_end: std::time::Instant,
}

impl Deadline {
    pub fn after(clock: &Clock, d: std::time::Duration) -> Result<Deadline> {
        let step = chrono::TimeDelta::from_std(d).unwrap_or(chrono::TimeDelta::MAX);
        Ok(Deadline {
            clock_end: clock.now()? + step,
            real_end: std::time::Instant::now() + d,
        })
    }

    /// Whether the wait is over.
    pub fn passed(&self, clock: &Clock) -> Result<bool> {
        Ok(std::time::Instant::now() >= self.real_end || clock.now()? >= self.clock_end)
    }

    /// Real time left at most.
    pub fn remaining(&self) -> std::time::Duration {
        self.real_end
            .saturating_duration_since(std::time::Instant::now())
    }
}

fn truncate(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(t)
}

/// Parse a TIME: RFC 3339 (`2012-01-24T16:47:00Z`), local `YYYY-MM-DD HH:MM[:SS]` (in
/// `TZ`, as every Unix tool), or `@EPOCH` seconds.
pub fn parse_time(text: &str) -> Result<DateTime<Utc>> {
    let t = parse_any_time(text)?;
    // Cron works in this range; bounding it keeps every `time + duration` in chrono's.
    if !(1900..=9999).contains(&chrono::Datelike::year(&t)) {
        return Err(Error::new(format!(
            "invalid time '{text}': out of range (years 1900 to 9999)"
        )));
    }
    Ok(t)
}

fn parse_any_time(text: &str) -> Result<DateTime<Utc>> {
    let s = text.trim();
    let bad = |why: &str| {
        Error::new(format!(
            "invalid time '{text}': {why} (use RFC 3339, 'YYYY-MM-DD HH:MM[:SS]' or @EPOCH)"
        ))
    };
    if let Some(epoch) = s.strip_prefix('@') {
        let secs: i64 = epoch.parse().map_err(|_| bad("not a number of seconds"))?;
        return DateTime::from_timestamp(secs, 0).ok_or_else(|| bad("out of range"));
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(truncate(t.with_timezone(&Utc)));
    }
    let naive = [
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
    ]
    .iter()
    .find_map(|fmt| NaiveDateTime::parse_from_str(s, fmt).ok())
    .ok_or_else(|| bad("unrecognised format"))?;
    match Local.from_local_datetime(&naive) {
        LocalResult::Single(t) => Ok(t.with_timezone(&Utc)),
        // In the hour a DST change repeats, take the first instant (docs/time.md). chrono
        // lists the two candidates in offset order, not in time order: compare them.
        LocalResult::Ambiguous(a, b) => Ok(a.with_timezone(&Utc).min(b.with_timezone(&Utc))),
        LocalResult::None => Err(Error::new(format!(
            "invalid time '{text}': TZ skips this local time (a DST change); give a time after the change, or RFC 3339 with its offset"
        ))),
    }
}

/// How far in the future of the reading clock a stamp may be and still count as this
/// clock's own: the drift of a host that NTP keeps in step, and a cron tick's slack.
pub const STEP_TOLERANCE: TimeDelta = TimeDelta::minutes(5);

/// Whether `stamp` (a record's time: a signal's `set_at`, a job's last start, a running
/// job's start) is further in the future of `now` than [`STEP_TOLERANCE`]: the clock that
/// wrote it has since stepped back, or runs ahead of the reader's. Such a record's age
/// is unknown; docs/time.md says what each kind of record then means.
pub fn stepped(stamp: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    stamp > now + STEP_TOLERANCE
}

/// Whether a signal set at `set_at` and expiring at `expires_at` is live at `now`, the
/// clock of the host (or store) that holds it: before its expiry, and not stamped in the
/// future (a record from a clock since stepped back would otherwise live on until real
/// time caught up with it: it is taken to have expired with the step).
pub fn live(set_at: DateTime<Utc>, expires_at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    now < expires_at && !stepped(set_at, now)
}

/// Whether a live signal set at `set_at` passes the freshness filters at `now` (the
/// holder's clock): set less than `newer_than` ago, and at or after `since`. A stamp in
/// the future (within [`STEP_TOLERANCE`]) counts as just set, never as fresher than that.
pub fn fresh(
    set_at: DateTime<Utc>,
    now: DateTime<Utc>,
    newer_than: Option<crate::Duration>,
    since: Option<DateTime<Utc>>,
) -> bool {
    !stepped(set_at, now)
        && newer_than.is_none_or(|d| now - set_at < d.chrono())
        && since.is_none_or(|t| set_at >= t)
}

/// The form Baton writes times in: RFC 3339 in UTC, to the second.
pub fn format_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_epoch_and_rfc3339() {
        assert_eq!(parse_time("@0").unwrap().timestamp(), 0);
        assert_eq!(
            parse_time("2012-01-24T16:47:00Z").unwrap().timestamp(),
            1327423620
        );
        assert_eq!(
            parse_time("2012-01-24T17:47:00+01:00").unwrap().timestamp(),
            1327423620
        );
        assert_eq!(
            format_time(parse_time("@1327423620").unwrap()),
            "2012-01-24T16:47:00Z"
        );
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "@",
            "@x",
            "yesterday",
            "2012-13-01 00:00",
            "2012-01-24 25:00",
            "@99999999999999999",
        ] {
            assert!(parse_time(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}

#[cfg(test)]
mod fuzz_clock {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn fuzz_time_never_panics(text in ".{0,40}") {
            let _ = parse_time(&text);
        }

        #[test]
        fn fuzz_time_round_trips(epoch in -2_208_988_800i64..253_402_300_799i64) {
            let t = DateTime::from_timestamp(epoch, 0).unwrap();
            prop_assert_eq!(parse_time(&format_time(t)).unwrap(), t);
            prop_assert_eq!(parse_time(&format!("@{epoch}")).unwrap(), t);
        }
    }
}
