//! Signals kept in etcd instead of the state dir, through etcd's v3 HTTP/JSON gateway:
//! one key per signal, `/baton/signals/HOST/NAME`, holding the same record as a file
//! would, under a lease of the signal's time to live. Expiry and age are judged from the
//! record at the holder's clock: a host's own, for its own signals; for another host's,
//! the clock etcd's lease count gives ([`SignalStore::clock_of`], docs/time.md). The lease
//! has etcd drop the key once the time to live has passed in real time.
//!
//! `etcd://[USER:PASSWORD@]HOST:PORT[,HOST:PORT...]` (or `etcds://` for TLS, trusting
//! `BATON_ETCD_CA`, presenting `BATON_ETCD_CERT`/`BATON_ETCD_KEY`). With several
//! endpoints a request that cannot reach one tries the next; when none answers it is an
//! error, never "no signal".

use crate::backend::SignalStore;
use crate::store::{literal_name, validate_signal_name, Listing, Policy, Signal, RECORD_VERSION};
use base64::prelude::{Engine as _, BASE64_STANDARD};
use baton_core::{Duration, Error, Result};
use chrono::{DateTime, Utc};
use regex::Regex;
use serde_json::{json, Value};
use std::io::Read;
use std::sync::Mutex;

/// Where signals live in etcd.
pub const PREFIX: &str = "/baton/signals/";

/// A connection to an etcd cluster.
pub struct Etcd {
    endpoints: Vec<String>,
    agent: ureq::Agent,
    credentials: Option<(String, String)>,
    token: Mutex<Option<String>>,
    /// The endpoint that answered last, tried first next time.
    preferred: Mutex<usize>,
    /// The newest store revision an answer has shown: a watch starts just after it, so
    /// nothing written since the last read is missed.
    revision: Mutex<i64>,
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

impl std::fmt::Debug for Etcd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Etcd({})", self.endpoints.join(","))
    }
}

impl Etcd {
    /// Parse `etcd://...` or `etcds://...`.
    pub fn open(url: &str, timeout: std::time::Duration) -> Result<Etcd> {
        let shown = redact(url);
        let bad = |why: &str| {
            Error::new(format!(
                "invalid store '{shown}': {why} (use etcd://HOST:PORT[,HOST:PORT...])"
            ))
        };
        let (tls, rest) = if let Some(r) = url.strip_prefix("etcds://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("etcd://") {
            (false, r)
        } else {
            return Err(bad("unknown scheme"));
        };
        let (credentials, hosts) = match rest.rsplit_once('@') {
            Some((cred, hosts)) => {
                let (user, pass) = cred
                    .split_once(':')
                    .ok_or_else(|| bad("credentials are USER:PASSWORD"))?;
                (Some((user.to_string(), pass.to_string())), hosts)
            }
            None => (None, rest),
        };
        let scheme = if tls { "https" } else { "http" };
        let endpoints: Vec<String> = hosts
            .trim_end_matches('/')
            .split(',')
            .map(|h| {
                let ok = !h.is_empty()
                    && h.contains(':')
                    && h.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-._:[]".contains(&b));
                if ok {
                    Ok(format!("{scheme}://{h}"))
                } else {
                    Err(bad("each endpoint is HOST:PORT"))
                }
            })
            .collect::<Result<_>>()?;
        let tls = if tls { Some(tls_config()?) } else { None };
        Ok(Etcd {
            endpoints,
            agent: agent(timeout, &tls),
            credentials,
            token: Mutex::new(None),
            preferred: Mutex::new(0),
            revision: Mutex::new(0),
            tls,
        })
    }

    /// POST a gateway call, trying each endpoint from the one that answered last.
    fn call(&self, path: &str, body: &Value) -> Result<Value> {
        let start = *self.preferred.lock().unwrap_or_else(|p| p.into_inner());
        let mut failures = Vec::new();
        for i in 0..self.endpoints.len() {
            let at = (start + i) % self.endpoints.len();
            let endpoint = &self.endpoints[at];
            match self.call_one(endpoint, path, body) {
                Ok(v) => {
                    *self.preferred.lock().unwrap_or_else(|p| p.into_inner()) = at;
                    let rev = v
                        .pointer("/header/revision")
                        .and_then(Value::as_str)
                        .and_then(|r| r.parse().ok());
                    if let Some(rev) = rev {
                        let mut seen = self.revision.lock().unwrap_or_else(|p| p.into_inner());
                        *seen = (*seen).max(rev);
                    }
                    return Ok(v);
                }
                // Tokens expire after a while idle (a long --wait): authenticate again once.
                Err(Failure::Refused(why))
                    if why.contains("invalid auth token") && self.credentials.is_some() =>
                {
                    *self.token.lock().unwrap_or_else(|p| p.into_inner()) = None;
                    return self
                        .call_one(endpoint, path, body)
                        .map_err(|_| Error::new(format!("etcd at {endpoint}: {why}")));
                }
                Err(Failure::Refused(why)) => {
                    return Err(Error::new(format!("etcd at {endpoint}: {why}")))
                }
                Err(Failure::Unreachable(why)) => failures.push(format!("{endpoint}: {why}")),
            }
        }
        Err(Error::new(format!(
            "no etcd member answered ({})",
            failures.join("; ")
        )))
    }

    fn call_one(
        &self,
        endpoint: &str,
        path: &str,
        body: &Value,
    ) -> std::result::Result<Value, Failure> {
        let token = self.token(endpoint)?;
        let mut request = self.agent.post(&format!("{endpoint}{path}"));
        if let Some(t) = &token {
            request = request.set("Authorization", t);
        }
        match request.send_string(&body.to_string()) {
            Ok(resp) => {
                let text = resp
                    .into_string()
                    .map_err(|e| Failure::Unreachable(e.to_string()))?;
                serde_json::from_str(&text)
                    .map_err(|e| Failure::Unreachable(format!("bad answer: {e}")))
            }
            Err(ureq::Error::Status(code, resp)) => {
                // The gateway ends its answers with gRPC trailers that the reader may
                // trip on after the JSON: keep what was read.
                let mut bytes = Vec::new();
                let _ = resp.into_reader().take(64 * 1024).read_to_end(&mut bytes);
                let text = String::from_utf8_lossy(&bytes).into_owned();
                let why = serde_json::from_str::<Value>(&text)
                    .ok()
                    .and_then(|v| {
                        v.get("error")
                            .or_else(|| v.get("message"))
                            .and_then(Value::as_str)
                            .map(str::to_string)
                    })
                    .unwrap_or_else(|| match code {
                        401 => "etcdserver: invalid auth token".to_string(),
                        403 => "etcdserver: permission denied".to_string(),
                        _ => text,
                    });
                if code >= 500 && !why.contains("permission denied") {
                    // A member without a leader, or shutting down: another may answer.
                    Err(Failure::Unreachable(format!("HTTP {code}: {why}")))
                } else {
                    Err(Failure::Refused(format!("HTTP {code}: {why}")))
                }
            }
            Err(ureq::Error::Transport(t)) => Err(Failure::Unreachable(transport_reason(&t))),
        }
    }

    /// The auth token, fetched once from the first member that answers.
    fn token(&self, endpoint: &str) -> std::result::Result<Option<String>, Failure> {
        let Some((user, pass)) = &self.credentials else {
            return Ok(None);
        };
        if let Some(t) = self.token.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            return Ok(Some(t));
        }
        let resp = self
            .agent
            .post(&format!("{endpoint}/v3/auth/authenticate"))
            .send_string(&json!({"name": user, "password": pass}).to_string());
        let text = match resp {
            Ok(r) => r
                .into_string()
                .map_err(|e| Failure::Unreachable(e.to_string()))?,
            Err(ureq::Error::Status(code, _)) => {
                return Err(Failure::Refused(format!(
                    "authentication as '{user}' refused (HTTP {code})"
                )))
            }
            Err(ureq::Error::Transport(t)) => {
                return Err(Failure::Unreachable(transport_reason(&t)))
            }
        };
        let token = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v.get("token").and_then(Value::as_str).map(str::to_string))
            .ok_or_else(|| Failure::Refused("no token in the authentication answer".into()))?;
        *self.token.lock().unwrap_or_else(|p| p.into_inner()) = Some(token.clone());
        Ok(Some(token))
    }

    /// Wait until a key under `prefix` changes after the last revision read, or `limit`
    /// passes: etcd's watch, so a waiting `baton-query` wakes as soon as a signal is
    /// raised instead of at its next poll. Returns whether something changed.
    pub fn watch_prefix(&self, prefix: &str, limit: std::time::Duration) -> Result<bool> {
        use std::io::BufRead;
        let start = *self.revision.lock().unwrap_or_else(|p| p.into_inner()) + 1;
        let at = *self.preferred.lock().unwrap_or_else(|p| p.into_inner());
        let endpoint = &self.endpoints[at % self.endpoints.len()];
        let token = self.token(endpoint).map_err(|f| match f {
            Failure::Refused(w) | Failure::Unreachable(w) => {
                Error::new(format!("etcd at {endpoint}: {w}"))
            }
        })?;
        let body = json!({"create_request": {
            "key": b64(prefix.as_bytes()),
            "range_end": b64(&prefix_end(prefix.as_bytes())),
            "start_revision": start.to_string(),
        }});
        let mut request = agent(limit, &self.tls).post(&format!("{endpoint}/v3/watch"));
        if let Some(t) = &token {
            request = request.set("Authorization", t);
        }
        let response = match request.send_string(&body.to_string()) {
            Ok(r) => r,
            Err(ureq::Error::Transport(t)) if transport_reason(&t) == "no answer in time" => {
                return Ok(false)
            }
            Err(e) => return Err(Error::new(format!("etcd watch at {endpoint}: {e}"))),
        };
        let reader = std::io::BufReader::new(response.into_reader().take(16 * 1024 * 1024));
        for line in reader.lines() {
            let Ok(line) = line else { return Ok(false) }; // the time limit ended the stream
            let event = serde_json::from_str::<Value>(&line).ok();
            let changed = event
                .as_ref()
                .and_then(|v| v.pointer("/result/events"))
                .and_then(Value::as_array)
                .is_some_and(|e| !e.is_empty());
            if changed {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Every key and value under `prefix`.
    fn range_prefix(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>, i64)>> {
        let answer = self.call(
            "/v3/kv/range",
            &json!({"key": b64(prefix.as_bytes()), "range_end": b64(&prefix_end(prefix.as_bytes()))}),
        )?;
        Ok(kvs(&answer))
    }

    fn range_key(&self, key: &str) -> Result<Option<(Vec<u8>, i64)>> {
        let answer = self.call("/v3/kv/range", &json!({"key": b64(key.as_bytes())}))?;
        Ok(kvs(&answer).into_iter().next().map(|(_, v, rev)| (v, rev)))
    }

    /// The values under `prefix`, each with the lease it was written under (if any).
    /// The values under `prefix` with their leases and modification revisions.
    fn range_prefix_leases(&self, prefix: &str) -> Result<Vec<LeasedValue>> {
        let answer = self.call(
            "/v3/kv/range",
            &json!({"key": b64(prefix.as_bytes()), "range_end": b64(&prefix_end(prefix.as_bytes()))}),
        )?;
        Ok(answer
            .get("kvs")
            .and_then(Value::as_array)
            .map(|kvs| {
                kvs.iter()
                    .filter_map(|kv| {
                        let value = unb64(kv.get("value").and_then(Value::as_str).unwrap_or(""))?;
                        let lease = kv
                            .get("lease")
                            .and_then(Value::as_str)
                            .filter(|l| *l != "0")
                            .map(str::to_string);
                        let revision = kv
                            .get("mod_revision")
                            .and_then(Value::as_str)
                            .and_then(|r| r.parse().ok())
                            .unwrap_or(0);
                        Some((value, lease, revision))
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    /// How many seconds etcd has counted since `lease` was granted, while it lives.
    fn lease_elapsed(&self, lease: &str) -> Result<Option<i64>> {
        let answer = self.call("/v3/lease/timetolive", &json!({"ID": lease}))?;
        let number = |field: &str| {
            answer
                .get(field)
                .and_then(|v| v.as_str().and_then(|s| s.parse().ok()).or(v.as_i64()))
        };
        Ok(match (number("grantedTTL"), number("TTL")) {
            (Some(granted), Some(left)) if left >= 0 => Some((granted - left).max(0)),
            _ => None,
        })
    }

    fn grant(&self, ttl: Duration) -> Result<String> {
        let answer = self.call(
            "/v3/lease/grant",
            &json!({"TTL": ttl.as_secs().max(1).to_string()}),
        )?;
        answer
            .get("ID")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| Error::new("etcd granted no lease"))
    }

    /// Put `value` at `key` under `lease` if the key's mod revision is still `revision`
    /// (0: absent). Returns whether it was put.
    fn put_if(&self, key: &str, value: &[u8], lease: &str, revision: i64) -> Result<bool> {
        let compare = if revision == 0 {
            json!({"key": b64(key.as_bytes()), "target": "CREATE", "result": "EQUAL", "create_revision": "0"})
        } else {
            json!({"key": b64(key.as_bytes()), "target": "MOD", "result": "EQUAL", "mod_revision": revision.to_string()})
        };
        let answer = self.call(
            "/v3/kv/txn",
            &json!({
                "compare": [compare],
                "success": [{"request_put": {"key": b64(key.as_bytes()), "value": b64(value), "lease": lease}}],
            }),
        )?;
        Ok(answer
            .get("succeeded")
            .and_then(Value::as_bool)
            .unwrap_or(false))
    }

    fn delete(&self, key: &str) -> Result<bool> {
        let answer = self.call("/v3/kv/deleterange", &json!({"key": b64(key.as_bytes())}))?;
        Ok(answer
            .get("deleted")
            .and_then(Value::as_str)
            .is_some_and(|d| d != "0"))
    }
}

fn agent(
    timeout: std::time::Duration,
    tls: &Option<std::sync::Arc<rustls::ClientConfig>>,
) -> ureq::Agent {
    let mut builder = ureq::AgentBuilder::new().timeout(timeout).redirects(0);
    if let Some(config) = tls {
        builder = builder.tls_config(std::sync::Arc::clone(config));
    }
    builder.build()
}

/// A transport failure in a few words (ureq's own text repeats the URL).
fn transport_reason(t: &ureq::Transport) -> String {
    let text = t.to_string().to_lowercase();
    if text.contains("refused") {
        "connection refused".into()
    } else if text.contains("timed out") || text.contains("timeout") {
        "no answer in time".into()
    } else {
        t.kind().to_string().to_lowercase()
    }
}

enum Failure {
    /// This member cannot answer now: try another.
    Unreachable(String),
    /// The cluster answered no (bad request, permission): trying another will not help.
    Refused(String),
}

/// One host's signals in etcd, and its once-per ledger.
#[derive(Debug)]
pub struct EtcdStore {
    etcd: Etcd,
    host: String,
}

/// How long etcd remembers that a `--once-per` key succeeded.
pub const ONCE_PER_TTL: Duration = Duration::from_secs(30 * 86_400);

impl EtcdStore {
    pub fn new(etcd: Etcd, host: &str) -> EtcdStore {
        EtcdStore {
            etcd,
            host: host.to_string(),
        }
    }

    fn key(host: &str, name: &str) -> String {
        format!("{PREFIX}{host}/{name}")
    }

    fn once_per_key(&self, job: &str, key: &str) -> String {
        // The key is the user's text (a time, say): hex keeps it one path segment.
        let hex: String = key.bytes().map(|b| format!("{b:02x}")).collect();
        format!("/baton/once-per/{}/{job}/{hex}", self.host)
    }

    fn live_of_host(
        &self,
        host: &str,
        now: DateTime<Utc>,
        pattern: Option<&Regex>,
    ) -> Result<Listing> {
        let mut listing = Listing::default();
        if let Some(name) = pattern.and_then(literal_name) {
            if validate_signal_name(name).is_ok() {
                if let Some((bytes, _)) = self.etcd.range_key(&Self::key(host, name))? {
                    push_record(&mut listing, &Self::key(host, name), &bytes, now);
                }
            }
            return Ok(listing);
        }
        for (key, bytes, _) in self.etcd.range_prefix(&format!("{PREFIX}{host}/"))? {
            let name = key.rsplit('/').next().unwrap_or_default();
            if pattern.is_none_or(|p| p.is_match(name)) {
                push_record(&mut listing, &key, &bytes, now);
            }
        }
        listing.signals.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(listing)
    }
}

impl EtcdStore {
    /// `host`'s clock now, as etcd can tell it: the `set_at` of its most recently written
    /// signal (etcd's revision orders the writes, whatever the host's clock said) plus the
    /// time etcd counts since that signal's lease was granted (granted with the raise).
    /// The largest `set_at` would not do: a record stamped by a clock since stepped back
    /// would stand for the host's clock. `None` when the host has no signal under a live
    /// lease.
    fn clock_of_host(&self, host: &str) -> Result<Option<DateTime<Utc>>> {
        let newest = self
            .etcd
            .range_prefix_leases(&format!("{PREFIX}{host}/"))?
            .into_iter()
            .filter_map(|(bytes, lease, revision)| {
                let s = serde_json::from_slice::<Signal>(&bytes).ok()?;
                Some((revision, s.set_at, lease?))
            })
            .max_by_key(|(revision, _, _)| *revision);
        let Some((_, set_at, lease)) = newest else {
            return Ok(None);
        };
        Ok(self
            .etcd
            .lease_elapsed(&lease)?
            .map(|secs| set_at + chrono::TimeDelta::seconds(secs)))
    }
}

fn push_record(listing: &mut Listing, key: &str, bytes: &[u8], now: DateTime<Utc>) {
    match serde_json::from_slice::<Signal>(bytes) {
        Ok(s) if s.version == RECORD_VERSION => {
            if s.is_live(now) {
                listing.signals.push(s);
            }
        }
        _ => listing
            .problems
            .push(format!("skipping unreadable record at etcd key {key}")),
    }
}

impl SignalStore for EtcdStore {
    /// As the state dir's raise, in etcd: a lease of `ttl`, and a transaction so that two
    /// writers of a `preserve` signal cannot both win.
    fn raise(
        &self,
        name: &str,
        now: DateTime<Utc>,
        ttl: Duration,
        policy: Policy,
        run: Option<&str>,
    ) -> Result<Signal> {
        let signal = Signal::raised(name, &self.host, now, ttl, policy, run)?;
        let key = Self::key(&self.host, name);
        for _ in 0..10 {
            let existing = self.etcd.range_key(&key)?;
            let revision = existing.as_ref().map(|(_, rev)| *rev).unwrap_or(0);
            if let (Policy::Preserve, Some((bytes, _))) = (policy, &existing) {
                if let Ok(old) = serde_json::from_slice::<Signal>(bytes) {
                    if old.is_live(now) {
                        return Ok(old);
                    }
                }
            }
            let lease = self.etcd.grant(ttl)?;
            let bytes = serde_json::to_vec(&signal).map_err(|e| Error::new(e.to_string()))?;
            if self.etcd.put_if(&key, &bytes, &lease, revision)? {
                return Ok(signal);
            }
        }
        Err(Error::new(format!(
            "signal {name}: too many concurrent writers in etcd"
        )))
    }

    fn clear(&self, name: &str, now: DateTime<Utc>) -> Result<bool> {
        validate_signal_name(name)?;
        let was = self.get(name, now)?.is_some();
        self.etcd.delete(&Self::key(&self.host, name))?;
        Ok(was)
    }

    fn get(&self, name: &str, now: DateTime<Utc>) -> Result<Option<Signal>> {
        validate_signal_name(name)?;
        Ok(self
            .etcd
            .range_key(&Self::key(&self.host, name))?
            .and_then(|(bytes, _)| serde_json::from_slice::<Signal>(&bytes).ok())
            .filter(|s| s.is_live(now)))
    }

    fn live(&self, now: DateTime<Utc>, pattern: Option<&Regex>) -> Result<Listing> {
        self.live_of_host(&self.host, now, pattern)
    }

    fn live_of(&self, host: &str, now: DateTime<Utc>, pattern: Option<&Regex>) -> Result<Listing> {
        self.live_of_host(host, now, pattern)
    }

    fn clock_of(&self, host: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>> {
        Ok(self.clock_of_host(host)?.unwrap_or(now))
    }

    fn watch(&self, limit: std::time::Duration) -> Result<bool> {
        self.etcd.watch_prefix(PREFIX, limit).map(|_| true)
    }

    fn once_per_seen(&self, job: &str, key: &str) -> Result<bool> {
        Ok(self.etcd.range_key(&self.once_per_key(job, key))?.is_some())
    }

    /// Remembered for [`ONCE_PER_TTL`].
    fn once_per_remember(&self, job: &str, key: &str) -> Result<()> {
        let lease = self.etcd.grant(ONCE_PER_TTL)?;
        let k = self.once_per_key(job, key);
        self.etcd.call(
            "/v3/kv/put",
            &json!({"key": b64(k.as_bytes()), "value": b64(key.as_bytes()), "lease": lease}),
        )?;
        Ok(())
    }
}

/// A value, its lease (if any) and its modification revision.
type LeasedValue = (Vec<u8>, Option<String>, i64);

/// The key/value pairs of a range answer, decoded, with their mod revisions.
fn kvs(answer: &Value) -> Vec<(String, Vec<u8>, i64)> {
    answer
        .get("kvs")
        .and_then(Value::as_array)
        .map(|kvs| {
            kvs.iter()
                .filter_map(|kv| {
                    let key = unb64(kv.get("key")?.as_str()?)?;
                    let value = unb64(kv.get("value").and_then(Value::as_str).unwrap_or(""))?;
                    let rev = kv
                        .get("mod_revision")
                        .and_then(Value::as_str)
                        .and_then(|r| r.parse().ok())
                        .unwrap_or(0);
                    Some((String::from_utf8_lossy(&key).into_owned(), value, rev))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The end of the range of keys that start with `prefix`.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// Standard base64 with padding, as etcd's gateway encodes bytes.
pub fn b64(bytes: &[u8]) -> String {
    BASE64_STANDARD.encode(bytes)
}

pub fn unb64(text: &str) -> Option<Vec<u8>> {
    BASE64_STANDARD.decode(text).ok()
}

/// `url` with its password replaced by `***`, for messages.
fn redact(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let Some((credentials, hosts)) = rest.rsplit_once('@') else {
        return url.to_string();
    };
    let user = match credentials.split_once(':') {
        Some((user, _)) => format!("{user}:***"),
        None => "***".to_string(),
    };
    match scheme {
        "" => format!("{user}@{hosts}"),
        _ => format!("{scheme}://{user}@{hosts}"),
    }
}

/// TLS for `etcds://`: the CA in BATON_ETCD_CA, else the system's trusted roots
/// (`/etc/ssl/certs`, as curl and etcdctl use), and the client certificate and key in
/// BATON_ETCD_CERT and BATON_ETCD_KEY if given.
fn tls_config() -> Result<std::sync::Arc<rustls::ClientConfig>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let var = |n: &str| {
        std::env::var_os(n)
            .filter(|v| !v.is_empty())
            .map(std::path::PathBuf::from)
    };
    let pem_error = |p: &std::path::Path, e: rustls::pki_types::pem::Error| {
        Error::new(format!("{}: {e}", p.display()))
    };
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::new(format!("TLS setup: {e}")))?;
    let mut roots = rustls::RootCertStore::empty();
    match var("BATON_ETCD_CA") {
        Some(ca) => {
            for cert in CertificateDer::pem_file_iter(&ca).map_err(|e| pem_error(&ca, e))? {
                let cert = cert.map_err(|e| pem_error(&ca, e))?;
                roots
                    .add(cert)
                    .map_err(|e| Error::new(format!("{}: {e}", ca.display())))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                return Err(Error::new(
                    "etcds://: no trusted roots on this system (install ca-certificates, or set BATON_ETCD_CA)",
                ));
            }
        }
    }
    let builder = builder.with_root_certificates(roots);
    let config = match (var("BATON_ETCD_CERT"), var("BATON_ETCD_KEY")) {
        (Some(cert), Some(key)) => {
            let certs = CertificateDer::pem_file_iter(&cert)
                .map_err(|e| pem_error(&cert, e))?
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| pem_error(&cert, e))?;
            let key_der = PrivateKeyDer::from_pem_file(&key).map_err(|e| pem_error(&key, e))?;
            builder
                .with_client_auth_cert(certs, key_der)
                .map_err(|e| Error::new(format!("client certificate: {e}")))?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(std::sync::Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips() {
        for s in [
            "",
            "f",
            "fo",
            "foo",
            "foob",
            "fooba",
            "foobar",
            "/baton/signals/host1/did",
        ] {
            assert_eq!(unb64(&b64(s.as_bytes())).unwrap(), s.as_bytes());
        }
        assert_eq!(b64(b"foobar"), "Zm9vYmFy");
        assert_eq!(b64(b"fo"), "Zm8=");
        assert!(unb64("!!").is_none());
    }

    #[test]
    fn prefix_ranges() {
        assert_eq!(prefix_end(b"/a/"), b"/a0".to_vec());
        assert_eq!(prefix_end(&[0x61, 0xff]), vec![0x62]);
    }

    #[test]
    fn urls() {
        let t = std::time::Duration::from_secs(1);
        let e = Etcd::open("etcd://127.0.0.1:2379,127.0.0.2:2379", t).unwrap();
        assert_eq!(
            e.endpoints,
            ["http://127.0.0.1:2379", "http://127.0.0.2:2379"]
        );
        let e = Etcd::open("etcd://u:p@h:1", t).unwrap();
        assert_eq!(e.credentials, Some(("u".into(), "p".into())));
        for bad in [
            "http://h:1",
            "etcd://",
            "etcd://h",
            "etcd://u@h:1",
            "etcd://h:1,,h:2",
            "etcd://h h:1",
        ] {
            assert!(Etcd::open(bad, t).is_err(), "{bad}");
        }
        // The password is never shown, whatever is wrong with the rest.
        for (url, shown) in [
            ("etcd://u:s3cret@h", "'etcd://u:***@h'"),
            ("etcds://s3cret@h:1", "'etcds://***@h:1'"),
            ("etcd://u:s3cret@h h:1", "'etcd://u:***@h h:1'"),
        ] {
            let e = Etcd::open(url, t).unwrap_err().message;
            assert!(e.contains(shown) && !e.contains("s3cret"), "{e}");
        }
    }
}
