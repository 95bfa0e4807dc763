//! The peer service behind `baton-serve`: answers `GET /v1/signals?match=REGEX` with this
//! host's live signals that the asking peer is admitted to see.

use crate::access::{Peer, Rules};
use crate::http::{HttpServer, Limits, Request, Response};
use baton_core::cli::Site;
use baton_core::{name, Error, Result};
use baton_proto::auth::{AuthError, Verifier};
use baton_proto::{
    query_param, ErrorReply, HealthReply, PeerSignal, SignalsReply, API_VERSION, HEALTH_PATH,
    MATCH_PARAM, SIGNALS_PATH,
};
use baton_store::FileStore;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

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
    store: FileStore,
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
        let store = FileStore::serving(&config.site.state_dir, &config.site.host);
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
        let served = self
            .http
            .serve(Arc::new(move |req: &Request| shared.handle(req)), stop);
        let _ = watcher.join();
        served
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
        Response { status, body }
    }

    /// The status, the key identity (if any) and the JSON body for one request.
    fn answer(&self, request: &Request) -> (u16, Option<String>, String) {
        let err = |status: u16, key: Option<String>, msg: &str| {
            (status, key, to_json(&ErrorReply { error: msg.into() }))
        };
        let url = request.target.as_str();
        if url.len() > MAX_URL {
            return err(414, None, "request URL too long");
        }
        let (path, query) = url.split_once('?').unwrap_or((url, ""));
        if request.method != "GET" {
            return err(405, None, "only GET is served");
        }
        if path == HEALTH_PATH {
            let health = HealthReply {
                version: API_VERSION,
                ok: true,
            };
            return (200, None, to_json(&health));
        }
        if path != SIGNALS_PATH {
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
                Err(e @ AuthError::Overloaded) => return err(503, None, &e.to_string()),
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
        let pattern_text = match query_param(query, MATCH_PARAM) {
            Ok(Some(p)) => p,
            Ok(None) => ".*".to_string(),
            Err(e) => return err(400, key, &e),
        };
        let pattern = match self.patterns.get(&pattern_text) {
            Ok(p) => p,
            Err(e) => return err(400, key, &e.message),
        };
        let listing = match self.store.live(now, Some(&pattern)) {
            Ok(l) => l,
            Err(e) => return err(500, key, &e.message),
        };
        let reply = SignalsReply {
            version: API_VERSION,
            host: self.site.host.clone(),
            now,
            signals: listing
                .signals
                .iter()
                .filter(|s| rules.may_see(&peer, &s.name))
                .map(PeerSignal::from)
                .collect(),
        };
        (200, key, to_json(&reply))
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    // The protocol's types hold only strings, numbers and times: they always serialise.
    serde_json::to_string(value).unwrap_or_else(|_| r#"{"error":"cannot serialise"}"#.into())
}

fn log(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "baton-serve: {line}");
}
