//! CFEngine's keys: the host's RSA key pair in `WORKDIR/ppkeys/localhost.priv` and
//! `localhost.pub` (PKCS#1 PEM, as `cf-key` writes them), and the peers' public keys it
//! trusts, `WORKDIR/ppkeys/USER-MD5=<hex>.pub` (`USER-SHA=<hex>.pub` on SHA-256 builds),
//! named by the digest of the key's modulus and exponent, as CFEngine's `HashPubKey`
//! computes it.

use baton_core::{Error, Result};
use md5::Md5;
use pkcs1::der::{Decode, Encode};
use pkcs8::PrivateKeyInfo;
use rustls::pki_types::{CertificateDer, PrivatePkcs1KeyDer};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Where Debian's cfengine3 keeps its state and keys.
pub const DEFAULT_WORKDIR: &str = "/var/lib/cfengine3";

/// Key files are small; anything bigger is not a key.
const MAX_KEY_FILE: u64 = 64 * 1024;

/// An RSA public key: modulus and exponent, big-endian without leading zeros.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    modulus: Vec<u8>,
    exponent: Vec<u8>,
}

impl PublicKey {
    /// From a PKCS#1 `RSAPublicKey` in DER.
    pub fn from_pkcs1_der(der: &[u8]) -> std::result::Result<PublicKey, String> {
        let key = pkcs1::RsaPublicKey::from_der(der).map_err(|e| format!("not an RSA key: {e}"))?;
        Ok(PublicKey {
            modulus: key.modulus.as_bytes().to_vec(),
            exponent: key.public_exponent.as_bytes().to_vec(),
        })
    }

    /// From PEM text: `RSA PUBLIC KEY` (what cf-key writes) or `PUBLIC KEY`.
    pub fn from_pem(pem: &[u8]) -> std::result::Result<PublicKey, String> {
        let (label, der) = pkcs1::der::pem::decode_vec(pem).map_err(|e| format!("not PEM: {e}"))?;
        match label {
            "RSA PUBLIC KEY" => PublicKey::from_pkcs1_der(&der),
            "PUBLIC KEY" => PublicKey::from_spki_der(&der),
            other => Err(format!("a PEM '{other}', not an RSA public key")),
        }
    }

    /// From an X.509 `SubjectPublicKeyInfo` in DER (what a certificate carries).
    pub fn from_spki_der(der: &[u8]) -> std::result::Result<PublicKey, String> {
        let spki = x509_cert::spki::SubjectPublicKeyInfoRef::from_der(der)
            .map_err(|e| format!("bad public key info: {e}"))?;
        if spki.algorithm.oid != pkcs1::ALGORITHM_OID {
            return Err(format!("a {} key, not RSA", spki.algorithm.oid));
        }
        PublicKey::from_pkcs1_der(spki.subject_public_key.raw_bytes())
    }

    /// `MD5=<hex>`: the digest Debian's CFEngine names keys by.
    pub fn md5_digest(&self) -> String {
        let mut h = Md5::new();
        h.update(&self.modulus);
        h.update(&self.exponent);
        format!("MD5={}", hex(&h.finalize()))
    }

    /// `SHA=<hex>`: the digest of CFEngine builds that use SHA-256.
    pub fn sha_digest(&self) -> String {
        let mut h = Sha256::new();
        h.update(&self.modulus);
        h.update(&self.exponent);
        format!("SHA={}", hex(&h.finalize()))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn read_key_file(path: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| {
        let hint = match e.kind() {
            std::io::ErrorKind::NotFound => {
                " (run cf-key, or give --cfengine-workdir DIR, BATON_CFENGINE_WORKDIR)"
            }
            std::io::ErrorKind::PermissionDenied => " (CFEngine's keys are root's: run as root)",
            _ => "",
        };
        Error::io("read", path, e)
            .context("CFEngine key")
            .with_suffix(hint)
    })?;
    let mut bytes = Vec::new();
    file.take(MAX_KEY_FILE)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io("read", path, e))?;
    Ok(bytes)
}

trait Suffix {
    fn with_suffix(self, s: &str) -> Self;
}

impl Suffix for Error {
    fn with_suffix(mut self, s: &str) -> Error {
        self.message.push_str(s);
        self
    }
}

/// This host as a CFEngine peer: its private key and a certificate made from it, which
/// cf-serverd reads only for the public key inside.
pub struct Identity {
    pub key: PrivatePkcs1KeyDer<'static>,
    pub certificate: CertificateDer<'static>,
    pub public: PublicKey,
    /// The public key file, for messages that tell the admin what to trust.
    pub public_file: PathBuf,
}

impl Identity {
    /// Load `WORKDIR/ppkeys/localhost.priv` and make the client certificate.
    pub fn load(workdir: &Path) -> Result<Identity> {
        let path = workdir.join("ppkeys").join("localhost.priv");
        let bad = |why: String| Error::new(format!("CFEngine key {}: {why}", path.display()));
        let pem = read_key_file(&path)?;
        if pem.windows(9).any(|w| w == b"ENCRYPTED") {
            return Err(bad(
                "the key is encrypted (an old CFEngine's): make a new one with cf-key".into(),
            ));
        }
        let (label, der) =
            pkcs1::der::pem::decode_vec(&pem).map_err(|e| bad(format!("not PEM: {e}")))?;
        let pkcs1_der = match label {
            "RSA PRIVATE KEY" => der,
            "PRIVATE KEY" => PrivateKeyInfo::from_der(&der)
                .map_err(|e| bad(format!("not a PKCS#8 key: {e}")))?
                .private_key
                .to_vec(),
            other => return Err(bad(format!("a PEM '{other}', not an RSA private key"))),
        };
        let private = pkcs1::RsaPrivateKey::from_der(&pkcs1_der)
            .map_err(|e| bad(format!("not an RSA private key: {e}")))?;
        let public = PublicKey {
            modulus: private.modulus.as_bytes().to_vec(),
            exponent: private.public_exponent.as_bytes().to_vec(),
        };
        let pkcs8 = PrivateKeyInfo::new(pkcs1::ALGORITHM_ID, &pkcs1_der)
            .to_der()
            .map_err(|e| bad(e.to_string()))?;
        let key_pair =
            rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8.into(), &rcgen::PKCS_RSA_SHA256)
                .map_err(|e| {
                    bad(format!(
                        "cannot sign with it ({e}; keys under 2048 bits are refused: make a new one with cf-key)"
                    ))
                })?;
        let mut params = rcgen::CertificateParams::default();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "baton-query");
        let certificate = params
            .self_signed(&key_pair)
            .map_err(|e| bad(format!("cannot make a certificate from it: {e}")))?
            .der()
            .clone();
        Ok(Identity {
            key: PrivatePkcs1KeyDer::from(pkcs1_der),
            certificate,
            public,
            public_file: workdir.join("ppkeys").join("localhost.pub"),
        })
    }
}

/// Whether `key` is one `ppkeys` trusts: a file `*-MD5=<hex>.pub` or `*-SHA=<hex>.pub`
/// named by its digest whose key is the same. `Err` when the directory cannot be read.
pub fn is_trusted(ppkeys: &Path, key: &PublicKey) -> Result<bool> {
    let names = [
        format!("-{}.pub", key.md5_digest()),
        format!("-{}.pub", key.sha_digest()),
    ];
    let entries =
        std::fs::read_dir(ppkeys).map_err(|e| Error::io("read the trusted keys in", ppkeys, e))?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !names.iter().any(|n| name.ends_with(n.as_str())) {
            continue;
        }
        let Ok(pem) = read_key_file(&entry.path()) else {
            continue;
        };
        if PublicKey::from_pem(&pem).is_ok_and(|k| k == *key) {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    // A throwaway key pair made for these tests by cf-key (CFEngine 3.21, Debian).
    pub(crate) const PRIV: &str = include_str!("testdata/localhost.priv");
    pub(crate) const PUB: &str = include_str!("testdata/localhost.pub");
    /// `cf-key -p testdata/localhost.pub` on CFEngine 3.21 (Debian).
    const CF_KEY_DIGEST: &str = include_str!("testdata/cf-key-p.txt");

    fn workdir(label: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("baton-cfkeys-{label}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("ppkeys")).unwrap();
        dir
    }

    #[test]
    fn digests_are_cfengines() {
        let key = PublicKey::from_pem(PUB.as_bytes()).unwrap();
        assert_eq!(key.md5_digest(), CF_KEY_DIGEST.trim());
        assert!(key.sha_digest().starts_with("SHA=") && key.sha_digest().len() == 68);
    }

    #[test]
    fn identity_matches_its_public_key() {
        let dir = workdir("identity");
        std::fs::write(dir.join("ppkeys/localhost.priv"), PRIV).unwrap();
        let id = Identity::load(&dir).unwrap();
        assert_eq!(id.public, PublicKey::from_pem(PUB.as_bytes()).unwrap());
        // The certificate carries the same key.
        let cert = x509_cert::Certificate::from_der(id.certificate.as_ref()).unwrap();
        let spki = cert
            .tbs_certificate
            .subject_public_key_info
            .to_der()
            .unwrap();
        assert_eq!(PublicKey::from_spki_der(&spki).unwrap(), id.public);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn bad_keys_say_what_to_do() {
        let dir = workdir("bad");
        let err = Identity::load(&dir).err().unwrap().message;
        assert!(err.contains("run cf-key"), "{err}");
        std::fs::write(
            dir.join("ppkeys/localhost.priv"),
            "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n\nAAAA\n-----END RSA PRIVATE KEY-----\n",
        )
        .unwrap();
        let err = Identity::load(&dir).err().unwrap().message;
        assert!(err.contains("encrypted"), "{err}");
        std::fs::write(dir.join("ppkeys/localhost.priv"), PUB).unwrap();
        let err = Identity::load(&dir).err().unwrap().message;
        assert!(err.contains("not an RSA private key"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn trust_is_by_digest_name_and_same_key() {
        let dir = workdir("trust");
        let ppkeys = dir.join("ppkeys");
        let key = PublicKey::from_pem(PUB.as_bytes()).unwrap();
        assert!(!is_trusted(&ppkeys, &key).unwrap());
        // The right name with another key inside is not trust.
        let other = PublicKey {
            modulus: vec![1, 2, 3],
            exponent: vec![1, 0, 1],
        };
        let other_pem = pkcs1::der::pem::encode_string(
            "RSA PUBLIC KEY",
            pkcs1::der::pem::LineEnding::LF,
            &pkcs1::RsaPublicKey {
                modulus: pkcs1::UintRef::new(&other.modulus).unwrap(),
                public_exponent: pkcs1::UintRef::new(&other.exponent).unwrap(),
            }
            .to_der()
            .unwrap(),
        )
        .unwrap();
        let name = ppkeys.join(format!("root-{}.pub", key.md5_digest()));
        std::fs::write(&name, other_pem).unwrap();
        assert!(!is_trusted(&ppkeys, &key).unwrap());
        std::fs::write(&name, PUB).unwrap();
        assert!(is_trusted(&ppkeys, &key).unwrap());
        std::fs::remove_file(&name).unwrap();
        std::fs::write(ppkeys.join(format!("baton-{}.pub", key.sha_digest())), PUB).unwrap();
        assert!(is_trusted(&ppkeys, &key).unwrap());
        assert!(is_trusted(&dir.join("missing"), &key).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
