//! Where a host's signals live: the state dir (the default) or etcd (`--store`,
//! `BATON_STORE`). Every binary that raises or reads signals goes through [`Backend`],
//! so a crontab line changes only its store.

use crate::etcd::{Etcd, EtcdStore};
use crate::store::{Listing, Policy, Signal, Store};
use baton_core::cli::Site;
use baton_core::{Duration, Result};
use chrono::{DateTime, Utc};

/// How long one etcd request may take before the next member is tried.
pub const ETCD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

pub enum Backend {
    Files(Store),
    Etcd(Etcd, String),
}

impl Backend {
    /// The store `site` names: its `--store` URL, else its state dir.
    pub fn open(site: &Site) -> Result<Backend> {
        match &site.store {
            None => Ok(Backend::Files(Store::new(&site.state_dir, &site.host))),
            Some(url) => Ok(Backend::Etcd(
                Etcd::open(url, ETCD_TIMEOUT)?,
                site.host.clone(),
            )),
        }
    }

    fn etcd<'a>(etcd: &'a Etcd, host: &str) -> EtcdStore<'a> {
        EtcdStore {
            etcd,
            host: host.to_string(),
        }
    }

    pub fn raise(
        &self,
        name: &str,
        now: DateTime<Utc>,
        ttl: Duration,
        policy: Policy,
        run: Option<&str>,
    ) -> Result<Signal> {
        match self {
            Backend::Files(s) => s.raise(name, now, ttl, policy, run),
            Backend::Etcd(e, h) => Self::etcd(e, h).raise(name, now, ttl, policy, run),
        }
    }

    pub fn clear(&self, name: &str, now: DateTime<Utc>) -> Result<bool> {
        match self {
            Backend::Files(s) => s.clear(name, now),
            Backend::Etcd(e, h) => Self::etcd(e, h).clear(name, now),
        }
    }

    pub fn get(&self, name: &str, now: DateTime<Utc>) -> Result<Option<Signal>> {
        match self {
            Backend::Files(s) => s.get(name, now),
            Backend::Etcd(e, h) => Self::etcd(e, h).get(name, now),
        }
    }

    pub fn live(&self, now: DateTime<Utc>) -> Result<Listing> {
        match self {
            Backend::Files(s) => s.live(now),
            Backend::Etcd(e, h) => Self::etcd(e, h).live(now),
        }
    }

    /// Another host's live signals: only etcd holds those (the state dir is this host's).
    pub fn live_of(&self, host: &str, now: DateTime<Utc>) -> Result<Listing> {
        match self {
            Backend::Files(s) => s.live(now),
            Backend::Etcd(e, _) => Self::etcd(e, host).live(now),
        }
    }
}
