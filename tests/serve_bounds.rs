//! baton-serve's bounds over a connection's whole life, tried as an attacker would: one
//! peer holding many idle connections, a TLS handshake dripped a byte a second, a server
//! out of file descriptors, and a stop while clients are connected.

use crate::peers::{certificates, connect_from, get, query, upstream};
use crate::util::wait_until;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

/// Raise this process's open-file limit to its hard limit (the test holds many sockets).
fn raise_nofile(want: u64) {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    let hard = limit.maximum.unwrap_or(u64::MAX);
    assert!(
        hard >= want,
        "the hard open-file limit {hard} is below {want}"
    );
    limit.current = Some(want.max(limit.current.unwrap_or(0)));
    setrlimit(Resource::Nofile, limit).unwrap();
}

/// Whether the peer has closed the connection (as opposed to not answering yet).
fn closed(c: &mut std::net::TcpStream) -> bool {
    let mut sink = [0u8; 256];
    match c.read(&mut sink) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

/// CPU time (user + system, in clock ticks) a process has used, from /proc/PID/stat.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which is in parentheses): utime and stime are the
    // 12th and 13th.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[test]
fn eleven_hundred_idle_connections_from_one_peer_leave_another_served() {
    raise_nofile(1400);
    let (_h, mut s) = upstream(
        "host1",
        "127.0.0.2",
        "allow .* 127.0.0.1\n",
        &["did_my_job"],
        &[],
    );
    // 127.0.0.9 (denied by the access file, as an attacker would be) opens 1 100
    // connections and sends nothing.
    let idle: Vec<std::net::TcpStream> = (0..1100)
        .map(|_| connect_from("127.0.0.9", &s.addr).unwrap())
        .collect();
    // Past its share (64 by default) the peer is told 503 and closed.
    let mut past = idle[200].try_clone().unwrap();
    past.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut answer = String::new();
    let _ = past.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    // Another peer is served while the idle ones are still open.
    query()
        .args([&s.addr, "did.*"])
        .run()
        .status(0)
        .stdout_is("did_my_job\n");
    assert!(get(&s.addr, "/v1/health", None).starts_with("HTTP/1.1 200"));
    assert!(s.alive());
    drop(idle);
}

#[test]
fn a_tls_client_hello_dripped_a_byte_a_second_is_cut_off() {
    let h = crate::util::Host::new("host1");
    h.at("baton-signal", "2012-01-24T16:47:00Z")
        .args(["raise", "x", "--ttl", "1h"])
        .run()
        .status(0);
    let pin = certificates(&h.dir.path, "ca", "srv");
    let s = h.serve(
        "127.0.0.2",
        "allow .* 127.0.0.1\n",
        &[
            "--tls-cert",
            "srv.crt",
            "--tls-key",
            "srv.key",
            "--head-timeout",
            "2s",
        ],
    );
    // The start of a real ClientHello: a handshake record, then the handshake header.
    let hello: &[u8] = &[
        0x16, 0x03, 0x01, 0x00, 0xc8, 0x01, 0x00, 0x00, 0xc4, 0x03, 0x03, 0x11, 0x22, 0x33, 0x44,
        0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, 0x00, 0x11, 0x22, 0x33,
    ];
    let mut c = connect_from("127.0.0.9", &s.addr).unwrap();
    // Each read waits up to a second for the server: that is the drip's pace.
    c.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let started = Instant::now();
    let mut sent = 0;
    for byte in hello {
        if c.write_all(&[*byte]).is_err() || closed(&mut c) {
            break;
        }
        sent += 1;
    }
    assert!(
        sent < hello.len(),
        "the server still waited for the handshake after {sent} bytes over {:?}",
        started.elapsed()
    );
    // The server itself still serves a real client.
    query()
        .args(["--tls", "--pin", &pin, &s.addr, "x"])
        .run()
        .status(0)
        .stdout_is("x\n");
}

#[test]
fn out_of_descriptors_the_server_answers_503_without_spinning_and_recovers() {
    let (_h, mut s) = {
        let h = crate::util::Host::new("host1");
        let s = h.serve_under(
            &["prlimit", "--nofile=48:48", "--"],
            "127.0.0.2",
            "allow .* 127.0.0.1\n",
            &[
                "--max-connections",
                "1000",
                "--max-per-peer",
                "999",
                "--head-timeout",
                "60s",
                "-q",
            ],
        );
        (h, s)
    };
    let pid = s.child.id();
    assert!(get(&s.addr, "/v1/health", None).starts_with("HTTP/1.1 200"));
    // Another peer takes every descriptor the server has, and more.
    let mut idle: Vec<std::net::TcpStream> = (0..80)
        .map(|_| connect_from("127.0.0.9", &s.addr).unwrap())
        .collect();
    // The 503s seen, to find them counted in /metrics.
    let mut busy = 0;
    wait_until(
        "the server to run out of descriptors",
        Duration::from_secs(20),
        || {
            let out = get(&s.addr, "/v1/health", None).starts_with("HTTP/1.1 503");
            busy += usize::from(out);
            out
        },
    );
    // Over a window of requests, each is answered 503 (or closed), none hangs, and the
    // server uses a small part of one CPU.
    let before = cpu_ticks(pid);
    let window = Instant::now();
    let mut freed = 0;
    for _ in 0..30 {
        let answer = get(&s.addr, "/v1/health", None);
        if answer.starts_with("HTTP/1.1 200") && freed < 5 {
            // A connection the server closed late (an earlier request's, on a loaded
            // machine) gave a descriptor back: serving then is right. The other peer
            // takes that descriptor too, and the server must be out again.
            freed += 1;
            idle.push(connect_from("127.0.0.9", &s.addr).unwrap());
            continue;
        }
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 503"),
            "{answer}"
        );
        busy += usize::from(!answer.is_empty());
        std::thread::sleep(Duration::from_millis(100)); // the clients' pace, not a wait
    }
    let used = cpu_ticks(pid) - before;
    let ticks_per_sec = 100; // USER_HZ on Linux
    let elapsed = window.elapsed().as_secs_f64();
    assert!(
        (used as f64) < 0.25 * elapsed * ticks_per_sec as f64,
        "the server used {used} ticks of CPU in {elapsed:.1}s while out of descriptors"
    );
    // Once the descriptors are freed, the server answers again.
    drop(idle);
    wait_until("the server to recover", Duration::from_secs(20), || {
        get(&s.addr, "/v1/health", None).starts_with("HTTP/1.1 200")
    });
    // Each refusal is counted, as an answer and by its reason (some were told 503 while
    // this client saw a reset).
    let metrics = get(&s.addr, "/metrics", None);
    let counted = |series: &str| sample(&metrics, series).unwrap_or(0.0);
    let refused = counted(
        "baton_serve_connections_refused_total{host=\"host1\",reason=\"out_of_descriptors\"}",
    );
    let told = counted("baton_serve_requests_total{host=\"host1\",code=\"503\"}");
    assert!(
        busy > 0 && told >= busy as f64 && refused >= told,
        "{busy} 503s seen, {told} counted, {refused} refused:\n{metrics}"
    );
    assert!(s.alive());
}

#[test]
fn sigterm_stops_accepting_drains_and_exits_zero() {
    let (_h, mut s) = upstream(
        "host1",
        "127.0.0.2",
        "allow .* 127.0.0.1\n",
        &["did_my_job"],
        &["--idle-timeout", "60s"],
    );
    // A kept-alive connection, idle after one answer.
    let mut kept = std::net::TcpStream::connect(&s.addr).unwrap();
    kept.write_all(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    kept.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut first = [0u8; 512];
    let n = kept.read(&mut first).unwrap();
    assert!(first[..n].starts_with(b"HTTP/1.1 200"));
    let pid = rustix::process::Pid::from_raw(s.child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    // The idle connection is closed at once rather than kept for its 60 s, and the server
    // exits 0 within its drain time.
    assert!(closed(&mut kept), "the idle connection was not closed");
    crate::util::wait_child(&mut s.child, Duration::from_secs(10), "baton-serve");
    assert_eq!(
        s.child.try_wait().unwrap().and_then(|st| st.code()),
        Some(0)
    );
    assert!(
        std::net::TcpStream::connect(&s.addr).is_err(),
        "still accepting"
    );
}

/// The value of the sample `series` (`name{labels}` as written) in an exposition.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// One answer read off a kept-alive connection: head and `Content-Length` bytes of body.
fn read_answer(c: &mut std::net::TcpStream) -> (String, String) {
    let head = crate::util::read_head(c);
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_lowercase()
                .strip_prefix("content-length: ")?
                .parse()
                .ok()
        })
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    c.read_exact(&mut body).unwrap();
    (head, String::from_utf8_lossy(&body).into_owned())
}

#[test]
fn answers_given_before_the_service_and_refused_connections_are_counted() {
    let (_h, s) = upstream(
        "host1",
        "127.0.0.2",
        "allow .* 127.0.0.1\n",
        &["did_my_job"],
        &[
            "--max-connections",
            "5",
            "--max-per-peer",
            "2",
            "--head-timeout",
            "60s",
            "-q",
        ],
    );
    // Hyper's own answers: a head past 8 KiB (431), one it cannot parse (400).
    let big = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(9000));
    for (from, head, status) in [
        ("127.0.0.3", big.as_bytes(), "431"),
        ("127.0.0.4", b"GET\x01 / HTTP/1.1\r\n\r\n", "400"),
    ] {
        let mut c = connect_from(from, &s.addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        c.write_all(head).unwrap();
        // Read to the close (the client may see a reset instead of the 431).
        let mut answer = Vec::new();
        let _ = c.read_to_end(&mut answer);
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.is_empty() || answer.starts_with(&format!("HTTP/1.1 {status} ")),
            "{answer}"
        );
    }
    // A kept-alive connection to scrape with once the server is full.
    let mut scrape = std::net::TcpStream::connect(&s.addr).unwrap();
    scrape
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut metrics = || {
        scrape
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let (head, text) = read_answer(&mut scrape);
        assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
        text
    };
    // The server has let the closed connections go: the scrape's is the one open.
    wait_until(
        "the closed connections let go",
        Duration::from_secs(20),
        || sample(&metrics(), "baton_serve_connections{host=\"host1\"}") == Some(1.0),
    );
    let refused = |from: &str| {
        let mut c = connect_from(from, &s.addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut answer = String::new();
        let _ = c.read_to_string(&mut answer);
        assert!(answer.starts_with("HTTP/1.1 503 "), "{from}: {answer}");
    };
    // Past --max-per-peer from one address, then past --max-connections.
    let a: Vec<_> = (0..2)
        .map(|_| connect_from("127.0.0.9", &s.addr).unwrap())
        .collect();
    refused("127.0.0.9");
    let b: Vec<_> = (0..2)
        .map(|_| connect_from("127.0.0.10", &s.addr).unwrap())
        .collect();
    refused("127.0.0.11");
    let text = metrics();
    let count = |series: &str| sample(&text, series).unwrap_or_else(|| panic!("{series}: {text}"));
    for (code, n) in [("503", 2.0), ("431", 1.0), ("400", 1.0)] {
        let series = format!("baton_serve_requests_total{{host=\"host1\",code=\"{code}\"}}");
        assert_eq!(count(&series), n, "{series} in\n{text}");
    }
    for (reason, n) in [
        ("max_per_peer", 1.0),
        ("max_connections", 1.0),
        ("out_of_descriptors", 0.0),
    ] {
        let series =
            format!("baton_serve_connections_refused_total{{host=\"host1\",reason=\"{reason}\"}}");
        assert_eq!(count(&series), n, "{series} in\n{text}");
    }
    drop((a, b));
}
