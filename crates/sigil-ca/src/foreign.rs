//! Certificates another CA issued to a device, imported so the inventory knows them and their
//! expiry (a fleet moving to Sigil keeps its old identities for a while).
//!
//! They are records, never trust: nothing here makes a foreign certificate acceptable for TLS,
//! EST or bootstrap (those accept only Sigil's chain and registered manufacturer CAs). What is
//! checked is that each one is a well-formed end-entity X.509 certificate that Sigil did not
//! issue itself.

use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};

use sigil_domain::Fingerprint;

use crate::bootstrap::directly_issued_by;
use crate::{CaError, sha256};

/// Largest PEM bundle accepted in one import.
pub const MAX_FOREIGN_BUNDLE: usize = 256 * 1024;
/// Most certificates in one import.
pub const MAX_FOREIGN_CERTIFICATES: usize = 64;

/// One foreign certificate, as the inventory keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignCertificate {
    pub der: Vec<u8>,
    /// RFC 4514 text of the subject and issuer, for people.
    pub subject: String,
    pub issuer: String,
    /// The issuer's serial number (lower-case hex).
    pub serial: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    /// SHA-256 of the certificate DER.
    pub sha256: Fingerprint,
    /// SHA-256 of its SubjectPublicKeyInfo (hex): the same key Sigil later certifies shows.
    pub spki_sha256: String,
}

fn refuse(why: String) -> CaError {
    CaError::ForeignCertificate(why)
}

/// Read a PEM bundle of end-entity certificates (1 to 64), refusing the whole bundle for any
/// one that is malformed, a CA certificate, issued by one of `own_cas` (Sigil's root and
/// issuing CA: those are tracked already), or a repeat.
pub fn parse_foreign_bundle(
    text: &str,
    own_cas: &[&[u8]],
) -> Result<Vec<ForeignCertificate>, CaError> {
    if text.len() > MAX_FOREIGN_BUNDLE {
        return Err(refuse(format!(
            "{} bytes; at most {MAX_FOREIGN_BUNDLE}",
            text.len()
        )));
    }
    let blocks = pem::parse_many(text).map_err(|e| refuse(format!("not PEM: {e}")))?;
    if blocks.is_empty() {
        return Err(refuse("no PEM certificate found".into()));
    }
    if blocks.len() > MAX_FOREIGN_CERTIFICATES {
        return Err(refuse(format!(
            "{} certificates; at most {MAX_FOREIGN_CERTIFICATES} in one import",
            blocks.len()
        )));
    }
    let mut out: Vec<ForeignCertificate> = Vec::with_capacity(blocks.len());
    for (n, block) in blocks.iter().enumerate() {
        let which = |why: String| refuse(format!("certificate {}: {why}", n + 1));
        if block.tag() != "CERTIFICATE" {
            return Err(which(format!(
                "a {} block, not a CERTIFICATE",
                printable(block.tag(), 32)
            )));
        }
        let cert = parse_one(block.contents(), own_cas).map_err(which)?;
        if out.iter().any(|c| c.sha256 == cert.sha256) {
            return Err(which("the same certificate appears twice".into()));
        }
        out.push(cert);
    }
    Ok(out)
}

fn parse_one(der: &[u8], own_cas: &[&[u8]]) -> Result<ForeignCertificate, String> {
    let (rest, cert) =
        X509Certificate::from_der(der).map_err(|e| format!("not an X.509 certificate: {e}"))?;
    if !rest.is_empty() {
        return Err("trailing bytes after the certificate".into());
    }
    if cert
        .basic_constraints()
        .map_err(|e| format!("its basicConstraints do not parse: {e}"))?
        .is_some_and(|bc| bc.value.ca)
    {
        return Err("a CA certificate: import the devices' own certificates".into());
    }
    // Sigil's own, or one claiming to be (its issuer named as Sigil's CA, whether or not the
    // signature holds): neither is a foreign certificate.
    let names_sigil = own_cas
        .iter()
        .any(|ca| X509Certificate::from_der(ca).is_ok_and(|(_, ca)| ca.subject() == cert.issuer()));
    if names_sigil || own_cas.iter().any(|ca| directly_issued_by(der, ca)) {
        return Err(
            "issued by (or in the name of) this Sigil's CA: not a foreign certificate".into(),
        );
    }
    let validity = cert.validity();
    // Names are shown to people and printed in terminals: no control characters.
    let text = |s: String| printable(&s, 1024);
    Ok(ForeignCertificate {
        subject: text(cert.subject().to_string()),
        issuer: text(cert.issuer().to_string()),
        serial: cert.raw_serial_as_string().replace(':', "").to_lowercase(),
        not_before: validity.not_before.to_datetime(),
        not_after: validity.not_after.to_datetime(),
        sha256: Fingerprint::from_digest(&sha256(der)),
        spki_sha256: hex::encode(sha256(cert.public_key().raw)),
        der: der.to_vec(),
    })
}

/// `s` without control characters, at most `max` characters.
fn printable(s: &str, max: usize) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max)
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

    fn ca(name: &str) -> (CertificateParams, KeyPair, Vec<u8>) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let der = params.self_signed(&key).unwrap().der().to_vec();
        (params, key, der)
    }

    fn leaf(issuer: &(CertificateParams, KeyPair, Vec<u8>), name: &str) -> String {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, name);
        params.not_after = time::macros::datetime!(2027-03-01 00:00 UTC);
        let issuer = Issuer::from_params(&issuer.0, &issuer.1);
        params.signed_by(&key, &issuer).unwrap().pem()
    }

    #[test]
    fn a_bundle_of_device_certificates_is_read() {
        let old = ca("Old Fleet CA");
        let own = ca("Sigil Issuing CA");
        let bundle = format!("{}{}", leaf(&old, "meter-1"), leaf(&old, "meter-2"));
        let certs = parse_foreign_bundle(&bundle, &[&own.2]).unwrap();
        assert_eq!(certs.len(), 2);
        assert!(certs[0].subject.contains("meter-1"), "{}", certs[0].subject);
        assert!(certs[0].issuer.contains("Old Fleet CA"));
        assert_eq!(
            certs[0].not_after,
            time::macros::datetime!(2027-03-01 00:00 UTC)
        );
        assert_eq!(certs[0].spki_sha256.len(), 64);
        assert!(certs[0].serial.chars().all(|c| c.is_ascii_hexdigit()));
        // Names reach terminals: control characters (an ANSI escape here) do not.
        let hostile = parse_foreign_bundle(&leaf(&old, "meter\u{1b}[31m-9"), &[&own.2]).unwrap();
        assert!(
            !hostile[0].subject.chars().any(char::is_control),
            "{}",
            hostile[0].subject
        );
    }

    #[test]
    fn bad_bundles_are_refused_whole() {
        let old = ca("Old Fleet CA");
        let own = ca("Sigil Issuing CA");
        let good = leaf(&old, "meter-1");
        let ca_pem = pem::encode(&pem::Pem::new("CERTIFICATE", old.2.clone()));
        let key_pem = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        let junk = pem::encode(&pem::Pem::new("CERTIFICATE", vec![0x30, 0x03, 1, 2, 3]));
        let cases = [
            (String::new(), "no PEM certificate"),
            ("garbage".into(), "no PEM certificate"),
            (format!("{good}{ca_pem}"), "certificate 2: a CA certificate"),
            (
                format!("{good}{key_pem}"),
                "certificate 2: a PRIVATE KEY block",
            ),
            (format!("{good}{good}"), "appears twice"),
            (junk, "not an X.509 certificate"),
            (
                leaf(&own, "already-ours"),
                "issued by (or in the name of) this Sigil",
            ),
            // Same name as Sigil's CA, another key: a forgery in its name.
            (leaf(&ca("Sigil Issuing CA"), "forged"), "in the name of"),
            (good.repeat(MAX_FOREIGN_CERTIFICATES + 1), "at most 64"),
            ("x".repeat(MAX_FOREIGN_BUNDLE + 1), "at most"),
        ];
        for (text, words) in cases {
            let e = parse_foreign_bundle(&text, &[&own.2])
                .unwrap_err()
                .to_string();
            assert!(e.contains(words), "{words}: {e}");
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in ".{0,400}") {
            let _ = parse_foreign_bundle(&text, &[]);
        }

        #[test]
        fn arbitrary_der_in_pem_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            let text = pem::encode(&pem::Pem::new("CERTIFICATE", bytes));
            let _ = parse_foreign_bundle(&text, &[]);
        }
    }
}
