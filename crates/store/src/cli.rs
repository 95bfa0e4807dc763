//! The command line of `baton-signal`.

use crate::context::Context;
use crate::store::{validate_signal_name, Policy, Signal, DEFAULT_TTL};
use baton_core::cli::SiteArgs;
use baton_core::error::{
    finish, found, parse_args, stdout_error, ExitStatus, EXIT_FALSE, EXIT_TRUE,
};
use baton_core::{name, Duration, Result};
use clap::{Parser, Subcommand};
use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;

/// Raise, clear and list this host's signals: persistent classes with a time to live.
#[derive(Parser, Debug)]
#[command(name = "baton-signal", version)]
pub struct SignalCli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Raise NAME for --ttl (default 10m); exit 0
    Raise {
        /// The signal (a class name: letters, digits, _)
        name: String,
        /// How long the signal stays live (90s, 5m, 2h, 1d; a bare number is minutes)
        #[arg(long, default_value_t = DEFAULT_TTL)]
        ttl: Duration,
        /// reset: raising again restarts the clock; preserve: keeps the first expiry
        #[arg(long, value_enum, default_value_t = Policy::Reset)]
        policy: Policy,
        /// Canonify NAME first (every character outside [A-Za-z0-9_] becomes _)
        #[arg(long)]
        canonify: bool,
        /// The run that raised it [default: $BATON_RUN, set by baton-run for its job]
        #[arg(long, value_name = "ID", env = "BATON_RUN")]
        run: Option<String>,
        #[command(flatten)]
        site: SiteArgs,
    },
    /// Clear NAME; exit 0 if it was live, 1 if not
    Clear {
        name: String,
        /// Canonify NAME first
        #[arg(long)]
        canonify: bool,
        #[command(flatten)]
        site: SiteArgs,
    },
    /// List live signals whose whole name matches REGEX: NAME SET_AT EXPIRES_AT per line;
    /// exit 0 if any, 1 if none
    List {
        /// Regular expression for the whole name [default: every signal]
        regex: Option<String>,
        /// Print a JSON array of records
        #[arg(long)]
        json: bool,
        /// Print the names only
        #[arg(long, conflicts_with = "json")]
        names: bool,
        #[command(flatten)]
        site: SiteArgs,
    },
}

pub fn baton_signal(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    const BIN: &str = "baton-signal";
    match parse_args::<SignalCli>(BIN, args) {
        Ok(cli) => finish(BIN, run(cli)),
        Err(code) => code,
    }
}

fn signal_name(text: &str, canonify: bool) -> Result<String> {
    let n = if canonify {
        name::canonify(text)
    } else {
        text.to_string()
    };
    // Only baton-signal has --canonify: the hint belongs here, not in every name check.
    validate_signal_name(&n).map_err(|e| match e.message.strip_suffix(')') {
        Some(m) if m.starts_with("invalid class name") => {
            baton_core::Error::new(format!("{m}, or --canonify)"))
        }
        _ => e,
    })?;
    Ok(n)
}

fn run(cli: SignalCli) -> Result<ExitStatus> {
    match cli.command {
        Command::Raise {
            name,
            ttl,
            policy,
            canonify,
            run,
            site,
        } => {
            let name = signal_name(&name, canonify)?;
            let ctx = Context::resolve(&site)?;
            let run = run.filter(|r| !r.is_empty());
            ctx.store()?
                .raise(&name, ctx.now, ttl, policy, run.as_deref())?;
            Ok(EXIT_TRUE)
        }
        Command::Clear {
            name,
            canonify,
            site,
        } => {
            let name = signal_name(&name, canonify)?;
            let ctx = Context::resolve(&site)?;
            let was = ctx.store()?.clear(&name, ctx.now)?;
            Ok(if was { EXIT_TRUE } else { EXIT_FALSE })
        }
        Command::List {
            regex,
            json,
            names,
            site,
        } => {
            let pattern = regex.as_deref().map(name::whole_name_regex).transpose()?;
            let ctx = Context::resolve(&site)?;
            ctx.site.warn_if_no_state_dir();
            let listing = ctx.store()?.live(ctx.now, pattern.as_ref())?;
            crate::warn(&listing.problems);
            let shown: Vec<&Signal> = listing.signals.iter().collect();
            let mut out = std::io::stdout().lock();
            if json {
                let text = serde_json::to_string(&shown)
                    .map_err(|e| baton_core::Error::new(e.to_string()))?;
                writeln!(out, "{text}").map_err(stdout_error)?;
            } else {
                for s in &shown {
                    if names {
                        writeln!(out, "{}", s.name)
                    } else {
                        writeln!(
                            out,
                            "{} {} {}",
                            s.name,
                            baton_core::clock::format_time(s.set_at),
                            baton_core::clock::format_time(s.expires_at)
                        )
                    }
                    .map_err(stdout_error)?;
                }
            }
            out.flush().map_err(stdout_error)?;
            Ok(found(!shown.is_empty()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        SignalCli::command().debug_assert();
    }
}
