//! What a sysadmin meets around the binaries: versions, the package, the diagnostics.

use crate::util::{baton, Host};

const BINS: [&str; 6] = [
    "baton-classes",
    "baton-if",
    "baton-signal",
    "baton-run",
    "baton-serve",
    "baton-query",
];

#[test]
fn every_command_says_its_version() {
    let version = env!("CARGO_PKG_VERSION");
    for bin in BINS {
        baton(bin)
            .arg("--version")
            .run()
            .status(0)
            .stdout_is(&format!("{bin} {version}\n"));
    }
    Host::new("h")
        .sh("2012-01-24T16:10:00Z", "baton-chain --version")
        .run()
        .status(0)
        .stdout_is(&format!("baton-chain {version}\n"));
}

#[test]
fn usage_errors_quote_what_the_user_typed() {
    baton("baton-if")
        .args(["--only", "a && b"])
        .run()
        .status(2)
        .says("baton-if", "'&&' is not an operator");
    let help = baton("baton-query").arg("--help").run().status(0).stdout();
    let usage: Vec<&str> = help.lines().filter(|l| l.starts_with("Usage:")).collect();
    assert_eq!(
        usage,
        ["Usage: baton-query [OPTIONS] <HOST[:PORT]>... <REGEX>"],
        "{help}"
    );
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// Purges the package when dropped, so a failing test leaves the machine as it was.
struct Installed;

impl Installed {
    fn purge(&self) -> std::process::Output {
        std::process::Command::new("dpkg")
            .args(["--purge", "baton"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .output()
            .unwrap()
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        if std::path::Path::new("/var/lib/dpkg/info/baton.list").exists() {
            let _ = self.purge();
        }
    }
}

/// `dpkg -i` the package built from these binaries, use it as a sysadmin would (man,
/// bash completion, the systemd unit, the seed's chain run by the installed binaries from
/// cron's PATH), then purge it: nothing of it may be left.
#[test]
fn the_package_installs_runs_the_seed_chain_and_purges() {
    use crate::util::cluster::Cluster;
    use crate::util::{bin, repo, use_bin_dir, TestDir};
    use std::path::Path;
    use std::process::Command;

    if !is_root() {
        println!("skipped: installing a package needs root (CI runs the suite as root)");
        return;
    }
    for path in [
        "/var/lib/dpkg/info/baton.list",
        "/var/lib/baton",
        "/etc/baton",
    ] {
        if Path::new(path).exists() {
            println!("skipped: {path} exists: this machine has Baton installed; not touching it");
            return;
        }
    }
    let run = |cmd: &mut Command| {
        let out = cmd.output().unwrap();
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        assert!(
            out.status.success(),
            "{cmd:?}: {}\n{}{}",
            out.status,
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    };
    let dir = TestDir::new("package");
    let gen = dir.join("gen");
    run(Command::new(bin("baton-gen"))
        .arg(&gen)
        .arg(repo().join("docs")));
    let deb = run(Command::new("sh")
        .arg(repo().join("dist/deb.sh"))
        .arg(bin("baton-if").parent().unwrap())
        .arg(&gen)
        .arg(dir.join("deb"))
        .env("DEB_COMPRESS", "none"));
    let installed = Installed;
    run(Command::new("dpkg")
        .args(["-i", deb.trim()])
        .env("DEBIAN_FRONTEND", "noninteractive"));

    // man finds the page; bash completes the options; systemd accepts the unit.
    let page = run(Command::new("man").args(["-w", "baton-run"]));
    assert_eq!(page.trim(), "/usr/share/man/man1/baton-run.1.gz");
    let completed = run(Command::new("bash").arg("-c").arg(
        ". /usr/share/bash-completion/bash_completion
         _completion_loader baton-run
         f=$(complete -p baton-run | sed -n 's/.* -F \\([^ ]*\\) .*/\\1/p')
         COMP_WORDS=(baton-run --on-) COMP_CWORD=1 COMP_LINE='baton-run --on-' COMP_POINT=15
         \"$f\" baton-run --on- baton-run
         printf '%s\\n' \"${COMPREPLY[@]}\"",
    ));
    let mut words: Vec<&str> = completed.split_whitespace().collect();
    words.sort();
    assert_eq!(words, ["--on-failed", "--on-repaired", "--on-skipped"]);
    let unit = "/lib/systemd/system/baton-serve.service";
    if Path::new("/usr/bin/systemd-analyze").exists() {
        run(Command::new("systemd-analyze").args(["verify", unit]));
    } else {
        println!("systemd-analyze not installed: unit not verified");
    }
    use std::os::unix::fs::MetadataExt;
    let state = std::fs::metadata("/var/lib/baton").unwrap();
    assert_eq!((state.mode() & 0o7777, state.uid()), (0o700, 0));
    let conffiles = std::fs::read_to_string("/var/lib/dpkg/info/baton.conffiles").unwrap();
    assert_eq!(
        conffiles,
        "/etc/baton/access\n/etc/baton/peers\n/etc/default/baton\n"
    );

    // The seed's job_chain, with every binary (baton-serve too) the installed one.
    use_bin_dir(Some("/usr/bin".into()));
    let names = ["upstream.example.org", "downstream.example.org"];
    let mut c = Cluster::from_guide("chain", &names);
    c.run("2012-01-24T16:00:00Z", "2012-01-24T16:30:00Z");
    let at = ["2012-01-24T16:10:00Z"];
    assert_eq!(c.runs(names[0], "do_job Starting remote job"), at);
    assert_eq!(c.runs(names[1], "do_job Starting local follow-up job"), at);
    assert_eq!(c.mail(names[1]), "");
    drop(c);
    use_bin_dir(None);

    let purged = installed.purge();
    assert!(purged.status.success(), "{purged:?}");
    for gone in [
        "/usr/bin/baton-run",
        "/usr/share/man/man1/baton-run.1.gz",
        unit,
        "/etc/baton",
        "/etc/default/baton",
        "/var/lib/baton",
    ] {
        assert!(!Path::new(gone).exists(), "{gone} is left after the purge");
    }
}
