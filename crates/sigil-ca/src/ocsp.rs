//! OCSP (RFC 6960): request parsing and signed responses, signed either by a delegated responder
//! certificate the issuing CA certifies (id-kp-OCSPSigning + ocsp-nocheck) or by the issuing CA
//! itself; RFC 6960 section 4.2.2.2 allows both.
//!
//! Hand-written on `der` 0.8: the maintained `x509-ocsp` crate is built on der 0.7 /
//! x509-cert 0.2, which would put two copies of every ASN.1 format crate in the build. These are
//! the RFC 6960 section 4.1.1 and 4.2.1 structures, field for field.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use der::asn1::{BitString, GeneralizedTime, Int, Null, ObjectIdentifier, OctetString};
use der::{Any, Choice, Decode, Encode, Enumerated, Sequence};
use rcgen::SigningKey;
use time::OffsetDateTime;
use x509_cert::Version;
use x509_cert::ext::pkix::crl::CrlReason;
use x509_cert::ext::{Extension, Extensions};
use x509_cert::spki::AlgorithmIdentifierOwned;
use x509_parser::prelude::{FromDer, X509Certificate};

use sigil_domain::{RevocationReason, Serial};

use crate::{CaError, IssuingCa};

/// Largest OCSP request accepted (a request for one certificate is ~80 bytes).
pub const MAX_OCSP_REQUEST_LEN: usize = 8 * 1024;
/// Most certificates one request may ask about.
pub const MAX_CERTS_PER_REQUEST: usize = 16;

const ID_PKIX_OCSP_BASIC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1.1");
const ID_PKIX_OCSP_NONCE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1.2");
const ID_SHA1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.14.3.2.26");
const ID_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
const ID_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2");
const ID_SHA512: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.3");
const ECDSA_WITH_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const ECDSA_WITH_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
const ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
const SHA256_WITH_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.11");

// ---- RFC 6960 4.1.1: the request --------------------------------------------------------

#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct OcspRequest {
    tbs_request: TbsRequest,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    optional_signature: Option<Any>,
}

#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct TbsRequest {
    #[asn1(
        context_specific = "0",
        tag_mode = "EXPLICIT",
        default = "Default::default"
    )]
    version: Version,
    #[asn1(context_specific = "1", tag_mode = "EXPLICIT", optional = "true")]
    requestor_name: Option<Any>,
    request_list: Vec<Request>,
    #[asn1(context_specific = "2", tag_mode = "EXPLICIT", optional = "true")]
    request_extensions: Option<Extensions>,
}

#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct Request {
    req_cert: CertId,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    single_request_extensions: Option<Extensions>,
}

/// Which certificate a request is about: hashes of its issuer's name and key, and its serial.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct CertId {
    hash_algorithm: AlgorithmIdentifierOwned,
    issuer_name_hash: OctetString,
    issuer_key_hash: OctetString,
    serial_number: Int,
}

impl CertId {
    /// The serial asked about, in Sigil's form (the DER integer's bytes as hex).
    pub fn serial(&self) -> Option<Serial> {
        Serial::from_bytes(self.serial_number.as_bytes()).ok()
    }
}

// ---- RFC 6960 4.2.1: the response -------------------------------------------------------

/// `OCSPResponseStatus`.
#[derive(Clone, Copy, Debug, Eq, PartialEq, Enumerated)]
#[repr(u8)]
pub enum ResponseStatus {
    Successful = 0,
    MalformedRequest = 1,
    InternalError = 2,
    TryLater = 3,
    SigRequired = 5,
    Unauthorized = 6,
}

#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct OcspResponse {
    response_status: ResponseStatus,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    response_bytes: Option<ResponseBytes>,
}

#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct ResponseBytes {
    response_type: ObjectIdentifier,
    response: OctetString,
}

#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct BasicOcspResponse {
    tbs_response_data: ResponseData,
    signature_algorithm: AlgorithmIdentifierOwned,
    signature: BitString,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    certs: Option<Vec<Any>>,
}

#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct ResponseData {
    #[asn1(
        context_specific = "0",
        tag_mode = "EXPLICIT",
        default = "Default::default"
    )]
    version: Version,
    responder_id: ResponderId,
    produced_at: GeneralizedTime,
    responses: Vec<SingleResponse>,
    #[asn1(context_specific = "1", tag_mode = "EXPLICIT", optional = "true")]
    response_extensions: Option<Extensions>,
}

#[derive(Clone, Debug, Eq, PartialEq, Choice)]
enum ResponderId {
    #[asn1(context_specific = "1", tag_mode = "EXPLICIT", constructed = "true")]
    ByName(Any),
    /// SHA-1 of the responder's public key (the BIT STRING's value).
    #[asn1(context_specific = "2", tag_mode = "EXPLICIT", constructed = "true")]
    ByKey(OctetString),
}

#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct SingleResponse {
    cert_id: CertId,
    cert_status: CertStatusDer,
    this_update: GeneralizedTime,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    next_update: Option<GeneralizedTime>,
    #[asn1(context_specific = "1", tag_mode = "EXPLICIT", optional = "true")]
    single_extensions: Option<Extensions>,
}

#[derive(Clone, Debug, Eq, PartialEq, Choice)]
enum CertStatusDer {
    #[asn1(context_specific = "0", tag_mode = "IMPLICIT")]
    Good(Null),
    #[asn1(context_specific = "1", tag_mode = "IMPLICIT", constructed = "true")]
    Revoked(RevokedInfo),
    #[asn1(context_specific = "2", tag_mode = "IMPLICIT")]
    Unknown(Null),
}

#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
struct RevokedInfo {
    revocation_time: GeneralizedTime,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    revocation_reason: Option<CrlReason>,
}

// ---- Sigil's side --------------------------------------------------------------------------

/// Why a request could not be answered; each maps to an `OCSPResponseStatus`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OcspError {
    #[error("malformed OCSP request: {0}")]
    Malformed(String),
}

impl OcspError {
    pub fn status(&self) -> ResponseStatus {
        match self {
            OcspError::Malformed(_) => ResponseStatus::MalformedRequest,
        }
    }
}

/// A parsed request: the certificates asked about and the nonce to echo.
#[derive(Debug, Clone)]
pub struct ParsedRequest {
    pub certs: Vec<CertId>,
    nonce: Option<Extension>,
}

impl ParsedRequest {
    pub fn has_nonce(&self) -> bool {
        self.nonce.is_some()
    }
}

/// What the responder says about one certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SerialStatus {
    Good,
    Revoked {
        at: OffsetDateTime,
        reason: RevocationReason,
    },
    /// Not a certificate this CA issued (or an issuer it is not).
    Unknown,
}

/// Parse a DER `OCSPRequest`. Unsigned requests only are needed (RFC 6960 4.1.2); a signature,
/// if present, is ignored, as is a requestor name.
pub fn parse_request(der: &[u8]) -> Result<ParsedRequest, OcspError> {
    if der.len() > MAX_OCSP_REQUEST_LEN {
        return Err(OcspError::Malformed(format!(
            "{} bytes; at most {MAX_OCSP_REQUEST_LEN}",
            der.len()
        )));
    }
    let req = OcspRequest::from_der(der).map_err(|e| OcspError::Malformed(e.to_string()))?;
    let tbs = req.tbs_request;
    if tbs.version != Version::V1 {
        return Err(OcspError::Malformed("only version 1 requests exist".into()));
    }
    if tbs.request_list.is_empty() || tbs.request_list.len() > MAX_CERTS_PER_REQUEST {
        return Err(OcspError::Malformed(format!(
            "asks about {} certificates; 1 to {MAX_CERTS_PER_REQUEST} allowed",
            tbs.request_list.len()
        )));
    }
    let nonce = tbs
        .request_extensions
        .unwrap_or_default()
        .into_iter()
        .find(|e| e.extn_id == ID_PKIX_OCSP_NONCE);
    if let Some(n) = &nonce {
        // RFC 8954: the nonce is an OCTET STRING of 1 to 32 octets inside extnValue.
        let inner = OctetString::from_der(n.extn_value.as_bytes())
            .map_err(|e| OcspError::Malformed(format!("nonce: {e}")))?;
        if inner.as_bytes().is_empty() || inner.as_bytes().len() > 32 {
            return Err(OcspError::Malformed(format!(
                "nonce of {} octets; 1 to 32 allowed (RFC 8954)",
                inner.as_bytes().len()
            )));
        }
    }
    Ok(ParsedRequest {
        certs: tbs.request_list.into_iter().map(|r| r.req_cert).collect(),
        nonce,
    })
}

/// An `OCSPResponse` carrying only an error status (no signature, as RFC 6960 prescribes).
pub fn error_response(status: ResponseStatus) -> Vec<u8> {
    OcspResponse {
        response_status: status,
        response_bytes: None,
    }
    .to_der()
    // Two fixed small values always encode; an empty body would still be refused by clients.
    .unwrap_or_default()
}

/// Who signs the responses.
enum Signer {
    /// The issuing CA's own key (RFC 6960 4.2.2.2, first case).
    IssuingCa,
    /// A delegated responder certificate issued by the CA, sent along in every response.
    Delegated {
        key: rcgen::KeyPair,
        cert: Any,
        not_after: OffsetDateTime,
    },
}

/// Answers OCSP requests about the issuing CA's certificates.
pub struct OcspResponder {
    ca: Arc<IssuingCa>,
    /// (hash algorithm, issuer name hash, issuer key hash) for every algorithm accepted.
    issuer_ids: Vec<(ObjectIdentifier, Vec<u8>, Vec<u8>)>,
    signer: Signer,
    /// ResponderID byKey: SHA-1 of the signing key's BIT STRING value.
    responder_key_sha1: Vec<u8>,
    signature_algorithm: AlgorithmIdentifierOwned,
}

fn digest(alg: &'static aws_lc_rs::digest::Algorithm, data: &[u8]) -> Vec<u8> {
    aws_lc_rs::digest::digest(alg, data).as_ref().to_vec()
}

/// The AlgorithmIdentifier of signatures made with `key`.
fn signature_algorithm_of(key: &rcgen::KeyPair) -> Result<AlgorithmIdentifierOwned, CaError> {
    let algorithm = key.algorithm();
    let (oid, null_params) = if algorithm == &rcgen::PKCS_ECDSA_P256_SHA256 {
        (ECDSA_WITH_SHA256, false)
    } else if algorithm == &rcgen::PKCS_ECDSA_P384_SHA384 {
        (ECDSA_WITH_SHA384, false)
    } else if algorithm == &rcgen::PKCS_ED25519 {
        (ED25519, false)
    } else if algorithm == &rcgen::PKCS_RSA_SHA256 {
        (SHA256_WITH_RSA, true)
    } else {
        return Err(CaError::KeyFormat(
            "the key's signature algorithm cannot sign OCSP responses".into(),
        ));
    };
    let parameters = if null_params {
        Some(Any::encode_from(&Null).map_err(|e| CaError::Crypto(e.to_string()))?)
    } else {
        None
    };
    Ok(AlgorithmIdentifierOwned { oid, parameters })
}

/// The subject public key (the BIT STRING's value) of a DER certificate.
fn public_key_bits(cert_der: &[u8]) -> Result<Vec<u8>, CaError> {
    let (_, cert) =
        X509Certificate::from_der(cert_der).map_err(|e| CaError::CaCertificate(e.to_string()))?;
    Ok(cert.public_key().subject_public_key.data.to_vec())
}

impl OcspResponder {
    /// A responder that signs with the issuing CA's key.
    pub fn new(ca: Arc<IssuingCa>) -> Result<Self, CaError> {
        let signature_algorithm = signature_algorithm_of(ca.issuer.key())?;
        let key = public_key_bits(ca.issuing_cert_der())?;
        Self::build(ca, Signer::IssuingCa, &key, signature_algorithm)
    }

    /// A responder with a fresh key (the CA's algorithm) certified by the issuing CA as a
    /// delegated OCSP signer for `validity`. The key lives only in this value.
    pub fn delegated(
        ca: Arc<IssuingCa>,
        validity: time::Duration,
        now: OffsetDateTime,
    ) -> Result<Self, CaError> {
        let key = ca.algorithm().generate()?;
        let (cert_der, not_after) = ca.issue_ocsp_responder_certificate(&key, validity, now)?;
        let signature_algorithm = signature_algorithm_of(&key)?;
        let key_bits = public_key_bits(&cert_der)?;
        let cert = Any::from_der(&cert_der).map_err(|e| CaError::Crypto(e.to_string()))?;
        Self::build(
            ca,
            Signer::Delegated {
                key,
                cert,
                not_after,
            },
            &key_bits,
            signature_algorithm,
        )
    }

    fn build(
        ca: Arc<IssuingCa>,
        signer: Signer,
        signing_key_bits: &[u8],
        signature_algorithm: AlgorithmIdentifierOwned,
    ) -> Result<Self, CaError> {
        let (_, cert) = X509Certificate::from_der(ca.issuing_cert_der())
            .map_err(|e| CaError::CaCertificate(e.to_string()))?;
        let name = cert.tbs_certificate.subject.as_raw().to_vec();
        let key = cert.public_key().subject_public_key.data.to_vec();
        use aws_lc_rs::digest::{SHA1_FOR_LEGACY_USE_ONLY, SHA256, SHA384, SHA512};
        let issuer_ids = [
            (ID_SHA1, &SHA1_FOR_LEGACY_USE_ONLY),
            (ID_SHA256, &SHA256),
            (ID_SHA384, &SHA384),
            (ID_SHA512, &SHA512),
        ]
        .into_iter()
        .map(|(oid, alg)| (oid, digest(alg, &name), digest(alg, &key)))
        .collect();
        Ok(Self {
            responder_key_sha1: digest(&SHA1_FOR_LEGACY_USE_ONLY, signing_key_bits),
            ca,
            issuer_ids,
            signer,
            signature_algorithm,
        })
    }

    /// When the delegated responder certificate expires (`None` when the CA signs itself).
    pub fn signer_not_after(&self) -> Option<OffsetDateTime> {
        match &self.signer {
            Signer::IssuingCa => None,
            Signer::Delegated { not_after, .. } => Some(*not_after),
        }
    }

    /// Whether `id` names this CA as the issuer (under any hash algorithm it knows).
    pub fn is_issuer_of(&self, id: &CertId) -> bool {
        self.issuer_ids.iter().any(|(oid, name, key)| {
            id.hash_algorithm.oid == *oid
                && id.issuer_name_hash.as_bytes() == name.as_slice()
                && id.issuer_key_hash.as_bytes() == key.as_slice()
        })
    }

    /// A signed, successful response with one `SingleResponse` per requested certificate, in
    /// request order, echoing the request's nonce.
    pub fn respond(
        &self,
        request: &ParsedRequest,
        statuses: &[SerialStatus],
        now: OffsetDateTime,
        validity: time::Duration,
    ) -> Result<Vec<u8>, CaError> {
        let enc = |e: der::Error| CaError::Crypto(format!("OCSP encoding: {e}"));
        let time = |t: OffsetDateTime| -> Result<GeneralizedTime, CaError> {
            GeneralizedTime::from_unix_duration(StdDuration::from_secs(
                u64::try_from(t.unix_timestamp()).unwrap_or(0),
            ))
            .map_err(enc)
        };
        let this_update = time(now)?;
        let next_update = time(now + validity)?;
        let responses = request
            .certs
            .iter()
            .zip(statuses)
            .map(|(id, status)| {
                let cert_status = match status {
                    SerialStatus::Good => CertStatusDer::Good(Null),
                    SerialStatus::Unknown => CertStatusDer::Unknown(Null),
                    SerialStatus::Revoked { at, reason } => CertStatusDer::Revoked(RevokedInfo {
                        revocation_time: time(*at)?,
                        revocation_reason: crl_reason(*reason),
                    }),
                };
                Ok(SingleResponse {
                    cert_id: id.clone(),
                    cert_status,
                    this_update,
                    next_update: Some(next_update),
                    single_extensions: None,
                })
            })
            .collect::<Result<Vec<_>, CaError>>()?;
        let tbs = ResponseData {
            version: Version::V1,
            responder_id: ResponderId::ByKey(
                OctetString::new(self.responder_key_sha1.clone()).map_err(enc)?,
            ),
            produced_at: this_update,
            responses,
            response_extensions: request.nonce.clone().map(|n| vec![n]),
        };
        let tbs_der = tbs.to_der().map_err(enc)?;
        let (signature, certs) = match &self.signer {
            Signer::IssuingCa => (self.ca.issuer.key().sign(&tbs_der)?, None),
            Signer::Delegated { key, cert, .. } => (key.sign(&tbs_der)?, Some(vec![cert.clone()])),
        };
        let basic = BasicOcspResponse {
            tbs_response_data: tbs,
            signature_algorithm: self.signature_algorithm.clone(),
            signature: BitString::from_bytes(&signature).map_err(enc)?,
            certs,
        };
        OcspResponse {
            response_status: ResponseStatus::Successful,
            response_bytes: Some(ResponseBytes {
                response_type: ID_PKIX_OCSP_BASIC,
                response: OctetString::new(basic.to_der().map_err(enc)?).map_err(enc)?,
            }),
        }
        .to_der()
        .map_err(enc)
    }
}

/// RFC 5280 5.3.1: an unspecified reason is better left out.
fn crl_reason(reason: RevocationReason) -> Option<CrlReason> {
    Some(match reason {
        RevocationReason::Unspecified => return None,
        RevocationReason::KeyCompromise => CrlReason::KeyCompromise,
        RevocationReason::AffiliationChanged => CrlReason::AffiliationChanged,
        RevocationReason::Superseded => CrlReason::Superseded,
        RevocationReason::CessationOfOperation => CrlReason::CessationOfOperation,
        RevocationReason::PrivilegeWithdrawn => CrlReason::PrivilegeWithdrawn,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CaHierarchy, CaNames, KeyAlgorithm};
    use proptest::prelude::*;

    fn responder(alg: KeyAlgorithm) -> OcspResponder {
        let now = OffsetDateTime::now_utc();
        let h = CaHierarchy::generate(alg, &CaNames::default(), now).unwrap();
        let ca = IssuingCa::load(&h.issuing_cert_pem, h.issuing_key, &h.root_cert_pem).unwrap();
        OcspResponder::new(Arc::new(ca)).unwrap()
    }

    fn delegated(alg: KeyAlgorithm) -> OcspResponder {
        let r = responder(alg);
        OcspResponder::delegated(
            r.ca.clone(),
            time::Duration::hours(24),
            OffsetDateTime::now_utc(),
        )
        .unwrap()
    }

    fn request_for(r: &OcspResponder, serial: &[u8], nonce: Option<&[u8]>) -> Vec<u8> {
        let (_, name, key) = &r.issuer_ids[0];
        let id = CertId {
            hash_algorithm: AlgorithmIdentifierOwned {
                oid: ID_SHA1,
                parameters: Some(Any::encode_from(&Null).unwrap()),
            },
            issuer_name_hash: OctetString::new(name.clone()).unwrap(),
            issuer_key_hash: OctetString::new(key.clone()).unwrap(),
            serial_number: Int::new(serial).unwrap(),
        };
        let extensions = nonce.map(|n| {
            vec![Extension {
                extn_id: ID_PKIX_OCSP_NONCE,
                critical: false,
                extn_value: OctetString::new(OctetString::new(n).unwrap().to_der().unwrap())
                    .unwrap(),
            }]
        });
        OcspRequest {
            tbs_request: TbsRequest {
                version: Version::V1,
                requestor_name: None,
                request_list: vec![Request {
                    req_cert: id,
                    single_request_extensions: None,
                }],
                request_extensions: extensions,
            },
            optional_signature: None,
        }
        .to_der()
        .unwrap()
    }

    #[test]
    fn a_response_echoes_the_request_and_its_nonce_and_verifies() {
        for alg in [
            KeyAlgorithm::EcdsaP256,
            KeyAlgorithm::EcdsaP384,
            KeyAlgorithm::Ed25519,
        ] {
            for r in [responder(alg), delegated(alg)] {
                let req = parse_request(&request_for(&r, &[0x01, 0x02], Some(b"0123456789abcdef")))
                    .unwrap();
                assert!(r.is_issuer_of(&req.certs[0]));
                assert_eq!(req.certs[0].serial().unwrap().as_str(), "0102");
                let now = OffsetDateTime::now_utc();
                let der = r
                    .respond(
                        &req,
                        &[SerialStatus::Revoked {
                            at: now,
                            reason: RevocationReason::KeyCompromise,
                        }],
                        now,
                        time::Duration::hours(1),
                    )
                    .unwrap();
                let resp = OcspResponse::from_der(&der).unwrap();
                assert_eq!(resp.response_status, ResponseStatus::Successful);
                let bytes = resp.response_bytes.unwrap();
                assert_eq!(bytes.response_type, ID_PKIX_OCSP_BASIC);
                let basic = BasicOcspResponse::from_der(bytes.response.as_bytes()).unwrap();
                let data = &basic.tbs_response_data;
                assert_eq!(data.responses[0].cert_id, req.certs[0]);
                assert!(matches!(
                    &data.responses[0].cert_status,
                    CertStatusDer::Revoked(RevokedInfo {
                        revocation_reason: Some(CrlReason::KeyCompromise),
                        ..
                    })
                ));
                assert_eq!(
                    data.response_extensions.as_ref().unwrap()[0].extn_id,
                    ID_PKIX_OCSP_NONCE
                );
                // The signature verifies under the signer's key: the delegated certificate sent
                // along, which the issuing CA signed for OCSP signing only, or the CA's own.
                let signer_der = match &basic.certs {
                    Some(certs) => {
                        assert!(r.signer_not_after().is_some());
                        certs[0].to_der().unwrap()
                    }
                    None => r.ca.issuing_cert_der().to_vec(),
                };
                let (_, cert) = X509Certificate::from_der(&signer_der).unwrap();
                if basic.certs.is_some() {
                    let eku = cert.extended_key_usage().unwrap().unwrap().value;
                    assert!(eku.ocsp_signing && !eku.client_auth && !eku.server_auth);
                    assert!(
                        cert.extensions()
                            .iter()
                            .any(|e| e.oid.to_id_string() == "1.3.6.1.5.5.7.48.1.5")
                    );
                    let (_, issuer) = X509Certificate::from_der(r.ca.issuing_cert_der()).unwrap();
                    cert.verify_signature(Some(issuer.public_key())).unwrap();
                    assert_eq!(cert.issuer(), issuer.subject());
                }
                let key = cert.public_key().subject_public_key.data.to_vec();
                let verify_alg: &dyn aws_lc_rs::signature::VerificationAlgorithm = match alg {
                    KeyAlgorithm::EcdsaP256 => &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1,
                    KeyAlgorithm::EcdsaP384 => &aws_lc_rs::signature::ECDSA_P384_SHA384_ASN1,
                    _ => &aws_lc_rs::signature::ED25519,
                };
                aws_lc_rs::signature::UnparsedPublicKey::new(verify_alg, key)
                    .verify(&data.to_der().unwrap(), basic.signature.as_bytes().unwrap())
                    .unwrap();
            }
        }
    }

    #[test]
    fn bad_requests_are_malformed_not_panics() {
        let r = responder(KeyAlgorithm::EcdsaP256);
        assert!(parse_request(b"").is_err());
        assert!(parse_request(&[0x30, 0x00]).is_err());
        assert!(parse_request(&vec![0u8; MAX_OCSP_REQUEST_LEN + 1]).is_err());
        let e = parse_request(&request_for(&r, &[1], Some(&[7u8; 33]))).unwrap_err();
        assert!(e.to_string().contains("nonce of 33 octets"), "{e}");
        assert_eq!(e.status(), ResponseStatus::MalformedRequest);
        // Error responses carry only the status.
        assert_eq!(
            error_response(ResponseStatus::MalformedRequest),
            [0x30, 0x03, 0x0a, 0x01, 0x01]
        );
    }

    proptest! {
        #[test]
        fn parsing_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = parse_request(&bytes);
        }

        #[test]
        fn mutated_requests_never_panic(pos in 0usize..200, byte in any::<u8>()) {
            let r = responder(KeyAlgorithm::EcdsaP256);
            let mut req = request_for(&r, &[0x42; 20], Some(b"nonce"));
            let i = pos % req.len();
            req[i] = byte;
            if let Ok(parsed) = parse_request(&req) {
                let statuses = vec![SerialStatus::Good; parsed.certs.len()];
                r.respond(&parsed, &statuses, OffsetDateTime::now_utc(), time::Duration::hours(1)).unwrap();
            }
        }
    }
}
