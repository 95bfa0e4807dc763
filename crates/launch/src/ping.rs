//! `baton-run --ping URL`: the healthchecks.io way of watching a cron job, for sites
//! without Prometheus. After a tick that ran the command, one GET: `URL` when it
//! succeeded, `URL/fail` when it failed or timed out (healthchecks.io's and Cronitor's
//! convention). A tick that did not run the command pings nothing: the checker's own
//! schedule notices a job that stops running. Bounded: the whole request has
//! [`PING_TIMEOUT`]; a ping that fails is one line on stderr and never changes the job's
//! exit status.

use baton_core::{Error, Result};
use std::time::Duration;

/// The most one ping may take, connecting included.
pub const PING_TIMEOUT: Duration = Duration::from_secs(5);

/// Check a ping URL before any work starts: `http://` or `https://`, no spaces.
pub fn validate(url: &str) -> Result<()> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    match rest {
        Some(r)
            if !r.is_empty() && !r.starts_with('/') && !url.chars().any(char::is_whitespace) =>
        {
            Ok(())
        }
        _ => Err(Error::new(format!(
            "--ping '{url}': give an http:// or https:// URL (e.g. https://hc-ping.com/UUID)"
        ))),
    }
}

/// The URL to ping for a run that succeeded or failed.
pub fn url_for(base: &str, succeeded: bool) -> String {
    if succeeded {
        base.to_string()
    } else {
        format!("{}/fail", base.trim_end_matches('/'))
    }
}

/// GET `url`, bounded by `timeout`; the error is one short reason.
pub fn ping(url: &str, timeout: Duration) -> std::result::Result<(), String> {
    let agent = ureq::AgentBuilder::new()
        .timeout(timeout)
        .redirects(2)
        .user_agent(concat!("baton-run/", env!("CARGO_PKG_VERSION")))
        .build();
    match agent.get(url).call() {
        Ok(_) => Ok(()),
        Err(ureq::Error::Status(code, _)) => Err(format!("HTTP {code}")),
        Err(ureq::Error::Transport(t)) => {
            let text = t.to_string();
            Err(text.rsplit(": ").next().unwrap_or(&text).to_lowercase())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert!(validate("https://hc-ping.com/abc").is_ok());
        assert!(validate("http://127.0.0.1:8000/p").is_ok());
        for bad in [
            "hc-ping.com/abc",
            "ftp://x",
            "https://",
            "http:///x",
            "http://a b",
        ] {
            assert!(validate(bad).is_err(), "{bad}");
        }
        assert_eq!(url_for("https://h/u", true), "https://h/u");
        assert_eq!(url_for("https://h/u/", false), "https://h/u/fail");
    }
}
