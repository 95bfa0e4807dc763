//! The real Debian cron daemon runs a two-host chain from a crontab in `/etc/cron.d`, on
//! the real clock, for a couple of minutes: host1's job fails on its first tick and
//! succeeds on its second; host2 follows only after the success; the failure reaches
//! cron's output (captured: `MAILTO=""`, and the line appends its output to a file).
//!
//! Needs root and `/usr/sbin/cron` (CI runs as root and installs `cron`); elsewhere it
//! says so and passes.

use crate::util::{bin, repo, wait_until, Host};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Removes the crontab, then stops the cron daemon this test started (by its pid).
struct Cron {
    crontab: PathBuf,
    daemon: Option<std::process::Child>,
}

impl Drop for Cron {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.crontab);
        if let Some(mut d) = self.daemon.take() {
            let _ = d.kill();
            let _ = d.wait();
        }
    }
}

/// Whether a cron daemon already runs here (then the test uses it and leaves it be).
fn cron_running() -> bool {
    std::fs::read_dir("/proc").is_ok_and(|d| {
        d.filter_map(|e| e.ok()).any(|e| {
            std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim() == "cron")
        })
    })
}

fn write_script(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn history(h: &Host, job: &str) -> Vec<serde_json::Value> {
    let out = std::process::Command::new(bin("baton-run"))
        .args(["--history", job, "--json"])
        .env("BATON_STATE_DIR", h.state())
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn real_cron_runs_the_chain_follows_only_successes_and_mails_the_failure() {
    let root =
        std::fs::metadata("/proc/self").is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0);
    if !root || !Path::new("/usr/sbin/cron").exists() || !Path::new("/etc/cron.d").is_dir() {
        eprintln!(
            "skipped: the real-cron test needs root and /usr/sbin/cron (apt-get install cron)"
        );
        return;
    }
    let host1 = Host::new("host1");
    let host2 = Host::new("host2");
    // Their state dirs exist, as on a real host (the package creates /var/lib/baton).
    for h in [&host1, &host2] {
        std::fs::create_dir_all(h.state()).unwrap();
    }
    let server = host1.serve("127.0.0.31", "allow did.* 127.0.0.1\n", &[]);
    // The server reads its clock from a file; the test keeps it on the real clock.
    let tick_clock =
        || host1.set_clock(&chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string());
    tick_clock();
    let peers = host2.dir.join("peers");
    std::fs::write(&peers, format!("host1 {}\n", server.addr)).unwrap();

    let bins = bin("baton-if").parent().unwrap().to_path_buf();
    let path = format!(
        "{}:{}:/usr/bin:/bin",
        bins.display(),
        repo().join("bin").display()
    );
    let my_job = host1.dir.join("my_job");
    write_script(
        &my_job,
        "#!/bin/sh\n# Fails on its first run, as a full disk would, then works.\nn=$(cat count 2>/dev/null || echo 0); n=$((n + 1)); echo $n > count\nif [ $n -eq 1 ]; then echo 'disk full' >&2; exit 1; fi\n",
    );
    let follow_up = host2.dir.join("follow_up");
    write_script(&follow_up, "#!/bin/sh\necho followed >> followed\n");
    let line1 = host1.dir.join("tick.sh");
    write_script(
        &line1,
        &format!(
            "#!/bin/sh\nexport PATH='{path}' TZ=UTC BATON_HOST=host1 BATON_STATE_DIR='{}'\ncd '{}' || exit 2\nbaton-run -q --lock my_job --on-repaired did_my_job --ttl 10m -- '{}'\n",
            host1.state().display(),
            host1.dir.path.display(),
            my_job.display()
        ),
    );
    let line2 = host2.dir.join("tick.sh");
    write_script(
        &line2,
        &format!(
            "#!/bin/sh\nexport PATH='{path}' TZ=UTC BATON_HOST=host2 BATON_STATE_DIR='{}' BATON_PEERS='{}'\ncd '{}' || exit 2\n# host2's schedule runs 10 seconds into the minute, after host1's tick.\nsleep 10\nbaton-query --prefix hostX host1 'did.*' | baton-if --stdin 'host2.hostX_did_my_job' && baton-run -q --lock follow_up --ifelapsed 100 -- '{}'\n",
            host2.state().display(),
            peers.display(),
            host2.dir.path.display(),
            follow_up.display()
        ),
    );
    let mail1 = host1.dir.join("cron.mail");
    let mail2 = host2.dir.join("cron.mail");
    let crontab = PathBuf::from(format!("/etc/cron.d/baton-test-{}", std::process::id()));
    let mut cron = Cron {
        crontab: crontab.clone(),
        daemon: None,
    };
    std::fs::write(
        &crontab,
        format!(
            "# Written by Baton's real-cron test; removed when it ends.\nMAILTO=\"\"\nSHELL=/bin/sh\n* * * * * root {} >> {} 2>&1\n* * * * * root {} >> {} 2>&1\n",
            line1.display(),
            mail1.display(),
            line2.display(),
            mail2.display()
        ),
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&crontab, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    if !cron_running() {
        cron.daemon = Some(
            std::process::Command::new("/usr/sbin/cron")
                .arg("-f")
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        );
    }

    // Cron reads the new crontab at its next minute; host1 fails at the first tick and
    // succeeds at the second, and host2 follows 10 seconds later: about three minutes at
    // most.
    let followed = host2.dir.join("followed");
    // Done when the follow-up's run is on record: its output file appears while it still
    // runs, before baton-run has ended it and written its history.
    let recorded = host2.state().join("history/follow_up.jsonl");
    wait_until(
        "host2 to follow host1's success",
        Duration::from_secs(200),
        || {
            tick_clock();
            if let Some(d) = cron.daemon.as_mut() {
                assert!(d.try_wait().unwrap().is_none(), "the cron daemon exited");
            }
            std::fs::read_to_string(&recorded).is_ok_and(|t| t.contains("\"outcome\":\"repaired\""))
        },
    );
    drop(cron);

    let up = history(&host1, "my_job");
    let down = history(&host2, "follow_up");
    let outcomes: Vec<&str> = up.iter().map(|r| r["outcome"].as_str().unwrap()).collect();
    assert_eq!(&outcomes[..2], ["failed", "repaired"], "{up:?}");
    assert_eq!(down.len(), 1, "host2 followed once: {down:?}");
    assert_eq!(down[0]["outcome"], "repaired");
    // Only after the success: never after the failure alone.
    assert!(
        down[0]["start"].as_str().unwrap() >= up[1]["end"].as_str().unwrap(),
        "host2 followed at {} before host1 succeeded at {}",
        down[0]["start"],
        up[1]["end"]
    );
    assert_eq!(std::fs::read_to_string(&followed).unwrap(), "followed\n");
    // The failure spoke: cron captured its line and the job's last words.
    let mail = std::fs::read_to_string(&mail1).unwrap();
    let lines: Vec<&str> = mail.lines().collect();
    assert!(
        lines.len() == 2
            && lines[0].starts_with("baton-run: my_job failed with exit status 1 after ")
            && lines[1] == "disk full",
        "host1's cron output: {mail:?}"
    );
    // Host2's ticks before the success found no signal, and said nothing.
    assert_eq!(std::fs::read_to_string(&mail2).unwrap_or_default(), "");
    drop(server);
}
