//! Running a command in its own process group, with a bound, and killing the whole group.

use baton_core::error::ExitStatus;
use rustix::process::{kill_process_group, test_kill_process_group, Pid, Signal};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// It exited with this status.
    Exited(i32),
    /// A signal killed it (not one Baton sent).
    Signalled(i32),
    /// It outlived `--timeout` and Baton killed its process group.
    TimedOut,
    /// It could not be started: 126 (cannot execute) or 127 (not found).
    NotStarted(ExitStatus, String),
}

impl Ending {
    /// The exit status `baton-run` passes on, as `timeout(1)` does: the command's own,
    /// 124 on time-out, 126/127 when it could not start, 128+n when killed by signal n.
    pub fn status(&self) -> ExitStatus {
        match *self {
            Ending::Exited(code) => ExitStatus::passed_on(code),
            Ending::Signalled(sig) => ExitStatus::signalled(sig),
            Ending::TimedOut => ExitStatus::TIMED_OUT,
            Ending::NotStarted(status, _) => status,
        }
    }

    pub fn succeeded(&self) -> bool {
        *self == Ending::Exited(0)
    }
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

/// Wait for `child`, at most `timeout` if given; on time-out send TERM to its group, then
/// KILL after `grace`, and wait until the group is gone (bounded by `grace` again).
pub fn wait_bounded(mut child: Child, timeout: Option<Duration>, grace: Duration) -> Ending {
    let pgid = child.id();
    let Some(limit) = timeout else {
        return ending(child.wait());
    };
    let (tx, rx) = mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let first = rx.recv_timeout(limit);
    let result = match first {
        Ok(status) => ending(status),
        Err(_) => {
            signal_group(pgid, Signal::TERM);
            if rx.recv_timeout(grace).is_err() {
                signal_group(pgid, Signal::KILL);
                let _ = rx.recv();
            }
            kill_group(pgid, grace);
            Ending::TimedOut
        }
    };
    let _ = waiter.join();
    result
}

fn ending(status: std::io::Result<std::process::ExitStatus>) -> Ending {
    match status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(code), _) => Ending::Exited(code),
            (None, Some(sig)) => Ending::Signalled(sig),
            (None, None) => Ending::Exited(255),
        },
        Err(e) => Ending::NotStarted(ExitStatus::CANNOT_EXECUTE, e.to_string()),
    }
}

/// Send `sig` to process group `pgid`; a group that is already gone is fine.
pub fn signal_group(pgid: u32, sig: Signal) {
    if let Some(pid) = Pid::from_raw(pgid as i32) {
        let _ = kill_process_group(pid, sig);
    }
}

/// Whether any process of group `pgid` is alive (or not yet reaped).
pub fn group_alive(pgid: u32) -> bool {
    Pid::from_raw(pgid as i32).is_some_and(|pid| test_kill_process_group(pid).is_ok())
}

/// Kill every process left in group `pgid`: TERM, then KILL if any remain after `grace`.
/// Returns when the group is empty or `grace` has passed twice.
pub fn kill_group(pgid: u32, grace: Duration) {
    if !group_alive(pgid) {
        return;
    }
    signal_group(pgid, Signal::TERM);
    if wait_group_gone(pgid, grace) {
        return;
    }
    signal_group(pgid, Signal::KILL);
    wait_group_gone(pgid, grace);
}

fn wait_group_gone(pgid: u32, limit: Duration) -> bool {
    let deadline = std::time::Instant::now() + limit;
    let mut pause = Duration::from_millis(2);
    while group_alive(pgid) && live_members(pgid) > 0 {
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
    true
}

/// Members of group `pgid` that are not zombies, from /proc (a zombie is dead already;
/// only its parent can reap it).
pub fn live_members(pgid: u32) -> usize {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return usize::from(group_alive(pgid));
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter(|stat| {
            // Fields after the command name in parentheses: state ppid pgrp ...
            let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
                return false;
            };
            let fields: Vec<&str> = rest.split_whitespace().collect();
            fields.len() > 2 && fields[0] != "Z" && fields[2] == pgid.to_string()
        })
        .count()
}
