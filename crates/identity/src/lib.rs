//! Host identities for mutual TLS, CFEngine's model: each host holds a key pair
//! (`DIR/ID.key`, mode 0600, and a self-signed certificate `DIR/ID.crt`), and servers
//! hold only the public identities of the clients they admit, as lines `ID SHA256` in
//! their `--keys` file. The same identity is a client's (`baton-query --key`) and a
//! server's own (`baton-serve --tls-cert/--tls-key`). Linked by the client and the server
//! alike, so it holds no server stack.

pub mod cli;

use baton_core::{Error, Result};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// A certificate's SHA-256 fingerprint.
pub type Fingerprint = [u8; 32];

/// Identity ids: letters, digits, `_`, `-` and `.`, at most 64.
pub fn validate_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::new(format!(
            "invalid key id '{}': use 1 to 64 letters, digits, '_', '-' or '.'",
            id.escape_default()
        )))
    }
}

/// The SHA-256 of a DER certificate.
pub fn fingerprint(der: &[u8]) -> Fingerprint {
    Sha256::digest(der).into()
}

/// A fingerprint as `openssl x509 -fingerprint -sha256` prints it: `AB:CD:...`.
pub fn show(fp: &Fingerprint) -> String {
    fp.iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Parse a fingerprint: 64 hex digits, colons allowed, any case.
pub fn parse_fingerprint(text: &str) -> Option<Fingerprint> {
    let hex: Vec<u8> = text.bytes().filter(|b| *b != b':').collect();
    if hex.len() != 64 {
        return None;
    }
    let mut fp = [0u8; 32];
    for (i, pair) in hex.chunks(2).enumerate() {
        let pair = std::str::from_utf8(pair).ok()?;
        fp[i] = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(fp)
}

/// Refuse a private key file that others may read (as ssh does), with the fix.
pub fn check_private(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|e| Error::io("read private key", path, e))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(Error::new(format!(
            "{}: private key is readable by others (mode {mode:04o}); run: chmod 600 {}",
            path.display(),
            path.display()
        )));
    }
    Ok(())
}

/// The PEM certificates in a file (at least one).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(path, "read certificate", e))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, "read certificate", e))?;
    if certs.is_empty() {
        return Err(Error::new(format!(
            "{}: no PEM certificate found",
            path.display()
        )));
    }
    Ok(certs)
}

/// An unencrypted PEM private key, from a file only its owner may read.
pub fn load_private_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    check_private(path)?;
    PrivateKeyDer::from_pem_file(path).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => Error::new(format!(
            "{}: no unencrypted private key found",
            path.display()
        )),
        e => pem_error(path, "read private key", e),
    })
}

fn pem_error(path: &Path, what: &str, e: rustls::pki_types::pem::Error) -> Error {
    match e {
        rustls::pki_types::pem::Error::Io(e) => Error::io(what, path, e),
        e => Error::new(format!("{}: not PEM: {e}", path.display())),
    }
}

/// A host's identity: its id, certificate chain and private key.
pub struct Identity {
    pub id: String,
    pub certs: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Identity({})", self.id) // never the key
    }
}

impl Identity {
    /// `DIR/ID.key` and the certificate `DIR/ID.crt` beside it.
    pub fn load(key_path: &Path) -> Result<Identity> {
        let id = key_path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        let cert_path = key_path.with_extension("crt");
        let key = load_private_key(key_path)?;
        let certs = load_certs(&cert_path).map_err(|e| {
            e.context(format!(
                "the certificate of {} (baton-key new writes both)",
                key_path.display()
            ))
        })?;
        Ok(Identity { id, certs, key })
    }

    pub fn fingerprint(&self) -> Fingerprint {
        fingerprint(self.certs[0].as_ref())
    }
}

/// The files `baton-key new` wrote, and the line a server adds to its `--keys` file.
pub struct Generated {
    pub key: PathBuf,
    pub cert: PathBuf,
    pub line: String,
}

/// A new key pair and self-signed certificate for `id` in `dir`: `ID.key` (0600, created,
/// never overwritten) and `ID.crt`. `names` are the certificate's subject alternative
/// names (DNS names or IP addresses; the id when none are given).
pub fn generate(id: &str, dir: &Path, names: &[String]) -> Result<Generated> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    validate_id(id)?;
    let names = if names.is_empty() {
        vec![id.to_string()]
    } else {
        names.to_vec()
    };
    let mut params = rcgen::CertificateParams::new(names)
        .map_err(|e| Error::new(format!("invalid certificate name: {e}")))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, id);
    let pair = rcgen::KeyPair::generate()
        .map_err(|e| Error::new(format!("cannot make a key pair: {e}")))?;
    let cert = params
        .self_signed(&pair)
        .map_err(|e| Error::new(format!("cannot make a certificate: {e}")))?;
    let key_path = dir.join(format!("{id}.key"));
    let cert_path = dir.join(format!("{id}.crt"));
    if cert_path.exists() {
        return Err(Error::new(format!(
            "{} exists: remove it (and {}) or choose another --out",
            cert_path.display(),
            key_path.display()
        )));
    }
    let mut key_file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&key_path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => Error::new(format!(
                "{} exists: remove it or choose another --out",
                key_path.display()
            )),
            _ => Error::io("create", &key_path, e),
        })?;
    key_file
        .write_all(pair.serialize_pem().as_bytes())
        .and_then(|()| key_file.sync_all())
        .map_err(|e| Error::io("write", &key_path, e))?;
    baton_core::fsutil::write_atomic(&cert_path, cert.pem().as_bytes())?;
    let fp = fingerprint(cert.der().as_ref());
    Ok(Generated {
        key: key_path,
        cert: cert_path,
        line: format!("{id} {}", show(&fp)),
    })
}

/// The identities a server admits: its `--keys` file, one `ID SHA256` line each.
#[derive(Debug, Clone, Default)]
pub struct KeyRing {
    by_fingerprint: HashMap<Fingerprint, String>,
}

impl KeyRing {
    pub fn parse(text: &str) -> Result<KeyRing> {
        let mut ring = KeyRing::default();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let at = |e: Error| e.context(format!("line {}", i + 1));
            let mut words = line.split_whitespace();
            let (Some(id), Some(fp), None) = (words.next(), words.next(), words.next()) else {
                return Err(at(Error::new(
                    "expected 'ID SHA256' (the line baton-key new prints)",
                )));
            };
            validate_id(id).map_err(at)?;
            let fp = parse_fingerprint(fp).ok_or_else(|| {
                at(Error::new(format!(
                    "key '{id}': the fingerprint must be 64 hex digits (baton-key show FILE prints it)"
                )))
            })?;
            if ring.by_fingerprint.insert(fp, id.to_string()).is_some() {
                return Err(at(Error::new(format!(
                    "the certificate of '{id}' is listed twice"
                ))));
            }
        }
        Ok(ring)
    }

    pub fn load(path: &Path) -> Result<KeyRing> {
        let text =
            std::fs::read_to_string(path).map_err(|e| Error::io("read keys file", path, e))?;
        KeyRing::parse(&text).map_err(|e| e.context(path.display()))
    }

    /// The id of the identity with this certificate fingerprint.
    pub fn id_of(&self, fp: &Fingerprint) -> Option<&str> {
        self.by_fingerprint.get(fp).map(String::as_str)
    }

    /// Whether some identity is called `id`.
    pub fn has_id(&self, id: &str) -> bool {
        self.by_fingerprint.values().any(|v| v == id)
    }

    pub fn len(&self) -> usize {
        self.by_fingerprint.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_fingerprint.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_parse_and_show() {
        let fp = [0xab; 32];
        assert_eq!(parse_fingerprint(&show(&fp)), Some(fp));
        assert_eq!(parse_fingerprint(&"AB".repeat(32)), Some(fp));
        assert_eq!(parse_fingerprint(&"ab".repeat(32)), Some(fp));
        assert_eq!(parse_fingerprint("abcd"), None);
        assert_eq!(parse_fingerprint(&"zz".repeat(32)), None);
        assert_eq!(parse_fingerprint(&"é".repeat(32)), None);
    }

    #[test]
    fn key_rings_parse() {
        let fp = show(&[1; 32]);
        let ring = KeyRing::parse(&format!("# keys\nhost2 {fp}\n\n")).unwrap();
        assert_eq!(ring.id_of(&[1; 32]), Some("host2"));
        assert!(ring.has_id("host2") && !ring.has_id("host3"));
        for bad in [
            format!("host2 {fp} extra"),
            "host2".to_string(),
            "host2 abcd".to_string(),
            format!("bad/id {fp}"),
            format!("a {fp}\nb {fp}"),
        ] {
            assert!(KeyRing::parse(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn generated_identities_load_and_match_their_line() {
        let dir = std::env::temp_dir().join(format!("baton-identity-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let made = generate("host2", &dir, &[]).unwrap();
        let id = Identity::load(&made.key).unwrap();
        assert_eq!(id.id, "host2");
        assert_eq!(made.line, format!("host2 {}", show(&id.fingerprint())));
        assert!(generate("host2", &dir, &[]).is_err(), "never overwritten");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&made.key, std::fs::Permissions::from_mode(0o640)).unwrap();
        let err = Identity::load(&made.key).unwrap_err().message;
        assert!(err.contains("chmod 600"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[cfg(test)]
mod fuzz_identity {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn fuzz_key_rings_never_panic(text in ".{0,200}") {
            let _ = KeyRing::parse(&text);
            let _ = parse_fingerprint(&text);
        }
    }
}
