//! Reading the fleet for compliance evaluation: devices a page at a time (or by id) with their
//! certificates and newest posture report, three queries per page and no per-device round
//! trips; only the columns the checks read (no certificate DER unless its key algorithm was
//! not recorded). Also products' declarations, and the audit log as a change feed.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::json;
use sqlx::Row;
use time::OffsetDateTime;

use sigil_audit::{Actor, AuditEvent, Outcome};
use sigil_domain::{DeviceId, ProductDeclaration, ProductId};

use crate::{PostureRecord, Store, StoreError, audit};

/// The inventory facts the checks read about a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComplianceDevice {
    pub id: DeviceId,
    pub product_id: ProductId,
    /// Lifecycle state, as stored (`active`, `retired`, ...).
    pub state: String,
}

/// The certificate facts the checks read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComplianceCertificate {
    pub serial: String,
    pub profile: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub revoked_at: Option<OffsetDateTime>,
    pub spki_sha256: String,
    /// As recorded at issuance; `None` for certificates issued before it was.
    pub key_algorithm: Option<String>,
    /// Only when `key_algorithm` is `None`, to classify the key from.
    pub der: Option<Vec<u8>>,
}

/// One device and what the checks read about it.
#[derive(Debug, Clone)]
pub struct DeviceSnapshot {
    pub device: ComplianceDevice,
    pub certificates: Vec<ComplianceCertificate>,
    pub posture: Option<PostureRecord>,
}

/// One audit entry as the compliance follower reads it: every entry's position, action and
/// device, and the entry itself only for the actions it asked for.
#[derive(Debug, Clone)]
pub struct AuditChange {
    pub seq: u64,
    pub action: String,
    pub device_id: Option<String>,
    pub entry: Option<String>,
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

fn time(v: i64) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::from_unix_timestamp(v).map_err(|e| corrupt("timestamp", e))
}

fn placeholders(from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Store {
    /// Devices after `after` (by id), at most `limit`, with their certificates and newest
    /// posture report.
    pub async fn compliance_page(
        &self,
        after: Option<DeviceId>,
        limit: u32,
    ) -> Result<Vec<DeviceSnapshot>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, product_id, state FROM devices WHERE id > $1 ORDER BY id LIMIT $2",
        )
        .bind(after.map(|a| a.to_string()).unwrap_or_default())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let devices = rows
            .iter()
            .map(device_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let (Some(first), Some(last)) = (devices.first(), devices.last()) else {
            return Ok(Vec::new());
        };
        let range = "device_id >= $1 AND device_id <= $2";
        let binds = [first.id.to_string(), last.id.to_string()];
        self.snapshots(devices, range, &binds).await
    }

    /// The snapshots of `ids` that are in the inventory (unknown ids are left out), by id.
    pub async fn device_snapshots(
        &self,
        ids: &[DeviceId],
    ) -> Result<Vec<DeviceSnapshot>, StoreError> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(crate::MAX_PAGE as usize) {
            let binds: Vec<String> = chunk.iter().map(DeviceId::to_string).collect();
            let list = placeholders(1, binds.len());
            let sql = format!(
                "SELECT id, product_id, state FROM devices WHERE id IN ({list}) ORDER BY id"
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for b in &binds {
                q = q.bind(b.as_str());
            }
            let devices = q
                .fetch_all(&self.pool)
                .await?
                .iter()
                .map(device_from_row)
                .collect::<Result<Vec<_>, _>>()?;
            let clause = format!("device_id IN ({list})");
            out.extend(self.snapshots(devices, &clause, &binds).await?);
        }
        Ok(out)
    }

    /// One device's snapshot.
    pub async fn device_snapshot(&self, id: DeviceId) -> Result<DeviceSnapshot, StoreError> {
        self.device_snapshots(&[id])
            .await?
            .pop()
            .ok_or_else(|| StoreError::NotFound {
                kind: "device",
                id: id.to_string(),
            })
    }

    /// Every certificate's public key (SHA-256 of the SPKI) and device: the fleet-wide key
    /// index, in one light query.
    pub async fn certificate_keys(&self) -> Result<Vec<(String, DeviceId)>, StoreError> {
        sqlx::query("SELECT spki_sha256, device_id FROM certificates")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| {
                let device: String = r.try_get("device_id")?;
                Ok((
                    r.try_get("spki_sha256")?,
                    device
                        .parse()
                        .map_err(|e| corrupt("certificate device", e))?,
                ))
            })
            .collect()
    }

    /// The retired devices (their keys no longer count as shared with the fleet).
    pub async fn retired_devices(&self) -> Result<Vec<DeviceId>, StoreError> {
        sqlx::query("SELECT id FROM devices WHERE state = 'retired'")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| {
                r.try_get::<String, _>("id")?
                    .parse()
                    .map_err(|e| corrupt("device id", e))
            })
            .collect()
    }

    /// `devices` with their certificates and newest posture report; `clause` (over
    /// `device_id`, with `binds`) selects the same devices' rows.
    async fn snapshots(
        &self,
        devices: Vec<ComplianceDevice>,
        clause: &str,
        binds: &[String],
    ) -> Result<Vec<DeviceSnapshot>, StoreError> {
        if devices.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT device_id, serial, profile, not_before, not_after, revoked_at, spki_sha256, \
             key_algorithm, CASE WHEN key_algorithm IS NULL THEN der END AS der \
             FROM certificates WHERE {clause}"
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for b in binds {
            q = q.bind(b.as_str());
        }
        let mut certs: HashMap<String, Vec<ComplianceCertificate>> = HashMap::new();
        for row in q.fetch_all(&self.pool).await? {
            let cert = ComplianceCertificate {
                serial: row.try_get("serial")?,
                profile: row.try_get("profile")?,
                not_before: time(row.try_get("not_before")?)?,
                not_after: time(row.try_get("not_after")?)?,
                revoked_at: row
                    .try_get::<Option<i64>, _>("revoked_at")?
                    .map(time)
                    .transpose()?,
                spki_sha256: row.try_get("spki_sha256")?,
                key_algorithm: row.try_get("key_algorithm")?,
                der: row.try_get("der")?,
            };
            certs
                .entry(row.try_get("device_id")?)
                .or_default()
                .push(cert);
        }
        let p_clause = clause.replace("device_id", "p.device_id");
        let sql = format!(
            "SELECT p.id, p.device_id, p.received_at, p.report FROM posture_reports p \
             WHERE {p_clause} \
             AND p.id = (SELECT MAX(q.id) FROM posture_reports q WHERE q.device_id = p.device_id)"
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for b in binds {
            q = q.bind(b.as_str());
        }
        let mut postures: HashMap<String, PostureRecord> = HashMap::new();
        for row in q.fetch_all(&self.pool).await? {
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
                    received_at: time(row.try_get("received_at")?)?,
                    posture: serde_json::from_str(&report)
                        .map_err(|e| corrupt("posture report", e))?,
                },
            );
        }
        Ok(devices
            .into_iter()
            .map(|device| {
                let id = device.id.to_string();
                DeviceSnapshot {
                    certificates: certs.remove(&id).unwrap_or_default(),
                    posture: postures.remove(&id),
                    device,
                }
            })
            .collect())
    }

    /// Record what `product`'s maker declares (replacing the previous declaration), audited as
    /// `product.declared`.
    pub async fn declare_product(
        &self,
        actor: &Actor,
        product: ProductId,
        declaration: &ProductDeclaration,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        self.get_product(product).await?;
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM product_declarations WHERE product_id = $1")
            .bind(product.to_string())
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO product_declarations (product_id, current_firmware, allowed_services, sboms, updated_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(product.to_string())
        .bind(json_text(&declaration.current_firmware))
        .bind(json_text(&declaration.allowed_services))
        .bind(json_text(&declaration.sboms))
        .bind(now.unix_timestamp())
        .execute(&mut *tx)
        .await?;
        audit::append(
            &mut tx,
            vec![AuditEvent::new(
                now,
                actor.clone(),
                "product.declared",
                format!("product:{product}"),
                Outcome::Success,
                json!({"declaration": declaration}),
            )],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every product's declaration.
    pub async fn product_declarations(
        &self,
    ) -> Result<HashMap<ProductId, ProductDeclaration>, StoreError> {
        let rows = sqlx::query(
            "SELECT product_id, current_firmware, allowed_services, sboms FROM product_declarations",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut out = HashMap::new();
        for row in rows {
            let id: String = row.try_get("product_id")?;
            let field = |column: &str| -> Result<serde_json::Value, StoreError> {
                let text: String = row.try_get(column)?;
                serde_json::from_str(&text).map_err(|e| corrupt(column, e))
            };
            let declaration = ProductDeclaration {
                current_firmware: serde_json::from_value(field("current_firmware")?)
                    .map_err(|e| corrupt("current_firmware", e))?,
                allowed_services: serde_json::from_value(field("allowed_services")?)
                    .map_err(|e| corrupt("allowed_services", e))?,
                sboms: serde_json::from_value(field("sboms")?).map_err(|e| corrupt("sboms", e))?,
            };
            out.insert(
                id.parse().map_err(|e| corrupt("declaration product", e))?,
                declaration,
            );
        }
        Ok(out)
    }

    /// The entries from position `from` on (at most `limit`): each one's action and device,
    /// and the entry itself for `wanted` actions. Also returns the position after the last
    /// entry read.
    pub async fn audit_changes_since(
        &self,
        from: u64,
        limit: u32,
        wanted: &[&str],
    ) -> Result<(Vec<AuditChange>, u64), StoreError> {
        let list = placeholders(3, wanted.len());
        let entry = if wanted.is_empty() {
            "NULL".to_owned()
        } else {
            format!("CASE WHEN action IN ({list}) THEN entry END")
        };
        let sql = format!(
            "SELECT seq, action, device_id, {entry} AS entry FROM audit_entries \
             WHERE seq >= $1 ORDER BY seq LIMIT $2"
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(i64::try_from(from).map_err(|e| corrupt("position", e))?)
            .bind(i64::from(limit));
        for w in wanted {
            q = q.bind(*w);
        }
        let mut next = from;
        let mut out = Vec::new();
        for row in q.fetch_all(&self.pool).await? {
            let seq = u64::try_from(row.try_get::<i64, _>("seq")?)
                .map_err(|e| corrupt("audit position", e))?;
            next = seq + 1;
            out.push(AuditChange {
                seq,
                action: row.try_get("action")?,
                device_id: row.try_get("device_id")?,
                entry: row.try_get("entry")?,
            });
        }
        Ok((out, next))
    }
}

fn device_from_row(row: &sqlx::any::AnyRow) -> Result<ComplianceDevice, StoreError> {
    Ok(ComplianceDevice {
        id: row
            .try_get::<String, _>("id")?
            .parse()
            .map_err(|e| corrupt("device id", e))?,
        product_id: row
            .try_get::<String, _>("product_id")?
            .parse()
            .map_err(|e| corrupt("device product", e))?,
        state: row.try_get("state")?,
    })
}

/// JSON text of a declaration field (serialising strings and maps of strings cannot fail).
fn json_text<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}
