//! The peer protocol: what `baton-serve` answers and `baton-query` asks, defined once so
//! that both ends serialise the same types. The API version, the routes, the default
//! port, the reply types and the encoding of the match pattern in the URL.
//!
//! It is not the server (that is `baton-serve`, which alone links an HTTP server stack)
//! nor the client (`baton-query`): both depend on this crate, never on each other.

use baton_store::Signal;
use chrono::{DateTime, Utc};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::{Deserialize, Serialize};

/// The API version, in every path (`/v1/...`) and every reply body.
pub const API_VERSION: u32 = 1;
/// The port `baton-serve` listens on and `baton-query` asks when none is given.
pub const DEFAULT_PORT: u16 = 7401;
/// `GET SIGNALS_PATH?match=REGEX`: the live signals whose whole name matches REGEX.
pub const SIGNALS_PATH: &str = "/v1/signals";
/// `GET HEALTH_PATH`: `{"version":1,"ok":true}`, admitted to everyone.
pub const HEALTH_PATH: &str = "/v1/health";
/// `GET HISTORY_PATH`: the runs of the last day of the jobs the peer is admitted to
/// (`allow job:PATTERN`), outcomes and timings only.
pub const HISTORY_PATH: &str = "/v1/history";
/// `GET METRICS_PATH`: the Prometheus text format.
pub const METRICS_PATH: &str = "/metrics";
/// `GET STATUS_PATH`: the status page (HTML).
pub const STATUS_PATH: &str = "/";
/// The query parameter that carries the match pattern.
pub const MATCH_PARAM: &str = "match";

/// Everything but RFC 3986's unreserved characters is encoded.
const ENCODED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// The path and query that ask for the signals matching `pattern`.
pub fn signals_request(pattern: &str) -> String {
    format!(
        "{SIGNALS_PATH}?{MATCH_PARAM}={}",
        utf8_percent_encode(pattern, ENCODED)
    )
}

/// The percent-decoded value of `key` in a query string. `+` is kept as it is: it is a
/// regex operator, and clients percent-encode everything else.
pub fn query_param(query: &str, key: &str) -> Result<Option<String>, String> {
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k == key {
            check_percent_escapes(v)?;
            return percent_decode_str(v)
                .decode_utf8()
                .map(|s| Some(s.into_owned()))
                .map_err(|_| "the query is not UTF-8".to_string());
        }
    }
    Ok(None)
}

/// The percent-encoding crate passes a malformed escape through; the protocol refuses it.
fn check_percent_escapes(text: &str) -> Result<(), String> {
    let bytes = text.as_bytes();
    for (i, _) in bytes.iter().enumerate().filter(|(_, b)| **b == b'%') {
        let ok = bytes
            .get(i + 1..i + 3)
            .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit));
        if !ok {
            return Err("bad percent-encoding in the query".into());
        }
    }
    Ok(())
}

/// One signal as a peer reports it: the record without its store-only fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerSignal {
    pub name: String,
    /// The host that raised it.
    pub host: String,
    pub set_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// The run that raised it (a `baton-run` run id), if any.
    #[serde(default)]
    pub run: Option<String>,
}

impl From<&Signal> for PeerSignal {
    fn from(s: &Signal) -> PeerSignal {
        PeerSignal {
            name: s.name.clone(),
            host: s.host.clone(),
            set_at: s.set_at,
            expires_at: s.expires_at,
            run: s.run.clone(),
        }
    }
}

/// The answer to [`SIGNALS_PATH`]: the server's host name, its clock (so that a client
/// judges age by the clock that set the signals) and the signals the peer may see.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignalsReply {
    pub version: u32,
    pub host: String,
    pub now: DateTime<Utc>,
    pub signals: Vec<PeerSignal>,
}

/// One tick of a job as a peer reports it: outcome and timings, never output or
/// command line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerRun {
    pub run: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// `repaired`, `failed`, `skipped`, `busy` (as in the history record).
    pub outcome: String,
    /// The exit status `baton-run` returned.
    pub status: u8,
    /// Why a tick did not run, or a run failed to start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A job and its recent ticks, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerJob {
    pub job: String,
    pub runs: Vec<PeerRun>,
}

/// The answer to [`HISTORY_PATH`]: the server's host and clock, and its jobs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryReply {
    pub version: u32,
    pub host: String,
    pub now: DateTime<Utc>,
    pub jobs: Vec<PeerJob>,
}

/// The answer to [`HEALTH_PATH`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthReply {
    pub version: u32,
    pub ok: bool,
}

/// The body of every non-2xx answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    pub error: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_round_trip() {
        for p in ["did.*", "a|b", "x+", "(a)?[b]{2}", "é", "a&b=c"] {
            let request = signals_request(p);
            let (_, q) = request.split_once('?').unwrap();
            let q = format!("x=1&{q}");
            assert_eq!(query_param(&q, MATCH_PARAM).unwrap().as_deref(), Some(p));
        }
        assert_eq!(query_param("a=1", "match").unwrap(), None);
        assert!(query_param("match=%zz", "match").is_err());
        assert!(query_param("match=%f", "match").is_err());
        assert!(query_param("match=%ff", "match").is_err());
    }

    #[test]
    fn replies_round_trip() {
        let reply = SignalsReply {
            version: API_VERSION,
            host: "host1".into(),
            now: DateTime::from_timestamp(1_327_423_620, 0).unwrap(),
            signals: vec![],
        };
        let text = serde_json::to_string(&reply).unwrap();
        assert!(text.contains("\"now\":\"2012-01-24T16:47:00Z\""), "{text}");
        assert_eq!(serde_json::from_str::<SignalsReply>(&text).unwrap(), reply);
    }
}
