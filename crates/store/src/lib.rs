//! The signal store: a host's signals (persistent classes with a time to live) and its
//! once-per ledger, kept in the state dir or in etcd behind one trait, [`SignalStore`];
//! the per-invocation [`Context`] that opens it once; and the `baton-signal` command line.
//!
//! It is not the peer service (`baton-serve`) nor its protocol: nothing here listens on
//! a socket. Only this crate knows the layout of `STATE_DIR/signals/`,
//! `STATE_DIR/once-per/` and of the signals in etcd.

pub mod backend;
pub mod cli;
pub mod context;
pub mod etcd;
pub mod store;

pub use backend::{open, SignalStore};
pub use context::Context;
pub use store::{FileStore, Listing, Policy, Signal, DEFAULT_TTL};

use chrono::{DateTime, Utc};

/// The names of this host's live signals: the `LiveSignals` source of `baton-classes` and
/// `baton-if`. Unreadable records are warned about on stderr and left out.
pub fn live_class_names(ctx: &Context, now: DateTime<Utc>) -> baton_core::Result<Vec<String>> {
    let listing = ctx.store()?.live(now, None)?;
    warn(&listing.problems);
    Ok(listing.signals.into_iter().map(|s| s.name).collect())
}

/// Whether `name` is a live signal of this host: one record read. A name that cannot be
/// a signal (too long for a file name) is simply not one.
pub fn is_live_signal(ctx: &Context, now: DateTime<Utc>, name: &str) -> baton_core::Result<bool> {
    if store::validate_signal_name(name).is_err() {
        return Ok(false);
    }
    Ok(ctx.store()?.get(name, now)?.is_some())
}

/// Print each problem as a warning line on stderr.
pub fn warn(problems: &[String]) {
    use std::io::Write;
    let mut err = std::io::stderr().lock();
    for p in problems {
        let _ = writeln!(err, "baton: warning: {p}");
    }
}
