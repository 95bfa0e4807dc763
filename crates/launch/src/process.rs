//! The job's processes: spawning, knowing which processes are the job's, and ending all
//! of them.
//!
//! A process is named by its PID *and* its start time (`/proc/PID/stat` field 22), so a
//! recorded PID that the kernel has since given to a stranger is never mistaken for the
//! job. Signals go through a pidfd opened and then checked against that start time, so
//! nothing kills a process that is not the job's.
//!
//! The job's processes are: `baton-run`'s descendants (it is a child subreaper, so what
//! leaves the job's process group or session still reparents to it), and any process of
//! this user whose environment carries the run's `BATON_RUN` and `BATON_JOB` (found even
//! after `baton-run` itself was killed and its descendants went to init).

use baton_core::error::ExitStatus;
use rustix::process::{pidfd_open, pidfd_send_signal, Pid, PidfdFlags, Signal};
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// It exited with this status.
    Exited(i32),
    /// A signal killed it (not one Baton sent).
    Signalled(i32),
    /// It outlived `--timeout` and Baton killed its processes.
    TimedOut,
    /// `baton-run` itself got this signal (a take-over, a shutdown) and ended the job.
    Interrupted(i32),
    /// It could not be started: 126 (cannot execute) or 127 (not found).
    NotStarted(ExitStatus, String),
}

impl Ending {
    /// The exit status `baton-run` passes on, as `timeout(1)` does: the command's own,
    /// 124 on time-out, 126/127 when it could not start, 128+n when killed by signal n.
    pub fn status(&self) -> ExitStatus {
        match *self {
            Ending::Exited(code) => ExitStatus::passed_on(code),
            Ending::Signalled(sig) | Ending::Interrupted(sig) => ExitStatus::signalled(sig),
            Ending::TimedOut => ExitStatus::TIMED_OUT,
            Ending::NotStarted(status, _) => status,
        }
    }

    pub fn succeeded(&self) -> bool {
        *self == Ending::Exited(0)
    }
}

/// A process named so that PID reuse cannot fool us: its PID and its start time in clock
/// ticks since boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ProcId {
    pub pid: u32,
    pub start: u64,
}

impl ProcId {
    /// This very process.
    pub fn current() -> Option<ProcId> {
        ProcId::of(std::process::id())
    }

    /// The process that has `pid` now, if any (and not a zombie).
    pub fn of(pid: u32) -> Option<ProcId> {
        let stat = Stat::read(pid)?;
        (!stat.zombie).then_some(ProcId {
            pid,
            start: stat.start,
        })
    }

    /// Whether this very process still runs (its PID is not someone else's now).
    pub fn alive(self) -> bool {
        ProcId::of(self.pid) == Some(self)
    }

    /// Send `sig` to this process, and only to it: through a pidfd, after checking the
    /// start time. False if it is gone (or was never ours).
    pub fn signal(self, sig: Signal) -> bool {
        let Some(pid) = Pid::from_raw(self.pid as i32) else {
            return false;
        };
        let Ok(fd) = pidfd_open(pid, PidfdFlags::empty()) else {
            return false;
        };
        // The pidfd pins the process: if the start time matches now, it is the same one.
        if !self.alive() {
            return false;
        }
        pidfd_send_signal(&fd, sig).is_ok()
    }
}

/// The fields of `/proc/PID/stat` that Baton reads.
struct Stat {
    ppid: u32,
    start: u64,
    zombie: bool,
}

impl Stat {
    fn read(pid: u32) -> Option<Stat> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name is in parentheses and may hold anything: fields follow the last ')'.
        let rest = &text[text.rfind(')')? + 1..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // Field 3 (state) is fields[0]; field 4 ppid; field 22 starttime is fields[19].
        Some(Stat {
            ppid: fields.get(1)?.parse().ok()?,
            start: fields.get(19)?.parse().ok()?,
            zombie: matches!(fields.first(), Some(&"Z") | Some(&"X")),
        })
    }
}

/// What marks a run's processes: the environment `baton-run` gives the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    pub run: String,
    pub job: String,
    /// The run's cgroup, where it has one: its own, or a recorded one that
    /// [`crate::cgroup::recorded`] trusts. What is in it is the job's.
    pub cgroup: Option<std::path::PathBuf>,
}

impl Marker {
    fn matches(&self, environ: &[u8]) -> bool {
        let run = format!("BATON_RUN={}", self.run);
        let job = format!("BATON_JOB={}", self.job);
        let mut has_run = false;
        let mut has_job = false;
        for var in environ.split(|b| *b == 0) {
            has_run |= var == run.as_bytes();
            has_job |= var == job.as_bytes();
        }
        has_run && has_job
    }
}

fn pids() -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

/// Every live process that is the job's: descendants of `root` (this `baton-run`, while
/// it lives), processes of this user carrying `marker`, those in the run's cgroup (any
/// user: only the run's processes are there), and `extra` if still the same.
pub fn job_processes(root: Option<u32>, marker: &Marker, extra: &[ProcId]) -> Vec<ProcId> {
    let me = std::process::id();
    let uid = rustix::process::geteuid().as_raw();
    let mut stats: BTreeMap<u32, Stat> = BTreeMap::new();
    for pid in pids() {
        if let Some(stat) = Stat::read(pid) {
            stats.insert(pid, stat);
        }
    }
    let mut found: BTreeSet<ProcId> = BTreeSet::new();
    if let Some(root) = root {
        let mut children: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
        for (pid, stat) in &stats {
            children.entry(stat.ppid).or_default().push(*pid);
        }
        let mut todo = children.get(&root).cloned().unwrap_or_default();
        while let Some(pid) = todo.pop() {
            if let Some(kids) = children.get(&pid) {
                todo.extend(kids);
            }
            let stat = &stats[&pid];
            if !stat.zombie {
                found.insert(ProcId {
                    pid,
                    start: stat.start,
                });
            }
        }
    }
    for (pid, stat) in &stats {
        if *pid == me || stat.zombie {
            continue;
        }
        let ours = std::fs::metadata(format!("/proc/{pid}")).is_ok_and(|m| m.uid() == uid);
        if ours
            && std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|env| marker.matches(&env))
        {
            found.insert(ProcId {
                pid: *pid,
                start: stat.start,
            });
        }
    }
    if let Some(group) = &marker.cgroup {
        for pid in crate::cgroup::members(group) {
            match stats.get(&pid) {
                Some(stat) if pid != me && !stat.zombie => {
                    found.insert(ProcId {
                        pid,
                        start: stat.start,
                    });
                }
                _ => {}
            }
        }
    }
    for p in extra {
        if stats
            .get(&p.pid)
            .is_some_and(|s| s.start == p.start && !s.zombie)
        {
            found.insert(*p);
        }
    }
    found.into_iter().collect()
}

/// End every process `find` returns: TERM (and CONT, so a stopped one hears it), then
/// KILL for what is left after `grace`, again until none is found or the bound passes.
/// Returns how many distinct processes were signalled.
pub fn end_all(mut find: impl FnMut() -> Vec<ProcId>, grace: Duration) -> usize {
    let mut signalled: BTreeSet<ProcId> = BTreeSet::new();
    let first = find();
    if first.is_empty() {
        return 0;
    }
    for p in &first {
        if p.signal(Signal::TERM) {
            p.signal(Signal::CONT);
            signalled.insert(*p);
        }
    }
    if wait_none(&mut find, grace) {
        return signalled.len();
    }
    // What ignored TERM, and what was forked meanwhile: KILL, a few rounds.
    for _ in 0..5 {
        let left = find();
        if left.is_empty() {
            break;
        }
        for p in &left {
            if p.signal(Signal::KILL) {
                signalled.insert(*p);
            }
        }
        if wait_none(&mut find, grace.max(Duration::from_secs(1))) {
            break;
        }
    }
    signalled.len()
}

/// Poll until `find` returns nothing, at most `limit`.
fn wait_none(find: &mut impl FnMut() -> Vec<ProcId>, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    let mut pause = Duration::from_millis(2);
    loop {
        if find().is_empty() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// Make this process a child subreaper: orphans among its descendants reparent to it
/// rather than to init, so they stay findable and are reaped here. Best effort (Linux).
pub fn become_subreaper() {
    let _ = rustix::process::set_child_subreaper(Some(rustix::process::getpid()));
}

/// Start `command` in a new process group (its pgid is its pid), stdin from /dev/null.
pub fn spawn_in_group(command: &mut Command) -> Result<Child, Ending> {
    command.stdin(Stdio::null()).process_group(0);
    command.spawn().map_err(|e| {
        let code = if e.kind() == std::io::ErrorKind::NotFound {
            ExitStatus::NOT_FOUND
        } else {
            ExitStatus::CANNOT_EXECUTE
        };
        Ending::NotStarted(code, baton_core::error::io_reason(&e))
    })
}

/// A signal's name for messages, e.g. `SIGKILL`.
pub fn signal_name(sig: i32) -> String {
    let name = match sig {
        1 => "HUP",
        2 => "INT",
        3 => "QUIT",
        4 => "ILL",
        6 => "ABRT",
        7 => "BUS",
        8 => "FPE",
        9 => "KILL",
        10 => "USR1",
        11 => "SEGV",
        12 => "USR2",
        13 => "PIPE",
        14 => "ALRM",
        15 => "TERM",
        24 => "XCPU",
        25 => "XFSZ",
        _ => return format!("signal {sig}"),
    };
    format!("SIG{name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_an_identity_that_a_changed_start_time_breaks() {
        let me = ProcId::current().unwrap();
        assert!(me.alive());
        let stranger = ProcId {
            start: me.start + 1,
            ..me
        };
        assert!(!stranger.alive());
        assert!(
            !stranger.signal(Signal::CONT),
            "a stranger is never signalled"
        );
    }

    #[test]
    fn markers_match_whole_variables() {
        let m = Marker {
            run: "r1".into(),
            job: "j".into(),
            cgroup: None,
        };
        assert!(m.matches(b"A=1\0BATON_RUN=r1\0BATON_JOB=j\0"));
        assert!(!m.matches(b"BATON_RUN=r10\0BATON_JOB=j\0"));
        assert!(!m.matches(b"BATON_RUN=r1\0"));
    }

    #[test]
    fn statuses_follow_timeout_1() {
        assert_eq!(Ending::Exited(3).status().code(), 3);
        assert_eq!(Ending::Signalled(9).status().code(), 137);
        assert_eq!(Ending::Interrupted(15).status().code(), 143);
        assert_eq!(Ending::TimedOut.status().code(), 124);
        assert_eq!(signal_name(9), "SIGKILL");
    }
}
