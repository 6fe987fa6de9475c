//! Posture reports: every report a device's agent sent, and the firmware version it implies
//! for the inventory.

use serde_json::json;
use sqlx::Row;
use time::OffsetDateTime;

use sigil_audit::{Actor, AuditEvent, Outcome};
use sigil_domain::{DeviceId, LifecycleState, Posture};

use crate::revocation::hex_sha256;
use crate::{Store, StoreError, audit};

/// A stored report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostureRecord {
    pub id: String,
    pub device_id: DeviceId,
    pub received_at: OffsetDateTime,
    pub posture: Posture,
}

impl Store {
    /// Store `posture` for `device` (which must not be retired), update the inventory's
    /// firmware version when the report names a different one, and log both.
    pub async fn record_posture(
        &self,
        actor: &Actor,
        device: DeviceId,
        posture: &Posture,
        now: OffsetDateTime,
    ) -> Result<PostureRecord, StoreError> {
        let report = serde_json::to_string(posture)
            .map_err(|e| StoreError::Corrupt(format!("posture: {e}")))?;
        let record = PostureRecord {
            id: uuid::Uuid::now_v7().to_string(),
            device_id: device,
            received_at: now.replace_nanosecond(0).unwrap_or(now),
            posture: posture.clone(),
        };
        let mut tx = self.begin_write().await?;
        if self.locked_state(&mut tx, device).await? == LifecycleState::Retired {
            return Err(StoreError::Conflict(format!(
                "device {device} is retired; it reports nothing"
            )));
        }
        let previous: Option<String> =
            sqlx::query("SELECT firmware_version FROM devices WHERE id = $1")
                .bind(device.to_string())
                .fetch_one(&mut *tx)
                .await?
                .try_get("firmware_version")?;
        sqlx::query(
            "INSERT INTO posture_reports (id, device_id, received_at, report) VALUES ($1, $2, $3, $4)",
        )
        .bind(&record.id)
        .bind(device.to_string())
        .bind(record.received_at.unix_timestamp())
        .bind(&report)
        .execute(&mut *tx)
        .await?;
        let mut events = vec![AuditEvent::new(
            now,
            actor.clone(),
            "posture.reported",
            format!("device:{device}"),
            Outcome::Success,
            json!({
                "report": record.id,
                "sha256": hex_sha256(report.as_bytes()),
                "secure_boot": posture.secure_boot,
                "default_password": posture.default_password,
                "listening_services": posture.listening_services.len(),
                "debug_interfaces": posture.debug_interfaces,
            }),
        )];
        if let Some(firmware) = &posture.firmware_version
            && previous.as_ref() != Some(firmware)
        {
            sqlx::query("UPDATE devices SET firmware_version = $1, updated_at = $2 WHERE id = $3")
                .bind(firmware)
                .bind(now.unix_timestamp())
                .bind(device.to_string())
                .execute(&mut *tx)
                .await?;
            events.push(AuditEvent::new(
                now,
                actor.clone(),
                "device.firmware_changed",
                format!("device:{device}"),
                Outcome::Success,
                json!({"from": previous, "to": firmware}),
            ));
        }
        audit::append(&mut tx, events).await?;
        tx.commit().await?;
        Ok(record)
    }

    /// A device's reports, newest first, at most `limit`.
    pub async fn posture_history(
        &self,
        device: DeviceId,
        limit: u32,
    ) -> Result<Vec<PostureRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, received_at, report FROM posture_reports WHERE device_id = $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(device.to_string())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let report: String = row.try_get("report")?;
                Ok(PostureRecord {
                    id: row.try_get("id")?,
                    device_id: device,
                    received_at: OffsetDateTime::from_unix_timestamp(row.try_get("received_at")?)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    posture: serde_json::from_str(&report)
                        .map_err(|e| StoreError::Corrupt(format!("posture report: {e}")))?,
                })
            })
            .collect()
    }
}
