//! Time classes, as CFEngine 3.21 defines them (libpromises/time_classes.c): for local
//! time (`TZ`) and again with a `GMT_` prefix for UTC.

use chrono::{DateTime, Datelike, Local, TimeZone, Timelike, Utc};

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const WEEKDAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];
/// Six-hour shifts, indexed by hour / 6.
const SHIFTS: [&str; 4] = ["Night", "Morning", "Afternoon", "Evening"];

/// The time classes at `now`: local time in the process's `TZ`, then UTC with `GMT_`.
/// Besides CFEngine's own classes it defines `Year2012` beside `Yr2012`, because the seed
/// guide writes its expressions that way (CFEngine 3.21 silently never matches them).
pub fn time_classes(now: DateTime<Utc>) -> Vec<String> {
    let mut out = Vec::with_capacity(40);
    push_for(&mut out, "", &now.with_timezone(&Local));
    push_for(&mut out, "GMT_", &now);
    out
}

/// The time classes of one zone, each name with `prefix`.
fn push_for<Tz: TimeZone>(out: &mut Vec<String>, prefix: &str, t: &DateTime<Tz>) {
    let (year, hour, minute) = (t.year(), t.hour(), t.minute());
    let quarter = minute / 15 + 1;
    let bucket = minute / 5 * 5;
    out.extend([
        format!("{prefix}Lcycle_{}", year.rem_euclid(3)),
        format!("{prefix}Yr{year:04}"),
        format!("{prefix}Year{year:04}"),
        format!("{prefix}{}", MONTHS[t.month0() as usize]),
        format!(
            "{prefix}{}",
            WEEKDAYS[t.weekday().num_days_from_monday() as usize]
        ),
        format!("{prefix}Day{}", t.day()),
        format!("{prefix}{}", SHIFTS[(hour / 6) as usize]),
        format!("{prefix}Hr{hour:02}"),
        format!("{prefix}Hr{hour}"),
        format!("{prefix}Q{quarter}"),
        format!("{prefix}Hr{hour:02}_Q{quarter}"),
        format!("{prefix}Min{minute:02}"),
        format!("{prefix}Min{bucket:02}_{:02}", (bucket + 5) % 60),
    ]);
}

/// Whether `name` is one that [`time_classes`] can define (used to tell time classes
/// from others in listings and conformance checks).
pub fn is_time_class(name: &str) -> bool {
    let n = name.strip_prefix("GMT_").unwrap_or(name);
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    MONTHS.contains(&n)
        || WEEKDAYS.contains(&n)
        || SHIFTS.contains(&n)
        || n.strip_prefix("Lcycle_").is_some_and(digits)
        || n.strip_prefix("Yr").is_some_and(digits)
        || n.strip_prefix("Year").is_some_and(digits)
        || n.strip_prefix("Day").is_some_and(digits)
        || n.strip_prefix("Q").is_some_and(digits)
        || n.strip_prefix("Hr").is_some_and(|h| {
            digits(h)
                || h.split_once("_Q")
                    .is_some_and(|(a, b)| digits(a) && digits(b))
        })
        || n.strip_prefix("Min").is_some_and(|m| {
            digits(m)
                || m.split_once('_')
                    .is_some_and(|(a, b)| digits(a) && digits(b))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// The UTC classes at an instant, without the `GMT_` prefix: independent of `TZ`, so
    /// these tests do not race on the environment.
    fn utc(epoch: i64) -> BTreeSet<String> {
        let t = DateTime::from_timestamp(epoch, 0).unwrap();
        let mut out = Vec::new();
        push_for(&mut out, "", &t);
        out.into_iter().collect()
    }

    fn at(date: &str) -> BTreeSet<String> {
        let t = DateTime::parse_from_rfc3339(date).unwrap();
        utc(t.timestamp())
    }

    fn has(set: &BTreeSet<String>, names: &[&str]) {
        for n in names {
            assert!(set.contains(*n), "missing {n} in {set:?}");
        }
    }

    fn lacks(set: &BTreeSet<String>, names: &[&str]) {
        for n in names {
            assert!(!set.contains(*n), "unexpected {n} in {set:?}");
        }
    }

    #[test]
    fn the_seed_instant() {
        let c = at("2012-01-24T16:47:00Z");
        has(
            &c,
            &[
                "Yr2012",
                "Year2012",
                "January",
                "Tuesday",
                "Day24",
                "Hr16",
                "Hr16_Q4",
                "Q4",
                "Min47",
                "Min45_50",
                "Afternoon",
                "Lcycle_2",
            ],
        );
        assert_eq!(c.len(), 12, "{c:?}"); // Hr16 is spelt one way only
    }

    #[test]
    fn hours_have_both_spellings_below_ten() {
        let c = at("2024-03-05T05:00:00Z");
        has(
            &c,
            &["Hr05", "Hr5", "Hr05_Q1", "Min00", "Min00_05", "Night"],
        );
        lacks(&c, &["Hr5_Q1"]);
        let c = at("2024-03-05T00:14:59Z");
        has(&c, &["Hr00", "Hr0", "Q1", "Min14", "Min10_15"]);
    }

    #[test]
    fn five_minute_buckets_wrap_at_the_hour() {
        has(&at("2024-03-05T10:55:00Z"), &["Min55_00", "Min55"]);
        has(&at("2024-03-05T10:59:59Z"), &["Min55_00", "Q4", "Hr10_Q4"]);
        has(&at("2024-03-05T10:04:59Z"), &["Min00_05", "Min04"]);
        has(&at("2024-03-05T10:05:00Z"), &["Min05_10", "Min05"]);
    }

    #[test]
    fn quarters_at_their_edges() {
        for (min, q) in [
            (0, 1),
            (14, 1),
            (15, 2),
            (29, 2),
            (30, 3),
            (44, 3),
            (45, 4),
            (59, 4),
        ] {
            let c = at(&format!("2024-03-05T07:{min:02}:00Z"));
            has(&c, &[&format!("Q{q}"), &format!("Hr07_Q{q}")]);
        }
    }

    #[test]
    fn shifts_at_their_edges() {
        for (hour, shift) in [
            (0, "Night"),
            (5, "Night"),
            (6, "Morning"),
            (11, "Morning"),
            (12, "Afternoon"),
            (17, "Afternoon"),
            (18, "Evening"),
            (23, "Evening"),
        ] {
            has(&at(&format!("2024-03-05T{hour:02}:30:00Z")), &[shift]);
        }
    }

    #[test]
    fn lifecycle_is_year_mod_three() {
        has(
            &at("2024-01-01T00:00:00Z"),
            &["Lcycle_2", "Yr2024", "Monday", "Day1"],
        );
        has(&at("2025-01-01T00:00:00Z"), &["Lcycle_0"]);
        has(&at("2026-01-01T00:00:00Z"), &["Lcycle_1"]);
    }

    #[test]
    fn new_year_and_leap_day() {
        has(
            &at("2024-12-31T23:59:59Z"),
            &["Yr2024", "December", "Day31", "Tuesday", "Hr23", "Min55_00"],
        );
        has(
            &at("2025-01-01T00:00:00Z"),
            &["Yr2025", "January", "Day1", "Wednesday"],
        );
        has(
            &at("2024-02-29T12:00:00Z"),
            &["February", "Day29", "Thursday"],
        );
    }

    #[test]
    fn gmt_prefix_names_utc() {
        let t = DateTime::from_timestamp(1327423620, 0).unwrap();
        let all = time_classes(t);
        for n in [
            "GMT_Hr16",
            "GMT_Min45_50",
            "GMT_Year2012",
            "GMT_Yr2012",
            "GMT_January",
        ] {
            assert!(all.iter().any(|c| c == n), "missing {n}");
        }
        assert_eq!(all.len(), 26);
    }

    #[test]
    fn recognises_its_own_names() {
        let t = DateTime::from_timestamp(1327423620, 0).unwrap();
        assert!(time_classes(t).iter().all(|c| is_time_class(c)));
        for other in [
            "any",
            "linux",
            "Hr",
            "Minute",
            "did_my_job",
            "Day",
            "host1",
            "Yr20x",
        ] {
            assert!(!is_time_class(other), "{other}");
        }
    }
}
