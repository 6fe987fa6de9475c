//! Client certificates on the API listener. Optional (operators authenticate with bearer
//! tokens), but a certificate that is presented must chain to Sigil's CA, be within its
//! validity (rustls-webpki checks both), and not be revoked: the revoked set is updated in
//! memory the moment a revocation commits, so the next handshake fails, without a CRL fetch.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, UnixTime};
use x509_parser::prelude::{FromDer, X509Certificate};

use sigil_domain::Serial;

use crate::ServerError;

/// Serials of revoked, unexpired certificates, shared by the CRL publisher (writer) and the
/// TLS verifier (reader).
#[derive(Debug, Clone, Default)]
pub struct RevokedSerials(Arc<RwLock<HashSet<Serial>>>);

impl RevokedSerials {
    pub fn replace(&self, serials: impl IntoIterator<Item = Serial>) {
        if let Ok(mut set) = self.0.write() {
            *set = serials.into_iter().collect();
        }
    }

    /// Fails closed: a poisoned lock counts as revoked.
    pub fn contains(&self, serial: &Serial) -> bool {
        self.0.read().map_or(true, |set| set.contains(serial))
    }
}

/// The end-entity certificate a client presented in the TLS handshake (already verified).
#[derive(Debug, Clone)]
pub struct PeerCertificate(pub Option<Arc<CertificateDer<'static>>>);

#[derive(Debug)]
pub struct SigilClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    revoked: RevokedSerials,
}

impl SigilClientVerifier {
    /// Trust anchors: the root and the issuing CA (so a device that sends only its own
    /// certificate, as most do, still verifies).
    pub fn new(
        ca_ders: &[&[u8]],
        revoked: RevokedSerials,
        provider: Arc<CryptoProvider>,
    ) -> Result<Arc<Self>, ServerError> {
        let mut roots = RootCertStore::empty();
        for der in ca_ders {
            roots.add(CertificateDer::from(der.to_vec())).map_err(|e| {
                ServerError::Tls(format!("CA certificate as TLS trust anchor: {e}"))
            })?;
        }
        let inner = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .allow_unauthenticated()
            .build()
            .map_err(|e| ServerError::Tls(e.to_string()))?;
        Ok(Arc::new(Self { inner, revoked }))
    }
}

impl ClientCertVerifier for SigilClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let (_, cert) = X509Certificate::from_der(end_entity)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        let serial = Serial::from_bytes(cert.raw_serial())
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        if self.revoked.contains(&serial) {
            tracing::info!(serial = %serial.as_str(), "TLS client presented a revoked certificate");
            return Err(rustls::Error::InvalidCertificate(CertificateError::Revoked));
        }
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
