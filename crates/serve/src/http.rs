//! The HTTP side of the peer service: hyper's HTTP/1.1 on tokio, TLS through tokio-rustls,
//! bounded over the whole life of a connection, from accept to close:
//!
//! - one deadline from accept to the end of the first request head (`head_timeout`), the
//!   TLS handshake included, so a ClientHello dripped a byte at a time is cut off;
//! - on a kept-alive connection, `idle_timeout` from an answer to the next request's first
//!   byte (and to the client taking the answer), then `head_timeout` from that byte to the
//!   end of the head;
//! - the request head: `max_head` bytes (431), URLs are checked by the service (414);
//! - open connections: `max_connections` in all and `max_per_peer` from one source
//!   address, which is below the global cap, so one peer cannot lock the others out; past
//!   either, a plain-HTTP connection is answered 503 and closed (a TLS one is closed);
//!   each refusal is counted ([`Counts`]), as are the answers hyper gives itself (400 and
//!   431 to a request head it cannot take);
//! - accept errors: when the process is out of descriptors (EMFILE), a reserved descriptor
//!   is freed to take the waiting connection, answer it 503 and close it; other errors back
//!   off (up to a second) rather than spin;
//! - request bodies are never read: a request that has one is answered with
//!   `Connection: close`;
//! - a handler's work that may block (asking other hosts) runs on tokio's blocking
//!   threads ([`Answer::Blocking`]), never on the runtime's workers, which keep serving
//!   the other connections meanwhile;
//! - on stop, the listener closes, idle connections are closed and in-flight requests are
//!   finished within `drain_timeout`.

use baton_core::{Error, Result};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::future::Future;
use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

/// What a client may take.
#[derive(Debug, Clone)]
pub struct Limits {
    /// The largest request line plus headers (at least 8 KiB: hyper's smallest buffer).
    pub max_head: usize,
    /// Time from accept (TLS handshake included) to the end of the first request head, and
    /// from the first byte of a later request to the end of its head.
    pub head_timeout: Duration,
    /// Time a kept-alive connection may sit idle after an answer.
    pub idle_timeout: Duration,
    /// Open connections at once; past this, new ones get 503 and are closed.
    pub max_connections: usize,
    /// Open connections from one source address; below `max_connections`.
    pub max_per_peer: usize,
    /// Time in-flight requests have to finish once the server is told to stop.
    pub drain_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_head: 8 * 1024,
            head_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(15),
            max_connections: 1024,
            max_per_peer: default_per_peer(1024),
            drain_timeout: Duration::from_secs(5),
        }
    }
}

/// The per-peer cap when none is given: a quarter of the global cap, at most 64.
pub fn default_per_peer(max_connections: usize) -> usize {
    (max_connections / 4).clamp(1, 64)
}

/// A parsed request head.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// The request target as sent: path and query.
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub peer: IpAddr,
    /// The SHA-256 of the certificate the client presented in the TLS handshake (mutual
    /// TLS), if it presented one: it proved it holds the certificate's private key.
    pub client: Option<baton_identity::Fingerprint>,
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

/// A response: a status, a body and its content type, and any other header.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
    /// More headers (`Allow` on a 405).
    pub headers: Vec<(&'static str, &'static str)>,
}

/// The content type of the protocol's answers.
pub const JSON: &str = "application/json";

/// What a handler gives for a request: the response, or the work that makes it when that
/// work may block (it then runs on a blocking thread, off the runtime's workers).
pub enum Answer {
    Ready(Response),
    Blocking(Box<dyn FnOnce() -> Response + Send>),
}

pub type Handler = dyn Fn(&Request) -> Answer + Send + Sync;

/// Why a connection was refused as it was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `max_connections` were open.
    MaxConnections,
    /// `max_per_peer` were open from its address.
    MaxPerPeer,
    /// The process was out of file descriptors.
    OutOfDescriptors,
}

impl Refusal {
    pub const ALL: [Refusal; 3] = [
        Refusal::MaxConnections,
        Refusal::MaxPerPeer,
        Refusal::OutOfDescriptors,
    ];

    /// The `reason` label of `baton_serve_connections_refused_total`.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::MaxConnections => "max_connections",
            Refusal::MaxPerPeer => "max_per_peer",
            Refusal::OutOfDescriptors => "out_of_descriptors",
        }
    }
}

/// What the HTTP layer refused or answered itself, before any handler saw a request.
#[derive(Debug, Default)]
pub struct Counts {
    refused: [AtomicU64; Refusal::ALL.len()],
    /// Answers given without the handler, by status: 503 to a refused plain-HTTP
    /// connection, hyper's 400 and 431 to a request head it cannot take.
    answered: Mutex<BTreeMap<u16, u64>>,
}

impl Counts {
    fn refuse(&self, why: Refusal, answered: bool) {
        self.refused[why as usize].fetch_add(1, Ordering::Relaxed);
        if answered {
            self.answer(503);
        }
    }

    fn answer(&self, status: u16) {
        *self
            .answered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(status)
            .or_default() += 1;
    }

    /// Connections refused, by why.
    pub fn refused(&self, why: Refusal) -> u64 {
        self.refused[why as usize].load(Ordering::Relaxed)
    }

    /// Answers given without the handler, by status.
    pub fn answered(&self) -> BTreeMap<u16, u64> {
        self.answered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// A bound listener, ready to serve.
pub struct HttpServer {
    listener: std::net::TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    limits: Limits,
    pub addr: SocketAddr,
    /// Connections open now (`/metrics` reports it).
    pub open: Arc<AtomicUsize>,
    /// What was refused or answered before a handler (`/metrics` reports it).
    pub counts: Arc<Counts>,
}

/// What a connection over a cap is told before it is closed.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: 38\r\nConnection: close\r\n\r\n{\"error\":\"busy: too many connections\"}";

impl HttpServer {
    pub fn bind(
        addr: &str,
        tls: Option<Arc<rustls::ServerConfig>>,
        limits: Limits,
    ) -> Result<HttpServer> {
        let cannot = |e: io::Error| {
            Error::new(format!(
                "cannot listen on {addr}: {}",
                baton_core::error::io_reason(&e)
            ))
        };
        let listener = listen(addr).map_err(cannot)?;
        listener.set_nonblocking(true).map_err(cannot)?;
        let addr = listener.local_addr()?;
        Ok(HttpServer {
            listener,
            tls,
            limits,
            addr,
            open: Arc::new(AtomicUsize::new(0)),
            counts: Arc::default(),
        })
    }

    /// Accept and serve connections until `stop` is set, then drain.
    pub fn serve(self, handler: Arc<Handler>, stop: Arc<AtomicBool>) -> Result<()> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .thread_name("baton-serve")
            .build()
            .map_err(|e| Error::new(format!("cannot start the server's runtime: {e}")))?;
        let served = runtime.block_on(self.run(handler, stop));
        // Connections still in their TLS handshake or past the drain time are dropped here.
        runtime.shutdown_timeout(Duration::from_millis(100));
        served
    }

    async fn run(self, handler: Arc<Handler>, stop: Arc<AtomicBool>) -> Result<()> {
        // AsyncFd rather than tokio's TcpListener: accept(2) fails with EMFILE before it
        // looks at the queue, so only a raw accept can tell an empty queue (and clear the
        // readiness) from a full descriptor table. `new` is deprecated because it cannot
        // tell whether the descriptor is owned; here the AsyncFd owns the listener itself
        // (`register`, the replacement, is unsafe, which this workspace forbids).
        #[allow(deprecated)]
        let listener = tokio::io::unix::AsyncFd::new(self.listener)?;
        let limits = Arc::new(self.limits);
        let tls = self.tls.map(tokio_rustls::TlsAcceptor::from);
        let slots = Arc::new(Slots::new(
            limits.max_connections,
            limits.max_per_peer,
            Arc::clone(&self.open),
        ));
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let (stopped_tx, mut stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let _ = stopped_tx.send(true);
        });
        let counts = self.counts;
        let mut reserve = Reserve::open();
        let mut backoff = Backoff::default();
        loop {
            let mut ready = tokio::select! {
                r = listener.readable() => r?,
                _ = stopped.changed() => break,
            };
            let (tcp, from) = match listener.get_ref().accept() {
                Ok(a) => a,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    ready.clear_ready();
                    continue;
                }
                Err(e) if reserve.held() && out_of_descriptors(&e) => {
                    // accept(2) fails with EMFILE before it looks at the queue: take the
                    // waiting connections with the reserved descriptor, tell each that the
                    // server is busy, and keep the reserve for the next time.
                    reserve.release();
                    match refuse_waiting(listener.get_ref(), tls.is_some(), &counts) {
                        Refused::Drained => ready.clear_ready(),
                        Refused::More => {}
                        Refused::Failed => backoff.wait().await,
                    }
                    reserve = Reserve::open();
                    continue;
                }
                Err(_) => {
                    backoff.wait().await;
                    reserve = reserve.or_open();
                    continue;
                }
            };
            drop(ready);
            backoff.reset();
            if tcp.set_nonblocking(true).is_err() {
                continue;
            }
            // The reserve first: a connection never takes the descriptor kept to refuse
            // connections with when the process runs out.
            reserve = reserve.or_open();
            let peer = from.ip().to_canonical();
            let slot = match Slots::take(&slots, peer) {
                Ok(slot) if reserve.held() => slot,
                taken => {
                    let why = taken.err().unwrap_or(Refusal::OutOfDescriptors);
                    counts.refuse(why, busy(&tcp, tls.is_some()));
                    continue;
                }
            };
            let Ok(tcp) = TcpStream::from_std(tcp) else {
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let io = Timed::new(tcp, &limits);
            let (handler, limits, tls) = (Arc::clone(&handler), Arc::clone(&limits), tls.clone());
            let counts = Arc::clone(&counts);
            let watcher = graceful.watcher();
            tokio::spawn(async move {
                let _slot = slot;
                let clock = Arc::clone(&io.clock);
                match tls {
                    Some(acceptor) => {
                        // The handshake runs under the head deadline set at accept.
                        let Ok(stream) = acceptor.accept(io).await else {
                            return;
                        };
                        let client = stream
                            .get_ref()
                            .1
                            .peer_certificates()
                            .and_then(|chain| chain.first())
                            .map(|cert| baton_identity::fingerprint(cert.as_ref()));
                        let io = TokioIo::new(stream);
                        let who = (peer, client);
                        connection(io, who, clock, &limits, handler, watcher, &counts).await;
                    }
                    None => {
                        let io = TokioIo::new(io);
                        let who = (peer, None);
                        connection(io, who, clock, &limits, handler, watcher, &counts).await;
                    }
                }
            });
        }
        drop(listener);
        // Close idle connections, let in-flight requests finish, within the drain time.
        let _ = tokio::time::timeout(limits.drain_timeout, graceful.shutdown()).await;
        Ok(())
    }
}

/// Connections the kernel queues before they are accepted: std's 128 overflows under a
/// burst (the excess are left half-open, retried by SYN-ACK back-off for seconds), and
/// the accept loop refuses them quickly anyway.
const BACKLOG: i32 = 1024;

/// A listening socket on the first of `addr`'s addresses that binds.
fn listen(addr: &str) -> io::Result<std::net::TcpListener> {
    use std::net::ToSocketAddrs;
    let mut last = io::Error::new(io::ErrorKind::InvalidInput, "no address to listen on");
    for sa in addr.to_socket_addrs()? {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(sa),
            socket2::Type::STREAM,
            None,
        )?;
        socket.set_reuse_address(true)?;
        match socket
            .bind(&sa.into())
            .and_then(|()| socket.listen(BACKLOG))
        {
            Ok(()) => return Ok(socket.into()),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Serve one connection's HTTP/1.1 requests until it closes, or is closed by a drain.
async fn connection<I>(
    io: I,
    (peer, client): (IpAddr, Option<baton_identity::Fingerprint>),
    clock: Arc<Mutex<Phase>>,
    limits: &Limits,
    handler: Arc<Handler>,
    watcher: hyper_util::server::graceful::Watcher,
    counts: &Counts,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let idle = limits.idle_timeout;
    let service = service_fn(move |req: hyper::Request<Incoming>| {
        let request = Request {
            method: req.method().as_str().to_string(),
            target: req
                .uri()
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_else(|| req.uri().to_string()),
            headers: req
                .headers()
                .iter()
                .map(|(n, v)| {
                    let value = String::from_utf8_lossy(v.as_bytes()).into_owned();
                    (n.as_str().to_string(), value)
                })
                .collect(),
            peer,
            client,
        };
        let has_body = req.headers().contains_key(hyper::header::TRANSFER_ENCODING)
            || req
                .headers()
                .get(hyper::header::CONTENT_LENGTH)
                .is_some_and(|v| v.as_bytes() != b"0");
        // The head is read: no deadline while the handler works (it bounds itself).
        set_phase(&clock, Phase::Answering);
        let answer = handler(&request);
        let clock = Arc::clone(&clock);
        async move {
            let answer =
                match answer {
                    Answer::Ready(response) => response,
                    Answer::Blocking(work) => tokio::task::spawn_blocking(work)
                        .await
                        .unwrap_or_else(|_| Response {
                            status: 500,
                            content_type: JSON,
                            body: r#"{"error":"internal error"}"#.into(),
                            headers: Vec::new(),
                        }),
                };
            // The answer has been made: from here the client has `idle` to take it and
            // send the next request's first byte.
            set_phase(&clock, Phase::Idle(Instant::now() + idle));
            let mut response = hyper::Response::new(Full::new(Bytes::from(answer.body)));
            *response.status_mut() = hyper::StatusCode::from_u16(answer.status)
                .unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
            let headers = response.headers_mut();
            headers.insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static(answer.content_type),
            );
            for (name, value) in answer.headers {
                headers.insert(name, hyper::header::HeaderValue::from_static(value));
            }
            if has_body {
                // The body is never read: the connection cannot carry another request.
                headers.insert(
                    hyper::header::CONNECTION,
                    hyper::header::HeaderValue::from_static("close"),
                );
            }
            Ok::<_, Infallible>(response)
        }
    });
    let mut builder = http1::Builder::new();
    builder
        .max_buf_size(limits.max_head.max(8192))
        .keep_alive(true)
        .header_read_timeout(None);
    if let Err(e) = watcher.watch(builder.serve_connection(io, service)).await {
        if let Some(status) = automatic_answer(&e) {
            counts.answer(status);
        }
    }
}

/// The answer hyper gave itself before closing a connection on `e`, if it gave one: a
/// request head it could not parse is answered 400, one over `max_head` 431 (an HTTP/2
/// preface is not answered).
fn automatic_answer(e: &hyper::Error) -> Option<u16> {
    if !e.is_parse() || e.is_parse_version_h2() {
        None
    } else if e.is_parse_too_large() {
        Some(431)
    } else {
        Some(400)
    }
}

/// Where a connection is in its life, and the instant it must have moved on by.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    /// Reading a request head (or the TLS handshake): closed at the deadline.
    Head(Instant),
    /// Between requests: the next byte starts a head; closed at the deadline.
    Idle(Instant),
    /// A request is being answered: no deadline (the handler bounds its own work).
    Answering,
}

fn set_phase(clock: &Mutex<Phase>, phase: Phase) {
    *clock.lock().unwrap_or_else(|p| p.into_inner()) = phase;
}

/// A TCP stream that fails its reads and writes once its connection's deadline passes.
struct Timed {
    tcp: TcpStream,
    clock: Arc<Mutex<Phase>>,
    head_timeout: Duration,
    sleep: Pin<Box<Sleep>>,
    armed: Instant,
}

impl Timed {
    fn new(tcp: TcpStream, limits: &Limits) -> Timed {
        let deadline = Instant::now() + limits.head_timeout;
        Timed {
            tcp,
            clock: Arc::new(Mutex::new(Phase::Head(deadline))),
            head_timeout: limits.head_timeout,
            sleep: Box::pin(tokio::time::sleep_until(deadline)),
            armed: deadline,
        }
    }

    fn phase(&self) -> Phase {
        *self.clock.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `Ready` with an error once the deadline has passed; else the timer is armed.
    ///
    /// Deadlines only move later (each answer and each request head starts a new one), so
    /// the timer is not moved at every request: it stays at the deadline it was armed
    /// with, and when it fires before the current deadline it is armed again for that.
    fn expired(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let deadline = match self.phase() {
            Phase::Head(d) | Phase::Idle(d) => d,
            Phase::Answering => return Poll::Pending,
        };
        if deadline < self.armed {
            self.sleep.as_mut().reset(deadline);
            self.armed = deadline;
        }
        loop {
            match self.sleep.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(()) if Instant::now() >= deadline => {
                    return Poll::Ready(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "connection deadline passed",
                    ))
                }
                Poll::Ready(()) => {
                    self.sleep.as_mut().reset(deadline);
                    self.armed = deadline;
                }
            }
        }
    }
}

impl AsyncRead for Timed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Poll::Ready(e) = self.expired(cx) {
            return Poll::Ready(Err(e));
        }
        let before = buf.filled().len();
        let read = Pin::new(&mut self.tcp).poll_read(cx, buf);
        if matches!(read, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            if let Phase::Idle(_) = self.phase() {
                // The first byte of the next request: its head has head_timeout.
                let deadline = Instant::now() + self.head_timeout;
                set_phase(&self.clock, Phase::Head(deadline));
            }
        }
        read
    }
}

impl AsyncWrite for Timed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.tcp).poll_write(cx, buf) {
            Poll::Pending => match self.expired(cx) {
                Poll::Ready(e) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            },
            done => done,
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

/// Open connections, in all and per source address.
struct Slots {
    max: usize,
    per_peer: usize,
    open: Mutex<(usize, HashMap<IpAddr, usize>)>,
    /// The total, readable without the lock.
    gauge: Arc<AtomicUsize>,
}

/// One connection's place under the caps, given back when dropped.
struct Slot {
    slots: Arc<Slots>,
    peer: IpAddr,
}

impl Slots {
    fn new(max: usize, per_peer: usize, gauge: Arc<AtomicUsize>) -> Slots {
        Slots {
            max,
            per_peer,
            open: Mutex::new((0, HashMap::new())),
            gauge,
        }
    }

    /// A place for a connection from `peer`, or the cap it is over.
    fn take(slots: &Arc<Slots>, peer: IpAddr) -> std::result::Result<Slot, Refusal> {
        let mut open = slots.open.lock().unwrap_or_else(|p| p.into_inner());
        let (total, by_peer) = &mut *open;
        let mine = by_peer.entry(peer).or_insert(0);
        let over = if *mine >= slots.per_peer {
            Some(Refusal::MaxPerPeer)
        } else if *total >= slots.max {
            Some(Refusal::MaxConnections)
        } else {
            None
        };
        if let Some(why) = over {
            if *mine == 0 {
                by_peer.remove(&peer);
            }
            return Err(why);
        }
        *mine += 1;
        *total += 1;
        slots.gauge.store(*total, Ordering::Relaxed);
        Ok(Slot {
            slots: Arc::clone(slots),
            peer,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock().unwrap_or_else(|p| p.into_inner());
        let (total, by_peer) = &mut *open;
        *total -= 1;
        self.slots.gauge.store(*total, Ordering::Relaxed);
        if let Some(mine) = by_peer.get_mut(&self.peer) {
            *mine -= 1;
            if *mine == 0 {
                by_peer.remove(&self.peer);
            }
        }
    }
}

/// Tell a connection over a cap that the server is busy (plain HTTP only: a TLS client
/// cannot read it), without waiting, and close it. Whether it was told.
fn busy(mut tcp: &std::net::TcpStream, tls: bool) -> bool {
    // Non-blocking: a fresh socket's send buffer takes it at once.
    !tls && tcp.write(BUSY).is_ok_and(|n| n == BUSY.len())
}

/// How refusing the waiting connections ended.
enum Refused {
    /// The queue is empty.
    Drained,
    /// The bound was reached with more waiting.
    More,
    /// accept(2) failed even with the reserve freed (the system is out of descriptors).
    Failed,
}

/// Accept the connections waiting on the listener, answer each 503 (plain HTTP) and close
/// it, one descriptor at a time.
fn refuse_waiting(listener: &std::net::TcpListener, tls: bool, counts: &Counts) -> Refused {
    // Bounded, so that a flood cannot keep the loop from its other work.
    for _ in 0..256 {
        match listener.accept() {
            Ok((conn, _)) => {
                let told = conn.set_nonblocking(true).is_ok() && busy(&conn, tls);
                counts.refuse(Refusal::OutOfDescriptors, told);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Refused::Drained,
            Err(_) => return Refused::Failed,
        }
    }
    Refused::More
}

fn out_of_descriptors(e: &io::Error) -> bool {
    // EMFILE (24) and ENFILE (23): the process or the system is out of descriptors.
    matches!(e.raw_os_error(), Some(23 | 24))
}

/// A descriptor held in reserve, given up to accept a connection when the process is out
/// of descriptors, so that the connection can be told 503 instead of left waiting.
struct Reserve(Option<std::fs::File>);

impl Reserve {
    fn open() -> Reserve {
        Reserve(std::fs::File::open("/dev/null").ok())
    }

    fn or_open(self) -> Reserve {
        if self.held() {
            self
        } else {
            Reserve::open()
        }
    }

    fn held(&self) -> bool {
        self.0.is_some()
    }

    fn release(&mut self) {
        self.0 = None;
    }
}

/// Back-off after accept errors: 10 ms doubling to 1 s, reset by a successful accept.
struct Backoff(Duration);

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff(Duration::from_millis(10))
    }
}

impl Backoff {
    async fn wait(&mut self) {
        tokio::time::sleep(self.0).await;
        self.0 = (self.0 * 2).min(Duration::from_secs(1));
    }

    fn reset(&mut self) {
        *self = Backoff::default();
    }
}

/// A rustls server config from PEM files: this server's certificate chain and its
/// unencrypted private key (refused if others may read it). Clients may present a
/// certificate of their own (mutual TLS): the handshake proves they hold its key, and the
/// service admits them by its fingerprint (`--keys`).
pub fn tls_config(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<Arc<rustls::ServerConfig>> {
    let certs = baton_identity::load_certs(cert)?;
    let private_key = baton_identity::load_private_key(key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(AnyClientCert {
        provider: Arc::clone(&provider),
    });
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::new(format!("TLS setup: {e}")))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, private_key)
        .map_err(|e| Error::new(format!("{} and {}: {e}", cert.display(), key.display())))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Asks clients for a certificate, lets them go without one, and takes any they present
/// once the handshake has proved they hold its private key: which certificates are
/// admitted is the service's decision, by fingerprint, so that every refusal looks alike.
#[derive(Debug)]
struct AnyClientCert {
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl rustls::server::danger::ClientCertVerifier for AnyClientCert {
    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _now: rustls::pki_types::UnixTime,
    ) -> std::result::Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        Ok(rustls::server::danger::ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_peer_cannot_fill_the_global_cap() {
        let slots = Arc::new(Slots::new(4, 2, Arc::default()));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let c: IpAddr = "192.0.2.3".parse().unwrap();
        let a1 = Slots::take(&slots, a).unwrap();
        let _a2 = Slots::take(&slots, a).unwrap();
        assert_eq!(
            Slots::take(&slots, a).err(),
            Some(Refusal::MaxPerPeer),
            "a third from one peer"
        );
        let _b1 = Slots::take(&slots, b).unwrap();
        let _b2 = Slots::take(&slots, b).unwrap();
        assert_eq!(
            Slots::take(&slots, c).err(),
            Some(Refusal::MaxConnections),
            "past the global cap"
        );
        drop(a1);
        assert!(Slots::take(&slots, c).is_ok(), "a freed slot is reused");
        assert_eq!(slots.open.lock().unwrap().1.get(&a), Some(&1));
    }

    #[test]
    fn per_peer_default_is_below_the_global_cap() {
        for max in [2, 8, 100, 1024, 65536] {
            assert!(default_per_peer(max) < max, "{max}");
        }
        assert_eq!(default_per_peer(1), 1);
    }
}
