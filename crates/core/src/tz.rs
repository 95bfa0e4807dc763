//! The one check of `TZ`: a misspelled zone (`Europe/Pariss`) makes the C library fall
//! back to UTC without a word, and every local time class then fires at the wrong hour.

use std::path::Path;

/// Where the C library looks up zone names.
const ZONEINFO: &str = "/usr/share/zoneinfo";

/// Why `tz` (the value of `TZ`) names no time zone, or `None` when it does (or is unset
/// or empty: the system zone). A zone is a file under /usr/share/zoneinfo (`Europe/Paris`,
/// `UTC`), an absolute file (`:/etc/localtime`), or a POSIX TZ string (`CET-1CEST,M3.5.0,
/// M10.5.0/3`, `EST5EDT`, `<+03>-3`). Baton warns and goes on, as the C library does: the
/// times are then UTC.
pub fn check_tz(tz: &str) -> Option<String> {
    let name = tz.strip_prefix(':').unwrap_or(tz);
    if name.is_empty() {
        return None;
    }
    let file = if name.starts_with('/') {
        Path::new(name).to_path_buf()
    } else {
        Path::new(ZONEINFO).join(name)
    };
    let safe = !name.split('/').any(|part| part == "..");
    if safe && is_zone_file(&file) {
        return None;
    }
    if !tz.starts_with(':') && is_posix_tz(name) {
        return None;
    }
    Some(format!(
        "TZ={tz} is not a time zone (no zone file {} and not a POSIX TZ string): local times are UTC; give a name under {ZONEINFO}, e.g. TZ=Europe/Paris",
        file.display()
    ))
}

/// Whether `path` is a compiled zone file: a regular file that starts with `TZif`
/// (tzfile(5)). `zone.tab` or `/etc/passwd` are files too, and the C library falls back to
/// UTC on them just as on a missing one.
fn is_zone_file(path: &Path) -> bool {
    use std::io::Read;
    if !path.is_file() {
        return false;
    }
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok_and(|()| &magic == b"TZif")
}

/// `STD OFFSET [DST [OFFSET] [,RULE]]`: a name of 3 or more letters (or `<...>`), then
/// an offset that starts with a sign or a digit.
fn is_posix_tz(s: &str) -> bool {
    let Some(rest) = std_name(s) else {
        return false;
    };
    let digits = rest.trim_start_matches(['+', '-']);
    // The offset's hours: at most 24 (POSIX), so `iso3166.tab` is no zone.
    let hours: String = digits.chars().take_while(char::is_ascii_digit).collect();
    let after = &digits[hours.len()..];
    !hours.is_empty()
        && hours.parse::<u32>().is_ok_and(|h| h <= 24)
        && !after.starts_with('.')
        && rest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-:,./<>".contains(c))
}

fn std_name(s: &str) -> Option<&str> {
    if let Some(quoted) = s.strip_prefix('<') {
        let end = quoted.find('>')?;
        return (end >= 3).then(|| &quoted[end + 1..]);
    }
    let letters = s.chars().take_while(char::is_ascii_alphabetic).count();
    (letters >= 3).then(|| &s[letters..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zone_names_files_and_posix_strings_pass() {
        for tz in [
            "",
            "UTC",
            "Europe/Paris",
            ":Europe/Paris",
            "America/New_York",
            "EST5EDT",
            "CET-1CEST,M3.5.0,M10.5.0/3",
            "UTC0",
            "<+03>-3",
            "JST-9",
        ] {
            assert_eq!(check_tz(tz), None, "{tz}");
        }
    }

    #[test]
    fn a_misspelled_zone_is_named_once() {
        let why = check_tz("Europe/Pariss").unwrap();
        assert!(
            why.starts_with("TZ=Europe/Pariss is not a time zone"),
            "{why}"
        );
        assert!(why.contains("/usr/share/zoneinfo/Europe/Pariss"), "{why}");
        for bad in [
            "zone.tab",
            "iso3166.tab",
            "/etc/passwd",
            "Pariss",
            "Europe/../../etc/passwd",
            ":Nowhere/Zone",
            "Xyz",
            "5EST",
        ] {
            assert!(check_tz(bad).is_some(), "{bad}");
        }
    }
}
