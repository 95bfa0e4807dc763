//! What the status page relays from `--peers`: each peer's signals and jobs, asked as this
//! host (the peer's access file decides what this host is told), then shown to a viewer
//! only as far as this host's access file admits that viewer ([`for_viewer`]), exactly as
//! this host's own signals and jobs are.
//!
//! Asking is bounded whatever the page loads do: it runs on a blocking thread, never on
//! the server's runtime; one round of asking at a time, shared by every page load that
//! wants it (single flight), its answers reused for [`FRESH`]; at most [`MAX_ASKS`] peers
//! asked at once, each bounded by `--peer-timeout`; and each answer bounded
//! ([`MAX_ANSWER`] bytes, [`MAX_SIGNALS`] signals, [`MAX_JOBS`] jobs, [`MAX_RUNS`] ticks
//! per job) before it is kept.

use crate::access::{Peer, Rules};
use crate::status::{HostStatus, PeerStatus, MAX_RUNS};
use baton_query::client::in_parallel;
use baton_query::{Client, Target};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long one round's answers are reused by later page loads.
pub const FRESH: Duration = Duration::from_secs(5);
/// Peers asked at the same moment, over all page loads.
pub const MAX_ASKS: usize = 16;
/// The largest answer read from a peer; a longer one is "bad answer: too large".
pub const MAX_ANSWER: u64 = 1024 * 1024;
/// The most signals kept of one peer's answer.
pub const MAX_SIGNALS: usize = 1000;
/// The most jobs kept of one peer's answer.
pub const MAX_JOBS: usize = 200;

/// The note on a peer that answered for its signals but has no `/v1/history`.
pub const NO_HISTORY: &str = "no history (older baton-serve)";

/// The peers `--peers` names (this host left out), and the client that asks them.
pub struct PeerView {
    pub peers: Vec<Target>,
    pub client: Client,
}

/// Asks the peers, one round at a time, and keeps the last round's answers.
pub struct Relay {
    peers: Vec<Target>,
    client: Client,
    /// The longest a round can take: each peer bounded twice (signals, then history),
    /// [`MAX_ASKS`] at a time.
    round_bound: Duration,
    state: Mutex<Round>,
    done: Condvar,
}

#[derive(Default)]
struct Round {
    /// The last round's answers and when they came.
    answers: Option<(Instant, Arc<Vec<PeerStatus>>)>,
    /// A round is under way.
    asking: bool,
}

/// Ends the round under way when dropped, whether it finished or not, and wakes the page
/// loads waiting for it.
struct Asking<'a>(&'a Relay);

impl Drop for Asking<'_> {
    fn drop(&mut self) {
        self.0.lock().asking = false;
        self.0.done.notify_all();
    }
}

impl Relay {
    pub fn new(view: PeerView, timeout: Duration) -> Relay {
        let rounds = view.peers.len().div_ceil(MAX_ASKS).max(1) as u32;
        Relay {
            peers: view.peers,
            client: view.client.with_answer_limit(MAX_ANSWER),
            round_bound: timeout * 2 * rounds + Duration::from_secs(1),
            state: Mutex::default(),
            done: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Round> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every peer's answer, in `--peers` order, at most [`FRESH`] old: the last round's,
    /// the round under way's, or a new round's. Blocks (a blocking thread, not the
    /// runtime's) for at most one round.
    pub fn answers(&self) -> Arc<Vec<PeerStatus>> {
        let waited_from = Instant::now();
        let mut round = self.lock();
        loop {
            if let Some((at, answers)) = &round.answers {
                if at.elapsed() < FRESH {
                    return Arc::clone(answers);
                }
            }
            if !round.asking {
                break;
            }
            let left = self.round_bound.saturating_sub(waited_from.elapsed());
            if left.is_zero() {
                return Arc::new(self.not_yet());
            }
            round = self
                .done
                .wait_timeout(round, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        round.asking = true;
        drop(round);
        let asking = Asking(self);
        let answers = Arc::new(
            in_parallel(&self.peers, MAX_ASKS, |t| self.ask(t))
                .into_iter()
                .zip(&self.peers)
                .map(|(answer, t)| {
                    answer.unwrap_or_else(|| PeerStatus::Unreachable {
                        name: peer_name(t),
                        reason: "not asked".into(),
                    })
                })
                .collect(),
        );
        self.lock().answers = Some((Instant::now(), Arc::clone(&answers)));
        drop(asking);
        answers
    }

    /// What a page load that waited past the round's bound shows.
    fn not_yet(&self) -> Vec<PeerStatus> {
        self.peers
            .iter()
            .map(|t| PeerStatus::Unreachable {
                name: peer_name(t),
                reason: "still being asked".into(),
            })
            .collect()
    }

    /// One peer's signals and jobs, bounded; a peer without `/v1/history` (an older
    /// baton-serve) is shown with its signals and a note.
    fn ask(&self, t: &Target) -> PeerStatus {
        let name = peer_name(t);
        let signals = match self.client.ask(t, ".*") {
            Ok(s) => s,
            Err(reason) => return PeerStatus::Unreachable { name, reason },
        };
        let mut notes = Vec::new();
        let jobs = match self.client.history(t) {
            Ok(Some(history)) => history.jobs,
            Ok(None) => {
                notes.push(NO_HISTORY.to_string());
                Vec::new()
            }
            Err(reason) => {
                notes.push(format!("its jobs could not be asked: {reason}"));
                Vec::new()
            }
        };
        PeerStatus::Answered(bounded(HostStatus {
            host: name,
            now: signals.now,
            signals: signals.signals,
            jobs,
            outputs: Default::default(),
            notes,
        }))
    }
}

/// A peer's name on the page: its name in `--peers`.
fn peer_name(t: &Target) -> String {
    t.name.clone().unwrap_or_else(|| t.label())
}

/// A peer's answer cut to what the page carries: signals and jobs with class names (a
/// job once), the first [`MAX_SIGNALS`] signals and [`MAX_JOBS`] jobs, each job's newest
/// [`MAX_RUNS`] ticks, with a note where it was cut.
fn bounded(mut s: HostStatus) -> HostStatus {
    // A peer's answer is untrusted, as in baton-query: only class names are shown, and a
    // job once.
    let (n_signals, n_jobs) = (s.signals.len(), s.jobs.len());
    s.signals
        .retain(|sig| baton_core::name::validate(&sig.name).is_ok());
    let mut seen = std::collections::HashSet::new();
    s.jobs
        .retain(|j| baton_core::name::validate(&j.job).is_ok() && seen.insert(j.job.clone()));
    let dropped = n_signals - s.signals.len() + n_jobs - s.jobs.len();
    if dropped > 0 {
        s.notes.push(format!(
            "{dropped} names that are not class names, or repeated, left out"
        ));
    }
    if s.signals.len() > MAX_SIGNALS {
        s.notes.push(format!(
            "{} signals: the first {MAX_SIGNALS} shown",
            s.signals.len()
        ));
        s.signals.truncate(MAX_SIGNALS);
    }
    if s.jobs.len() > MAX_JOBS {
        s.notes
            .push(format!("{} jobs: the first {MAX_JOBS} shown", s.jobs.len()));
        s.jobs.truncate(MAX_JOBS);
    }
    for job in &mut s.jobs {
        let runs = &mut job.runs;
        runs.drain(..runs.len().saturating_sub(MAX_RUNS));
    }
    s
}

/// What `viewer` may see of the peers' answers, by this host's access file: a peer's
/// signals as `may_see`, its jobs as `may_see_job` (never output: peers relay none). A
/// peer of which the viewer may see nothing is left out; a peer that could not be asked
/// is listed only to a viewer who sees something on the page (`sees_local`: of this
/// host), so that a viewer admitted to nothing learns nothing of the peers.
pub fn for_viewer(
    answers: &[PeerStatus],
    rules: &Rules,
    viewer: &Peer,
    sees_local: bool,
) -> Vec<PeerStatus> {
    let shown: Vec<Option<PeerStatus>> = answers
        .iter()
        .map(|p| match p {
            PeerStatus::Answered(s) => {
                let seen = HostStatus {
                    host: s.host.clone(),
                    now: s.now,
                    signals: s
                        .signals
                        .iter()
                        .filter(|sig| rules.may_see(viewer, &sig.name))
                        .cloned()
                        .collect(),
                    jobs: s
                        .jobs
                        .iter()
                        .filter(|j| rules.may_see_job(viewer, &j.job))
                        .cloned()
                        .collect(),
                    outputs: Default::default(),
                    notes: s.notes.clone(),
                };
                let something = !seen.signals.is_empty() || !seen.jobs.is_empty();
                something.then_some(PeerStatus::Answered(seen))
            }
            PeerStatus::Unreachable { .. } => Some(p.clone()),
        })
        .collect();
    let sees_any = sees_local
        || shown
            .iter()
            .any(|p| matches!(p, Some(PeerStatus::Answered(_))));
    shown
        .into_iter()
        .flatten()
        .filter(|p| sees_any || matches!(p, PeerStatus::Answered(_)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use baton_proto::{PeerJob, PeerRun, PeerSignal};
    use chrono::{DateTime, Utc};

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn host(name: &str, signals: &[&str], jobs: &[&str]) -> HostStatus {
        let now = at("2012-01-24T18:00:00Z");
        HostStatus {
            host: name.into(),
            now,
            signals: signals
                .iter()
                .map(|s| PeerSignal {
                    name: s.to_string(),
                    host: name.into(),
                    set_at: now,
                    expires_at: now,
                    run: None,
                })
                .collect(),
            jobs: jobs
                .iter()
                .map(|j| PeerJob {
                    job: j.to_string(),
                    runs: vec![],
                })
                .collect(),
            outputs: Default::default(),
            notes: vec![],
        }
    }

    fn viewer(addr: &str) -> Peer {
        Peer {
            addr: addr.parse().unwrap(),
            key: None,
        }
    }

    fn names(shown: &[PeerStatus]) -> Vec<String> {
        shown
            .iter()
            .map(|p| match p {
                PeerStatus::Answered(s) => format!(
                    "{}:{}:{}",
                    s.host,
                    s.signals
                        .iter()
                        .map(|s| s.name.as_str())
                        .collect::<Vec<_>>()
                        .join(","),
                    s.jobs
                        .iter()
                        .map(|j| j.job.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                ),
                PeerStatus::Unreachable { name, .. } => format!("{name}!"),
            })
            .collect()
    }

    #[test]
    fn a_viewer_sees_of_peers_what_this_hosts_rules_admit() {
        let rules = Rules::parse_with(
            "allow did.* 10.0.0.1\nallow job:backup 10.0.0.1\ndeny did_secret 10.0.0.1\n\
             allow nothing_here 10.0.0.2\nallow .* 10.0.0.3\ndeny .* 10.0.0.3\ndeny job:.* 10.0.0.3\n\
             allow job:.* 10.0.0.3\n",
            &|_| None,
        )
        .unwrap();
        let answers = vec![
            PeerStatus::Answered(host(
                "h1",
                &["did_a", "did_secret", "other"],
                &["backup", "payroll"],
            )),
            PeerStatus::Answered(host("h2", &["other"], &["payroll"])),
            PeerStatus::Unreachable {
                name: "h3".into(),
                reason: "connection refused".into(),
            },
        ];
        assert_eq!(
            names(&for_viewer(&answers, &rules, &viewer("10.0.0.1"), false)),
            ["h1:did_a:backup", "h3!"]
        );
        // Admitted to a signal no host has: nothing of the peers, not even their names.
        assert!(for_viewer(&answers, &rules, &viewer("10.0.0.2"), false).is_empty());
        // Denied everything it is allowed.
        assert!(for_viewer(&answers, &rules, &viewer("10.0.0.3"), false).is_empty());
        // A viewer who sees something of this host is told which peers could not be asked.
        assert_eq!(
            names(&for_viewer(&answers, &rules, &viewer("10.0.0.2"), true)),
            ["h3!"]
        );
    }

    #[test]
    fn a_peers_answer_is_cut_to_the_pages_bounds() {
        let run = |i: i64| PeerRun {
            run: format!("r{i}"),
            start: at("2012-01-24T00:00:00Z") + chrono::TimeDelta::seconds(i),
            end: at("2012-01-24T00:00:00Z") + chrono::TimeDelta::seconds(i),
            outcome: "skipped".into(),
            status: 76,
            reason: None,
        };
        let signals: Vec<String> = (0..MAX_SIGNALS + 5).map(|i| format!("s{i}")).collect();
        let jobs: Vec<String> = (0..MAX_JOBS + 1).map(|i| format!("j{i}")).collect();
        let mut s = host(
            "h",
            &signals.iter().map(String::as_str).collect::<Vec<_>>(),
            &jobs.iter().map(String::as_str).collect::<Vec<_>>(),
        );
        s.jobs[0].runs = (0..MAX_RUNS as i64 + 70).map(run).collect();
        let s = bounded(s);
        assert_eq!(
            (s.signals.len(), s.jobs.len(), s.jobs[0].runs.len()),
            (MAX_SIGNALS, MAX_JOBS, MAX_RUNS)
        );
        assert_eq!(s.jobs[0].runs[0].run, "r70", "the newest ticks are kept");
        assert_eq!(
            s.notes,
            [
                format!("{} signals: the first {MAX_SIGNALS} shown", MAX_SIGNALS + 5),
                format!("{} jobs: the first {MAX_JOBS} shown", MAX_JOBS + 1),
            ]
        );
    }

    #[test]
    fn a_peers_names_are_class_names_and_a_job_comes_once() {
        let s = bounded(host(
            "h",
            &["did_x", "<b>x</b>", "did_\u{202e}y"],
            &["ctl", "ctl", "a b"],
        ));
        let signals: Vec<&str> = s.signals.iter().map(|x| x.name.as_str()).collect();
        let jobs: Vec<&str> = s.jobs.iter().map(|j| j.job.as_str()).collect();
        assert_eq!((signals, jobs), (vec!["did_x"], vec!["ctl"]));
        assert_eq!(
            s.notes,
            ["4 names that are not class names, or repeated, left out"]
        );
    }
}
