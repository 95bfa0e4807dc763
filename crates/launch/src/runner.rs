//! One cron tick of one job: take the lock (or take over an expired run), end what a
//! dead predecessor left running, apply `--ifelapsed` and `--once-per`, run the command
//! with its bound and retries, then publish outcome signals and append the history record.
//!
//! Once the command has started, nothing stops the tick from ending it and saying what
//! happened: an error in recording the outcome (a full disk) becomes exit status
//! [`ExitStatus::UNRECORDED`], never an early return that would leave the job unsupervised.

use crate::cgroup::RunGroup;
use crate::history::{self, Outcome, Record, HISTORY_VERSION};
use crate::job::{self, JobPaths, JobState, Running};
use crate::process::{end_all, job_processes, signal_name, Ending, Marker, ProcId};
use crate::supervise::{Capture, Supervisor};
use baton_core::cli::Site;
use baton_core::clock::{format_time, stepped};
use baton_core::error::ExitStatus;
use baton_core::{Duration, Error, Result};
use baton_store::{Context, Policy, SignalStore};
use chrono::{DateTime, Utc};
use rustix::process::Signal;
use std::fs::File;
use std::io::Write;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Everything `baton-run` was asked to do, validated.
#[derive(Debug, Clone)]
pub struct RunSpec {
    pub command: Vec<String>,
    pub job: String,
    /// `--condition`: a shell command whose exit status says whether this tick runs.
    pub condition: Option<String>,
    pub ifelapsed: Option<Duration>,
    pub expireafter: Option<Duration>,
    pub timeout: Option<Duration>,
    pub grace: Duration,
    pub retries: u32,
    pub backoff: Duration,
    pub on_repaired: Vec<String>,
    pub on_failed: Vec<String>,
    pub on_skipped: Vec<String>,
    /// Clear the `--on-repaired` signals when the run fails.
    pub withdraw_on_failure: bool,
    pub ttl: Duration,
    pub policy: Policy,
    pub once_per: Option<String>,
    pub keep_logs: usize,
    /// A run's log keeps at most this many bytes: the first half and the last half.
    pub log_limit: u64,
}

/// How the tick went: the status to exit with, and what to say on stderr.
#[derive(Debug)]
pub struct Report {
    pub outcome: Outcome,
    pub status: ExitStatus,
    /// Said only when not `--quiet`: the job is busy.
    pub notice: Option<String>,
    /// Always said: something went wrong that cron should mail.
    pub alerts: Vec<String>,
    /// Always said after the alerts when the job failed: the end of its output.
    pub output: String,
}

/// Run one tick of `spec` in `ctx`: its host, state dir, store, and the instant `ctx.now`.
pub fn run_job(spec: &RunSpec, ctx: &Context) -> Result<Report> {
    // Signals are heard from here on, so a take-over never finds a job left unsupervised.
    let mut sup = Supervisor::new();
    let site = &ctx.site;
    let paths = JobPaths::new(&site.state_dir, &spec.job);
    paths.create_dirs()?;
    let now = ctx.now;
    // Where outcome signals and once-per keys go; a bad store is an error before any run.
    let result = ctx
        .store()
        .and_then(|store| tick(spec, site, store, &paths, now, &mut sup));
    if let Err(e) = &result {
        // A tick that failed before running still leaves its trace, where it can.
        let mut r = record(
            spec,
            site,
            run_id(now),
            now,
            Outcome::Error,
            ExitStatus::ERROR,
        );
        r.reason = Some(e.message.clone());
        let _ = history::append(&paths, &r);
    }
    result
}

/// The locks a tick holds: the job's, and the take-over lock until its run is on record
/// (see [`take_over`]). Fields drop in order: the take-over lock is let go before the
/// job's, so a tick that finds the job's lock free never finds the take-over lock still
/// held by the tick that let go of both.
struct Held {
    takeover: Option<File>,
    _job: File,
}

fn record(
    spec: &RunSpec,
    site: &Site,
    run: String,
    start: DateTime<Utc>,
    outcome: Outcome,
    status: ExitStatus,
) -> Record {
    Record {
        version: HISTORY_VERSION,
        job: spec.job.clone(),
        run,
        host: site.host.clone(),
        start,
        end: start,
        outcome,
        status: status.code(),
        attempts: 0,
        reason: None,
        log: None,
    }
}

fn tick(
    spec: &RunSpec,
    site: &Site,
    backend: &dyn SignalStore,
    paths: &JobPaths,
    now: DateTime<Utc>,
    sup: &mut Supervisor,
) -> Result<Report> {
    let mut alerts = Vec::new();
    let mut held = match job::try_lock(&paths.lock)? {
        Some(job) => match job::try_lock(&paths.takeover)? {
            Some(takeover) => Held {
                takeover: Some(takeover),
                _job: job,
            },
            None => {
                // Another tick is taking over: it ended the run that held the lock and
                // waits for the lock, which is its to take (see `take_over`). Let go.
                drop(job);
                let why = format!(
                    "{} is busy: another tick is taking over from its expired run",
                    spec.job
                );
                return finish_not_run(spec, site, paths, now, Outcome::Busy, why, alerts);
            }
        },
        None => match take_over(spec, paths, now, &mut alerts)? {
            Some(held) => held,
            None => {
                let why = busy_reason(spec, paths)?;
                return finish_not_run(spec, site, paths, now, Outcome::Busy, why, alerts);
            }
        },
    };
    let mut state = JobState::load(paths)?;
    if spec.ifelapsed.is_some() {
        alerts.extend(state.forget_stepped_start(now));
    }
    if let Some(prev) = state.running.take() {
        // Its baton-run died (the lock was free): end what it left running, record it,
        // and forget it now, whether this tick runs or not: a tick that skips must not
        // leave it on record for the next one to end and record again.
        end_leftovers(spec, site, paths, &prev, &run_id(now), &mut alerts)?;
        state.save(paths)?;
    }
    if let Some(why) = skip_reason(spec, &state, backend, now)? {
        raise_all(spec, backend, &spec.on_skipped, now, &run_id(now))?;
        return finish_not_run(spec, site, paths, now, Outcome::Skipped, why, alerts);
    }
    let me = ProcId::current().unwrap_or(ProcId {
        pid: std::process::id(),
        start: 0,
    });
    let mut now = now;
    if let Some(condition) = &spec.condition {
        // Asked under the lock and on record (a holder with no job yet): a tick meanwhile
        // is busy, never a second question, and --expireafter can end one that hangs.
        state.running = Some(Running::held_by(run_id(now), me, now));
        state.save(paths)?;
        held.takeover = None;
        let verdict = check_condition(spec, site, condition, now, sup);
        state.running = None;
        let saved = state.save(paths);
        match verdict {
            Ok(None) => saved?,
            Ok(Some(why)) => {
                saved?;
                return finish_not_run(spec, site, paths, now, Outcome::Skipped, why, alerts);
            }
            Err(e) => return Err(e),
        }
        // The run starts now: the time the condition took is not the run's age.
        now = site.clock.now().unwrap_or(now).max(now);
    }

    let run_id = run_id(now);
    let log_path = paths.logs.join(format!("{run_id}.log"));
    let capture = Capture::create(&log_path, spec.log_limit)
        .map_err(|e| Error::io("create log", &log_path, e))?;
    state.last_start = Some(now);
    // The job's processes stay in a cgroup of the run's own, where the host allows one:
    // on record before it is made, so a kill at any instant leaves none unnamed.
    let group_path = crate::cgroup::path_for(&spec.job, &run_id);
    let mut running = Running::held_by(run_id.clone(), me, now);
    running.cgroup = group_path.clone();
    state.running = Some(running);
    state.save(paths)?;
    // This run is on record: a take-over from now on finds it, not its predecessor.
    held.takeover = None;
    if let Some(path) = &group_path {
        crate::cgroup::sweep(path, &spec.job);
    }
    let group = group_path.as_deref().and_then(RunGroup::enter);

    // From here on the job runs: errors are collected, never returned.
    let capture = Arc::new(Mutex::new(capture));
    let marker = Marker {
        run: run_id.clone(),
        job: spec.job.clone(),
        cgroup: group.as_ref().map(|g| g.path().to_path_buf()),
    };
    let mut unrecorded: Vec<String> = Vec::new();
    let started = Instant::now();
    let mut attempts = 0;
    let mut ended = 0;
    let ending = loop {
        if let Some(sig) = sup.interrupted() {
            break Ending::Interrupted(sig);
        }
        attempts += 1;
        let command = command(&spec.command, spec, site, &run_id);
        let (ending, killed) = sup.attempt(
            command,
            &capture,
            &marker,
            spec.timeout.map(Duration::std),
            spec.grace.std(),
            |pid| {
                if let Some(r) = state.running.as_mut() {
                    r.pid = pid;
                    r.pgid = pid;
                    r.pid_start = ProcId::of(pid).map_or(0, |p| p.start);
                }
                if let Err(e) = state.save(paths) {
                    unrecorded.push(e.message);
                }
            },
        );
        ended += killed;
        if ending.succeeded() || attempts > spec.retries || matches!(ending, Ending::Interrupted(_))
        {
            break ending;
        }
        let pause = spec
            .backoff
            .as_secs()
            .saturating_mul(1 << (attempts - 1).min(16));
        if let Some(sig) = sup.pause(std::time::Duration::from_secs(pause.min(3600))) {
            break Ending::Interrupted(sig);
        }
    };
    // Every attempt ended all of the job's processes: the run's cgroup is empty.
    if let Some(group) = group {
        group.leave();
    }
    let ran_for = Duration::from_secs(started.elapsed().as_secs());
    // Whole seconds, as every Baton time: a signal raised at 16:00 for 10m is gone at 16:10.
    let end = site.clock.now().unwrap_or(now).max(now + ran_for.chrono());
    let outcome = if ending.succeeded() {
        Outcome::Repaired
    } else {
        Outcome::Failed
    };
    let (excerpt, log_error) = match capture.lock() {
        Ok(mut c) => {
            c.finish();
            (c.excerpt(), c.error.clone())
        }
        Err(_) => (String::new(), None),
    };
    if let Some(e) = log_error {
        alerts.push(format!(
            "the log of {} run {run_id} is incomplete: {e}",
            spec.job
        ));
    }
    let log = log_path.display().to_string();

    // Record the outcome; each step is tried even when an earlier one failed.
    state.running = None;
    state.last_end = Some(end);
    state.last_outcome = Some(outcome.as_str().to_string());
    let mut note = |r: Result<()>| {
        if let Err(e) = r {
            unrecorded.push(e.message);
        }
    };
    if outcome == Outcome::Repaired {
        if let Some(key) = &spec.once_per {
            note(backend.once_per_remember(&spec.job, key));
        }
    }
    note(state.save(paths));
    let classes = if outcome == Outcome::Repaired {
        &spec.on_repaired
    } else {
        &spec.on_failed
    };
    note(raise_all(spec, backend, classes, end, &run_id));
    if outcome == Outcome::Failed && spec.withdraw_on_failure {
        for class in &spec.on_repaired {
            note(backend.clear(class, end).map(|_| ()));
        }
    }
    let mut r = record(spec, site, run_id.clone(), now, outcome, ending.status());
    r.end = end;
    r.attempts = attempts;
    r.log = Some(log.clone());
    r.reason = match &ending {
        Ending::NotStarted(_, why) => Some(why.clone()),
        Ending::TimedOut => Some("timed out".into()),
        Ending::Interrupted(sig) => Some(format!("baton-run got {}", signal_name(*sig))),
        _ => None,
    };
    if ended > 0 {
        let more = match ended {
            1 => "ended 1 leftover process".to_string(),
            n => format!("ended {n} leftover processes"),
        };
        r.reason = Some(r.reason.map_or(more.clone(), |w| format!("{w}; {more}")));
    }
    note(history::append(paths, &r));
    prune_logs(paths, spec.keep_logs, &log_path);
    let mut status = ending.status();
    if !unrecorded.is_empty() {
        alerts.push(format!(
            "{} ran (exit status {}) but its outcome could not be recorded: {}",
            spec.job,
            ending.status(),
            unrecorded.join("; ")
        ));
        status = ExitStatus::UNRECORDED;
    }
    // Last, so that the end of the job's output follows it.
    if outcome == Outcome::Failed {
        alerts.push(failure_line(spec, &ending, ran_for, ended, &log));
    }
    Ok(Report {
        outcome,
        status,
        notice: None,
        alerts,
        output: if outcome == Outcome::Failed {
            excerpt
        } else {
            String::new()
        },
    })
}

/// The command of one attempt: stdin from /dev/null, and the environment that both tells
/// the job who it is and marks its processes as the run's.
fn command(argv: &[String], spec: &RunSpec, site: &Site, run_id: &str) -> Command {
    let mut command = Command::new(&argv[0]);
    command
        .args(&argv[1..])
        // The job's own baton calls act as the same host, on the same store and clock.
        .env("BATON_RUN", run_id)
        .env("BATON_JOB", &spec.job);
    for (var, value) in site.job_env() {
        match value {
            Some(v) => command.env(var, v),
            None => command.env_remove(var),
        };
    }
    command
}

/// The one line a failure gets on stderr: job, how it ended, after how long, the log.
fn failure_line(
    spec: &RunSpec,
    ending: &Ending,
    ran_for: Duration,
    ended: usize,
    log: &str,
) -> String {
    let job = &spec.job;
    let ended = match ended {
        0 => String::new(),
        1 => "; ended 1 process".to_string(),
        n => format!("; ended {n} processes"),
    };
    match ending {
        Ending::Exited(code) => {
            format!("{job} failed with exit status {code} after {ran_for}{ended} (log {log})")
        }
        Ending::Signalled(sig) => format!(
            "{job} was killed by {} after {ran_for}{ended} (log {log})",
            signal_name(*sig)
        ),
        Ending::TimedOut => format!(
            "{job} timed out after {} and was killed{ended} (log {log})",
            spec.timeout.unwrap_or_default()
        ),
        Ending::Interrupted(sig) => format!(
            "{job} was stopped after {ran_for}: baton-run got {}{ended} (log {log})",
            signal_name(*sig)
        ),
        Ending::NotStarted(_, why) => format!("cannot run '{}': {why}", spec.command[0]),
    }
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

fn busy_reason(spec: &RunSpec, paths: &JobPaths) -> Result<String> {
    let holder = JobState::load(paths)?
        .running
        .filter(|r| r.holder().is_some_and(ProcId::alive));
    Ok(match holder {
        Some(r) => format!(
            "{} is busy: run {} started at {} holds its lock (baton-run pid {})",
            spec.job,
            r.run,
            format_time(r.started),
            r.holder
        ),
        None => format!("{} is busy: another run holds its lock", spec.job),
    })
}

/// The run of a `baton-run` that died holding the lock: end every process it left (found
/// by its marker and its recorded pid), and record the run, whose outcome is lost.
fn end_leftovers(
    spec: &RunSpec,
    site: &Site,
    paths: &JobPaths,
    prev: &Running,
    next: &str,
    alerts: &mut Vec<String>,
) -> Result<()> {
    let marker = Marker {
        run: prev.run.clone(),
        job: spec.job.clone(),
        cgroup: (prev.cgroup.as_deref())
            .and_then(|p| crate::cgroup::recorded(p, &spec.job, &prev.run)),
    };
    let extra: Vec<ProcId> = prev.command().into_iter().collect();
    let ended = end_all(|| job_processes(None, &marker, &extra), spec.grace.std());
    if let Some(group) = &marker.cgroup {
        crate::cgroup::remove(group);
    }
    // A run whose command never started (its baton-run died asking --condition, or
    // before the spawn) ran nothing: it is an error tick, not a failed run.
    let started = prev.pid != 0;
    let mut why = if started {
        "its baton-run ended before recording the outcome"
    } else {
        "its baton-run ended before the job started"
    }
    .to_string();
    if ended > 0 {
        alerts.push(format!(
            "ended {ended} process{} left running by run {} of {} (started {}), whose baton-run died",
            if ended == 1 { "" } else { "es" },
            prev.run,
            spec.job,
            format_time(prev.started)
        ));
        why.push_str(&format!("; run {next} ended {ended} leftover processes"));
    }
    // Its outcome may be on record already: a full disk let the history line through but
    // not the state that says the run is over. One run, one record.
    if recorded(paths, spec, &prev.run) {
        return Ok(());
    }
    let mut r = record(
        spec,
        site,
        prev.run.clone(),
        prev.started,
        if started {
            Outcome::Failed
        } else {
            Outcome::Error
        },
        if started {
            ExitStatus::UNRECORDED
        } else {
            ExitStatus::ERROR
        },
    );
    r.reason = Some(why);
    r.attempts = u32::from(started);
    history::append(paths, &r)
}

/// Whether the job's history holds a record of run `run`.
fn recorded(paths: &JobPaths, spec: &RunSpec, run: &str) -> bool {
    let Some(dir) = paths.history.parent() else {
        return false;
    };
    history::read(dir, Some(&spec.job))
        .is_ok_and(|records| records.iter().rev().any(|r| r.run == run))
}

/// With `--expireafter`, take over from a run that has held the lock too long, whatever
/// it is doing: its `baton-run` is sent TERM (it ends its job, records the run and lets
/// go), and KILL if it does not let go in time. Returns the job's lock and the take-over
/// lock, to be held until this run is on record.
///
/// The take-over lock is held by every tick that holds the job's lock until its run is
/// on record, and by the one tick taking over while it waits for the job's lock. So only
/// one tick takes over (the others find the take-over lock held and are busy); no new
/// run can put itself on record while a taker reads the state; and when the run taken
/// over lets go, a tick that finds the job's lock free in the moment before the taker
/// takes it finds the take-over lock held and lets go at once (busy). The taker thus
/// waits only for the run it ended, never for a tick that slipped in and runs the job.
fn take_over(
    spec: &RunSpec,
    paths: &JobPaths,
    now: DateTime<Utc>,
    alerts: &mut Vec<String>,
) -> Result<Option<Held>> {
    let Some(limit) = spec.expireafter else {
        return Ok(None);
    };
    let expired_run = || -> Result<Option<Running>> {
        Ok(JobState::load(paths)?
            .running
            .filter(|r| expired(spec, r, now) && r.holder().is_some()))
    };
    if expired_run()?.is_none() {
        return Ok(None);
    }
    let Some(guard) = job::try_lock(&paths.takeover)? else {
        return Ok(None); // another tick is taking over
    };
    // Read again under the take-over lock: another tick may have taken over meanwhile.
    let Some(running) = expired_run()? else {
        return Ok(None);
    };
    let holder = running.holder().expect("filtered on a holder");
    let grace = spec.grace.std();
    holder.signal(Signal::TERM);
    let lock = match job::lock(&paths.lock, grace * 2 + std::time::Duration::from_secs(5)) {
        Ok(lock) => lock,
        Err(_) => {
            // It did not let go: KILL it; its job's leftovers are ended next, as any
            // dead baton-run's are.
            holder.signal(Signal::KILL);
            job::lock(&paths.lock, grace + std::time::Duration::from_secs(5))?
        }
    };
    alerts.push(format!(
        "took over from run {} of {} (baton-run pid {}): {}, past --expireafter {limit}",
        running.run,
        spec.job,
        running.holder,
        running_since(&running, now)
    ));
    Ok(Some(Held {
        takeover: Some(guard),
        _job: lock,
    }))
}

/// Run `--condition` as `sh -c`, with the job's environment, bounded by `--timeout`, its
/// processes ended afterwards as a run's are, and read its exit status with Baton's
/// codes (`baton-if`, `baton-query`): 0 runs the job; 1 says no, so the tick is skipped
/// (returns the reason); anything else could not decide, so the tick is an error. (Like
/// systemd's `ExecCondition=`, systemd.service(5), except that there 2 to 254 skip too.)
/// What it says on stderr is passed on to stderr, whatever its status, as it would have
/// been from the crontab line; its last line ends the reason. Its stdout (the names
/// `baton-query` prints) is thrown away.
fn check_condition(
    spec: &RunSpec,
    site: &Site,
    condition: &str,
    now: DateTime<Utc>,
    sup: &mut Supervisor,
) -> Result<Option<String>> {
    let run_id = run_id(now);
    // The supervisor pipes stdout with stderr: the shell sends its stdout away first.
    let argv = ["/bin/sh", "-c", &format!("exec >/dev/null\n{condition}")].map(String::from);
    let capture = Arc::new(Mutex::new(Capture::in_memory()));
    let marker = Marker {
        run: run_id.clone(),
        job: spec.job.clone(),
        cgroup: None,
    };
    let (ending, _) = sup.attempt(
        command(&argv, spec, site, &run_id),
        &capture,
        &marker,
        spec.timeout.map(Duration::std),
        spec.grace.std(),
        |_| {},
    );
    let said = capture.lock().map(|c| c.excerpt()).unwrap_or_default();
    let _ = std::io::stderr().lock().write_all(said.as_bytes());
    let last = said.lines().rev().map(str::trim).find(|l| !l.is_empty());
    let with_last = |what: String| match last {
        Some(line) => format!("{what}: {line}"),
        None => what,
    };
    let how = match ending {
        Ending::Exited(0) => return Ok(None),
        Ending::Exited(1) => {
            return Ok(Some(with_last(format!(
                "skipped {}: --condition is false",
                spec.job
            ))));
        }
        Ending::Exited(code) => format!("exited with status {code}"),
        Ending::Signalled(sig) => format!("was killed by {}", signal_name(sig)),
        Ending::TimedOut => format!(
            "timed out after {} and was killed",
            spec.timeout.unwrap_or_default()
        ),
        Ending::Interrupted(sig) => format!("was stopped: baton-run got {}", signal_name(sig)),
        Ending::NotStarted(_, why) => format!("could not start: {why}"),
    };
    Err(Error::new(with_last(format!(
        "{}: --condition {how}, so the job did not run",
        spec.job
    ))))
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

/// A tick that did not run the command: a history record, and for a busy tick a notice
/// (a skip is the normal case and stays silent).
fn finish_not_run(
    spec: &RunSpec,
    site: &Site,
    paths: &JobPaths,
    now: DateTime<Utc>,
    outcome: Outcome,
    why: String,
    alerts: Vec<String>,
) -> Result<Report> {
    let run_id = run_id(now);
    let status = if outcome == Outcome::Busy {
        ExitStatus::BUSY
    } else {
        ExitStatus::SKIPPED
    };
    let mut r = record(spec, site, run_id, now, outcome, status);
    r.reason = Some(why.clone());
    history::append(paths, &r)?;
    Ok(Report {
        outcome,
        status,
        notice: (outcome == Outcome::Busy).then_some(why),
        alerts,
        output: String::new(),
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

/// Keep the newest `keep` logs of the job (names sort by start time), and always this
/// run's own, which its failure line names (a clock stepped back sorts it first).
fn prune_logs(paths: &JobPaths, keep: usize, current: &std::path::Path) {
    let Ok(dir) = std::fs::read_dir(&paths.logs) else {
        return;
    };
    let mut logs: Vec<_> = dir
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "log") && p != current)
        .collect();
    logs.sort();
    let excess = logs.len().saturating_sub(keep.saturating_sub(1));
    for old in &logs[..excess] {
        let _ = std::fs::remove_file(old);
    }
}
