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

impl RunGroup {
    /// Create run `run` of `job`'s cgroup and move this process into it, or `None`.
    pub fn enter(job: &str, run: &str) -> Option<RunGroup> {
        let home = own_cgroup()?;
        let path = home.join(name(job, run));
        std::fs::create_dir(&path).ok()?;
        if std::fs::write(path.join("cgroup.procs"), b"0").is_err() {
            let _ = std::fs::remove_dir(&path);
            return None;
        }
        Some(RunGroup { path, home })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Move this process back home and remove the run's cgroup (empty once the job's
    /// processes are gone; a group still holding one is left for the next tick).
    pub fn leave(self) {
        let _ = std::fs::write(self.home.join("cgroup.procs"), b"0");
        let _ = std::fs::remove_dir(&self.path);
    }
}

/// The processes in the recorded cgroup `path` of run `run` of `job`, if `path` is one
/// Baton made for that run (a cgroup v2 directory with the run's name): never another
/// group's, whatever a state file says.
pub fn members(path: &Path, job: &str, run: &str) -> Vec<u32> {
    if path.file_name().and_then(|n| n.to_str()) != Some(name(job, run).as_str()) {
        return Vec::new();
    }
    let mut pids = Vec::new();
    collect(path, &mut pids, 0);
    pids
}

/// The processes in the cgroup at `dir` and in those below it (a job that runs
/// `baton-run` itself has runs of its own in there).
fn collect(dir: &Path, pids: &mut Vec<u32>, depth: usize) {
    if let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) {
        pids.extend(text.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
    }
    if depth >= 8 {
        return;
    }
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            collect(&entry.path(), pids, depth + 1);
        }
    }
}

/// Remove a dead run's cgroup, once its processes are gone.
pub fn remove(path: &Path, job: &str, run: &str) {
    if path.file_name().and_then(|n| n.to_str()) == Some(name(job, run).as_str()) {
        let _ = std::fs::remove_dir(path);
    }
}

/// This process's cgroup v2 directory: the `0::PATH` line of /proc/self/cgroup below
/// the cgroup2 mount in /proc/self/mountinfo (proc(5)).
fn own_cgroup() -> Option<PathBuf> {
    let cgroup = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let rel = cgroup.lines().find_map(|l| l.strip_prefix("0::"))?;
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mount = mounts.lines().find_map(|l| {
        let (fields, fs) = l.split_once(" - ")?;
        fs.starts_with("cgroup2 ")
            .then(|| fields.split(' ').nth(4))
            .flatten()
    })?;
    Some(Path::new(mount).join(rel.trim_start_matches('/')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_path_is_trusted_only_with_the_runs_name() {
        let dir = std::env::temp_dir().join(format!("baton-cg-{}", std::process::id()));
        let good = dir.join(name("j", "20120124T160000Z-1"));
        std::fs::create_dir_all(&good).unwrap();
        std::fs::write(good.join("cgroup.procs"), "12\n34\n").unwrap();
        let inner = good.join(name("k", "20120124T160001Z-2"));
        std::fs::create_dir_all(&inner).unwrap();
        std::fs::write(inner.join("cgroup.procs"), "56\n").unwrap();
        assert_eq!(members(&good, "j", "20120124T160000Z-1"), [12, 34, 56]);
        // Another run's, or any other directory: nothing.
        assert!(members(&good, "j", "20120124T160000Z-2").is_empty());
        assert!(members(&dir, "j", "20120124T160000Z-1").is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
