//! Issuance and enrolment: the one path by which a device gets a certificate, whoever asks
//! (an operator over the REST API, a device over EST with a one-time token, a manufacturer
//! bootstrap certificate, or its current certificate for a renewal).

use sigil_audit::{Actor, AuditEvent, Outcome};
use sigil_ca::{BootstrapCertificate, IssuedCertificate, Profile, ValidatedCsr};
use sigil_domain::{DeviceId, Serial};
use sigil_store::{
    CertificateRecord, CertificateStatus, IssuanceBasis, NewCertificate, TokenRefusal,
};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::error::{Refusal, RefusalKind, RequestError};
use crate::{Authority, token_hash};

/// What the store records of a certificate the CA signed.
pub fn store_record(issued: IssuedCertificate) -> NewCertificate {
    NewCertificate {
        serial: issued.serial,
        profile: issued.profile.to_owned(),
        not_before: issued.not_before,
        not_after: issued.not_after,
        sha256: issued.fingerprint,
        spki_sha256: issued.spki_fingerprint,
        der: issued.der,
        key_algorithm: issued.key.to_string(),
    }
}

/// The registered device a manufacturer bootstrap certificate stands for.
#[derive(Debug)]
pub struct BootstrapMatch {
    pub device: DeviceId,
    pub certificate: BootstrapCertificate,
    /// SHA-256 (hex) of the manufacturer CA that issued it.
    pub manufacturer_ca: String,
}

impl Authority {
    /// Sign a certificate for `device` from a validated CSR and record it durably: the one
    /// issuance path. The certificate is returned only after the transaction recording it has
    /// committed.
    pub async fn issue(
        &self,
        actor: &Actor,
        device: DeviceId,
        basis: IssuanceBasis,
        csr: ValidatedCsr,
        profile: &'static Profile,
    ) -> Result<CertificateRecord, RequestError> {
        let now = self.now();
        let ca = self.ca.clone();
        let (scheme, urls) = (self.scheme.clone(), self.urls.clone());
        Ok(self
            .store
            .issue_certificate(actor, device, basis, csr.spki_fingerprint(), now, || {
                let issued =
                    ca.issue_device_certificate(&csr, device, profile, &scheme, &urls, now)?;
                Ok(store_record(issued))
            })
            .await?)
    }

    /// First enrolment with a one-time token. A spent token is accepted again only for the
    /// key it was spent on (a retry after a lost answer gets the same certificate back); if
    /// issuance is refused, the token is released, so a bad request spends nothing.
    pub async fn enrol_with_token(
        &self,
        device: DeviceId,
        token: &str,
        csr: ValidatedCsr,
    ) -> Result<CertificateRecord, RequestError> {
        let token_id = match self
            .store
            .consume_enrollment_token(device, &token_hash(token), self.now())
            .await?
        {
            Ok(id) => id,
            Err(TokenRefusal::Used) => {
                return match self.retried_enrolment(device, &csr).await? {
                    Some(record) => Ok(record),
                    None => Err(Refusal::unauthenticated(TokenRefusal::Used.to_string()).into()),
                };
            }
            Err(refusal) => return Err(Refusal::unauthenticated(refusal.to_string()).into()),
        };
        let actor = Actor::device(&device.to_string());
        let profile = self.enrollment_profile;
        let issued = self
            .issue(&actor, device, IssuanceBasis::Authorised, csr, profile)
            .await;
        if let Err(e) = &issued {
            // Nothing was issued: the device may try again with the same token.
            if let Err(release) = self
                .store
                .release_enrollment_token(device, &token_id, &e.public_reason(), self.now())
                .await
            {
                tracing::error!(error = %release, "could not release an enrolment token");
            }
        }
        issued
    }

    /// The unrevoked certificate of `device` for the key in `csr`, if one was issued: what a
    /// device whose enrolment answer was lost asks for again.
    async fn retried_enrolment(
        &self,
        device: DeviceId,
        csr: &ValidatedCsr,
    ) -> Result<Option<CertificateRecord>, RequestError> {
        let existing = self
            .store
            .list_certificates(Some(device), 1000)
            .await?
            .into_iter()
            .filter(|c| {
                &c.spki_sha256 == csr.spki_fingerprint() && c.status != CertificateStatus::Revoked
            })
            // A renewal may keep its key: then the active certificate is the one to hand back.
            .max_by_key(|c| c.status == CertificateStatus::Active);
        if let Some(record) = &existing {
            self.store
                .append_audit(vec![AuditEvent::new(
                    self.now(),
                    Actor::device(&device.to_string()),
                    "est.simpleenroll_repeated",
                    format!("device:{device}"),
                    Outcome::Success,
                    serde_json::json!({"serial": record.serial.to_string()}),
                )])
                .await?;
        }
        Ok(existing)
    }

    /// The registered device a bootstrap certificate (already verified by the TLS layer
    /// against the registered manufacturer CAs) stands for: a device of a product whose CA
    /// directly issued it, whose serial number or hardware id is the certificate's subject
    /// serialNumber or CN.
    pub async fn bootstrap_device(&self, der: &[u8]) -> Result<BootstrapMatch, RequestError> {
        if sigil_ca::directly_issued_by(der, self.ca.issuing_cert_der()) {
            return Err(Refusal::forbidden(
                "not-a-bootstrap-certificate",
                "this is a Sigil device certificate: renew it at /.well-known/est/simplereenroll",
            )
            .into());
        }
        let boot = BootstrapCertificate::parse(der)?;
        let cas: Vec<_> = self
            .store
            .manufacturer_cas(None)
            .await?
            .into_iter()
            .filter(|ca| sigil_ca::directly_issued_by(der, &ca.der))
            .collect();
        if cas.is_empty() {
            return Err(Refusal::forbidden(
                "bootstrap-untrusted",
                format!(
                    "the client certificate ({}) was not issued directly by a manufacturer CA registered for any product",
                    boot.subject
                ),
            )
            .into());
        }
        let mut devices = Vec::new();
        for ca in &cas {
            for device in self
                .store
                .devices_named(ca.product_id, &boot.device_names)
                .await?
            {
                devices.push((device, ca.sha256.to_string()));
            }
        }
        match devices.as_slice() {
            [(device, ca)] => Ok(BootstrapMatch {
                device: *device,
                certificate: boot,
                manufacturer_ca: ca.clone(),
            }),
            [] => Err(Refusal::forbidden(
                "bootstrap-no-device",
                format!(
                    "no registered device of the product(s) trusting this CA has serial number or hardware id {:?}",
                    boot.device_names
                ),
            )
            .into()),
            _ => Err(Refusal::new(
                RefusalKind::Conflict,
                "bootstrap-ambiguous",
                format!(
                    "{} registered devices match the bootstrap certificate's names {:?}",
                    devices.len(),
                    boot.device_names
                ),
            )
            .into()),
        }
    }

    /// First enrolment of the device a bootstrap certificate stands for (logged as
    /// `est.bootstrap_authenticated` with the IDevID key, then issued).
    pub async fn enrol_bootstrapped(
        &self,
        found: BootstrapMatch,
        csr: ValidatedCsr,
    ) -> Result<CertificateRecord, RequestError> {
        let device = found.device;
        let actor = Actor::device(&device.to_string());
        let boot = &found.certificate;
        self.store
            .append_audit(vec![AuditEvent::new(
                self.now(),
                actor.clone(),
                "est.bootstrap_authenticated",
                format!("device:{device}"),
                Outcome::Success,
                serde_json::json!({
                    "bootstrap_serial": boot.serial,
                    "bootstrap_subject": boot.subject,
                    "bootstrap_spki_sha256": boot.spki_sha256,
                    "manufacturer_ca_sha256": found.manufacturer_ca,
                }),
            )])
            .await?;
        let profile = self.enrollment_profile;
        self.issue(&actor, device, IssuanceBasis::Bootstrap, csr, profile)
            .await
    }

    /// Sigil's record of a verified client certificate, if Sigil issued it and has not revoked
    /// it. It may be superseded: [`Authority::current_identity`] is what authenticates a device.
    pub async fn presented_certificate(
        &self,
        der: Option<&[u8]>,
    ) -> Result<CertificateRecord, RequestError> {
        let der = der.ok_or_else(|| {
            Refusal::unauthenticated(
                "this request needs the device's current certificate as the TLS client certificate",
            )
        })?;
        let (_, cert) = X509Certificate::from_der(der)
            .map_err(|e| Refusal::unauthenticated(format!("client certificate: {e}")))?;
        let serial = Serial::from_bytes(cert.raw_serial())?;
        // Only "no such certificate" is a refusal; a database failure is a 5xx the device retries.
        let record = match self.store.get_certificate(&serial).await {
            Ok(record) => record,
            Err(sigil_store::StoreError::NotFound { .. }) => {
                return Err(Refusal::forbidden(
                    "not-a-device-certificate",
                    "the client certificate is not a device certificate Sigil issued",
                )
                .into());
            }
            Err(e) => return Err(e.into()),
        };
        if record.der.as_slice() != der {
            return Err(Refusal::unauthenticated(
                "the client certificate does not match Sigil's record of that serial",
            )
            .into());
        }
        if record.status == CertificateStatus::Revoked {
            return Err(Refusal::unauthenticated("the client certificate is revoked").into());
        }
        Ok(record)
    }

    /// The device a verified client certificate belongs to, if Sigil issued it and it is the
    /// device's current (active) certificate. A superseded certificate stays valid for relying
    /// parties during its overlap, but never authenticates the device to Sigil: whoever holds an
    /// old key (a backup, a previous owner) must not act as the device.
    pub async fn current_identity(
        &self,
        der: Option<&[u8]>,
    ) -> Result<(DeviceId, CertificateRecord), RequestError> {
        let record = self.presented_certificate(der).await?;
        if record.status != CertificateStatus::Active {
            return Err(not_current(&record).into());
        }
        Ok((record.device_id, record))
    }

    /// Renewal with the device's certificate (`presented`, from
    /// [`Authority::presented_certificate`]): a new certificate with the same profile, which
    /// supersedes the presented one. A superseded certificate renews nothing, except that a
    /// retry after a lost answer gets the renewal it already obtained for the same key.
    pub async fn re_enrol(
        &self,
        presented: CertificateRecord,
        csr: ValidatedCsr,
    ) -> Result<CertificateRecord, RequestError> {
        let device = presented.device_id;
        if presented.status != CertificateStatus::Active {
            return match self.retried_enrolment(device, &csr).await? {
                Some(record) if record.status == CertificateStatus::Active => Ok(record),
                _ => Err(not_current(&presented).into()),
            };
        }
        // Renewal keeps the profile of the certificate it renews.
        let profile = Profile::by_name(&presented.profile)?;
        let actor = Actor::device(&device.to_string());
        let basis = IssuanceBasis::Renewal(presented.serial.clone());
        self.issue(&actor, device, basis, csr, profile).await
    }
}

fn not_current(record: &CertificateRecord) -> Refusal {
    Refusal::forbidden(
        "certificate-not-current",
        format!(
            "certificate {} was superseded by a newer certificate of device {}: only a device's current certificate authenticates it",
            record.serial, record.device_id
        ),
    )
}
