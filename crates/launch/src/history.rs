//! Run history: one JSON line per run in `STATE_DIR/history/JOB.jsonl`, appended under a
//! lock and trimmed to a bounded length.

use crate::job::JobPaths;
use baton_core::fsutil::write_atomic;
use baton_core::lock::lock_file;
use baton_core::safefs;
use baton_core::{Error, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

pub const HISTORY_VERSION: u32 = 1;
/// Past this many records, the oldest are dropped down to [`KEEP_RECORDS`].
const MAX_RECORDS: usize = 2000;
const KEEP_RECORDS: usize = 1000;
/// A history file larger than this is not one Baton wrote (2000 records of a few hundred bytes).
const MAX_HISTORY_BYTES: u64 = 64 * 1024 * 1024;

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
    /// Not run: the tick failed before it could run the command (a damaged state file,
    /// an unusable store).
    Error,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Repaired => "repaired",
            Outcome::Failed => "failed",
            Outcome::Skipped => "skipped",
            Outcome::Busy => "busy",
            Outcome::Error => "error",
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

/// Append `record` to its job's history. A torn last line (a write cut short by a full
/// disk or a crash) is ended first, so it costs only itself, never the new record.
pub fn append(paths: &JobPaths, record: &Record) -> Result<()> {
    let _lock = lock_file(&paths.history_lock, std::time::Duration::from_secs(10))?;
    let mut line = serde_json::to_vec(record).map_err(|e| Error::new(e.to_string()))?;
    line.push(b'\n');
    let mut file = safefs::open_append(&paths.history)?;
    let len = file
        .metadata()
        .map_err(|e| Error::io("read", &paths.history, e))?
        .len();
    if len > 0 {
        // A torn last line (a full disk, a crash) is ended, so it costs only itself.
        let mut last = [0u8; 1];
        let mut reader = safefs::open_read(&paths.history)?
            .ok_or_else(|| Error::new(format!("{} vanished", paths.history.display())))?;
        reader
            .seek(SeekFrom::Start(len - 1))
            .and_then(|_| reader.read_exact(&mut last))
            .map_err(|e| Error::io("read", &paths.history, e))?;
        if last[0] != b'\n' {
            line.insert(0, b'\n');
        }
    }
    file.write_all(&line)
        .and_then(|_| file.sync_data())
        .map_err(|e| Error::io("append to", &paths.history, e))?;
    drop(file);
    let text = read_text(&paths.history)?.unwrap_or_default();
    let count = text.lines().count();
    if count > MAX_RECORDS {
        write_atomic(
            &paths.history,
            trimmed(&paths.name, &text, KEEP_RECORDS).as_bytes(),
        )?;
    }
    Ok(())
}

/// Ticks by outcome label (`ran`, `failed`, `timeout`, `skipped`, `busy`: see
/// [`crate::metrics::outcome_label`]), over a job's whole history.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub counts: std::collections::BTreeMap<String, u64>,
}

impl Totals {
    fn add(&mut self, record: &Record) {
        *self
            .counts
            .entry(crate::metrics::outcome_label(record).to_string())
            .or_default() += 1;
    }
}

/// The first line of a trimmed history, not a record (readers of records skip it): the
/// totals of the records trimmed away, so that run counters never go back, and the last
/// run and the last success among them, so that trimming never loses when the job last
/// ran or last succeeded (a `* * * * *` job skipped 1000 times a day would, else).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Trimmed {
    version: u32,
    job: String,
    trimmed: Totals,
    /// The last tick among those trimmed away that ran the command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_run: Option<Record>,
    /// The last success among those trimmed away.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_success: Option<Record>,
}

impl Trimmed {
    /// Fold `record`, trimmed away, into the header.
    fn add(&mut self, record: &Record) {
        self.trimmed.add(record);
        self.keep_latest(record);
    }

    /// Keep `record` if it is the latest run or success seen.
    fn keep_latest(&mut self, record: &Record) {
        let later = |kept: &Option<Record>| kept.as_ref().is_none_or(|k| k.start <= record.start);
        if crate::metrics::ran_command(record) && later(&self.last_run) {
            self.last_run = Some(record.clone());
        }
        if crate::metrics::outcome_label(record) == "ran" && later(&self.last_success) {
            self.last_success = Some(record.clone());
        }
    }

    /// Fold an earlier header into this one.
    fn merge(&mut self, earlier: Trimmed) {
        for (k, n) in earlier.trimmed.counts {
            *self.trimmed.counts.entry(k).or_default() += n;
        }
        for r in [earlier.last_run, earlier.last_success].iter().flatten() {
            self.keep_latest(r);
        }
    }

    /// The records the header keeps, once each (the last run may be the last success).
    fn records(self) -> Vec<Record> {
        let mut out: Vec<Record> = self.last_run.into_iter().collect();
        if let Some(s) = self.last_success {
            if !out.iter().any(|r| r.run == s.run && r.start == s.start) {
                out.push(s);
            }
        }
        out
    }
}

/// The history text keeping the last `keep` lines, the others folded into a [`Trimmed`]
/// first line, replaced whole in one write.
fn trimmed(job: &str, text: &str, keep: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let cut = lines.len().saturating_sub(keep);
    let mut head = Trimmed {
        version: HISTORY_VERSION,
        job: job.to_string(),
        ..Trimmed::default()
    };
    for line in &lines[..cut] {
        if let Ok(t) = serde_json::from_str::<Trimmed>(line) {
            head.merge(t);
        } else if let Ok(r) = serde_json::from_str::<Record>(line) {
            head.add(&r);
        }
    }
    let mut out = serde_json::to_string(&head).unwrap_or_default();
    out.push('\n');
    for line in &lines[cut..] {
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The records of one history file, oldest first, and its totals. The records are the
/// file's own and those its trim header keeps (the last run and the last success trimmed
/// away, counted in the header's totals, not again); lines that are neither a record nor
/// a header (a torn line after a crash or a full disk) are skipped, never fatal.
fn parse(bytes: &[u8]) -> (Vec<Record>, Totals) {
    let mut totals = Totals::default();
    let mut records = Vec::new();
    for line in bytes.split(|b| *b == b'\n') {
        if let Ok(r) = serde_json::from_slice::<Record>(line) {
            totals.add(&r);
            records.push(r);
        } else if let Ok(t) = serde_json::from_slice::<Trimmed>(line) {
            for (k, n) in &t.trimmed.counts {
                *totals.counts.entry(k.clone()).or_default() += n;
            }
            records.extend(t.records());
        }
    }
    records.sort_by(|a, b| (a.start, &a.run).cmp(&(b.start, &b.run)));
    (records, totals)
}

/// The jobs that have a history in `history_dir`, sorted.
pub fn jobs(history_dir: &Path) -> Result<Vec<String>> {
    if !safefs::check_dir(history_dir)? {
        return Ok(Vec::new());
    }
    let mut jobs: Vec<String> = match std::fs::read_dir(history_dir) {
        Ok(d) => d
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_str()?.to_string();
                let job = name.strip_suffix(".jsonl")?;
                (!job.starts_with('.')).then(|| job.to_string())
            })
            .collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(Error::io("read", history_dir, e)),
    };
    jobs.sort();
    Ok(jobs)
}

/// One job's records, oldest first, and its totals: the records' and those trimmed away.
pub fn read_with_totals(history_dir: &Path, job: &str) -> Result<(Vec<Record>, Totals)> {
    let path = history_dir.join(format!("{job}.jsonl"));
    Ok(safefs::read_bounded(&path, MAX_HISTORY_BYTES)?
        .map(|bytes| parse(&bytes))
        .unwrap_or_default())
}

/// The history files' job names that `name`, as the user gave it, may mean: the job of
/// that exact name, else jobs whose name was derived from a command ending in it
/// (`my_job` and `/usr/local/bin/my_job` find `my_job_e224597ca50ad4f3`; with no such
/// job, `usr_local_bin_my_job_e224597ca50ad4f3`, the name earlier versions derived).
pub fn find_jobs(history_dir: &Path, name: &str) -> Result<Vec<String>> {
    let jobs = jobs(history_dir)?;
    if jobs.iter().any(|j| j == name) {
        return Ok(vec![name.to_string()]);
    }
    let readable = |n: &str| baton_core::name::canonify(n).trim_matches('_').to_string();
    let want = readable(name);
    let base = readable(
        Path::new(name)
            .file_name()
            .and_then(|b| b.to_str())
            .unwrap_or(name),
    );
    // A derived name whose readable part is the program's base name wins (the name this
    // version derives), then one that is the whole of it, then ones ending in it (names
    // earlier versions derived from a path or the arguments).
    let mut tiers: [Vec<String>; 3] = Default::default();
    for j in jobs {
        match derived_prefix(&j) {
            Some(p) if p == base => tiers[0].push(j),
            Some(p) if p == want => tiers[1].push(j),
            Some(p) if p.ends_with(&format!("_{want}")) => tiers[2].push(j),
            _ => {}
        }
    }
    let mut found = tiers
        .into_iter()
        .find(|t| !t.is_empty())
        .unwrap_or_default();
    found.sort();
    Ok(found)
}

/// The readable part of a derived job name (`PREFIX_<16 hex digits>`).
fn derived_prefix(job: &str) -> Option<&str> {
    let (prefix, hash) = job.rsplit_once('_')?;
    (hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit())).then_some(prefix)
}

/// A history file, bounded, never through a link or from a FIFO ([`safefs`]).
fn read_text(path: &Path) -> Result<Option<String>> {
    Ok(safefs::read_bounded(path, MAX_HISTORY_BYTES)?
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned()))
}

/// Every record of one job (or of every job in `history_dir`), oldest first, the last run
/// and last success a trim keeps included ([`parse`]).
pub fn read(history_dir: &Path, job: Option<&str>) -> Result<Vec<Record>> {
    let files: Vec<std::path::PathBuf> = match job {
        Some(j) => vec![history_dir.join(format!("{j}.jsonl"))],
        None if !safefs::check_dir(history_dir)? => Vec::new(),
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
        let Some(bytes) = safefs::read_bounded(&f, MAX_HISTORY_BYTES)? else {
            continue;
        };
        // A torn line (cut short, or zeros after a crash) is skipped, not fatal.
        records.extend(parse(&bytes).0);
    }
    records.sort_by(|a, b| (a.start, &a.job, &a.run).cmp(&(b.start, &b.job, &b.run)));
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(i: i64, outcome: Outcome, status: u8) -> Record {
        let t = DateTime::from_timestamp(1_327_420_000 + i * 300, 0).unwrap();
        Record {
            version: HISTORY_VERSION,
            job: "j".into(),
            run: format!("r{i:05}"),
            host: "h".into(),
            start: t,
            end: t,
            outcome,
            status,
            attempts: 1,
            reason: None,
            log: None,
        }
    }

    #[test]
    fn trimming_keeps_the_totals() {
        let kinds = [
            (Outcome::Repaired, 0),
            (Outcome::Failed, 1),
            (Outcome::Failed, 124),
            (Outcome::Skipped, 76),
        ];
        let line = |i: usize| {
            let (o, s) = kinds[i % kinds.len()];
            serde_json::to_string(&record(i as i64, o, s)).unwrap() + "\n"
        };
        // Trim twice: the second trim carries the first one's totals.
        let text: String = (0..10).map(line).collect();
        let mut text = trimmed("j", &text, 4);
        text.extend((10..17).map(line));
        let text = trimmed("j", &text, 3);
        let dir = std::env::temp_dir().join(format!("baton-history-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("j.jsonl"), &text).unwrap();
        let (records, totals) = read_with_totals(&dir, "j").unwrap();
        let runs: Vec<&str> = records.iter().map(|r| r.run.as_str()).collect();
        // The kept three, after the last success (r12) and the last run (r13, failed)
        // the header keeps of those trimmed away.
        assert_eq!(runs, ["r00012", "r00013", "r00014", "r00015", "r00016"]);
        let want: Vec<(&str, u64)> =
            vec![("failed", 4), ("ran", 5), ("skipped", 4), ("timeout", 4)];
        let got: Vec<(&str, u64)> = totals
            .counts
            .iter()
            .map(|(k, n)| (k.as_str(), *n))
            .collect();
        assert_eq!(got, want);
        assert_eq!(read(&dir, Some("j")).unwrap(), records);
        assert_eq!(jobs(&dir).unwrap(), ["j"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn trimming_keeps_the_last_run_and_the_last_success() {
        // The reviewer's case: 1 success and 1999 skipped ticks, a success, 1000 skipped
        // ticks, each appended as append() does (trimmed once past MAX_RECORDS).
        fn tick(text: &mut String, i: &mut i64, outcome: Outcome, status: u8) -> Record {
            let mut r = record(*i, outcome, status);
            r.end = r.start + chrono::Duration::seconds(3);
            text.push_str(&(serde_json::to_string(&r).unwrap() + "\n"));
            if text.lines().count() > MAX_RECORDS {
                *text = trimmed("j", text, KEEP_RECORDS);
            }
            *i += 1;
            r
        }
        let (mut text, mut i) = (String::new(), 0i64);
        tick(&mut text, &mut i, Outcome::Repaired, 0);
        for _ in 0..1999 {
            tick(&mut text, &mut i, Outcome::Skipped, 76);
        }
        let success = tick(&mut text, &mut i, Outcome::Repaired, 0);
        for _ in 0..1000 {
            tick(&mut text, &mut i, Outcome::Skipped, 76);
        }
        // Both successes are gone from the kept records: only the header has the last.
        assert!(!text.lines().skip(1).any(|l| l.contains("\"status\":0")));
        let (records, totals) = parse(text.as_bytes());
        let ran: Vec<&Record> = records
            .iter()
            .filter(|r| crate::metrics::ran_command(r))
            .collect();
        assert_eq!(ran, [&success], "the last run, also the last success, once");
        assert_eq!(totals.counts["ran"], 2);
        assert_eq!(totals.counts["skipped"], 2999);
        assert_eq!(records.len(), KEEP_RECORDS + 1);

        // A failure after the success: the last run is the failure, the last success stays.
        let (mut text, mut i) = (String::new(), 0i64);
        tick(&mut text, &mut i, Outcome::Repaired, 0);
        let success = tick(&mut text, &mut i, Outcome::Repaired, 0);
        let failed = tick(&mut text, &mut i, Outcome::Failed, 124);
        text = trimmed("j", &text, 0);
        let (records, totals) = parse(text.as_bytes());
        assert_eq!(records, [success, failed]);
        assert_eq!(totals.counts["ran"], 2);
        // An earlier version's header (counts only) still reads.
        let old = "{\"version\":1,\"job\":\"j\",\"trimmed\":{\"counts\":{\"ran\":5}}}\n";
        let (records, totals) = parse(old.as_bytes());
        assert!(records.is_empty());
        assert_eq!(totals.counts["ran"], 5);
    }

    #[test]
    fn derived_names_are_found_by_the_name_the_user_gave() {
        let dir = std::env::temp_dir().join(format!("baton-find-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for j in [
            "usr_local_bin_my_job_e224597ca50ad4f3",
            "my_job_0123456789abcdef",
            "other_job_0123456789abcdef",
            "nightly",
        ] {
            std::fs::write(dir.join(format!("{j}.jsonl")), b"").unwrap();
        }
        let find = |n: &str| find_jobs(&dir, n).unwrap();
        assert_eq!(find("nightly"), ["nightly"]);
        assert_eq!(find("my_job"), ["my_job_0123456789abcdef"]);
        assert_eq!(
            find("job"),
            [
                "my_job_0123456789abcdef",
                "other_job_0123456789abcdef",
                "usr_local_bin_my_job_e224597ca50ad4f3"
            ]
        );
        // The path given: the name this version derives wins over an earlier one.
        assert_eq!(find("/usr/local/bin/my_job"), ["my_job_0123456789abcdef"]);
        assert_eq!(
            find("/usr/local/bin/other_job"),
            ["other_job_0123456789abcdef"]
        );
        assert_eq!(find("bin/my_job"), ["my_job_0123456789abcdef"]);
        assert!(find("nosuch").is_empty());
        // Only the name an earlier version derived: found by the path or the base name.
        std::fs::remove_file(dir.join("my_job_0123456789abcdef.jsonl")).unwrap();
        for name in ["/usr/local/bin/my_job", "my_job"] {
            assert_eq!(
                find(name),
                ["usr_local_bin_my_job_e224597ca50ad4f3"],
                "{name}"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
