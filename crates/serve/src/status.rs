//! `GET /`: the status page, one self-contained HTML document (inline CSS, no script,
//! no external asset). It shows this host's live signals with their age and expiry, its
//! jobs' recent ticks (outcome, start, duration, why a tick did not run), and, with
//! `--peers`, every peer's signals and jobs on one timeline of the last day, where a
//! failure is red, a success green and a gap an empty stretch; a peer that could not be
//! asked is shown as such, with the reason.
//!
//! The page renders what it is given: which jobs, signals and outputs a viewer may see is
//! decided by the caller, from this host's access file, for its own data and for what it
//! relays from peers alike (`crate::relay`).

use baton_proto::{PeerJob, PeerRun, PeerSignal};
use chrono::{DateTime, TimeDelta, Utc};
use std::collections::BTreeMap;
use std::fmt::Write;

/// The span of the timeline.
pub const WINDOW: TimeDelta = TimeDelta::days(1);
/// Ticks listed per job in the local host's table, newest first.
const RECENT: usize = 12;
/// The most ticks per job a host's status carries (`/v1/history`, the page, a peer's
/// answer): the newest.
pub const MAX_RUNS: usize = 500;

/// What one host says about itself.
#[derive(Debug, Clone)]
pub struct HostStatus {
    pub host: String,
    /// The host's clock when it answered.
    pub now: DateTime<Utc>,
    pub signals: Vec<PeerSignal>,
    pub jobs: Vec<PeerJob>,
    /// The output of a job's last run, for the jobs the viewer is admitted to
    /// (`allow output:PATTERN`): job name to the tail of its log.
    pub outputs: BTreeMap<String, String>,
    /// What the page says of the host besides (`no history (older baton-serve)`, an
    /// answer cut to the page's bounds).
    pub notes: Vec<String>,
}

/// A peer from `--peers`, as it answered.
#[derive(Debug, Clone)]
pub enum PeerStatus {
    Answered(HostStatus),
    /// The peer could not be asked (down, denied, slow): its name and why.
    Unreachable {
        name: String,
        reason: String,
    },
}

/// HTML-escape text for an element or a quoted attribute.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Direction overrides and isolates (Unicode TR9) would let a name read as
            // another; control characters have no place on the page. Shown as U+FFFD.
            '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}' => {
                out.push('\u{fffd}')
            }
            c if c.is_control() && c != '\n' && c != '\t' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// `3h 5m`, `42s`: a span for people.
fn span(d: TimeDelta) -> String {
    let s = d.num_seconds();
    let (sign, s) = if s < 0 { ("-", -s) } else { ("", s) };
    let text = match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m {}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h {}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d {}h", s / 86_400, (s % 86_400) / 3600),
    };
    format!("{sign}{text}")
}

fn time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// The class a tick is drawn with: `ran`, `failed`, `timeout`, `skipped`, `busy`.
fn run_class(r: &PeerRun) -> &'static str {
    match r.outcome.as_str() {
        "repaired" => "ran",
        "failed" if r.status == 124 => "timeout",
        "failed" => "failed",
        "skipped" => "skipped",
        "busy" => "busy",
        _ => "other",
    }
}

fn ran(r: &PeerRun) -> bool {
    matches!(run_class(r), "ran" | "failed" | "timeout")
}

const STYLE: &str = r#"
body{font:14px/1.4 "DejaVu Sans",sans-serif;margin:1.5em;color:#222;background:#fafafa}
h1{font-size:1.4em;margin:0 0 .2em}h2{font-size:1.15em;margin:1.6em 0 .4em}
.muted{color:#777}.legend span{margin-right:1em}
.swatch{display:inline-block;width:.9em;height:.9em;vertical-align:-.1em;margin-right:.3em;border-radius:2px}
table{border-collapse:collapse;margin:.3em 0 1em}td,th{padding:.2em .7em;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}
th{background:#eee}
.timeline{position:relative;border:1px solid #ccc;background:#fff}
.hostrow{border-top:2px solid #999}.hostrow:first-child{border-top:0}
.hostname{font-weight:bold;padding:.3em .5em;background:#f0f0f0}
.row{display:flex;align-items:center;height:1.6em;border-top:1px solid #eee}
.label{width:22em;flex:none;padding:0 .5em;overflow:hidden;white-space:nowrap;text-overflow:ellipsis;font-size:.9em}
.track{position:relative;flex:1;height:100%;background:repeating-linear-gradient(90deg,#fff 0,#fff calc(100%/24 - 1px),#eee calc(100%/24 - 1px),#eee calc(100%/24))}
.mark{position:absolute;top:15%;height:70%;min-width:3px;border-radius:1px}
.bar{position:absolute;top:30%;height:40%;background:#4a7fd0;opacity:.7;border-radius:2px;min-width:3px}
i.ran{background:#2e9d4a}i.failed{background:#d93025}i.timeout{background:#8b0000}i.skipped{background:#bbb}i.busy{background:#f0a020}i.other{background:#555}
.mark.skipped,.mark.busy{top:35%;height:30%}
.badge{display:inline-block;padding:0 .4em;border-radius:3px;color:#fff;font-size:.8em;margin-right:.4em}
.badge.failing{background:#d93025}.badge.stale{background:#f0a020}.badge.ok{background:#2e9d4a}
.unreachable .hostname{background:#fde2e0;color:#a50e0e}
.unreachable .reason{padding:.4em .6em;color:#a50e0e}
.note{padding:.1em .6em;font-size:.9em}
.axisrow{display:flex;margin:0 1px}.axis{display:flex;flex:1;font-size:.75em;color:#777}.axis span{flex:1}
tr.failed td:first-child,tr.timeout td:first-child{color:#d93025;font-weight:bold}
tr.skipped,tr.busy{color:#777}
pre{background:#222;color:#eee;padding:.5em;max-height:15em;overflow:auto;font-size:.85em}
"#;

/// The whole page.
pub fn render(local: &HostStatus, peers: &[PeerStatus], now: DateTime<Utc>) -> String {
    let mut h = String::new();
    let from = now - WINDOW;
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>Baton on {host}</title><style>{STYLE}</style></head><body>\
         <h1>Baton on {host}</h1><p class=\"muted\">as of {now} UTC; the timeline shows {from} to {now}</p>",
        host = esc(&local.host),
        now = time(now),
        from = time(from),
    );
    h.push_str(
        "<p class=\"legend\"><span><i class=\"swatch ran\"></i>ran</span>\
         <span><i class=\"swatch failed\"></i>failed</span>\
         <span><i class=\"swatch timeout\"></i>timed out</span>\
         <span><i class=\"swatch skipped\"></i>skipped</span>\
         <span><i class=\"swatch busy\"></i>busy</span>\
         <span><i class=\"swatch\" style=\"background:#4a7fd0\"></i>signal live</span></p>",
    );
    h.push_str("<h2>The chain, last day</h2><div class=\"axisrow\"><div class=\"label\"></div><div class=\"axis\">");
    for i in 0..24 {
        let _ = write!(
            h,
            "<span>{}</span>",
            (from + TimeDelta::hours(i)).format("%H:%M")
        );
    }
    h.push_str("</div></div><div class=\"timeline\" id=\"timeline\">");
    timeline_host(&mut h, local, from, now);
    for p in peers {
        match p {
            PeerStatus::Answered(s) => timeline_host(&mut h, s, from, now),
            PeerStatus::Unreachable { name, reason } => {
                let _ = write!(
                    h,
                    "<div class=\"hostrow peer unreachable\" data-host=\"{n}\">\
                     <div class=\"hostname\">{n} <span class=\"badge failing\">could not be asked</span></div>\
                     <div class=\"reason\">{r}</div></div>",
                    n = esc(name),
                    r = esc(reason)
                );
            }
        }
    }
    h.push_str("</div>");
    local_details(&mut h, local);
    h.push_str("</body></html>\n");
    h
}

/// Where `t` falls on the timeline, in percent.
fn pos(t: DateTime<Utc>, from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    let total = (to - from).num_seconds().max(1) as f64;
    ((t - from).num_seconds() as f64 / total * 100.0).clamp(0.0, 100.0)
}

fn timeline_host(h: &mut String, s: &HostStatus, from: DateTime<Utc>, to: DateTime<Utc>) {
    let _ = write!(
        h,
        "<div class=\"hostrow host\" data-host=\"{n}\"><div class=\"hostname\">{n}\
         <span class=\"muted\"> (its clock: {t})</span></div>",
        n = esc(&s.host),
        t = time(s.now)
    );
    for note in &s.notes {
        let _ = write!(h, "<div class=\"note muted\">{}</div>", esc(note));
    }
    if s.jobs.is_empty() && s.signals.is_empty() {
        h.push_str("<div class=\"row\"><div class=\"label muted\">no jobs or signals it admits you to</div></div>");
    }
    for job in &s.jobs {
        let last = job.runs.iter().rev().find(|r| ran(r));
        let last_ok = job.runs.iter().rev().find(|r| run_class(r) == "ran");
        let badge = match (last, last_ok) {
            (Some(r), _) if run_class(r) != "ran" => {
                "<span class=\"badge failing\">failing</span>".to_string()
            }
            (Some(_), Some(ok)) => format!(
                "<span class=\"badge ok\">ok {} ago</span>",
                span(s.now - ok.end)
            ),
            _ => "<span class=\"badge stale\">no run</span>".to_string(),
        };
        let _ = write!(
            h,
            "<div class=\"row job\" data-job=\"{j}\"><div class=\"label\" title=\"{j}\">{badge}{j}</div><div class=\"track\">",
            j = esc(&job.job)
        );
        for r in job.runs.iter().filter(|r| r.end >= from) {
            let class = run_class(r);
            let title = format!(
                "{} {} at {}{}",
                job.job,
                class,
                time(r.start),
                r.reason
                    .as_deref()
                    .map(|w| format!(": {w}"))
                    .unwrap_or_default()
            );
            let left = pos(r.start, from, to);
            let width = (pos(r.end, from, to) - left).max(0.0);
            let _ = write!(
                h,
                "<i class=\"mark {class}\" data-outcome=\"{class}\" style=\"left:{left:.3}%;width:{width:.3}%\" title=\"{}\"></i>",
                esc(&title)
            );
        }
        h.push_str("</div></div>");
    }
    for sig in &s.signals {
        let left = pos(sig.set_at, from, to);
        let right = pos(sig.expires_at, from, to);
        let _ = write!(
            h,
            "<div class=\"row signal\" data-signal=\"{n}\"><div class=\"label\">signal {n}</div><div class=\"track\">\
             <i class=\"bar\" style=\"left:{left:.3}%;width:{w:.3}%\" title=\"{n}: {a} to {b}\"></i></div></div>",
            n = esc(&sig.name),
            w = (right - left).max(0.0),
            a = time(sig.set_at),
            b = time(sig.expires_at)
        );
    }
    h.push_str("</div>");
}

fn local_details(h: &mut String, s: &HostStatus) {
    let _ = write!(h, "<h2>Live signals on {}</h2>", esc(&s.host));
    if s.signals.is_empty() {
        h.push_str("<p class=\"muted\" id=\"signals\">none</p>");
    } else {
        h.push_str(
            "<table id=\"signals\"><tr><th>signal</th><th>raised</th><th>age</th><th>expires</th><th>expires in</th></tr>",
        );
        for sig in &s.signals {
            let _ = write!(
                h,
                "<tr data-signal=\"{n}\"><td>{n}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                time(sig.set_at),
                span(s.now - sig.set_at),
                time(sig.expires_at),
                span(sig.expires_at - s.now),
                n = esc(&sig.name)
            );
        }
        h.push_str("</table>");
    }
    let _ = write!(h, "<h2>Jobs on {}</h2>", esc(&s.host));
    if s.jobs.is_empty() {
        h.push_str("<p class=\"muted\">none in the last day</p>");
    }
    for job in &s.jobs {
        let _ = write!(
            h,
            "<h3>{j}</h3><table class=\"runs\" data-job=\"{j}\"><tr><th>outcome</th><th>start</th><th>duration</th><th>status</th><th>why</th></tr>",
            j = esc(&job.job)
        );
        for r in job.runs.iter().rev().take(RECENT) {
            let class = run_class(r);
            let _ = write!(
                h,
                "<tr class=\"run {class}\" data-outcome=\"{class}\"><td>{class}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                time(r.start),
                span(r.end - r.start),
                r.status,
                esc(r.reason.as_deref().unwrap_or(""))
            );
        }
        h.push_str("</table>");
        if let Some(out) = s.outputs.get(&job.job) {
            let _ = write!(
                h,
                "<details class=\"output\"><summary>output of the last run</summary><pre>{}</pre></details>",
                esc(out)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn escapes_and_spans() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(esc("did_\u{202e}x\u{1b}[2J"), "did_\u{fffd}x\u{fffd}[2J");
        assert_eq!(span(TimeDelta::seconds(42)), "42s");
        assert_eq!(span(TimeDelta::seconds(3725)), "1h 2m");
        assert_eq!(span(TimeDelta::seconds(-90)), "-1m 30s");
    }

    #[test]
    fn a_page_shows_failures_and_unreachable_peers_and_escapes_names() {
        let now = at("2012-01-24T18:00:00Z");
        let run = |start: &str, outcome: &str, status: u8| PeerRun {
            run: "r".into(),
            start: at(start),
            end: at(start),
            outcome: outcome.into(),
            status,
            reason: None,
        };
        let local = HostStatus {
            host: "h<1>".into(),
            now,
            signals: vec![],
            jobs: vec![PeerJob {
                job: "my_job".into(),
                runs: vec![
                    run("2012-01-24T16:00:00Z", "repaired", 0),
                    run("2012-01-24T17:00:00Z", "failed", 1),
                ],
            }],
            outputs: BTreeMap::new(),
            notes: vec!["no history (older baton-serve)".into()],
        };
        let page = render(
            &local,
            &[PeerStatus::Unreachable {
                name: "Host3".into(),
                reason: "connection refused".into(),
            }],
            now,
        );
        assert!(page.contains("<title>Baton on h&lt;1&gt;</title>"));
        assert!(page.contains("class=\"run failed\""));
        assert!(page.contains("badge failing"));
        assert!(page.contains("data-host=\"Host3\""));
        assert!(page.contains("connection refused"));
        assert!(page.contains("<div class=\"note muted\">no history (older baton-serve)</div>"));
        assert!(!page.contains("<script"));
        assert!(!page.contains("http://") && !page.contains("https://"));
    }
}
