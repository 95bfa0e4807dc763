//! The command line of `baton-query`.

use crate::cfengine::{self, CfClient};
use crate::client::{ask_each, Client, Peers, Target};
use crate::tls;
use baton_core::clock::{self, format_time, parse_time, Deadline};
use baton_core::error::{
    finish, parse_args, stdout_error, ExitStatus, EXIT_ERROR, EXIT_FALSE, EXIT_TRUE,
};
use baton_core::{name, Clock, Duration, Error, Result};
use baton_proto::{PeerSignal, SignalsReply};
use baton_store::SignalStore;
use chrono::{DateTime, Utc};
use clap::Parser;
use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// Ask peers for their live signals whose whole name matches REGEX.
///
/// Prints PREFIX_NAME (or NAME without --prefix) for each matching signal, one per line,
/// to feed `baton-if --stdin`. Exit 0 if enough hosts matched (--min, default 1); 1 if
/// not; 2 if the answer depends on a host that could not be asked (down, timed out,
/// denied, bad key, TLS failure), each named on stderr.
#[derive(Parser, Debug)]
#[command(name = "baton-query", version)]
pub struct QueryCli {
    /// Prefix each class with P_ ('{host}' is each host's canonified name)
    #[arg(long, value_name = "P")]
    pub prefix: Option<String>,

    /// Print a JSON array of {host, class, name, set_at, expires_at, run}
    #[arg(long)]
    pub json: bool,

    /// Print each match with TEMPLATE: {class} {name} {host} {set_at} {expires_at} {run}
    #[arg(long, value_name = "TEMPLATE", conflicts_with = "json")]
    pub format: Option<String>,

    /// Give up on a host after DUR
    #[arg(long, value_name = "DUR", default_value = "10s")]
    pub timeout: Duration,

    /// Ask again until enough hosts match or DUR has passed
    #[arg(long, value_name = "DUR")]
    pub wait: Option<Duration>,

    /// With --wait: pause between rounds (doubling, up to 4x, while hosts fail)
    #[arg(long, value_name = "DUR", default_value = "5s", requires = "wait")]
    pub interval: Duration,

    /// Succeed only when at least N hosts have a matching signal (k of n)
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub min: usize,

    /// Only signals set less than DUR ago (by the peer's own clock, so skew cannot fool it)
    #[arg(long, value_name = "DUR")]
    pub newer_than: Option<Duration>,

    /// Only signals set at or after TIME
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,

    /// Present this host's identity (mutual TLS): DIR/ID.key as baton-key new writes it,
    /// with DIR/ID.crt beside it. Implies --tls; needs --pin or --ca
    #[arg(long, value_name = "FILE", env = "BATON_KEY")]
    pub key: Option<PathBuf>,

    /// Use HTTPS for hosts given without a scheme
    #[arg(long, env = "BATON_TLS")]
    pub tls: bool,

    /// Trust servers whose certificate this PEM CA signed (host names are checked)
    #[arg(long, value_name = "FILE", env = "BATON_CA", conflicts_with = "pin")]
    pub ca: Option<PathBuf>,

    /// Trust only the server certificates with these SHA-256 fingerprints (comma-separated;
    /// baton-key show CERT prints one)
    #[arg(long, value_name = "SHA256[,SHA256...]", env = "BATON_PIN")]
    pub pin: Option<String>,

    /// Peers file: 'NAME ADDRESS[:PORT]' per line, so crontab lines can name hosts
    /// (host1) while the file says where they listen
    #[arg(long, value_name = "FILE", env = "BATON_PEERS")]
    pub peers: Option<PathBuf>,

    /// Act as if it were TIME (signing and --since)
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,

    /// Read the hosts' signals from etcd instead of asking their baton-serve:
    /// etcd://HOST:PORT[,HOST:PORT...] (HOSTs are then the names the hosts raise under)
    #[arg(long, value_name = "URL", env = "BATON_STORE")]
    pub store: Option<String>,

    /// For cfengine:// hosts: the CFEngine work dir holding this host's key pair and the
    /// keys it trusts (ppkeys/)
    #[arg(long, value_name = "DIR", env = "BATON_CFENGINE_WORKDIR", default_value = cfengine::keys::DEFAULT_WORKDIR)]
    pub cfengine_workdir: PathBuf,

    /// The hosts to ask: names (looked up in --peers), addresses, or URLs
    /// (cfengine://HOST[:PORT] asks a CFEngine host's cf-serverd for persistent classes)
    #[arg(value_name = "HOST[:PORT]", num_args = 1.., required = true)]
    pub hosts: Vec<String>,

    /// The pattern a signal's whole name must match
    #[arg(value_name = "REGEX", required = true)]
    pub regex: String,
}

pub fn baton_query(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    const BIN: &str = "baton-query";
    match parse_args::<QueryCli>(BIN, args) {
        Ok(cli) => finish(BIN, run(cli)),
        Err(code) => code,
    }
}

/// A match ready to print.
struct Found {
    target: Target,
    class: String,
    signal: PeerSignal,
    /// False for CFEngine hosts, which tell no times.
    timed: bool,
}

/// A host to ask and how: Baton's peer protocol (or a shared store), or a CFEngine
/// host's cf-serverd.
struct Asked {
    target: Target,
    cfengine: bool,
}

impl Asked {
    fn label(&self, store: bool) -> String {
        match (self.cfengine, store, &self.target.name) {
            (true, _, _) => {
                let url = format!("{}{}", cfengine::SCHEME, self.target.label());
                match self.target.written == url {
                    true => url,
                    false => format!("{} ({url})", self.target.written),
                }
            }
            (false, true, Some(name)) => name.clone(),
            (false, true, None) => self.target.host.clone(),
            (false, false, _) => self.target.describe(),
        }
    }
}

/// CFEngine hosts tell class names only: refuse what needs a time, before asking.
fn check_cfengine_options(cli: &QueryCli, pattern: &str) -> Result<()> {
    let timed = cli.newer_than.is_some()
        || cli.since.is_some()
        || cli
            .format
            .as_deref()
            .is_some_and(|f| f.contains("{set_at}") || f.contains("{expires_at}"));
    if timed {
        return Err(Error::new(
            "cfengine:// hosts tell no times: drop --newer-than, --since and {set_at}/{expires_at} \
             (ask those hosts in a baton-query of their own)",
        ));
    }
    cfengine::check_pattern(pattern)
}

/// What the hosts answered, for a caller that defines classes instead of printing
/// (baton-promise's `baton_query:`).
pub struct Answer {
    /// The classes baton-query would print, sorted.
    pub classes: Vec<String>,
    /// The exit status baton-query would give.
    pub status: ExitStatus,
    /// `cannot ask HOST: why`, one per host that could not be asked.
    pub failures: Vec<String>,
    /// What a peer sent that was not a signal name, escaped (ignored).
    pub warnings: Vec<String>,
}

/// Ask as `cli` says, printing nothing.
pub fn answer(cli: &QueryCli) -> Result<Answer> {
    let (found, hosts_matched, failures, warnings) = gather(cli)?;
    let mut classes: Vec<String> = found.into_iter().map(|f| f.class).collect();
    classes.sort_unstable();
    classes.dedup();
    Ok(Answer {
        classes,
        status: verdict(hosts_matched, failures.len(), cli.min),
        failures,
        warnings,
    })
}

fn run(cli: QueryCli) -> Result<ExitStatus> {
    let (found, hosts_matched, failures, warnings) = gather(&cli)?;
    print(&cli, &found)?;
    let mut err = std::io::stderr().lock();
    for w in &warnings {
        let _ = writeln!(err, "baton-query: {w}");
    }
    for f in &failures {
        let _ = writeln!(err, "baton-query: {f}");
    }
    Ok(verdict(hosts_matched, failures.len(), cli.min))
}

/// Ask every host (again, with --wait) until enough matched or the wait is over: the
/// matches, how many hosts matched, and why each failed host could not be asked.
/// Also what peers sent that was not a signal name.
#[allow(clippy::type_complexity)]
fn gather(cli: &QueryCli) -> Result<(Vec<Found>, usize, Vec<String>, Vec<String>)> {
    let (hosts, pattern) = (&cli.hosts, &cli.regex);
    // The server matches too; checking here as well keeps a wrong server honest.
    let matcher = name::whole_name_regex(pattern)?;
    let key = cli.key.as_deref().filter(|k| !k.as_os_str().is_empty());
    let https = cli.tls || cli.ca.is_some() || cli.pin.is_some() || key.is_some();
    let peers = match &cli.peers {
        Some(path) => Peers::load(path)?,
        None => Peers::default(),
    };
    let targets = hosts
        .iter()
        .map(
            |h| match cfengine::parse_target(peers.address(h).unwrap_or(h)) {
                Some(t) => t.map(|mut target| {
                    // A name from the peers file is the host's name for {host}.
                    target.name = peers.address(h).map(|_| h.to_string());
                    target.written = h.to_string();
                    Asked {
                        target,
                        cfengine: true,
                    }
                }),
                None => peers.target(h, https).map(|target| Asked {
                    target,
                    cfengine: false,
                }),
            },
        )
        .collect::<Result<Vec<_>>>()?;
    let any_cfengine = targets.iter().any(|t| t.cfengine);
    if any_cfengine {
        check_cfengine_options(cli, pattern)?;
    }
    if let Some(p) = &cli.prefix {
        let probe = p.replace("{host}", "h");
        name::validate(&probe).map_err(|e| e.context("--prefix"))?;
        if p.contains("{host}") {
            check_hosts(&targets.iter().map(|t| &t.target).collect::<Vec<_>>())?;
        }
    }
    if cli.min == 0 || cli.min > targets.len() {
        return Err(Error::new(format!(
            "--min must be 1 to {} (the number of hosts)",
            targets.len()
        )));
    }
    if cli.timeout == Duration::ZERO || cli.interval == Duration::ZERO {
        return Err(Error::new(
            "--timeout and --interval must be longer than 0s",
        ));
    }
    let since = cli
        .since
        .as_deref()
        .map(parse_time)
        .transpose()
        .map_err(|e| e.context("--since"))?;
    let identity = key
        .map(baton_identity::Identity::load)
        .transpose()
        .map_err(|e| e.context("--key"))?;
    let tls = match (&cli.ca, &cli.pin) {
        (Some(ca), _) => Some(tls::private_ca(ca, identity)?),
        (None, Some(pin)) => Some(tls::pinned(tls::parse_pins(pin)?, identity)?),
        (None, None) if identity.is_some() => {
            return Err(Error::new(
                "--key needs the server's identity too: --pin SHA256 (baton-key show SERVER.crt prints it) or --ca FILE",
            ))
        }
        _ => None,
    };
    let clock = Clock::resolve(cli.at.as_deref())?;
    let client = Client::new(tls, cli.timeout.std());
    let etcd = match cli.store.as_deref().filter(|s| !s.is_empty()) {
        Some(url) if targets.iter().any(|t| !t.cfengine) => Some(
            baton_store::backend::open_shared(url, "", cli.timeout.std())?,
        ),
        _ => None,
    };
    let cf = match any_cfengine {
        true => Some(CfClient::new(&cli.cfengine_workdir, cli.timeout.std())?),
        false => None,
    };

    let deadline = cli
        .wait
        .map(|w| Deadline::after(&clock, w.std()))
        .transpose()?;
    let mut pause = cli.interval.std();
    let (found, hosts_matched, failures, warnings) = loop {
        let now = clock.now()?;
        let mut warnings = Vec::new();
        let answers = ask_each(&targets, |t| match (&cf, &etcd) {
            (Some(cf), _) if t.cfengine => ask_cfengine(cf, &t.target, pattern, now),
            (_, Some(store)) => ask_store(store.as_ref(), &t.target, now, &clock),
            _ => client.ask(&t.target, pattern),
        });
        let mut found = Vec::new();
        let mut failures = Vec::new();
        let mut hosts_matched = 0;
        for (asked, answer) in targets.iter().zip(answers) {
            let target = &asked.target;
            match answer {
                Ok(reply) => {
                    let before = found.len();
                    for signal in reply.signals {
                        // A peer's answer is untrusted input: a name that is not a class
                        // name (a space, a `;`, a newline that would inject a class into
                        // `baton-if --stdin`) is reported, never printed.
                        if baton_store::store::validate_signal_name(&signal.name).is_err() {
                            let label = asked.label(etcd.is_some());
                            warnings.push(format!(
                                "{label} sent '{}', which is not a signal name (letters, digits and _, 1 to {} characters): ignored",
                                printable(&signal.name),
                                baton_store::store::MAX_SIGNAL_NAME
                            ));
                            continue;
                        }
                        if fresh(&signal, reply.now, cli.newer_than, since)
                            && matcher.is_match(&signal.name)
                        {
                            found.push(Found {
                                target: target.clone(),
                                class: class_of(&cli.prefix, target, &signal.name),
                                signal,
                                timed: !asked.cfengine,
                            });
                        }
                    }
                    hosts_matched += usize::from(found.len() > before);
                }
                Err(why) => {
                    let label = asked.label(etcd.is_some());
                    let hint = match (&etcd, &target.name, &cli.peers) {
                        (None, None, Some(path)) if why.contains("resolve") => {
                            format!(" (and it is not in the peers file {})", path.display())
                        }
                        (None, None, None) if why.contains("resolve") => {
                            " (no peers file: give --peers FILE or set BATON_PEERS)".into()
                        }
                        _ => String::new(),
                    };
                    failures.push(format!("cannot ask {label}: {why}{hint}"))
                }
            }
        }
        let done = hosts_matched >= cli.min;
        match &deadline {
            Some(d) if !done && !d.passed(&clock)? => {
                let pause_now = pause.min(d.remaining());
                match (&etcd, &clock) {
                    // On etcd with the real clock, wake when a signal is written.
                    (Some(etcd), Clock::System) => {
                        if !etcd.watch(pause_now).unwrap_or(false) {
                            clock.sleep(pause_now)?;
                        }
                    }
                    _ => clock.sleep(pause_now)?,
                }
                if !failures.is_empty() {
                    pause = (pause * 2).min(cli.interval.std() * 4);
                }
            }
            _ => break (found, hosts_matched, failures, warnings),
        }
    };
    Ok((found, hosts_matched, failures, warnings))
}

/// A host's live signals straight from a shared store, as a peer's answer would carry
/// them, with the holder's clock as its `now` (the caller filters by pattern). An
/// unreachable store is every host's failure.
fn ask_store(
    store: &dyn SignalStore,
    t: &Target,
    now: DateTime<Utc>,
    clock: &Clock,
) -> std::result::Result<SignalsReply, String> {
    let host = t.name.clone().unwrap_or_else(|| t.host.clone());
    // The holder's clock, as baton-serve would answer with it. etcd's leases count real
    // time, which a simulated clock (--at, BATON_NOW) does not follow: that clock then
    // stands for every host's.
    let now = match clock {
        Clock::System => store.clock_of(&host, now).map_err(|e| e.message)?,
        _ => now,
    };
    let listing = store.live_of(&host, now, None).map_err(|e| e.message)?;
    Ok(SignalsReply {
        version: baton_proto::API_VERSION,
        host,
        now,
        signals: listing.signals.iter().map(PeerSignal::from).collect(),
    })
}

/// A CFEngine host's matching persistent classes, as a reply without times (the times
/// are never printed: see `Found::timed`).
fn ask_cfengine(
    cf: &CfClient,
    t: &Target,
    pattern: &str,
    now: DateTime<Utc>,
) -> std::result::Result<SignalsReply, String> {
    let host = t.label();
    let signals = cf
        .ask(t, pattern)?
        .into_iter()
        .filter(|name| name::validate(name).is_ok())
        .map(|name| PeerSignal {
            name,
            host: host.clone(),
            set_at: now,
            expires_at: now,
            run: None,
        })
        .collect();
    Ok(SignalsReply {
        version: baton_proto::API_VERSION,
        host,
        now,
        signals,
    })
}

/// Three-valued, as a sysadmin reads it: yes when enough hosts matched whatever the
/// unreachable ones would say; no when even they could not make up the number; otherwise
/// the answer is unknown, which is an error (2), never a "no".
fn verdict(matched: usize, unreachable: usize, min: usize) -> ExitStatus {
    if matched >= min {
        EXIT_TRUE
    } else if matched + unreachable >= min {
        EXIT_ERROR
    } else {
        EXIT_FALSE
    }
}

/// The one freshness judgement of a live signal, on every path (a peer's answer, a shared
/// store): by the clock of whoever holds it, `holder_now`, which judged it live by the
/// same rule (`clock::live`; docs/time.md).
fn fresh(
    s: &PeerSignal,
    holder_now: DateTime<Utc>,
    newer_than: Option<Duration>,
    since: Option<DateTime<Utc>>,
) -> bool {
    clock::fresh(s.set_at, holder_now, newer_than, since)
}

/// CFEngine joins prefix and name with `_`.
fn class_of(prefix: &Option<String>, target: &Target, name: &str) -> String {
    match prefix {
        Some(p) => format!("{}_{name}", p.replace("{host}", &host_part(target))),
        None => name.to_string(),
    }
}

/// What `{host}` stands for in `--prefix`, so that no two (host, name) pairs make the same
/// class: a host named by letters and digits only is itself (`Host2` gives
/// `Host2_did_my_job`: the first `_` ends it); any other host is `_`, the length of its
/// canonified name, `_`, and that name (`web-1` gives `_5_web_1_did_my_job`, which host
/// `web` serving `1_did_my_job` cannot make: its class starts with a letter). Hosts whose
/// canonified names are equal (`web-1`, `web.1`) are refused together ([`check_hosts`]).
fn host_part(target: &Target) -> String {
    let canon = target.class_name();
    if canon.bytes().all(|b| b.is_ascii_alphanumeric()) {
        canon
    } else {
        format!("_{}_{canon}", canon.len())
    }
}

/// With `{host}` in the prefix, two hosts asked together must not share a `{host}`.
fn check_hosts(targets: &[&Target]) -> Result<()> {
    let mut seen: std::collections::BTreeMap<String, String> = Default::default();
    for t in targets {
        let as_given = t.name.clone().unwrap_or_else(|| t.host.clone());
        match seen.insert(host_part(t), as_given.clone()) {
            Some(other) if other != as_given => {
                return Err(Error::new(format!(
                    "--prefix '{{host}}': hosts '{other}' and '{as_given}' would make the same classes ({}): name them apart in a peers file (--peers)",
                    host_part(t)
                )))
            }
            _ => {}
        }
    }
    Ok(())
}

/// `text` safe for a terminal and for one line of output: a backslash, a control
/// character or any character beyond printable ASCII is written as a Rust escape
/// (`\\`, `\n`, `\u{1b}`), so a peer's `{run}` cannot split a line or drive the terminal.
fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            ' '..='~' if c != '\\' => out.push(c),
            _ => out.extend(c.escape_default()),
        }
    }
    out
}

fn print(cli: &QueryCli, found: &[Found]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    if cli.json {
        let items: Vec<_> = found
            .iter()
            .map(|f| {
                let time = |t| f.timed.then(|| format_time(t));
                serde_json::json!({
                    "host": f.target.label(),
                    "class": f.class,
                    "name": f.signal.name,
                    "set_at": time(f.signal.set_at),
                    "expires_at": time(f.signal.expires_at),
                    "run": f.signal.run,
                })
            })
            .collect();
        writeln!(out, "{}", serde_json::Value::Array(items)).map_err(stdout_error)?;
    } else if let Some(template) = &cli.format {
        for f in found {
            // Every field is escaped: the peer chose `{run}`, and may hold anything.
            let line = template
                .replace("{class}", &printable(&f.class))
                .replace("{name}", &printable(&f.signal.name))
                .replace("{host}", &printable(&f.target.label()))
                .replace("{set_at}", &format_time(f.signal.set_at))
                .replace("{expires_at}", &format_time(f.signal.expires_at))
                .replace("{run}", &printable(f.signal.run.as_deref().unwrap_or("")));
            writeln!(out, "{line}").map_err(stdout_error)?;
        }
    } else {
        let mut classes: Vec<&str> = found.iter().map(|f| f.class.as_str()).collect();
        classes.sort_unstable();
        classes.dedup();
        for c in classes {
            writeln!(out, "{c}").map_err(stdout_error)?;
        }
    }
    out.flush().map_err(stdout_error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        QueryCli::command().debug_assert();
    }

    #[test]
    fn verdicts_are_three_valued() {
        assert_eq!(verdict(1, 2, 1), EXIT_TRUE, "OR: one yes is enough");
        assert_eq!(verdict(0, 1, 1), EXIT_ERROR, "OR: unknown");
        assert_eq!(verdict(0, 0, 1), EXIT_FALSE);
        assert_eq!(verdict(2, 1, 3), EXIT_ERROR, "AND: unknown");
        assert_eq!(
            verdict(1, 1, 3),
            EXIT_FALSE,
            "AND: no, whatever the unreachable host says"
        );
        assert_eq!(verdict(2, 1, 2), EXIT_TRUE, "2 of 3 with one down");
    }

    #[test]
    fn prefixes_join_with_underscore() {
        let t = Target::parse("host-1.example:7401", false).unwrap();
        assert_eq!(
            class_of(&Some("hostX".into()), &t, "did_my_job"),
            "hostX_did_my_job"
        );
        assert_eq!(
            class_of(&Some("{host}".into()), &t, "did"),
            "_14_host_1_example_did"
        );
        assert_eq!(class_of(&None, &t, "did"), "did");
        let named = Target::parse("Host2:7401", false).unwrap();
        assert_eq!(
            class_of(&Some("{host}".into()), &named, "did_my_job"),
            "Host2_did_my_job",
            "a host of letters and digits stands for itself"
        );
    }

    /// Host `web` serving `1_did_my_job` must not pass for host `web-1`'s `did_my_job`.
    #[test]
    fn host_prefixes_are_unambiguous() {
        let host = |h: &str| Target::parse(&format!("{h}:7401"), false).unwrap();
        let p = Some("{host}".to_string());
        let web = class_of(&p, &host("web"), "1_did_my_job");
        let web_1 = class_of(&p, &host("web-1"), "did_my_job");
        assert_eq!(web, "web_1_did_my_job");
        assert_eq!(web_1, "_5_web_1_did_my_job");
        assert_ne!(web, web_1);
        let (a, b) = (host("web-1"), host("web.1"));
        assert!(check_hosts(&[&a, &b])
            .unwrap_err()
            .message
            .contains("name them apart"));
        assert!(check_hosts(&[&a, &host("web"), &a]).is_ok());
    }

    #[test]
    fn format_fields_are_escaped() {
        assert_eq!(printable("20120124T164500Z-42"), "20120124T164500Z-42");
        assert_eq!(
            printable("a\nb\\c\u{1b}[2J\u{202e}"),
            "a\\nb\\\\c\\u{1b}[2J\\u{202e}"
        );
    }
}
