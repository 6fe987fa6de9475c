//! The two EST (RFC 7030) payloads that are not certificates themselves: the "certs-only"
//! PKCS#7 / CMS SignedData that carries certificates (RFC 7030 4.1.3, 4.2.3; RFC 5652 5.1) and
//! the CSR attributes a device should use (RFC 7030 4.5.2).
//!
//! Hand-written on der 0.8 because the `cms` crate that would build SignedData is a release
//! candidate (0.3.0-rc); a certs-only SignedData is five fixed fields around the certificates.

use der::asn1::{ObjectIdentifier, SetOfVec};
use der::{Any, Decode, Encode, Sequence};

use crate::{CaError, KeyAlgorithm};

const ID_SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
const ID_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.1");
const ID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const SECP256R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const ECDSA_WITH_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
const ECDSA_WITH_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
const ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");

#[derive(Sequence)]
struct ContentInfo {
    content_type: ObjectIdentifier,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT")]
    content: SignedData,
}

#[derive(Sequence)]
struct SignedData {
    version: u8,
    digest_algorithms: SetOfVec<Any>,
    encap_content_info: EncapsulatedContentInfo,
    #[asn1(context_specific = "0", tag_mode = "IMPLICIT", constructed = "true")]
    certificates: SetOfVec<Any>,
    signer_infos: SetOfVec<Any>,
}

#[derive(Sequence)]
struct EncapsulatedContentInfo {
    e_content_type: ObjectIdentifier,
}

fn enc(e: der::Error) -> CaError {
    CaError::Crypto(format!("EST encoding: {e}"))
}

/// A degenerate ("certs-only") SignedData carrying `certs_der`, DER.
pub fn certs_only(certs_der: &[&[u8]]) -> Result<Vec<u8>, CaError> {
    let mut certificates = SetOfVec::new();
    for der in certs_der {
        certificates
            .insert(Any::from_der(der).map_err(enc)?)
            .map_err(enc)?;
    }
    ContentInfo {
        content_type: ID_SIGNED_DATA,
        content: SignedData {
            version: 1,
            digest_algorithms: SetOfVec::new(),
            encap_content_info: EncapsulatedContentInfo {
                e_content_type: ID_DATA,
            },
            certificates,
            signer_infos: SetOfVec::new(),
        },
    }
    .to_der()
    .map_err(enc)
}

/// The certificates (DER) in a certs-only SignedData, as `certs_only` makes it.
pub fn parse_certs_only(der: &[u8]) -> Result<Vec<Vec<u8>>, CaError> {
    let bad = |e: der::Error| CaError::Crypto(format!("not a certs-only PKCS#7: {e}"));
    let info = ContentInfo::from_der(der).map_err(bad)?;
    if info.content_type != ID_SIGNED_DATA {
        return Err(CaError::Crypto(
            "not a certs-only PKCS#7: content is not SignedData".into(),
        ));
    }
    info.content
        .certificates
        .iter()
        .map(|c| c.to_der().map_err(bad))
        .collect()
}

#[derive(Sequence)]
struct Attribute {
    attr_type: ObjectIdentifier,
    values: SetOfVec<ObjectIdentifier>,
}

/// `CsrAttrs` for devices: the signature algorithm to sign the CSR with and the key type (and
/// curve) to generate. P-256 unless the fleet is configured otherwise.
pub fn csr_attributes(algorithm: KeyAlgorithm) -> Result<Vec<u8>, CaError> {
    let (sig, key): (ObjectIdentifier, Option<Attribute>) = match algorithm {
        KeyAlgorithm::EcdsaP384 => (ECDSA_WITH_SHA384, Some(ec_key(SECP384R1)?)),
        KeyAlgorithm::Ed25519 => (ED25519, None),
        _ => (ECDSA_WITH_SHA256, Some(ec_key(SECP256R1)?)),
    };
    let mut items: Vec<Any> = vec![Any::encode_from(&sig).map_err(enc)?];
    if let Some(attr) = key {
        items.push(Any::encode_from(&attr).map_err(enc)?);
    }
    items.to_der().map_err(enc)
}

fn ec_key(curve: ObjectIdentifier) -> Result<Attribute, CaError> {
    let mut values = SetOfVec::new();
    values.insert(curve).map_err(enc)?;
    Ok(Attribute {
        attr_type: ID_EC_PUBLIC_KEY,
        values,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certs_only_holds_the_certificates() {
        let a = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let c1 = rcgen::CertificateParams::new(vec!["a".into()])
            .unwrap()
            .self_signed(&a)
            .unwrap();
        let c2 = rcgen::CertificateParams::new(vec!["b".into()])
            .unwrap()
            .self_signed(&a)
            .unwrap();
        let p7 = certs_only(&[c1.der(), c2.der()]).unwrap();
        // Starts with SEQUENCE { OID signedData, [0] { SEQUENCE { INTEGER 1, SET {} ...
        assert_eq!(p7[0], 0x30);
        let text = format!("{p7:02x?}");
        assert!(
            text.contains("2a, 86, 48, 86, f7, 0d, 01, 07, 02"),
            "signedData OID"
        );
        for c in [c1.der(), c2.der()] {
            assert!(p7.windows(c.len()).any(|w| w == c.as_ref()));
        }
        assert!(certs_only(&[b"not der"]).is_err());
        let mut back = parse_certs_only(&p7).unwrap();
        back.sort();
        let mut want = vec![c1.der().to_vec(), c2.der().to_vec()];
        want.sort();
        assert_eq!(back, want);
    }

    proptest::proptest! {
        #[test]
        fn parsing_arbitrary_or_mutated_pkcs7_never_panics(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
            pos in 0usize..400,
            byte in proptest::prelude::any::<u8>(),
        ) {
            let _ = parse_certs_only(&bytes);
            let a = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
            let c = rcgen::CertificateParams::new(vec!["a".into()]).unwrap().self_signed(&a).unwrap();
            let mut p7 = certs_only(&[c.der()]).unwrap();
            let i = pos % p7.len();
            p7[i] = byte;
            let _ = parse_certs_only(&p7);
        }
    }

    #[test]
    fn csr_attributes_name_curve_and_signature() {
        let der = csr_attributes(KeyAlgorithm::EcdsaP256).unwrap();
        let items: Vec<Any> = Vec::from_der(&der).unwrap();
        assert_eq!(items.len(), 2);
        assert_eq!(
            items[0].decode_as::<ObjectIdentifier>().unwrap(),
            ECDSA_WITH_SHA256
        );
        let der = csr_attributes(KeyAlgorithm::Ed25519).unwrap();
        let items: Vec<Any> = Vec::from_der(&der).unwrap();
        assert_eq!(items.len(), 1);
    }
}
