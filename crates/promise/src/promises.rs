//! The two promise types. A promise's attributes are the options of the Baton binary it
//! stands for, written with `_` for `-` (`state_dir => "/var/lib/baton"` is
//! `--state-dir /var/lib/baton`; a list gives the option once per item), parsed by the
//! same clap definitions, so the promise types take exactly the options the binaries do.
//!
//! ```cf3
//! baton_signal:
//!   "did_my_job" ttl => "10m";                       # raised: kept while live
//!   "maintenance" state => "cleared";
//! baton_query:
//!   "did.*" hosts => { "host1", "cfengine://host9" }, prefix => "hostX";
//! ```

use baton_core::cli::SiteArgs;
use baton_core::error::EXIT_ERROR;
use baton_core::{name, Duration};
use baton_query::cli::{answer, QueryCli};
use baton_store::{Context, Policy};
use clap::Parser;
use serde_json::{Map, Value};

/// What evaluating a promise came to, in the protocol's words.
pub struct Outcome {
    /// `kept`, `repaired` or `not_kept`.
    pub result: &'static str,
    pub classes: Vec<String>,
    /// (level, message) pairs for the agent's log.
    pub logs: Vec<(&'static str, String)>,
}

impl Outcome {
    fn of(result: &'static str, level: &'static str, message: String) -> Outcome {
        Outcome {
            result,
            classes: Vec::new(),
            logs: vec![(level, message)],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum State {
    Raised,
    Cleared,
}

/// A `baton_signal` promise: the signal NAME of this host, raised or cleared.
#[derive(Parser, Debug)]
#[command(name = "baton_signal")]
struct SignalPromise {
    #[command(flatten)]
    site: SiteArgs,

    /// raised (kept while live, else raised) or cleared
    #[arg(long, value_enum, default_value_t = State::Raised)]
    state: State,

    /// Time to live of a raised signal
    #[arg(long, default_value = "10m")]
    ttl: Duration,

    /// What raising does to a live signal (only `baton-signal raise` re-raises one)
    #[arg(long, value_enum, default_value_t = Policy::Reset)]
    policy: Policy,

    name: String,
}

/// Attributes that take no value: `"true"` gives the flag, `"false"` leaves it out.
const FLAGS: &[&str] = &["tls"];

/// The command line an attribute list stands for.
fn argv(bin: &str, attributes: &Map<String, Value>, skip: &[&str]) -> Result<Vec<String>, String> {
    let mut args = vec![bin.to_string()];
    for (key, value) in attributes {
        if skip.contains(&key.as_str()) {
            continue;
        }
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
            return Err(format!("unknown attribute '{key}'"));
        }
        let flag = format!("--{}", key.replace('_', "-"));
        match value {
            Value::String(s) if FLAGS.contains(&key.as_str()) => match s.as_str() {
                "true" => args.push(flag),
                "false" => {}
                _ => return Err(format!("attribute {key} must be \"true\" or \"false\"")),
            },
            Value::String(s) => args.extend([flag, s.clone()]),
            Value::Array(items) => {
                for item in items {
                    let Value::String(s) = item else {
                        return Err(format!("attribute {key} must be a list of strings"));
                    };
                    args.extend([flag.clone(), s.clone()]);
                }
            }
            _ => return Err(format!("attribute {key} must be a string or a list")),
        }
    }
    Ok(args)
}

/// clap's first line, with options said as attributes.
fn clap_reason(e: clap::Error) -> String {
    let text = e.to_string();
    let first = text.lines().next().unwrap_or("").trim();
    let first = first.strip_prefix("error: ").unwrap_or(first);
    let mut out = String::new();
    let mut rest = first;
    while let Some(i) = rest.find("--") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let end = after
            .find(|c: char| !(c.is_ascii_lowercase() || c == '-'))
            .unwrap_or(after.len());
        out.push_str(&after[..end].replace('-', "_"));
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

fn parse_signal(promiser: &str, attributes: &Map<String, Value>) -> Result<SignalPromise, String> {
    let mut args = argv("baton_signal", attributes, &[])?;
    args.extend(["--".to_string(), promiser.to_string()]);
    let p = SignalPromise::try_parse_from(args).map_err(clap_reason)?;
    baton_store::store::validate_signal_name(&p.name).map_err(|e| e.message)?;
    Ok(p)
}

fn parse_query(regex: &str, attributes: &Map<String, Value>) -> Result<QueryCli, String> {
    for key in ["json", "format"] {
        if attributes.contains_key(key) {
            return Err(format!(
                "attribute {key} does not apply: baton_query defines classes"
            ));
        }
    }
    let Some(hosts) = attributes.get("hosts") else {
        return Err("baton_query needs hosts => { \"HOST\", ... }".into());
    };
    let hosts: Vec<String> = match hosts {
        Value::String(h) => vec![h.clone()],
        Value::Array(items) => items
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<_>>()
            .ok_or("attribute hosts must be a list of strings")?,
        _ => return Err("attribute hosts must be a list of strings".into()),
    };
    let mut args = argv("baton_query", attributes, &["hosts"])?;
    args.push("--".into());
    args.extend(hosts);
    args.push(regex.to_string());
    let cli = QueryCli::try_parse_from(args).map_err(clap_reason)?;
    name::whole_name_regex(regex).map_err(|e| e.message)?;
    Ok(cli)
}

/// Whether the promise is well formed; the reason when it is not.
pub fn validate(
    promise_type: &str,
    promiser: &str,
    attributes: &Map<String, Value>,
) -> Result<(), String> {
    let checked = match promise_type {
        "baton_signal" => parse_signal(promiser, attributes).map(|_| ()),
        "baton_query" => parse_query(promiser, attributes).map(|_| ()),
        other => Err(format!(
            "baton-promise handles baton_signal and baton_query, not {other}"
        )),
    };
    checked.map_err(|why| format!("{promise_type} '{promiser}': {why}"))
}

/// Keep the promise.
pub fn evaluate(promise_type: &str, promiser: &str, attributes: &Map<String, Value>) -> Outcome {
    let outcome = match promise_type {
        "baton_signal" => parse_signal(promiser, attributes).and_then(evaluate_signal),
        "baton_query" => parse_query(promiser, attributes).and_then(|q| evaluate_query(&q)),
        _ => Err("not a promise type of baton-promise".into()),
    };
    outcome.unwrap_or_else(|why| {
        Outcome::of(
            "not_kept",
            "error",
            format!("{promise_type} '{promiser}': {why}"),
        )
    })
}

fn evaluate_signal(p: SignalPromise) -> Result<Outcome, String> {
    let ctx = Context::resolve(&p.site).map_err(|e| e.message)?;
    let store = ctx.store().map_err(|e| e.message)?;
    let live = store.get(&p.name, ctx.now).map_err(|e| e.message)?;
    let name = &p.name;
    Ok(match (p.state, live) {
        (State::Raised, Some(s)) => Outcome::of(
            "kept",
            "verbose",
            format!("signal {name} is live until {}", s.expires_at.to_rfc3339()),
        ),
        (State::Raised, None) => {
            store
                .raise(name, ctx.now, p.ttl, p.policy, None)
                .map_err(|e| e.message)?;
            Outcome::of(
                "repaired",
                "info",
                format!("raised signal {name} for {}", p.ttl),
            )
        }
        (State::Cleared, Some(_)) => {
            store.clear(name, ctx.now).map_err(|e| e.message)?;
            Outcome::of("repaired", "info", format!("cleared signal {name}"))
        }
        (State::Cleared, None) => {
            Outcome::of("kept", "verbose", format!("signal {name} is not live"))
        }
    })
}

fn evaluate_query(cli: &QueryCli) -> Result<Outcome, String> {
    let a = answer(cli).map_err(|e| e.message)?;
    let mut logs: Vec<(&'static str, String)> = a
        .failures
        .iter()
        .map(|f| ("error", format!("baton_query: {f}")))
        .collect();
    let result = if a.status == EXIT_ERROR {
        "not_kept"
    } else {
        logs.push((
            "verbose",
            format!("baton_query: {} classes defined", a.classes.len()),
        ));
        "kept"
    };
    Ok(Outcome {
        result,
        classes: a.classes,
        logs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn attrs(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn attributes_are_the_binaries_options() {
        let a = attrs(json!({"state_dir": "/tmp/x", "ttl": "5m", "state": "cleared"}));
        let p = parse_signal("did_my_job", &a).unwrap();
        assert_eq!(p.state, State::Cleared);
        assert_eq!(p.site.state_dir.unwrap().to_str(), Some("/tmp/x"));
        let a = attrs(json!({"hosts": ["h1", "cfengine://h2"], "prefix": "hostX", "tls": "true"}));
        let q = parse_query("did.*", &a).unwrap();
        assert_eq!(q.hosts, ["h1", "cfengine://h2"]);
        assert!(q.tls);
    }

    #[test]
    fn bad_promises_say_why_in_attribute_words() {
        let why = parse_signal("did_my_job", &attrs(json!({"colour": "red"})))
            .err()
            .unwrap();
        assert!(why.contains("colour") && !why.contains("--"), "{why}");
        let why = parse_signal("did_my_job", &attrs(json!({"state": "maybe"})))
            .err()
            .unwrap();
        assert!(why.contains("maybe"), "{why}");
        assert!(parse_signal("bad name", &Map::new()).is_err());
        assert!(parse_signal("did", &attrs(json!({"ttl": 5}))).is_err());
        assert!(parse_query("did.*", &Map::new())
            .err()
            .unwrap()
            .contains("hosts"));
        assert!(parse_query("did.*", &attrs(json!({"hosts": ["h"], "json": "true"}))).is_err());
        assert!(parse_query("(", &attrs(json!({"hosts": ["h"]}))).is_err());
        assert!(validate("files", "x", &Map::new()).is_err());
    }
}
