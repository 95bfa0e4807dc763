//! A small HTTP/1.1 server for the peer service, bounded in every dimension a client
//! controls: the request head (8 KiB), the time to send it, idle time between requests
//! on a kept-alive connection, the number of open connections, the requests per
//! connection. Request bodies are never read: a request that has one is answered and its
//! connection closed. Optional TLS through rustls.
//!
//! Why not tiny_http: it reads header lines without a length limit and sets no socket
//! time-outs, so one client could exhaust the server's memory or its threads.

use baton_core::{Error, Result};
use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a client may take.
#[derive(Debug, Clone)]
pub struct Limits {
    /// The largest request line plus headers.
    pub max_head: usize,
    /// Time to send a whole request head, once its first byte has arrived.
    pub head_timeout: Duration,
    /// Time a kept-alive connection may sit idle (and a new one before its first byte).
    pub idle_timeout: Duration,
    /// Time to take a response.
    pub write_timeout: Duration,
    /// Open connections at once; past this, new ones get 503 and are closed.
    pub max_connections: usize,
    /// Requests on one connection before it is closed.
    pub max_requests: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_head: 8 * 1024,
            head_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(15),
            write_timeout: Duration::from_secs(10),
            max_connections: 1024,
            max_requests: 1_000_000,
        }
    }
}

/// A parsed request head.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// The request target as sent: path and query.
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub peer: IpAddr,
    /// `HTTP/1.0` or `HTTP/1.1`.
    pub version: String,
}

impl Request {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A response: a status and a JSON body.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub body: String,
}

pub type Handler = dyn Fn(&Request) -> Response + Send + Sync;

trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

/// A bound listener, ready to serve.
pub struct HttpServer {
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    limits: Limits,
    pub addr: SocketAddr,
}

impl HttpServer {
    pub fn bind(
        addr: &str,
        tls: Option<Arc<rustls::ServerConfig>>,
        limits: Limits,
    ) -> Result<HttpServer> {
        let listener = TcpListener::bind(addr).map_err(|e| {
            Error::new(format!(
                "cannot listen on {addr}: {}",
                baton_core::error::io_reason(&e)
            ))
        })?;
        let addr = listener.local_addr()?;
        Ok(HttpServer {
            listener,
            tls,
            limits,
            addr,
        })
    }

    /// Accept and serve connections until `stop` is set; each connection has a thread of
    /// its own, at most `max_connections` at once.
    pub fn serve(self, handler: Arc<Handler>, stop: Arc<AtomicBool>) {
        let open = Arc::new(AtomicUsize::new(0));
        // A stop flag cannot interrupt accept(2); a watcher connects to wake it.
        let waker = {
            let stop = Arc::clone(&stop);
            let addr = self.addr;
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(100));
                }
                let _ = TcpStream::connect_timeout(&addr, Duration::from_secs(1));
            })
        };
        for conn in self.listener.incoming() {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let Ok(stream) = conn else { continue };
            if open.fetch_add(1, Ordering::AcqRel) >= self.limits.max_connections {
                open.fetch_sub(1, Ordering::AcqRel);
                let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
                let _ = (&stream).write_all(&head(503, "busy", 0, false));
                continue;
            }
            let (handler, limits, tls) =
                (Arc::clone(&handler), self.limits.clone(), self.tls.clone());
            let counter = Arc::clone(&open);
            let spawned = std::thread::Builder::new()
                .stack_size(256 * 1024)
                .spawn(move || {
                    let _ = connection(stream, tls, &limits, &*handler);
                    counter.fetch_sub(1, Ordering::AcqRel);
                });
            if spawned.is_err() {
                open.fetch_sub(1, Ordering::AcqRel);
            }
        }
        let _ = waker.join();
    }
}

fn connection(
    tcp: TcpStream,
    tls: Option<Arc<rustls::ServerConfig>>,
    limits: &Limits,
    handler: &Handler,
) -> io::Result<()> {
    let peer = tcp.peer_addr()?.ip();
    tcp.set_nodelay(true)?;
    tcp.set_write_timeout(Some(limits.write_timeout))?;
    let socket = tcp.try_clone()?;
    let mut stream: Box<dyn Stream> = match tls {
        Some(config) => {
            let conn = rustls::ServerConnection::new(config).map_err(io::Error::other)?;
            Box::new(rustls::StreamOwned::new(conn, tcp))
        }
        None => Box::new(tcp),
    };
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    for _ in 0..limits.max_requests {
        let head_len = match read_head(&mut *stream, &socket, &mut buf, limits)? {
            Some(n) => n,
            None => break, // closed, idle, or too slow: nothing to answer
        };
        let parsed = parse_head(&buf[..head_len], peer);
        buf.drain(..head_len);
        let (response, keep_alive) = match parsed {
            Ok(req) => {
                let keep = wants_keep_alive(&req) && !has_body(&req);
                (handler(&req), keep)
            }
            Err(status) => (error_response(status), false),
        };
        let mut out = head(
            response.status,
            reason(response.status),
            response.body.len(),
            keep_alive,
        );
        out.extend_from_slice(response.body.as_bytes());
        stream.write_all(&out)?;
        stream.flush()?;
        if !keep_alive {
            break;
        }
    }
    let _ = socket.shutdown(Shutdown::Both);
    Ok(())
}

/// Read until the end of a request head; `Ok(None)` when the client went away, stayed
/// idle, or was too slow. A head over the limit is answered 431 and ends the connection.
fn read_head(
    stream: &mut dyn Stream,
    socket: &TcpStream,
    buf: &mut Vec<u8>,
    limits: &Limits,
) -> io::Result<Option<usize>> {
    let mut started: Option<Instant> = if buf.is_empty() {
        None
    } else {
        Some(Instant::now())
    };
    let mut chunk = [0u8; 4096];
    loop {
        let end = find_head_end(buf);
        if let Some(end) = end.filter(|e| *e <= limits.max_head) {
            return Ok(Some(end));
        }
        if end.is_some() || buf.len() > limits.max_head {
            let _ = stream.write_all(&head(431, reason(431), 0, false));
            return Ok(None);
        }
        let timeout = match started {
            None => limits.idle_timeout,
            Some(t) => match limits.head_timeout.checked_sub(t.elapsed()) {
                Some(left) if !left.is_zero() => left,
                _ => return Ok(None),
            },
        };
        socket.set_read_timeout(Some(timeout))?;
        match stream.read(&mut chunk) {
            Ok(0) => return Ok(None),
            Ok(n) => {
                started.get_or_insert_with(Instant::now);
                buf.extend_from_slice(&chunk[..n]);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(None)
            }
            Err(e) => return Err(e),
        }
    }
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// Parse a request head; `Err(status)` for a malformed one.
fn parse_head(bytes: &[u8], peer: IpAddr) -> std::result::Result<Request, u16> {
    let text = std::str::from_utf8(bytes).map_err(|_| 400u16)?;
    let mut lines = text.split("\r\n");
    let mut first = lines.next().ok_or(400u16)?.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (first.next(), first.next(), first.next(), first.next())
    else {
        return Err(400);
    };
    if !matches!(version, "HTTP/1.1" | "HTTP/1.0") {
        return Err(505);
    }
    if method.is_empty()
        || !method.bytes().all(|b| b.is_ascii_uppercase())
        || !target.starts_with('/')
    {
        return Err(400);
    }
    let mut headers = Vec::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':').ok_or(400u16)?;
        if name.is_empty() || name.bytes().any(|b| b <= b' ' || b >= 0x7f) {
            return Err(400);
        }
        headers.push((name.to_string(), value.trim().to_string()));
    }
    Ok(Request {
        method: method.to_string(),
        target: target.to_string(),
        headers,
        peer,
        version: version.to_string(),
    })
}

/// HTTP/1.1 keeps a connection alive unless told to close; HTTP/1.0 only when asked.
fn wants_keep_alive(req: &Request) -> bool {
    let connection = req.header("Connection").unwrap_or("").to_ascii_lowercase();
    if req.version == "HTTP/1.0" {
        connection.contains("keep-alive")
    } else {
        !connection.contains("close")
    }
}

fn has_body(req: &Request) -> bool {
    req.header("Transfer-Encoding").is_some()
        || req
            .header("Content-Length")
            .is_some_and(|v| v.trim() != "0")
}

fn error_response(status: u16) -> Response {
    let why = match status {
        505 => "HTTP version not supported",
        _ => "malformed request",
    };
    Response {
        status,
        body: format!("{{\"error\":\"{why}\"}}"),
    }
}

fn head(status: u16, reason: &str, len: usize, keep_alive: bool) -> Vec<u8> {
    let connection = if keep_alive { "keep-alive" } else { "close" };
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {len}\r\nConnection: {connection}\r\n\r\n"
    )
    .into_bytes()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        414 => "URI Too Long",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// A rustls server config from PEM files: a certificate chain and an unencrypted key.
pub fn tls_config(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<Arc<rustls::ServerConfig>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let pem_error = |p: &std::path::Path, e| Error::new(format!("{}: not PEM: {e}", p.display()));
    let certs = CertificateDer::pem_file_iter(cert)
        .map_err(|e| pem_error(cert, e))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| pem_error(cert, e))?;
    if certs.is_empty() {
        return Err(Error::new(format!(
            "{}: no PEM certificate found",
            cert.display()
        )));
    }
    let private_key = PrivateKeyDer::from_pem_file(key).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => Error::new(format!(
            "{}: no unencrypted private key found",
            key.display()
        )),
        e => pem_error(key, e),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::new(format!("TLS setup: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, private_key)
        .map_err(|e| Error::new(format!("{} and {}: {e}", cert.display(), key.display())))?;
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> IpAddr {
        "127.0.0.1".parse().unwrap()
    }

    #[test]
    fn parses_heads() {
        let r = parse_head(
            b"GET /v1/signals?match=a HTTP/1.1\r\nHost: x\r\nAuthorization: Baton k\r\n\r\n",
            peer(),
        )
        .unwrap();
        assert_eq!(
            (r.method.as_str(), r.target.as_str()),
            ("GET", "/v1/signals?match=a")
        );
        assert_eq!(r.header("authorization"), Some("Baton k"));
        assert!(wants_keep_alive(&r));
        let r = parse_head(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", peer()).unwrap();
        assert!(!wants_keep_alive(&r));
        let r = parse_head(b"GET / HTTP/1.0\r\n\r\n", peer()).unwrap();
        assert!(!wants_keep_alive(&r));
        let r = parse_head(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", peer()).unwrap();
        assert!(wants_keep_alive(&r));
    }

    #[test]
    fn refuses_malformed_heads() {
        for (bytes, status) in [
            (&b"GET /\r\n\r\n"[..], 400),
            (b"GET / HTTP/2.0\r\n\r\n", 505),
            (b"get / HTTP/1.1\r\n\r\n", 400),
            (b"GET x HTTP/1.1\r\n\r\n", 400),
            (b"GET / HTTP/1.1 x\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nNoColon\r\n\r\n", 400),
            (b"GET / HTTP/1.1\r\nBad Name: v\r\n\r\n", 400),
            (b"\xff\xfe / HTTP/1.1\r\n\r\n", 400),
        ] {
            assert_eq!(
                parse_head(bytes, peer()).unwrap_err(),
                status,
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[test]
    fn finds_the_end_of_a_head() {
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n\r\nrest"), Some(18));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n"), None);
    }
}

#[cfg(test)]
mod fuzz_http {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn fuzz_request_heads_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            if let Ok(r) = parse_head(&bytes, "127.0.0.1".parse().unwrap()) {
                prop_assert!(r.target.starts_with('/'));
            }
        }

        #[test]
        fn fuzz_queries_and_auth_never_panic(text in ".{0,80}") {
            let _ = baton_proto::query_param(&text, "match");
            let _ = baton_proto::auth::Verifier::new(baton_proto::auth::KeyRing::default(), 300).verify(&text, "GET", "/", 0);
        }
    }
}
