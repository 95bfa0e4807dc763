//! End-to-end tests: the built binaries, driven as cron and shell scripts drive them.

mod util;

mod cfengine;
mod classes_cli;
mod crash;
mod cron;
mod etcd_store;
mod monitoring;
mod package;
mod peers;
mod run_cli;
mod security;
mod serve_bounds;
mod signal_cli;
mod time;
mod workflows;
