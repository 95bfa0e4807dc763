//! Baton with real CFEngine (Debian's cfengine3 3.21): Baton hosts following CFEngine
//! hosts' persistent classes through their cf-serverd (`baton-query cfengine://`), and
//! CFEngine hosts following Baton hosts through contrib/cfengine's module recipe.
//! Each CFEngine host is a work dir with its own keys on its own loopback address.

use crate::util::cfengine::{available, CfHost, CfServer};
use crate::util::{bin, repo, Host};

const T0: &str = "2012-01-24T16:47:00Z";

/// A CFEngine policy that runs a job and, when it succeeds, defines `did_my_job` as a
/// persistent class for ten minutes (the seed's Host1, natively).
fn do_my_job(host: &CfHost) -> String {
    format!(
        r#"body common control
{{
  bundlesequence => {{ "main" }};
  inputs => {{ "{lib}", "{seed}" }};
}}
bundle agent main
{{
  methods:
      "job" usebundle => seed_do_my_job_natively("{job}");
}}
"#,
        lib = repo().join("contrib/cfengine/baton.cf").display(),
        seed = repo().join("contrib/cfengine/seed.cf").display(),
        job = job(host, "my_job").display()
    )
}

/// Write `script` to `path`, executable.
fn script(path: &std::path::Path, script: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, script).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// An executable job in `host`'s directory that appends its name to `journal`.
fn job(host: &CfHost, name: &str) -> std::path::PathBuf {
    let path = host.dir.join(name);
    if !path.exists() {
        let journal = host.dir.join("journal");
        script(
            &path,
            &format!("#!/bin/sh\necho {name} >> '{}'\n", journal.display()),
        );
    }
    path
}

fn journal(host: &CfHost) -> Vec<String> {
    std::fs::read_to_string(host.dir.join("journal"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// A CFEngine host with a server admitting `access`, and a client host (Baton's, with its
/// own CFEngine key pair) that trusts it and that it trusts.
fn cfengine_pair(ip: &str, access: &str, control: &str) -> (CfHost, CfServer, CfHost) {
    let upstream = CfHost::new("cf-up", ip);
    let client = CfHost::new("cf-client", "127.0.0.1");
    upstream.trust(&client, "127.0.0.1");
    client.trust(&upstream, ip);
    let server = upstream.serve(access, control);
    (upstream, server, client)
}

fn query(client: &CfHost) -> crate::util::Cmd {
    crate::util::baton("baton-query")
        .args(["--timeout", "10s"])
        .env("BATON_NOW", T0)
        .env("BATON_CFENGINE_WORKDIR", client.work())
}

#[test]
fn a_baton_host_follows_a_cfengine_hosts_persistent_class() {
    if !available() {
        return;
    }
    let (up, server, client) = cfengine_pair(
        "127.0.0.61",
        r#"      "did_.*" resource_type => "context", admit_ips => { "127.0.0.1" };"#,
        "",
    );
    // Host2's crontab line, following Host1's persistent class through its cf-serverd.
    let host2 = Host::new("host2");
    std::fs::create_dir_all(host2.state()).unwrap();
    let line = format!(
        "baton-query --prefix hostX {} 'did.*' | baton-if --stdin 'hostX_did_my_job' \
         && baton-run -q --ifelapsed 100 -- sh -c 'echo follow_up >> journal'",
        server.url()
    );
    let tick = || {
        host2
            .sh(T0, &line)
            .env("BATON_CFENGINE_WORKDIR", client.work())
            .run()
    };
    tick().status(1).stderr_is("");
    assert!(!host2.dir.join("journal").exists(), "followed too early");

    up.agent("host1", &do_my_job(&up)).status(0);
    assert_eq!(journal(&up), ["my_job"]);
    tick().status(0).stderr_is("");
    assert_eq!(
        std::fs::read_to_string(host2.dir.join("journal")).unwrap(),
        "follow_up\n"
    );

    // The answer as baton-query prints it: names only, no times.
    query(&client)
        .args(["--prefix", "{host}", &server.url(), "did_.*"])
        .run()
        .status(0)
        .stdout_is("_10_127_0_0_61_did_my_job\n");
    let json = query(&client)
        .args(["--json", &server.url(), "did_.*"])
        .run()
        .status(0)
        .stdout();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v[0]["name"], "did_my_job");
    assert!(
        v[0]["set_at"].is_null() && v[0]["expires_at"].is_null(),
        "{v}"
    );
    // Timestamps are refused before anything is asked.
    for extra in [
        &["--newer-than", "5m"][..],
        &["--since", T0],
        &["--format", "{class} {set_at}"],
    ] {
        query(&client)
            .args(extra)
            .args([&server.url(), "did_.*"])
            .run()
            .error("baton-query", "cfengine:// hosts tell no times");
    }
}

#[test]
fn cfengine_refusals_are_no_match_or_one_line_naming_the_fix() {
    if !available() {
        return;
    }
    let (up, server, client) = cfengine_pair(
        "127.0.0.62",
        r#"      "other_.*" resource_type => "context", admit_ips => { "127.0.0.1" };
      "did_.*" resource_type => "context", admit_ips => { "10.1.2.3" };"#,
        "",
    );
    up.agent("host1", &do_my_job(&up)).status(0);
    // The ACL does not admit us to did_my_job: cf-serverd answers as for no match.
    query(&client)
        .args([&server.url(), "did_.*"])
        .run()
        .status(1)
        .stdout_is("")
        .stderr_is("");

    // A host the server does not trust.
    let stranger = CfHost::new("cf-stranger", "127.0.0.1");
    stranger.trust(&up, &up.ip);
    query(&stranger)
        .args([&server.url(), "did_.*"])
        .run()
        .error("baton-query", "it refused our key MD5=")
        .says("baton-query", "cf-key -t root@");
    // A server we do not trust.
    let wary = CfHost::new("cf-wary", "127.0.0.1");
    up.trust(&wary, "127.0.0.1");
    query(&wary)
        .args([&server.url(), "did_.*"])
        .run()
        .error("baton-query", "is not trusted in")
        .says("baton-query", "cf-key -t 127.0.0.62:FILE");
    drop(server);

    // A server that does not admit our address at all.
    let server = up.serve(
        r#"      "did_.*" resource_type => "context", admit_ips => { "127.0.0.1" };"#,
        r#"denyconnects => { "127.0.0.1" };"#,
    );
    query(&client)
        .args([&server.url(), "did_.*"])
        .run()
        .error("baton-query", "allowconnects");
    drop(server);

    // A server without TLS 1.3 (no TLS 1.3 suite allowed).
    let server = up.serve(
        r#"      "did_.*" resource_type => "context", admit_ips => { "127.0.0.1" };"#,
        r#"allowciphers => "AES256-GCM-SHA384";"#,
    );
    query(&client)
        .args([&server.url(), "did_.*"])
        .run()
        .error("baton-query", "does not offer TLS 1.3");
    drop(server);

    // A CFEngine host that is down.
    query(&client)
        .args([&format!("cfengine://{}:1", up.ip), "did_.*"])
        .run()
        .error("baton-query", "connection refused");
    // No key pair: say where it was looked for and how to make one.
    let empty = crate::util::TestDir::new("cf-empty");
    crate::util::baton("baton-query")
        .args(["--cfengine-workdir"])
        .arg(&empty.path)
        .args(["cfengine://127.0.0.62", "did"])
        .run()
        .error("baton-query", "run cf-key");
}

/// A Baton host serving `signals` at T0 on `ip`, admitting 127.0.0.1.
fn baton_upstream(name: &str, ip: &str, signals: &[&str]) -> (Host, crate::util::Server) {
    crate::peers::upstream(name, ip, "allow did.* 127.0.0.1\n", signals, &[])
}

/// The seed's fan-in upstreams on `ips`: Host2 a CFEngine host (its persistent classes
/// asked through its cf-serverd), Host3 a Baton host that did its job, Host4 a Baton host
/// that has not yet; and a peers file in `dir` naming the three.
struct Upstreams {
    up2: CfHost,
    server2: CfServer,
    client: CfHost,
    _h3: (Host, crate::util::Server),
    h4: Host,
    _s4: crate::util::Server,
    peers: std::path::PathBuf,
}

fn fan_in_upstreams(ips: [&str; 3], dir: &std::path::Path) -> Upstreams {
    let (up2, server2, client) = cfengine_pair(
        ips[0],
        r#"      "did_.*" resource_type => "context", admit_ips => { "127.0.0.1" };"#,
        "",
    );
    let (h3, s3) = baton_upstream("Host3", ips[1], &["did_my_job"]);
    let (h4, s4) = baton_upstream("Host4", ips[2], &[]);
    let peers = dir.join("peers");
    std::fs::write(
        &peers,
        format!(
            "Host2 {}\nHost3 {}\nHost4 {}\n",
            server2.url(),
            s3.addr,
            s4.addr
        ),
    )
    .unwrap();
    Upstreams {
        up2,
        server2,
        client,
        _h3: (h3, s3),
        h4,
        _s4: s4,
        peers,
    }
}

#[test]
fn the_and_fan_in_over_cfengine_and_baton_upstreams() {
    if !available() {
        return;
    }
    // Host2 is a CFEngine host; Host3 and Host4 are Baton hosts. Host5 runs the guide's
    // crontab line unchanged: the peers file says which is which.
    let host5 = Host::new("Host5");
    std::fs::create_dir_all(host5.state()).unwrap();
    let Upstreams {
        up2,
        server2,
        client,
        _h3,
        h4,
        _s4,
        peers,
    } = fan_in_upstreams(["127.0.0.63", "127.0.0.64", "127.0.0.65"], &host5.dir.path);
    let line = crate::util::cluster::guide_block("crontab", "aggregate", "Host5")
        .into_iter()
        .find(|l| l.contains("all_of_them"))
        .expect("the guide's AND line");
    let command = crate::util::cluster::CronLine::parse(&line).command;
    let all_of_them = host5.dir.join("all_of_them");
    script(&all_of_them, "#!/bin/sh\necho all_of_them >> journal\n");
    let tick = || {
        host5
            .sh(T0, &command)
            .env(
                "PATH",
                format!(
                    "{}:{}:/usr/bin:/bin",
                    bin("baton-if").parent().unwrap().display(),
                    host5.dir.path.display()
                ),
            )
            .env("BATON_PEERS", &peers)
            .env("BATON_CFENGINE_WORKDIR", client.work())
            .run()
    };
    let ran = || std::fs::read_to_string(host5.dir.join("journal")).unwrap_or_default();
    // Only Host3 did its job.
    tick().status(1);
    assert_eq!(ran(), "");
    // Host2 (CFEngine) does its job; Host4 still has not.
    up2.agent("host2", &do_my_job(&up2)).status(0);
    tick().status(1);
    assert_eq!(ran(), "");
    // Host4 too: all three.
    h4.at("baton-signal", T0)
        .args(["raise", "did_my_job", "--ttl", "1h"])
        .run()
        .status(0);
    tick().status(0);
    assert_eq!(ran(), "all_of_them\n");
    // The class names come from the peers file's names, CFEngine host included.
    crate::util::baton("baton-query")
        .args(["--prefix", "{host}", "Host2", "Host3", "did_my_job"])
        .env("BATON_NOW", T0)
        .env("BATON_PEERS", &peers)
        .env("BATON_CFENGINE_WORKDIR", client.work())
        .run()
        .status(0)
        .stdout_is("Host2_did_my_job\nHost3_did_my_job\n");
    // With Host2 down the AND is unknown (2), never a yes.
    drop(server2);
    crate::util::baton("baton-query")
        .args(["--min", "3", "Host2", "Host3", "Host4", "did_my_job"])
        .env("BATON_NOW", T0)
        .env("BATON_PEERS", &peers)
        .env("BATON_CFENGINE_WORKDIR", client.work())
        .args(["--timeout", "5s"])
        .run()
        .error("baton-query", "cannot ask Host2 (cfengine://127.0.0.63:");
}

/// A cf-agent policy using contrib/cfengine: `body` is the main bundle's body.
fn module_policy(body: &str) -> String {
    format!(
        r#"body common control
{{
  bundlesequence => {{ "main" }};
  inputs => {{ "{lib}", "{seed}" }};
}}
bundle agent main
{{
{body}
  reports:
    baton_query_unknown::
      "UNKNOWN: a host could not be asked";
}}
"#,
        lib = repo().join("contrib/cfengine/baton.cf").display(),
        seed = repo().join("contrib/cfengine/seed.cf").display(),
    )
}

#[test]
fn a_cfengine_host_follows_a_baton_host_through_the_module_recipe() {
    if !available() {
        return;
    }
    let (up, server) = baton_upstream("host1", "127.0.0.66", &[]);
    let cf2 = CfHost::new("cf-host2", "127.0.0.1");
    let follow_up = job(&cf2, "follow_up");
    let policy = module_policy(&format!(
        r#"  methods:
      "follow" usebundle => seed_follow("{}", "{}");"#,
        server.addr,
        follow_up.display()
    ));
    let agent = || {
        let mut cmd = cf2.cf("cf-agent");
        cmd.cmd
            .env("BATON_BIN", bin("baton-query").parent().unwrap())
            .env("BATON_STATE_DIR", cf2.dir.join("state"))
            .env("BATON_HOST", "host2")
            .env("BATON_NOW", T0);
        let file = cf2.dir.join("follow.cf");
        std::fs::write(&file, &policy).unwrap();
        cmd.arg("-K").arg("-f").arg(&file).run()
    };
    // Nothing raised yet: the query is kept (no match), no follow-up, no error.
    let run = agent().status(0);
    assert!(!run.stdout().contains("UNKNOWN"), "{}", run.stdout());
    assert!(!run.stderr().contains("error"), "{}", run.stderr());
    assert!(journal(&cf2).is_empty());
    // Host1 raises did_my_job: the follow-up runs once, even though the agent runs again.
    up.at("baton-signal", T0)
        .args(["raise", "did_my_job"])
        .run()
        .status(0);
    agent().status(0);
    agent().status(0);
    assert_eq!(journal(&cf2), ["follow_up"]);
    // Host1's server is down: the query promise fails (UNKNOWN), never a quiet "no match".
    drop(server);
    let run = agent().status(0);
    assert!(run.stdout().contains("UNKNOWN"), "{}", run.stdout());
    assert_eq!(journal(&cf2), ["follow_up"]);
}

#[test]
fn a_cfengine_host_raises_a_baton_signal_only_in_the_run_that_succeeded() {
    if !available() {
        return;
    }
    let cf1 = CfHost::new("cf-host1", "127.0.0.1");
    let my_job = cf1.dir.join("my_job");
    let fail = cf1.dir.join("fail");
    script(
        &my_job,
        &format!("#!/bin/sh\n[ ! -f '{}' ]\n", fail.display()),
    );
    // The recipe from docs/cfengine.md: the job under the host's schedule (here the class
    // `due`, given with -D), the signal under a class of this run only.
    let policy = module_policy(&format!(
        r#"  commands:
    due::
      "{}" classes => baton_if_repaired("my_job_ok");
  methods:
    my_job_ok::
      "raise" usebundle => baton_raise("did_my_job", "10m");"#,
        my_job.display()
    ));
    let file = cf1.dir.join("raise.cf");
    std::fs::write(&file, &policy).unwrap();
    let agent = |at: &str, due: bool| {
        let mut cmd = cf1.cf("cf-agent");
        cmd.cmd
            .env("BATON_BIN", bin("baton-signal").parent().unwrap())
            .env("BATON_STATE_DIR", cf1.dir.join("state"))
            .env("BATON_HOST", "host1")
            .env("BATON_NOW", at);
        let cmd = cmd.arg("-K").arg("-f").arg(&file);
        let cmd = if due { cmd.args(["-D", "due"]) } else { cmd };
        cmd.run()
    };
    let set_at = |at: &str| {
        let out = crate::util::baton("baton-signal")
            .args(["list", "--json"])
            .env("BATON_STATE_DIR", cf1.dir.join("state"))
            .env("BATON_HOST", "host1")
            .env("BATON_NOW", at)
            .run()
            .stdout();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == "did_my_job")
            .map(|s| s["set_at"].as_str().unwrap().to_string())
    };
    // The job fails: nothing raised.
    std::fs::write(&fail, "").unwrap();
    agent("2012-01-24T16:00:00Z", true);
    assert_eq!(set_at("2012-01-24T16:00:00Z"), None);
    // It succeeds: raised at that run.
    std::fs::remove_file(&fail).unwrap();
    agent("2012-01-24T16:05:00Z", true);
    assert_eq!(
        set_at("2012-01-24T16:05:00Z").as_deref(),
        Some("2012-01-24T16:05:00Z")
    );
    // Later runs that do not run the job leave the signal's set_at alone.
    agent("2012-01-24T16:10:00Z", false);
    assert_eq!(
        set_at("2012-01-24T16:10:00Z").as_deref(),
        Some("2012-01-24T16:05:00Z")
    );
}

#[test]
fn a_cfengine_host_follows_a_baton_host_through_baton_promise() {
    if !available() {
        return;
    }
    let (up, server) = baton_upstream("host1", "127.0.0.67", &[]);
    let cf2 = CfHost::new("cf-host2", "127.0.0.1");
    let follow_up = job(&cf2, "follow_up");
    let module = bin("baton-promise");
    let policy = format!(
        r#"promise agent baton_query {{ path => "{module}"; }}
promise agent baton_signal {{ path => "{module}"; }}
body common control
{{
  bundlesequence => {{ "main" }};
  inputs => {{ "{lib}" }};
}}
bundle agent main
{{
  baton_query:
      "did.*"
        hosts => {{ "{addr}" }},
        prefix => "hostX",
        timeout => "5s",
        classes => baton_query_outcome("asked");
  commands:
    hostX_did_my_job::
      "{follow_up}" classes => baton_if_repaired("followed");
  baton_signal:
    followed::
      "did_follow_up" ttl => "10m";
  reports:
    asked_unknown::
      "UNKNOWN: a host could not be asked";
}}
"#,
        module = module.display(),
        lib = repo().join("contrib/cfengine/baton.cf").display(),
        addr = server.addr,
        follow_up = follow_up.display(),
    );
    let file = cf2.dir.join("promise.cf");
    std::fs::write(&file, &policy).unwrap();
    let state = cf2.dir.join("state");
    std::fs::create_dir_all(&state).unwrap();
    let agent = |at: &str| {
        let mut cmd = cf2.cf("cf-agent");
        cmd.cmd
            .env("BATON_STATE_DIR", &state)
            .env("BATON_HOST", "host2")
            .env("BATON_NOW", at);
        cmd.args(["-K", "-I", "-f"]).arg(&file).run().status(0)
    };
    let set_at = || {
        crate::util::baton("baton-signal")
            .args(["list", "--json"])
            .env("BATON_STATE_DIR", &state)
            .env("BATON_HOST", "host2")
            .env("BATON_NOW", "2012-01-24T16:50:00Z")
            .run()
            .stdout()
    };
    // Nothing raised upstream: kept, no follow-up, nothing raised here.
    let run = agent(T0);
    assert!(!run.stdout().contains("UNKNOWN"), "{}", run.stdout());
    assert!(!run.stderr().contains("error"), "{}", run.stderr());
    assert!(journal(&cf2).is_empty());
    assert_eq!(set_at(), "[]\n");
    // Host1 raises did_my_job: the follow-up runs and this host raises did_follow_up.
    up.at("baton-signal", T0)
        .args(["raise", "did_my_job"])
        .run()
        .status(0);
    let run = agent(T0);
    assert!(
        run.stdout().contains("raised signal did_follow_up"),
        "{}",
        run.stdout()
    );
    assert_eq!(journal(&cf2), ["follow_up"]);
    let raised = set_at();
    assert!(
        raised.contains("\"set_at\":\"2012-01-24T16:47:00Z\""),
        "{raised}"
    );
    // The next run, a minute later: the signal is live, so the promise is kept and its
    // set_at does not move (a follower's --once-per sees one success).
    let run = agent("2012-01-24T16:48:00Z");
    assert!(!run.stdout().contains("raised signal"), "{}", run.stdout());
    assert_eq!(set_at(), raised);
    // Host1's server is down: the query is not kept, named in the log, never "no match".
    drop(server);
    let run = agent("2012-01-24T16:49:00Z");
    let all = format!("{}{}", run.stdout(), run.stderr());
    assert!(all.contains("UNKNOWN"), "{all}");
    assert!(all.contains("cannot ask 127.0.0.67"), "{all}");
}

#[test]
fn the_seeds_and_and_or_in_cfengine_policy_over_mixed_upstreams() {
    if !available() {
        return;
    }
    // Host5: a CFEngine host running seed_fan_in, the seed's class expressions. Host4
    // is a CFEngine host too, raising a Baton signal through seed_do_my_job (baton-run
    // --on-repaired), which its baton-serve serves.
    let cf5 = CfHost::new("cf-host5", "127.0.0.1");
    let u = fan_in_upstreams(["127.0.0.68", "127.0.0.69", "127.0.0.70"], &cf5.dir.path);
    let (up2, client, h4, peers) = (&u.up2, &u.client, &u.h4, &u.peers);
    let policy = module_policy(&format!(
        r#"  methods:
      "fan-in" usebundle => seed_fan_in("{}", "{}");"#,
        job(&cf5, "all_of_them").display(),
        job(&cf5, "any_of_them").display()
    ));
    let file = cf5.dir.join("fan-in.cf");
    std::fs::write(&file, &policy).unwrap();
    let host5 = |at: &str| {
        let mut cmd = cf5.cf("cf-agent");
        cmd.cmd
            .env("BATON_BIN", bin("baton-query").parent().unwrap())
            .env("BATON_STATE_DIR", cf5.dir.join("state"))
            .env("BATON_HOST", "Host5")
            .env("BATON_NOW", at)
            .env("BATON_PEERS", peers)
            .env("BATON_CFENGINE_WORKDIR", client.work());
        cmd.args(["-K", "-f"]).arg(&file).run().status(0)
    };
    // Only Host3 did its job: the OR runs, the AND does not.
    host5(T0);
    assert_eq!(journal(&cf5), ["any_of_them"]);
    // Host2 (natively) and Host4 (through baton-run) do theirs: the AND runs too.
    up2.agent("host2", &do_my_job(up2)).status(0);
    let cf4 = CfHost::new("cf-host4", "127.0.0.1");
    let my_job = job(&cf4, "my_job");
    let mut run4 = cf4.cf("cf-agent");
    run4.cmd
        .env("BATON_BIN", bin("baton-run").parent().unwrap())
        .env("BATON_STATE_DIR", h4.state())
        .env("BATON_HOST", "Host4")
        .env("BATON_NOW", T0);
    let host4_policy = module_policy(&format!(
        r#"  methods:
      "job" usebundle => seed_do_my_job("{}");"#,
        my_job.display()
    ));
    let file4 = cf4.dir.join("host4.cf");
    std::fs::write(&file4, host4_policy).unwrap();
    run4.args(["-K", "-f"]).arg(&file4).run().status(0);
    assert_eq!(journal(&cf4), ["my_job"]);
    host5("2012-01-24T16:52:00Z");
    assert_eq!(journal(&cf5), ["any_of_them", "all_of_them"]);
}
