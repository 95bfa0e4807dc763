//! A job's identity and its state record, `STATE_DIR/jobs/JOB.json`, written only by the
//! holder of the job's lock, `STATE_DIR/jobs/JOB.lock`.

use crate::process::ProcId;
use baton_core::clock::{format_time, stepped};
use baton_core::fsutil::write_atomic;
use baton_core::safefs;
use baton_core::{name, Error, Result};
use chrono::{DateTime, Utc};
use rustix::fs::{fcntl_lock, FlockOperation};
use rustix::io::Errno;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::path::{Path, PathBuf};

pub const STATE_VERSION: u32 = 1;
/// Job names become file names.
pub const MAX_JOB_NAME: usize = 100;
/// A job state larger than this is not one Baton wrote.
const MAX_STATE_BYTES: u64 = 64 * 1024;

/// Where a job's files live.
#[derive(Debug, Clone)]
pub struct JobPaths {
    pub name: String,
    pub lock: PathBuf,
    /// Taken by the one tick that takes over an expired run.
    pub takeover: PathBuf,
    pub state: PathBuf,
    pub history: PathBuf,
    pub history_lock: PathBuf,
    pub logs: PathBuf,
}

impl JobPaths {
    pub fn new(state_dir: &Path, job: &str) -> JobPaths {
        let jobs = state_dir.join("jobs");
        let history = state_dir.join("history");
        JobPaths {
            name: job.to_string(),
            lock: jobs.join(format!("{job}.lock")),
            takeover: jobs.join(format!("{job}.takeover")),
            state: jobs.join(format!("{job}.json")),
            history: history.join(format!("{job}.jsonl")),
            history_lock: history.join(format!(".{job}.lock")),
            logs: state_dir.join("logs").join(job),
        }
    }

    /// Check the state dir (this user's own, writable by no one else) and make `jobs/`,
    /// `history/`, `logs/` and `logs/JOB` private directories in it ([`safefs`]).
    pub fn create_dirs(&self) -> Result<()> {
        let parent = |p: &Path| p.parent().unwrap_or(Path::new("/")).to_path_buf();
        let jobs = parent(&self.lock);
        safefs::ensure_state_dir(&parent(&jobs))?;
        for dir in [
            jobs,
            parent(&self.history),
            parent(&self.logs),
            self.logs.clone(),
        ] {
            safefs::private_dir(&dir)?;
        }
        Ok(())
    }
}

/// The job name: `--lock NAME`, else derived from the command line as the program's base
/// name plus a hash of the whole of it (`mysqldump_a3aa5dd63fecd9e5`), so two commands
/// never share a lock by accident. The arguments stay out of the readable part: the name
/// is shown to `job:` viewers and in metric labels, and an argument may be a secret
/// (`--password=...`).
pub fn job_name(lock: Option<&str>, command: &[String]) -> Result<String> {
    if let Some(n) = lock {
        name::validate(n).map_err(|e| e.context("--lock"))?;
        if n.len() > MAX_JOB_NAME {
            return Err(Error::new(format!(
                "--lock: longer than {MAX_JOB_NAME} characters"
            )));
        }
        return Ok(n.to_string());
    }
    let program = command.first().map(String::as_str).unwrap_or_default();
    let base = Path::new(program)
        .file_name()
        .and_then(|b| b.to_str())
        .unwrap_or(program);
    let mut readable: String = name::canonify(base).chars().take(60).collect();
    readable = readable.trim_matches('_').to_string();
    if readable.is_empty() {
        readable = "job".into();
    }
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325; // FNV-1a: stable across builds and platforms
    for part in command {
        for b in part.bytes().chain([0]) {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    Ok(format!("{readable}_{hash:016x}"))
}

/// A run that holds (or held, if its `baton-run` died) the job's lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Running {
    pub run: String,
    /// The command's pid, once it started (0 before).
    #[serde(default)]
    pub pid: u32,
    /// The command's process group (its pid: it leads a new group).
    #[serde(default)]
    pub pgid: u32,
    /// The command's start time in clock ticks since boot (`/proc/PID/stat`): with the
    /// pid, what names the process whatever the kernel does with the number later.
    #[serde(default)]
    pub pid_start: u64,
    /// The `baton-run` that holds the lock: its pid and start time.
    #[serde(default)]
    pub holder: u32,
    #[serde(default)]
    pub holder_start: u64,
    pub started: DateTime<Utc>,
    /// The run's own cgroup, where it has one ([`crate::cgroup`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<std::path::PathBuf>,
}

impl Running {
    /// Run `run`, held by `holder` (this `baton-run`) since `started`, its command not
    /// started yet.
    pub fn held_by(run: String, holder: ProcId, started: DateTime<Utc>) -> Running {
        Running {
            run,
            pid: 0,
            pgid: 0,
            pid_start: 0,
            holder: holder.pid,
            holder_start: holder.start,
            started,
            cgroup: None,
        }
    }

    /// The `baton-run` holding the lock, named so that PID reuse cannot fool us.
    pub fn holder(&self) -> Option<ProcId> {
        (self.holder != 0).then_some(ProcId {
            pid: self.holder,
            start: self.holder_start,
        })
    }

    /// The command, if it started.
    pub fn command(&self) -> Option<ProcId> {
        (self.pid != 0).then_some(ProcId {
            pid: self.pid,
            start: self.pid_start,
        })
    }
}

/// Take the job's lock now, or `None` if another process holds it.
///
/// The lock is a POSIX record lock (`fcntl(F_SETLK)`), which belongs to this process
/// alone: a child between fork and exec does not share it (a `flock` lock would be held
/// by the child's copy of the descriptor too, and outlive a killed `baton-run` for as
/// long as the child takes to exec). The kernel drops it when this process dies. The
/// file must not be opened a second time in this process while locked (closing any
/// descriptor of it drops a POSIX lock).
pub fn try_lock(path: &Path) -> Result<Option<File>> {
    // Never through a link, never another user's file (core::safefs).
    let file = safefs::open_lock(path)?;
    match fcntl_lock(&file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(Some(file)),
        Err(e) if e == Errno::AGAIN || e == Errno::ACCESS => Ok(None),
        Err(e) => Err(Error::io("lock", path, e.into())),
    }
}

/// Take the job's lock, waiting at most `limit`.
pub fn lock(path: &Path, limit: std::time::Duration) -> Result<File> {
    let deadline = std::time::Instant::now() + limit;
    let mut pause = std::time::Duration::from_millis(1);
    loop {
        if let Some(file) = try_lock(path)? {
            return Ok(file);
        }
        if std::time::Instant::now() >= deadline {
            return Err(Error::new(format!(
                "{} is still locked after {}s: another process holds it",
                path.display(),
                limit.as_secs()
            )));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(std::time::Duration::from_millis(50));
    }
}

/// What a job remembers between cron ticks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct JobState {
    pub version: u32,
    pub job: String,
    #[serde(default)]
    pub last_start: Option<DateTime<Utc>>,
    #[serde(default)]
    pub last_end: Option<DateTime<Utc>>,
    #[serde(default)]
    pub last_outcome: Option<String>,
    #[serde(default)]
    pub running: Option<Running>,
}

impl JobState {
    /// Read the job's state; absent means never run. A damaged record is an error: the
    /// runner must not guess whether a job already ran.
    pub fn load(paths: &JobPaths) -> Result<JobState> {
        match safefs::read_bounded(&paths.state, MAX_STATE_BYTES) {
            Ok(Some(bytes)) => {
                let state: JobState = serde_json::from_slice(&bytes).map_err(|e| {
                    Error::new(format!(
                        "damaged job state {}: {e} (remove it to start afresh)",
                        paths.state.display()
                    ))
                })?;
                Ok(state)
            }
            Ok(None) => Ok(JobState {
                version: STATE_VERSION,
                job: paths.name.clone(),
                ..JobState::default()
            }),
            Err(e) => Err(e),
        }
    }

    /// Forget a last start stamped in the future of `now` beyond the tolerance: the clock
    /// stepped back since that run, so its age is unknown, and holding the job to it would
    /// skip every tick until real time caught up. The job is not delayed at all then (never
    /// by more than its `--ifelapsed`); the returned line says why (docs/time.md).
    pub fn forget_stepped_start(&mut self, now: DateTime<Utc>) -> Option<String> {
        let last = self.last_start.filter(|&t| stepped(t, now))?;
        self.last_start = None;
        Some(format!(
            "{}: its last start, {}, is in the future of this clock ({}): the clock stepped back since; not holding the job to it",
            self.job,
            format_time(last),
            format_time(now)
        ))
    }

    pub fn save(&self, paths: &JobPaths) -> Result<()> {
        let mut bytes = serde_json::to_vec(self).map_err(|e| Error::new(e.to_string()))?;
        bytes.push(b'\n');
        write_atomic(&paths.state, &bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_names_are_stable_readable_and_distinct() {
        let a = job_name(None, &["/usr/local/bin/my_job".into()]).unwrap();
        assert_eq!(
            a, "my_job_e224597ca50ad4f3",
            "the base name, a hash of the whole"
        );
        assert_eq!(
            a,
            job_name(None, &["/usr/local/bin/my_job".into()]).unwrap()
        );
        // A one-word command keeps the name earlier versions derived.
        assert_eq!(
            job_name(None, &["do_my_job_bundle".into()]).unwrap(),
            "do_my_job_bundle_98df17603bfb4bf4"
        );
        let b = job_name(None, &["/usr/local/bin/my".into(), "job".into()]).unwrap();
        let c = job_name(None, &["/usr/local/bin/my job".into()]).unwrap();
        assert_ne!(b, c, "argument boundaries count");
        assert!(name::validate(&a).is_ok());
        let long = job_name(None, &["x".repeat(5000)]).unwrap();
        assert!(long.len() <= MAX_JOB_NAME);
        assert!(job_name(None, &["/".into()]).unwrap().starts_with("job_"));
    }

    #[test]
    fn derived_names_never_carry_the_arguments() {
        let argv = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let dump = job_name(
            None,
            &argv(&["mysqldump", "--user=root", "--password=hunter2"]),
        )
        .unwrap();
        assert_eq!(dump, "mysqldump_a3aa5dd63fecd9e5");
        let other = job_name(None, &argv(&["mysqldump", "--user=root", "--password=x"])).unwrap();
        assert!(other.starts_with("mysqldump_") && other != dump);
        let sh = job_name(None, &argv(&["sh", "-c", "backup --token=s3cret"])).unwrap();
        assert!(sh.starts_with("sh_") && !sh.contains("s3cret"), "{sh}");
    }

    #[test]
    fn lock_names_are_checked() {
        assert_eq!(job_name(Some("nightly"), &[]).unwrap(), "nightly");
        assert!(job_name(Some("../etc"), &[]).is_err());
        assert!(job_name(Some(&"x".repeat(101)), &[]).is_err());
    }
}
