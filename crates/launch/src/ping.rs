//! `baton-run --ping URL`: the healthchecks.io way of watching a cron job, for sites
//! without Prometheus. After a tick that ran the command, one GET: `URL` when it
//! succeeded, `URL/fail` when it failed or timed out (healthchecks.io's and Cronitor's
//! convention; `/fail` goes at the end of the path, before a query string:
//! `https://hc-ping.com/UUID/fail?rid=R`). A tick that did not run the command pings
//! nothing: the checker's own schedule notices a job that stops running. Bounded: the
//! whole request has [`PING_TIMEOUT`]; a ping that fails is one line on stderr and never
//! changes the job's exit status.
//!
//! The URL is read by the `url` crate, the parser the HTTP client (ureq) reads it with,
//! so a URL the client would refuse is refused up front, before the job runs.

use baton_core::{Error, Result};
use std::time::Duration;
use url::Url;

/// The most one ping may take, connecting included.
pub const PING_TIMEOUT: Duration = Duration::from_secs(5);

const EXAMPLE: &str = "e.g. https://hc-ping.com/UUID";

/// Check a ping URL before any work starts: `http://` or `https://` with a host, a port
/// that is not 0, nothing the client would refuse, no white space or control character
/// (which a URL parser drops or encodes silently, hiding a typo).
pub fn validate(url: &str) -> Result<()> {
    parse(url).map(|_| ())
}

fn parse(raw: &str) -> Result<Url> {
    let refuse = |why: &str| Err(Error::new(format!("--ping '{raw}': {why}")));
    let lower = raw.get(..8).unwrap_or(raw).to_ascii_lowercase();
    let Some(rest) = ["https://", "http://"]
        .iter()
        .find_map(|s| lower.starts_with(s).then(|| &raw[s.len()..]))
    else {
        return refuse(&format!("give an http:// or https:// URL ({EXAMPLE})"));
    };
    // `http:///x` and `http:\\x` would be read as `http://x/`: no host was given.
    if rest.is_empty() || rest.starts_with(['/', '\\']) {
        return refuse(&format!("the URL has no host ({EXAMPLE})"));
    }
    if raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return refuse("the URL holds white space or a control character: percent-encode it");
    }
    let url = match Url::parse(raw) {
        Ok(u) => u,
        Err(e) => return refuse(&format!("{e} ({EXAMPLE})")),
    };
    if url.host_str().is_none_or(str::is_empty) {
        return refuse(&format!("the URL has no host ({EXAMPLE})"));
    }
    if url.port() == Some(0) {
        return refuse(&format!("port 0 cannot be connected to ({EXAMPLE})"));
    }
    Ok(url)
}

/// The URL to ping for a run that succeeded or failed: for a failure, `/fail` appended
/// to the path (a trailing slash folded), the query string and fragment kept after it.
pub fn url_for(base: &str, succeeded: bool) -> String {
    let Ok(mut url) = parse(base) else {
        return base.to_string(); // validate() refused it before the job ran
    };
    if !succeeded {
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().push("fail");
        }
    }
    url.into()
}

/// `url` as it may be shown (cron mails it): a password in it replaced by `***`.
pub fn shown(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.into()
        }
        _ => url.to_string(),
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
    fn passwords_are_never_shown() {
        assert_eq!(
            shown("http://user:pw@127.0.0.1:1/x/fail"),
            "http://user:***@127.0.0.1:1/x/fail"
        );
        assert_eq!(
            shown("https://hc-ping.com/u?rid=1"),
            "https://hc-ping.com/u?rid=1"
        );
    }

    #[test]
    fn urls() {
        for good in [
            "https://hc-ping.com/abc",
            "http://127.0.0.1:8000/p",
            "http://[::1]:8000/p",
            "HTTPS://hc-ping.com/abc?rid=1",
        ] {
            assert!(validate(good).is_ok(), "{good}");
        }
        for (bad, why) in [
            ("hc-ping.com/abc", "give an http:// or https:// URL"),
            ("ftp://x", "give an http:// or https:// URL"),
            ("file:///etc/passwd", "give an http:// or https:// URL"),
            ("https://", "no host"),
            ("http:///x", "no host"),
            ("http:\\\\x", "give an http:// or https:// URL"),
            ("http://a b", "white space"),
            ("http://host/a\tb", "white space"),
            ("http://[::1", "invalid IPv6 address"),
            ("http://h:99999/p", "invalid port number"),
            ("http://h:port/p", "invalid port number"),
            ("http://h:0/p", "port 0"),
            ("http://:80/p", "empty host"),
            ("http://a%20b/", "invalid international domain name"),
        ] {
            let e = validate(bad).expect_err(bad);
            assert!(
                e.message.starts_with(&format!("--ping '{bad}': ")) && e.message.contains(why),
                "{bad}: {}",
                e.message
            );
        }
    }

    #[test]
    fn fail_goes_on_the_path_before_the_query() {
        for (base, ok, fail) in [
            ("https://h/u", "https://h/u", "https://h/u/fail"),
            ("https://h/u/", "https://h/u/", "https://h/u/fail"),
            ("https://h", "https://h/", "https://h/fail"),
            (
                "http://127.0.0.1:17601/uuid?rid=abc",
                "http://127.0.0.1:17601/uuid?rid=abc",
                "http://127.0.0.1:17601/uuid/fail?rid=abc",
            ),
            (
                "https://h/ping/KEY/slug?create=1#x",
                "https://h/ping/KEY/slug?create=1#x",
                "https://h/ping/KEY/slug/fail?create=1#x",
            ),
        ] {
            assert_eq!(url_for(base, true), ok);
            assert_eq!(url_for(base, false), fail);
        }
    }
}
