//! Certificate revocation lists (RFC 5280 section 5): v2, signed by the issuing CA, with CRL
//! number, authority key identifier, an issuing distribution point naming the URL the
//! certificates point to (so a relying party can tell this CRL covers them), and reason codes.

use rcgen::{
    CertificateRevocationListParams, CrlDistributionPoint, CrlIssuingDistributionPoint, CrlScope,
    KeyIdMethod, RevokedCertParams, SerialNumber,
};
use time::OffsetDateTime;

use sigil_domain::{RevocationReason, Serial};

use crate::{CaError, IssuingCa, PublicUrls};

/// One revoked certificate, as listed in a CRL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedEntry {
    pub serial: Serial,
    pub revoked_at: OffsetDateTime,
    pub reason: RevocationReason,
}

/// What goes into one CRL.
#[derive(Debug, Clone)]
pub struct CrlContents<'a> {
    /// Strictly greater than every CRL number this CA used before (RFC 5280 5.2.3).
    pub number: u64,
    pub this_update: OffsetDateTime,
    pub next_update: OffsetDateTime,
    pub revoked: &'a [RevokedEntry],
}

fn to_rcgen(reason: RevocationReason) -> rcgen::RevocationReason {
    use rcgen::RevocationReason as R;
    match reason {
        RevocationReason::Unspecified => R::Unspecified,
        RevocationReason::KeyCompromise => R::KeyCompromise,
        RevocationReason::AffiliationChanged => R::AffiliationChanged,
        RevocationReason::Superseded => R::Superseded,
        RevocationReason::CessationOfOperation => R::CessationOfOperation,
        RevocationReason::PrivilegeWithdrawn => R::PrivilegeWithdrawn,
    }
}

/// The serial's big-endian bytes. `Serial` only holds validated even-length hex.
fn serial_bytes(serial: &Serial) -> Result<Vec<u8>, CaError> {
    let hex = serial.as_str();
    (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                .ok_or_else(|| CaError::BadName(format!("serial `{hex}` is not hex")))
        })
        .collect()
}

impl IssuingCa {
    /// Sign a CRL listing `contents.revoked`. Its issuing distribution point is `urls.crl()`,
    /// the URL every device certificate names as its CRL distribution point.
    pub fn sign_crl(
        &self,
        contents: &CrlContents<'_>,
        urls: &PublicUrls,
    ) -> Result<Vec<u8>, CaError> {
        let revoked_certs = contents
            .revoked
            .iter()
            .map(|r| {
                Ok(RevokedCertParams {
                    serial_number: SerialNumber::from_slice(&serial_bytes(&r.serial)?),
                    revocation_time: r.revoked_at,
                    // RFC 5280 5.3.1: omit the extension rather than use unspecified.
                    reason_code: (r.reason != RevocationReason::Unspecified)
                        .then(|| to_rcgen(r.reason)),
                    invalidity_date: None,
                })
            })
            .collect::<Result<Vec<_>, CaError>>()?;
        let params = CertificateRevocationListParams {
            this_update: contents.this_update,
            next_update: contents.next_update,
            crl_number: SerialNumber::from_slice(&contents.number.to_be_bytes()),
            issuing_distribution_point: Some(CrlIssuingDistributionPoint {
                distribution_point: CrlDistributionPoint {
                    uris: vec![urls.crl()],
                },
                scope: Some(CrlScope::UserCertsOnly),
            }),
            revoked_certs,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        Ok(params.signed_by(&self.issuer)?.der().to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CaHierarchy, CaNames, KeyAlgorithm};
    use x509_parser::prelude::*;

    #[test]
    fn crl_lists_serials_with_reasons_and_verifies_under_the_issuer() {
        let now = OffsetDateTime::now_utc();
        let h = CaHierarchy::generate(KeyAlgorithm::EcdsaP256, &CaNames::default(), now).unwrap();
        let ca = IssuingCa::load(&h.issuing_cert_pem, h.issuing_key, &h.root_cert_pem).unwrap();
        let urls = PublicUrls::new("http://pki.example").unwrap();
        let revoked = [
            RevokedEntry {
                serial: "7f01".parse().unwrap(),
                revoked_at: now - ::time::Duration::minutes(5),
                reason: RevocationReason::KeyCompromise,
            },
            RevokedEntry {
                serial: "0a0b0c".parse().unwrap(),
                revoked_at: now,
                reason: RevocationReason::Unspecified,
            },
        ];
        let der = ca
            .sign_crl(
                &CrlContents {
                    number: 300,
                    this_update: now,
                    next_update: now + ::time::Duration::hours(24),
                    revoked: &revoked,
                },
                &urls,
            )
            .unwrap();
        let (rest, crl) = CertificateRevocationList::from_der(&der).unwrap();
        assert!(rest.is_empty());
        assert_eq!(crl.version(), Some(X509Version::V2));
        assert_eq!(crl.crl_number().map(|n| n.to_string()), Some("300".into()));
        let (_, issuer) = X509Certificate::from_der(ca.issuing_cert_der()).unwrap();
        assert_eq!(crl.issuer(), issuer.subject());
        crl.verify_signature(issuer.public_key()).unwrap();
        let listed: Vec<_> = crl.iter_revoked_certificates().collect();
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[0].raw_serial(), [0x7f, 0x01]);
        assert_eq!(
            listed[0].reason_code().map(|(_, r)| r.0),
            Some(RevocationReason::KeyCompromise.code())
        );
        assert_eq!(listed[1].raw_serial(), [0x0a, 0x0b, 0x0c]);
        assert!(listed[1].reason_code().is_none());
    }
}
