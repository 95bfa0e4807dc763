//! Signals: a host's persistent classes with a time to live, kept durably in the state
//! dir; the peer service that serves them to admitted peers, with its access rules and
//! request authentication; and the `baton-signal` and `baton-serve` command lines.
//!
//! Only this crate knows the layout of `STATE_DIR/signals/` and of the signals in etcd.

pub mod access;
pub mod auth;
pub mod backend;
pub mod cli;
pub mod etcd;
pub mod http;
pub mod serve;
pub mod serve_cli;
pub mod store;

pub use backend::Backend;
pub use store::{Listing, Policy, Signal, Store, DEFAULT_TTL};

use baton_core::cli::Site;
use chrono::{DateTime, Utc};

/// The names of this host's live signals: the `LiveSignals` source of `baton-classes` and
/// `baton-if`. Unreadable records are warned about on stderr and left out.
pub fn live_class_names(site: &Site, now: DateTime<Utc>) -> baton_core::Result<Vec<String>> {
    let listing = Backend::open(site)?.live(now)?;
    warn(&listing.problems);
    Ok(listing.signals.into_iter().map(|s| s.name).collect())
}

/// Whether `name` is a live signal of this host: one record read. A name that cannot be
/// a signal (too long for a file name) is simply not one.
pub fn is_live_signal(site: &Site, now: DateTime<Utc>, name: &str) -> baton_core::Result<bool> {
    if store::validate_signal_name(name).is_err() {
        return Ok(false);
    }
    Ok(Backend::open(site)?.get(name, now)?.is_some())
}

/// Print each problem as a warning line on stderr.
pub fn warn(problems: &[String]) {
    use std::io::Write;
    let mut err = std::io::stderr().lock();
    for p in problems {
        let _ = writeln!(err, "baton: warning: {p}");
    }
}
