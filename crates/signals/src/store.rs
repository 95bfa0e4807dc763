//! The signal store: one JSON record per live signal under `STATE_DIR/signals/`.
//!
//! Readers never lock: every record is replaced whole by rename. Writers (raise, clear,
//! the removal of expired records) take `signals/.lock`, so a read-modify-write such as
//! `preserve` never races, and any temporary file found while holding the lock is the
//! leftover of a killed writer: the next reader that sees one removes it under the lock.

use baton_core::fsutil::{ensure_dir, sync_dir, write_atomic, TEMP_PREFIX};
use baton_core::lock::lock_file;
use baton_core::{name, Duration, Error, Result};
use chrono::{DateTime, Utc};
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

    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        now < self.expires_at
    }
}

/// The live signals, and the records that could not be read (each one line saying why).
#[derive(Debug, Default)]
pub struct Listing {
    pub signals: Vec<Signal>,
    pub problems: Vec<String>,
}

/// This host's signal store in a state dir.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
    host: String,
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

impl Store {
    pub fn new(state_dir: &Path, host: &str) -> Store {
        Store {
            dir: state_dir.join("signals"),
            host: host.to_string(),
        }
    }

    fn record_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.json"))
    }

    fn lock(&self) -> Result<fs::File> {
        ensure_dir(&self.dir)?;
        lock_file(&self.dir.join(".lock"), LOCK_WAIT)
    }

    /// Raise `name` at `now` for `ttl`. With [`Policy::Preserve`], a live signal keeps its
    /// first raise. Returns the record now in force.
    pub fn raise(
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
    pub fn clear(&self, name: &str, now: DateTime<Utc>) -> Result<bool> {
        validate_signal_name(name)?;
        if !self.dir.exists() {
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
    pub fn get(&self, name: &str, now: DateTime<Utc>) -> Result<Option<Signal>> {
        validate_signal_name(name)?;
        Ok(read_record(&self.record_path(name))
            .map_err(Error::new)?
            .filter(|s| s.is_live(now)))
    }

    /// Every signal live at `now`, sorted by name. Expired records are removed on the way.
    pub fn live(&self, now: DateTime<Utc>) -> Result<Listing> {
        let mut listing = Listing::default();
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
            if stem.starts_with('.') {
                continue;
            }
            match read_record(&entry.path()) {
                Ok(Some(s)) if s.is_live(now) => listing.signals.push(s),
                Ok(Some(_)) => expired.push(stem.to_string()),
                Ok(None) => {}
                Err(why) => listing.problems.push(why),
            }
        }
        if !expired.is_empty() || !orphans.is_empty() {
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
}

/// The live signals for a long-running reader (`baton-serve`): the records are read
/// again only when the signals directory has changed. Every raise, clear and removal
/// renames or unlinks a file there, which moves the directory's modification time; as
/// that time is coarse (a few milliseconds), a directory changed less than a second ago
/// is always read afresh.
#[derive(Debug)]
pub struct LiveCache {
    store: Store,
    cached: std::sync::Mutex<Option<(std::time::SystemTime, std::sync::Arc<Vec<Signal>>)>>,
}

/// How long after a change the directory's time is not trusted to show the next one.
const SETTLE: std::time::Duration = std::time::Duration::from_secs(1);

impl LiveCache {
    pub fn new(store: Store) -> LiveCache {
        LiveCache {
            store,
            cached: std::sync::Mutex::new(None),
        }
    }

    /// The signals live at `now`, and the problems met if the records were read.
    pub fn live(&self, now: DateTime<Utc>) -> Result<Listing> {
        let changed = match fs::metadata(&self.store.dir) {
            Ok(m) => m.modified().ok(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Listing::default()),
            Err(e) => return Err(Error::io("read", &self.store.dir, e)),
        };
        // File times are real time, so this compares with the system clock, not Baton's.
        let settled = changed.is_some_and(|t| t.elapsed().is_ok_and(|age| age >= SETTLE));
        {
            let cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
            if let (true, Some((stamp, signals))) = (settled, cached.as_ref()) {
                if Some(*stamp) == changed {
                    let signals = signals.iter().filter(|s| s.is_live(now)).cloned().collect();
                    return Ok(Listing {
                        signals,
                        problems: Vec::new(),
                    });
                }
            }
        }
        let listing = self.store.live(now)?;
        // Reading may have removed expired records and so moved the directory's time;
        // stamp the cache with the time after the read.
        let stamp = fs::metadata(&self.store.dir)
            .ok()
            .and_then(|m| m.modified().ok());
        if let (Some(stamp), true) = (stamp, listing.problems.is_empty()) {
            *self.cached.lock().unwrap_or_else(|p| p.into_inner()) =
                Some((stamp, std::sync::Arc::new(listing.signals.clone())));
        }
        Ok(listing)
    }
}

/// Read one record: `Ok(None)` if absent, `Err(why)` if it is not a record Baton wrote.
fn read_record(path: &Path) -> std::result::Result<Option<Signal>, String> {
    let bytes = match fs::File::open(path) {
        Ok(file) => {
            let mut bytes = Vec::new();
            use std::io::Read;
            file.take(MAX_RECORD_BYTES + 1)
                .read_to_end(&mut bytes)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            bytes
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    if bytes.len() as u64 > MAX_RECORD_BYTES {
        return Err(format!(
            "skipping {}: larger than a signal record",
            path.display()
        ));
    }
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
        let store = Store::new(&d.0, "host1");
        let s = store
            .raise("did_my_job", t(0), TTL, Policy::Reset, Some("r1"))
            .unwrap();
        assert_eq!(
            (s.set_at, s.expires_at, s.host.as_str()),
            (t(0), t(600), "host1")
        );
        assert_eq!(store.live(t(599)).unwrap().signals, vec![s]);
        assert!(store.live(t(600)).unwrap().signals.is_empty());
        assert!(
            !store.record_path("did_my_job").exists(),
            "expired record removed"
        );
    }

    #[test]
    fn reset_restarts_and_preserve_keeps() {
        let d = dir("policy");
        let store = Store::new(&d.0, "h");
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
    fn the_cache_sees_every_change() {
        let d = dir("cache");
        let store = Store::new(&d.0, "h");
        let cache = LiveCache::new(store.clone());
        assert!(cache.live(t(0)).unwrap().signals.is_empty());
        store.raise("a", t(0), TTL, Policy::Reset, None).unwrap();
        assert_eq!(cache.live(t(1)).unwrap().signals.len(), 1);
        // Pretend the last change is old, so the cache is trusted, then change again.
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(5);
        fs::File::open(&store.dir)
            .unwrap()
            .set_modified(old)
            .unwrap();
        assert_eq!(cache.live(t(1)).unwrap().signals.len(), 1);
        assert_eq!(
            cache.live(t(1)).unwrap().signals.len(),
            1,
            "served from the cache"
        );
        store.raise("b", t(2), TTL, Policy::Reset, None).unwrap();
        assert_eq!(cache.live(t(3)).unwrap().signals.len(), 2);
        // Expiry needs no change on disk.
        assert!(cache.live(t(700)).unwrap().signals.is_empty());
    }

    #[test]
    fn clear_and_bad_records() {
        let d = dir("clear");
        let store = Store::new(&d.0, "h");
        assert!(!store.clear("a", t(0)).unwrap());
        store.raise("a", t(0), TTL, Policy::Reset, None).unwrap();
        assert!(store.clear("a", t(1)).unwrap());
        assert!(store.live(t(1)).unwrap().signals.is_empty());
        fs::write(store.dir.join("junk.json"), b"{not json").unwrap();
        fs::write(store.dir.join(".tmp.x.1.0"), b"half").unwrap();
        let listing = store.live(t(1)).unwrap();
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
            let store = Store::new(&d, "h");
            fs::create_dir_all(&store.dir).unwrap();
            fs::write(store.dir.join("x.json"), &bytes).unwrap();
            let listing = store.live(DateTime::from_timestamp(0, 0).unwrap()).unwrap();
            prop_assert!(listing.signals.len() + listing.problems.len() <= 1);
            let _ = fs::remove_dir_all(&d);
        }
    }
}
