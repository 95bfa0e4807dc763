//! Durations as a crontab writes them: `90s`, `5m`, `2h`, `1d`, `1h30m`; a bare number is
//! minutes, as in CFEngine's `ifelapsed` and `persist_time`.

use crate::error::{Error, Result};
use std::fmt;
use std::str::FromStr;

/// A span of whole seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(u64);

/// The longest duration accepted: ten years keeps every sum with a date in range.
const MAX_SECONDS: u64 = 10 * 366 * 86_400;

impl Duration {
    pub const ZERO: Duration = Duration(0);

    pub const fn from_secs(secs: u64) -> Duration {
        Duration(secs)
    }

    pub fn as_secs(self) -> u64 {
        self.0
    }

    pub fn std(self) -> std::time::Duration {
        std::time::Duration::from_secs(self.0)
    }

    pub fn chrono(self) -> chrono::TimeDelta {
        // MAX_SECONDS keeps this in i64 range.
        chrono::TimeDelta::seconds(self.0 as i64)
    }
}

impl FromStr for Duration {
    type Err = Error;

    fn from_str(text: &str) -> Result<Duration> {
        let bad = || {
            Error::new(format!(
                "invalid duration '{text}': use e.g. 90s, 5m, 2h, 1d or 1h30m (a bare number is minutes)"
            ))
        };
        let s = text.trim();
        if s.is_empty() || s.len() > 64 {
            return Err(bad());
        }
        if s.bytes().all(|b| b.is_ascii_digit()) {
            let minutes: u64 = s.parse().map_err(|_| bad())?;
            return checked(minutes.checked_mul(60), text);
        }
        let mut total: u64 = 0;
        let mut rest = s;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(bad());
            }
            let value: u64 = rest[..digits].parse().map_err(|_| bad())?;
            rest = &rest[digits..];
            let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
            let unit = match &rest[..unit_len] {
                "s" => 1,
                "m" => 60,
                "h" => 3600,
                "d" => 86_400,
                _ => return Err(bad()),
            };
            rest = &rest[unit_len..];
            let part = value.checked_mul(unit).ok_or_else(bad)?;
            total = total.checked_add(part).ok_or_else(bad)?;
        }
        checked(Some(total), text)
    }
}

fn checked(secs: Option<u64>, text: &str) -> Result<Duration> {
    match secs {
        Some(s) if s <= MAX_SECONDS => Ok(Duration(s)),
        _ => Err(Error::new(format!(
            "invalid duration '{text}': longer than ten years"
        ))),
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        if s == 0 {
            return f.write_str("0s");
        }
        for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
            if s.is_multiple_of(size) {
                return write!(f, "{}{unit}", s / size);
            }
        }
        unreachable!("every whole number of seconds divides by one")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(text: &str) -> Option<u64> {
        text.parse::<Duration>().ok().map(Duration::as_secs)
    }

    #[test]
    fn units_and_bare_minutes() {
        assert_eq!(secs("90s"), Some(90));
        assert_eq!(secs("5m"), Some(300));
        assert_eq!(secs("2h"), Some(7200));
        assert_eq!(secs("1d"), Some(86_400));
        assert_eq!(secs("100"), Some(6000));
        assert_eq!(secs("1h30m"), Some(5400));
        assert_eq!(secs(" 10m "), Some(600));
        assert_eq!(secs("0"), Some(0));
    }

    #[test]
    fn rejects_garbage_and_overflow() {
        for bad in [
            "",
            "m",
            "5x",
            "-5m",
            "5 m",
            "1.5h",
            "5mm",
            "99999999999999999999",
            "4000d",
            "1h-",
        ] {
            assert_eq!(secs(bad), None, "{bad:?} should be rejected");
        }
    }

    #[test]
    fn displays_in_the_largest_whole_unit() {
        for (text, shown) in [
            ("120s", "2m"),
            ("90s", "90s"),
            ("24h", "1d"),
            ("100", "100m"),
        ] {
            assert_eq!(text.parse::<Duration>().unwrap().to_string(), shown);
        }
    }
}

#[cfg(test)]
mod fuzz_duration {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn fuzz_duration_never_panics(text in ".{0,40}") {
            let _ = text.parse::<Duration>();
        }

        #[test]
        fn fuzz_duration_round_trips(secs in 0u64..=MAX_SECONDS) {
            let d = Duration::from_secs(secs);
            prop_assert_eq!(d.to_string().parse::<Duration>().unwrap(), d);
        }
    }
}
