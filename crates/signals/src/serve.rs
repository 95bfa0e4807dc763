//! The peer service behind `baton-serve`: answers `GET /v1/signals?match=REGEX` with this
//! host's live signals that the asking peer is admitted to see.

use crate::access::{Peer, Rules};
use crate::auth::Verifier;
use crate::http::{HttpServer, Limits, Request, Response};
use crate::store::{LiveCache, Store};
use baton_core::cli::Site;
use baton_core::clock::format_time;
use baton_core::{name, Error, Result};
use serde_json::json;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

/// The API version in every path and response.
pub const API_VERSION: u32 = 1;
/// The default port.
pub const DEFAULT_PORT: u16 = 7401;
/// The longest request URL accepted.
const MAX_URL: usize = 4096;

/// Everything `baton-serve` was asked to do.
pub struct ServeConfig {
    pub listen: String,
    pub access: PathBuf,
    pub verifier: Option<Verifier>,
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub limits: Limits,
    pub site: Site,
    /// Log one line per request on stderr.
    pub log_requests: bool,
}

/// The access rules in force and what the file looked like when they were read.
struct Loaded {
    rules: Arc<Rules>,
    stamp: Option<(SystemTime, u64)>,
}

struct Shared {
    site: Site,
    store: LiveCache,
    access_path: PathBuf,
    access: RwLock<Loaded>,
    verifier: Option<Verifier>,
    log_requests: bool,
    patterns: PatternCache,
}

/// Compiled match patterns: peers ask the same few again and again, and compiling a
/// regex costs more than answering the request.
#[derive(Default)]
struct PatternCache {
    compiled: std::sync::Mutex<std::collections::HashMap<String, Arc<regex::Regex>>>,
}

impl PatternCache {
    const MAX: usize = 256;

    fn get(&self, text: &str) -> Result<Arc<regex::Regex>> {
        if let Some(r) = self
            .compiled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(text)
        {
            return Ok(Arc::clone(r));
        }
        let regex = Arc::new(name::whole_name_regex(text)?);
        let mut compiled = self.compiled.lock().unwrap_or_else(|p| p.into_inner());
        if compiled.len() >= Self::MAX {
            compiled.clear(); // crude, but bounded: a peer sending random patterns gains nothing
        }
        compiled.insert(text.to_string(), Arc::clone(&regex));
        Ok(regex)
    }
}

/// A bound, not yet running, server.
pub struct Server {
    http: HttpServer,
    shared: Arc<Shared>,
    /// Where it listens, as clients should write it (`127.0.0.1:7401`).
    pub addr: String,
}

fn file_stamp(path: &std::path::Path) -> Option<(SystemTime, u64)> {
    std::fs::metadata(path)
        .ok()
        .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()))
}

fn load_rules(path: &std::path::Path) -> Result<Rules> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io("read access file", path, e))?;
    Rules::parse(&text).map_err(|e| e.context(path.display()))
}

impl Server {
    /// Load the access rules (an invalid file is an error now) and bind the socket.
    pub fn bind(config: ServeConfig) -> Result<Server> {
        let rules = load_rules(&config.access)?;
        let http = HttpServer::bind(&config.listen, config.tls, config.limits)?;
        let addr = http.addr.to_string();
        let store = LiveCache::new(Store::new(&config.site.state_dir, &config.site.host));
        Ok(Server {
            http,
            shared: Arc::new(Shared {
                site: config.site,
                store,
                access_path: config.access.clone(),
                access: RwLock::new(Loaded {
                    rules: Arc::new(rules),
                    stamp: file_stamp(&config.access),
                }),
                verifier: config.verifier,
                log_requests: config.log_requests,
                patterns: PatternCache::default(),
            }),
            addr,
        })
    }
}

impl Server {
    /// Serve until `stop` is set (SIGTERM or SIGINT in baton-serve). `reload` asks for the
    /// access file to be read again (SIGHUP); it is also re-read when it changes.
    pub fn run(self, stop: Arc<AtomicBool>, reload: Arc<AtomicBool>) -> Result<()> {
        let watcher = {
            let shared = Arc::clone(&self.shared);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(200));
                    let asked = reload.swap(false, Ordering::Relaxed);
                    shared.maybe_reload(asked);
                }
            })
        };
        let shared = Arc::clone(&self.shared);
        self.http
            .serve(Arc::new(move |req: &Request| shared.handle(req)), stop);
        let _ = watcher.join();
        Ok(())
    }
}

impl Shared {
    fn maybe_reload(&self, asked: bool) {
        let stamp = file_stamp(&self.access_path);
        let current = self.access.read().unwrap_or_else(|p| p.into_inner()).stamp;
        if !asked && stamp == current {
            return;
        }
        match load_rules(&self.access_path) {
            Ok(rules) => {
                let n = rules.len();
                *self.access.write().unwrap_or_else(|p| p.into_inner()) = Loaded {
                    rules: Arc::new(rules),
                    stamp,
                };
                log(&format!(
                    "reloaded {} ({n} rules)",
                    self.access_path.display()
                ));
            }
            Err(e) => {
                // Remember the stamp so a bad file is reported once, not every 200 ms.
                self.access.write().unwrap_or_else(|p| p.into_inner()).stamp = stamp;
                log(&format!("{e}; keeping the previous rules"));
            }
        }
    }

    fn rules(&self) -> Arc<Rules> {
        Arc::clone(&self.access.read().unwrap_or_else(|p| p.into_inner()).rules)
    }

    fn handle(&self, request: &Request) -> Response {
        let started = Instant::now();
        let (status, identity, body) = self.answer(request);
        if self.log_requests {
            let path: String = request
                .target
                .chars()
                .take(200)
                .flat_map(char::escape_default)
                .collect();
            let key = identity.as_deref().unwrap_or("-");
            let ms = started.elapsed().as_secs_f64() * 1000.0;
            log(&format!(
                "{} key={key} {} {path} {status} {ms:.2}ms",
                request.peer, request.method
            ));
        }
        Response {
            status,
            body: body.to_string(),
        }
    }

    /// The status, the key identity (if any) and the JSON body for one request.
    fn answer(&self, request: &Request) -> (u16, Option<String>, serde_json::Value) {
        let err =
            |status: u16, key: Option<String>, msg: &str| (status, key, json!({"error": msg}));
        let url = request.target.as_str();
        if url.len() > MAX_URL {
            return err(414, None, "request URL too long");
        }
        let (path, query) = url.split_once('?').unwrap_or((url, ""));
        if request.method != "GET" {
            return err(405, None, "only GET is served");
        }
        if path == "/v1/health" {
            return (200, None, json!({"version": API_VERSION, "ok": true}));
        }
        if path != "/v1/signals" {
            return err(404, None, "no such resource (try /v1/signals?match=REGEX)");
        }
        let now = match self.site.clock.now() {
            Ok(t) => t,
            Err(e) => return err(500, None, &e.message),
        };
        let key = match (request.header("Authorization"), &self.verifier) {
            (None, _) => None,
            (Some(_), None) => {
                return err(
                    401,
                    None,
                    "this server has no keys (--keys) to check a signature with",
                )
            }
            (Some(h), Some(v)) => match v.verify(h, "GET", url, now.timestamp()) {
                Ok(id) => Some(id),
                Err(e @ crate::auth::AuthError::Overloaded) => {
                    return err(503, None, &e.to_string())
                }
                Err(e) => return err(401, None, &e.to_string()),
            },
        };
        let peer = Peer {
            addr: request.peer,
            key: key.clone(),
        };
        let rules = self.rules();
        if !rules.admits_peer(&peer) {
            return err(403, key, "not admitted");
        }
        let pattern_text = match query_param(query, "match") {
            Ok(Some(p)) => p,
            Ok(None) => ".*".to_string(),
            Err(e) => return err(400, key, &e),
        };
        let pattern = match self.patterns.get(&pattern_text) {
            Ok(p) => p,
            Err(e) => return err(400, key, &e.message),
        };
        let listing = match self.store.live(now) {
            Ok(l) => l,
            Err(e) => return err(500, key, &e.message),
        };
        let signals: Vec<_> = listing
            .signals
            .iter()
            .filter(|s| pattern.is_match(&s.name) && rules.may_see(&peer, &s.name))
            .map(|s| {
                json!({
                    "name": s.name,
                    "host": s.host,
                    "set_at": format_time(s.set_at),
                    "expires_at": format_time(s.expires_at),
                    "run": s.run,
                })
            })
            .collect();
        let body = json!({
            "version": API_VERSION,
            "host": self.site.host,
            "now": format_time(now),
            "signals": signals,
        });
        (200, key, body)
    }
}

/// The percent-decoded value of `key` in a query string (`+` is kept: it is a regex
/// operator, and clients percent-encode everything else).
pub fn query_param(query: &str, key: &str) -> std::result::Result<Option<String>, String> {
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k == key {
            return percent_decode(v).map(Some);
        }
    }
    Ok(None)
}

fn percent_decode(text: &str) -> std::result::Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text
                .get(i + 1..i + 3)
                .ok_or("bad percent-encoding in the query")?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| "bad percent-encoding in the query")?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "the query is not UTF-8".to_string())
}

/// Percent-encode everything but unreserved characters.
pub fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn log(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "baton-serve: {line}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_round_trip() {
        for p in ["did.*", "a|b", "x+", "(a)?[b]{2}", "é", "a&b=c"] {
            let q = format!("x=1&match={}", percent_encode(p));
            assert_eq!(query_param(&q, "match").unwrap().as_deref(), Some(p));
        }
        assert_eq!(query_param("a=1", "match").unwrap(), None);
        assert!(query_param("match=%zz", "match").is_err());
        assert!(query_param("match=%f", "match").is_err());
        assert!(query_param("match=%ff", "match").is_err());
    }
}
