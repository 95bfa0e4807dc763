//! Class names: `[A-Za-z0-9_]+`, and CFEngine's `canonify`.

use crate::error::{Error, Result};

/// The longest class name Baton accepts (CFEngine's own buffer is 1024).
pub const MAX_NAME_LEN: usize = 1024;

/// Map every character that may not stand in a class name to `_`, as CFEngine's
/// `canonify` does: `host-2.example.org` becomes `host_2_example_org`.
pub fn canonify(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// Whether `c` may stand in a class name.
pub fn is_name_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Check that `name` is a class name, or say what is wrong with it.
pub fn validate(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::new("empty class name"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(Error::new(format!(
            "class name longer than {MAX_NAME_LEN} characters"
        )));
    }
    if let Some(pos) = name.bytes().position(|b| !is_name_char(b)) {
        let bad = name[pos..].chars().next().unwrap_or('?');
        return Err(Error::new(format!(
            "invalid class name '{name}': '{bad}' at column {} (use letters, digits and _)",
            pos + 1
        )));
    }
    Ok(())
}

/// Compile `pattern` so that it must match a whole class name, as CFEngine's
/// `remoteclassesmatching` does (`did` does not match `did_my_job`; `did.*` does). The
/// compiled size is bounded so a hostile pattern cannot take the memory or the time.
pub fn whole_name_regex(pattern: &str) -> Result<regex::Regex> {
    if pattern.len() > MAX_PATTERN_LEN {
        return Err(Error::new(format!(
            "regex longer than {MAX_PATTERN_LEN} characters"
        )));
    }
    regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(1 << 20)
        .dfa_size_limit(1 << 20)
        .nest_limit(64)
        .build()
        .map_err(|e| {
            let why = e.to_string();
            let last = why
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("invalid");
            Error::new(format!(
                "invalid regex '{pattern}': {}",
                last.trim().trim_start_matches("error: ")
            ))
        })
}

/// The longest regex accepted for matching class names.
pub const MAX_PATTERN_LEN: usize = 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonify_like_cfengine() {
        assert_eq!(canonify("host-2.example.org"), "host_2_example_org");
        assert_eq!(canonify("10.1.2.3"), "10_1_2_3");
        assert_eq!(canonify("fe80::1"), "fe80__1");
        assert_eq!(canonify("é"), "_");
        assert_eq!(canonify("Already_Fine9"), "Already_Fine9");
    }

    #[test]
    fn whole_name_patterns() {
        let r = whole_name_regex("did.*").unwrap();
        assert!(r.is_match("did_my_job"));
        assert!(!whole_name_regex("did").unwrap().is_match("did_my_job"));
        assert!(whole_name_regex("a|b").unwrap().is_match("b"));
        assert!(!whole_name_regex("a|b").unwrap().is_match("ab"));
        assert!(whole_name_regex("(").is_err());
        assert!(whole_name_regex("a{1000}{1000}{1000}").is_err());
    }

    #[test]
    fn validate_names() {
        assert!(validate("did_my_job").is_ok());
        assert!(validate("9lives").is_ok());
        assert!(validate("").is_err());
        assert!(validate("a-b").unwrap_err().message.contains("column 2"));
        assert!(validate(&"a".repeat(MAX_NAME_LEN + 1)).is_err());
    }
}

#[cfg(test)]
mod fuzz_name {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn fuzz_canonify_gives_valid_names(text in ".{1,60}") {
            prop_assert!(validate(&canonify(&text)).is_ok());
        }

        #[test]
        fn fuzz_regex_never_panics(text in ".{0,60}") {
            let _ = whole_name_regex(&text);
        }
    }
}
