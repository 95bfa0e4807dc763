//! TLS as cf-serverd speaks it: TLS 1.3 with AES-256-GCM, each side presenting a
//! certificate made from its CFEngine RSA key and trusted for the key alone. cf-serverd's
//! certificate is an X.509 v1 certificate that no stock verifier accepts, so the server is
//! verified the way CFEngine does: its public key must be one `ppkeys/` trusts, and the
//! handshake signature must be made with it.

use super::keys::{is_trusted, Identity, PublicKey};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls13_signature_with_raw_key, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, SubjectPublicKeyInfoDer, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use x509_cert::der::{Decode, Encode};

/// The only suite cf-serverd 3.21 offers that rustls also speaks (its TLS 1.2 suites use
/// plain RSA key exchange, which rustls does not implement).
fn provider() -> Arc<CryptoProvider> {
    let mut p = rustls::crypto::ring::default_provider();
    p.cipher_suites = vec![rustls::crypto::ring::cipher_suite::TLS13_AES_256_GCM_SHA384];
    Arc::new(p)
}

/// What the verifier saw of the server's key, for the message when it is refused.
#[derive(Debug, Default, Clone)]
pub struct Seen {
    /// `MD5=<hex>` of the key the server presented.
    pub digest: Option<String>,
    /// The key is not trusted (or the certificate carried no usable key: `bad`).
    pub untrusted: bool,
    pub bad: Option<String>,
}

/// Trusts a server whose certificate carries a public key that `ppkeys` trusts.
#[derive(Debug)]
struct TrustedKeys {
    ppkeys: PathBuf,
    provider: Arc<CryptoProvider>,
    seen: Arc<Mutex<Seen>>,
}

/// The certificate's `SubjectPublicKeyInfo`, whatever its X.509 version.
fn spki_of(cert: &CertificateDer<'_>) -> Result<Vec<u8>, String> {
    let cert = x509_cert::Certificate::from_der(cert.as_ref())
        .map_err(|e| format!("bad certificate: {e}"))?;
    cert.tbs_certificate
        .subject_public_key_info
        .to_der()
        .map_err(|e| format!("bad certificate: {e}"))
}

impl TrustedKeys {
    fn record(&self, f: impl FnOnce(&mut Seen)) {
        f(&mut self.seen.lock().unwrap_or_else(|p| p.into_inner()));
    }
}

impl ServerCertVerifier for TrustedKeys {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let key = spki_of(end_entity).and_then(|spki| PublicKey::from_spki_der(&spki));
        let key = match key {
            Ok(k) => k,
            Err(why) => {
                self.record(|s| s.bad = Some(why.clone()));
                return Err(rustls::Error::General(why));
            }
        };
        self.record(|s| s.digest = Some(key.md5_digest()));
        match is_trusted(&self.ppkeys, &key) {
            Ok(true) => Ok(ServerCertVerified::assertion()),
            Ok(false) => {
                self.record(|s| s.untrusted = true);
                Err(rustls::Error::General("untrusted server key".into()))
            }
            Err(e) => {
                self.record(|s| s.bad = Some(e.message.clone()));
                Err(rustls::Error::General(e.message))
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // The config offers TLS 1.3 only; a TLS 1.2 signature is never right.
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let spki = spki_of(cert).map_err(rustls::Error::General)?;
        verify_tls13_signature_with_raw_key(
            message,
            &SubjectPublicKeyInfoDer::from(spki.as_slice()),
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

/// A client config for one connection: TLS 1.3 with AES-256-GCM, presenting `identity`,
/// trusting server keys in `ppkeys`; `seen` tells what the server presented.
pub fn config(
    identity: &Identity,
    ppkeys: PathBuf,
    seen: Arc<Mutex<Seen>>,
) -> Result<Arc<ClientConfig>, String> {
    let provider = provider();
    let verifier = Arc::new(TrustedKeys {
        ppkeys,
        provider: provider.clone(),
        seen,
    });
    let config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| format!("TLS setup: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(
            vec![identity.certificate.clone()],
            identity.key.clone_key().into(),
        )
        .map_err(|e| format!("TLS setup: {e}"))?;
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cf_serverd_certificates_yield_their_key() {
        // A certificate cf-serverd 3.21 presented (X.509 v1, serial 0), and its key file.
        let pem = include_bytes!("testdata/cf-serverd.crt");
        let (_, der) = x509_cert::der::pem::decode_vec(pem).unwrap();
        let spki = spki_of(&CertificateDer::from(der)).unwrap();
        let key = PublicKey::from_spki_der(&spki).unwrap();
        let file = PublicKey::from_pem(include_bytes!("testdata/cf-serverd.pub")).unwrap();
        assert_eq!(key, file);
        assert!(spki_of(&CertificateDer::from(vec![0x30, 0x03, 1, 2, 3])).is_err());
    }
}
