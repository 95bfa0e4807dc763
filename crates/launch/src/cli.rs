//! The command line of `baton-run`.

use crate::history::{self, Outcome};
use crate::job::job_name;
use crate::runner::{run_job, RunSpec};
use crate::{metrics, ping};
use baton_core::cli::SiteArgs;
use baton_core::clock::format_time;
use baton_core::error::{finish, found, parse_args, stdout_error, ExitStatus};
use baton_core::{Duration, Error, Result};
use baton_store::store::validate_signal_name;
use baton_store::{Context, Policy, DEFAULT_TTL};
use clap::Parser;
use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;

/// Run CMD under cron-safe rules and publish its outcome as signals.
///
/// When CMD fails, is killed or times out, one line on stderr says so (job, status or
/// signal, duration, log) followed by the last lines of its output, with or without -q;
/// a successful or skipped run says nothing.
///
/// Exit status: CMD's own; 124 if it timed out; 126 if it could not be executed, 127 if
/// not found; 128+N if killed by signal N; 75 if another run holds the job's lock; 76 if
/// --condition, --ifelapsed or --once-per skipped it; 73 if CMD ran but its outcome could
/// not be recorded; 2 on a usage or state error, or when --condition failed.
#[derive(Parser, Debug)]
#[command(name = "baton-run", version)]
pub struct RunCli {
    /// Run the job only when the shell command CMD exits 0 (e.g. a baton-query | baton-if
    /// pipeline); 1 skips the tick, anything else fails it before running. Either way the
    /// tick is in the history, with the reason
    #[arg(long, value_name = "CMD")]
    pub condition: Option<String>,

    /// Skip the run if the job last started less than DUR ago (CFEngine's ifelapsed)
    #[arg(long, value_name = "DUR")]
    pub ifelapsed: Option<Duration>,

    /// Kill a run of this job still holding its lock after DUR, then run (CFEngine's expireafter)
    #[arg(long, value_name = "DUR")]
    pub expireafter: Option<Duration>,

    /// End the job (every process it started) after DUR and count the run as failed (status 124)
    #[arg(long, value_name = "DUR")]
    pub timeout: Option<Duration>,

    /// Time between TERM and KILL when ending a job's processes
    #[arg(long, value_name = "DUR", default_value = "10s")]
    pub grace: Duration,

    /// The job's name for its lock, state and history [default: derived from CMD]
    #[arg(long, value_name = "NAME")]
    pub lock: Option<String>,

    /// Retry a failed CMD up to N more times within this run
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub retries: u32,

    /// Pause before the first retry, doubling before each next one
    #[arg(long, value_name = "DUR", default_value = "10s")]
    pub backoff: Duration,

    /// Raise CLASS when CMD exits 0 (repeatable)
    #[arg(long, value_name = "CLASS")]
    pub on_repaired: Vec<String>,

    /// Raise CLASS when CMD fails, is killed or times out (repeatable)
    #[arg(long, value_name = "CLASS")]
    pub on_failed: Vec<String>,

    /// Raise CLASS when --ifelapsed or --once-per skips the run (repeatable)
    #[arg(long, value_name = "CLASS")]
    pub on_skipped: Vec<String>,

    /// When CMD fails, clear its --on-repaired classes (withdraw an earlier success)
    #[arg(long)]
    pub withdraw_on_failure: bool,

    /// How long outcome signals stay live
    #[arg(long, value_name = "DUR", default_value_t = DEFAULT_TTL)]
    pub ttl: Duration,

    /// reset: raising again restarts a signal's clock; preserve: keeps the first expiry
    #[arg(long, value_enum, default_value_t = Policy::Reset)]
    pub policy: Policy,

    /// Run at most once per distinct KEY that succeeded: the upstream signal's set_at, or a
    /// calendar period in TZ with {day}, {week}, {month}, {year} or {hour}
    #[arg(long, value_name = "KEY")]
    pub once_per: Option<String>,

    /// How many run logs to keep per job
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub keep_logs: usize,

    /// Bound each run's log to SIZE bytes (k, M, G suffixes): its first and last halves
    #[arg(long, value_name = "SIZE", default_value = "1M", value_parser = parse_size)]
    pub log_limit: u64,

    /// Say nothing when the job is busy (failures are always said; cron mails what is printed)
    #[arg(short, long)]
    pub quiet: bool,

    /// After the tick, write this host's job and signal metrics to FILE (Prometheus text
    /// format, replaced atomically), for node_exporter's textfile collector
    #[arg(long, value_name = "FILE", env = "BATON_METRICS_FILE", value_parser = clap::value_parser!(std::ffi::OsString))]
    pub metrics_file: Option<OsString>,

    /// GET URL when CMD succeeds and URL with /fail on its path when it fails (healthchecks.io style),
    /// bounded by 5s; a failed ping is reported and never changes the exit status
    #[arg(long, value_name = "URL")]
    pub ping: Option<String>,

    /// Print the run history of JOB (or of every job) instead of running anything
    #[arg(long, value_name = "JOB", num_args = 0..=1, default_missing_value = "")]
    pub history: Option<String>,

    /// With --history: JSON lines instead of columns
    #[arg(long, requires = "history")]
    pub json: bool,

    /// With --history: only the last N records
    #[arg(long, value_name = "N", requires = "history")]
    pub limit: Option<usize>,

    #[command(flatten)]
    pub site: SiteArgs,

    /// The command and its arguments, after --
    #[arg(last = true, value_name = "CMD", required_unless_present = "history")]
    pub command: Vec<String>,
}

pub fn baton_run(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    const BIN: &str = "baton-run";
    match parse_args::<RunCli>(BIN, args) {
        Ok(cli) => finish(BIN, run(cli)),
        Err(code) => code,
    }
}

fn run(cli: RunCli) -> Result<ExitStatus> {
    if let Some(job) = &cli.history {
        return print_history(&cli, job);
    }
    let mut spec = spec_from(&cli)?;
    let ctx = Context::resolve(&cli.site)?;
    // Calendar placeholders are read on the run's clock reading, in TZ.
    if let Some(template) = &spec.once_per {
        spec.once_per = Some(crate::once_per::expand(template, ctx.now)?);
    }
    let mut report = run_job(&spec, &ctx)?;
    if let Some(url) = &cli.ping {
        if matches!(report.outcome, Outcome::Repaired | Outcome::Failed) {
            let url = ping::url_for(url, report.outcome == Outcome::Repaired);
            if let Err(why) = ping::ping(&url, ping::PING_TIMEOUT) {
                // Before the failure line, which the job's output follows.
                report.alerts.insert(
                    0,
                    format!(
                        "cannot ping {}: {why} (the job's outcome stands)",
                        ping::shown(&url)
                    ),
                );
            }
        }
    }
    // An empty BATON_METRICS_FILE (a crontab header cleared it) asks for nothing.
    if let Some(path) = cli.metrics_file.as_ref().filter(|p| !p.is_empty()) {
        let path = std::path::Path::new(path);
        if let Err(e) = write_metrics(path, &ctx) {
            report.alerts.insert(
                0,
                format!(
                    "cannot write --metrics-file {}: {} (the job's outcome stands)",
                    path.display(),
                    e.message
                ),
            );
        }
    }
    let mut err = std::io::stderr().lock();
    for alert in &report.alerts {
        let _ = writeln!(err, "baton-run: {alert}");
    }
    let _ = err.write_all(report.output.as_bytes());
    if let (Some(notice), false) = (&report.notice, cli.quiet) {
        let _ = writeln!(err, "baton-run: {notice}");
    }
    Ok(report.status)
}

/// This host's metrics, its live signals read at the tick's instant, into `path`.
fn write_metrics(path: &std::path::Path, ctx: &Context) -> Result<()> {
    let listing = ctx.store()?.live(ctx.now, None)?;
    let signals: Vec<metrics::SignalView> = listing
        .signals
        .iter()
        .map(|s| metrics::SignalView {
            name: s.name.clone(),
            set_at: s.set_at,
            expires_at: s.expires_at,
        })
        .collect();
    metrics::write_file(path, &ctx.site.state_dir, &ctx.site.host, &signals)
}

/// A byte count with an optional k, M or G suffix (powers of 1024).
fn parse_size(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim();
    let (num, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => t.split_at(i),
        None => (t, ""),
    };
    let mult: u64 = match unit.to_ascii_lowercase().trim_end_matches(['b', 'i']) {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        _ => return Err(format!("invalid size '{s}': use e.g. 4096, 64k, 1M")),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid size '{s}': use e.g. 4096, 64k, 1M"))?;
    match n.checked_mul(mult) {
        Some(v) if v >= 1024 => Ok(v),
        Some(_) => Err(format!("size '{s}' is below the least, 1k")),
        None => Err(format!("size '{s}' is too large")),
    }
}

/// Validate everything before any work starts.
fn spec_from(cli: &RunCli) -> Result<RunSpec> {
    if cli.command.first().is_none_or(|c| c.is_empty()) {
        return Err(Error::new("no command given after --"));
    }
    for class in cli
        .on_repaired
        .iter()
        .chain(&cli.on_failed)
        .chain(&cli.on_skipped)
    {
        validate_signal_name(class).map_err(|e| e.context("outcome class"))?;
    }
    if cli.ttl == Duration::ZERO {
        return Err(Error::new("--ttl must be longer than 0s"));
    }
    if cli.timeout == Some(Duration::ZERO) {
        return Err(Error::new("--timeout must be longer than 0s"));
    }
    if cli.once_per.as_deref().is_some_and(|k| k.len() > 1024) {
        return Err(Error::new("--once-per KEY is longer than 1024 bytes"));
    }
    if cli.once_per.as_deref().is_some_and(|k| k.trim().is_empty()) {
        return Err(Error::new(
            "--once-per KEY is empty (did the command that computes it fail?)",
        ));
    }
    if let Some(template) = &cli.once_per {
        crate::once_per::check(template)?;
    }
    if cli
        .condition
        .as_deref()
        .is_some_and(|c| c.trim().is_empty())
    {
        return Err(Error::new("--condition CMD is empty"));
    }
    if let Some(url) = &cli.ping {
        ping::validate(url)?;
    }
    if cli.withdraw_on_failure && cli.on_repaired.is_empty() {
        return Err(Error::new(
            "--withdraw-on-failure needs an --on-repaired class to withdraw",
        ));
    }
    if cli.keep_logs == 0 {
        return Err(Error::new("--keep-logs must be at least 1"));
    }
    Ok(RunSpec {
        command: cli.command.clone(),
        job: job_name(cli.lock.as_deref(), &cli.command)?,
        condition: cli.condition.clone(),
        ifelapsed: cli.ifelapsed,
        expireafter: cli.expireafter,
        timeout: cli.timeout,
        grace: cli.grace,
        retries: cli.retries,
        backoff: cli.backoff,
        on_repaired: cli.on_repaired.clone(),
        on_failed: cli.on_failed.clone(),
        on_skipped: cli.on_skipped.clone(),
        ttl: cli.ttl,
        policy: cli.policy,
        once_per: cli.once_per.clone(),
        keep_logs: cli.keep_logs,
        withdraw_on_failure: cli.withdraw_on_failure,
        log_limit: cli.log_limit,
    })
}

fn print_history(cli: &RunCli, job: &str) -> Result<ExitStatus> {
    let site = cli.site.resolve()?;
    let dir = site.state_dir.join("history");
    let job = if job.is_empty() {
        None
    } else {
        if job.contains('/') && !job.starts_with('/') || job.contains("..") {
            baton_core::name::validate(job).map_err(|e| e.context("--history"))?;
        }
        let found = history::find_jobs(&dir, job)?;
        match found.as_slice() {
            [] => {
                // No record is a "no" (status 1), as grep says it, with the reason.
                let _ = writeln!(
                    std::io::stderr().lock(),
                    "baton-run: --history: no job named '{job}' has run here (in {}); `baton-run --history` lists every job",
                    dir.display()
                );
                return Ok(ExitStatus::FALSE);
            }
            [one] => Some(one.clone()),
            many => {
                return Err(Error::new(format!(
                    "--history: '{job}' may mean any of {}: name one",
                    many.join(", ")
                )))
            }
        }
    };
    let mut records = history::read(&dir, job.as_deref())?;
    if records.is_empty() && job.is_none() {
        // Silence here would read as "it never ran" when the state dir is the wrong one.
        let _ = writeln!(
            std::io::stderr().lock(),
            "baton-run: --history: no job has run here (in {}); is this the state dir the crontab uses?",
            dir.display()
        );
    }
    if let Some(n) = cli.limit {
        records.drain(..records.len().saturating_sub(n));
    }
    let mut out = std::io::stdout().lock();
    if !cli.json && !records.is_empty() {
        writeln!(out, "START END JOB OUTCOME STATUS RUN REASON").map_err(stdout_error)?;
    }
    for r in &records {
        if cli.json {
            let line = serde_json::to_string(r).map_err(|e| Error::new(e.to_string()))?;
            writeln!(out, "{line}")
        } else {
            // REASON is last: free text, to the end of the line ("-" when there is none).
            let reason = r
                .reason
                .as_deref()
                .unwrap_or("-")
                .replace(['\n', '\r'], " ");
            writeln!(
                out,
                "{} {} {} {} {} {} {reason}",
                format_time(r.start),
                format_time(r.end),
                r.job,
                r.outcome.as_str(),
                r.status,
                r.run
            )
        }
        .map_err(stdout_error)?;
    }
    out.flush().map_err(stdout_error)?;
    Ok(found(!records.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        RunCli::command().debug_assert();
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64k"), Ok(65536));
        assert_eq!(parse_size("1M"), Ok(1 << 20));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert!(parse_size("12").is_err());
        assert!(parse_size("1x").is_err());
        assert!(parse_size("").is_err());
    }
}
