//! Reading the fleet for compliance evaluation: devices a page at a time with their
//! certificates and newest posture report, three range queries per page (no per-device
//! round trips).

use std::collections::HashMap;

use sqlx::Row;
use time::OffsetDateTime;

use sigil_domain::{Device, DeviceFilter, DeviceId};

use crate::rows::{CERT_COLUMNS, certificate_from_row};
use crate::{CertificateRecord, PostureRecord, Store, StoreError};

/// One device and what the checks read about it.
#[derive(Debug, Clone)]
pub struct DeviceSnapshot {
    pub device: Device,
    pub certificates: Vec<CertificateRecord>,
    pub posture: Option<PostureRecord>,
}

impl Store {
    /// Devices after `after` (by id), at most `limit`, with their certificates and newest
    /// posture report.
    pub async fn compliance_page(
        &self,
        after: Option<DeviceId>,
        limit: u32,
    ) -> Result<Vec<DeviceSnapshot>, StoreError> {
        let devices = self
            .list_devices(&DeviceFilter {
                after,
                limit,
                ..DeviceFilter::default()
            })
            .await?;
        self.snapshots(devices).await
    }

    /// One device's snapshot.
    pub async fn device_snapshot(&self, id: DeviceId) -> Result<DeviceSnapshot, StoreError> {
        let device = self.get_device(id).await?;
        self.snapshots(vec![device])
            .await?
            .pop()
            .ok_or_else(|| StoreError::Corrupt("snapshot of one device is empty".into()))
    }

    /// Every certificate's public key (SHA-256 of the SPKI) and device: the fleet-wide key
    /// index, in one light query.
    pub async fn certificate_keys(&self) -> Result<Vec<(String, String)>, StoreError> {
        sqlx::query("SELECT spki_sha256, device_id FROM certificates")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| Ok((r.try_get("spki_sha256")?, r.try_get("device_id")?)))
            .collect()
    }

    /// `devices` (sorted by id) with their certificates and newest posture report, by range.
    async fn snapshots(&self, devices: Vec<Device>) -> Result<Vec<DeviceSnapshot>, StoreError> {
        let (Some(first), Some(last)) = (devices.first(), devices.last()) else {
            return Ok(Vec::new());
        };
        let (lo, hi) = (first.id.to_string(), last.id.to_string());
        let sql = format!(
            "SELECT {CERT_COLUMNS} FROM certificates WHERE device_id >= $1 AND device_id <= $2"
        );
        let mut certs: HashMap<DeviceId, Vec<CertificateRecord>> = HashMap::new();
        for row in sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&lo)
            .bind(&hi)
            .fetch_all(&self.pool)
            .await?
        {
            let c = certificate_from_row(&row)?;
            certs.entry(c.device_id).or_default().push(c);
        }
        let mut postures: HashMap<String, PostureRecord> = HashMap::new();
        for row in sqlx::query(
            "SELECT p.id, p.device_id, p.received_at, p.report FROM posture_reports p \
             WHERE p.device_id >= $1 AND p.device_id <= $2 \
             AND p.id = (SELECT MAX(q.id) FROM posture_reports q WHERE q.device_id = p.device_id)",
        )
        .bind(&lo)
        .bind(&hi)
        .fetch_all(&self.pool)
        .await?
        {
            let device: String = row.try_get("device_id")?;
            let report: String = row.try_get("report")?;
            let device_id = device
                .parse()
                .map_err(|_| StoreError::Corrupt(format!("posture for bad device id {device}")))?;
            postures.insert(
                device,
                PostureRecord {
                    id: row.try_get("id")?,
                    device_id,
                    received_at: OffsetDateTime::from_unix_timestamp(row.try_get("received_at")?)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    posture: serde_json::from_str(&report)
                        .map_err(|e| StoreError::Corrupt(format!("posture report: {e}")))?,
                },
            );
        }
        Ok(devices
            .into_iter()
            .map(|device| DeviceSnapshot {
                certificates: certs.remove(&device.id).unwrap_or_default(),
                posture: postures.remove(&device.id.to_string()),
                device,
            })
            .collect())
    }
}
