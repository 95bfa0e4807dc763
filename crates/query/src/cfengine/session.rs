//! The dialogue inside the TLS session, as cf-serverd 3.21 speaks it:
//!
//! ```text
//! server: CFE_v3 cf-serverd 3.21.0\n
//! client: CFE_v2 baton-query 0.1.0\n
//! client: IDENTITY USERNAME=root\n
//! server: OK WELCOME USERNAME=root\n          (or it hangs up: our key is not trusted)
//! client: t 15\0\0\0\0CONTEXT did_.*        (a transaction: 8-byte header, payload)
//! server: t 10\0\0\0\0did_my_job            (or "BAD: ..." for no match and for denial)
//! ```
//!
//! A transaction's header is `t LEN` (the last) or `m LEN` (more follow), NUL-padded to
//! 8 bytes; a payload is 1 to 4088 bytes.

use std::io::{self, Read, Write};

const HEADER: usize = 8;
const MAX_PAYLOAD: usize = 4096 - HEADER;
/// The greeting and welcome lines are short; cf-serverd's own buffer is 1024 bytes.
const MAX_LINE: usize = 1024;
/// A reply of many transactions is bounded too.
const MAX_REPLY: usize = 64 * 1024;
/// cf-serverd reads at most 255 bytes of a CONTEXT pattern.
pub const MAX_PATTERN: usize = 255;

/// The protocol version Baton asks for: the TLS protocol without cookies, which every
/// cf-serverd since 3.7 accepts.
const HELLO: &str = concat!("CFE_v2 baton-query ", env!("CARGO_PKG_VERSION"), "\n");

/// How a dialogue failed.
#[derive(Debug)]
pub enum Failure {
    Io(io::Error),
    /// The peer's first line was not a CFEngine greeting.
    NotCfServerd(String),
    /// The server did not welcome our identity (it hangs up on keys it does not trust).
    Refused(String),
    /// The server broke the protocol.
    BadAnswer(String),
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Failure {
        Failure::Io(e)
    }
}

/// One transaction, header and payload.
pub fn transaction(payload: &[u8]) -> Vec<u8> {
    debug_assert!((1..=MAX_PAYLOAD).contains(&payload.len()));
    let mut out = format!("t {}", payload.len()).into_bytes();
    out.resize(HEADER, 0);
    out.extend_from_slice(payload);
    out
}

/// Read one transaction: (more follow, payload).
pub fn read_transaction(r: &mut impl Read) -> Result<(bool, Vec<u8>), Failure> {
    let mut header = [0u8; HEADER];
    r.read_exact(&mut header)?;
    let text = std::str::from_utf8(&header)
        .ok()
        .map(|t| t.trim_end_matches('\0'));
    let parsed = text.and_then(|t| {
        let (status, len) = t.split_once(' ')?;
        let more = match status {
            "t" => false,
            "m" => true,
            _ => return None,
        };
        let len: usize = len.parse().ok()?;
        (1..=MAX_PAYLOAD).contains(&len).then_some((more, len))
    });
    let Some((more, len)) = parsed else {
        return Err(Failure::BadAnswer(format!(
            "bad transaction header {:?}",
            String::from_utf8_lossy(&header)
        )));
    };
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload)?;
    Ok((more, payload))
}

/// Read a line ending in `\n` (without it), at most [`MAX_LINE`] bytes.
fn read_line(r: &mut impl Read) -> Result<String, Failure> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        r.read_exact(&mut byte)?;
        if byte[0] == b'\n' {
            return Ok(String::from_utf8_lossy(&line).into_owned());
        }
        if line.len() == MAX_LINE {
            return Err(Failure::BadAnswer("line too long".into()));
        }
        line.push(byte[0]);
    }
}

/// The greeting, our version and identity, the welcome.
pub fn identify(s: &mut (impl Read + Write), user: &str) -> Result<(), Failure> {
    let greeting = match read_line(s) {
        Ok(g) => g,
        Err(Failure::Io(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
            return Err(Failure::NotCfServerd("no greeting".into()))
        }
        Err(e) => return Err(e),
    };
    if !greeting.starts_with("CFE_v") {
        return Err(Failure::NotCfServerd(printable(&greeting)));
    }
    s.write_all(HELLO.as_bytes())?;
    s.write_all(format!("IDENTITY USERNAME={user}\n").as_bytes())?;
    s.flush()?;
    match read_line(s) {
        Ok(welcome) if welcome.starts_with("OK WELCOME") => Ok(()),
        Ok(other) => Err(Failure::Refused(printable(&other))),
        Err(Failure::Io(e))
            if matches!(
                e.kind(),
                io::ErrorKind::UnexpectedEof
                    | io::ErrorKind::ConnectionReset
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::BrokenPipe
            ) =>
        {
            Err(Failure::Refused("it hung up".into()))
        }
        Err(e) => Err(e),
    }
}

/// `CONTEXT pattern`: the persistent classes whose whole name matches and that the
/// server's ACL admits. "BAD: ..." (no match, or not admitted: cf-serverd answers the
/// same) is an empty list.
pub fn context(s: &mut (impl Read + Write), pattern: &str) -> Result<Vec<String>, Failure> {
    s.write_all(&transaction(format!("CONTEXT {pattern}").as_bytes()))?;
    s.flush()?;
    let mut reply = Vec::new();
    loop {
        let (more, payload) = read_transaction(s)?;
        reply.extend_from_slice(&payload);
        if reply.len() > MAX_REPLY {
            return Err(Failure::BadAnswer("reply too long".into()));
        }
        if !more {
            break;
        }
    }
    let text = String::from_utf8_lossy(&reply);
    let text = text.trim_end_matches('\0');
    if text.starts_with("BAD:") {
        return Ok(Vec::new());
    }
    Ok(text
        .split(',')
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .collect())
}

fn printable(line: &str) -> String {
    let clean: String = line
        .chars()
        .take(80)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    format!("'{clean}'")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A peer that has already said `input` and records what we write.
    struct Peer {
        input: io::Cursor<Vec<u8>>,
        output: Vec<u8>,
    }

    impl Peer {
        fn new(input: &[u8]) -> Peer {
            Peer {
                input: io::Cursor::new(input.to_vec()),
                output: Vec::new(),
            }
        }
    }

    impl Read for Peer {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.input.read(buf)
        }
    }

    impl Write for Peer {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.output.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn ask(server_says: &[u8]) -> (Result<Vec<String>, Failure>, Vec<u8>) {
        let mut peer = Peer::new(server_says);
        let r = identify(&mut peer, "root").and_then(|()| context(&mut peer, "did_.*"));
        (r, peer.output)
    }

    #[test]
    fn the_dialogue_as_cf_serverd_speaks_it() {
        // What cf-serverd 3.21 sent, byte for byte, to a client it trusts.
        let mut server = b"CFE_v3 cf-serverd 3.21.0\nOK WELCOME USERNAME=root\n".to_vec();
        server.extend_from_slice(b"t 21\0\0\0\0did_my_job,did_backup");
        let (r, sent) = ask(&server);
        assert_eq!(r.unwrap(), ["did_my_job", "did_backup"]);
        let mut want = HELLO.as_bytes().to_vec();
        want.extend_from_slice(b"IDENTITY USERNAME=root\n");
        want.extend_from_slice(b"t 14\0\0\0\0CONTEXT did_.*");
        assert_eq!(
            String::from_utf8_lossy(&sent),
            String::from_utf8_lossy(&want)
        );
    }

    #[test]
    fn bad_is_no_match_and_more_is_joined() {
        let mut server = b"CFE_v3 cf-serverd 3.21.0\nOK WELCOME\n".to_vec();
        server.extend_from_slice(
            b"t 59\0\0\0\0BAD: Unspecified server refusal (see verbose server output)",
        );
        assert!(ask(&server).0.unwrap().is_empty());
        let mut server = b"CFE_v3 x\nOK WELCOME\n".to_vec();
        server.extend_from_slice(b"m 2\0\0\0\0\0a,t 3\0\0\0\0\0b,\0");
        assert_eq!(ask(&server).0.unwrap(), ["a", "b"]);
    }

    #[test]
    fn refusals_and_strangers() {
        let (r, _) = ask(b"CFE_v3 cf-serverd 3.21.0\n");
        assert!(matches!(r, Err(Failure::Refused(_))), "{r:?}");
        let (r, _) = ask(b"CFE_v3 cf-serverd 3.21.0\nBAD unsupported protocol version\n");
        assert!(matches!(r, Err(Failure::Refused(_))), "{r:?}");
        let (r, _) = ask(b"HTTP/1.1 400 Bad Request\r\n");
        assert!(matches!(r, Err(Failure::NotCfServerd(_))), "{r:?}");
        let (r, _) = ask(b"");
        assert!(matches!(r, Err(Failure::NotCfServerd(_))), "{r:?}");
        let mut server = b"CFE_v3 x\nOK WELCOME\n".to_vec();
        server.extend_from_slice(b"t 9999\0\0");
        assert!(matches!(ask(&server).0, Err(Failure::BadAnswer(_))));
        let mut server = b"CFE_v3 x\nOK WELCOME\n".to_vec();
        server.extend_from_slice(b"x 1\0\0\0\0\0a");
        assert!(matches!(ask(&server).0, Err(Failure::BadAnswer(_))));
        let long = vec![b'C'; 5000];
        assert!(matches!(
            ask(&long).0,
            Err(Failure::NotCfServerd(_) | Failure::BadAnswer(_))
        ));
    }
}

#[cfg(test)]
mod fuzz_session {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn fuzz_replies_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut r = io::Cursor::new(bytes);
            let _ = read_transaction(&mut r);
            let _ = read_line(&mut r);
        }
    }
}
