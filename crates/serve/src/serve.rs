//! The peer service behind `baton-serve`: answers `GET /v1/signals?match=REGEX` with this
//! host's live signals that the asking peer is admitted to see.

use crate::access::{Peer, Rules};
use crate::http::{HttpServer, Limits, Request, Response};
use baton_core::cli::Site;
use baton_core::{name, Error, Result};
use baton_identity::KeyRing;
use baton_proto::{
    query_param, ErrorReply, HealthReply, PeerSignal, SignalsReply, API_VERSION, HEALTH_PATH,
    MATCH_PARAM, SIGNALS_PATH,
};
use baton_store::{FileStore, SignalStore};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

/// The one answer to a refused peer, whatever the reason.
pub const DENIED: &str = "not admitted";

/// The longest request URL accepted.
const MAX_URL: usize = 4096;

/// Everything `baton-serve` was asked to do.
pub struct ServeConfig {
    pub listen: String,
    pub access: PathBuf,
    /// The client identities admitted by fingerprint (`--keys`); empty without one.
    pub keys: KeyRing,
    /// Where `keys` came from, for messages.
    pub keys_path: Option<PathBuf>,
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
    keys: KeyRing,
    keys_path: Option<PathBuf>,
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
                keys: config.keys,
                keys_path: config.keys_path,
                log_requests: config.log_requests,
                patterns: PatternCache::default(),
            }),
            addr,
        })
    }
}

impl Server {
    /// Log what this server is (at start): its identity, state dir, store, access and
    /// keys files, TLS; then a warning for each thing that will keep it from serving
    /// what it should.
    pub fn announce(&self, tls: &str) {
        let shared = &self.shared;
        let rules = shared.rules();
        log(&format!(
            "listening on {} as host {} ({tls})",
            self.addr, shared.site.host
        ));
        log(&format!(
            "state dir {}, store: signal files in {}",
            shared.site.state_dir.display(),
            shared.site.state_dir.join("signals").display()
        ));
        log(&format!(
            "access file {} ({} rules)",
            shared.access_path.display(),
            rules.len()
        ));
        match &shared.keys_path {
            Some(p) => log(&format!(
                "keys file {} ({} identities)",
                p.display(),
                shared.keys.len()
            )),
            None => log("no keys file (--keys): clients are admitted by address only"),
        }
        let mut warnings = state_warnings(&shared.site.state_dir);
        warnings.extend(rule_warnings(
            &rules,
            &shared.keys,
            shared.keys_path.as_deref(),
        ));
        for w in warnings {
            log(&format!("warning: {w}"));
        }
    }

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
                let rules = Arc::new(rules);
                *self.access.write().unwrap_or_else(|p| p.into_inner()) = Loaded {
                    rules: Arc::clone(&rules),
                    stamp,
                };
                log(&format!(
                    "reloaded {} ({n} rules)",
                    self.access_path.display()
                ));
                for w in rule_warnings(&rules, &self.keys, self.keys_path.as_deref()) {
                    log(&format!("warning: {w}"));
                }
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
        let (status, identity, body, detail) = self.answer(request);
        if self.log_requests {
            let path: String = request
                .target
                .chars()
                .take(200)
                .flat_map(char::escape_default)
                .collect();
            let key = identity.as_deref().unwrap_or("-");
            let ms = started.elapsed().as_secs_f64() * 1000.0;
            let why = detail.map(|d| format!(" ({d})")).unwrap_or_default();
            log(&format!(
                "{} key={key} {} {path} {status} {ms:.2}ms{why}",
                request.peer, request.method
            ));
        }
        Response { status, body }
    }

    /// The status, the key identity (if any), the JSON body for one request, and what the
    /// log says of a refusal that the peer is not told.
    fn answer(&self, request: &Request) -> (u16, Option<String>, String, Option<String>) {
        let err = |status: u16, key: Option<String>, msg: &str| {
            (
                status,
                key,
                to_json(&ErrorReply { error: msg.into() }),
                None,
            )
        };
        // One answer for every refusal (an unknown certificate, a known one not admitted,
        // an address not admitted), so that a peer learns nothing; the log has the detail.
        let denied = |key: Option<String>, detail: String| {
            let body = to_json(&ErrorReply {
                error: DENIED.into(),
            });
            (403, key, body, Some(detail))
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
            return (200, None, to_json(&health), None);
        }
        if path != SIGNALS_PATH {
            return err(404, None, "no such resource (try /v1/signals?match=REGEX)");
        }
        let now = match self.site.clock.now() {
            Ok(t) => t,
            Err(e) => return err(500, None, &e.message),
        };
        let key = match &request.client {
            None => None,
            Some(fp) => match self.keys.id_of(fp) {
                Some(id) => Some(id.to_string()),
                None => {
                    let fp = baton_identity::show(fp);
                    return denied(None, format!("unknown certificate {fp}"));
                }
            },
        };
        let peer = Peer {
            addr: request.peer,
            key: key.clone(),
        };
        let rules = self.rules();
        if !rules.admits_peer(&peer) {
            let who = match &key {
                Some(id) => format!("key:{id} from {}", request.peer),
                None => request.peer.to_string(),
            };
            return denied(key, format!("{who} is not admitted by any rule"));
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
        (200, key, to_json(&reply), None)
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    // The protocol's types hold only strings, numbers and times: they always serialise.
    serde_json::to_string(value).unwrap_or_else(|_| r#"{"error":"cannot serialise"}"#.into())
}

/// One log line on stderr, stamped with the wall-clock time (RFC 3339, UTC): a log says
/// when things happened, whatever clock (`BATON_NOW`) the service answers by.
pub fn log(line: &str) {
    let stamp = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let _ = writeln!(std::io::stderr().lock(), "{stamp} baton-serve: {line}");
}

/// What is wrong with a configuration that starts but cannot serve what it should: rules
/// naming keys that `--keys` does not list, no rules at all.
pub fn rule_warnings(
    rules: &Rules,
    keys: &KeyRing,
    keys_path: Option<&std::path::Path>,
) -> Vec<String> {
    let mut warnings = Vec::new();
    if rules.is_empty() {
        warnings.push(
            "the access file has no rules: every peer gets 403 (add 'allow PATTERN PEER...' lines)"
                .to_string(),
        );
    }
    for id in rules.key_ids() {
        if !keys.has_id(id) {
            let fix = match keys_path {
                Some(p) => format!(
                    "add its 'ID SHA256' line (baton-key new prints it) to {}",
                    p.display()
                ),
                None => {
                    "give --keys with its 'ID SHA256' line (baton-key new prints it)".to_string()
                }
            };
            warnings.push(format!("the access file names key:{id}, which --keys does not list: no client can be key:{id}; {fix}"));
        }
    }
    warnings
}

/// What is wrong with the state dir at start: missing, or holding no signals yet.
pub fn state_warnings(state_dir: &std::path::Path) -> Vec<String> {
    let signals = state_dir.join("signals");
    if !state_dir.is_dir() {
        return vec![format!(
            "state dir {} does not exist: nothing to serve until baton-run or baton-signal raise there (check --state-dir / BATON_STATE_DIR: root's default is /var/lib/baton)",
            state_dir.display()
        )];
    }
    let empty = match std::fs::read_dir(&signals) {
        Ok(mut entries) => !entries.any(|e| {
            e.ok()
                .is_some_and(|e| e.file_name().to_string_lossy().ends_with(".json"))
        }),
        Err(_) => true,
    };
    if empty {
        vec![format!(
            "state dir {} holds no signals yet (check --state-dir / BATON_STATE_DIR if signals are raised elsewhere)",
            state_dir.display()
        )]
    } else {
        Vec::new()
    }
}
