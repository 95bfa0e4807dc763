//! Classes: the host's hard classes (time and host), CFEngine's `canonify`, and the class
//! expression language, with the CLIs of `baton-classes` and `baton-if`.
//!
//! It knows nothing of the state dir's layout: its command lines read live signals
//! through `baton-store`'s `SignalStore`, and the library only through a lookup function.

pub mod cli;
pub mod expr;
pub mod host;
pub mod time;

pub use expr::Expr;

use baton_core::{Error, Result};
use chrono::{DateTime, Utc};
use std::cell::{OnceCell, RefCell};
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
        let facts = host::HostFacts {
            fqdn: host::resolve_fqdn(host),
            ..host::HostFacts::gather(host)
        };
        set.extend(host::host_classes(&facts), Source::Host);
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

/// Whether a name is a live signal (the store, asked lazily).
pub type IsSignal<'a> = dyn Fn(&str) -> Result<bool> + 'a;

/// The classes an expression is evaluated against, read only as far as it needs: time
/// and host-name classes (and `-D`, `--stdin`) are known at once; live signals and the
/// host's facts (OS, addresses: files under /proc, /sys, /etc) are read the first time
/// a name is asked that the known ones do not settle. A name shaped like a time class is
/// settled by the clock alone, as no host fact is named that way. So
/// `baton-if host1.Hr16.Min45_50` reads no file.
pub struct ClassLookup<'a> {
    known: ClassSet,
    /// `None` with `--only`: nothing beyond the known classes.
    host: Option<String>,
    is_signal: Box<IsSignal<'a>>,
    /// Names already asked of the store, and the answer.
    signals: RefCell<BTreeMap<String, bool>>,
    /// The classes of the resolver's FQDN for a short system host name.
    fqdn: OnceCell<Vec<String>>,
    facts: OnceCell<Vec<String>>,
    failure: RefCell<Option<Error>>,
}

impl<'a> ClassLookup<'a> {
    /// Time and host-name classes of `host` at `now`; `is_signal` says whether a name is
    /// a live signal, asked once per name and only when needed.
    pub fn new(host: &str, now: DateTime<Utc>, is_signal: Box<IsSignal<'a>>) -> ClassLookup<'a> {
        let mut known = ClassSet::default();
        known.extend(time::time_classes(now), Source::Time);
        known.extend(host::name_classes(host), Source::Host);
        ClassLookup {
            known,
            host: Some(host.to_string()),
            is_signal,
            signals: RefCell::new(BTreeMap::new()),
            fqdn: OnceCell::new(),
            facts: OnceCell::new(),
            failure: RefCell::new(None),
        }
    }

    /// Only the classes given (`--only`).
    pub fn only() -> ClassLookup<'a> {
        ClassLookup {
            known: ClassSet::default(),
            host: None,
            is_signal: Box::new(|_| Ok(false)),
            signals: RefCell::new(BTreeMap::new()),
            fqdn: OnceCell::new(),
            facts: OnceCell::new(),
            failure: RefCell::new(None),
        }
    }

    /// Define more classes (from `-D` or standard input).
    pub fn extend(&mut self, names: impl IntoIterator<Item = String>, source: Source) {
        self.known.extend(names, source);
    }

    /// Where `name` is defined from, or `None` if it is not.
    pub fn source(&self, name: &str) -> Result<Option<Source>> {
        if name == "any" {
            return Ok(Some(Source::Host));
        }
        if let Some(s) = self.known.source(name) {
            return Ok(Some(s));
        }
        // Host-name classes are lower case, as CFEngine's; the seed writes `Host1`, so they
        // match whatever the case (CFEngine itself would not match `Host1`).
        let lower = name.to_lowercase();
        if self.known.source(&lower) == Some(Source::Host) {
            return Ok(Some(Source::Host));
        }
        let Some(host) = &self.host else {
            return Ok(None);
        };
        let known = self.signals.borrow().get(name).copied();
        let live = match known {
            Some(answer) => answer,
            None => {
                let answer = (self.is_signal)(name)?;
                self.signals.borrow_mut().insert(name.to_string(), answer);
                answer
            }
        };
        if live {
            return Ok(Some(Source::Signal));
        }
        if time::is_time_class(name) {
            return Ok(None);
        }
        let fqdn = self.fqdn.get_or_init(|| {
            host::resolve_fqdn(host)
                .map(|f| host::name_classes(&f))
                .unwrap_or_default()
        });
        if fqdn.contains(&lower) {
            return Ok(Some(Source::Host));
        }
        let facts = self
            .facts
            .get_or_init(|| host::fact_classes(&host::HostFacts::gather(host)));
        Ok(facts.iter().any(|n| n == name).then_some(Source::Host))
    }

    /// Evaluate `expr`; an error reading signals stops with that error.
    pub fn eval(&self, expr: &Expr) -> Result<bool> {
        let holds = expr.eval(&|n| match self.source(n) {
            Ok(found) => found.is_some(),
            Err(e) => {
                self.failure.borrow_mut().get_or_insert(e);
                false
            }
        });
        match self.failure.borrow_mut().take() {
            Some(e) => Err(e),
            None => Ok(holds),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn at_1647() -> DateTime<Utc> {
        DateTime::from_timestamp(1_327_423_620, 0).unwrap()
    }

    #[test]
    fn signals_are_read_only_when_needed() {
        let loads = Cell::new(0);
        let lookup = ClassLookup::new(
            "host1",
            at_1647(),
            Box::new(|name| {
                loads.set(loads.get() + 1);
                Ok(name == "did_my_job")
            }),
        );
        let check = |text: &str| lookup.eval(&Expr::parse(text).unwrap()).unwrap();
        assert!(check("host1.Hr16.Min45_50"));
        assert!(check("Yr2012|Hr17"));
        assert_eq!(loads.get(), 0, "settled by time and name alone");
        assert!(check("host1.did_my_job"));
        assert!(check("did_my_job"));
        assert_eq!(loads.get(), 1, "each name asked once");
        assert!(!check("Hr17"));
        assert_eq!(loads.get(), 2);
        assert_eq!(lookup.source("did_my_job").unwrap(), Some(Source::Signal));
        assert_eq!(lookup.source("Hr16").unwrap(), Some(Source::Time));
        assert_eq!(lookup.source("any").unwrap(), Some(Source::Host));
    }

    #[test]
    fn a_signal_error_is_an_error_not_false() {
        let lookup = ClassLookup::new("h", at_1647(), Box::new(|_| Err(Error::new("cannot read"))));
        assert!(lookup.eval(&Expr::parse("h.Hr16").unwrap()).unwrap());
        assert_eq!(
            lookup
                .eval(&Expr::parse("h.x").unwrap())
                .unwrap_err()
                .message,
            "cannot read"
        );
    }

    #[test]
    fn host_names_match_whatever_the_case() {
        let lookup = ClassLookup::new("Host1.Example.org", at_1647(), Box::new(|_| Ok(false)));
        let check = |text: &str| lookup.eval(&Expr::parse(text).unwrap()).unwrap();
        assert!(check("host1.host1_example_org.example_org.org"));
        assert!(check("Host1.Day24.January.Year2012.Hr16.Min45_50"));
        assert!(check("HOST1_Example_org"));
        // Only host names: time classes keep their case, and -D classes are exact.
        assert!(!check("hr16"));
        let mut given = ClassLookup::only();
        given.extend(vec!["a".to_string()], Source::Defined);
        assert!(!given.eval(&Expr::parse("A").unwrap()).unwrap());
    }

    #[test]
    fn only_knows_what_it_is_given() {
        let mut lookup = ClassLookup::only();
        lookup.extend(vec!["a".to_string()], Source::Defined);
        assert!(lookup.eval(&Expr::parse("a.any").unwrap()).unwrap());
        assert!(!lookup.eval(&Expr::parse("linux").unwrap()).unwrap());
    }
}
