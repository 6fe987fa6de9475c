//! Manufacturer bootstrap identities (IEEE 802.1AR IDevID style): the CA certificates an operator
//! trusts for a product, and what a bootstrap certificate says about the device holding it.
//!
//! Sigil does not issue these: a device maker installs them at the factory. Sigil only decides
//! whether one may stand in for an enrolment token, so everything here is read-only parsing and
//! signature checking.

use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};

use sigil_domain::Fingerprint;

use crate::{CaError, sha256};

/// Largest manufacturer CA certificate accepted.
pub const MAX_MANUFACTURER_CA_LEN: usize = 16 * 1024;

/// A manufacturer CA certificate, checked to be usable as a trust anchor for bootstrap
/// certificates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManufacturerCa {
    pub der: Vec<u8>,
    /// RFC 4514 text of the subject, for people.
    pub subject: String,
    pub sha256: Fingerprint,
    pub not_after: OffsetDateTime,
}

impl ManufacturerCa {
    /// Parse one PEM certificate and check it is a CA (basicConstraints cA, and keyCertSign if
    /// keyUsage is present) that has not expired at `now`.
    pub fn from_pem(text: &str, now: OffsetDateTime) -> Result<Self, CaError> {
        let bad = |why: String| CaError::ManufacturerCa(why);
        if text.len() > MAX_MANUFACTURER_CA_LEN {
            return Err(bad(format!(
                "{} bytes; at most {MAX_MANUFACTURER_CA_LEN}",
                text.len()
            )));
        }
        let blocks = pem::parse_many(text).map_err(|e| bad(format!("not PEM: {e}")))?;
        let [block] = blocks.as_slice() else {
            return Err(bad(format!(
                "expected exactly one certificate, found {} PEM blocks",
                blocks.len()
            )));
        };
        if block.tag() != "CERTIFICATE" {
            return Err(bad(format!("expected CERTIFICATE, found {}", block.tag())));
        }
        let der = block.contents().to_vec();
        let (rest, cert) = X509Certificate::from_der(&der)
            .map_err(|e| bad(format!("not an X.509 certificate: {e}")))?;
        if !rest.is_empty() {
            return Err(bad("trailing bytes after the certificate".into()));
        }
        let is_ca = cert
            .basic_constraints()
            .ok()
            .flatten()
            .is_some_and(|bc| bc.value.ca);
        if !is_ca {
            return Err(bad(
                "not a CA certificate (basicConstraints cA is not set)".into()
            ));
        }
        if let Ok(Some(ku)) = cert.key_usage()
            && !ku.value.key_cert_sign()
        {
            return Err(bad("its keyUsage does not allow keyCertSign".into()));
        }
        let not_after = cert.validity().not_after.to_datetime();
        if not_after <= now {
            return Err(bad(format!("it expired at {not_after}")));
        }
        Ok(Self {
            subject: cert.subject().to_string(),
            sha256: Fingerprint::from_digest(&sha256(&der)),
            not_after,
            der,
        })
    }
}

/// What a bootstrap certificate says about its device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootstrapCertificate {
    /// Serial of the bootstrap certificate itself (hex), for the audit log.
    pub serial: String,
    pub subject: String,
    /// Values that may name the device: the subject's serialNumber attributes (802.1AR puts the
    /// device serial there) and its common names.
    pub device_names: Vec<String>,
    /// SHA-256 of its SubjectPublicKeyInfo (hex): the manufacturer key, which must be unique
    /// to the device.
    pub spki_sha256: String,
}

impl BootstrapCertificate {
    pub fn parse(der: &[u8]) -> Result<Self, CaError> {
        let (_, cert) = X509Certificate::from_der(der)
            .map_err(|e| CaError::ManufacturerCa(format!("bootstrap certificate: {e}")))?;
        let subject = cert.subject();
        let mut device_names: Vec<String> = subject
            .iter_by_oid(&x509_parser::oid_registry::OID_X509_SERIALNUMBER)
            .chain(subject.iter_common_name())
            .filter_map(|a| a.as_str().ok())
            .map(str::to_owned)
            .filter(|s| !s.is_empty())
            .collect();
        device_names.dedup();
        Ok(Self {
            serial: hex::encode(cert.raw_serial()),
            subject: subject.to_string(),
            device_names,
            spki_sha256: hex::encode(crate::sha256(cert.public_key().raw)),
        })
    }
}

/// Whether `ca_der` directly issued `cert_der`: names chain and the signature verifies.
pub fn directly_issued_by(cert_der: &[u8], ca_der: &[u8]) -> bool {
    let (Ok((_, cert)), Ok((_, ca))) = (
        X509Certificate::from_der(cert_der),
        X509Certificate::from_der(ca_der),
    ) else {
        return false;
    };
    cert.issuer() == ca.subject() && cert.verify_signature(Some(ca.public_key())).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };

    fn now() -> OffsetDateTime {
        time::macros::datetime!(2026-11-27 12:00 UTC)
    }

    fn manufacturer(ca: bool) -> (CertificateParams, KeyPair, String) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, "Acme IDevID CA");
        params.is_ca = if ca {
            IsCa::Ca(BasicConstraints::Unconstrained)
        } else {
            IsCa::ExplicitNoCa
        };
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        params.not_before = now() - time::Duration::days(1);
        params.not_after = now() + time::Duration::days(3650);
        let pem = params.self_signed(&key).unwrap().pem();
        (params, key, pem)
    }

    #[test]
    fn a_manufacturer_ca_must_be_a_current_ca() {
        let (_, _, pem) = manufacturer(true);
        let ca = ManufacturerCa::from_pem(&pem, now()).unwrap();
        assert!(ca.subject.contains("Acme IDevID CA"));
        let (_, _, leaf) = manufacturer(false);
        let e = ManufacturerCa::from_pem(&leaf, now()).unwrap_err();
        assert!(e.to_string().contains("not a CA certificate"), "{e}");
        let e = ManufacturerCa::from_pem(&pem, now() + time::Duration::days(4000)).unwrap_err();
        assert!(e.to_string().contains("expired"), "{e}");
        let e = ManufacturerCa::from_pem(&format!("{pem}{pem}"), now()).unwrap_err();
        assert!(e.to_string().contains("exactly one"), "{e}");
        assert!(ManufacturerCa::from_pem("garbage", now()).is_err());
    }

    #[test]
    fn a_bootstrap_certificate_names_its_device_and_issuer() {
        let (params, key, pem) = manufacturer(true);
        let ca_der = ManufacturerCa::from_pem(&pem, now()).unwrap().der;
        let issuer = Issuer::from_params(&params, &key);
        let device_key = KeyPair::generate().unwrap();
        let mut leaf = CertificateParams::default();
        leaf.distinguished_name
            .push(DnType::CustomDnType(vec![2, 5, 4, 5]), "SN-0042");
        leaf.distinguished_name.push(DnType::CommonName, "sensor");
        let der = leaf.signed_by(&device_key, &issuer).unwrap().der().to_vec();
        let boot = BootstrapCertificate::parse(&der).unwrap();
        assert_eq!(boot.device_names, ["SN-0042", "sensor"]);
        assert!(directly_issued_by(&der, &ca_der));
        let (_, _, other) = manufacturer(true);
        let other_der = ManufacturerCa::from_pem(&other, now()).unwrap().der;
        assert!(!directly_issued_by(&der, &other_der));
        assert!(!directly_issued_by(b"junk", &ca_der));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_input_never_panics(text in ".{0,300}", bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let _ = ManufacturerCa::from_pem(&text, now());
            let _ = BootstrapCertificate::parse(&bytes);
            let _ = directly_issued_by(&bytes, &bytes);
        }

        #[test]
        fn a_mutated_ca_is_refused_or_still_a_ca(pos in 0usize..2000, byte in proptest::prelude::any::<u8>()) {
            let (_, _, pem) = manufacturer(true);
            let der = ManufacturerCa::from_pem(&pem, now()).unwrap().der;
            let mut bad = der.clone();
            let i = pos % bad.len();
            bad[i] = byte;
            let text = pem::encode(&pem::Pem::new("CERTIFICATE", bad.clone()));
            if let Ok(ca) = ManufacturerCa::from_pem(&text, now()) {
                proptest::prop_assert_eq!(&ca.der, &bad);
                let (_, cert) = X509Certificate::from_der(&ca.der).unwrap();
                proptest::prop_assert!(cert.basic_constraints().unwrap().unwrap().value.ca);
            }
        }
    }
}
