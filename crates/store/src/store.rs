//! The signal store: one JSON record per live signal under `STATE_DIR/signals/`.
//!
//! Readers never lock: every record is replaced whole by rename. Writers (raise, clear,
//! the removal of expired records) take `signals/.lock`, so a read-modify-write such as
//! `preserve` never races, and any temporary file found while holding the lock is the
//! leftover of a killed writer: the next reader that sees one removes it under the lock.
//!
//! Nothing in the state dir is trusted blindly ([`baton_core::safefs`]): the state dir
//! must be this user's or root's and writable by no one else, records are opened without
//! following links or blocking, and only the state dir's owner locks, writes or cleans
//! up; another user who may read it (a `baton-serve` run as that user) only reads.

use crate::backend::SignalStore;
use baton_core::fsutil::{sync_dir, write_atomic, TEMP_PREFIX};
use baton_core::lock::lock_file;
use baton_core::safefs::{self, Trust};
use baton_core::{name, Duration, Error, Result};
use chrono::{DateTime, Utc};
use regex::Regex;
use serde::{Deserialize, Serialize};
use std::fs;
use std::path::{Path, PathBuf};

/// The record format's version, written in every record.
pub const RECORD_VERSION: u32 = 1;
/// CFEngine's `state_repaired` keeps its class 10 minutes.
pub const DEFAULT_TTL: Duration = Duration::from_secs(600);
/// Signal names become file names, which the file system bounds.
pub const MAX_SIGNAL_NAME: usize = 200;
/// A record larger than this is not one Baton wrote.
const MAX_RECORD_BYTES: u64 = 64 * 1024;
/// Nor a once-per ledger larger than this (32 keys).
const MAX_LEDGER_BYTES: u64 = 1024 * 1024;
/// How long a writer waits for another writer before giving up.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// What raising an already live signal does to its clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Policy {
    /// Raising again restarts the clock (CFEngine's `reset`).
    Reset,
    /// Raising again keeps the first raise and its expiry (CFEngine's `preserve`).
    Preserve,
}

/// A persistent class with a time to live.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signal {
    pub version: u32,
    pub name: String,
    /// The host that raised it.
    pub host: String,
    pub set_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub policy: Policy,
    /// The run that raised it (a `baton-run` run id), if any.
    #[serde(default)]
    pub run: Option<String>,
}

impl Signal {
    /// The record of `name` raised by `host` at `now` for `ttl`, checked: a class name,
    /// and a time to live longer than nothing.
    pub fn raised(
        name: &str,
        host: &str,
        now: DateTime<Utc>,
        ttl: Duration,
        policy: Policy,
        run: Option<&str>,
    ) -> Result<Signal> {
        validate_signal_name(name)?;
        if ttl == Duration::ZERO {
            return Err(Error::new("--ttl must be longer than 0s"));
        }
        Ok(Signal {
            version: RECORD_VERSION,
            name: name.to_string(),
            host: host.to_string(),
            set_at: now,
            expires_at: now + ttl.chrono(),
            policy,
            run: run.map(str::to_string),
        })
    }

    /// Whether the signal is live at `now`, the clock of the host or store that holds it
    /// (the one rule, `clock::live`: a record stamped in the future has expired with the
    /// step of the clock that wrote it).
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        baton_core::clock::live(self.set_at, self.expires_at, now)
    }
}

/// The live signals, and the records that could not be read (each one line saying why).
#[derive(Debug, Default)]
pub struct Listing {
    pub signals: Vec<Signal>,
    pub problems: Vec<String>,
}

/// This host's signal store in a state dir.
#[derive(Debug)]
pub struct FileStore {
    state_dir: PathBuf,
    /// The state dir's check, made once: `None` while it does not exist.
    trust: std::sync::OnceLock<Result<Trust>>,
    dir: PathBuf,
    once_per_dir: PathBuf,
    host: String,
    /// For long-running readers: the records kept in memory, read again only when the
    /// directory has changed ([`FileStore::serving`]).
    index: Option<Index>,
}

/// Check that `name` can be a signal.
pub fn validate_signal_name(name: &str) -> Result<()> {
    name::validate(name)?;
    if name.len() > MAX_SIGNAL_NAME {
        return Err(Error::new(format!(
            "signal name longer than {MAX_SIGNAL_NAME} characters"
        )));
    }
    Ok(())
}

/// The one name a whole-name pattern can match, when it is a plain class name: such a
/// pattern is answered by reading one record, however many the store holds.
pub fn literal_name(pattern: &Regex) -> Option<&str> {
    let inner = pattern.as_str().strip_prefix("^(?:")?.strip_suffix(")$")?;
    (!inner.is_empty() && inner.bytes().all(name::is_name_char)).then_some(inner)
}

/// The literal text every name a whole-name pattern matches starts with (`did` for
/// `did.*`), so that a sorted index is searched from there, not from the start.
fn literal_prefix(pattern: &Regex) -> &str {
    let inner = pattern.as_str().strip_prefix("^(?:").unwrap_or_default();
    let end = inner
        .bytes()
        .position(|b| !name::is_name_char(b))
        .unwrap_or(inner.len());
    // A quantifier or alternation right after the literal applies to its last character
    // or the whole run: only the characters before that are certain.
    match inner.as_bytes().get(end) {
        Some(b'*' | b'?' | b'{') => &inner[..end.saturating_sub(1)],
        Some(b'|') => "",
        _ => &inner[..end],
    }
}

fn matches(pattern: Option<&Regex>, name: &str) -> bool {
    pattern.is_none_or(|p| p.is_match(name))
}

impl FileStore {
    pub fn new(state_dir: &Path, host: &str) -> FileStore {
        FileStore {
            state_dir: state_dir.to_path_buf(),
            trust: std::sync::OnceLock::new(),
            dir: state_dir.join("signals"),
            once_per_dir: state_dir.join("once-per"),
            host: host.to_string(),
            index: None,
        }
    }

    /// A store for a long-running reader (`baton-serve`): the records are kept in memory
    /// and read again only when the signals directory has changed, while requests go on
    /// being answered from the previous reading.
    pub fn serving(state_dir: &Path, host: &str) -> FileStore {
        FileStore {
            index: Some(Index::default()),
            ..FileStore::new(state_dir, host)
        }
    }

    fn record_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.json"))
    }

    /// The state dir checked for reading: `None` if it does not exist yet (no signals).
    fn trust(&self) -> Result<Option<Trust>> {
        if let Some(t) = self.trust.get() {
            return t.clone().map(Some);
        }
        match safefs::check_state_dir(&self.state_dir)? {
            Some(t) => self.trust.get_or_init(|| Ok(t)).clone().map(Some),
            None => Ok(None),
        }
    }

    /// The signals directory, checked, when it exists: where readers read.
    fn readable(&self) -> Result<Option<Trust>> {
        match self.trust()? {
            Some(t) if safefs::check_dir(&self.dir)? => Ok(Some(t)),
            _ => Ok(None),
        }
    }

    /// Make `dir` (signals/ or once-per/) ready to write: the state dir is this user's
    /// own, and `dir` a private directory in it.
    fn writable(&self, dir: &Path) -> Result<()> {
        let trust = safefs::ensure_state_dir(&self.state_dir)?;
        let _ = self.trust.set(Ok(trust));
        safefs::private_dir(dir)
    }

    fn lock(&self) -> Result<fs::File> {
        self.writable(&self.dir)?;
        lock_file(&self.dir.join(".lock"), LOCK_WAIT)
    }

    /// Read the directory: the live records whose names `pattern` matches.
    fn scan(&self, now: DateTime<Utc>, pattern: Option<&Regex>) -> Result<Listing> {
        let mut listing = Listing::default();
        let Some(trust) = self.readable()? else {
            return Ok(listing);
        };
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(listing),
            Err(e) => return Err(Error::io("read", &self.dir, e)),
        };
        let mut expired = Vec::new();
        let mut orphans = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("read", &self.dir, e))?;
            let file_name = entry.file_name();
            if file_name.to_string_lossy().starts_with(TEMP_PREFIX) {
                orphans.push(entry.path());
                continue;
            }
            let Some(stem) = file_name.to_str().and_then(|n| n.strip_suffix(".json")) else {
                continue;
            };
            if stem.starts_with('.') || !matches(pattern, stem) {
                continue;
            }
            match read_record(&entry.path()) {
                Ok(Some(s)) if s.is_live(now) => listing.signals.push(s),
                Ok(Some(_)) => expired.push(stem.to_string()),
                Ok(None) => {}
                Err(why) => listing.problems.push(why),
            }
        }
        // Only the owner cleans up: a reader cannot lock, and must not try.
        if trust.writer && (!expired.is_empty() || !orphans.is_empty()) {
            self.remove_leftovers(&expired, &orphans, now)?;
        }
        listing.signals.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(listing)
    }

    /// Under the lock, remove the temporary files seen (no writer is mid-write while the
    /// lock is held, so they are a killed writer's leftovers), and look again at the
    /// expired records (a writer may have raised one anew) and remove those still expired.
    fn remove_leftovers(
        &self,
        names: &[String],
        orphans: &[PathBuf],
        now: DateTime<Utc>,
    ) -> Result<()> {
        let _lock = self.lock()?;
        for orphan in orphans {
            let _ = fs::remove_file(orphan);
        }
        for name in names {
            let path = self.record_path(name);
            if let Ok(Some(s)) = read_record(&path) {
                if !s.is_live(now) {
                    let _ = fs::remove_file(&path);
                }
            }
        }
        sync_dir(&self.dir)
    }

    fn once_per_path(&self, job: &str) -> Result<PathBuf> {
        name::validate(job).map_err(|e| e.context("job name"))?;
        Ok(self.once_per_dir.join(format!("{job}.json")))
    }

    fn once_per_keys(&self, path: &Path) -> Result<Vec<String>> {
        if self.trust()?.is_none() || !safefs::check_dir(&self.once_per_dir)? {
            return Ok(Vec::new());
        }
        Ok(safefs::read_bounded(path, MAX_LEDGER_BYTES)?
            .map(|bytes| {
                serde_json::from_slice::<OncePerLedger>(&bytes)
                    .map(|l| l.keys)
                    .unwrap_or_default()
            })
            .unwrap_or_default())
    }
}

/// How many `--once-per` keys a job remembers in a state dir.
pub const ONCE_PER_MEMORY: usize = 32;

/// `STATE_DIR/once-per/JOB.json`: the keys for which a job's run succeeded, newest last.
#[derive(Debug, Default, Serialize, Deserialize)]
struct OncePerLedger {
    version: u32,
    keys: Vec<String>,
}

impl SignalStore for FileStore {
    /// Raise `name` at `now` for `ttl`. With [`Policy::Preserve`], a live signal keeps its
    /// first raise. Returns the record now in force.
    fn raise(
        &self,
        name: &str,
        now: DateTime<Utc>,
        ttl: Duration,
        policy: Policy,
        run: Option<&str>,
    ) -> Result<Signal> {
        let signal = Signal::raised(name, &self.host, now, ttl, policy, run)?;
        let _lock = self.lock()?;
        let path = self.record_path(name);
        if policy == Policy::Preserve {
            if let Ok(Some(old)) = read_record(&path) {
                if old.is_live(now) {
                    return Ok(old);
                }
            }
        }
        let mut bytes = serde_json::to_vec(&signal).map_err(|e| Error::new(e.to_string()))?;
        bytes.push(b'\n');
        write_atomic(&path, &bytes)?;
        Ok(signal)
    }

    /// Remove `name`. Returns whether a live signal was there.
    fn clear(&self, name: &str, now: DateTime<Utc>) -> Result<bool> {
        validate_signal_name(name)?;
        if self.readable()?.is_none() {
            return Ok(false);
        }
        let _lock = self.lock()?;
        let path = self.record_path(name);
        let was_live = matches!(read_record(&path), Ok(Some(s)) if s.is_live(now));
        match fs::remove_file(&path) {
            Ok(()) => sync_dir(&self.dir)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("remove", &path, e)),
        }
        Ok(was_live)
    }

    /// One signal, if it is live at `now`.
    fn get(&self, name: &str, now: DateTime<Utc>) -> Result<Option<Signal>> {
        validate_signal_name(name)?;
        if self.readable()?.is_none() {
            return Ok(None);
        }
        Ok(read_record(&self.record_path(name))
            .map_err(Error::new)?
            .filter(|s| s.is_live(now)))
    }

    /// The signals live at `now` whose whole name `pattern` matches, sorted by name. A
    /// plain name is one record read; otherwise only the records whose file names match
    /// are read. Expired records are removed on the way.
    fn live(&self, now: DateTime<Utc>, pattern: Option<&Regex>) -> Result<Listing> {
        if self.readable()?.is_none() {
            return Ok(Listing::default());
        }
        if let Some(index) = &self.index {
            return index.live(self, now, pattern);
        }
        if let Some(name) = pattern.and_then(literal_name) {
            let mut listing = Listing::default();
            if validate_signal_name(name).is_ok() {
                match read_record(&self.record_path(name)) {
                    Ok(Some(s)) if s.is_live(now) => listing.signals.push(s),
                    Ok(_) => {}
                    Err(why) => listing.problems.push(why),
                }
            }
            return Ok(listing);
        }
        self.scan(now, pattern)
    }

    fn live_of(&self, _host: &str, now: DateTime<Utc>, pattern: Option<&Regex>) -> Result<Listing> {
        self.live(now, pattern)
    }

    fn once_per_seen(&self, job: &str, key: &str) -> Result<bool> {
        let path = self.once_per_path(job)?;
        Ok(self.once_per_keys(&path)?.iter().any(|k| k == key))
    }

    fn once_per_remember(&self, job: &str, key: &str) -> Result<()> {
        let path = self.once_per_path(job)?;
        self.writable(&self.once_per_dir)?;
        let _lock = lock_file(&self.once_per_dir.join(".lock"), LOCK_WAIT)?;
        let mut keys = self.once_per_keys(&path)?;
        keys.retain(|k| k != key);
        keys.push(key.to_string());
        let excess = keys.len().saturating_sub(ONCE_PER_MEMORY);
        keys.drain(..excess);
        let ledger = OncePerLedger { version: 1, keys };
        let bytes = serde_json::to_vec(&ledger).map_err(|e| Error::new(e.to_string()))?;
        write_atomic(&path, &bytes)
    }
}

/// A reading of the records, kept by a long-running reader. Every raise, clear and
/// removal renames or unlinks a file in the signals directory, which moves its
/// modification time; as that time is coarse (a few milliseconds), a directory changed
/// less than a second ago is always read afresh. One reader at a time reads the records
/// again; the others answer from the previous reading meanwhile, so a large store never
/// makes requests queue behind a re-read.
#[derive(Debug, Default)]
struct Index {
    current: std::sync::RwLock<Option<Reading>>,
    refreshing: std::sync::Mutex<()>,
}

#[derive(Debug, Clone)]
struct Reading {
    stamp: std::time::SystemTime,
    records: std::sync::Arc<std::collections::BTreeMap<String, Signal>>,
}

/// How long after a change the directory's time is not trusted to show the next one.
const SETTLE: std::time::Duration = std::time::Duration::from_secs(1);

impl Index {
    fn live(
        &self,
        store: &FileStore,
        now: DateTime<Utc>,
        pattern: Option<&Regex>,
    ) -> Result<Listing> {
        let changed = match fs::metadata(&store.dir) {
            Ok(m) => m.modified().ok(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Listing::default()),
            Err(e) => return Err(Error::io("read", &store.dir, e)),
        };
        // File times are real time, so this compares with the system clock, not Baton's.
        let settled = changed.is_some_and(|t| t.elapsed().is_ok_and(|age| age >= SETTLE));
        let current = self
            .current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let fresh = |r: &Reading| settled && Some(r.stamp) == changed;
        let reading = match current {
            Some(r) if fresh(&r) => r,
            stale => {
                let one = match self.refreshing.try_lock() {
                    Ok(guard) => Some(guard),
                    Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
                    Err(std::sync::TryLockError::WouldBlock) => None,
                };
                match (one, stale) {
                    // Another reader is reading the records: answer from the last reading.
                    (None, Some(r)) => r,
                    (Some(_one), _) => return self.refresh(store, now, pattern),
                    // The first reading of all: wait for it.
                    (None, None) => {
                        let _one = self.refreshing.lock().unwrap_or_else(|p| p.into_inner());
                        return self.refresh(store, now, pattern);
                    }
                }
            }
        };
        Ok(select(&reading.records, now, pattern))
    }

    /// Read the records again, answer from them, and keep them for the next requests.
    /// The caller holds `refreshing`.
    fn refresh(
        &self,
        store: &FileStore,
        now: DateTime<Utc>,
        pattern: Option<&Regex>,
    ) -> Result<Listing> {
        let all = store.scan(now, None)?;
        // Reading may have removed expired records and so moved the directory's time;
        // stamp the reading with the time after the read.
        let stamp = fs::metadata(&store.dir)
            .ok()
            .and_then(|m| m.modified().ok());
        let records: std::collections::BTreeMap<String, Signal> = all
            .signals
            .into_iter()
            .map(|s| (s.name.clone(), s))
            .collect();
        let records = std::sync::Arc::new(records);
        let mut listing = select(&records, now, pattern);
        match (stamp, all.problems.is_empty()) {
            (Some(stamp), true) => {
                *self.current.write().unwrap_or_else(|p| p.into_inner()) =
                    Some(Reading { stamp, records });
            }
            _ => listing.problems = all.problems,
        }
        Ok(listing)
    }
}

/// The live records `pattern` matches: a plain name is one look-up, a pattern with a
/// literal start a range of the sorted index.
fn select(
    records: &std::collections::BTreeMap<String, Signal>,
    now: DateTime<Utc>,
    pattern: Option<&Regex>,
) -> Listing {
    let live = |s: &&Signal| s.is_live(now);
    let signals = match pattern {
        Some(p) => match literal_name(p) {
            Some(name) => records
                .get(name)
                .filter(live)
                .cloned()
                .into_iter()
                .collect(),
            None => {
                let prefix = literal_prefix(p);
                records
                    .range::<str, _>((
                        std::ops::Bound::Included(prefix),
                        std::ops::Bound::Unbounded,
                    ))
                    .take_while(|(name, _)| name.starts_with(prefix))
                    .map(|(_, s)| s)
                    .filter(|s| p.is_match(&s.name))
                    .filter(live)
                    .cloned()
                    .collect()
            }
        },
        None => records.values().filter(live).cloned().collect(),
    };
    Listing {
        signals,
        problems: Vec::new(),
    }
}

/// Read one record: `Ok(None)` if absent, `Err(why)` if it is not a record Baton wrote.
fn read_record(path: &Path) -> std::result::Result<Option<Signal>, String> {
    // Never through a link, never blocking on a FIFO, only a regular file of ours or root's.
    let bytes = match safefs::read_bounded(path, MAX_RECORD_BYTES) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return Ok(None),
        Err(e) => return Err(format!("skipping {}", e.message)),
    };
    let signal: Signal = serde_json::from_slice(&bytes)
        .map_err(|e| format!("skipping unreadable record {}: {e}", path.display()))?;
    if signal.version != RECORD_VERSION {
        return Err(format!(
            "skipping {}: record version {} (this Baton reads {RECORD_VERSION})",
            path.display(),
            signal.version
        ));
    }
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    if signal.name != stem || validate_signal_name(&signal.name).is_err() {
        return Err(format!(
            "skipping {}: its name does not match the file",
            path.display()
        ));
    }
    Ok(Some(signal))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Dir(PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
    fn dir(label: &str) -> Dir {
        let p = std::env::temp_dir().join(format!("baton-store-{label}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        Dir(p)
    }
    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_327_423_620 + secs, 0).unwrap()
    }
    const TTL: Duration = Duration::from_secs(600);

    #[test]
    fn raise_then_expire() {
        let d = dir("expire");
        let store = FileStore::new(&d.0, "host1");
        let s = store
            .raise("did_my_job", t(0), TTL, Policy::Reset, Some("r1"))
            .unwrap();
        assert_eq!(
            (s.set_at, s.expires_at, s.host.as_str()),
            (t(0), t(600), "host1")
        );
        assert_eq!(store.live(t(599), None).unwrap().signals, vec![s]);
        assert!(store.live(t(600), None).unwrap().signals.is_empty());
        assert!(
            !store.record_path("did_my_job").exists(),
            "expired record removed"
        );
    }

    #[test]
    fn reset_restarts_and_preserve_keeps() {
        let d = dir("policy");
        let store = FileStore::new(&d.0, "h");
        store.raise("a", t(0), TTL, Policy::Reset, None).unwrap();
        let again = store.raise("a", t(300), TTL, Policy::Reset, None).unwrap();
        assert_eq!((again.set_at, again.expires_at), (t(300), t(900)));
        store.raise("b", t(0), TTL, Policy::Preserve, None).unwrap();
        let kept = store
            .raise("b", t(300), TTL, Policy::Preserve, None)
            .unwrap();
        assert_eq!((kept.set_at, kept.expires_at), (t(0), t(600)));
        // Once expired, preserve starts a new clock.
        let anew = store
            .raise("b", t(700), TTL, Policy::Preserve, None)
            .unwrap();
        assert_eq!(anew.set_at, t(700));
    }

    #[test]
    fn the_serving_index_sees_every_change() {
        let d = dir("cache");
        let store = FileStore::new(&d.0, "h");
        let serving = FileStore::serving(&d.0, "h");
        assert!(serving.live(t(0), None).unwrap().signals.is_empty());
        store.raise("a", t(0), TTL, Policy::Reset, None).unwrap();
        assert_eq!(serving.live(t(1), None).unwrap().signals.len(), 1);
        // Pretend the last change is old, so the reading is trusted, then change again.
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(5);
        fs::File::open(&store.dir)
            .unwrap()
            .set_modified(old)
            .unwrap();
        assert_eq!(serving.live(t(1), None).unwrap().signals.len(), 1);
        assert_eq!(serving.live(t(1), None).unwrap().signals.len(), 1);
        store.raise("b", t(2), TTL, Policy::Reset, None).unwrap();
        assert_eq!(serving.live(t(3), None).unwrap().signals.len(), 2);
        // Expiry needs no change on disk.
        assert!(serving.live(t(700), None).unwrap().signals.is_empty());
    }

    #[test]
    fn patterns_select_without_reading_every_record() {
        let d = dir("select");
        let store = FileStore::new(&d.0, "h");
        for n in ["did_a", "did_b", "done", "x_did"] {
            store.raise(n, t(0), TTL, Policy::Reset, None).unwrap();
        }
        // A record that cannot match is never read, so its damage is never reported.
        fs::write(store.dir.join("zzz.json"), b"{not json").unwrap();
        let serving = FileStore::serving(&d.0, "h");
        for (pattern, want) in [
            ("did_a", vec!["did_a"]),
            ("did.*", vec!["did_a", "did_b"]),
            ("d.*", vec!["did_a", "did_b", "done"]),
            ("did_a|done", vec!["did_a", "done"]),
            ("di?one", vec!["done"]),
            ("x?did_b", vec!["did_b"]),
            ("(did_a)", vec!["did_a"]),
            ("nothing", vec![]),
        ] {
            let re = name::whole_name_regex(pattern).unwrap();
            for s in [&store, &serving] {
                let listing = s.live(t(1), Some(&re)).unwrap();
                let names: Vec<_> = listing.signals.iter().map(|s| s.name.as_str()).collect();
                assert_eq!(names, want, "{pattern}");
                if s.index.is_none() {
                    assert!(
                        listing.problems.is_empty(),
                        "{pattern}: {:?}",
                        listing.problems
                    );
                }
            }
        }
        assert_eq!(
            literal_name(&name::whole_name_regex("did_a").unwrap()),
            Some("did_a")
        );
        assert_eq!(literal_name(&name::whole_name_regex("did.").unwrap()), None);
    }

    #[test]
    fn once_per_is_remembered_and_bounded() {
        let d = dir("once");
        let store = FileStore::new(&d.0, "h");
        assert!(!store.once_per_seen("job", "k").unwrap());
        for i in 0..=ONCE_PER_MEMORY {
            store.once_per_remember("job", &format!("k{i}")).unwrap();
        }
        assert!(store
            .once_per_seen("job", &format!("k{ONCE_PER_MEMORY}"))
            .unwrap());
        assert!(
            !store.once_per_seen("job", "k0").unwrap(),
            "oldest key forgotten"
        );
        assert!(!store.once_per_seen("other", "k1").unwrap());
        assert!(store.once_per_seen("../x", "k").is_err());
    }

    #[test]
    fn clear_and_bad_records() {
        let d = dir("clear");
        let store = FileStore::new(&d.0, "h");
        assert!(!store.clear("a", t(0)).unwrap());
        store.raise("a", t(0), TTL, Policy::Reset, None).unwrap();
        assert!(store.clear("a", t(1)).unwrap());
        assert!(store.live(t(1), None).unwrap().signals.is_empty());
        fs::write(store.dir.join("junk.json"), b"{not json").unwrap();
        fs::write(store.dir.join(".tmp.x.1.0"), b"half").unwrap();
        let listing = store.live(t(1), None).unwrap();
        assert_eq!(listing.problems.len(), 1, "{:?}", listing.problems);
        store.raise("b", t(0), TTL, Policy::Reset, None).unwrap();
        assert!(
            !store.dir.join(".tmp.x.1.0").exists(),
            "orphan temporary removed under the lock"
        );
        assert!(store
            .raise("bad-name", t(0), TTL, Policy::Reset, None)
            .is_err());
        assert!(store
            .raise("a", t(0), Duration::ZERO, Policy::Reset, None)
            .is_err());
    }
}

#[cfg(test)]
mod fuzz_store {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
        /// Whatever is in a record file, reading the store skips it with a reason.
        #[test]
        fn fuzz_records_from_disk_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let d = std::env::temp_dir().join(format!("baton-fuzz-store-{}", std::process::id()));
            let store = FileStore::new(&d, "h");
            fs::create_dir_all(&store.dir).unwrap();
            fs::write(store.dir.join("x.json"), &bytes).unwrap();
            let listing = store.live(DateTime::from_timestamp(0, 0).unwrap(), None).unwrap();
            prop_assert!(listing.signals.len() + listing.problems.len() <= 1);
            let _ = fs::remove_dir_all(&d);
        }
    }
}
