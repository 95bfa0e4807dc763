//! A run's own cgroup (cgroup v2), where this host lets `baton-run` make one: every
//! process the job starts stays in it whatever it does to its environment, session or
//! user, so a tick after a killed `baton-run` still finds them (`docs/baton-run.md`).
//!
//! `baton-run` creates `baton-JOB-RUN` below its own cgroup and moves itself into it
//! before the job starts (children inherit it at fork; no `pre_exec` is needed), and
//! moves back and removes it once the job's processes are gone. Where cgroup v2 is not
//! mounted or not writable (no root, a read-only container), nothing changes: the
//! subreaper and the run's environment mark still find the job's processes.

use std::path::{Path, PathBuf};

/// The run's cgroup, entered by this process.
#[derive(Debug)]
pub struct RunGroup {
    path: PathBuf,
    /// The cgroup this process came from, to go back to.
    home: PathBuf,
}

/// The name of run `run` of `job`'s cgroup: recognisable, and checked before a recorded
/// path is trusted.
pub fn name(job: &str, run: &str) -> String {
    format!("baton-{job}-{run}")
}

/// Where run `run` of `job`'s cgroup goes: below this process's own cgroup, or `None`
/// where cgroup v2 is not mounted. Recorded before the group is made, so that a
/// `baton-run` killed at any instant leaves no group that no record names.
pub fn path_for(job: &str, run: &str) -> Option<PathBuf> {
    Some(own_cgroup()?.join(name(job, run)))
}

impl RunGroup {
    /// Make the cgroup at `path` (from [`path_for`]: its parent is this process's own
    /// cgroup, where it goes back to) and move this process into it, or `None` where
    /// this host does not let it.
    pub fn enter(path: &Path) -> Option<RunGroup> {
        let home = path.parent()?.to_path_buf();
        std::fs::create_dir(path).ok()?;
        if std::fs::write(path.join("cgroup.procs"), b"0").is_err() {
            let _ = std::fs::remove_dir(path);
            return None;
        }
        Some(RunGroup {
            path: path.to_path_buf(),
            home,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Move this process back home and remove the run's cgroup and the groups below it
    /// (a nested `baton-run`'s), which are empty once the job's processes are gone.
    pub fn leave(self) {
        let _ = std::fs::write(self.home.join("cgroup.procs"), b"0");
        // A process that just exited may hold the group a moment longer (until it is
        // reaped): try again, bounded; what is still left, the next tick sweeps.
        for _ in 0..50 {
            remove(&self.path);
            if !self.path.exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
}

/// Remove the empty cgroups of `job`'s earlier runs beside `path` (this run's, from
/// [`path_for`]): the caller holds the job's lock, so no run of the job is using one, and
/// rmdir removes only an empty group (`baton-JOB-`: job names have no `-`, so the prefix
/// is the job's alone).
pub fn sweep(path: &Path, job: &str) {
    let Some(home) = path.parent() else {
        return;
    };
    let prefix = format!("baton-{job}-");
    for entry in std::fs::read_dir(home).into_iter().flatten().flatten() {
        let ours = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(&prefix));
        if ours && entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove(&entry.path());
        }
    }
}

/// A recorded cgroup `path` of run `run` of `job`, if it is one Baton made for that run:
/// a real directory (no link) in the cgroup v2 mount, with the run's name. Never another
/// group, whatever a state file says. Checked once, where the record is read.
pub fn recorded(path: &Path, job: &str, run: &str) -> Option<PathBuf> {
    let trusted = path.file_name().and_then(|n| n.to_str()) == Some(name(job, run).as_str())
        && std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir())
        && std::fs::canonicalize(path).is_ok_and(|c| c == path)
        && cgroup2_mount().is_some_and(|m| path.starts_with(&m) && path != m);
    trusted.then(|| path.to_path_buf())
}

/// The processes in the cgroup at `path` (a run's: [`RunGroup::path`] or [`recorded`])
/// and in the groups below it.
pub fn members(path: &Path) -> Vec<u32> {
    let mut pids = Vec::new();
    walk(path, 0, &mut |dir| {
        if let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) {
            pids.extend(text.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
        }
    });
    pids
}

/// Remove the cgroup at `path` (a run's) and the groups below it, deepest first: rmdir
/// removes only an empty group, so one still holding a process stays.
pub fn remove(path: &Path) {
    walk(path, 0, &mut |dir| {
        let _ = std::fs::remove_dir(dir);
    });
}

/// Call `visit` on the groups below `dir` (their own entry types: no link is followed),
/// deepest first, then on `dir`.
fn walk(dir: &Path, depth: usize, visit: &mut dyn FnMut(&Path)) {
    if depth < 8 {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                walk(&entry.path(), depth + 1, visit);
            }
        }
    }
    visit(dir);
}

/// The cgroup v2 mount point, from /proc/self/mountinfo (proc(5)).
fn cgroup2_mount() -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    mounts.lines().find_map(|l| {
        let (fields, fs) = l.split_once(" - ")?;
        fs.starts_with("cgroup2 ")
            .then(|| fields.split(' ').nth(4).map(PathBuf::from))
            .flatten()
    })
}

/// This process's cgroup v2 directory: the `0::PATH` line of /proc/self/cgroup below
/// the cgroup2 mount.
fn own_cgroup() -> Option<PathBuf> {
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let rel = cgroup.lines().find_map(|l| l.strip_prefix("0::"))?;
    Some(cgroup2_mount()?.join(rel.trim_start_matches('/')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_path_is_trusted_only_in_a_cgroup_mount_with_the_runs_name() {
        let dir = std::env::temp_dir().join(format!("baton-cg-{}", std::process::id()));
        let fake = dir.join(name("j", "20120124T160000Z-1"));
        std::fs::create_dir_all(&fake).unwrap();
        // A directory that looks like a run's group, outside cgroupfs: not trusted.
        assert_eq!(recorded(&fake, "j", "20120124T160000Z-1"), None);
        // The mount itself, or a group of another name: not trusted.
        if let Some(mount) = cgroup2_mount() {
            assert_eq!(recorded(&mount, "j", "20120124T160000Z-1"), None);
            assert_eq!(recorded(&mount.join("init.scope"), "j", "r"), None);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn members_come_from_the_group_and_those_below_it() {
        let dir = std::env::temp_dir().join(format!("baton-cg-m-{}", std::process::id()));
        let inner = dir.join(name("k", "r2"));
        std::fs::create_dir_all(&inner).unwrap();
        std::fs::write(dir.join("cgroup.procs"), "12\n34\n").unwrap();
        std::fs::write(inner.join("cgroup.procs"), "56\n").unwrap();
        let mut pids = members(&dir);
        pids.sort();
        assert_eq!(pids, [12, 34, 56]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
