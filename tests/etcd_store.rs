//! Signals in etcd (`--store`, `BATON_STORE`): the seed's workflows with the same crontab
//! lines as on the file store, a member lost mid-workflow, and every member down.

use crate::util::cluster::Cluster;
use crate::util::etcd::EtcdCluster;
use crate::util::{baton, Host};

fn day(hhmm: &str) -> String {
    format!("2012-01-24T{hhmm}:00Z")
}

#[test]
fn signals_live_in_etcd_with_both_policies() {
    let etcd = EtcdCluster::start(1);
    let h = Host::new("host1");
    let at = |t: &str| h.at("baton-signal", &day(t)).env("BATON_STORE", etcd.url());
    at("16:47").args(["raise", "did_my_job"]).run().status(0);
    at("16:50")
        .args(["list"])
        .run()
        .status(0)
        .stdout_is("did_my_job 2012-01-24T16:47:00Z 2012-01-24T16:57:00Z\n");
    at("16:57").args(["list"]).run().status(1);
    at("16:47")
        .args(["raise", "p", "--ttl", "1h", "--policy", "preserve"])
        .run()
        .status(0);
    at("17:00")
        .args(["raise", "p", "--ttl", "1h", "--policy", "preserve"])
        .run()
        .status(0);
    at("17:01")
        .args(["list", "p"])
        .run()
        .stdout_is("p 2012-01-24T16:47:00Z 2012-01-24T17:47:00Z\n");
    at("17:01").args(["clear", "p"]).run().status(0);
    at("17:01").args(["list"]).run().status(1);
    // Nothing was written to the state dir.
    assert!(!h.state().join("signals").exists());
    // baton-if and baton-run read and write the same store.
    h.at("baton-run", &day("16:00"))
        .env("BATON_STORE", etcd.url())
        .args(["--on-repaired", "ran", "--", "true"])
        .run()
        .status(0);
    h.at("baton-if", &day("16:05"))
        .env("BATON_STORE", etcd.url())
        .arg("host1.ran")
        .run()
        .status(0);
    // Another host's signals are read from etcd directly, by name.
    baton("baton-query")
        .env("BATON_NOW", day("16:05"))
        .env("BATON_STORE", etcd.url())
        .args(["--prefix", "{host}", "host1", "ran"])
        .run()
        .status(0)
        .stdout_is("host1_ran\n");
}

#[test]
fn the_seed_sequence_and_and_fan_in_run_unchanged_on_etcd() {
    let etcd = EtcdCluster::start(1);
    let mut c = Cluster::from_guide("signalled", &["Host1", "Host2"]);
    c.use_store(&etcd.url());
    c.run(&day("16:00"), &day("17:30"));
    assert_eq!(c.runs("Host2", "do_my_job_bundle"), [day("16:45")]);
    assert_eq!(c.mail("Host2"), "");

    let mut c = Cluster::from_guide("aggregate", &["Host2", "Host3", "Host4", "Host5"]);
    c.use_store(&etcd.url());
    c.fail("Host3", "my_job", "always");
    c.run(&day("15:50"), &day("17:00"));
    assert!(c.runs("Host5", "all_of_them").is_empty());
    assert_eq!(c.runs("Host5", "any_of_them"), [day("16:00")]);
    assert_eq!(c.runs("Host5", "two_of_three"), [day("16:00")]);
}

#[test]
fn waiting_works_on_etcd() {
    let etcd = EtcdCluster::start(1);
    let mut c = Cluster::from_guide("waiting", &["Host1", "Host2"]);
    c.use_store(&etcd.url());
    c.background("--wait");
    crate::workflows::follows_whenever_the_upstream_succeeds(&mut c);
}

#[test]
fn losing_one_member_of_three_mid_workflow_loses_nothing() {
    let mut etcd = EtcdCluster::start(3);
    let mut c = Cluster::from_guide("regular", &["Host1", "Host2"]);
    c.use_store(&etcd.url());
    c.run(&day("15:30"), &day("16:00"));
    assert_eq!(c.runs("Host1", "my_job"), [day("16:00")]);
    // The member every client tries first dies.
    etcd.kill(0);
    c.run(&day("16:05"), &day("18:00"));
    c.run("2012-01-25T15:30:00Z", "2012-01-25T16:30:00Z");
    assert_eq!(
        c.runs("Host1", "my_job"),
        [day("16:00"), "2012-01-25T16:00:00Z".to_string()]
    );
    assert_eq!(
        c.runs("Host2", "do_my_job_bundle"),
        [day("16:00"), "2012-01-25T16:00:00Z".to_string()]
    );
    assert_eq!(c.mail("Host1"), "");
    assert_eq!(c.mail("Host2"), "");
}

#[test]
fn every_member_down_is_an_error_never_a_no() {
    let mut etcd = EtcdCluster::start(1);
    let url = etcd.url();
    etcd.kill(0);
    let h = Host::new("host1");
    h.at("baton-signal", &day("16:00"))
        .env("BATON_STORE", &url)
        .args(["raise", "x"])
        .run()
        .error("baton-signal", "no etcd member answered");
    h.at("baton-if", &day("16:00"))
        .env("BATON_STORE", &url)
        .arg("host1.x")
        .run()
        .error("baton-if", "no etcd member answered");
    baton("baton-query")
        .env("BATON_NOW", day("16:00"))
        .env("BATON_STORE", &url)
        .args(["host1", "x"])
        .run()
        .error("baton-query", "cannot ask host1: no etcd member answered");
    h.at("baton-signal", &day("16:00"))
        .env("BATON_STORE", "etcd://nonsense")
        .args(["list"])
        .run()
        .error("baton-signal", "invalid store");
}

#[test]
fn wait_on_etcd_wakes_on_the_write_not_the_next_poll() {
    let etcd = EtcdCluster::start(1);
    let h = Host::new("host1");
    // Real clock: a ten-minute interval would outlast this test's bound if the query
    // polled; etcd's watch wakes it when the signal is written.
    let mut cmd = std::process::Command::new(crate::util::bin("baton-query"));
    crate::util::without_baton_env(&mut cmd);
    let mut waiting = cmd
        .args([
            "--wait",
            "20m",
            "--interval",
            "10m",
            "--store",
            &etcd.url(),
            "host1",
            "did_my_job",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // It has made its first read (and found nothing) once it watches.
    crate::util::wait_until(
        "baton-query to start watching etcd",
        std::time::Duration::from_secs(30),
        || etcd.watchers(0) > 0,
    );
    let mut raise = std::process::Command::new(crate::util::bin("baton-signal"));
    crate::util::without_baton_env(&mut raise);
    let ok = raise
        .args([
            "raise",
            "did_my_job",
            "--host",
            "host1",
            "--store",
            &etcd.url(),
            "--state-dir",
        ])
        .arg(h.state())
        .status()
        .unwrap();
    assert!(ok.success());
    crate::util::wait_child(
        &mut waiting,
        std::time::Duration::from_secs(60),
        "baton-query --wait",
    );
    let out = waiting.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "did_my_job\n");
}

#[test]
fn once_per_records_live_in_etcd_too() {
    let etcd = EtcdCluster::start(1);
    let mut c = Cluster::from_guide("healing", &["Host1", "Host2"]);
    c.use_store(&etcd.url());
    c.fail("Host1", "my_job", "2");
    c.run(&day("15:30"), &day("19:00"));
    assert_eq!(c.runs("Host1", "my_job"), [day("16:10")]);
    assert_eq!(
        c.runs("Host2", "do_my_job_bundle"),
        [day("16:10")],
        "once for that success"
    );
    // The key is in etcd, not in the state dir's once-per ledger.
    let ledger = c.host("Host2").host.state().join("once-per");
    assert!(!ledger.exists(), "{} exists", ledger.display());
}

/// etcdctl against the cluster, as its root user once auth is on.
fn etcdctl(etcd: &EtcdCluster, args: &[&str]) {
    let out = std::process::Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", &etcd.client_addrs[0]])
        .args(args)
        .output()
        .expect("etcdctl is installed (etcd-client; .ci/run installs it)");
    assert!(
        out.status.success(),
        "etcdctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn each_host_writes_only_its_own_prefix_with_etcd_auth() {
    let etcd = EtcdCluster::start(1);
    let root = ["--user", "root:rootpw"];
    etcdctl(&etcd, &["user", "add", "root:rootpw"]);
    etcdctl(&etcd, &["auth", "enable"]);
    for (host, reads) in [("host1", None), ("host2", Some("host1"))] {
        etcdctl(&etcd, &[&root[..], &["role", "add", host]].concat());
        for prefix in [
            format!("/baton/signals/{host}/"),
            format!("/baton/once-per/{host}/"),
        ] {
            etcdctl(
                &etcd,
                &[
                    &root[..],
                    &[
                        "role",
                        "grant-permission",
                        host,
                        "readwrite",
                        &prefix,
                        "--prefix=true",
                    ],
                ]
                .concat(),
            );
        }
        if let Some(other) = reads {
            let prefix = format!("/baton/signals/{other}/");
            etcdctl(
                &etcd,
                &[
                    &root[..],
                    &[
                        "role",
                        "grant-permission",
                        host,
                        "read",
                        &prefix,
                        "--prefix=true",
                    ],
                ]
                .concat(),
            );
        }
        etcdctl(
            &etcd,
            &[&root[..], &["user", "add", &format!("{host}:{host}pw")]].concat(),
        );
        etcdctl(
            &etcd,
            &[&root[..], &["user", "grant-role", host, host]].concat(),
        );
    }
    let url = |user: &str| format!("etcd://{user}:{user}pw@{}", etcd.client_addrs[0]);
    let h1 = Host::new("host1");
    h1.at("baton-signal", &day("16:00"))
        .env("BATON_STORE", url("host1"))
        .args(["raise", "did_my_job"])
        .run()
        .status(0);
    // host2 reads host1's signals...
    baton("baton-query")
        .env("BATON_NOW", day("16:01"))
        .env("BATON_STORE", url("host2"))
        .args(["host1", "did.*"])
        .run()
        .status(0)
        .stdout_is("did_my_job\n");
    // ...but cannot write them, nor read a host it is not admitted to.
    let h2_as_host1 = Host::new("host1");
    h2_as_host1
        .at("baton-signal", &day("16:01"))
        .env("BATON_STORE", url("host2"))
        .args(["raise", "forged"])
        .run()
        .error("baton-signal", "permission denied");
    baton("baton-query")
        .env("BATON_NOW", day("16:01"))
        .env("BATON_STORE", url("host1"))
        .args(["host2", "did.*"])
        .run()
        .error("baton-query", "permission denied");
    // A wrong password is refused, clearly.
    h1.at("baton-signal", &day("16:01"))
        .env(
            "BATON_STORE",
            format!("etcd://host1:wrong@{}", etcd.client_addrs[0]),
        )
        .args(["list"])
        .run()
        .error("baton-signal", "authentication as 'host1' refused");
}

/// A CA, a server certificate for 127.0.0.40 and a client certificate, by openssl.
fn etcd_certificates(dir: &std::path::Path) {
    let run = |args: &[&str]| {
        crate::util::openssl(args, dir);
    };
    let ec = crate::util::EC_KEY;
    run(&[
        &[
            "req",
            "-x509",
            "-days",
            "2",
            "-subj",
            "/CN=etcd test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
        ][..],
        &ec,
    ]
    .concat());
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.40\nextendedKeyUsage=serverAuth,clientAuth\n",
    )
    .unwrap();
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    for (name, ext) in [("server", "server.ext"), ("client", "client.ext")] {
        let (key, csr, crt) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.crt"),
        );
        run(&[
            &[
                "req",
                "-subj",
                &format!("/CN={name}"),
                "-keyout",
                &key,
                "-out",
                &csr,
            ][..],
            &ec,
        ]
        .concat());
        run(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            ext,
            "-out",
            &crt,
        ]);
    }
}

#[test]
fn etcds_with_a_ca_and_a_client_certificate() {
    let certs = crate::util::TestDir::new("etcd-tls");
    etcd_certificates(&certs.path);
    let etcd = EtcdCluster::start_tls((
        &certs.join("ca.crt"),
        &certs.join("server.crt"),
        &certs.join("server.key"),
    ));
    let url = format!("etcds://{}", etcd.client_addrs[0]);
    let h = Host::new("host1");
    let signal = |args: &[&str]| {
        h.at("baton-signal", &day("16:00"))
            .env("BATON_STORE", &url)
            .env("BATON_ETCD_CA", certs.join("ca.crt"))
            .env("BATON_ETCD_CERT", certs.join("client.crt"))
            .env("BATON_ETCD_KEY", certs.join("client.key"))
            .args(args)
            .run()
    };
    crate::util::wait_until(
        "etcd to answer over TLS",
        std::time::Duration::from_secs(30),
        || signal(&["raise", "did_my_job"]).code() == 0,
    );
    signal(&["list", "--names"])
        .status(0)
        .stdout_is("did_my_job\n");
    // Without the client certificate, or without trusting the CA: an error, not "none".
    h.at("baton-signal", &day("16:00"))
        .env("BATON_STORE", &url)
        .env("BATON_ETCD_CA", certs.join("ca.crt"))
        .args(["list"])
        .run()
        .status(2)
        .says("baton-signal", "no etcd member answered");
    h.at("baton-signal", &day("16:00"))
        .env("BATON_STORE", &url)
        .args(["list"])
        .run()
        .status(2)
        .says("baton-signal", "no etcd member answered");
}
