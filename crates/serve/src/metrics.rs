//! `GET /metrics`: this host's job and signal families (`baton_launch::metrics`, the
//! jobs and signals the asking peer is admitted to) and the server's own: answers by
//! status (those the HTTP layer gave before any handler included), connections refused
//! by why, open connections, and the time to answer a request as a histogram. The
//! server's own families name nothing but this host: every admitted peer gets them.

use crate::http::{Counts, Refusal};
use baton_launch::metrics::{job_summaries, render_host, Exposition, Kind, SignalView};
use baton_store::Signal;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Upper bounds of the request-duration buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// What the server counts as it answers.
#[derive(Debug, Default)]
pub struct ServerMetrics {
    requests: Mutex<BTreeMap<u16, u64>>,
    /// Requests per bucket (not cumulative); the last one is past every bound.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    /// The sum of request durations, in nanoseconds.
    total_nanos: AtomicU64,
    /// Connections open now (the HTTP server keeps it).
    pub connections: Arc<AtomicUsize>,
    /// What the HTTP server refused or answered before a handler.
    pub http: Arc<Counts>,
}

impl ServerMetrics {
    pub fn new(connections: Arc<AtomicUsize>, http: Arc<Counts>) -> ServerMetrics {
        ServerMetrics {
            connections,
            http,
            ..ServerMetrics::default()
        }
    }

    /// Count one answered request.
    pub fn observe(&self, status: u16, took: Duration) {
        *self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(status)
            .or_default() += 1;
        let secs = took.as_secs_f64();
        let i = BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BUCKETS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.total_nanos.fetch_add(
            took.as_nanos().min(u128::from(u64::MAX)) as u64,
            Ordering::Relaxed,
        );
    }

    /// The server's families.
    pub fn render(&self, ex: &mut Exposition, host: &str) {
        let requests = "baton_serve_requests_total";
        ex.family(
            requests,
            Kind::Counter,
            "Answers given, by HTTP status, including those given before a request reached the service (503 to a refused connection, 400 and 431 to a bad request head).",
        );
        let mut counts = self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for (code, n) in self.http.answered() {
            *counts.entry(code).or_default() += n;
        }
        for (code, n) in counts {
            let code = code.to_string();
            ex.sample(requests, &[("host", host), ("code", &code)], n as f64);
        }
        let refused = "baton_serve_connections_refused_total";
        ex.family(
            refused,
            Kind::Counter,
            "Connections refused as they were accepted, by reason: max_connections, max_per_peer, out_of_descriptors.",
        );
        for why in Refusal::ALL {
            ex.sample(
                refused,
                &[("host", host), ("reason", why.label())],
                self.http.refused(why) as f64,
            );
        }
        let connections = "baton_serve_connections";
        ex.family(connections, Kind::Gauge, "Connections open now.");
        ex.sample(
            connections,
            &[("host", host)],
            self.connections.load(Ordering::Relaxed) as f64,
        );
        let duration = "baton_serve_request_duration_seconds";
        ex.family(
            duration,
            Kind::Histogram,
            "Time to answer a request, from its head read to its answer made.",
        );
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let sum = self.total_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        ex.histogram(duration, &[("host", host)], &BUCKETS, &counts, sum);
    }
}

/// The whole `/metrics` text: the jobs `admit_job` admits, the `signals` (already
/// filtered for the peer), and the server's families.
pub fn metrics_text(
    state_dir: &Path,
    host: &str,
    signals: &[Signal],
    admit_job: &dyn Fn(&str) -> bool,
    server: &ServerMetrics,
) -> baton_core::Result<String> {
    let jobs = job_summaries(&state_dir.join("history"), admit_job)?;
    let views: Vec<SignalView> = signals
        .iter()
        .map(|s| SignalView {
            name: s.name.clone(),
            set_at: s.set_at,
            expires_at: s.expires_at,
        })
        .collect();
    let mut ex = Exposition::new();
    render_host(&mut ex, host, &jobs, &views);
    server.render(&mut ex, host);
    Ok(ex.into_text())
}
