//! TLS trust for `baton-query`: a private CA, or a pinned certificate fingerprint (the
//! SHA-256 of the server's certificate, as `openssl x509 -fingerprint -sha256` prints it).

use baton_core::{Error, Result};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::Arc;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Parse a fingerprint: 64 hex digits, colons allowed.
pub fn parse_pin(text: &str) -> Result<[u8; 32]> {
    let hex: String = text.chars().filter(|c| *c != ':').collect();
    let bytes = baton_proto::auth::unhex(&hex.to_lowercase())
        .filter(|b| b.len() == 32)
        .ok_or_else(|| {
            Error::new(format!(
                "invalid --pin '{text}': give the certificate's SHA-256 as 64 hex digits"
            ))
        })?;
    let mut pin = [0u8; 32];
    pin.copy_from_slice(&bytes);
    Ok(pin)
}

/// A client config trusting only the certificate with this SHA-256 fingerprint.
pub fn pinned(pin: [u8; 32]) -> Result<Arc<ClientConfig>> {
    let verifier = Arc::new(PinnedCert {
        pin,
        provider: provider(),
    });
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::new(format!("TLS setup: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A client config trusting the CA certificates in a PEM file (host names are checked).
pub fn private_ca(path: &Path) -> Result<Arc<ClientConfig>> {
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
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::new(format!("TLS setup: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[derive(Debug)]
struct PinnedCert {
    pin: [u8; 32],
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
        let digest: [u8; 32] = Sha256::digest(end_entity.as_ref()).into();
        // The fingerprint is public; no need for a constant-time comparison.
        if digest == self.pin {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "certificate fingerprint {} is not the pinned one",
                baton_proto::auth::hex(&digest)
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
        assert_eq!(parse_pin(&hex).unwrap(), [0xab; 32]);
        assert_eq!(parse_pin(&colons).unwrap(), [0xab; 32]);
        assert!(parse_pin("abcd").is_err());
        assert!(parse_pin(&"zz".repeat(32)).is_err());
    }
}
