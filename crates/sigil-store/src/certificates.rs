//! Device certificates: issuance (checked, then recorded by the group-commit writer) and reads.

use std::str::FromStr;

use sqlx::Row;
use time::OffsetDateTime;

use sigil_audit::Actor;
use sigil_domain::{DeviceId, Fingerprint, LifecycleState, Serial};

use tokio::sync::oneshot;

use crate::rows::{CERT_COLUMNS, certificate_from_row};
use crate::{
    CertificateRecord, IssuanceBasis, IssueError, MAX_PAGE, NewCertificate, Store, StoreError,
    batch,
};

impl Store {
    /// Issue a certificate to `device`.
    ///
    /// A read-only pre-check refuses devices that may not receive an identity and keys bound to
    /// another device before anything is signed. Then `sign` runs (in the caller's task, so
    /// signing uses every core), and the certificate goes to the group-commit writer, which
    /// repeats the checks authoritatively inside the transaction that records the certificate,
    /// binds the key and advances the lifecycle. The caller gets the record only after that
    /// transaction committed; a certificate whose recording is refused is dropped unreleased.
    #[allow(clippy::too_many_arguments)]
    pub async fn issue_certificate<E>(
        &self,
        actor: &Actor,
        device: DeviceId,
        basis: IssuanceBasis,
        spki_sha256: &Fingerprint,
        now: OffsetDateTime,
        sign: impl FnOnce() -> Result<NewCertificate, E>,
    ) -> Result<CertificateRecord, IssueError<E>> {
        self.precheck_issuance(device, &basis, spki_sha256).await?;
        let cert = sign().map_err(IssueError::Sign)?;
        if cert.spki_sha256 != *spki_sha256 {
            return Err(StoreError::Corrupt(
                "signed certificate certifies a different key than checked".into(),
            )
            .into());
        }
        let (reply, answer) = oneshot::channel();
        self.recorder
            .send(batch::RecordJob {
                actor: actor.clone(),
                device,
                basis,
                cert,
                now,
                reply,
            })
            .await
            .map_err(|_| StoreError::Closed)?;
        Ok(answer.await.map_err(|_| StoreError::Closed)??)
    }

    async fn precheck_issuance(
        &self,
        device: DeviceId,
        basis: &IssuanceBasis,
        spki_sha256: &Fingerprint,
    ) -> Result<(), StoreError> {
        let row = sqlx::query(
            "SELECT d.state, (SELECT k.device_id FROM device_keys k WHERE k.spki_sha256 = $2) AS key_owner \
             FROM devices d WHERE d.id = $1",
        )
        .bind(device.to_string())
        .bind(spki_sha256.as_str())
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::NotFound { kind: "device", id: device.to_string() })?;
        let corrupt = |e: &dyn std::fmt::Display| StoreError::Corrupt(e.to_string());
        let state = LifecycleState::from_str(&row.try_get::<String, _>("state")?)
            .map_err(|e| corrupt(&e))?;
        let key_owner = row
            .try_get::<Option<String>, _>("key_owner")?
            .map(|o| DeviceId::from_str(&o).map_err(|e| corrupt(&e)))
            .transpose()?;
        sigil_domain::issuance_rule(device, state, key_owner)?;
        if *basis != IssuanceBasis::Authorised {
            let credentials = batch::read_credentials(&self.pool, &[device.to_string()]).await?;
            batch::entitlement_rule(
                basis,
                &credentials.get(&device).cloned().unwrap_or_default(),
            )?;
        }
        Ok(())
    }

    pub async fn get_certificate(&self, serial: &Serial) -> Result<CertificateRecord, StoreError> {
        let sql = format!("SELECT {CERT_COLUMNS} FROM certificates WHERE serial = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(serial.as_str())
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound {
                kind: "certificate",
                id: serial.to_string(),
            })?;
        certificate_from_row(&row)
    }

    /// Certificates, newest first, optionally for one device.
    pub async fn list_certificates(
        &self,
        device: Option<DeviceId>,
        limit: u32,
    ) -> Result<Vec<CertificateRecord>, StoreError> {
        let limit = i64::from(limit.clamp(1, MAX_PAGE));
        let rows = match device {
            Some(d) => {
                let sql = format!(
                    "SELECT {CERT_COLUMNS} FROM certificates WHERE device_id = $1 ORDER BY issued_at DESC, serial LIMIT {limit}"
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(d.to_string())
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                let sql = format!(
                    "SELECT {CERT_COLUMNS} FROM certificates ORDER BY issued_at DESC, serial LIMIT {limit}"
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.iter().map(certificate_from_row).collect()
    }

    /// Every certificate, by serial, a page at a time (for snapshots).
    pub async fn certificates_after(
        &self,
        after: Option<&Serial>,
        limit: u32,
    ) -> Result<Vec<CertificateRecord>, StoreError> {
        let limit = i64::from(limit.clamp(1, MAX_PAGE));
        let sql = format!(
            "SELECT {CERT_COLUMNS} FROM certificates WHERE serial > $1 ORDER BY serial LIMIT {limit}"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(after.map(|s| s.as_str().to_owned()).unwrap_or_default())
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(certificate_from_row)
            .collect()
    }

    // ---- API tokens ----------------------------------------------------------------------
}
