//! One cron tick of one job: take the lock (or take over an expired run), apply
//! `--ifelapsed` and `--once-per`, run the command with its bound and retries, then
//! publish outcome signals and append the history record.

use crate::history::{self, Outcome, Record, HISTORY_VERSION};
use crate::job::{JobPaths, JobState, Running};
use crate::process::{self, Ending};
use baton_core::cli::Site;
use baton_core::clock::{format_time, stepped};
use baton_core::error::ExitStatus;
use baton_core::lock::{lock_file, try_lock_file};
use baton_core::{Duration, Error, Result};
use baton_store::{Context, Policy, SignalStore};
use chrono::{DateTime, Utc};
use std::fs::File;
use std::process::Command;
use std::time::Instant;

/// Everything `baton-run` was asked to do, validated.
#[derive(Debug, Clone)]
pub struct RunSpec {
    pub command: Vec<String>,
    pub job: String,
    pub ifelapsed: Option<Duration>,
    pub expireafter: Option<Duration>,
    pub timeout: Option<Duration>,
    pub grace: Duration,
    pub retries: u32,
    pub backoff: Duration,
    pub on_repaired: Vec<String>,
    pub on_failed: Vec<String>,
    pub on_skipped: Vec<String>,
    pub ttl: Duration,
    pub policy: Policy,
    pub once_per: Option<String>,
    pub keep_logs: usize,
}

/// How the tick went: the status to exit with, and lines for stderr.
#[derive(Debug)]
pub struct Report {
    pub outcome: Outcome,
    pub status: ExitStatus,
    /// Said only when not `--quiet`: why the job did not run.
    pub notice: Option<String>,
    /// Always said: something went wrong that cron should mail.
    pub alerts: Vec<String>,
}

/// Run one tick of `spec` in `ctx`: its host, state dir, store, and the instant `ctx.now`.
pub fn run_job(spec: &RunSpec, ctx: &Context) -> Result<Report> {
    let site = &ctx.site;
    let paths = JobPaths::new(&site.state_dir, &spec.job);
    paths.create_dirs()?;
    let now = ctx.now;
    // Where outcome signals and once-per keys go; a bad store is an error before any run.
    let backend = ctx.store()?;
    let mut alerts = Vec::new();
    let _lock: File = match try_lock_file(&paths.lock)? {
        Some(lock) => lock,
        None => match take_over(spec, &paths, now, &mut alerts)? {
            Some(lock) => lock,
            None => {
                let holder = JobState::load(&paths)?.running;
                let why = match holder {
                    Some(r) => format!(
                        "{} is busy: run {} (pid {}) started at {} holds its lock",
                        spec.job,
                        r.run,
                        r.pid,
                        format_time(r.started)
                    ),
                    None => format!("{} is busy: another run holds its lock", spec.job),
                };
                return finish_not_run(
                    spec,
                    site,
                    backend,
                    &paths,
                    now,
                    Outcome::Busy,
                    why,
                    alerts,
                );
            }
        },
    };
    let mut state = JobState::load(&paths)?;
    if spec.ifelapsed.is_some() {
        alerts.extend(state.forget_stepped_start(now));
    }
    if let Some(prev) = state.running.clone() {
        // The previous baton-run died while holding the lock; its command may live on.
        if process::live_members(prev.pgid) > 0 {
            if expired(spec, &prev, now) {
                process::kill_group(prev.pgid, spec.grace.std());
                alerts.push(format!(
                    "killed orphaned run {} of {} (pid {}): {}, past --expireafter {}",
                    prev.run,
                    spec.job,
                    prev.pid,
                    running_since(&prev, now),
                    spec.expireafter.unwrap_or_default()
                ));
            } else {
                let why = format!(
                    "{} is busy: run {} (pid {}) outlived its baton-run and is still running",
                    spec.job, prev.run, prev.pid
                );
                return finish_not_run(
                    spec,
                    site,
                    backend,
                    &paths,
                    now,
                    Outcome::Busy,
                    why,
                    alerts,
                );
            }
        }
        state.running = None;
    }
    if let Some(why) = skip_reason(spec, &state, backend, now)? {
        return finish_not_run(
            spec,
            site,
            backend,
            &paths,
            now,
            Outcome::Skipped,
            why,
            alerts,
        );
    }

    let run_id = run_id(now);
    let log_path = paths.logs.join(format!("{run_id}.log"));
    state.last_start = Some(now);
    let started = Instant::now();
    let mut attempts = 0;
    let ending = loop {
        attempts += 1;
        let ending = attempt(spec, site, &paths, &mut state, &run_id, now, &log_path)?;
        if ending.succeeded() || attempts > spec.retries {
            break ending;
        }
        let pause = spec
            .backoff
            .as_secs()
            .saturating_mul(1 << (attempts - 1).min(16));
        std::thread::sleep(std::time::Duration::from_secs(pause.min(3600)));
    };
    // Whole seconds, as every Baton time: a signal raised at 16:00 for 10m is gone at 16:10.
    let ran_for = chrono::TimeDelta::seconds(started.elapsed().as_secs() as i64);
    let end = site.clock.now()?.max(now + ran_for);
    let outcome = if ending.succeeded() {
        Outcome::Repaired
    } else {
        Outcome::Failed
    };
    if let Ending::NotStarted(_, why) = &ending {
        alerts.push(format!("cannot run '{}': {why}", spec.command[0]));
    }
    if ending == Ending::TimedOut {
        alerts.push(format!(
            "{} timed out after {} and was killed (run {run_id})",
            spec.job,
            spec.timeout.unwrap_or_default()
        ));
    }
    state.running = None;
    state.last_end = Some(end);
    state.last_outcome = Some(outcome.as_str().to_string());
    if outcome == Outcome::Repaired {
        if let Some(key) = &spec.once_per {
            backend.once_per_remember(&spec.job, key)?;
        }
    }
    state.save(&paths)?;
    let classes = if outcome == Outcome::Repaired {
        &spec.on_repaired
    } else {
        &spec.on_failed
    };
    raise_all(spec, backend, classes, end, &run_id)?;
    history::append(
        &paths,
        &Record {
            version: HISTORY_VERSION,
            job: spec.job.clone(),
            run: run_id,
            host: site.host.clone(),
            start: now,
            end,
            outcome,
            status: ending.status().code(),
            attempts,
            reason: match &ending {
                Ending::NotStarted(_, why) => Some(why.clone()),
                Ending::TimedOut => Some("timed out".into()),
                _ => None,
            },
            log: Some(log_path.display().to_string()),
        },
    )?;
    prune_logs(&paths, spec.keep_logs);
    Ok(Report {
        outcome,
        status: ending.status(),
        notice: None,
        alerts,
    })
}

/// One attempt: spawn with output to the run's log, note the running process, wait.
#[allow(clippy::too_many_arguments)]
fn attempt(
    spec: &RunSpec,
    site: &Site,
    paths: &JobPaths,
    state: &mut JobState,
    run_id: &str,
    now: DateTime<Utc>,
    log_path: &std::path::Path,
) -> Result<Ending> {
    let log = baton_core::safefs::open_append(log_path)?;
    let log_err = log
        .try_clone()
        .map_err(|e| Error::io("open log", log_path, e))?;
    let mut command = Command::new(&spec.command[0]);
    command
        .args(&spec.command[1..])
        .stdout(log)
        .stderr(log_err)
        // The job's own baton calls act as the same host, on the same store and clock.
        .env("BATON_RUN", run_id)
        .env("BATON_JOB", &spec.job);
    for (var, value) in site.job_env() {
        match value {
            Some(v) => command.env(var, v),
            None => command.env_remove(var),
        };
    }
    let child = match process::spawn_in_group(&mut command) {
        Ok(child) => child,
        Err(ending) => return Ok(ending),
    };
    state.running = Some(Running {
        run: run_id.to_string(),
        pid: child.id(),
        pgid: child.id(),
        started: now,
    });
    state.save(paths)?;
    Ok(process::wait_bounded(
        child,
        spec.timeout.map(Duration::std),
        spec.grace.std(),
    ))
}

/// A run's id: its start and this process, e.g. `20120124T164500Z-4242`.
fn run_id(start: DateTime<Utc>) -> String {
    format!("{}-{}", start.format("%Y%m%dT%H%M%SZ"), std::process::id())
}

/// Whether a run holding the lock is past `--expireafter`. A start stamped in the future
/// (the clock stepped back since) has an unknown age: it counts as past, so a stepped
/// clock never delays the job by more than its `--expireafter` (docs/time.md).
fn expired(spec: &RunSpec, running: &Running, now: DateTime<Utc>) -> bool {
    spec.expireafter.is_some_and(|limit| {
        now >= running.started + limit.chrono() || stepped(running.started, now)
    })
}

/// How long a run has held the lock, as a message says it.
fn running_since(running: &Running, now: DateTime<Utc>) -> String {
    if stepped(running.started, now) {
        format!(
            "started at {}, in the future of this clock ({}): the clock stepped back since",
            format_time(running.started),
            format_time(now)
        )
    } else {
        format!("running since {}", format_time(running.started))
    }
}

/// With `--expireafter`, a run that has held the lock too long is killed and its lock
/// taken once its baton-run has let go (bounded).
fn take_over(
    spec: &RunSpec,
    paths: &JobPaths,
    now: DateTime<Utc>,
    alerts: &mut Vec<String>,
) -> Result<Option<File>> {
    let Some(limit) = spec.expireafter else {
        return Ok(None);
    };
    let Some(running) = JobState::load(paths)?.running else {
        return Ok(None);
    };
    if !expired(spec, &running, now) {
        return Ok(None);
    }
    process::kill_group(running.pgid, spec.grace.std());
    let wait = spec.grace.std() * 2 + std::time::Duration::from_secs(10);
    let lock = lock_file(&paths.lock, wait)?;
    alerts.push(format!(
        "killed run {} of {} (pid {}): {}, past --expireafter {limit}",
        running.run,
        spec.job,
        running.pid,
        running_since(&running, now)
    ));
    Ok(Some(lock))
}

/// Why this tick must not run the job, if it must not. `--once-per` keys live with the
/// signals, in the store's once-per ledger.
fn skip_reason(
    spec: &RunSpec,
    state: &JobState,
    backend: &dyn SignalStore,
    now: DateTime<Utc>,
) -> Result<Option<String>> {
    if let (Some(limit), Some(last)) = (spec.ifelapsed, state.last_start) {
        if now < last + limit.chrono() {
            let ago = Duration::from_secs((now - last).num_seconds().max(0) as u64);
            return Ok(Some(format!(
                "skipped {}: last started {ago} ago, --ifelapsed {limit}",
                spec.job
            )));
        }
    }
    if let Some(key) = &spec.once_per {
        if backend.once_per_seen(&spec.job, key)? {
            return Ok(Some(format!(
                "skipped {}: already succeeded for --once-per '{key}'",
                spec.job
            )));
        }
    }
    Ok(None)
}

/// A tick that did not run the command: signals for skips, a history record, a notice.
#[allow(clippy::too_many_arguments)]
fn finish_not_run(
    spec: &RunSpec,
    site: &Site,
    backend: &dyn SignalStore,
    paths: &JobPaths,
    now: DateTime<Utc>,
    outcome: Outcome,
    why: String,
    alerts: Vec<String>,
) -> Result<Report> {
    let run_id = run_id(now);
    if outcome == Outcome::Skipped {
        raise_all(spec, backend, &spec.on_skipped, now, &run_id)?;
    }
    let status = if outcome == Outcome::Busy {
        ExitStatus::BUSY
    } else {
        ExitStatus::SKIPPED
    };
    history::append(
        paths,
        &Record {
            version: HISTORY_VERSION,
            job: spec.job.clone(),
            run: run_id,
            host: site.host.clone(),
            start: now,
            end: now,
            outcome,
            status: status.code(),
            attempts: 0,
            reason: Some(why.clone()),
            log: None,
        },
    )?;
    Ok(Report {
        outcome,
        status,
        notice: Some(why),
        alerts,
    })
}

fn raise_all(
    spec: &RunSpec,
    backend: &dyn SignalStore,
    classes: &[String],
    at: DateTime<Utc>,
    run: &str,
) -> Result<()> {
    for class in classes {
        backend.raise(class, at, spec.ttl, spec.policy, Some(run))?;
    }
    Ok(())
}

/// Keep the newest `keep` logs of the job (names sort by start time).
fn prune_logs(paths: &JobPaths, keep: usize) {
    let Ok(dir) = std::fs::read_dir(&paths.logs) else {
        return;
    };
    let mut logs: Vec<_> = dir
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    logs.sort();
    let excess = logs.len().saturating_sub(keep);
    for old in &logs[..excess] {
        let _ = std::fs::remove_file(old);
    }
}
