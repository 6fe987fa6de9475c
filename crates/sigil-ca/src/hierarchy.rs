//! The two-tier CA hierarchy: an offline-style root and the online issuing CA it certifies.

use rcgen::PublicKeyData;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::issue::random_serial;
use crate::{CaError, KeyAlgorithm};

/// Root CA validity. Long, because re-rooting a fleet is expensive.
const ROOT_VALIDITY: Duration = Duration::days(20 * 365);
/// Issuing CA validity: half the root's, so it can be rolled over within the root's life.
const ISSUING_VALIDITY: Duration = Duration::days(10 * 365);
/// Certificates start a little in the past so devices with slightly slow clocks accept them.
pub(crate) const BACKDATE: Duration = Duration::minutes(1);

/// Subject names for the CA certificates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaNames {
    pub organization: String,
    pub root_common_name: String,
    pub issuing_common_name: String,
}

impl Default for CaNames {
    fn default() -> Self {
        Self {
            organization: "Sigil".into(),
            root_common_name: "Sigil Root CA".into(),
            issuing_common_name: "Sigil Issuing CA".into(),
        }
    }
}

/// A freshly generated hierarchy. Private keys are PKCS#8 DER and must be sealed by the caller
/// before they touch a disk.
pub struct GeneratedHierarchy {
    pub algorithm: KeyAlgorithm,
    pub root_cert_pem: String,
    pub root_key: KeyPair,
    pub issuing_cert_pem: String,
    pub issuing_key: KeyPair,
}

pub struct CaHierarchy;

impl CaHierarchy {
    pub fn generate(
        algorithm: KeyAlgorithm,
        names: &CaNames,
        now: OffsetDateTime,
    ) -> Result<GeneratedHierarchy, CaError> {
        let root_key = algorithm.generate()?;
        let mut root = ca_params(
            &names.organization,
            &names.root_common_name,
            1,
            now,
            ROOT_VALIDITY,
        )?;
        root.use_authority_key_identifier_extension = false;
        let root_cert = root.self_signed(&root_key)?;

        let issuing_key = algorithm.generate()?;
        let mut issuing = ca_params(
            &names.organization,
            &names.issuing_common_name,
            0,
            now,
            ISSUING_VALIDITY,
        )?;
        issuing.use_authority_key_identifier_extension = true;
        let root_issuer = Issuer::from_params(&root, &root_key);
        let issuing_cert = issuing.signed_by(&issuing_key, &root_issuer)?;

        Ok(GeneratedHierarchy {
            algorithm,
            root_cert_pem: root_cert.pem(),
            root_key,
            issuing_cert_pem: issuing_cert.pem(),
            issuing_key,
        })
    }
}

fn ca_params(
    org: &str,
    cn: &str,
    path_len: u8,
    now: OffsetDateTime,
    validity: Duration,
) -> Result<CertificateParams, CaError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, org);
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(path_len));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.serial_number = Some(random_serial()?);
    params.not_before = now - BACKDATE;
    params.not_after = now + validity;
    Ok(params)
}

/// The online issuing CA, loaded and ready to sign.
pub struct IssuingCa {
    pub(crate) issuer: Issuer<'static, KeyPair>,
    pub(crate) algorithm: KeyAlgorithm,
    pub(crate) not_after: OffsetDateTime,
    issuing_der: Vec<u8>,
    root_der: Vec<u8>,
    issuing_pem: String,
    root_pem: String,
}

impl IssuingCa {
    /// Load from the PEM certificates and the (already decrypted) issuing key. Refuses a key that
    /// does not belong to the certificate, and a certificate that does not chain to the root.
    pub fn load(
        issuing_cert_pem: &str,
        issuing_key: KeyPair,
        root_cert_pem: &str,
    ) -> Result<Self, CaError> {
        let issuing_der = cert_der(issuing_cert_pem)?;
        let root_der = cert_der(root_cert_pem)?;
        let (_, issuing) = X509Certificate::from_der(&issuing_der)
            .map_err(|e| CaError::CaCertificate(e.to_string()))?;
        let (_, root) = X509Certificate::from_der(&root_der)
            .map_err(|e| CaError::CaCertificate(e.to_string()))?;
        if issuing.public_key().raw != issuing_key.subject_public_key_info().as_slice() {
            return Err(CaError::KeyMismatch);
        }
        if issuing.issuer() != root.subject() {
            return Err(CaError::CaCertificate(
                "issuing CA was not issued by this root".into(),
            ));
        }
        let not_after = issuing.validity().not_after.to_datetime();
        let algorithm = KeyAlgorithm::of_key(&issuing_key).ok_or_else(|| {
            CaError::KeyFormat("issuing key algorithm is not one Sigil supports".into())
        })?;
        let issuer = Issuer::from_ca_cert_der(&issuing_der.clone().into(), issuing_key)?;
        Ok(Self {
            issuer,
            algorithm,
            not_after,
            issuing_pem: certificate_pem(&issuing_der),
            root_pem: certificate_pem(&root_der),
            issuing_der,
            root_der,
        })
    }

    pub fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }
    pub fn issuing_cert_der(&self) -> &[u8] {
        &self.issuing_der
    }
    pub fn root_cert_der(&self) -> &[u8] {
        &self.root_der
    }
    pub fn issuing_cert_pem(&self) -> &str {
        &self.issuing_pem
    }
    pub fn root_cert_pem(&self) -> &str {
        &self.root_pem
    }
    /// The chain a device presents above its own certificate: issuing CA, then root.
    pub fn chain_pem(&self) -> String {
        format!("{}{}", self.issuing_pem, self.root_pem)
    }
    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }
}

fn cert_der(text: &str) -> Result<Vec<u8>, CaError> {
    let block = pem::parse(text).map_err(|e| CaError::CaCertificate(e.to_string()))?;
    if block.tag() != "CERTIFICATE" {
        return Err(CaError::CaCertificate(format!(
            "expected CERTIFICATE, found {}",
            block.tag()
        )));
    }
    Ok(block.into_contents())
}

/// A certificate as PEM (64-column base64, LF line ends): the one PEM encoder of Sigil.
pub fn certificate_pem(der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new("CERTIFICATE", der.to_vec()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::extensions::ParsedExtension;

    fn now() -> OffsetDateTime {
        time::macros::datetime!(2026-11-25 12:00 UTC)
    }

    #[test]
    fn hierarchy_has_ca_extensions_for_every_algorithm() {
        for alg in KeyAlgorithm::ALL {
            let h = CaHierarchy::generate(alg, &CaNames::default(), now())
                .unwrap_or_else(|e| panic!("{e}"));
            let root_der = cert_der(&h.root_cert_pem).unwrap_or_else(|e| panic!("{e}"));
            let issuing_der = cert_der(&h.issuing_cert_pem).unwrap_or_else(|e| panic!("{e}"));
            let (_, root) = X509Certificate::from_der(&root_der).unwrap_or_else(|e| panic!("{e}"));
            let (_, issuing) =
                X509Certificate::from_der(&issuing_der).unwrap_or_else(|e| panic!("{e}"));

            for (cert, path_len) in [(&root, 1), (&issuing, 0)] {
                let bc = cert
                    .basic_constraints()
                    .ok()
                    .flatten()
                    .unwrap_or_else(|| panic!("{alg}: no basicConstraints"));
                assert!(bc.critical, "{alg}: basicConstraints must be critical");
                assert!(bc.value.ca);
                assert_eq!(bc.value.path_len_constraint, Some(path_len));
                let ku = cert
                    .key_usage()
                    .ok()
                    .flatten()
                    .unwrap_or_else(|| panic!("{alg}: no keyUsage"));
                assert!(ku.value.key_cert_sign() && ku.value.crl_sign());
                assert!(cert.extensions().iter().any(|e| matches!(
                    e.parsed_extension(),
                    ParsedExtension::SubjectKeyIdentifier(_)
                )));
                assert_eq!(cert.raw_serial().len(), 20);
            }
            // AKI of the issuing CA names the root's SKI.
            let ski = root
                .extensions()
                .iter()
                .find_map(|e| match e.parsed_extension() {
                    ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
                    _ => None,
                });
            let aki = issuing
                .extensions()
                .iter()
                .find_map(|e| match e.parsed_extension() {
                    ParsedExtension::AuthorityKeyIdentifier(a) => {
                        a.key_identifier.as_ref().map(|k| k.0.to_vec())
                    }
                    _ => None,
                });
            assert!(ski.is_some());
            assert_eq!(ski, aki, "{alg}");
            assert!(
                issuing.verify_signature(Some(root.public_key())).is_ok(),
                "{alg}: issuing not signed by root"
            );

            let loaded = IssuingCa::load(&h.issuing_cert_pem, h.issuing_key, &h.root_cert_pem)
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(loaded.algorithm(), alg);
        }
    }

    #[test]
    fn load_refuses_a_key_that_is_not_the_issuing_key() {
        let h = CaHierarchy::generate(KeyAlgorithm::EcdsaP256, &CaNames::default(), now())
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(
            IssuingCa::load(&h.issuing_cert_pem, h.root_key, &h.root_cert_pem),
            Err(CaError::KeyMismatch)
        ));
    }
}
