//! Real etcd members on loopback for the etcd-store tests (Debian's etcd-server; .ci/run
//! installs it). Each member gets free ports and its own data dir; all are killed when
//! the cluster is dropped.

use super::TestDir;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct EtcdCluster {
    pub dir: TestDir,
    pub members: Vec<Option<Child>>,
    pub client_addrs: Vec<String>,
}

fn free_port(ip: &str) -> u16 {
    TcpListener::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A plain-HTTP GET of `path` from an etcd member; empty when it does not answer.
fn get(addr: &str, path: &str) -> String {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let _ = s.write_all(request.as_bytes());
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn healthy(addr: &str) -> bool {
    get(addr, "/health").contains("\"health\":\"true\"")
}

impl EtcdCluster {
    /// Start `n` members on 127.0.0.(40+i) and wait (bounded) until all are healthy.
    pub fn start(n: usize) -> EtcdCluster {
        EtcdCluster::start_with(n, None)
    }

    /// One member serving clients over TLS, requiring a client certificate: `tls` is
    /// (CA, server certificate, server key) for 127.0.0.40.
    pub fn start_tls(tls: (&std::path::Path, &std::path::Path, &std::path::Path)) -> EtcdCluster {
        EtcdCluster::start_with(1, Some(tls))
    }

    fn start_with(
        n: usize,
        tls: Option<(&std::path::Path, &std::path::Path, &std::path::Path)>,
    ) -> EtcdCluster {
        assert!(
            Command::new("etcd")
                .arg("--version")
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success()),
            "etcd is not installed: apt-get install etcd-server (.ci/run does)"
        );
        let dir = TestDir::new("etcd");
        let ips: Vec<String> = (0..n).map(|i| format!("127.0.0.{}", 40 + i)).collect();
        let peers: Vec<String> = ips
            .iter()
            .map(|ip| format!("http://{ip}:{}", free_port(ip)))
            .collect();
        let clients: Vec<String> = ips
            .iter()
            .map(|ip| format!("{ip}:{}", free_port(ip)))
            .collect();
        let initial: Vec<String> = (0..n).map(|i| format!("m{i}={}", peers[i])).collect();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let members = (0..n)
            .map(|i| {
                let mut cmd = Command::new("etcd");
                if let Some((ca, cert, key)) = tls {
                    cmd.arg("--trusted-ca-file")
                        .arg(ca)
                        .arg("--cert-file")
                        .arg(cert)
                        .arg("--key-file")
                        .arg(key);
                    cmd.arg("--client-cert-auth");
                }
                let child = cmd
                    .args(["--name", &format!("m{i}")])
                    .arg("--data-dir")
                    .arg(dir.join(format!("m{i}")))
                    .args([
                        "--listen-client-urls",
                        &format!("{scheme}://{}", clients[i]),
                    ])
                    .args([
                        "--advertise-client-urls",
                        &format!("{scheme}://{}", clients[i]),
                    ])
                    .args(["--listen-peer-urls", &peers[i]])
                    .args(["--initial-advertise-peer-urls", &peers[i]])
                    .args(["--initial-cluster", &initial.join(",")])
                    .args([
                        "--initial-cluster-state",
                        "new",
                        "--initial-cluster-token",
                        "baton-test",
                    ])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(std::fs::File::create(dir.join(format!("m{i}.log"))).unwrap())
                    .spawn()
                    .unwrap();
                Some(child)
            })
            .collect();
        let cluster = EtcdCluster {
            dir,
            members,
            client_addrs: clients,
        };
        for (i, addr) in cluster.client_addrs.iter().enumerate() {
            // Over TLS the port opening is the sign of life; the test then retries its
            // first request until the member answers.
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while !match tls {
                None => healthy(addr),
                Some(_) => TcpStream::connect(addr).is_ok(),
            } {
                let log = std::fs::read_to_string(cluster.dir.join(format!("m{i}.log")))
                    .unwrap_or_default();
                assert!(
                    std::time::Instant::now() < deadline,
                    "etcd at {addr} did not become healthy:\n{log}"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        cluster
    }

    /// The store URL naming every member.
    pub fn url(&self) -> String {
        format!("etcd://{}", self.client_addrs.join(","))
    }

    /// How many watchers member `i` has open (its `etcd_debugging_mvcc_watcher_total`).
    pub fn watchers(&self, i: usize) -> u64 {
        get(&self.client_addrs[i], "/metrics")
            .lines()
            .find_map(|l| l.strip_prefix("etcd_debugging_mvcc_watcher_total "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map_or(0, |v| v as u64)
    }

    /// Kill member `i` (SIGKILL).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}
