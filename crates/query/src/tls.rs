//! TLS for `baton-query`: trust in the server (a private CA, or pinned certificate
//! fingerprints: the SHA-256 of a server's certificate, as `baton-key show` and `openssl
//! x509 -fingerprint -sha256` print it), and this host's own identity (`--key`), which
//! the server admits by its fingerprint (mutual TLS).

use baton_core::{Error, Result};
use baton_identity::{Fingerprint, Identity};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::path::Path;
use std::sync::Arc;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Parse `--pin`: one or more fingerprints (64 hex digits, colons allowed), separated by
/// commas: a client that asks several servers pins each one's certificate.
pub fn parse_pins(text: &str) -> Result<Vec<Fingerprint>> {
    text.split(',')
        .map(|one| {
            baton_identity::parse_fingerprint(one.trim()).ok_or_else(|| {
                Error::new(format!(
                    "invalid --pin '{text}': give each certificate's SHA-256 as 64 hex digits (baton-key show CERT), commas between"
                ))
            })
        })
        .collect()
}

fn with_identity(
    builder: rustls::ConfigBuilder<ClientConfig, rustls::client::WantsClientCert>,
    identity: Option<Identity>,
) -> Result<Arc<ClientConfig>> {
    let config = match identity {
        Some(id) => builder
            .with_client_auth_cert(id.certs, id.key)
            .map_err(|e| Error::new(format!("--key: {e}")))?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// A client config trusting only the certificates with these SHA-256 fingerprints,
/// presenting `identity` when given.
pub fn pinned(pins: Vec<Fingerprint>, identity: Option<Identity>) -> Result<Arc<ClientConfig>> {
    let verifier = Arc::new(PinnedCert {
        pins,
        provider: provider(),
    });
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::new(format!("TLS setup: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    with_identity(builder, identity)
}

/// A client config trusting the CA certificates in a PEM file (host names are checked).
pub fn private_ca(path: &Path, identity: Option<Identity>) -> Result<Arc<ClientConfig>> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = RootCertStore::empty();
    let mut found = 0;
    let certs = rustls::pki_types::CertificateDer::pem_file_iter(path).map_err(|e| match e {
        rustls::pki_types::pem::Error::Io(e) => Error::io("read CA file", path, e),
        e => Error::new(format!("{}: {e}", path.display())),
    })?;
    for cert in certs {
        let cert = cert.map_err(|e| Error::new(format!("{}: {e}", path.display())))?;
        roots
            .add(cert)
            .map_err(|e| Error::new(format!("{}: {e}", path.display())))?;
        found += 1;
    }
    if found == 0 {
        return Err(Error::new(format!(
            "{}: no PEM certificate found",
            path.display()
        )));
    }
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::new(format!("TLS setup: {e}")))?
        .with_root_certificates(roots);
    with_identity(builder, identity)
}

#[derive(Debug)]
struct PinnedCert {
    pins: Vec<Fingerprint>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedCert {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        let digest = baton_identity::fingerprint(end_entity.as_ref());
        // The fingerprint is public; no need for a constant-time comparison.
        if self.pins.contains(&digest) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "certificate fingerprint {} is not a pinned one",
                baton_identity::show(&digest)
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_parse_with_or_without_colons() {
        let hex = "AB".repeat(32);
        let colons = vec!["ab"; 32].join(":");
        assert_eq!(parse_pins(&hex).unwrap(), vec![[0xab; 32]]);
        assert_eq!(parse_pins(&colons).unwrap(), vec![[0xab; 32]]);
        let two = format!("{hex}, {}", "01".repeat(32));
        assert_eq!(parse_pins(&two).unwrap(), vec![[0xab; 32], [1; 32]]);
        assert!(parse_pins("abcd").is_err());
        assert!(parse_pins(&format!("{hex},")).is_err());
        assert!(parse_pins(&"zz".repeat(32)).is_err());
    }
}
