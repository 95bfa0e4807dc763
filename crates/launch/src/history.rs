//! Run history: one JSON line per run in `STATE_DIR/history/JOB.jsonl`, appended under a
//! lock and trimmed to a bounded length.

use crate::job::JobPaths;
use baton_core::fsutil::write_atomic;
use baton_core::lock::lock_file;
use baton_core::{Error, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;

pub const HISTORY_VERSION: u32 = 1;
/// Past this many records, the oldest are dropped down to [`KEEP_RECORDS`].
const MAX_RECORDS: usize = 2000;
const KEEP_RECORDS: usize = 1000;

/// What became of a tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The command ran and exited 0.
    Repaired,
    /// The command ran and failed: non-zero, killed, timed out, or could not start.
    Failed,
    /// Not run: `--ifelapsed` or `--once-per` said it is not time.
    Skipped,
    /// Not run: another run of the job holds its lock.
    Busy,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Repaired => "repaired",
            Outcome::Failed => "failed",
            Outcome::Skipped => "skipped",
            Outcome::Busy => "busy",
        }
    }
}

/// One tick of one job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub version: u32,
    pub job: String,
    pub run: String,
    pub host: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub outcome: Outcome,
    /// The exit status baton-run returned.
    pub status: u8,
    pub attempts: u32,
    /// Why it was skipped, busy, or failed to start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
}

/// Append `record` to its job's history.
pub fn append(paths: &JobPaths, record: &Record) -> Result<()> {
    let _lock = lock_file(&paths.history_lock, std::time::Duration::from_secs(10))?;
    let mut line = serde_json::to_vec(record).map_err(|e| Error::new(e.to_string()))?;
    line.push(b'\n');
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&paths.history)
        .map_err(|e| Error::io("open", &paths.history, e))?;
    file.write_all(&line)
        .and_then(|_| file.sync_data())
        .map_err(|e| Error::io("append to", &paths.history, e))?;
    drop(file);
    let text = std::fs::read_to_string(&paths.history).unwrap_or_default();
    let count = text.lines().count();
    if count > MAX_RECORDS {
        let kept: Vec<&str> = text.lines().skip(count - KEEP_RECORDS).collect();
        write_atomic(&paths.history, format!("{}\n", kept.join("\n")).as_bytes())?;
    }
    Ok(())
}

/// Every record of one job (or of every job in `history_dir`), oldest first. Lines that
/// are not records (a torn last line after a crash) are skipped.
pub fn read(history_dir: &Path, job: Option<&str>) -> Result<Vec<Record>> {
    let files: Vec<std::path::PathBuf> = match job {
        Some(j) => vec![history_dir.join(format!("{j}.jsonl"))],
        None => match std::fs::read_dir(history_dir) {
            Ok(d) => d
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(Error::io("read", history_dir, e)),
        },
    };
    let mut records = Vec::new();
    for f in files {
        let text = match std::fs::read_to_string(&f) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io("read", &f, e)),
        };
        records.extend(
            text.lines()
                .filter_map(|l| serde_json::from_str::<Record>(l).ok()),
        );
    }
    records.sort_by(|a, b| (a.start, &a.job, &a.run).cmp(&(b.start, &b.job, &b.run)));
    Ok(records)
}
