//! PKCS#10 certification requests: parse, verify proof of possession, enforce the key policy.
//!
//! Only the public key of a CSR is ever used. Subject, extensions and attributes the device asks
//! for are ignored: the CA decides the contents of every certificate it signs.

use aws_lc_rs::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;

use sigil_domain::Fingerprint;

use crate::{CaError, sha256};

/// Upper bound on the DER size of a CSR; an RSA-8192 CSR with a few attributes fits comfortably.
pub const MAX_CSR_DER_LEN: usize = 16 * 1024;

const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_RSA_ENCRYPTION: &str = "1.2.840.113549.1.1.1";
const OID_ED25519: &str = "1.3.101.112";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";
const OID_P521: &str = "1.3.132.0.35";

const MIN_RSA_BITS: usize = 2048;
const MAX_RSA_BITS: usize = 8192;

/// The kind and strength of a requested public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CsrKey {
    EcdsaP256,
    EcdsaP384,
    EcdsaP521,
    Ed25519,
    Rsa { bits: usize },
}

impl std::fmt::Display for CsrKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::EcdsaP256 => f.write_str("ECDSA P-256"),
            Self::EcdsaP384 => f.write_str("ECDSA P-384"),
            Self::EcdsaP521 => f.write_str("ECDSA P-521"),
            Self::Ed25519 => f.write_str("Ed25519"),
            Self::Rsa { bits } => write!(f, "RSA-{bits}"),
        }
    }
}

/// A CSR whose signature verified under its own public key and whose key meets the policy.
#[derive(Debug, Clone)]
pub struct ValidatedCsr {
    spki_der: Vec<u8>,
    key: CsrKey,
    spki_fingerprint: Fingerprint,
}

impl ValidatedCsr {
    /// Parse a PEM `CERTIFICATE REQUEST` (the `NEW CERTIFICATE REQUEST` label is accepted too).
    pub fn from_pem(text: &str) -> Result<Self, CaError> {
        if text.len() > MAX_CSR_DER_LEN * 2 {
            return Err(CaError::CsrTooLarge(text.len()));
        }
        let block = pem::parse(text).map_err(|e| CaError::CsrPem(e.to_string()))?;
        if !matches!(
            block.tag(),
            "CERTIFICATE REQUEST" | "NEW CERTIFICATE REQUEST"
        ) {
            return Err(CaError::CsrPem(format!(
                "expected a CERTIFICATE REQUEST block, found {}",
                block.tag()
            )));
        }
        Self::from_der(block.contents())
    }

    pub fn from_der(der: &[u8]) -> Result<Self, CaError> {
        if der.len() > MAX_CSR_DER_LEN {
            return Err(CaError::CsrTooLarge(der.len()));
        }
        let (rest, csr) =
            X509CertificationRequest::from_der(der).map_err(|e| CaError::CsrDer(e.to_string()))?;
        if !rest.is_empty() {
            return Err(CaError::CsrDer(format!(
                "{} trailing bytes after the request",
                rest.len()
            )));
        }
        let info = &csr.certification_request_info;
        let spki = &info.subject_pki;
        let key = within_policy(identify_key(spki)?)?;
        let sig_oid = csr.signature_algorithm.algorithm.to_id_string();
        let algorithm = verification_algorithm(&sig_oid, key)?;
        if csr.signature_value.unused_bits != 0 {
            return Err(CaError::CsrBadSignature);
        }
        UnparsedPublicKey::new(algorithm, spki.subject_public_key.data.as_ref())
            .verify(info.raw, csr.signature_value.data.as_ref())
            .map_err(|_| CaError::CsrBadSignature)?;
        Ok(Self {
            spki_der: spki.raw.to_vec(),
            key,
            spki_fingerprint: Fingerprint::from_digest(&sha256(spki.raw)),
        })
    }

    /// DER SubjectPublicKeyInfo of the requested key.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    pub fn key(&self) -> CsrKey {
        self.key
    }

    /// SHA-256 of the DER SubjectPublicKeyInfo: the identity of the key, used to refuse a key
    /// that is already bound to another device.
    pub fn spki_fingerprint(&self) -> &Fingerprint {
        &self.spki_fingerprint
    }
}

/// The key type of a certificate (DER), whatever its strength: for reporting on keys already
/// certified, where [`ValidatedCsr`] refuses weak ones before issuance.
pub fn certificate_key(der: &[u8]) -> Result<CsrKey, CaError> {
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der)
        .map_err(|e| CaError::UnsupportedKey(format!("unparseable certificate: {e}")))?;
    identify_key(cert.public_key())
}

/// The key policy: RSA between the minimum and maximum size (the other identified keys are all
/// approved).
fn within_policy(key: CsrKey) -> Result<CsrKey, CaError> {
    match key {
        CsrKey::Rsa { bits } if bits < MIN_RSA_BITS => Err(CaError::WeakKey(format!(
            "RSA-{bits} is below the minimum of {MIN_RSA_BITS} bits"
        ))),
        CsrKey::Rsa { bits } if bits > MAX_RSA_BITS => Err(CaError::UnsupportedKey(format!(
            "RSA-{bits} exceeds the maximum of {MAX_RSA_BITS} bits"
        ))),
        other => Ok(other),
    }
}

/// Which approved algorithm (and curve or size) a key is; other algorithms and curves are
/// refused.
fn identify_key(spki: &SubjectPublicKeyInfo<'_>) -> Result<CsrKey, CaError> {
    let alg = spki.algorithm.algorithm.to_id_string();
    match alg.as_str() {
        OID_EC_PUBLIC_KEY => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|oid| oid.to_id_string())
                .ok_or_else(|| CaError::UnsupportedKey("EC key without a named curve".into()))?;
            match curve.as_str() {
                OID_P256 => Ok(CsrKey::EcdsaP256),
                OID_P384 => Ok(CsrKey::EcdsaP384),
                OID_P521 => Ok(CsrKey::EcdsaP521),
                other => Err(CaError::UnsupportedKey(format!(
                    "EC curve {other} is not approved (use P-256, P-384 or P-521)"
                ))),
            }
        }
        OID_ED25519 => Ok(CsrKey::Ed25519),
        OID_RSA_ENCRYPTION => Ok(CsrKey::Rsa {
            bits: rsa_modulus_bits(spki)?,
        }),
        other => Err(CaError::UnsupportedKey(format!(
            "public key algorithm {other}"
        ))),
    }
}

fn rsa_modulus_bits(spki: &SubjectPublicKeyInfo<'_>) -> Result<usize, CaError> {
    let parsed = spki
        .parsed()
        .map_err(|e| CaError::UnsupportedKey(format!("malformed RSA key: {e}")))?;
    let x509_parser::public_key::PublicKey::RSA(rsa) = parsed else {
        return Err(CaError::UnsupportedKey("malformed RSA key".into()));
    };
    // Count significant bits ourselves: the DER INTEGER may carry a leading zero byte.
    let modulus = rsa.modulus;
    let first = modulus
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(modulus.len());
    let significant = &modulus[first..];
    Ok(match significant.first() {
        None => 0,
        Some(top) => (significant.len() - 1) * 8 + (8 - top.leading_zeros() as usize),
    })
}

fn verification_algorithm(
    sig_oid: &str,
    key: CsrKey,
) -> Result<&'static dyn VerificationAlgorithm, CaError> {
    use CsrKey as K;
    let alg: &'static dyn VerificationAlgorithm = match (sig_oid, key) {
        ("1.2.840.10045.4.3.2", K::EcdsaP256) => &signature::ECDSA_P256_SHA256_ASN1,
        ("1.2.840.10045.4.3.3", K::EcdsaP256) => &signature::ECDSA_P256_SHA384_ASN1,
        ("1.2.840.10045.4.3.2", K::EcdsaP384) => &signature::ECDSA_P384_SHA256_ASN1,
        ("1.2.840.10045.4.3.3", K::EcdsaP384) => &signature::ECDSA_P384_SHA384_ASN1,
        ("1.2.840.10045.4.3.4", K::EcdsaP521) => &signature::ECDSA_P521_SHA512_ASN1,
        ("1.2.840.10045.4.3.3", K::EcdsaP521) => &signature::ECDSA_P521_SHA384_ASN1,
        ("1.3.101.112", K::Ed25519) => &signature::ED25519,
        ("1.2.840.113549.1.1.11", K::Rsa { .. }) => &signature::RSA_PKCS1_2048_8192_SHA256,
        ("1.2.840.113549.1.1.12", K::Rsa { .. }) => &signature::RSA_PKCS1_2048_8192_SHA384,
        ("1.2.840.113549.1.1.13", K::Rsa { .. }) => &signature::RSA_PKCS1_2048_8192_SHA512,
        (oid, key) => {
            let name = match oid {
                "1.2.840.113549.1.1.5" => {
                    "sha1WithRSAEncryption (SHA-1 is not accepted)".to_owned()
                }
                "1.2.840.10045.4.1" => "ecdsa-with-SHA1 (SHA-1 is not accepted)".to_owned(),
                other => format!("{other} for a {key} key"),
            };
            return Err(CaError::CsrSignatureAlgorithm(name));
        }
    };
    Ok(alg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rcgen::{CertificateParams, KeyPair, PublicKeyData};

    fn csr_for(key: &KeyPair) -> Vec<u8> {
        let params = CertificateParams::new(vec!["ignored.example".to_owned()])
            .unwrap_or_else(|e| panic!("{e}"));
        params
            .serialize_request(key)
            .unwrap_or_else(|e| panic!("{e}"))
            .der()
            .to_vec()
    }

    fn p256() -> KeyPair {
        KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn accepts_each_approved_key_type() {
        for (alg, expected) in [
            (&rcgen::PKCS_ECDSA_P256_SHA256, CsrKey::EcdsaP256),
            (&rcgen::PKCS_ECDSA_P384_SHA384, CsrKey::EcdsaP384),
            (&rcgen::PKCS_ED25519, CsrKey::Ed25519),
        ] {
            let key = KeyPair::generate_for(alg).unwrap_or_else(|e| panic!("{e}"));
            let csr = ValidatedCsr::from_der(&csr_for(&key)).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(csr.key(), expected);
            assert_eq!(csr.spki_der(), key.subject_public_key_info());
        }
        let rsa = KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
            .unwrap_or_else(|e| panic!("{e}"));
        let csr = ValidatedCsr::from_der(&csr_for(&rsa)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(csr.key(), CsrKey::Rsa { bits: 2048 });
    }

    #[test]
    fn rejects_a_flipped_signature_bit() {
        let mut der = csr_for(&p256());
        let last = der.len() - 1;
        der[last] ^= 0x01;
        assert!(matches!(
            ValidatedCsr::from_der(&der),
            Err(CaError::CsrBadSignature)
        ));
    }

    #[test]
    fn rejects_a_csr_signed_by_another_key() {
        // Splice key A's SPKI into a CSR body signed by key B: the classic failed proof of possession.
        let a = p256();
        let b = p256();
        let der = csr_for(&b);
        let spki_a = a.subject_public_key_info();
        let spki_b = b.subject_public_key_info();
        let pos = der
            .windows(spki_b.len())
            .position(|w| w == spki_b.as_slice())
            .unwrap_or_else(|| panic!("spki not found"));
        let mut forged = der.clone();
        forged[pos..pos + spki_a.len()].copy_from_slice(&spki_a);
        assert!(matches!(
            ValidatedCsr::from_der(&forged),
            Err(CaError::CsrBadSignature)
        ));
    }

    #[test]
    fn rejects_trailing_garbage_and_wrong_pem_label() {
        let mut der = csr_for(&p256());
        der.push(0);
        assert!(matches!(
            ValidatedCsr::from_der(&der),
            Err(CaError::CsrDer(_))
        ));
        let key = p256();
        assert!(matches!(
            ValidatedCsr::from_pem(&key.public_key_pem()),
            Err(CaError::CsrPem(_))
        ));
        assert!(matches!(
            ValidatedCsr::from_pem("not pem at all"),
            Err(CaError::CsrPem(_))
        ));
    }

    #[test]
    fn rejects_oversized_input() {
        let big = vec![0x30u8; MAX_CSR_DER_LEN + 1];
        assert!(matches!(
            ValidatedCsr::from_der(&big),
            Err(CaError::CsrTooLarge(_))
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Arbitrary bytes never panic the parser.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = ValidatedCsr::from_der(&bytes);
        }

        /// A valid CSR with any single byte changed is either rejected or (if the change hit a
        /// part outside the signed data that the parser tolerates) still names the same key.
        /// It never yields a different key: a mutation cannot smuggle in an unproven key.
        #[test]
        fn mutated_csr_never_yields_an_unproven_key(index in any::<prop::sample::Index>(), byte in any::<u8>()) {
            let key = p256();
            let der = csr_for(&key);
            let mut mutated = der.clone();
            let i = index.index(mutated.len());
            prop_assume!(mutated[i] != byte);
            mutated[i] = byte;
            if let Ok(csr) = ValidatedCsr::from_der(&mutated) {
                let expected = key.subject_public_key_info();
                prop_assert_eq!(csr.spki_der(), expected.as_slice());
            }
        }

        #[test]
        fn arbitrary_text_never_panics_pem_path(text in ".{0,400}") {
            let _ = ValidatedCsr::from_pem(&text);
            let wrapped = format!("-----BEGIN CERTIFICATE REQUEST-----\n{text}\n-----END CERTIFICATE REQUEST-----\n");
            let _ = ValidatedCsr::from_pem(&wrapped);
        }
    }
}
