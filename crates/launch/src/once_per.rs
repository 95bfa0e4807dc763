//! `--once-per` templates: the calendar placeholders `{day}`, `{week}`, `{month}`,
//! `{year}` and `{hour}`, expanded on Baton's clock (the run's `now`) in `TZ`, so that
//! `--once-per '{day}'` means one successful run per local calendar day on every day of
//! the year, the nights DST changes included (docs/time.md). `{...}` as the other
//! templates; no `%` fields, which cron turns into newlines.

use baton_core::{Error, Result};
use chrono::{DateTime, Local, Utc};

/// The placeholders and the `strftime` form each expands to, in local time.
const PLACEHOLDERS: [(&str, &str); 5] = [
    // The local calendar date: 2026-11-01.
    ("day", "%Y-%m-%d"),
    // The ISO week and its year (which may differ from the calendar year): 2026-W44.
    ("week", "%G-W%V"),
    ("month", "%Y-%m"),
    ("year", "%Y"),
    // The local date and hour: 2026-11-01T02. A repeated hour is one hour here.
    ("hour", "%Y-%m-%dT%H"),
];

/// Check `template` before any work: every `{word}` must be a known placeholder.
pub fn check(template: &str) -> Result<()> {
    expand_with(template, |_| String::new()).map(|_| ())
}

/// `template` with each placeholder replaced by `now`'s local calendar field.
pub fn expand(template: &str, now: DateTime<Utc>) -> Result<String> {
    let local = now.with_timezone(&Local);
    expand_with(template, |format| local.format(format).to_string())
}

fn expand_with(template: &str, field: impl Fn(&str) -> String) -> Result<String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let word_len = after
            .find(|c: char| !c.is_ascii_alphanumeric() && c != '_')
            .unwrap_or(after.len());
        // Only `{word}` is a placeholder; any other brace is the key's own text.
        if word_len == 0 || !after[word_len..].starts_with('}') {
            out.push('{');
            rest = after;
            continue;
        }
        let word = &after[..word_len];
        let (_, format) = PLACEHOLDERS
            .iter()
            .find(|(name, _)| *name == word)
            .ok_or_else(|| {
                Error::new(format!(
                    "--once-per: unknown placeholder '{{{word}}}' (known: {{day}}, {{week}}, {{month}}, {{year}}, {{hour}})"
                ))
            })?;
        out.push_str(&field(format));
        rest = &after[word_len + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_expand_and_other_text_stays() {
        let fields = |f: &str| format!("<{f}>");
        assert_eq!(
            expand_with("{day}-2012-01-24T16:00:00Z", fields).unwrap(),
            "<%Y-%m-%d>-2012-01-24T16:00:00Z"
        );
        assert_eq!(
            expand_with("{week}{month}{year}{hour}", fields).unwrap(),
            "<%G-W%V><%Y-%m><%Y><%Y-%m-%dT%H>"
        );
        for literal in ["plain", "{", "}{", "{ day}", "a{b-c}", "%d", "{}"] {
            assert_eq!(expand_with(literal, fields).unwrap(), literal);
        }
    }

    #[test]
    fn unknown_placeholders_are_named() {
        let e = check("{days}").unwrap_err();
        assert!(e.message.contains("'{days}'"), "{}", e.message);
        assert!(check("{Day}").is_err());
        assert!(check("{day}-{hour}").is_ok());
    }
}
