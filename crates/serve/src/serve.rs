//! The peer service behind `baton-serve`: answers `GET /v1/signals?match=REGEX` with this
//! host's live signals that the asking peer is admitted to see, `GET /v1/history` with
//! its jobs' recent ticks, `GET /metrics` (`crate::metrics`) and `GET /` (the status
//! page, `crate::status`, with what `crate::relay` asked of `--peers`), all behind the
//! same admission. `HEAD` is answered as `GET` (hyper leaves the body out); any other
//! method gets 405 with `Allow: GET, HEAD`.

use crate::access::{Peer, Rules};
use crate::http::{Answer, HttpServer, Limits, Request, Response, JSON};
use crate::metrics::ServerMetrics;
use crate::relay::{PeerView, Relay};
use crate::status::{HostStatus, MAX_RUNS};
use baton_core::cli::Site;
use baton_core::{name, Error, Result};
use baton_identity::KeyRing;
use baton_launch::history;
use baton_proto::{
    query_param, ErrorReply, HealthReply, HistoryReply, PeerJob, PeerRun, PeerSignal, SignalsReply,
    API_VERSION, HEALTH_PATH, HISTORY_PATH, MATCH_PARAM, METRICS_PATH, SIGNALS_PATH, STATUS_PATH,
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
    /// The peers the status page also shows, and how to ask them.
    pub peers: Option<PeerView>,
    /// How long the status page waits for each peer (`--peer-timeout`).
    pub peer_timeout: Duration,
}

/// A reply: status, content type and body.
type Reply = (u16, &'static str, String);

/// A request's outcome: the key identity (if any), the reply, and what the log says of a
/// refusal that the peer is not told.
type Done = (Option<String>, Reply, Option<String>);

/// Where [`Shared::answer`] sends a request.
enum Routed {
    Done(Done),
    /// The status page, for an admitted viewer: made on a blocking thread, since it may
    /// ask `--peers`.
    Page {
        key: Option<String>,
        peer: Peer,
        rules: Arc<Rules>,
        now: chrono::DateTime<chrono::Utc>,
    },
}

/// The methods every route answers.
const ALLOW: &str = "GET, HEAD";

/// The most of a run's log the status page shows: its end.
const OUTPUT_TAIL: u64 = 4096;

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
    metrics: ServerMetrics,
    relay: Option<Relay>,
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
        let open = Arc::clone(&http.open);
        let counts = Arc::clone(&http.counts);
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
                metrics: ServerMetrics::new(open, counts),
                relay: config.peers.map(|v| Relay::new(v, config.peer_timeout)),
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

    fn handle(self: &Arc<Self>, request: &Request) -> Answer {
        let started = Instant::now();
        match self.answer(request) {
            Routed::Done(done) => Answer::Ready(self.finish(request, started, done)),
            Routed::Page {
                key,
                peer,
                rules,
                now,
            } => {
                let shared = Arc::clone(self);
                let request = request.clone();
                Answer::Blocking(Box::new(move || {
                    let reply = shared
                        .status_reply(&rules, &peer, now)
                        .unwrap_or_else(|e| error_reply(500, &e.message));
                    shared.finish(&request, started, (key, reply, None))
                }))
            }
        }
    }

    /// Count and log one answered request; its response.
    fn finish(&self, request: &Request, started: Instant, done: Done) -> Response {
        let (identity, (status, content_type, body), detail) = done;
        self.metrics.observe(status, started.elapsed());
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
        let headers = match status {
            405 => vec![("allow", ALLOW)],
            _ => Vec::new(),
        };
        Response {
            status,
            content_type,
            body,
            headers,
        }
    }

    /// Where one request goes: its outcome (the key identity if any, the reply, and what
    /// the log says of a refusal that the peer is not told), or the status page to make.
    fn answer(&self, request: &Request) -> Routed {
        let err = |status: u16, key: Option<String>, msg: &str| {
            Routed::Done((key, error_reply(status, msg), None))
        };
        // One answer for every refusal (an unknown certificate, a known one not admitted,
        // an address not admitted), so that a peer learns nothing; the log has the detail.
        let denied = |key: Option<String>, detail: String| {
            let body = to_json(&ErrorReply {
                error: DENIED.into(),
            });
            Routed::Done((key, (403, JSON, body), Some(detail)))
        };
        let url = request.target.as_str();
        if url.len() > MAX_URL {
            return err(414, None, "request URL too long");
        }
        let (path, query) = url.split_once('?').unwrap_or((url, ""));
        if !matches!(request.method.as_str(), "GET" | "HEAD") {
            return err(405, None, "only GET and HEAD are served");
        }
        if path == HEALTH_PATH {
            let health = HealthReply {
                version: API_VERSION,
                ok: true,
            };
            return Routed::Done((None, (200, JSON, to_json(&health)), None));
        }
        if ![SIGNALS_PATH, HISTORY_PATH, METRICS_PATH, STATUS_PATH].contains(&path) {
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
        let routed = match path {
            HISTORY_PATH => Some(self.history_reply(&rules, &peer, now)),
            METRICS_PATH => Some(self.metrics_reply(&rules, &peer, now)),
            STATUS_PATH => {
                return Routed::Page {
                    key,
                    peer,
                    rules,
                    now,
                }
            }
            _ => None,
        };
        if let Some(reply) = routed {
            return match reply {
                Ok(reply) => Routed::Done((key, reply, None)),
                Err(e) => err(500, key, &e.message),
            };
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
        Routed::Done((key, (200, JSON, to_json(&reply)), None))
    }

    /// The live signals `peer` may see.
    fn visible_signals(
        &self,
        rules: &Rules,
        peer: &Peer,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<baton_store::Signal>> {
        let listing = self.store.live(now, None)?;
        Ok(listing
            .signals
            .into_iter()
            .filter(|s| rules.may_see(peer, &s.name))
            .collect())
    }

    /// The last day of the jobs `peer` may see, outcomes and timings only.
    fn visible_jobs(
        &self,
        rules: &Rules,
        peer: &Peer,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<PeerJob>> {
        let dir = self.site.state_dir.join("history");
        let from = now - crate::status::WINDOW;
        let mut jobs = Vec::new();
        for job in history::jobs(&dir)? {
            if !rules.may_see_job(peer, &job) {
                continue;
            }
            let records = history::read(&dir, Some(&job))?;
            let mut runs: Vec<PeerRun> = records
                .iter()
                .filter(|r| r.end >= from && r.start <= now)
                .map(|r| PeerRun {
                    run: r.run.clone(),
                    start: r.start,
                    end: r.end,
                    outcome: r.outcome.as_str().to_string(),
                    status: r.status,
                    reason: r.reason.clone(),
                })
                .collect();
            runs.drain(..runs.len().saturating_sub(MAX_RUNS));
            jobs.push(PeerJob { job, runs });
        }
        Ok(jobs)
    }

    fn history_reply(
        &self,
        rules: &Rules,
        peer: &Peer,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Reply> {
        let reply = HistoryReply {
            version: API_VERSION,
            host: self.site.host.clone(),
            now,
            jobs: self.visible_jobs(rules, peer, now)?,
        };
        Ok((200, JSON, to_json(&reply)))
    }

    fn metrics_reply(
        &self,
        rules: &Rules,
        peer: &Peer,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Reply> {
        let signals = self.visible_signals(rules, peer, now)?;
        let text = crate::metrics::metrics_text(
            &self.site.state_dir,
            &self.site.host,
            &signals,
            &|job| rules.may_see_job(peer, job),
            &self.metrics,
        )?;
        Ok((200, baton_launch::metrics::CONTENT_TYPE, text))
    }

    fn status_reply(
        &self,
        rules: &Rules,
        peer: &Peer,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Reply> {
        let jobs = self.visible_jobs(rules, peer, now)?;
        let outputs = jobs
            .iter()
            .filter(|j| rules.may_see_output(peer, &j.job))
            .filter_map(|j| {
                let last = j
                    .runs
                    .iter()
                    .rev()
                    .find(|r| matches!(r.outcome.as_str(), "repaired" | "failed"))?;
                Some((j.job.clone(), self.output_tail(&j.job, &last.run)?))
            })
            .collect();
        let local = HostStatus {
            host: self.site.host.clone(),
            now,
            signals: self
                .visible_signals(rules, peer, now)?
                .iter()
                .map(PeerSignal::from)
                .collect(),
            jobs,
            outputs,
            notes: Vec::new(),
        };
        // What this host relays from its peers obeys its own access file, for this viewer.
        let peers = match &self.relay {
            Some(relay) => {
                let sees_local = !local.jobs.is_empty() || !local.signals.is_empty();
                crate::relay::for_viewer(&relay.answers(), rules, peer, sees_local)
            }
            None => Vec::new(),
        };
        let page = crate::status::render(&local, &peers, now);
        Ok((200, "text/html; charset=utf-8", page))
    }

    /// The end of run `run`'s log of `job`, if it is a plain file.
    fn output_tail(&self, job: &str, run: &str) -> Option<String> {
        use std::io::{Read, Seek, SeekFrom};
        let safe = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        };
        if !safe(job) || !safe(run) {
            return None;
        }
        let path = self
            .site
            .state_dir
            .join("logs")
            .join(job)
            .join(format!("{run}.log"));
        // One open that refuses links, FIFOs and others' files (core::safefs), then the
        // checks on what was opened: no window between a check and the open.
        let mut file = baton_core::safefs::open_read(&path).ok()??;
        let len = file.metadata().ok()?.len();
        file.seek(SeekFrom::Start(len.saturating_sub(OUTPUT_TAIL)))
            .ok()?;
        let mut bytes = Vec::new();
        file.take(OUTPUT_TAIL).read_to_end(&mut bytes).ok()?;
        Some(String::from_utf8_lossy(&bytes).into_owned())
    }
}

/// An error reply: `status` and `{"error": msg}`.
fn error_reply(status: u16, msg: &str) -> Reply {
    (status, JSON, to_json(&ErrorReply { error: msg.into() }))
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
