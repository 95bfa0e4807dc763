//! Classes: the host's hard classes (time and host), CFEngine's `canonify`, and the class
//! expression language, with the CLIs of `baton-classes` and `baton-if`.
//!
//! It knows nothing of the state dir's layout: live signals reach it through a
//! [`cli::LiveSignals`] function that `main` passes in.

pub mod cli;
pub mod expr;
pub mod host;
pub mod time;

pub use expr::Expr;

use chrono::{DateTime, Utc};
use std::collections::BTreeMap;

/// Where a class came from, for `baton-classes --json` and `baton-if --explain`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Source {
    Time,
    Host,
    Signal,
    Defined,
    Stdin,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Time => "time",
            Source::Host => "host",
            Source::Signal => "signal",
            Source::Defined => "defined",
            Source::Stdin => "stdin",
        }
    }
}

/// A set of defined classes, each with where it came from (the first source wins).
#[derive(Debug, Clone, Default)]
pub struct ClassSet {
    names: BTreeMap<String, Source>,
}

impl ClassSet {
    /// The hard classes of host `host` at `now`: time classes, then host classes.
    pub fn hard(host: &str, now: DateTime<Utc>) -> ClassSet {
        let mut set = ClassSet::default();
        set.extend(time::time_classes(now), Source::Time);
        set.extend(
            host::host_classes(&host::HostFacts::gather(host)),
            Source::Host,
        );
        set
    }

    pub fn extend(&mut self, names: impl IntoIterator<Item = String>, source: Source) {
        for name in names {
            self.names.entry(name).or_insert(source);
        }
    }

    pub fn contains(&self, name: &str) -> bool {
        self.names.contains_key(name)
    }

    pub fn source(&self, name: &str) -> Option<Source> {
        self.names.get(name).copied()
    }

    /// The classes in sorted order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, Source)> {
        self.names.iter().map(|(n, s)| (n.as_str(), *s))
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}
