//! What a sysadmin meets around the binaries: versions, the package, the diagnostics.

use crate::util::{baton, Host};

const BINS: [&str; 8] = [
    "baton-classes",
    "baton-if",
    "baton-signal",
    "baton-run",
    "baton-serve",
    "baton-query",
    "baton-promise",
    "baton-key",
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
    // The CFEngine library calls the binaries where the package put them.
    let lib = std::fs::read_to_string("/usr/share/baton/cfengine/baton.cf").unwrap();
    assert!(lib.contains("\"bin\" string => \"/usr/bin\";"), "{lib}");
    assert!(
        !lib.contains("/usr/local/"),
        "a /usr/local path is left in the package's baton.cf"
    );
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

/// A reader whose state dir does not exist says so (a mismatch with the writer's state
/// dir is otherwise a silent "no" for ever), once, and still answers.
#[test]
fn readers_warn_when_the_state_dir_does_not_exist() {
    let dir = crate::util::TestDir::new("no-state");
    let missing = dir.join("typo");
    let warning = format!("warning: state dir {} does not exist", missing.display());
    let reader = |bin: &str, args: &[&str]| {
        baton(bin)
            .args(args)
            .env("BATON_STATE_DIR", &missing)
            .env("BATON_HOST", "host1")
            .env("BATON_NOW", "2012-01-24T16:47:00Z")
            .run()
    };
    reader("baton-classes", &[])
        .status(0)
        .says("baton-classes", &warning);
    reader("baton-if", &["did_my_job"])
        .status(1)
        .says("baton-if", &warning);
    reader("baton-signal", &["list"])
        .status(1)
        .says("baton-signal", &warning);
    // A time or host class reads no store: nothing to warn about.
    reader("baton-if", &["host1.Hr16"]).status(0).stderr_is("");
    // Once the state dir exists, no word.
    std::fs::create_dir(&missing).unwrap();
    reader("baton-if", &["did_my_job"]).status(1).stderr_is("");
}

/// A misspelled TZ (the C library falls back to UTC silently) gets one warning line
/// naming it; a zone name, a file and a POSIX TZ string get none.
#[test]
fn a_misspelled_tz_is_named() {
    let h = Host::new("host1");
    let at = |tz: &str| {
        h.at("baton-if", "2012-01-24 16:47")
            .env("TZ", tz)
            .arg("Hr16")
            .run()
    };
    at("Europe/Pariss")
        .status(0)
        .says("baton-if", "warning: TZ=Europe/Pariss is not a time zone");
    at("Europe/Paris").status(0).stderr_is("");
    at("CET-1CEST,M3.5.0,M10.5.0/3").status(0).stderr_is("");
}

/// Client-side mistakes each get one line naming the fix: TLS against plain HTTP and
/// plain HTTP against TLS, an untrusted self-signed certificate, a malformed peers file
/// (with its line), a name that is neither a peer nor resolvable; the peer is named as
/// the user wrote it.
#[test]
fn query_mistakes_name_the_fix() {
    let h = Host::new("host1");
    crate::util::openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "self.key",
            "-out",
            "self.crt",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
        ],
        &h.dir.path,
    );
    let (cert, key) = (h.dir.join("self.crt"), h.dir.join("self.key"));
    let tls = h.serve(
        "127.0.0.1",
        "allow .* *\n",
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    let plain = Host::new("host2");
    let plain_server = plain.serve("127.0.0.1", "allow .* *\n", &[]);
    let query = |args: &[&str]| baton("baton-query").args(args).run();
    query(&["--tls", &tls.addr, "x"]).status(2).says(
        "baton-query",
        "the server's certificate is self-signed, so not trusted: give --ca",
    );
    query(&[&tls.addr, "x"])
        .status(2)
        .says("baton-query", "the server speaks TLS: use --tls");
    query(&["--tls", "--timeout", "1s", &plain_server.addr, "x"])
        .status(2)
        .says("baton-query", "is it a plain-HTTP server? then drop --tls");

    let peers = h.dir.join("peers");
    std::fs::write(
        &peers,
        format!("# where they listen\nhost1: {}\n", tls.addr),
    )
    .unwrap();
    let peers_arg = peers.to_str().unwrap();
    query(&["--peers", peers_arg, "host1", "x"]).status(2).says(
        "baton-query",
        &format!("peers file {peers_arg}: line 2: invalid peer name 'host1:'"),
    );
    std::fs::write(&peers, format!("host2 {}\n", plain_server.addr)).unwrap();
    let named = format!("host2 ({})", plain_server.addr);
    query(&["--peers", peers_arg, "host2", "no_such_signal"])
        .status(1)
        .stderr_is("");
    drop(plain_server);
    query(&["--peers", peers_arg, "host2", "x"]).status(2).says(
        "baton-query",
        &format!("cannot ask {named}: connection refused"),
    );
    query(&["--peers", peers_arg, "nosuchhost.invalid", "x"])
        .status(2)
        .says("baton-query", &format!("not in the peers file {peers_arg}"));
}

/// With the kernel host name short and mixed-case (`Upstream`) and the FQDN only in the
/// resolver (Debian's `127.0.1.1 upstream.example.org upstream` line), Baton defines the
/// same host-name classes as `cf-promises --show-classes`, and the seed's capitalised
/// spelling still matches. Runs in a private UTS and mount namespace (root), so neither
/// the machine's host name nor its /etc/hosts changes.
#[test]
fn host_identity_is_cfengines() {
    use std::collections::BTreeSet;
    use std::path::Path;
    if !is_root() {
        println!("skipped: a private host name and /etc/hosts need root (CI runs as root)");
        return;
    }
    if !Path::new("/usr/bin/cf-promises").exists() {
        println!("skipped: cf-promises is not installed (.ci/run installs cfengine3)");
        return;
    }
    let dir = crate::util::TestDir::new("identity");
    let hosts = dir.join("hosts");
    std::fs::write(
        &hosts,
        "127.0.0.1 localhost\n127.0.1.1 upstream.example.org upstream\n",
    )
    .unwrap();
    let policy = dir.join("small.cf");
    std::fs::write(
        &policy,
        "body common control\n{\n  bundlesequence => { \"m\" };\n}\nbundle agent m\n{\n}\n",
    )
    .unwrap();
    let bins = crate::util::bin("baton-classes")
        .parent()
        .unwrap()
        .to_path_buf();
    let script = r#"mount --bind "$1" /etc/hosts && hostname Upstream || exit 3
cf-promises -f "$2" --show-classes || exit 4
echo ----
baton-classes --state-dir "$3" || exit 5
echo ----
baton-if --state-dir "$3" 'Upstream.upstream_example_org.Example_Org' && echo matched"#;
    let mut cmd = std::process::Command::new("unshare");
    crate::util::without_baton_env(&mut cmd);
    let out = cmd
        .args(["-m", "-u", "sh", "-c", script, "sh"])
        .arg(&hosts)
        .arg(&policy)
        .arg(dir.join("state"))
        .env(
            "PATH",
            format!("{}:/usr/bin:/bin:/usr/sbin:/sbin", bins.display()),
        )
        .env("TZ", "UTC")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}\n{stdout}\n{stderr}", out.status);
    let parts: Vec<&str> = stdout.split("----\n").collect();
    assert_eq!(parts.len(), 3, "{stdout}");
    let named = |c: &&str| c.contains("upstream") || c.contains("example") || *c == "org";
    let cfengine: BTreeSet<&str> = parts[0]
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .filter(named)
        .collect();
    let baton: BTreeSet<&str> = parts[1].lines().filter(named).collect();
    assert_eq!(baton, cfengine, "{stdout}");
    assert_eq!(
        baton,
        BTreeSet::from(["upstream", "upstream_example_org", "example_org", "org"])
    );
    assert_eq!(parts[2], "matched\n", "{stdout}\n{stderr}");
}

/// The zsh and fish completions that `make install` and the package ship: fish completes
/// an option prefix from them, zsh parses them and autoloads the completion function.
/// `baton-gen --help` answers instead of creating a directory named `--help`.
#[test]
fn zsh_and_fish_completions_load_and_complete() {
    use crate::util::{bin, Cmd, TestDir};
    use std::process::Command;
    let dir = TestDir::new("completions");
    let gen = |arg: &str| {
        let mut cmd = Command::new(bin("baton-gen"));
        cmd.current_dir(&dir.path).arg(arg);
        Cmd::of(cmd).run()
    };
    gen("--help").status(0);
    gen("--bogus")
        .status(2)
        .says("baton-gen", "unknown option --bogus");
    assert_eq!(
        std::fs::read_dir(&dir.path).unwrap().count(),
        0,
        "baton-gen created a file"
    );
    gen("out").status(0);
    let out = dir.join("out");

    let fish = format!(
        "source {}; complete -C 'baton-run --on-'",
        out.join("fish/baton-run.fish").display()
    );
    let completed = Cmd::of({
        let mut c = Command::new("fish");
        c.args(["--no-config", "-c", &fish]);
        c
    })
    .run()
    .status(0)
    .stdout();
    let mut words: Vec<&str> = completed
        .lines()
        .map(|l| l.split('\t').next().unwrap())
        .collect();
    words.sort();
    assert_eq!(words, ["--on-failed", "--on-repaired", "--on-skipped"]);

    for name in [
        "baton-run",
        "baton-query",
        "baton-signal",
        "baton-key",
        "baton-chain",
    ] {
        let file = out.join(format!("zsh/_{name}"));
        let script = format!(
            "zsh -n {file} && zsh -f -c 'fpath=({zsh} $fpath); autoload -U compinit; compinit -u -D; \
             autoload -U _{name}; whence -v _{name}; [ \"$_comps[{name}]\" = _{name} ] && echo registered'",
            file = file.display(),
            zsh = out.join("zsh").display(),
        );
        let said = Cmd::of({
            let mut c = Command::new("sh");
            c.args(["-c", &script]);
            c
        })
        .run()
        .status(0)
        .stdout();
        assert!(said.contains("registered"), "{name}: {said}");
    }
}
