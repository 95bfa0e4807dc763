//! Request authentication: each peer holds a key (an id and a 256-bit secret); a request
//! carries `Authorization: Baton key=ID, ts=EPOCH, nonce=HEX, sig=HEX`, where sig is
//! HMAC-SHA256 over the method, the path with its query, the timestamp and the nonce.
//! The server checks the signature in constant time, the timestamp against a skew window
//! and the nonce against the ones it saw within that window (replay protection).

use baton_core::{Error, Result};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

type HmacSha256 = Hmac<Sha256>;

/// The authorization scheme name.
pub const SCHEME: &str = "Baton";
/// The most nonces remembered (about 40 bytes each); past it, signed requests are refused
/// (503) rather than left unprotected. One entry per signed request within the skew
/// window: at 5m, that is 6 600 requests a second for a whole window.
const MAX_NONCES: usize = 2_000_000;

/// A peer's key.
#[derive(Clone, PartialEq, Eq)]
pub struct Key {
    pub id: String,
    secret: [u8; 32],
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key({})", self.id) // never print the secret
    }
}

/// Key ids: letters, digits, `_`, `-` and `.`, at most 64.
pub fn validate_key_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::new(format!(
            "invalid key id '{id}': use 1 to 64 letters, digits, '_', '-' or '.'"
        )))
    }
}

/// `n` random bytes from the kernel.
pub fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf)
        .map_err(|e| Error::new(format!("cannot get random bytes from the kernel: {e}")))?;
    Ok(buf)
}

impl Key {
    /// A new key with a random secret.
    pub fn generate(id: &str) -> Result<Key> {
        validate_key_id(id)?;
        Ok(Key {
            id: id.to_string(),
            secret: random_bytes()?,
        })
    }

    /// The key file line: `ID HEX-SECRET`.
    pub fn to_line(&self) -> String {
        format!("{} {}", self.id, hex(&self.secret))
    }

    fn parse_line(line: &str) -> Result<Key> {
        let mut words = line.split_whitespace();
        let (Some(id), Some(secret), None) = (words.next(), words.next(), words.next()) else {
            return Err(Error::new(
                "expected 'ID SECRET' (as baton-serve --keygen writes)",
            ));
        };
        validate_key_id(id)?;
        let bytes = unhex(secret)
            .filter(|b| b.len() == 32)
            .ok_or_else(|| Error::new(format!("the secret of key '{id}' is not 64 hex digits")))?;
        let mut secret = [0u8; 32];
        secret.copy_from_slice(&bytes);
        Ok(Key {
            id: id.to_string(),
            secret,
        })
    }

    /// Read a client's key file: exactly one key.
    pub fn load(path: &Path) -> Result<Key> {
        let ring = KeyRing::load(path)?;
        let mut keys = ring.keys.into_iter();
        match (keys.next(), keys.next()) {
            (Some((id, secret)), None) => Ok(Key { id, secret }),
            _ => Err(Error::new(format!(
                "{}: a key file holds exactly one key",
                path.display()
            ))),
        }
    }

    /// The Authorization header value for a request.
    pub fn authorization(&self, method: &str, path_and_query: &str, ts: i64) -> Result<String> {
        let nonce = hex(&random_bytes::<16>()?);
        let sig = hex(&self.mac(method, path_and_query, ts, &nonce));
        Ok(format!(
            "{SCHEME} key={}, ts={ts}, nonce={nonce}, sig={sig}",
            self.id
        ))
    }

    fn mac(&self, method: &str, path_and_query: &str, ts: i64, nonce: &str) -> Vec<u8> {
        let mut mac = HmacSha256::new_from_slice(&self.secret).expect("HMAC takes any key size");
        mac.update(format!("baton-v1\n{method}\n{path_and_query}\n{ts}\n{nonce}").as_bytes());
        mac.finalize().into_bytes().to_vec()
    }
}

/// The keys a server knows: the concatenation of its peers' key files.
#[derive(Debug, Clone, Default)]
pub struct KeyRing {
    keys: HashMap<String, [u8; 32]>,
}

impl KeyRing {
    pub fn parse(text: &str) -> Result<KeyRing> {
        let mut keys = HashMap::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let key = Key::parse_line(line).map_err(|e| e.context(format!("line {}", i + 1)))?;
            if keys.insert(key.id.clone(), key.secret).is_some() {
                return Err(Error::new(format!(
                    "line {}: key '{}' given twice",
                    i + 1,
                    key.id
                )));
            }
        }
        Ok(KeyRing { keys })
    }

    pub fn load(path: &Path) -> Result<KeyRing> {
        let text =
            std::fs::read_to_string(path).map_err(|e| Error::io("read key file", path, e))?;
        KeyRing::parse(&text).map_err(|e| e.context(path.display()))
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Why a signed request was refused (the server answers 401 and logs this).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    Malformed,
    UnknownKey(String),
    BadSignature(String),
    Stale(String),
    Replayed(String),
    Overloaded,
}

impl std::fmt::Display for AuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuthError::Malformed => write!(f, "malformed Authorization header"),
            AuthError::UnknownKey(k) => write!(f, "unknown key '{k}'"),
            AuthError::BadSignature(k) => write!(f, "bad signature for key '{k}'"),
            AuthError::Stale(k) => {
                write!(f, "timestamp outside the allowed clock skew (key '{k}')")
            }
            AuthError::Replayed(k) => write!(f, "replayed request (key '{k}')"),
            AuthError::Overloaded => write!(f, "too many recent requests to remember"),
        }
    }
}

/// Checks signed requests against a key ring, remembering nonces for the skew window.
#[derive(Debug)]
pub struct Verifier {
    ring: KeyRing,
    skew: i64,
    seen: Mutex<Seen>,
    hasher: std::collections::hash_map::RandomState,
}

/// The nonces seen within the window: a set of keyed hashes of (key, nonce) with their
/// expiry, and the same in arrival order so that expired ones leave in O(1) each.
#[derive(Debug, Default)]
struct Seen {
    expiry: HashMap<u64, i64>,
    order: std::collections::VecDeque<(i64, u64)>,
}

impl Seen {
    fn prune(&mut self, now: i64) {
        while let Some(&(until, h)) = self.order.front() {
            if until > now {
                break;
            }
            self.order.pop_front();
            if self.expiry.get(&h) == Some(&until) {
                self.expiry.remove(&h);
            }
        }
    }
}

impl Verifier {
    pub fn new(ring: KeyRing, skew_secs: i64) -> Verifier {
        Verifier {
            ring,
            skew: skew_secs,
            seen: Mutex::new(Seen::default()),
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }

    /// Verify `header` for this request at server time `now`; returns the key id.
    pub fn verify(
        &self,
        header: &str,
        method: &str,
        path_and_query: &str,
        now: i64,
    ) -> Result<String, AuthError> {
        let fields = parse_authorization(header).ok_or(AuthError::Malformed)?;
        let (id, ts, nonce, sig) = fields;
        let secret = self
            .ring
            .keys
            .get(id)
            .ok_or_else(|| AuthError::UnknownKey(id.to_string()))?;
        let key = Key {
            id: id.to_string(),
            secret: *secret,
        };
        let given = unhex(sig).ok_or(AuthError::Malformed)?;
        let mut mac = HmacSha256::new_from_slice(&key.secret).expect("HMAC takes any key size");
        mac.update(format!("baton-v1\n{method}\n{path_and_query}\n{ts}\n{nonce}").as_bytes());
        // verify_slice compares in constant time.
        mac.verify_slice(&given)
            .map_err(|_| AuthError::BadSignature(id.to_string()))?;
        if (now - ts).abs() > self.skew {
            return Err(AuthError::Stale(id.to_string()));
        }
        // A keyed hash (random per process) stands for (key, nonce): 8 bytes, not 40+,
        // and no peer can aim for a collision.
        let h = {
            use std::hash::BuildHasher;
            self.hasher.hash_one((id, nonce))
        };
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.prune(now);
        if seen.expiry.get(&h).is_some_and(|until| *until > now) {
            return Err(AuthError::Replayed(id.to_string()));
        }
        if seen.expiry.len() >= MAX_NONCES {
            return Err(AuthError::Overloaded);
        }
        // Keep the nonce until the timestamp leaves the window for good.
        let until = ts + self.skew + 1;
        seen.expiry.insert(h, until);
        seen.order.push_back((until, h));
        Ok(id.to_string())
    }
}

/// `Baton key=ID, ts=EPOCH, nonce=HEX, sig=HEX` as (id, ts, nonce, sig).
fn parse_authorization(header: &str) -> Option<(&str, i64, &str, &str)> {
    let rest = header.strip_prefix(SCHEME)?.strip_prefix(' ')?;
    let (mut id, mut ts, mut nonce, mut sig) = (None, None, None, None);
    for part in rest.split(',') {
        let (k, v) = part.trim().split_once('=')?;
        let slot = match k {
            "key" => &mut id,
            "ts" => &mut ts,
            "nonce" => &mut nonce,
            "sig" => &mut sig,
            _ => return None,
        };
        if slot.replace(v).is_some() {
            return None;
        }
    }
    let nonce = nonce
        .filter(|n| (16..=64).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_hexdigit()))?;
    Some((id?, ts?.parse().ok()?, nonce, sig?))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || text.len() > 256 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (Key, Verifier) {
        let key = Key::generate("host2").unwrap();
        let ring = KeyRing::parse(&format!("# peers\n{}\n", key.to_line())).unwrap();
        (key, Verifier::new(ring, 300))
    }

    #[test]
    fn signed_request_verifies_once() {
        let (key, v) = setup();
        let h = key
            .authorization("GET", "/v1/signals?match=did.*", 1000)
            .unwrap();
        assert_eq!(
            v.verify(&h, "GET", "/v1/signals?match=did.*", 1010),
            Ok("host2".to_string())
        );
        assert_eq!(
            v.verify(&h, "GET", "/v1/signals?match=did.*", 1010),
            Err(AuthError::Replayed("host2".into()))
        );
    }

    #[test]
    fn tampering_and_wrong_keys_fail() {
        let (key, v) = setup();
        let h = key
            .authorization("GET", "/v1/signals?match=did.*", 1000)
            .unwrap();
        assert!(matches!(
            v.verify(&h, "GET", "/v1/signals?match=.*", 1000),
            Err(AuthError::BadSignature(_))
        ));
        let other = Key {
            id: "host2".into(),
            secret: [7; 32],
        };
        let forged = other.authorization("GET", "/p", 1000).unwrap();
        assert!(matches!(
            v.verify(&forged, "GET", "/p", 1000),
            Err(AuthError::BadSignature(_))
        ));
        let stranger = Key::generate("host9")
            .unwrap()
            .authorization("GET", "/p", 1000)
            .unwrap();
        assert_eq!(
            v.verify(&stranger, "GET", "/p", 1000),
            Err(AuthError::UnknownKey("host9".into()))
        );
    }

    #[test]
    fn the_replay_cache_forgets_what_left_the_window() {
        let (key, v) = setup();
        for _ in 0..100 {
            let h = key.authorization("GET", "/p", 1000).unwrap();
            v.verify(&h, "GET", "/p", 1000).unwrap();
        }
        assert_eq!(v.seen.lock().unwrap().expiry.len(), 100);
        let h = key.authorization("GET", "/p", 1302).unwrap();
        v.verify(&h, "GET", "/p", 1302).unwrap();
        let seen = v.seen.lock().unwrap();
        assert_eq!((seen.expiry.len(), seen.order.len()), (1, 1));
    }

    #[test]
    fn stale_timestamps_fail() {
        let (key, v) = setup();
        let h = key.authorization("GET", "/p", 1000).unwrap();
        assert!(matches!(
            v.verify(&h, "GET", "/p", 1301),
            Err(AuthError::Stale(_))
        ));
        let h = key.authorization("GET", "/p", 1000).unwrap();
        assert!(matches!(
            v.verify(&h, "GET", "/p", 699),
            Err(AuthError::Stale(_))
        ));
    }

    #[test]
    fn malformed_headers_fail() {
        let (_, v) = setup();
        for h in [
            "",
            "Baton",
            "Basic abc",
            "Baton key=host2",
            "Baton key=a, key=b, ts=1, nonce=00000000000000000000000000000000, sig=00",
            "Baton key=host2, ts=x, nonce=00000000000000000000000000000000, sig=00",
            "Baton key=host2, ts=1, nonce=zz, sig=00",
        ] {
            assert!(v.verify(h, "GET", "/", 1).is_err(), "{h:?}");
        }
    }

    #[test]
    fn key_files() {
        let key = Key::generate("h-2.example").unwrap();
        let line = key.to_line();
        assert_eq!(KeyRing::parse(&line).unwrap().len(), 1);
        assert!(KeyRing::parse("h 1234").is_err());
        assert!(KeyRing::parse(&format!("{line}\n{line}"))
            .unwrap_err()
            .message
            .contains("twice"));
        assert!(Key::generate("bad id").is_err());
        assert!(
            !format!("{key:?}").contains(&line[line.len() - 8..]),
            "Debug hides the secret"
        );
    }
}
