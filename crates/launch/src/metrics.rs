//! Metrics in the Prometheus text exposition format (version 0.0.4): a small writer that
//! escapes label values and help text as the format requires, and the families a host
//! exports: per job (from its run history), per host (its live signals). `baton-run
//! --metrics-file` writes this text for node_exporter's textfile collector and
//! `baton-serve` answers it at `GET /metrics`, adding its own request families.
//!
//! Why not a client crate: the official `prometheus-client` writes OpenMetrics (a `# EOF`
//! line, counters typed without `_total`), which node_exporter's textfile collector does
//! not read as the 0.0.4 text format; and every value here is computed afresh from files
//! at each scrape, so a registry of live metric objects would be a detour. The format is
//! small; `promtool check metrics` checks the output in the tests.

use crate::history::{self, Record, Totals};
use baton_core::fsutil::write_atomic_mode;
use baton_core::lock::lock_file;
use baton_core::Result;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

/// The mode of the `--metrics-file` text: node_exporter reads it as another user. It
/// holds job, signal and host names, times and counts, nothing else.
pub const METRICS_FILE_MODE: u32 = 0o644;

/// The content type of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The outcomes every job exports a `baton_job_runs_total` series for, zeros included,
/// so that `increase()` sees a series from the first scrape.
pub const OUTCOMES: [&str; 6] = ["ran", "failed", "timeout", "skipped", "busy", "error"];

/// A metric family's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// The text of one exposition: families, each a `# HELP` and `# TYPE` line and its
/// samples. Write every sample of a family right after its [`Exposition::family`].
#[derive(Debug, Default)]
pub struct Exposition {
    text: String,
}

impl Exposition {
    pub fn new() -> Exposition {
        Exposition::default()
    }

    /// Start family `name` (for a counter, the name ends in `_total`).
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.text, "# TYPE {name} {}", kind.as_str());
    }

    /// One sample: `name{labels} value`.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{k}=\"{}\"", escape_label(v));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {}", format_value(value));
    }

    /// The samples of one histogram: `counts` holds the observations per bucket, not
    /// cumulated, one per upper bound in `bounds` and a last one past every bound; then
    /// `+Inf`, `_sum` and `_count`.
    pub fn histogram(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        bounds: &[f64],
        counts: &[u64],
        sum: f64,
    ) {
        let mut cumulative = 0u64;
        let bucket = format!("{name}_bucket");
        for (bound, n) in bounds.iter().zip(counts) {
            cumulative += n;
            let le = format_value(*bound);
            let mut with_le = labels.to_vec();
            with_le.push(("le", &le));
            self.sample(&bucket, &with_le, cumulative as f64);
        }
        let total: u64 = counts.iter().sum();
        let mut with_le = labels.to_vec();
        with_le.push(("le", "+Inf"));
        self.sample(&bucket, &with_le, total as f64);
        self.sample(&format!("{name}_sum"), labels, sum);
        self.sample(&format!("{name}_count"), labels, total as f64);
    }

    pub fn into_text(self) -> String {
        self.text
    }
}

/// A label value: backslash, double quote and line feed escaped.
pub fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Help text: backslash and line feed escaped.
fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Whole numbers without a fraction (timestamps, counts), others as Rust prints them.
fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

fn seconds(t: DateTime<Utc>) -> f64 {
    t.timestamp() as f64
}

/// What the metrics say about one job: its last run, its last success and its run counts.
#[derive(Debug, Clone, PartialEq)]
pub struct JobSummary {
    pub job: String,
    /// The last tick that ran the command (succeeded, failed or timed out).
    pub last_run: Option<Record>,
    /// The last tick whose command succeeded.
    pub last_success: Option<Record>,
    /// Ticks by outcome label, over the job's whole history.
    pub totals: Totals,
}

/// The label a history record counts under in `baton_job_runs_total`: `ran` for a
/// success, `timeout` for a run killed at `--timeout`, else the outcome's own name.
pub fn outcome_label(record: &Record) -> &'static str {
    match record.outcome.as_str() {
        "repaired" => "ran",
        "failed" if record.status == baton_core::error::ExitStatus::TIMED_OUT.code() => "timeout",
        other => other,
    }
}

/// Whether the tick ran the command.
pub fn ran_command(record: &Record) -> bool {
    matches!(outcome_label(record), "ran" | "failed" | "timeout")
}

/// A summary per job in `history_dir`, sorted by job name; `admit` picks the jobs.
pub fn job_summaries(history_dir: &Path, admit: &dyn Fn(&str) -> bool) -> Result<Vec<JobSummary>> {
    let mut out = Vec::new();
    for job in history::jobs(history_dir)? {
        if !admit(&job) {
            continue;
        }
        let (records, totals) = history::read_with_totals(history_dir, &job)?;
        out.push(JobSummary {
            last_run: records.iter().rev().find(|r| ran_command(r)).cloned(),
            last_success: records
                .iter()
                .rev()
                .find(|r| outcome_label(r) == "ran")
                .cloned(),
            job,
            totals,
        });
    }
    Ok(out)
}

/// A live signal as the metrics see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignalView {
    pub name: String,
    pub set_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// The job and signal families of `host`.
pub fn render_host(ex: &mut Exposition, host: &str, jobs: &[JobSummary], signals: &[SignalView]) {
    type Pick = fn(&JobSummary) -> Option<f64>;
    let gauges: [(&str, &str, Pick); 4] = [
        (
            "baton_job_last_run_timestamp_seconds",
            "When the last run of the job's command started (Unix time).",
            |j| j.last_run.as_ref().map(|r| seconds(r.start)),
        ),
        (
            "baton_job_last_success_timestamp_seconds",
            "When the last successful run of the job ended (Unix time).",
            |j| j.last_success.as_ref().map(|r| seconds(r.end)),
        ),
        (
            "baton_job_last_duration_seconds",
            "How long the last run of the job's command took.",
            |j| {
                j.last_run
                    .as_ref()
                    .map(|r| (r.end - r.start).num_seconds().max(0) as f64)
            },
        ),
        (
            "baton_job_last_exit_code",
            "The exit status baton-run returned for the last run of the job's command.",
            |j| j.last_run.as_ref().map(|r| f64::from(r.status)),
        ),
    ];
    for (name, help, pick) in gauges {
        ex.family(name, Kind::Gauge, help);
        for j in jobs {
            if let Some(v) = pick(j) {
                ex.sample(name, &[("host", host), ("job", &j.job)], v);
            }
        }
    }
    let runs = "baton_job_runs_total";
    ex.family(
        runs,
        Kind::Counter,
        "Ticks of the job by outcome: ran (succeeded), failed, timeout, skipped (--condition false, --ifelapsed, --once-per), busy (locked), error (failed before running).",
    );
    for j in jobs {
        let mut by_label: BTreeMap<&str, u64> = OUTCOMES.iter().map(|o| (*o, 0)).collect();
        for (label, n) in &j.totals.counts {
            *by_label.entry(label.as_str()).or_default() += n;
        }
        for (label, n) in by_label {
            ex.sample(
                runs,
                &[("host", host), ("job", &j.job), ("outcome", label)],
                n as f64,
            );
        }
    }
    ex.family(
        "baton_signals_live",
        Kind::Gauge,
        "Signals of this host live now.",
    );
    ex.sample(
        "baton_signals_live",
        &[("host", host)],
        signals.len() as f64,
    );
    for (name, help, pick) in [
        (
            "baton_signal_set_timestamp_seconds",
            "When the live signal was raised (Unix time).",
            (|s: &SignalView| s.set_at) as fn(&SignalView) -> DateTime<Utc>,
        ),
        (
            "baton_signal_expiry_timestamp_seconds",
            "When the live signal expires (Unix time).",
            |s: &SignalView| s.expires_at,
        ),
    ] {
        ex.family(name, Kind::Gauge, help);
        for s in signals {
            ex.sample(
                name,
                &[("host", host), ("signal", &s.name)],
                seconds(pick(s)),
            );
        }
    }
}

/// The whole text for `host`: every job in `state_dir`'s history and `signals`.
pub fn host_text(state_dir: &Path, host: &str, signals: &[SignalView]) -> Result<String> {
    let jobs = job_summaries(&state_dir.join("history"), &|_| true)?;
    let mut ex = Exposition::new();
    render_host(&mut ex, host, &jobs, signals);
    Ok(ex.into_text())
}

/// Write `host_text` to `path` atomically (node_exporter's textfile collector reads whole
/// files), mode 0644 so that node_exporter, another user, can read it. Writers take
/// `STATE_DIR/history/.metrics.lock`, so a slower writer can never replace a newer text
/// with an older one.
pub fn write_file(path: &Path, state_dir: &Path, host: &str, signals: &[SignalView]) -> Result<()> {
    let lock_path = state_dir.join("history").join(".metrics.lock");
    if let Some(dir) = lock_path.parent() {
        baton_core::fsutil::ensure_dir(dir)?;
    }
    let _lock = lock_file(&lock_path, std::time::Duration::from_secs(10))?;
    let text = host_text(state_dir, host, signals)?;
    write_atomic_mode(path, text.as_bytes(), METRICS_FILE_MODE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_and_help_are_escaped() {
        assert_eq!(escape_label(r#"a\b"c"#), r#"a\\b\"c"#);
        assert_eq!(escape_label("line\nfeed"), "line\\nfeed");
        assert_eq!(escape_help("a\\b\nc"), "a\\\\b\\nc");
        let mut ex = Exposition::new();
        ex.family("x_total", Kind::Counter, "X.");
        ex.sample("x_total", &[("job", "a\"b")], 3.0);
        assert_eq!(
            ex.into_text(),
            "# HELP x_total X.\n# TYPE x_total counter\nx_total{job=\"a\\\"b\"} 3\n"
        );
    }

    #[test]
    fn values_print_as_the_format_wants() {
        assert_eq!(format_value(1_327_423_500.0), "1327423500");
        assert_eq!(format_value(0.25), "0.25");
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(f64::NAN), "NaN");
    }

    #[test]
    fn histograms_are_cumulative() {
        let mut ex = Exposition::new();
        ex.histogram("d_seconds", &[], &[0.1, 1.0], &[2, 1, 4], 9.5);
        assert_eq!(
            ex.into_text(),
            "d_seconds_bucket{le=\"0.1\"} 2\nd_seconds_bucket{le=\"1\"} 3\nd_seconds_bucket{le=\"+Inf\"} 7\nd_seconds_sum 9.5\nd_seconds_count 7\n"
        );
    }
}
