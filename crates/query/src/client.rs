//! Asking peers for their signals: one `GET /v1/signals?match=REGEX` per host (over
//! mutual TLS when this host has an identity), many hosts at once, each bounded by the
//! time-out.

use baton_core::name::canonify;
use baton_core::{Error, Result};
use baton_proto::{
    signals_request, ErrorReply, HistoryReply, SignalsReply, DEFAULT_PORT, HISTORY_PATH,
};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How many hosts are asked at the same moment.
const MAX_IN_FLIGHT: usize = 64;
/// The largest answer read from a peer unless told ([`Client::with_answer_limit`]).
pub const MAX_ANSWER: u64 = 10 * 1024 * 1024;

/// A host to ask: `host`, `host:port`, `[v6]:port`, or with `http://` / `https://`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub https: bool,
    /// The name the user gave, when a peers file resolved it.
    pub name: Option<String>,
    /// The host as the user wrote it on the command line, for messages.
    pub written: String,
}

impl Target {
    pub fn parse(text: &str, https_by_default: bool) -> Result<Target> {
        let bad = |why: &str| Error::new(format!("invalid host '{text}': {why}"));
        let (https, rest) = if let Some(r) = text.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = text.strip_prefix("http://") {
            (false, r)
        } else {
            (https_by_default, text)
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
            (h.to_string(), after.strip_prefix(':'))
        } else if rest.matches(':').count() > 1 {
            (rest.to_string(), None) // a bare IPv6 address
        } else {
            match rest.split_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (rest.to_string(), None),
            }
        };
        let port = match port {
            Some(p) => p
                .parse()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| bad("the port must be 1 to 65535"))?,
            None => DEFAULT_PORT,
        };
        let ok = !host.is_empty()
            && host.len() <= 253
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(&b));
        if !ok {
            return Err(bad("not a host name or address"));
        }
        Ok(Target {
            host,
            port,
            https,
            name: None,
            written: text.to_string(),
        })
    }

    /// The host as messages name it: as the user wrote it, with the address it stands
    /// for when that differs (`host1 (127.0.0.11:7401)`).
    pub fn describe(&self) -> String {
        let label = self.label();
        if self.written == label {
            label
        } else {
            format!("{} ({label})", self.written)
        }
    }

    /// `host:port`.
    pub fn label(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The host as a class prefix: `host-2.example.org` is `host_2_example_org`; a name
    /// from the peers file is used as given.
    pub fn class_name(&self) -> String {
        canonify(self.name.as_deref().unwrap_or(&self.host))
    }

    fn url(&self, path_and_query: &str) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}{path_and_query}", self.label())
    }
}

/// Names for peers: `NAME ADDRESS[:PORT]` per line (`#` comments), so crontab lines say
/// `host1` and one file says where host1's baton-serve listens. Names match in any case.
#[derive(Debug, Clone, Default)]
pub struct Peers {
    entries: Vec<(String, String)>,
}

impl Peers {
    pub fn parse(text: &str) -> Result<Peers> {
        let mut entries = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let mut words = line.split_whitespace();
            let (Some(name), Some(addr), None) = (words.next(), words.next(), words.next()) else {
                return Err(Error::new(format!(
                    "line {}: expected 'NAME ADDRESS[:PORT]'",
                    i + 1
                )));
            };
            if !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
            {
                return Err(Error::new(format!(
                    "line {}: invalid peer name '{name}' (letters, digits, '-', '.' and '_'; then spaces, then the address)",
                    i + 1
                )));
            }
            if entries
                .iter()
                .any(|(n, _): &(String, String)| n.eq_ignore_ascii_case(name))
            {
                return Err(Error::new(format!(
                    "line {}: peer '{name}' is named twice",
                    i + 1
                )));
            }
            match crate::cfengine::parse_target(addr) {
                Some(t) => t.map(|_| ()),
                None => Target::parse(addr, false).map(|_| ()),
            }
            .map_err(|e| e.context(format!("line {}", i + 1)))?;
            entries.push((name.to_string(), addr.to_string()));
        }
        Ok(Peers { entries })
    }

    pub fn load(path: &std::path::Path) -> Result<Peers> {
        let text =
            std::fs::read_to_string(path).map_err(|e| Error::io("read peers file", path, e))?;
        Peers::parse(&text).map_err(|e| e.context(format!("peers file {}", path.display())))
    }

    /// The address the file gives `name`, as written (`cfengine://...` included).
    pub fn address(&self, name: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, a)| a.as_str())
    }

    /// The peers' names, in the file's order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(n, _)| n.as_str())
    }

    /// The target for `name`: its address from the file, keeping `name` for `{host}`;
    /// a name not in the file is an address itself.
    pub fn target(&self, name: &str, https_by_default: bool) -> Result<Target> {
        // Host names are case-insensitive (RFC 4343): `host1` finds a `Host1` line.
        match self
            .entries
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            Some((_, addr)) => {
                let mut t = Target::parse(addr, https_by_default)?;
                t.name = Some(name.to_string());
                t.written = name.to_string();
                Ok(t)
            }
            None => Target::parse(name, https_by_default),
        }
    }
}

/// What to do about a certificate rustls refused (`text`: its error, lower-cased), if
/// it is one.
fn certificate_fix(text: &str) -> Option<String> {
    let trust = "give --ca with the CA that signed it, or --pin with its SHA-256 fingerprint \
                 (openssl x509 -in CERT -noout -fingerprint -sha256)";
    if text.contains("notvalidforname") {
        Some("the server's certificate is not for this host name: ask by a name it holds, or pin it with --pin".into())
    } else if text.contains("expired") || text.contains("notvalidyet") {
        Some(
            "the server's certificate is expired or not yet valid: renew it, or check the clocks"
                .into(),
        )
    } else if text.contains("causedasendentity") {
        Some(format!(
            "the server's certificate is self-signed, so not trusted: {trust}"
        ))
    } else if text.contains("unknownissuer")
        || text.contains("badsignature")
        || text.contains("invalid peer certificate")
    {
        Some(format!("the server's certificate is not trusted: {trust}"))
    } else {
        None
    }
}

/// How to reach peers.
pub struct Client {
    agent: ureq::Agent,
    timeout: Duration,
    /// The most bytes of an answer read; a longer one is a bad answer.
    max_answer: u64,
}

impl Client {
    pub fn new(tls: Option<Arc<rustls::ClientConfig>>, timeout: Duration) -> Client {
        let mut builder = ureq::AgentBuilder::new()
            .timeout(timeout)
            .redirects(0)
            .user_agent(concat!("baton-query/", env!("CARGO_PKG_VERSION")));
        if let Some(config) = tls {
            builder = builder.tls_config(config);
        }
        Client {
            agent: builder.build(),
            timeout,
            max_answer: MAX_ANSWER,
        }
    }

    /// Refuse answers longer than `bytes` ("bad answer: too large").
    pub fn with_answer_limit(mut self, bytes: u64) -> Client {
        self.max_answer = bytes;
        self
    }

    /// Ask one peer for its signals whose whole name matches `pattern`. The error is one
    /// short reason (`connection refused`, `access denied (403): not admitted`, ...).
    pub fn ask(&self, target: &Target, pattern: &str) -> std::result::Result<SignalsReply, String> {
        self.get_json(target, &signals_request(pattern))
    }

    /// Ask one peer for the last day of the jobs it admits us to (outcomes and timings);
    /// `None` when it has no such route (404: a baton-serve older than `/v1/history`).
    pub fn history(&self, target: &Target) -> std::result::Result<Option<HistoryReply>, String> {
        match self.get_body(target, HISTORY_PATH) {
            Ok(body) => parse_answer(&body).map(Some),
            Err((404, _)) => Ok(None),
            Err((_, why)) => Err(why),
        }
    }

    /// One GET of `path`, its JSON answer parsed as `T`.
    fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        target: &Target,
        path: &str,
    ) -> std::result::Result<T, String> {
        parse_answer(&self.get_body(target, path).map_err(|(_, why)| why)?)
    }

    /// One GET of `path`: the body of a 2xx answer, at most `max_answer` bytes; else the
    /// HTTP status (0 when none came) and one short reason.
    fn get_body(&self, target: &Target, path: &str) -> std::result::Result<String, (u16, String)> {
        let request = self.agent.get(&target.url(path));
        match request.call() {
            Ok(response) => self.read_body(response).map_err(|why| (0, why)),
            Err(ureq::Error::Status(code, response)) => {
                let why = self
                    .read_body(response)
                    .ok()
                    .and_then(|b| serde_json::from_str::<ErrorReply>(&b).ok())
                    .map(|b| b.error)
                    .unwrap_or_default();
                Err((
                    code,
                    match code {
                        401 => format!("authentication refused (401): {why}"),
                        403 => format!("access denied (403): {why}"),
                        _ => format!("HTTP {code}: {why}"),
                    },
                ))
            }
            Err(ureq::Error::Transport(t)) => Err((0, self.transport_reason(&t, target.https))),
        }
    }

    /// An answer's body, refused past `max_answer` bytes.
    fn read_body(&self, response: ureq::Response) -> std::result::Result<String, String> {
        use std::io::Read;
        let mut body = Vec::new();
        response
            .into_reader()
            .take(self.max_answer.saturating_add(1))
            .read_to_end(&mut body)
            .map_err(|e| format!("bad answer: {e}"))?;
        if body.len() as u64 > self.max_answer {
            return Err(format!(
                "bad answer: too large (over {} KiB)",
                self.max_answer / 1024
            ));
        }
        String::from_utf8(body).map_err(|_| "bad answer: not UTF-8".to_string())
    }

    fn transport_reason(&self, t: &ureq::Transport, https: bool) -> String {
        let text = t.to_string().to_lowercase();
        let silent = text.contains("timed out")
            || text.contains("timeout")
            || text.contains("would block")
            || text.contains("temporarily unavailable");
        if text.contains("refused") {
            "connection refused".into()
        } else if https && text.contains("invalidcontenttype") {
            // A plain-HTTP server answered the hello with an HTTP error, not a TLS record.
            "the server answered in plain HTTP: is it a plain-HTTP server? then drop --tls (or write http://)".into()
        } else if https && silent {
            // A plain-HTTP server waits for a request line and never answers the hello.
            format!(
                "no TLS answer within {}s: is it a plain-HTTP server? then drop --tls (or write http://)",
                self.timeout.as_secs()
            )
        } else if silent {
            format!("no answer within {}s", self.timeout.as_secs())
        } else if t.kind() == ureq::ErrorKind::Dns {
            "cannot resolve the host name".into()
        } else if !https && text.contains("[21, 3") {
            // A TLS alert record (21, then version 3.x) where an HTTP status line should be.
            "the server speaks TLS: use --tls (or write https://)".into()
        } else if let Some(fix) = certificate_fix(&text) {
            format!("TLS failure: {fix}")
        } else {
            // ureq prefixes the URL; keep the reason.
            let full = t.to_string();
            let reason = full.rsplit(": ").next().unwrap_or(&full).to_string();
            match t.kind() {
                ureq::ErrorKind::ConnectionFailed
                    if full.to_lowercase().contains("tls") || full.contains("certificate") =>
                {
                    format!("TLS failure: {reason}")
                }
                _ => reason.to_lowercase(),
            }
        }
    }

    /// Ask every target, at most [`MAX_IN_FLIGHT`] at a time; answers in target order.
    pub fn ask_all(
        &self,
        targets: &[Target],
        pattern: &str,
    ) -> Vec<std::result::Result<SignalsReply, String>> {
        ask_each(targets, |t| self.ask(t, pattern))
    }
}

/// A JSON answer parsed as `T`.
fn parse_answer<T: serde::de::DeserializeOwned>(body: &str) -> std::result::Result<T, String> {
    serde_json::from_str::<T>(body).map_err(|e| format!("bad answer: {e}"))
}

/// Ask every target with `ask`, at most [`MAX_IN_FLIGHT`] at a time; answers in order.
pub fn ask_each<T: Sync>(
    targets: &[T],
    ask: impl Fn(&T) -> std::result::Result<SignalsReply, String> + Sync,
) -> Vec<std::result::Result<SignalsReply, String>> {
    in_parallel(targets, MAX_IN_FLIGHT, ask)
        .into_iter()
        .map(|a| a.unwrap_or_else(|| Err("not asked".into())))
        .collect()
}

/// `f` of every item, on at most `limit` threads at a time; results in the items' order
/// (each is `Some` once the threads are joined: a panic in `f` reaches the caller).
pub fn in_parallel<T: Sync, R: Send>(
    items: &[T],
    limit: usize,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<Option<R>> {
    let next = AtomicUsize::new(0);
    let results = std::sync::Mutex::new((0..items.len()).map(|_| None).collect::<Vec<_>>());
    std::thread::scope(|scope| {
        for _ in 0..items.len().min(limit.max(1)) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(item) = items.get(i) else { break };
                let result = f(item);
                results.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(result);
            });
        }
    });
    results.into_inner().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_file_names_hosts() {
        let peers =
            Peers::parse("# name  address\nhost1 127.0.0.11:7401\nHost-2 https://127.0.0.12:9\n")
                .unwrap();
        let t = peers.target("host1", false).unwrap();
        assert_eq!(
            (t.label().as_str(), t.class_name().as_str()),
            ("127.0.0.11:7401", "host1")
        );
        let t = peers.target("Host-2", false).unwrap();
        assert_eq!((t.https, t.class_name().as_str()), (true, "Host_2"));
        assert_eq!(peers.target("127.0.0.9", false).unwrap().port, DEFAULT_PORT);
        assert!(Peers::parse("host1")
            .unwrap_err()
            .message
            .starts_with("line 1"));
        assert!(Peers::parse("a b c").is_err());
        assert!(Peers::parse("a 1.2.3.4:0").is_err());
        let cf = Peers::parse("Host2 cfengine://127.0.0.62\n").unwrap();
        assert_eq!(cf.address("Host2"), Some("cfengine://127.0.0.62"));
        assert_eq!(cf.address("Host3"), None);
        assert!(Peers::parse("Host2 cfengine://").is_err());
        // Host names match in any case; a name given twice in two cases is refused.
        assert_eq!(cf.address("host2"), Some("cfengine://127.0.0.62"));
        let t = peers.target("HOST1", false).unwrap();
        assert_eq!(t.label(), "127.0.0.11:7401");
        assert!(Peers::parse("h1 127.0.0.1\nH1 127.0.0.2\n").is_err());
    }

    #[test]
    fn targets() {
        let t = Target::parse("host1", false).unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.https),
            ("host1", DEFAULT_PORT, false)
        );
        let t = Target::parse("127.0.0.2:8000", false).unwrap();
        assert_eq!((t.host.as_str(), t.port), ("127.0.0.2", 8000));
        let t = Target::parse("https://h-2.example.org:443/", false).unwrap();
        assert_eq!(
            (t.https, t.class_name().as_str(), t.label().as_str()),
            (true, "h_2_example_org", "h-2.example.org:443")
        );
        let t = Target::parse("[::1]:9", true).unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.https, t.label().as_str()),
            ("::1", 9, true, "[::1]:9")
        );
        for bad in ["", ":80", "h:0", "h:99999", "h:x", "a b", "[::1", "h/p"] {
            assert!(Target::parse(bad, false).is_err(), "{bad:?}");
        }
    }
}

#[cfg(test)]
mod fuzz_client {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn fuzz_targets_and_peers_never_panic(text in ".{0,60}") {
            let _ = Target::parse(&text, false);
            let _ = Peers::parse(&text);
        }
    }
}
