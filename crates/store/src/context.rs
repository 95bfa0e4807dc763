//! One resolved context per invocation: who, where and when a binary acts, and the
//! store it acts on, built once at the top of `main` and passed down (ripgrep's
//! `HiArgs`), so nothing below resolves a flag, reads the clock or opens a store again.

use crate::backend::{self, SignalStore};
use baton_core::cli::{Site, SiteArgs};
use baton_core::Result;
use chrono::{DateTime, Utc};
use std::sync::OnceLock;

/// A binary's host, state dir, clock, first clock reading and store.
pub struct Context {
    pub site: Site,
    /// The clock read once, at the start: the instant the invocation acts at.
    pub now: DateTime<Utc>,
    /// Opened on first use, so a binary that never needs a signal never connects to etcd,
    /// and at most once.
    store: OnceLock<Box<dyn SignalStore>>,
}

impl Context {
    /// Resolve `args` and the environment, and read the clock.
    pub fn resolve(args: &SiteArgs) -> Result<Context> {
        Context::new(args.resolve()?)
    }

    /// The context of `site`, with the clock read now.
    pub fn new(site: Site) -> Result<Context> {
        let now = site.clock.now()?;
        Ok(Context {
            site,
            now,
            store: OnceLock::new(),
        })
    }

    /// The store the site names, opened on the first call. Errors: a malformed or
    /// unreachable `--store`.
    pub fn store(&self) -> Result<&dyn SignalStore> {
        if let Some(store) = self.store.get() {
            return Ok(store.as_ref());
        }
        let opened = backend::open(&self.site)?;
        Ok(self.store.get_or_init(|| opened).as_ref())
    }
}
