//! The workflow harness: several simulated hosts on 127.0.0.x, each with its own state
//! dir, host name, key, access file and `baton-serve`, and a simulated cron that ticks
//! every host through a simulated day by moving a clock file (the `BATON_NOW=/path`
//! clock that every binary reads), running each host's crontab lines with `sh -c`
//! exactly as cron would. Real processes, real HTTP; only the clock's source is swapped.

use super::{baton, bin, repo, Host, Server, TestDir};
use chrono::{DateTime, Datelike, Duration as Span, Timelike, Utc};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Stand-in jobs: each logs `TIME HOST NAME [ARGS]` to the journal, or `... failed` while
/// `./fail_NAME` (in the host's directory) says `always` or a positive count.
const JOB: &str = r#"#!/bin/sh
name=$(basename "$0")
case $BATON_NOW in /*) now=$(cat "$BATON_NOW") ;; *) now=$BATON_NOW ;; esac
f="fail_$name"
if [ -f "$f" ]; then
  n=$(cat "$f")
  if [ "$n" = always ] || [ "$n" -gt 0 ]; then
    [ "$n" = always ] || echo $((n - 1)) > "$f"
    echo "$now $BATON_HOST $name failed" >> "$JOURNAL"
    exit 1
  fi
fi
echo "$now $BATON_HOST $name${*:+ $*}" >> "$JOURNAL"
"#;

const JOB_NAMES: &[&str] = &[
    "my_job",
    "nightly_job",
    "do_my_job_bundle",
    "do_my_job_bundle1",
    "do_my_job_bundle2",
    "do_my_job_bundle3",
    "do_job",
    "all_of_them",
    "any_of_them",
    "two_of_three",
    "job1",
    "job2",
    "job3",
    "job4",
];

/// One crontab line: five schedule fields and the command.
#[derive(Debug, Clone)]
pub struct CronLine {
    fields: [String; 5],
    pub command: String,
}

impl CronLine {
    pub fn parse(line: &str) -> CronLine {
        let mut parts = line.split_whitespace();
        let fields: Vec<String> = parts.by_ref().take(5).map(str::to_string).collect();
        let prefix_len: usize = {
            // The command is what follows the fifth field, spacing kept.
            let mut rest = line.trim_start();
            for _ in 0..5 {
                rest = rest.trim_start();
                let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
                rest = &rest[end..];
            }
            line.len() - rest.len()
        };
        CronLine {
            fields: fields.try_into().expect("five schedule fields"),
            command: line[prefix_len..].trim().to_string(),
        }
    }

    /// Whether cron runs this line at `t` (minute hour day-of-month month day-of-week).
    pub fn due(&self, t: DateTime<Utc>) -> bool {
        let values = [
            t.minute(),
            t.hour(),
            t.day(),
            t.month(),
            t.weekday().num_days_from_sunday(),
        ];
        self.fields
            .iter()
            .zip(values)
            .enumerate()
            .all(|(i, (f, v))| field_matches(f, v) || (i == 4 && v == 0 && field_matches(f, 7)))
    }
}

fn field_matches(field: &str, v: u32) -> bool {
    field.split(',').any(|part| {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (r, s.parse::<u32>().expect("cron step")),
            None => (part, 1),
        };
        let (lo, hi) = match range {
            "*" => (0, u32::MAX),
            r => match r.split_once('-') {
                Some((a, b)) => (a.parse().unwrap(), b.parse().unwrap()),
                None => {
                    let n: u32 = r.parse().expect("cron field");
                    (n, if step > 1 { u32::MAX } else { n })
                }
            },
        };
        v >= lo && v <= hi && (v - lo.min(v)).is_multiple_of(step)
    })
}

/// The blocks of docs/guide.md headed ```` ```KIND PATTERN/HOST ````, as the lines under
/// them (comments and blank lines dropped for crontabs).
pub fn guide_block(kind: &str, pattern: &str, host: &str) -> Vec<String> {
    let found = guide_block_if_any(kind, pattern, host);
    found.unwrap_or_else(|| panic!("docs/guide.md has no block ```{kind} {pattern}/{host}"))
}

/// Like [`guide_block`], `None` when the guide has no such block.
pub fn guide_block_if_any(kind: &str, pattern: &str, host: &str) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(repo().join("docs/guide.md")).unwrap();
    let header = format!("```{kind} {pattern}/{host}");
    let mut lines = text.lines().skip_while(|l| l.trim() != header);
    lines.next()?;
    let block = lines
        .take_while(|l| !l.starts_with("```"))
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(str::to_string)
        .collect();
    Some(block)
}

/// A simulated host in a cluster.
pub struct SimHost {
    pub host: Host,
    pub server: Option<Server>,
    pub ip: String,
    pub crontab: Vec<CronLine>,
}

/// A background cron job still running (a line with `--wait`, say).
struct Background {
    host: String,
    command: String,
    child: Child,
}

pub struct Cluster {
    pub root: TestDir,
    pub hosts: Vec<SimHost>,
    background: Vec<Background>,
    /// Crontab lines the harness leaves running in the background (they wait).
    background_lines: Vec<String>,
    /// BATON_STORE for every crontab line (an etcd URL), if set.
    store: Option<String>,
    /// TZ for every crontab line (schedule fields are still read in UTC: the guide's
    /// lines that run in other zones tick every five minutes).
    tz: String,
    /// Whether crontab lines get BATON_METRICS_FILE (HOST_DIR/baton.prom).
    metrics: bool,
    pub now: DateTime<Utc>,
}

impl Cluster {
    /// A cluster running pattern `pattern` of docs/guide.md on `names`, hosts in that
    /// order on 127.0.0.(20+i). Every host gets a key; every server knows every key; the
    /// access file comes from the guide, or admits nobody.
    pub fn from_guide(pattern: &str, names: &[&str]) -> Cluster {
        let root = TestDir::new(pattern);
        let jobs = root.join("jobs");
        std::fs::create_dir_all(&jobs).unwrap();
        let job = jobs.join("job");
        std::fs::write(&job, JOB).unwrap();
        Command::new("chmod").arg("755").arg(&job).status().unwrap();
        for name in JOB_NAMES {
            std::os::unix::fs::symlink(&job, jobs.join(name)).unwrap();
        }
        std::fs::write(root.join("journal"), "").unwrap();
        let mut keys = String::new();
        let mut pins = Vec::new();
        let mut hosts: Vec<SimHost> = names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let host = Host::new(&name.replace('.', "_"));
                let host = Host {
                    name: name.to_string(),
                    ..host
                };
                // As an install leaves a host: its state dir exists, so readers have no
                // missing state dir to warn about.
                std::fs::create_dir(host.state()).unwrap();
                // The host's identity: NAME.key and NAME.crt in its dir, its server's
                // certificate and its client certificate alike.
                let line = baton("baton-key")
                    .args(["new", name, "--out"])
                    .arg(&host.dir.path)
                    .run()
                    .status(0)
                    .stdout();
                keys.push_str(&line);
                pins.push(line.split_whitespace().nth(1).unwrap().to_string());
                let crontab = guide_block("crontab", pattern, name)
                    .iter()
                    .map(|l| CronLine::parse(l))
                    .collect();
                SimHost {
                    host,
                    server: None,
                    ip: format!("127.0.0.{}", 20 + i),
                    crontab,
                }
            })
            .collect();
        std::fs::write(root.join("keys"), keys).unwrap();
        let start: DateTime<Utc> = "2012-01-24T00:00:00Z".parse().unwrap();
        let mut peers = String::new();
        let keys_path = root.join("keys");
        for h in &mut hosts {
            // No access block: the host admits nobody.
            let access = guide_block_if_any("access", pattern, &h.host.name)
                .unwrap_or_default()
                .join("\n");
            h.host.set_clock(&stamp(start));
            let (cert, key) = h.host.identity();
            let server = h.host.serve(
                &h.ip,
                &format!("{access}\n"),
                &[
                    "--keys",
                    keys_path.to_str().unwrap(),
                    "--tls-cert",
                    cert.to_str().unwrap(),
                    "--tls-key",
                    key.to_str().unwrap(),
                ],
            );
            peers.push_str(&format!("{} {}\n", h.host.name, server.addr));
            h.server = Some(server);
        }
        std::fs::write(root.join("peers"), peers).unwrap();
        std::fs::write(root.join("pins"), pins.join(",")).unwrap();
        Cluster {
            root,
            hosts,
            background: Vec::new(),
            background_lines: Vec::new(),
            store: None,
            tz: "UTC".to_string(),
            metrics: false,
            now: start,
        }
    }

    /// Keep every host's signals in `url` (BATON_STORE in the crontab's environment, the
    /// only change a crontab needs).
    pub fn use_store(&mut self, url: &str) {
        self.store = Some(url.to_string());
    }

    /// Run every crontab line in time zone `tz`.
    pub fn set_tz(&mut self, tz: &str) {
        self.tz = tz.to_string();
    }

    /// Give every crontab line BATON_METRICS_FILE, as a crontab's header would: each
    /// host's `baton-run` then writes [`Cluster::metrics_file`] for a textfile collector.
    pub fn write_metrics(&mut self) {
        self.metrics = true;
    }

    /// Where `name`'s `baton-run` writes its metrics.
    pub fn metrics_file(&self, name: &str) -> std::path::PathBuf {
        self.host(name).host.dir.join("baton.prom")
    }

    /// Leave crontab lines containing `marker` running in the background when they
    /// outlive their tick (a line that waits), instead of waiting for them.
    pub fn background(&mut self, marker: &str) {
        self.background_lines.push(marker.to_string());
    }

    pub fn host(&self, name: &str) -> &SimHost {
        self.hosts
            .iter()
            .find(|h| h.host.name == name)
            .unwrap_or_else(|| panic!("no host {name}"))
    }

    /// Make `name`'s job `job` fail: `always`, or the next N times.
    pub fn fail(&self, name: &str, job: &str, how: &str) {
        std::fs::write(self.host(name).host.dir.join(format!("fail_{job}")), how).unwrap();
    }

    pub fn heal(&self, name: &str, job: &str) {
        let _ = std::fs::remove_file(self.host(name).host.dir.join(format!("fail_{job}")));
    }

    /// Replace `name`'s access file, and wait (bounded) until its server has reloaded it.
    pub fn set_access(&self, name: &str, rules: &str) {
        let h = self.host(name);
        let server = h.server.as_ref().expect("a running server");
        let reloads = || server.log_text().matches("reloaded").count();
        let before = reloads();
        std::fs::write(h.host.dir.join("access"), rules).unwrap();
        super::wait_until(
            "the access file to be reloaded",
            Duration::from_secs(20),
            || reloads() > before,
        );
    }

    /// Stop `name`'s server (the host is down for its peers).
    pub fn stop_server(&mut self, name: &str) {
        let h = self.hosts.iter_mut().find(|h| h.host.name == name).unwrap();
        h.server = None;
    }

    /// Tick every five minutes from `from` to `to` inclusive (RFC 3339 times).
    pub fn run(&mut self, from: &str, to: &str) {
        let (from, to): (DateTime<Utc>, DateTime<Utc>) =
            (from.parse().unwrap(), to.parse().unwrap());
        let mut t = from;
        while t <= to {
            self.tick(t);
            t += Span::minutes(5);
        }
    }

    /// One cron tick at `t`: every host's due lines, hosts in order, lines in order.
    pub fn tick(&mut self, t: DateTime<Utc>) {
        self.now = t;
        // Only a cluster with waiting jobs needs the count (reading logs is not free).
        let requests_before = if self.background_lines.is_empty() {
            0
        } else {
            self.requests_served()
        };
        let stamp = stamp(t);
        for h in &self.hosts {
            h.host.set_clock(&stamp);
        }
        let pins = std::fs::read_to_string(self.root.join("pins")).unwrap_or_default();
        let path = format!(
            "{}:{}:{}:/usr/bin:/bin",
            bin("baton-if").parent().unwrap().display(),
            repo().join("bin").display(),
            self.root.join("jobs").display()
        );
        for h in &self.hosts {
            for line in h.crontab.iter().filter(|l| l.due(t)) {
                let mut cmd = Command::new("sh");
                super::without_baton_env(&mut cmd);
                cmd.arg("-c")
                    .arg(&line.command)
                    .current_dir(&h.host.dir.path)
                    .env("PATH", &path)
                    .env("TZ", &self.tz)
                    .env("BATON_HOST", &h.host.name)
                    .env("BATON_STATE_DIR", h.host.state())
                    .env("BATON_NOW", h.host.dir.join("now"))
                    .env("BATON_KEY", h.host.identity().1)
                    .env("BATON_PIN", &pins)
                    .env("BATON_PEERS", self.root.join("peers"))
                    .env("JOURNAL", self.root.join("journal"))
                    .env("BATON_STORE", self.store.as_deref().unwrap_or(""))
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(
                        std::fs::OpenOptions::new()
                            .create(true)
                            .append(true)
                            .open(h.host.dir.join("cron.mail"))
                            .unwrap(),
                    );
                if self.metrics {
                    cmd.env("BATON_METRICS_FILE", h.host.dir.join("baton.prom"));
                }
                let mut child = cmd.spawn().unwrap();
                if self
                    .background_lines
                    .iter()
                    .any(|m| line.command.contains(m.as_str()))
                {
                    self.background.push(Background {
                        host: h.host.name.clone(),
                        command: line.command.clone(),
                        child,
                    });
                } else {
                    super::wait_child(&mut child, Duration::from_secs(60), &line.command);
                }
            }
        }
        self.settle_background(requests_before);
    }

    /// Requests logged by every server so far.
    fn requests_served(&self) -> usize {
        self.hosts
            .iter()
            .filter_map(|h| h.server.as_ref())
            .map(|s| s.log_text().lines().filter(|l| l.contains(" GET ")).count())
            .sum()
    }

    /// Give background jobs a chance to see the new time: wait (bounded) until a request
    /// was served since the tick began (a waiting job polls when the clock moves), or the
    /// jobs have finished.
    fn settle_background(&mut self, before: usize) {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while self
            .background
            .iter_mut()
            .any(|b| b.child.try_wait().unwrap().is_none())
            && self.requests_served() <= before
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Wait (bounded) for background jobs to finish; their exit statuses, in start order.
    pub fn finish_background(&mut self) -> Vec<(String, i32)> {
        let mut out = Vec::new();
        for mut b in self.background.drain(..) {
            super::wait_child(&mut b.child, Duration::from_secs(60), &b.command);
            out.push((b.host, b.child.wait().unwrap().code().unwrap_or(-1)));
        }
        out
    }

    /// The journal: (time, host, job and args) per line.
    pub fn journal(&self) -> Vec<(String, String, String)> {
        std::fs::read_to_string(self.root.join("journal"))
            .unwrap()
            .lines()
            .map(|l| {
                let mut w = l.splitn(3, ' ');
                (
                    w.next().unwrap().to_string(),
                    w.next().unwrap().to_string(),
                    w.next().unwrap_or("").to_string(),
                )
            })
            .collect()
    }

    /// The times at which `host` ran `job` successfully (`job` may include its args).
    pub fn runs(&self, host: &str, job: &str) -> Vec<String> {
        self.journal()
            .into_iter()
            .filter(|(_, h, j)| h == host && j == job)
            .map(|(t, _, _)| t)
            .collect()
    }

    /// Everything `host`'s cron jobs wrote on stderr (what cron would mail).
    pub fn mail(&self, host: &str) -> String {
        std::fs::read_to_string(self.host(host).host.dir.join("cron.mail")).unwrap_or_default()
    }

    /// `host`'s live signal names at the current simulated time.
    pub fn signals(&self, host: &str) -> Vec<String> {
        let h = &self.host(host).host;
        h.at("baton-signal", &stamp(self.now))
            .args(["list", "--names"])
            .run()
            .lines()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for b in &mut self.background {
            let _ = b.child.kill();
            let _ = b.child.wait();
        }
    }
}

pub fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
