//! Asking CFEngine hosts: `cfengine://HOST[:PORT]` targets, answered by the host's own
//! `cf-serverd` (CFEngine Community 3.21 and its TLS protocol), so a Baton host can follow
//! the persistent classes of a fleet that already runs CFEngine.
//!
//! A query is one connection: TLS 1.3 (the client presents a certificate made from this
//! host's CFEngine key, and trusts the server by its key in `ppkeys/`), the greeting and
//! identity, then one `CONTEXT REGEX` transaction. cf-serverd answers with the names of its
//! persistent classes that match and that an `access:` promise with
//! `resource_type => "context"` admits; it has no timestamps, and it answers "no match"
//! and "not admitted" the same way.

pub mod keys;
pub mod session;
pub mod tls;

use crate::client::Target;
use baton_core::{Error, Result};
use keys::Identity;
use rustls::pki_types::ServerName;
use session::Failure;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// cf-serverd's port.
pub const DEFAULT_PORT: u16 = 5308;
/// How a target says it is a CFEngine host.
pub const SCHEME: &str = "cfengine://";

/// `cfengine://HOST[:PORT]` as a target (port 5308 unless given); `None` for any other
/// text, which is a Baton host.
pub fn parse_target(text: &str) -> Option<Result<Target>> {
    let rest = text.strip_prefix(SCHEME)?.trim_end_matches('/');
    let with_port = if let Some(v6) = rest.strip_prefix('[') {
        match v6.split_once(']') {
            Some((_, "")) => format!("{rest}:{DEFAULT_PORT}"),
            _ => rest.to_string(),
        }
    } else {
        match rest.matches(':').count() {
            0 => format!("{rest}:{DEFAULT_PORT}"),
            1 => rest.to_string(),
            _ => format!("[{rest}]:{DEFAULT_PORT}"), // a bare IPv6 address
        }
    };
    Some(Target::parse(&with_port, false).map_err(|_| {
        Error::new(format!(
            "invalid host '{text}': want cfengine://HOST[:PORT]"
        ))
    }))
}

/// cf-serverd reads at most 255 bytes of a pattern, up to a newline.
pub fn check_pattern(pattern: &str) -> Result<()> {
    if pattern.len() > session::MAX_PATTERN || pattern.contains(['\n', '\0']) {
        return Err(Error::new(format!(
            "a regex for cfengine:// hosts must be one line of at most {} bytes",
            session::MAX_PATTERN
        )));
    }
    Ok(())
}

/// The name cf-agent would identify as: the effective user's.
fn current_user() -> String {
    let uid = rustix::process::geteuid().as_raw();
    if uid == 0 {
        return "root".into();
    }
    let from_passwd = std::fs::read_to_string("/etc/passwd").ok().and_then(|p| {
        p.lines().find_map(|l| {
            let mut f = l.split(':');
            let (name, _, id) = (f.next()?, f.next()?, f.next()?);
            (id == uid.to_string()).then(|| name.to_string())
        })
    });
    from_passwd
        .or_else(|| std::env::var("LOGNAME").ok())
        .unwrap_or_else(|| uid.to_string())
}

/// How to ask CFEngine hosts: this host's CFEngine identity and trusted keys.
pub struct CfClient {
    identity: Identity,
    workdir: PathBuf,
    user: String,
    timeout: Duration,
}

/// A socket whose every read and write must end before one deadline.
struct Bounded {
    stream: TcpStream,
    deadline: Instant,
}

impl Bounded {
    fn arm(&self, write: bool) -> io::Result<()> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        if write {
            self.stream.set_write_timeout(Some(left))
        } else {
            self.stream.set_read_timeout(Some(left))
        }
    }
}

impl Read for Bounded {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.arm(false)?;
        self.stream.read(buf)
    }
}

impl Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.arm(true)?;
        self.stream.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

fn rustls_error(e: &io::Error) -> Option<&rustls::Error> {
    e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>())
}

impl CfClient {
    /// Load this host's CFEngine key from `workdir` (`ppkeys/localhost.priv`).
    pub fn new(workdir: &Path, timeout: Duration) -> Result<CfClient> {
        Ok(CfClient {
            identity: Identity::load(workdir)?,
            workdir: workdir.to_path_buf(),
            user: current_user(),
            timeout,
        })
    }

    /// The names of `target`'s persistent classes that match `pattern` and that its ACL
    /// admits. The error is one short reason that names the fix.
    pub fn ask(&self, target: &Target, pattern: &str) -> std::result::Result<Vec<String>, String> {
        let deadline = Instant::now() + self.timeout;
        let stream = self.connect(target)?;
        let _ = stream.set_nodelay(true);
        let seen = Arc::new(Mutex::new(tls::Seen::default()));
        let config = tls::config(&self.identity, self.workdir.join("ppkeys"), seen.clone())?;
        let name = ServerName::try_from(target.host.clone())
            .map_err(|_| "not a host name or address".to_string())?;
        let conn = rustls::ClientConnection::new(config, name).map_err(|e| e.to_string())?;
        let mut tls = rustls::StreamOwned::new(conn, Bounded { stream, deadline });
        while tls.conn.is_handshaking() {
            if let Err(e) = tls.conn.complete_io(&mut tls.sock) {
                let seen = seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
                return Err(self.handshake_failure(&e, &seen, target));
            }
        }
        let answer = session::identify(&mut tls, &self.user)
            .and_then(|()| session::context(&mut tls, pattern));
        tls.conn.send_close_notify();
        let _ = tls.flush();
        answer.map_err(|f| self.failure(f))
    }

    fn connect(&self, target: &Target) -> std::result::Result<TcpStream, String> {
        let addrs: Vec<_> = (target.host.as_str(), target.port)
            .to_socket_addrs()
            .map_err(|_| "cannot resolve the host name".to_string())?
            .collect();
        let mut last = "cannot resolve the host name".to_string();
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, self.timeout) {
                Ok(s) => return Ok(s),
                Err(e) => last = self.io_reason(&e),
            }
        }
        Err(last)
    }

    fn io_reason(&self, e: &io::Error) -> String {
        match e.kind() {
            io::ErrorKind::ConnectionRefused => "connection refused".into(),
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => {
                format!("no answer within {}s", self.timeout.as_secs().max(1))
            }
            _ => baton_core::error::io_reason(e),
        }
    }

    fn handshake_failure(&self, e: &io::Error, seen: &tls::Seen, target: &Target) -> String {
        let ppkeys = self.workdir.join("ppkeys");
        if seen.untrusted {
            let digest = seen.digest.as_deref().unwrap_or("?");
            return format!(
                "its key {digest} is not trusted in {}: if it is that host's key (cf-key -p on \
                 it), copy its ppkeys/localhost.pub here and run cf-key -t {}:FILE",
                ppkeys.display(),
                target.host
            );
        }
        if let Some(bad) = &seen.bad {
            return format!("TLS failure: {bad}");
        }
        use rustls::AlertDescription as A;
        match rustls_error(e) {
            Some(rustls::Error::AlertReceived(
                A::ProtocolVersion | A::HandshakeFailure | A::InsufficientSecurity,
            ))
            | Some(rustls::Error::PeerIncompatible(_)) => {
                "it does not offer TLS 1.3 with AES-256-GCM: keep TLS_AES_256_GCM_SHA384 in its \
                 allowciphers (3.21's default) and build it with OpenSSL 1.1.1 or newer"
                    .into()
            }
            Some(rustls::Error::InvalidMessage(_)) => {
                "it does not speak TLS: is this cf-serverd's port?".into()
            }
            Some(other) => format!("TLS failure: {other}"),
            None => match e.kind() {
                io::ErrorKind::UnexpectedEof
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted => {
                    "it hung up before TLS: check that its allowconnects admits this host".into()
                }
                _ => self.io_reason(e),
            },
        }
    }

    fn failure(&self, f: Failure) -> String {
        match f {
            Failure::Io(e) => match rustls_error(&e) {
                Some(err) => format!("TLS failure: {err}"),
                None => self.io_reason(&e),
            },
            Failure::NotCfServerd(line) => {
                format!("not a cf-serverd (it said {line}): is this cf-serverd's port?")
            }
            Failure::Refused(why) => format!(
                "it refused our key {} ({why}): copy {} to that host and trust it there \
                 (cf-key -t {}@THIS_HOST_ADDRESS:FILE, or trustkeysfrom)",
                self.identity.public.md5_digest(),
                self.identity.public_file.display(),
                self.user
            ),
            Failure::BadAnswer(why) => format!("bad answer: {why}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_default_to_port_5308() {
        let t = |s: &str| parse_target(s).unwrap().unwrap();
        assert_eq!(t("cfengine://host1").label(), "host1:5308");
        assert_eq!(t("cfengine://10.0.0.1:15308/").label(), "10.0.0.1:15308");
        assert_eq!(t("cfengine://[::1]").label(), "[::1]:5308");
        assert_eq!(t("cfengine://[::1]:9").label(), "[::1]:9");
        assert_eq!(t("cfengine://::1").label(), "[::1]:5308");
        assert_eq!(t("cfengine://h-1.example").class_name(), "h_1_example");
        assert!(parse_target("host1").is_none());
        assert!(parse_target("https://host1").is_none());
        for bad in [
            "cfengine://",
            "cfengine://h:0",
            "cfengine://a b",
            "cfengine://h:x",
        ] {
            let err = parse_target(bad).unwrap().unwrap_err().message;
            assert!(err.contains("cfengine://HOST[:PORT]"), "{bad}: {err}");
        }
    }

    #[test]
    fn patterns_fit_cf_serverds_buffer() {
        assert!(check_pattern("did_.*").is_ok());
        assert!(check_pattern(&"a".repeat(255)).is_ok());
        assert!(check_pattern(&"a".repeat(256)).is_err());
        assert!(check_pattern("a\nb").is_err());
    }
}
