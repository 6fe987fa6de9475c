//! Certificate profiles and issuance. The CA decides every field; the CSR contributes only its
//! (verified) public key.

use std::net::IpAddr;

use der::Encode;
use der::asn1::{Ia5String, ObjectIdentifier};
use rcgen::{
    CertificateParams, CrlDistributionPoint, CustomExtension, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use time::{Duration, OffsetDateTime};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{AccessDescription, AuthorityInfoAccessSyntax};

use sigil_domain::{DeviceId, Fingerprint, Serial};

use crate::hierarchy::{BACKDATE, IssuingCa, certificate_pem};
use crate::{CaError, KeyAlgorithm, ValidatedCsr, sha256};

const OID_AIA: [u64; 9] = [1, 3, 6, 1, 5, 5, 7, 1, 1];
const OID_OCSP_NOCHECK: [u64; 10] = [1, 3, 6, 1, 5, 5, 7, 48, 1, 5];
const ID_AD_OCSP: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1");
const ID_AD_CA_ISSUERS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.2");

/// A named certificate profile: how long a device identity lives, and when its holder should
/// renew it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Profile {
    pub name: &'static str,
    #[serde(with = "duration_secs")]
    pub validity: Duration,
    /// The renewal window: a device re-enrols once less than this remains (a third of the
    /// validity, so a missed attempt leaves time for retries).
    #[serde(with = "duration_secs")]
    pub renew_before: Duration,
}

mod duration_secs {
    pub fn serialize<S: serde::Serializer>(d: &time::Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(d.whole_seconds())
    }
}

pub const DEFAULT_PROFILE: &str = "device";

/// The built-in profiles. Short-lived profiles (hours down to minutes) are for fleets that
/// rely on expiry rather than revocation checking ("passive revocation").
pub const PROFILES: &[Profile] = &[
    Profile {
        name: "device",
        validity: Duration::days(365),
        renew_before: Duration::days(30),
    },
    Profile {
        name: "device-short",
        validity: Duration::hours(24),
        renew_before: Duration::hours(8),
    },
    Profile {
        name: "device-ephemeral",
        validity: Duration::hours(1),
        renew_before: Duration::minutes(20),
    },
    Profile {
        name: "device-minutes",
        validity: Duration::minutes(5),
        renew_before: Duration::seconds(100),
    },
];

impl Profile {
    /// When a certificate valid until `not_after` (from `not_before`) enters its renewal window.
    pub fn renew_after(
        &self,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> OffsetDateTime {
        (not_after - self.renew_before).max(not_before)
    }

    pub fn by_name(name: &str) -> Result<&'static Profile, CaError> {
        PROFILES
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| CaError::UnknownProfile(name.chars().take(64).collect()))
    }
}

/// How a device's identity is spelled in its certificate's SAN URI.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum IdentityScheme {
    /// `urn:sigil:device:<id>`
    #[default]
    Urn,
    /// `spiffe://<trust-domain>/device/<id>`
    Spiffe { trust_domain: String },
}

impl IdentityScheme {
    pub fn spiffe(trust_domain: &str) -> Result<Self, CaError> {
        // SPIFFE trust domains: lowercase letters, digits, dots, dashes and underscores.
        let ok = !trust_domain.is_empty()
            && trust_domain.len() <= 255
            && trust_domain
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
        if ok {
            Ok(Self::Spiffe {
                trust_domain: trust_domain.to_owned(),
            })
        } else {
            Err(CaError::BadName(format!(
                "`{trust_domain}` is not a valid SPIFFE trust domain"
            )))
        }
    }

    pub fn uri_for(&self, device: DeviceId) -> String {
        match self {
            Self::Urn => format!("urn:sigil:device:{device}"),
            Self::Spiffe { trust_domain } => format!("spiffe://{trust_domain}/device/{device}"),
        }
    }
}

/// Path of the issuing CA's CRL under the PKI base URL.
pub const CRL_PATH: &str = "/crl/issuing.crl";

/// Where relying parties fetch revocation status and the issuer certificate: Sigil's public
/// PKI listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicUrls {
    base: String,
}

impl PublicUrls {
    pub fn new(base: &str) -> Result<Self, CaError> {
        let base = base.trim_end_matches('/');
        let ok = (base.starts_with("http://") || base.starts_with("https://"))
            && base.len() > "http://".len()
            && base.is_ascii()
            && !base
                .bytes()
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_control());
        if ok {
            Ok(Self {
                base: base.to_owned(),
            })
        } else {
            Err(CaError::BadName(format!(
                "`{base}` is not an http(s) base URL"
            )))
        }
    }
    pub fn base(&self) -> &str {
        &self.base
    }
    pub fn ocsp(&self) -> String {
        format!("{}/ocsp", self.base)
    }
    pub fn ca_issuers(&self) -> String {
        format!("{}/ca/issuing.der", self.base)
    }
    pub fn crl(&self) -> String {
        format!("{}{CRL_PATH}", self.base)
    }
}

/// A signed device certificate and the facts the inventory records about it.
#[derive(Debug, Clone)]
pub struct IssuedCertificate {
    pub serial: Serial,
    pub der: Vec<u8>,
    pub pem: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    /// SHA-256 of the certificate DER.
    pub fingerprint: Fingerprint,
    /// SHA-256 of the certified SubjectPublicKeyInfo.
    pub spki_fingerprint: Fingerprint,
    pub profile: &'static str,
    /// The certified key's algorithm.
    pub key: crate::CsrKey,
}

/// A TLS server certificate for Sigil's own API listener.
pub struct ServerCertificate {
    /// Leaf, then issuing CA.
    pub chain_der: Vec<Vec<u8>>,
    pub key_pkcs8_der: Vec<u8>,
    pub not_after: OffsetDateTime,
}

/// A 20-octet serial (the RFC 5280 maximum): 159 random bits, top bit clear so the INTEGER is
/// positive, first octet non-zero so the encoding is always exactly 20 octets and minimal.
pub(crate) fn random_serial() -> Result<SerialNumber, CaError> {
    let mut bytes = [0u8; 20];
    aws_lc_rs::rand::fill(&mut bytes)
        .map_err(|_| CaError::Crypto("random number generator failed".into()))?;
    bytes[0] &= 0x7f;
    if bytes[0] == 0 {
        bytes[0] = 0x01;
    }
    Ok(SerialNumber::from_slice(&bytes))
}

impl IssuingCa {
    /// Sign a device identity certificate for the key in `csr`.
    pub fn issue_device_certificate(
        &self,
        csr: &ValidatedCsr,
        device: DeviceId,
        profile: &'static Profile,
        scheme: &IdentityScheme,
        urls: &PublicUrls,
        now: OffsetDateTime,
    ) -> Result<IssuedCertificate, CaError> {
        let not_before = now - BACKDATE;
        // Never outlive the issuer: a chain is only as valid as its shortest link.
        let not_after = (now + profile.validity).min(self.not_after);
        if not_after <= now {
            return Err(CaError::IssuerExpired(device));
        }
        let uri = scheme.uri_for(device);
        let end_entity = EndEntity {
            common_name: device.to_string(),
            names: vec![SanType::URI(
                uri.clone().try_into().map_err(|_| CaError::BadName(uri))?,
            )],
            usage: ExtendedKeyUsagePurpose::ClientAuth,
            profile: profile.name,
            not_before,
            not_after,
        };
        self.sign_end_entity(csr, end_entity, urls)
    }

    /// Sign a certificate for the verified key of `csr`: the CA decides every field, and every
    /// end-entity certificate points relying parties at the CRL and OCSP.
    fn sign_end_entity(
        &self,
        csr: &ValidatedCsr,
        e: EndEntity,
        urls: &PublicUrls,
    ) -> Result<IssuedCertificate, CaError> {
        let serial = random_serial()?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, e.common_name);
        params.distinguished_name = dn;
        params.subject_alt_names = e.names;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![e.usage];
        params.use_authority_key_identifier_extension = true;
        params.crl_distribution_points = vec![CrlDistributionPoint {
            uris: vec![urls.crl()],
        }];
        params.custom_extensions = vec![aia_extension(urls)?];
        params.serial_number = Some(serial.clone());
        params.not_before = e.not_before;
        params.not_after = e.not_after;
        let public_key = rcgen::SubjectPublicKeyInfo::from_der(csr.spki_der())?;
        let der = params.signed_by(&public_key, &self.issuer)?.der().to_vec();
        Ok(IssuedCertificate {
            serial: Serial::from_bytes(&serial.to_bytes())
                .map_err(|e| CaError::Crypto(e.to_string()))?,
            fingerprint: Fingerprint::from_digest(&sha256(&der)),
            spki_fingerprint: csr.spki_fingerprint().clone(),
            pem: certificate_pem(&der),
            der,
            not_before: e.not_before,
            not_after: e.not_after,
            profile: e.profile,
            key: csr.key(),
        })
    }

    /// A certificate for Sigil's own HTTPS listener, with a fresh key that is never written to
    /// disk (a restart issues a new one).
    pub fn issue_server_certificate(
        &self,
        dns_names: &[String],
        ips: &[IpAddr],
        validity: Duration,
        now: OffsetDateTime,
    ) -> Result<ServerCertificate, CaError> {
        let key: KeyPair = KeyAlgorithm::EcdsaP256.generate()?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            dns_names.first().cloned().unwrap_or_else(|| "sigil".into()),
        );
        params.distinguished_name = dn;
        params.subject_alt_names = server_names(dns_names, ips)?;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(random_serial()?);
        params.not_before = now - BACKDATE;
        params.not_after = (now + validity).min(self.not_after);
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(ServerCertificate {
            chain_der: vec![cert.der().to_vec(), self.issuing_cert_der().to_vec()],
            key_pkcs8_der: key.serialize_der(),
            not_after: params.not_after,
        })
    }
}

/// What differs between the end-entity certificates Sigil signs.
struct EndEntity {
    common_name: String,
    names: Vec<SanType>,
    usage: ExtendedKeyUsagePurpose,
    profile: &'static str,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
}

/// Subject alternative names of a TLS server.
fn server_names(dns_names: &[String], ips: &[IpAddr]) -> Result<Vec<SanType>, CaError> {
    let mut sans = Vec::new();
    for name in dns_names {
        sans.push(SanType::DnsName(
            name.clone()
                .try_into()
                .map_err(|_| CaError::BadName(name.clone()))?,
        ));
    }
    sans.extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
    Ok(sans)
}

/// Longest validity of a service (TLS server) certificate.
pub const SERVICE_MAX_VALIDITY: Duration = Duration::days(398);

impl IssuingCa {
    /// A TLS server certificate for a service of the deployment (an MQTT broker, say) for the
    /// key in `csr`, so that devices trust it through Sigil's own root and a deployment needs
    /// no second CA: serverAuth only, the names given (at least one), and the same CRL and
    /// OCSP pointers as device certificates.
    pub fn issue_service_certificate(
        &self,
        csr: &ValidatedCsr,
        dns_names: &[String],
        ips: &[IpAddr],
        validity: Duration,
        urls: &PublicUrls,
        now: OffsetDateTime,
    ) -> Result<IssuedCertificate, CaError> {
        if dns_names.is_empty() && ips.is_empty() {
            return Err(CaError::BadName(
                "a service certificate needs at least one DNS name or IP address".into(),
            ));
        }
        if let Some(wild) = dns_names.iter().find(|n| n.contains('*')) {
            // One service, one name: a wildcard would let the holder stand for any host,
            // Sigil's own API included.
            return Err(CaError::BadName(format!(
                "{wild}: a service certificate names its hosts, without wildcards"
            )));
        }
        if validity <= Duration::ZERO || validity > SERVICE_MAX_VALIDITY {
            return Err(CaError::BadName(format!(
                "validity must be between 1 s and {} days",
                SERVICE_MAX_VALIDITY.whole_days()
            )));
        }
        let not_before = now - BACKDATE;
        let not_after = (now + validity).min(self.not_after);
        let common_name = dns_names
            .first()
            .cloned()
            .or_else(|| ips.first().map(ToString::to_string))
            .unwrap_or_default();
        let end_entity = EndEntity {
            common_name,
            names: server_names(dns_names, ips)?,
            usage: ExtendedKeyUsagePurpose::ServerAuth,
            profile: "service",
            not_before,
            not_after,
        };
        self.sign_end_entity(csr, end_entity, urls)
    }

    /// A delegated OCSP responder certificate (RFC 6960 4.2.2.2) for `key`: extendedKeyUsage
    /// id-kp-OCSPSigning, and id-pkix-ocsp-nocheck (4.2.2.2.1) so relying parties do not ask
    /// about the responder itself. nocheck means it cannot be revoked in practice, so keep
    /// `validity` short; the key is generated by the caller and never leaves memory.
    pub fn issue_ocsp_responder_certificate(
        &self,
        key: &KeyPair,
        validity: Duration,
        now: OffsetDateTime,
    ) -> Result<(Vec<u8>, OffsetDateTime), CaError> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "Sigil OCSP Responder");
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::OcspSigning];
        params.use_authority_key_identifier_extension = true;
        // The extension's value is an ASN.1 NULL.
        params.custom_extensions = vec![CustomExtension::from_oid_content(
            &OID_OCSP_NOCHECK,
            vec![0x05, 0x00],
        )];
        params.serial_number = Some(random_serial()?);
        params.not_before = now - BACKDATE;
        params.not_after = (now + validity).min(self.not_after);
        if params.not_after <= now {
            return Err(CaError::CaCertificate("the issuing CA has expired".into()));
        }
        let cert = params.signed_by(key, &self.issuer)?;
        Ok((cert.der().to_vec(), params.not_after))
    }
}

/// Authority Information Access (RFC 5280 §4.2.2.1): OCSP responder and caIssuers URLs.
/// rcgen has no AIA parameter, so the extension value is encoded with x509-cert's types.
fn aia_extension(urls: &PublicUrls) -> Result<CustomExtension, CaError> {
    let uri = |s: String| -> Result<GeneralName, CaError> {
        Ia5String::new(&s)
            .map(GeneralName::UniformResourceIdentifier)
            .map_err(|_| CaError::BadName(s))
    };
    let aia = AuthorityInfoAccessSyntax(vec![
        AccessDescription {
            access_method: ID_AD_OCSP,
            access_location: uri(urls.ocsp())?,
        },
        AccessDescription {
            access_method: ID_AD_CA_ISSUERS,
            access_location: uri(urls.ca_issuers())?,
        },
    ]);
    let value = aia
        .to_der()
        .map_err(|e| CaError::Crypto(format!("encoding AIA: {e}")))?;
    Ok(CustomExtension::from_oid_content(&OID_AIA, value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CaHierarchy, CaNames};
    use rcgen::PublicKeyData;
    use x509_parser::extensions::{GeneralName as XName, ParsedExtension};
    use x509_parser::prelude::{FromDer, X509Certificate};

    fn now() -> OffsetDateTime {
        time::macros::datetime!(2026-11-25 12:00 UTC)
    }

    fn ca(alg: KeyAlgorithm) -> IssuingCa {
        let h = CaHierarchy::generate(alg, &CaNames::default(), now())
            .unwrap_or_else(|e| panic!("{e}"));
        IssuingCa::load(&h.issuing_cert_pem, h.issuing_key, &h.root_cert_pem)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn csr() -> (KeyPair, ValidatedCsr) {
        let key =
            KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap_or_else(|e| panic!("{e}"));
        // The CSR asks to be a CA for a DNS name: all of it must be ignored.
        let mut params = CertificateParams::new(vec!["evil.example".to_owned()])
            .unwrap_or_else(|e| panic!("{e}"));
        params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let der = params
            .serialize_request(&key)
            .unwrap_or_else(|e| panic!("{e}"))
            .der()
            .to_vec();
        let v = ValidatedCsr::from_der(&der).unwrap_or_else(|e| panic!("{e}"));
        (key, v)
    }

    #[test]
    fn device_certificate_contents_are_decided_by_the_ca() {
        for alg in KeyAlgorithm::ALL {
            let ca = ca(alg);
            let (key, csr) = csr();
            let device = DeviceId::generate();
            let urls =
                PublicUrls::new("http://pki.example:8080/").unwrap_or_else(|e| panic!("{e}"));
            let profile = Profile::by_name("device").unwrap_or_else(|e| panic!("{e}"));
            let issued = ca
                .issue_device_certificate(&csr, device, profile, &IdentityScheme::Urn, &urls, now())
                .unwrap_or_else(|e| panic!("{alg}: {e}"));
            let (_, cert) =
                X509Certificate::from_der(&issued.der).unwrap_or_else(|e| panic!("{e}"));

            assert_eq!(
                cert.public_key().raw,
                key.subject_public_key_info().as_slice()
            );
            assert_eq!(cert.raw_serial().len(), 20);
            assert_eq!(hex::encode(cert.raw_serial()), issued.serial.as_str());
            assert_eq!(cert.subject().to_string(), format!("CN={device}"));
            let bc = cert
                .basic_constraints()
                .ok()
                .flatten()
                .unwrap_or_else(|| panic!("no basicConstraints"));
            assert!(!bc.value.ca, "a CSR must not be able to ask for CA:TRUE");
            let ku = cert
                .key_usage()
                .ok()
                .flatten()
                .unwrap_or_else(|| panic!("no keyUsage"));
            assert!(ku.value.digital_signature() && !ku.value.key_cert_sign());
            let eku = cert
                .extended_key_usage()
                .ok()
                .flatten()
                .unwrap_or_else(|| panic!("no EKU"));
            assert!(eku.value.client_auth && !eku.value.server_auth);
            let san = cert
                .subject_alternative_name()
                .ok()
                .flatten()
                .unwrap_or_else(|| panic!("no SAN"));
            assert_eq!(
                san.value.general_names,
                vec![XName::URI(&format!("urn:sigil:device:{device}"))]
            );

            let mut saw = (false, false, false, false);
            for ext in cert.extensions() {
                match ext.parsed_extension() {
                    ParsedExtension::AuthorityInfoAccess(aia) => {
                        let urls: Vec<String> = aia
                            .accessdescs
                            .iter()
                            .map(|d| format!("{}={:?}", d.access_method, d.access_location))
                            .collect();
                        assert!(
                            urls.iter()
                                .any(|u| u.contains("http://pki.example:8080/ocsp")),
                            "{urls:?}"
                        );
                        assert!(
                            urls.iter()
                                .any(|u| u.contains("http://pki.example:8080/ca/issuing.der")),
                            "{urls:?}"
                        );
                        saw.0 = true;
                    }
                    ParsedExtension::CRLDistributionPoints(_) => saw.1 = true,
                    ParsedExtension::AuthorityKeyIdentifier(_) => saw.2 = true,
                    ParsedExtension::SubjectKeyIdentifier(_) => saw.3 = true,
                    _ => {}
                }
            }
            assert_eq!(saw, (true, true, true, true), "{alg}: AIA, CDP, AKI, SKI");
            assert_eq!(issued.not_after - now(), Duration::days(365));
            let (_, issuing) =
                X509Certificate::from_der(ca.issuing_cert_der()).unwrap_or_else(|e| panic!("{e}"));
            assert!(
                cert.verify_signature(Some(issuing.public_key())).is_ok(),
                "{alg}"
            );
        }
    }

    #[test]
    fn serials_are_distinct() {
        let serials: std::collections::HashSet<Vec<u8>> = (0..1000)
            .map(|_| random_serial().map(|s| s.to_bytes()).unwrap_or_default())
            .collect();
        assert_eq!(serials.len(), 1000);
        assert!(
            serials
                .iter()
                .all(|s| s.len() == 20 && s[0] != 0 && s[0] < 0x80)
        );
    }

    #[test]
    fn service_certificates_serve_tls_only_for_their_names() {
        let ca = ca(KeyAlgorithm::EcdsaP256);
        let (_, csr) = csr();
        let urls = PublicUrls::new("http://127.0.0.1:8080").unwrap_or_else(|e| panic!("{e}"));
        let ip: IpAddr = [127, 0, 0, 1].into();
        let names = ["mqtt.example.com".to_owned()];
        let issued = ca
            .issue_service_certificate(&csr, &names, &[ip], Duration::days(90), &urls, now())
            .unwrap_or_else(|e| panic!("{e}"));
        let (_, cert) = X509Certificate::from_der(&issued.der).unwrap_or_else(|e| panic!("{e}"));
        let eku = cert
            .extended_key_usage()
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("no EKU"))
            .value;
        assert!(eku.server_auth && !eku.client_auth);
        let sans = cert
            .subject_alternative_name()
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("no SAN"))
            .value
            .general_names
            .len();
        assert_eq!(sans, 2);
        assert!(issued.not_after <= now() + Duration::days(90));
        for (names, ips, validity) in [
            (&[][..], &[][..], Duration::days(1)),
            (&names[..], &[][..], Duration::days(400)),
            (&names[..], &[][..], Duration::ZERO),
            (
                &["*.example.com".to_owned()][..],
                &[][..],
                Duration::days(1),
            ),
        ] {
            assert!(
                ca.issue_service_certificate(&csr, names, ips, validity, &urls, now())
                    .is_err()
            );
        }
    }

    #[test]
    fn validity_is_capped_at_the_issuer() {
        let ca = ca(KeyAlgorithm::EcdsaP256);
        let (_, csr) = csr();
        let later = ca.not_after() - Duration::days(2);
        let profile = Profile::by_name("device").unwrap_or_else(|e| panic!("{e}"));
        let urls = PublicUrls::new("http://127.0.0.1:8080").unwrap_or_else(|e| panic!("{e}"));
        let issued = ca
            .issue_device_certificate(
                &csr,
                DeviceId::generate(),
                profile,
                &IdentityScheme::Urn,
                &urls,
                later,
            )
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(issued.not_after, ca.not_after());
        let after = ca.not_after() + Duration::days(1);
        assert!(matches!(
            ca.issue_device_certificate(
                &csr,
                DeviceId::generate(),
                profile,
                &IdentityScheme::Urn,
                &urls,
                after
            ),
            Err(CaError::IssuerExpired(_))
        ));
    }

    #[test]
    fn spiffe_scheme() {
        let d = DeviceId::generate();
        let s = IdentityScheme::spiffe("factory.example").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.uri_for(d), format!("spiffe://factory.example/device/{d}"));
        assert!(IdentityScheme::spiffe("Bad Domain").is_err());
        assert!(PublicUrls::new("ftp://x").is_err());
        assert!(Profile::by_name("nope").is_err());
    }
}
