//! Foreign certificates: another CA's certificates of a device, imported for the inventory and
//! expiry tracking. They are never trusted: the TLS verifiers, EST and bootstrap never read
//! them (see `sigil_ca::foreign`).

use sigil_audit::Actor;
use sigil_ca::foreign::parse_foreign_bundle;
use sigil_domain::DeviceId;
use sigil_store::{ForeignImport, ForeignRecord};

use crate::{Authority, RequestError};

impl Authority {
    /// Check a PEM bundle and record its certificates for `device` (all, or none).
    pub async fn import_foreign_certificates(
        &self,
        actor: &Actor,
        device: DeviceId,
        pem: &str,
    ) -> Result<ForeignImport, RequestError> {
        let ca = self.ca();
        let parsed = parse_foreign_bundle(pem, &[ca.issuing_cert_der(), ca.root_cert_der()])?;
        let now = self.now();
        let records: Vec<ForeignRecord> = parsed
            .into_iter()
            .map(|c| ForeignRecord {
                device_id: device.to_string(),
                sha256: c.sha256.to_string(),
                subject: c.subject,
                issuer: c.issuer,
                serial: c.serial,
                not_before: c.not_before,
                not_after: c.not_after,
                spki_sha256: c.spki_sha256,
                der: c.der,
                imported_by: actor.id.clone(),
                imported_at: now,
            })
            .collect();
        Ok(self
            .store
            .import_foreign_certificates(actor, device, &records, now)
            .await?)
    }

    /// The device's foreign certificates, soonest to expire first.
    pub async fn foreign_certificates(
        &self,
        device: DeviceId,
    ) -> Result<Vec<ForeignRecord>, RequestError> {
        self.store.get_device(device).await?;
        Ok(self.store.foreign_certificates(device).await?)
    }

    pub async fn remove_foreign_certificate(
        &self,
        actor: &Actor,
        device: DeviceId,
        sha256: &str,
    ) -> Result<(), RequestError> {
        Ok(self
            .store
            .remove_foreign_certificate(actor, device, sha256, self.now())
            .await?)
    }
}
