//! Foreign certificates: what another CA issued to a device, kept for the inventory and for
//! expiry tracking. Nothing that decides trust reads this table.

use serde_json::json;
use sqlx::Row;
use time::OffsetDateTime;

use sigil_audit::{Actor, AuditEvent, Outcome};
use sigil_domain::DeviceId;

use crate::rows::ts;
use crate::{Store, StoreError, audit};

/// A foreign certificate as imported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignRecord {
    pub device_id: String,
    pub sha256: String,
    pub subject: String,
    pub issuer: String,
    pub serial: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub spki_sha256: String,
    pub der: Vec<u8>,
    pub imported_by: String,
    pub imported_at: OffsetDateTime,
}

/// What an import changed: the certificates added and those the device had already.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ForeignImport {
    pub added: Vec<String>,
    pub already: Vec<String>,
}

const COLUMNS: &str = "device_id, sha256, subject, issuer, serial, not_before, not_after, spki_sha256, der, imported_by, imported_at";

fn record(r: &sqlx::any::AnyRow) -> Result<ForeignRecord, StoreError> {
    Ok(ForeignRecord {
        device_id: r.try_get("device_id")?,
        sha256: r.try_get("sha256")?,
        subject: r.try_get("subject")?,
        issuer: r.try_get("issuer")?,
        serial: r.try_get("serial")?,
        not_before: ts(r.try_get("not_before")?)?,
        not_after: ts(r.try_get("not_after")?)?,
        spki_sha256: r.try_get("spki_sha256")?,
        der: r.try_get("der")?,
        imported_by: r.try_get("imported_by")?,
        imported_at: ts(r.try_get("imported_at")?)?,
    })
}

impl Store {
    /// Record `certificates` (already checked) for `device`, in one transaction with one
    /// `certificate.foreign-imported` audit entry naming each. A certificate the device has
    /// already is left as it is.
    pub async fn import_foreign_certificates(
        &self,
        actor: &Actor,
        device: DeviceId,
        certificates: &[ForeignRecord],
        now: OffsetDateTime,
    ) -> Result<ForeignImport, StoreError> {
        let mut tx = self.begin_write().await?;
        if self.locked_state(&mut tx, device).await? == sigil_domain::LifecycleState::Retired {
            return Err(StoreError::Conflict(format!(
                "device {device} is retired: it holds no identity to track"
            )));
        }
        let mut result = ForeignImport::default();
        for c in certificates {
            let inserted = sqlx::query(
                "INSERT INTO foreign_certificates (device_id, sha256, subject, issuer, serial, not_before, not_after, spki_sha256, der, imported_by, imported_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (device_id, sha256) DO NOTHING",
            )
            .bind(device.to_string())
            .bind(&c.sha256)
            .bind(&c.subject)
            .bind(&c.issuer)
            .bind(&c.serial)
            .bind(c.not_before.unix_timestamp())
            .bind(c.not_after.unix_timestamp())
            .bind(&c.spki_sha256)
            .bind(c.der.clone())
            .bind(&actor.id)
            .bind(now.unix_timestamp())
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if inserted == 1 {
                result.added.push(c.sha256.clone());
            } else {
                result.already.push(c.sha256.clone());
            }
        }
        let described: Vec<_> = certificates
            .iter()
            .filter(|c| result.added.contains(&c.sha256))
            .map(|c| {
                json!({"sha256": c.sha256, "subject": c.subject, "issuer": c.issuer,
                            "serial": c.serial, "not_after": c.not_after.unix_timestamp()})
            })
            .collect();
        if !described.is_empty() {
            audit::append(
                &mut tx,
                vec![AuditEvent::new(
                    now,
                    actor.clone(),
                    "certificate.foreign-imported",
                    format!("device:{device}"),
                    Outcome::Success,
                    json!({"certificates": described, "trusted": false}),
                )],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(result)
    }

    /// The device's foreign certificates, soonest to expire first.
    pub async fn foreign_certificates(
        &self,
        device: DeviceId,
    ) -> Result<Vec<ForeignRecord>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM foreign_certificates WHERE device_id = $1 ORDER BY not_after, sha256"
        )))
        .bind(device.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(record).collect()
    }

    /// Forget one foreign certificate of a device (audited `certificate.foreign-removed`).
    pub async fn remove_foreign_certificate(
        &self,
        actor: &Actor,
        device: DeviceId,
        sha256: &str,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let removed =
            sqlx::query("DELETE FROM foreign_certificates WHERE device_id = $1 AND sha256 = $2")
                .bind(device.to_string())
                .bind(sha256)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        if removed == 0 {
            return Err(StoreError::NotFound {
                kind: "foreign certificate",
                id: sha256.to_owned(),
            });
        }
        audit::append(
            &mut tx,
            vec![AuditEvent::new(
                now,
                actor.clone(),
                "certificate.foreign-removed",
                format!("device:{device}"),
                Outcome::Success,
                json!({"sha256": sha256}),
            )],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Foreign certificates of the fleet that expire before each of `limits` (and after
    /// `now`), and those expired already: the overview's counts.
    pub async fn foreign_expiry_counts(
        &self,
        now: OffsetDateTime,
        limits: &[OffsetDateTime],
    ) -> Result<(Vec<i64>, i64), StoreError> {
        let mut counts = Vec::with_capacity(limits.len());
        for limit in limits {
            let n: i64 = sqlx::query(
                "SELECT COUNT(*) AS n FROM foreign_certificates WHERE not_after > $1 AND not_after <= $2",
            )
            .bind(now.unix_timestamp())
            .bind(limit.unix_timestamp())
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?;
            counts.push(n);
        }
        let expired: i64 =
            sqlx::query("SELECT COUNT(*) AS n FROM foreign_certificates WHERE not_after <= $1")
                .bind(now.unix_timestamp())
                .fetch_one(&self.pool)
                .await?
                .try_get("n")?;
        Ok((counts, expired))
    }
}
