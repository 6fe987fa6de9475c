//! Client certificates on the API listener. Optional (operators authenticate with bearer
//! tokens), but a certificate that is presented must be within its validity (rustls-webpki
//! checks) and chain either to Sigil's CA, and then not be revoked (the revoked set is updated
//! in memory the moment a revocation commits, so the next handshake fails, without a CRL
//! fetch), or to a manufacturer CA an operator registered for a product: a bootstrap (IDevID)
//! certificate, good only for first enrolment. Every refused certificate is reported for the
//! audit log.

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

use sigil_authority::{AuthorityError, ClientTrust, RevokedSerials};
pub use sigil_http::PeerCertificate;

use crate::ServerError;

/// A client certificate refused during a TLS handshake, for the audit log.
#[derive(Debug, Clone)]
pub struct RefusedClientCertificate {
    pub serial: String,
    pub subject: String,
    pub issuer: String,
    pub reason: String,
}

#[derive(Debug)]
pub struct SigilClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    /// Registered manufacturer CAs as anchors; replaced when one is registered.
    manufacturers: RwLock<Option<Arc<dyn ClientCertVerifier>>>,
    revoked: RevokedSerials,
    provider: Arc<CryptoProvider>,
    /// Bounded: under a flood of bad handshakes, reports are dropped, handshakes still fail.
    refusals: Option<tokio::sync::mpsc::Sender<RefusedClientCertificate>>,
}

impl SigilClientVerifier {
    /// Trust anchors: the root and the issuing CA (so a device that sends only its own
    /// certificate, as most do, still verifies).
    pub fn new(
        ca_ders: &[&[u8]],
        revoked: RevokedSerials,
        provider: Arc<CryptoProvider>,
        refusals: Option<tokio::sync::mpsc::Sender<RefusedClientCertificate>>,
    ) -> Result<Arc<Self>, ServerError> {
        let inner = anchored_verifier(ca_ders, &provider)?;
        Ok(Arc::new(Self {
            inner,
            manufacturers: RwLock::new(None),
            revoked,
            provider,
            refusals,
        }))
    }

    /// Trust exactly these manufacturer CAs (DER) for bootstrap certificates from now on.
    pub fn set_manufacturer_cas(&self, ders: &[Vec<u8>]) -> Result<(), ServerError> {
        let verifier = if ders.is_empty() {
            None
        } else {
            let refs: Vec<&[u8]> = ders.iter().map(Vec::as_slice).collect();
            Some(anchored_verifier(&refs, &self.provider)?)
        };
        if let Ok(mut current) = self.manufacturers.write() {
            *current = verifier;
        }
        Ok(())
    }

    fn report(&self, end_entity: &CertificateDer<'_>, error: &rustls::Error) {
        let (serial, subject, issuer) = match X509Certificate::from_der(end_entity) {
            Ok((_, c)) => (
                hex::encode(c.raw_serial()),
                c.subject().to_string(),
                c.issuer().to_string(),
            ),
            Err(_) => ("unparseable".into(), String::new(), String::new()),
        };
        let reason = match error {
            rustls::Error::InvalidCertificate(e) => format!("{e:?}"),
            other => other.to_string(),
        };
        tracing::warn!(%serial, %subject, %issuer, %reason, "TLS client certificate refused");
        if let Some(tx) = &self.refusals {
            let _ = tx.try_send(RefusedClientCertificate {
                serial,
                subject,
                issuer,
                reason,
            });
        }
    }

    fn verify(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let sigil_error = match self
            .inner
            .verify_client_cert(end_entity, intermediates, now)
        {
            Ok(_) => {
                let (_, cert) = X509Certificate::from_der(end_entity).map_err(|_| {
                    rustls::Error::InvalidCertificate(CertificateError::BadEncoding)
                })?;
                let serial = Serial::from_bytes(cert.raw_serial()).map_err(|_| {
                    rustls::Error::InvalidCertificate(CertificateError::BadEncoding)
                })?;
                if self.revoked.contains(&serial) {
                    return Err(rustls::Error::InvalidCertificate(CertificateError::Revoked));
                }
                return Ok(ClientCertVerified::assertion());
            }
            Err(e) => e,
        };
        let manufacturers = self.manufacturers.read().ok().and_then(|m| m.clone());
        let Some(manufacturers) = manufacturers else {
            return Err(sigil_error);
        };
        match manufacturers.verify_client_cert(end_entity, intermediates, now) {
            Ok(v) => Ok(v),
            // Not a bootstrap certificate either: say what was wrong with it as Sigil's.
            Err(rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)) => {
                Err(sigil_error)
            }
            Err(e) => Err(e),
        }
    }
}

fn anchored_verifier(
    ders: &[&[u8]],
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, ServerError> {
    let mut roots = RootCertStore::empty();
    for der in ders {
        roots
            .add(CertificateDer::from(der.to_vec()))
            .map_err(|e| ServerError::Tls(format!("CA certificate as TLS trust anchor: {e}")))?;
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| ServerError::Tls(e.to_string()))
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
        self.verify(end_entity, intermediates, now)
            .inspect_err(|e| self.report(end_entity, e))
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

impl ClientTrust for SigilClientVerifier {
    fn set_manufacturer_cas(&self, ders: &[Vec<u8>]) -> Result<(), AuthorityError> {
        SigilClientVerifier::set_manufacturer_cas(self, ders)
            .map_err(|e| AuthorityError::Tls(e.to_string()))
    }
}
