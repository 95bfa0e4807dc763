//! Where a host's signals live: the state dir (the default) or etcd (`--store`,
//! `BATON_STORE`). Every binary that raises or reads signals goes through the
//! [`SignalStore`] trait, opened once per invocation by [`open`], so a crontab line
//! changes only its store and no caller branches on which one it has.

use crate::etcd::{Etcd, EtcdStore};
use crate::store::{FileStore, Listing, Policy, Signal};
use baton_core::cli::Site;
use baton_core::{Duration, Result};
use chrono::{DateTime, Utc};
use regex::Regex;

/// How long one etcd request may take before the next member is tried.
pub const ETCD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// A host's signals (persistent classes with a time to live) and its once-per ledger.
///
/// Times are Baton's clock readings, passed in: no implementation reads a clock.
pub trait SignalStore: Send + Sync {
    /// Raise `name` at `now` for `ttl`. With [`Policy::Preserve`], a live signal keeps
    /// its first raise. Returns the record now in force. Errors: an invalid name, a zero
    /// `ttl`, a store that cannot be written.
    fn raise(
        &self,
        name: &str,
        now: DateTime<Utc>,
        ttl: Duration,
        policy: Policy,
        run: Option<&str>,
    ) -> Result<Signal>;

    /// Remove `name`. Returns whether a live signal was there.
    fn clear(&self, name: &str, now: DateTime<Utc>) -> Result<bool>;

    /// One signal, if it is live at `now`: one record read, whatever the store holds.
    fn get(&self, name: &str, now: DateTime<Utc>) -> Result<Option<Signal>>;

    /// This host's signals live at `now` whose whole name `pattern` matches (all of them
    /// for `None`), sorted by name. Records whose names cannot match are not read.
    fn live(&self, now: DateTime<Utc>, pattern: Option<&Regex>) -> Result<Listing>;

    /// Another host's live signals: only a shared store (etcd) holds those; a state dir
    /// holds this host's alone and answers with them.
    fn live_of(&self, host: &str, now: DateTime<Utc>, pattern: Option<&Regex>) -> Result<Listing>;

    /// `host`'s clock when the reader's reads `now`: the clock by which the records of
    /// `host` this store holds are judged (docs/time.md). A state dir holds this host's
    /// records alone: `now`. etcd counts the time since each signal was written (its
    /// lease): the newest signal's `set_at` plus that, whatever the two hosts' clocks say.
    fn clock_of(&self, _host: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>> {
        Ok(now)
    }

    /// Wait at most `limit` for a change to any host's signals, where the store can say
    /// (etcd's watch). Returns `Ok(true)` once it has waited, `Ok(false)` at once when it
    /// cannot watch: the caller then sleeps and polls.
    fn watch(&self, _limit: std::time::Duration) -> Result<bool> {
        Ok(false)
    }

    /// Whether a run of `job` already succeeded for the `--once-per` key `key`.
    fn once_per_seen(&self, job: &str, key: &str) -> Result<bool>;

    /// Remember that a run of `job` succeeded for `key`.
    fn once_per_remember(&self, job: &str, key: &str) -> Result<()>;
}

/// The store `site` names: its `--store` URL, else its state dir.
pub fn open(site: &Site) -> Result<Box<dyn SignalStore>> {
    match &site.store {
        None => Ok(Box::new(FileStore::new(&site.state_dir, &site.host))),
        Some(url) => open_shared(url, &site.host, ETCD_TIMEOUT),
    }
}

/// A shared store (`etcd://...`) as `host`, each request bounded by `timeout`: the store a
/// reader of other hosts' signals opens (`baton-query --store`).
pub fn open_shared(
    url: &str,
    host: &str,
    timeout: std::time::Duration,
) -> Result<Box<dyn SignalStore>> {
    Ok(Box::new(EtcdStore::new(Etcd::open(url, timeout)?, host)))
}
