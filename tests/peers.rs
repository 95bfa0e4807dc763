//! `baton-serve` and `baton-query` across simulated hosts on 127.0.0.x.

use crate::util::{baton, openssl, wait_until, Host, EC_KEY};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const T0: &str = "2012-01-24T16:47:00Z";

/// A host with `signals` raised at T0 (for an hour) and its server on `ip`.
pub(crate) fn upstream(
    name: &str,
    ip: &str,
    access: &str,
    signals: &[&str],
    extra: &[&str],
) -> (Host, crate::util::Server) {
    let h = Host::new(name);
    for s in signals {
        h.at("baton-signal", T0)
            .args(["raise", s, "--ttl", "1h"])
            .run()
            .status(0);
    }
    let server = h.serve(ip, access, extra);
    (h, server)
}

pub fn query() -> crate::util::Cmd {
    baton("baton-query")
        .args(["--timeout", "5s"])
        .env("BATON_NOW", T0)
}

/// One raw HTTP request; returns the status line and the body.
fn raw(addr: &str, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(request);
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// A connection to `addr` from the loopback address `from`: another peer.
pub fn connect_from(from: &str, addr: &str) -> std::io::Result<TcpStream> {
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    let from: std::net::SocketAddr = format!("{from}:0").parse().unwrap();
    socket.bind(&from.into())?;
    socket.connect_timeout(&addr.into(), Duration::from_secs(5))?;
    Ok(socket.into())
}

pub fn get(addr: &str, path: &str, auth: Option<&str>) -> String {
    let auth = auth
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    raw(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n").as_bytes(),
    )
}

#[test]
fn query_with_and_without_prefix() {
    let (_h, s) = upstream(
        "host1",
        "127.0.0.2",
        "allow did.* 127.0.0.1\n",
        &["did_my_job", "other"],
        &[],
    );
    query()
        .args(["--prefix", "hostX", &s.addr, "did.*"])
        .run()
        .status(0)
        .stdout_is("hostX_did_my_job\n");
    query()
        .args([&s.addr, "did.*"])
        .run()
        .status(0)
        .stdout_is("did_my_job\n");
    // The whole name must match, as in CFEngine.
    query().args([&s.addr, "did"]).run().status(1).stdout_is("");
    // 'other' exists but is not admitted: invisible, not an error.
    query()
        .args([&s.addr, "other"])
        .run()
        .status(1)
        .stdout_is("");
    let run = query()
        .args(["--format", "{class} {set_at} {host}", &s.addr, "did_my_job"])
        .run()
        .status(0);
    assert_eq!(
        run.stdout(),
        format!("did_my_job 2012-01-24T16:47:00Z {}\n", s.addr)
    );
    let run = query().args(["--json", &s.addr, "did.*"]).run().status(0);
    let v: serde_json::Value = serde_json::from_str(&run.stdout()).unwrap();
    assert_eq!(v[0]["name"], "did_my_job");
    assert_eq!(v[0]["expires_at"], "2012-01-24T17:47:00Z");
    assert!(
        s.log_text().contains("127.0.0.1 key=- GET /v1/signals"),
        "{}",
        s.log_text()
    );
}

#[test]
fn fan_in_over_three_hosts_with_host_prefixes_and_k_of_n() {
    let access = "allow did.* 127.0.0.1\n";
    let (_a, s2) = upstream("host2", "127.0.0.2", access, &["did_my_job"], &[]);
    let (_b, s3) = upstream("host3", "127.0.0.3", access, &["did_my_job"], &[]);
    let (_c, s4) = upstream("host4", "127.0.0.4", access, &[], &[]);
    let hosts = [s2.addr.as_str(), s3.addr.as_str(), s4.addr.as_str()];
    let run = query()
        .args(["--prefix", "{host}"])
        .args(hosts)
        .arg("did.*")
        .run()
        .status(0);
    assert_eq!(
        run.stdout(),
        "_9_127_0_0_2_did_my_job\n_9_127_0_0_3_did_my_job\n"
    );
    // All three (AND) is not yet true; two of three is.
    query()
        .args(["--min", "3"])
        .args(hosts)
        .arg("did.*")
        .run()
        .status(1);
    query()
        .args(["--min", "2"])
        .args(hosts)
        .arg("did.*")
        .run()
        .status(0);
    query()
        .args(["--min", "4"])
        .args(hosts)
        .arg("did.*")
        .run()
        .error("baton-query", "--min");
}

/// `baton-key new ID --out DIR`: writes DIR/ID.key and DIR/ID.crt; returns the --keys
/// line and the certificate's fingerprint.
pub fn new_identity(id: &str, dir: &std::path::Path) -> (String, String) {
    let line = baton("baton-key")
        .args(["new", id, "--out"])
        .arg(dir)
        .run()
        .status(0)
        .stdout();
    let fp = line.split_whitespace().nth(1).unwrap().to_string();
    (line, fp)
}

/// A server on `ip` with its own baton-key identity `name` (in `h.dir`) and `keys` as its
/// --keys file; returns it and its certificate's fingerprint (the clients' --pin).
fn mtls_server(
    h: &Host,
    name: &str,
    ip: &str,
    access: &str,
    keys: &str,
) -> (crate::util::Server, String) {
    let (_, pin) = new_identity(name, &h.dir.path);
    std::fs::write(h.dir.join("keys"), keys).unwrap();
    let crt = h.dir.join(format!("{name}.crt"));
    let key = h.dir.join(format!("{name}.key"));
    let s = h.serve(
        ip,
        access,
        &[
            "--keys",
            h.dir.join("keys").to_str().unwrap(),
            "--tls-cert",
            crt.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    (s, pin)
}

#[test]
fn admission_by_address_cidr_and_key() {
    let h = Host::new("host1");
    let clients = h.dir.join("clients");
    let (line2, _) = new_identity("host2", &clients);
    let (line3, _) = new_identity("host3", &clients);
    for s in ["did_my_job", "secret_x", "open_y"] {
        h.at("baton-signal", T0)
            .args(["raise", s, "--ttl", "1h"])
            .run()
            .status(0);
    }
    let access = "allow did.*|secret_.* key:host2\nallow did.* key:host3\ndeny secret_.* key:host3\nallow open_.* 127.0.0.0/8\nallow did.* 10.0.0.0/8\n";
    let (s, pin) = mtls_server(&h, "host1", "127.0.0.2", access, &format!("{line2}{line3}"));
    let as_key = |k: &std::path::Path| query().args(["--pin", &pin, "--key"]).arg(k);
    as_key(&clients.join("host2.key"))
        .args([&s.addr, ".*"])
        .run()
        .status(0)
        .stdout_is("did_my_job\nopen_y\nsecret_x\n");
    as_key(&clients.join("host3.key"))
        .args([&s.addr, ".*"])
        .run()
        .status(0)
        .stdout_is("did_my_job\nopen_y\n");
    // By address alone (127.0.0.1 is in 127.0.0.0/8, not in 10.0.0.0/8).
    query()
        .args(["--pin", &pin, &s.addr, ".*"])
        .run()
        .status(0)
        .stdout_is("open_y\n");
    // The identity is the certificate, not the name: another key pair called host2 is
    // refused, with the same text as any other refusal.
    let forged = h.dir.join("forged");
    new_identity("host2", &forged);
    as_key(&forged.join("host2.key"))
        .args([&s.addr, ".*"])
        .run()
        .error(
            "baton-query",
            &format!("cannot ask {}: access denied (403): not admitted", s.addr),
        );
    assert!(
        s.log_text().contains("unknown certificate"),
        "{}",
        s.log_text()
    );
    // A private key others may read is refused, with the fix.
    let key2 = clients.join("host2.key");
    std::process::Command::new("chmod")
        .arg("644")
        .arg(&key2)
        .status()
        .unwrap();
    as_key(&key2)
        .args([&s.addr, ".*"])
        .run()
        .error("baton-query", "chmod 600");
    // --key without the server's identity is an error that says what to add.
    std::process::Command::new("chmod")
        .arg("600")
        .arg(&key2)
        .status()
        .unwrap();
    query()
        .arg("--key")
        .arg(&key2)
        .args([&s.addr, ".*"])
        .run()
        .error("baton-query", "--pin");
}

#[test]
fn an_unadmitted_client_gets_403_and_no_names() {
    let (_h, s) = upstream(
        "host1",
        "127.0.0.2",
        "allow did.* 10.0.0.0/8\n",
        &["did_my_job"],
        &[],
    );
    query().args([&s.addr, "did.*"]).run().error(
        "baton-query",
        &format!("cannot ask {}: access denied (403): not admitted", s.addr),
    );
    let answer = get(&s.addr, "/v1/signals?match=.*", None);
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(!answer.contains("did_my_job"), "{answer}");
}

/// A TCP relay on 127.0.0.1 to `to` for one connection, keeping what the client sent.
fn recording_relay(to: String) -> (String, std::thread::JoinHandle<Vec<u8>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let handle = std::thread::spawn(move || {
        let (mut client, _) = listener.accept().unwrap();
        let mut server = TcpStream::connect(&to).unwrap();
        let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
        let back = std::thread::spawn(move || {
            let _ = std::io::copy(&mut s2, &mut c2);
            let _ = c2.shutdown(std::net::Shutdown::Write);
        });
        let mut sent = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match client.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    sent.extend_from_slice(&buf[..n]);
                    let _ = server.write_all(&buf[..n]);
                }
            }
        }
        let _ = server.shutdown(std::net::Shutdown::Write);
        let _ = back.join();
        sent
    });
    (addr, handle)
}

#[test]
fn a_request_accepted_by_server_a_is_useless_against_server_b() {
    let a = Host::new("a");
    let b = Host::new("b");
    for h in [&a, &b] {
        h.at("baton-signal", T0)
            .args(["raise", "did_my_job", "--ttl", "1h"])
            .run()
            .status(0);
    }
    let clients = a.dir.join("clients");
    let (line_c, _) = new_identity("c", &clients);
    // B names key:c in its access file, but holds another certificate under that id.
    let (line_other, _) = new_identity("c", &b.dir.join("other"));
    let (sa, pin_a) = mtls_server(&a, "a", "127.0.0.2", "allow .* key:c\n", &line_c);
    let (sb, pin_b) = mtls_server(&b, "b", "127.0.0.3", "allow .* key:c\n", &line_other);
    let key = clients.join("c.key");
    let pins = format!("{pin_a},{pin_b}");
    let ask = |addr: &str| {
        query()
            .args(["--pin", &pins, "--key"])
            .arg(&key)
            .args([addr, "did.*"])
    };
    ask(&sa.addr).run().status(0).stdout_is("did_my_job\n");
    ask(&sb.addr).run().error(
        "baton-query",
        &format!("cannot ask {}: access denied (403): not admitted", sb.addr),
    );
    // A captured session is useless: the bytes c sent to A, replayed to A or to B, make
    // no request (TLS binds them to the first handshake's server randomness and keys).
    let (relay, recorded) = recording_relay(sa.addr.clone());
    ask(&relay).run().status(0).stdout_is("did_my_job\n");
    let sent = recorded.join().unwrap();
    assert!(sent.len() > 100, "captured {} bytes", sent.len());
    let served = |s: &crate::util::Server| s.log_text().matches("key=c GET").count();
    let (before_a, before_b) = (served(&sa), served(&sb));
    for addr in [&sa.addr, &sb.addr] {
        let mut c = TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = c.write_all(&sent);
        let mut sink = Vec::new();
        let _ = c.read_to_end(&mut sink);
    }
    // The replayed connections are over (read_to_end returned): nothing was served.
    assert_eq!((served(&sa), served(&sb)), (before_a, before_b));
}

#[test]
fn a_down_or_silent_host_costs_only_the_timeout() {
    let (_h, s) = upstream(
        "host1",
        "127.0.0.2",
        "allow did.* 127.0.0.1\n",
        &["did_my_job"],
        &[],
    );
    // A socket that accepts connections but never answers, and a port nobody listens on.
    let silent = std::net::TcpListener::bind("127.0.0.5:0").unwrap();
    let silent_addr = silent.local_addr().unwrap().to_string();
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.6:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let ask = |min: &str| {
        baton("baton-query")
            .env("BATON_NOW", T0)
            .args(["--timeout", "1s", "--min", min, "--prefix", "{host}"])
            .args([&s.addr, &silent_addr, &dead, "did.*"])
            .run()
    };
    // Two of three cannot be decided while two hosts are unreachable: exit 2, not "no".
    let run = ask("2").status(2);
    assert_eq!(
        run.stdout(),
        "_9_127_0_0_2_did_my_job\n",
        "the live host still answers"
    );
    let err = run.stderr();
    let silent_line = format!("baton-query: cannot ask {silent_addr}: no answer within 1s");
    assert!(err.contains(&silent_line), "{err}");
    let dead_line = format!("baton-query: cannot ask {dead}: connection refused");
    assert!(err.contains(&dead_line), "{err}");
    assert_eq!(err.lines().count(), 2, "{err}");
    // One of three is already true, whatever the others would say; they are still named.
    let run = ask("1").status(0);
    assert_eq!(run.stderr().lines().count(), 2);
    // Asking only an unreachable host: unknown.
    baton("baton-query")
        .env("BATON_NOW", T0)
        .args(["--timeout", "1s", &dead, "did.*"])
        .run()
        .status(2);
}

#[test]
fn wait_returns_once_the_upstream_raises() {
    let (h, s) = upstream("host1", "127.0.0.2", "allow did.* 127.0.0.1\n", &[], &[]);
    let mut waiting = std::process::Command::new(crate::util::bin("baton-query"));
    crate::util::without_baton_env(&mut waiting);
    let mut waiting = waiting
        .args([
            "--wait",
            "60s",
            "--interval",
            "1s",
            "--prefix",
            "hostX",
            &s.addr,
            "did.*",
        ])
        .env("BATON_NOW", T0)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Not yet: the query is still waiting after its first round.
    wait_until("the first poll", Duration::from_secs(20), || {
        s.log_text().contains("GET /v1/signals")
    });
    assert!(waiting.try_wait().unwrap().is_none());
    h.at("baton-signal", T0)
        .args(["raise", "did_my_job"])
        .run()
        .status(0);
    let out = waiting.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hostX_did_my_job\n");
    // And gives up at its bound: exit 1, nothing printed.
    query()
        .args(["--wait", "1s", "--interval", "1s", &s.addr, "nothing"])
        .run()
        .status(1)
        .stdout_is("");
}

#[test]
fn newer_than_and_since_filter_old_signals() {
    let (h, s) = upstream(
        "host1",
        "127.0.0.2",
        "allow .* 127.0.0.1\n",
        &["yesterday_job"],
        &[],
    );
    h.at("baton-signal", "2012-01-24T17:20:00Z")
        .args(["raise", "today_job", "--ttl", "1h"])
        .run()
        .status(0);
    h.set_clock("2012-01-24T17:30:00Z");
    // Ages by the server's clock: yesterday_job 43m, today_job 10m.
    query()
        .args(["--newer-than", "30m", &s.addr, ".*_job"])
        .run()
        .status(0)
        .stdout_is("today_job\n");
    query()
        .args(["--newer-than", "5m", &s.addr, ".*_job"])
        .run()
        .status(1);
    query()
        .args(["--since", "2012-01-24T17:00:00Z", &s.addr, ".*_job"])
        .run()
        .status(0)
        .stdout_is("today_job\n");
    query()
        .args([&s.addr, ".*_job"])
        .run()
        .status(0)
        .stdout_is("today_job\nyesterday_job\n");
    // The server's clock moves on and the first signal expires.
    h.set_clock("2012-01-24T17:47:00Z");
    query()
        .args([&s.addr, ".*_job"])
        .run()
        .status(0)
        .stdout_is("today_job\n");
}

#[test]
fn access_file_reloads_and_a_bad_one_keeps_the_old_rules() {
    let (h, mut s) = upstream(
        "host1",
        "127.0.0.2",
        "allow did.* 127.0.0.1\n",
        &["did_my_job"],
        &[],
    );
    query().args([&s.addr, "did.*"]).run().status(0);
    std::fs::write(h.dir.join("access"), "allow did.* 10.0.0.0/8\n").unwrap();
    wait_until("the new rules", Duration::from_secs(20), || {
        query().args([&s.addr, "did.*"]).run().code() == 2
    });
    std::fs::write(
        h.dir.join("access"),
        "allow did.* 127.0.0.1\npermit everything\n",
    )
    .unwrap();
    wait_until("the refusal to be logged", Duration::from_secs(20), || {
        s.log_text().contains("line 2: unknown rule 'permit'")
    });
    assert!(s.log_text().contains("keeping the previous rules"));
    query()
        .args([&s.addr, "did.*"])
        .run()
        .status(2)
        .says("baton-query", "403");
    // SIGHUP re-reads the file even when its size and time look unchanged.
    std::fs::write(h.dir.join("access"), "allow did.* 127.0.0.1\n").unwrap();
    let _ = std::process::Command::new("kill")
        .args(["-HUP", &s.child.id().to_string()])
        .status();
    wait_until("the fixed rules", Duration::from_secs(20), || {
        query().args([&s.addr, "did.*"]).run().code() == 0
    });
    assert!(s.alive());
}

#[test]
fn garbage_never_crashes_or_wedges_the_server() {
    let (_h, mut s) = upstream(
        "host1",
        "127.0.0.2",
        "allow .* 127.0.0.1\n",
        &["did_my_job"],
        &[
            "--max-connections",
            "64",
            "--head-timeout",
            "1s",
            "--idle-timeout",
            "1s",
        ],
    );
    // Slow clients (from another peer, under its cap): connections that send half a
    // request and stall.
    let mut slow = Vec::new();
    for _ in 0..15 {
        let mut c = connect_from("127.0.0.9", &s.addr).unwrap();
        let _ = c.write_all(b"GET /v1/sig");
        slow.push(c);
    }
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..60 {
        let garbage: Vec<u8> = (0..(i * 37 % 2000 + 1))
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        let mut c = TcpStream::connect(&s.addr).unwrap();
        c.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let _ = c.write_all(&garbage);
        let _ = c.write_all(b"\r\n\r\n");
        let mut sink = [0u8; 512];
        let _ = c.read(&mut sink);
    }
    let huge_header = format!(
        "GET /v1/signals HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(1 << 20)
    );
    // Refused once past 8 KiB (the client may see the 431 or a reset while still sending).
    let answer = raw(&s.addr, huge_header.as_bytes());
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "{answer}"
    );
    let big = format!(
        "GET /v1/signals HTTP/1.1\r\nX-Big: {}\r\n\r\n",
        "a".repeat(9000)
    );
    let answer = raw(&s.addr, big.as_bytes());
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "{answer}"
    );
    for path in [
        "/v1/signals?match=%",
        "/v1/signals?match=%zz",
        "/v1/signals?match=(",
        "/v1/signals?match=a%7B1000%7D%7B1000%7D%7B1000%7D",
        "/v1/signals?match=%FF%FE",
        "/nothing",
        &format!("/v1/signals?match={}", "a".repeat(5000)),
    ] {
        let answer = get(&s.addr, path, None);
        assert!(answer.starts_with("HTTP/1.1 4"), "{path}: {answer}");
    }
    let post = raw(&s.addr, b"POST /v1/signals HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello");
    assert!(post.starts_with("HTTP/1.1 405"), "{post}");
    // After all that, with the slow clients still connected, a normal query is answered.
    query()
        .args([&s.addr, "did.*"])
        .run()
        .status(0)
        .stdout_is("did_my_job\n");
    // And the slow clients are cut off once their --head-timeout has passed.
    for mut c in slow {
        c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut sink = [0u8; 64];
        match c.read(&mut sink) {
            Ok(0) => {}
            Ok(_) => panic!("a stalled request got an answer"),
            Err(e) => assert!(
                e.kind() != std::io::ErrorKind::WouldBlock,
                "still open: {e}"
            ),
        }
    }
    assert!(s.alive());
}

#[test]
fn connections_are_bounded_and_idle_ones_closed() {
    let (_h, s) = upstream(
        "host1",
        "127.0.0.2",
        "allow .* 127.0.0.1\n",
        &["did_my_job"],
        &[
            "--max-connections",
            "9",
            "--max-per-peer",
            "8",
            "--head-timeout",
            "1s",
            "--idle-timeout",
            "1s",
        ],
    );
    let idle: Vec<TcpStream> = (0..8)
        .map(|_| TcpStream::connect(&s.addr).unwrap())
        .collect();
    // The ninth is told at once that the server is busy (once the eight are accepted).
    wait_until(
        "a 503 for one connection too many",
        Duration::from_secs(20),
        || get(&s.addr, "/v1/health", None).starts_with("HTTP/1.1 503"),
    );
    // Silent connections are closed after --head-timeout; then queries are answered again.
    for mut c in idle {
        c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut sink = [0u8; 8];
        // Closed by the server: end of file, or a reset; a time-out would mean still open.
        let closed = match c.read(&mut sink) {
            Ok(n) => n == 0,
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        };
        assert!(closed, "an idle connection was left open");
    }
    wait_until(
        "the server to answer again",
        Duration::from_secs(20),
        || query().args([&s.addr, "did.*"]).run().code() == 0,
    );
}

#[test]
fn bad_input_and_startup_errors() {
    let h = Host::new("h");
    std::fs::write(h.dir.join("access"), "allow ( 127.0.0.1\n").unwrap();
    baton("baton-serve")
        .args(["--listen", "127.0.0.1:0", "--access"])
        .arg(h.dir.join("access"))
        .run()
        .error("baton-serve", "line 1: invalid regex");
    std::fs::write(h.dir.join("access"), "allow .* 127.0.0.1\n").unwrap();
    baton("baton-serve")
        .args(["--listen", "256.0.0.1:0", "--access"])
        .arg(h.dir.join("access"))
        .run()
        .error("baton-serve", "cannot listen on 256.0.0.1:0");
    baton("baton-key")
        .args(["new", "bad id", "--out"])
        .arg(&h.dir.path)
        .run()
        .error("baton-key", "invalid key id");
    baton("baton-query")
        .args(["127.0.0.1:1", "("])
        .run()
        .error("baton-query", "invalid regex");
    baton("baton-query")
        .args(["bad host", "x"])
        .run()
        .error("baton-query", "invalid host");
    baton("baton-query")
        .args(["--prefix", "a-b", "h", "x"])
        .run()
        .error("baton-query", "--prefix");
    baton("baton-query")
        .arg("x")
        .run()
        .error("baton-query", "required");
    baton("baton-query")
        .args(["--key", "/nonexistent", "h", "x"])
        .run()
        .error("baton-query", "/nonexistent");
    baton("baton-query")
        .args(["--pin", "abc", "h", "x"])
        .run()
        .error("baton-query", "--pin");
}

/// A CA named `ca`, and a server certificate `server` for 127.0.0.2 it signed; returns
/// the server certificate's SHA-256 fingerprint.
pub fn certificates(dir: &std::path::Path, ca: &str, server: &str) -> String {
    let ec = EC_KEY;
    let ca_key = format!("{ca}.key");
    let ca_crt = format!("{ca}.crt");
    let mut args = vec![
        "req",
        "-x509",
        "-days",
        "2",
        "-subj",
        "/CN=baton test CA",
        "-keyout",
        &ca_key,
        "-out",
        &ca_crt,
    ];
    args.extend(ec);
    openssl(&args, dir);
    let key = format!("{server}.key");
    let csr = format!("{server}.csr");
    let crt = format!("{server}.crt");
    let mut args = vec![
        "req",
        "-subj",
        "/CN=localhost",
        "-keyout",
        &key,
        "-out",
        &csr,
    ];
    args.extend(ec);
    openssl(&args, dir);
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=IP:127.0.0.2,DNS:localhost\n",
    )
    .unwrap();
    openssl(
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_crt,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            &crt,
        ],
        dir,
    );
    let text = openssl(
        &["x509", "-noout", "-fingerprint", "-sha256", "-in", &crt],
        dir,
    );
    text.trim().rsplit('=').next().unwrap().to_string()
}

#[test]
fn tls_with_a_pinned_certificate_or_a_ca() {
    let h = Host::new("host1");
    let pin = certificates(&h.dir.path, "ca", "server");
    let other_pin = certificates(&h.dir.path, "other_ca", "other");
    h.at("baton-signal", T0)
        .args(["raise", "did_my_job"])
        .run()
        .status(0);
    let (cert, key) = (h.dir.join("server.crt"), h.dir.join("server.key"));
    let s = h.serve(
        "127.0.0.2",
        "allow did.* 127.0.0.1\n",
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    query()
        .args(["--pin", &pin, &s.addr, "did.*"])
        .run()
        .status(0)
        .stdout_is("did_my_job\n");
    let ca = h.dir.join("ca.crt");
    query()
        .args(["--ca", ca.to_str().unwrap(), &s.addr, "did.*"])
        .run()
        .status(0)
        .stdout_is("did_my_job\n");
    query()
        .args(["--pin", &other_pin, &s.addr, "did.*"])
        .run()
        .error("baton-query", "not a pinned one");
    let other_ca = h.dir.join("other_ca.crt");
    query()
        .args(["--ca", other_ca.to_str().unwrap(), &s.addr, "did.*"])
        .run()
        .status(2)
        .says("baton-query", "cannot ask");
    // Plain HTTP to a TLS server is an error too, never "no signal".
    query().args([&s.addr, "did.*"]).run().status(2);
    baton("baton-serve")
        .args(["--listen", "127.0.0.1:0", "--access"])
        .arg(h.dir.join("access"))
        .args([
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            cert.to_str().unwrap(),
        ])
        .run()
        .error("baton-serve", "private key");
}

/// The server's log once it holds `want` (bounded wait: the start-up lines follow the
/// `listening on` line the harness waits for).
fn log_once_it_has(s: &crate::util::Server, want: &str) -> String {
    wait_until(
        &format!("the log to say '{want}'"),
        Duration::from_secs(20),
        || s.log_text().contains(want),
    );
    s.log_text()
}

/// Every line of a log starts with an RFC 3339 UTC time, then `baton-serve:`.
fn assert_stamped(log: &str) {
    for line in log.lines() {
        let (stamp, rest) = line.split_once(' ').unwrap_or_default();
        assert!(
            chrono::DateTime::parse_from_rfc3339(stamp).is_ok()
                && rest.starts_with("baton-serve: "),
            "an unstamped log line: {line:?}"
        );
    }
}

#[test]
fn startup_log_says_who_where_and_what_is_wrong() {
    // A missing state dir and an empty access file, plain HTTP, no keys.
    let h = Host::new("host1");
    assert!(!h.state().exists());
    let s = h.serve("127.0.0.2", "# nothing yet\n", &[]);
    let log = log_once_it_has(&s, "has no rules");
    assert!(log.contains("as host host1 (plain HTTP)"), "{log}");
    assert!(
        log.contains(&format!("state dir {}", h.state().display())),
        "{log}"
    );
    assert!(log.contains("does not exist"), "{log}");
    assert!(
        log.contains(&format!(
            "access file {} (0 rules)",
            h.dir.join("access").display()
        )),
        "{log}"
    );
    assert!(log.contains("no keys file (--keys)"), "{log}");
    assert_stamped(&log);
    drop(s);

    // An empty state dir.
    let h = Host::new("host1");
    std::fs::create_dir(h.state()).unwrap();
    let s = h.serve("127.0.0.2", "allow .* 127.0.0.1\n", &[]);
    let log = log_once_it_has(&s, "holds no signals yet");
    assert!(!log.contains("has no rules"), "{log}");
    drop(s);

    // Rules naming a key --keys does not list; the one it lists is not warned about.
    let h = Host::new("host1");
    h.at("baton-signal", T0)
        .args(["raise", "did_my_job", "--ttl", "1h"])
        .run()
        .status(0);
    let (line2, _) = new_identity("host2", &h.dir.join("clients"));
    let (s, _) = mtls_server(
        &h,
        "host1",
        "127.0.0.2",
        "allow .* key:host2 key:host3\n",
        &line2,
    );
    let log = log_once_it_has(&s, "key:host3, which --keys does not list");
    assert!(
        log.contains(&format!(
            "keys file {} (1 identities)",
            h.dir.join("keys").display()
        )),
        "{log}"
    );
    assert!(log.contains("HTTPS, certificate"), "{log}");
    assert!(!log.contains("key:host2, which"), "{log}");
    assert!(
        !log.contains("holds no signals") && !log.contains("does not exist"),
        "{log}"
    );
    // And a query's request line is stamped too.
    query()
        .args(["--pin"])
        .arg(s_pin(&h))
        .args([&s.addr, "x"])
        .run();
    wait_until("a request line", Duration::from_secs(20), || {
        s.log_text().contains(" GET /v1/signals")
    });
    assert_stamped(&s.log_text());
}

/// The fingerprint of host `h`'s own certificate (its server's --pin).
fn s_pin(h: &Host) -> String {
    baton("baton-key")
        .arg("show")
        .arg(h.dir.join(format!("{}.crt", h.name)))
        .run()
        .status(0)
        .stdout()
        .trim()
        .to_string()
}

// The status page's peers (--peers): what it relays, and what asking them may cost.

/// Raise `signal` on `h` at T0 for an hour.
fn raise(h: &Host, signal: &str) {
    h.at("baton-signal", T0)
        .args(["raise", signal, "--ttl", "1h"])
        .run()
        .status(0);
}

/// A successful run of job `job` on `h` at `at`.
fn succeed(h: &Host, at: &str, job: &str) {
    h.at("baton-run", at)
        .args(["-q", "--lock", job, "--", "true"])
        .run()
        .status(0);
}

/// A stand-in peer on `ip`: answers each request with `answer(path)` (a status and a JSON
/// body), or holds the connection unanswered until the asker gives up where it gives
/// `None`. Counts the connections it accepted.
fn stand_in_peer(
    ip: &str,
    answer: impl Fn(&str) -> Option<(u16, String)> + Send + Sync + 'static,
) -> (String, Arc<AtomicUsize>) {
    let listener = std::net::TcpListener::bind(format!("{ip}:0")).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let accepted = Arc::new(AtomicUsize::new(0));
    let (answer, count) = (Arc::new(answer), Arc::clone(&accepted));
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { break };
            count.fetch_add(1, Ordering::SeqCst);
            let answer = Arc::clone(&answer);
            std::thread::spawn(move || {
                conn.set_read_timeout(Some(Duration::from_secs(30)))
                    .unwrap();
                let head = crate::util::read_head(&mut conn);
                let path = head.split_whitespace().nth(1).unwrap_or("");
                match answer(path) {
                    Some((status, body)) => {
                        let _ = write!(
                            conn,
                            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        );
                    }
                    // Never answered: read until the asker closes.
                    None => while conn.read(&mut [0u8; 64]).is_ok_and(|n| n > 0) {},
                }
            });
        }
    });
    (addr, accepted)
}

/// One GET from the loopback address `from` (another viewer): the whole answer.
fn get_as(from: &str, addr: &str, path: &str) -> String {
    let mut s = connect_from(from, addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// `h`'s peers file, listing `lines`; its path as an argument.
fn peers_file(h: &Host, lines: &str) -> String {
    let path = h.dir.join("peers");
    std::fs::write(&path, lines).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn the_page_relays_of_peers_only_what_this_hosts_access_file_admits_the_viewer() {
    // host1 tells its askers on loopback everything: host2 is one of them.
    let (h1, s1) = upstream(
        "host1",
        "127.0.0.71",
        "allow .* 127.0.0.0/8\nallow job:.* 127.0.0.0/8\n",
        &["did_my_job", "other_signal"],
        &[],
    );
    succeed(&h1, "2012-01-24T16:00:00Z", "my_job");
    let h2 = Host::new("host2");
    succeed(&h2, "2012-01-24T16:10:00Z", "local_job");
    raise(&h2, "local_signal");
    let peers = peers_file(&h2, &format!("host1 {}\n", s1.addr));
    let s2 = h2.serve(
        "127.0.0.72",
        "allow no_such_signal 127.0.0.6\n\
         allow .* 127.0.0.7\nallow job:.* 127.0.0.7\n\
         allow did.* 127.0.0.8\n\
         allow .* 127.0.0.9\ndeny .* 127.0.0.9\nallow job:.* 127.0.0.9\ndeny job:.* 127.0.0.9\n",
        &["--peers", &peers],
    );
    let page = |viewer: &str| {
        let answer = get_as(viewer, &s2.addr, "/");
        assert!(answer.starts_with("HTTP/1.1 200 "), "{viewer}: {answer}");
        answer
    };
    // Admitted to every signal and job: host1's row with its job and both signals.
    let all = page("127.0.0.7");
    for want in [
        "class=\"hostrow host\" data-host=\"host1\"",
        "data-job=\"my_job\"",
        "data-signal=\"did_my_job\"",
        "data-signal=\"other_signal\"",
        "data-job=\"local_job\"",
    ] {
        assert!(all.contains(want), "lacks {want}: {all}");
    }
    // Admitted to did.* signals only: of host1, that signal, not its job nor the other.
    let some = page("127.0.0.8");
    assert!(some.contains("data-host=\"host1\"") && some.contains("data-signal=\"did_my_job\""));
    assert!(
        !some.contains("other_signal") && !some.contains("data-job="),
        "{some}"
    );
    // Admitted to a signal nobody has, or allowed everything and denied it all again: not
    // a trace of host1 (nor of host2's own jobs and signals).
    for viewer in ["127.0.0.6", "127.0.0.9"] {
        let none = page(viewer);
        for leak in ["host1", "my_job", "did_my_job", "other_signal", "local_"] {
            assert!(!none.contains(leak), "{viewer} sees {leak}: {none}");
        }
        // /metrics gives it the server's own families (no names), none of the jobs' or
        // signals'.
        let metrics = get_as(viewer, &s2.addr, "/metrics");
        assert!(metrics.starts_with("HTTP/1.1 200 "), "{metrics}");
        let body = metrics.split_once("\r\n\r\n").unwrap().1;
        assert!(body.contains("baton_serve_requests_total{"), "{body}");
        assert!(
            body.contains("baton_signals_live{host=\"host2\"} 0"),
            "{body}"
        );
        let named = body
            .lines()
            .filter(|l| l.starts_with("baton_job_") || l.starts_with("baton_signal_"))
            .collect::<Vec<_>>();
        assert!(named.is_empty(), "{viewer}: {named:?}");
    }
}

#[test]
fn a_silent_peer_stalls_neither_the_server_nor_other_page_loads() {
    let (silent, accepted) = stand_in_peer("127.0.0.73", |_| None);
    let h = Host::new("host2");
    raise(&h, "did_my_job");
    let peers = peers_file(&h, &format!("silent {silent}\n"));
    let peer_timeout = Duration::from_secs(4);
    let s = h.serve(
        "127.0.0.74",
        "allow .* 127.0.0.1\n",
        &["--peers", &peers, "--peer-timeout", "4s"],
    );
    let load = |addr: &str| {
        let addr = addr.to_string();
        std::thread::spawn(move || get(&addr, "/", None))
    };
    let mut loads = vec![load(&s.addr)];
    wait_until(
        "a page load asking the peer",
        Duration::from_secs(20),
        || accepted.load(Ordering::SeqCst) >= 1,
    );
    loads.extend((0..3).map(|_| load(&s.addr)));
    // Four page loads are waiting on the peer (open connections: theirs and the scrape's).
    wait_until("four page loads in flight", Duration::from_secs(20), || {
        let m = get(&s.addr, "/metrics", None);
        m.lines()
            .find_map(|l| l.strip_prefix("baton_serve_connections{host=\"host2\"} "))
            .and_then(|v| v.parse::<f64>().ok())
            .is_some_and(|n| n >= 5.0)
    });
    // Meanwhile the server answers everything else, well within the peer's time-out.
    for path in ["/v1/health", "/v1/signals?match=did.*"] {
        let started = Instant::now();
        let answer = get(&s.addr, path, None);
        let took = started.elapsed();
        assert!(answer.starts_with("HTTP/1.1 200 "), "{path}: {answer}");
        assert!(
            took < peer_timeout,
            "{path} took {took:?} while page loads waited on a silent peer"
        );
    }
    for page in loads {
        let page = page.join().unwrap();
        assert!(page.starts_with("HTTP/1.1 200 "), "{page}");
        assert!(
            page.contains("class=\"hostrow peer unreachable\" data-host=\"silent\"")
                && page.contains("no answer within 4s"),
            "{page}"
        );
    }
    // The four page loads shared one round of asking: the peer was asked once.
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[test]
fn a_host_listing_itself_in_another_case_is_shown_once() {
    let h = Host::new("host14");
    raise(&h, "did_my_job");
    // The address does not matter: the name is this host's, whatever its case.
    let peers = peers_file(&h, "Host14 127.0.0.75:9\nHOST14.other 127.0.0.75:9\n");
    let s = h.serve("127.0.0.75", "allow .* 127.0.0.1\n", &["--peers", &peers]);
    let page = get(&s.addr, "/", None);
    assert!(page.starts_with("HTTP/1.1 200 "), "{page}");
    let lower = page.to_lowercase();
    assert_eq!(lower.matches("data-host=\"host14\"").count(), 1, "{page}");
    // A different name is a different host.
    assert!(page.contains("data-host=\"HOST14.other\""), "{page}");
}

#[test]
fn two_servers_listing_each_other_both_render_under_concurrent_loads() {
    let free = |ip: &str| {
        let l = std::net::TcpListener::bind(format!("{ip}:0")).unwrap();
        l.local_addr().unwrap().to_string()
    };
    let (a_addr, b_addr) = (free("127.0.0.76"), free("127.0.0.77"));
    let list = format!("hosta {a_addr}\nhostb {b_addr}\n");
    let start = |name: &str, addr: &str| {
        let h = Host::new(name);
        raise(&h, &format!("{name}_ready"));
        let peers = peers_file(&h, &list);
        let s = h.serve(addr, "allow .* 127.0.0.0/8\n", &["--peers", &peers]);
        (h, s)
    };
    let (_ha, sa) = start("hosta", &a_addr);
    let (_hb, sb) = start("hostb", &b_addr);
    // Page loads on both at once: each server asks the other while being asked.
    let loads: Vec<_> = [
        (&sa, "hostb"),
        (&sb, "hosta"),
        (&sa, "hostb"),
        (&sb, "hosta"),
    ]
    .into_iter()
    .map(|(s, other)| {
        let addr = s.addr.clone();
        (other, std::thread::spawn(move || get(&addr, "/", None)))
    })
    .collect();
    for (other, page) in loads {
        let page = page.join().unwrap();
        assert!(page.starts_with("HTTP/1.1 200 "), "{page}");
        assert!(
            page.contains(&format!("class=\"hostrow host\" data-host=\"{other}\""))
                && page.contains(&format!("data-signal=\"{other}_ready\"")),
            "{other} missing: {page}"
        );
        assert!(!page.contains("could not be asked"), "{page}");
    }
}

/// A `/v1/signals` answer of `host` with `n` signals.
fn signals_answer(host: &str, n: usize) -> String {
    let signals: Vec<String> = (0..n)
        .map(|i| {
            format!(
                r#"{{"name":"{host}_sig{i}","host":"{host}","set_at":"2012-01-24T16:00:00Z","expires_at":"2012-01-24T18:00:00Z"}}"#
            )
        })
        .collect();
    format!(
        r#"{{"version":1,"host":"{host}","now":"2012-01-24T16:47:00Z","signals":[{}]}}"#,
        signals.join(",")
    )
}

/// A `/v1/history` answer of `host`: job `{host}_job{i}` with `runs[i]` ticks, a minute
/// apart from 00:00.
fn history_answer(host: &str, runs: &[usize]) -> String {
    let jobs: Vec<String> = runs
        .iter()
        .enumerate()
        .map(|(j, n)| {
            let ticks: Vec<String> = (0..*n)
                .map(|i| {
                    let at = format!("2012-01-24T{:02}:{:02}:00Z", (i / 60) % 24, i % 60);
                    format!(
                        r#"{{"run":"r{i}","start":"{at}","end":"{at}","outcome":"repaired","status":0}}"#
                    )
                })
                .collect();
            format!(r#"{{"job":"{host}_job{j}","runs":[{}]}}"#, ticks.join(","))
        })
        .collect();
    format!(
        r#"{{"version":1,"host":"{host}","now":"2012-01-24T16:47:00Z","jobs":[{}]}}"#,
        jobs.join(",")
    )
}

#[test]
fn old_and_hostile_peers_are_shown_within_the_pages_bounds() {
    // An older baton-serve: signals, and 404 for /v1/history.
    let (old, _) = stand_in_peer("127.0.0.79", |path| {
        Some(match path.starts_with("/v1/signals") {
            true => (200, signals_answer("old", 1)),
            false => (404, r#"{"error":"no such resource"}"#.to_string()),
        })
    });
    // A peer answering 70 000 ticks (7 MB): refused past 1 MiB, its signals still shown.
    let (huge, _) = stand_in_peer("127.0.0.80", |path| {
        Some(match path.starts_with("/v1/signals") {
            true => (200, signals_answer("huge", 1)),
            false => (200, history_answer("huge", &[70_000])),
        })
    });
    // Under 1 MiB but past every other bound: 1 500 signals, 250 jobs, 600 ticks in one.
    let (many, _) = stand_in_peer("127.0.0.81", |path| {
        let mut runs = vec![1; 250];
        runs[0] = 600;
        Some(match path.starts_with("/v1/signals") {
            true => (200, signals_answer("many", 1500)),
            false => (200, history_answer("many", &runs)),
        })
    });
    let h = Host::new("host2");
    let peers = peers_file(&h, &format!("old {old}\nhuge {huge}\nmany {many}\n"));
    let s = h.serve(
        "127.0.0.82",
        "allow .* 127.0.0.1\nallow job:.* 127.0.0.1\n",
        &["--peers", &peers],
    );
    let page = get(&s.addr, "/", None);
    assert!(
        page.starts_with("HTTP/1.1 200 "),
        "{}",
        &page[..page.len().min(2000)]
    );
    assert!(page.len() < 1024 * 1024, "the page is {} bytes", page.len());
    let row = |host: &str| {
        let start = page
            .find(&format!("class=\"hostrow host\" data-host=\"{host}\""))
            .unwrap_or_else(|| panic!("no answered row for {host}"));
        let rest = &page[start..];
        let end = rest[1..]
            .find("class=\"hostrow")
            .map_or(rest.len(), |e| e + 1);
        rest[..end].to_string()
    };
    let old_row = row("old");
    assert!(
        old_row.contains("no history (older baton-serve)")
            && old_row.contains("data-signal=\"old_sig0\""),
        "{old_row}"
    );
    let huge_row = row("huge");
    assert!(
        huge_row.contains("its jobs could not be asked: bad answer: too large")
            && huge_row.contains("data-signal=\"huge_sig0\"")
            && !huge_row.contains("data-job="),
        "{huge_row}"
    );
    let many_row = row("many");
    assert_eq!(many_row.matches("data-signal=\"many_sig").count(), 1000);
    assert_eq!(many_row.matches("data-job=\"many_job").count(), 200);
    assert!(
        many_row.contains("1500 signals: the first 1000 shown")
            && many_row.contains("250 jobs: the first 200 shown"),
        "{}",
        &many_row[..2000]
    );
    let job0 = &many_row[many_row.find("data-job=\"many_job0\"").unwrap()..];
    let job0 = &job0[..job0.find("class=\"row ").unwrap()];
    assert_eq!(
        job0.matches("class=\"mark ").count(),
        500,
        "the newest 500 ticks"
    );
}

#[test]
fn head_answers_as_get_without_a_body_and_405_names_the_methods() {
    let (h, s) = upstream(
        "host1",
        "127.0.0.83",
        "allow .* 127.0.0.1\nallow job:.* 127.0.0.1\n",
        &["did_my_job"],
        &[],
    );
    succeed(&h, "2012-01-24T16:00:00Z", "my_job");
    let ask = |method: &str, path: &str| {
        let answer = raw(
            &s.addr,
            format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
        (head.to_lowercase(), body.to_string())
    };
    let length = |head: &str| {
        head.lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .map(str::to_string)
    };
    for path in [
        "/v1/health",
        "/v1/signals?match=.*",
        "/v1/history",
        "/",
        "/metrics",
    ] {
        let (get_head, get_body) = ask("GET", path);
        let (head, body) = ask("HEAD", path);
        assert!(head.starts_with("http/1.1 200 "), "HEAD {path}: {head}");
        assert_eq!(body, "", "HEAD {path} has no body");
        assert!(get_head.starts_with("http/1.1 200 ") && !get_body.is_empty());
        // The length of the body GET gives (/metrics' counters move between the two).
        if path != "/metrics" {
            assert_eq!(length(&head), Some(get_body.len().to_string()), "{path}");
        }
    }
    // HEAD is admitted as GET is: refused alike to a peer admitted to nothing.
    let mut c = connect_from("127.0.0.9", &s.addr).unwrap();
    c.write_all(b"HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut refused = String::new();
    let _ = c.read_to_string(&mut refused);
    assert!(
        refused.starts_with("HTTP/1.1 403 ") && refused.ends_with("\r\n\r\n"),
        "{refused}"
    );
    for method in ["POST", "PUT", "DELETE", "OPTIONS"] {
        let (head, _) = ask(method, "/v1/signals");
        assert!(head.starts_with("http/1.1 405 "), "{method}: {head}");
        assert!(head.contains("\r\nallow: get, head"), "{method}: {head}");
    }
}
