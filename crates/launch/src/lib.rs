//! The job runner behind `baton-run`: a cron tick runs a command under CFEngine's rules
//! (`ifelapsed`, `expireafter`), a single-instance lock, a time-out, retries and
//! `--once-per`, then publishes outcome signals and appends a history record.
//!
//! It owns `STATE_DIR/jobs/`, `STATE_DIR/history/` and `STATE_DIR/logs/`; signals go
//! through `baton-store`.

pub mod cgroup;
pub mod cli;
pub mod history;
pub mod job;
pub mod metrics;
pub mod once_per;
pub mod ping;
pub mod process;
pub mod runner;
pub mod supervise;

pub use runner::{run_job, Report, RunSpec};
