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

use crate::rows::ts;
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
    /// When the device's last behaviour metrics report reached the detector.
    pub metrics_at: Option<OffsetDateTime>,
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

impl Store {
    /// Devices after `after` (by id), at most `limit`, with their certificates and newest
    /// posture report.
    pub async fn compliance_page(
        &self,
        after: Option<DeviceId>,
        limit: u32,
    ) -> Result<Vec<DeviceSnapshot>, StoreError> {
        self.compliance_range(after, None, limit).await
    }

    /// Like [`Store::compliance_page`], stopping at `until` (inclusive): readers of disjoint
    /// ranges can run side by side.
    pub async fn compliance_range(
        &self,
        after: Option<DeviceId>,
        until: Option<DeviceId>,
        limit: u32,
    ) -> Result<Vec<DeviceSnapshot>, StoreError> {
        // The whole page is one value: the driver's cost per row (a thread hand-off and
        // allocator traffic under SQLite's mutex) would otherwise dominate a fleet scan.
        let aggregate = match self.backend {
            crate::Backend::Sqlite => "group_concat(facts, ',')",
            crate::Backend::Postgres => "string_agg(facts, ',')",
        };
        let sql = format!(
            "SELECT '[' || {aggregate} || ']' AS page FROM (SELECT {} AS facts FROM devices d \
             WHERE d.id > $1 AND d.id <= $2 ORDER BY d.id LIMIT $3) t",
            self.packed_facts()
        );
        let page: Option<String> = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(after.map(|a| a.to_string()).unwrap_or_default())
            .bind(until.unwrap_or(DeviceId::max()).to_string())
            .bind(i64::from(limit))
            .fetch_one(&self.pool)
            .await?
            .try_get("page")?;
        let Some(page) = page else {
            return Ok(Vec::new());
        };
        let packed: Vec<Packed> =
            serde_json::from_str(&page).map_err(|e| corrupt("compliance facts", e))?;
        let mut out = packed
            .into_iter()
            .map(from_packed)
            .collect::<Result<Vec<_>, _>>()?;
        // The aggregate does not promise the subquery's order.
        out.sort_unstable_by_key(|s| s.device.id);
        Ok(out)
    }

    /// Device ids splitting the inventory into `parts` ranges of about equal size (fewer when
    /// there are fewer devices): the last id of each range but the last.
    pub async fn device_splits(&self, parts: u32) -> Result<Vec<DeviceId>, StoreError> {
        let count: i64 = sqlx::query("SELECT count(*) AS n FROM devices")
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?;
        let mut out = Vec::new();
        for k in 1..i64::from(parts) {
            let offset = count * k / i64::from(parts);
            if offset == 0 {
                continue;
            }
            let row = sqlx::query("SELECT id FROM devices ORDER BY id LIMIT 1 OFFSET $1")
                .bind(offset - 1)
                .fetch_optional(&self.pool)
                .await?;
            if let Some(row) = row {
                let id: String = row.try_get("id")?;
                out.push(id.parse().map_err(|e| corrupt("device id", e))?);
            }
        }
        out.dedup();
        Ok(out)
    }

    /// The snapshots of `ids` that are in the inventory (unknown ids are left out), by id.
    pub async fn device_snapshots(
        &self,
        ids: &[DeviceId],
    ) -> Result<Vec<DeviceSnapshot>, StoreError> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(crate::MAX_PAGE as usize) {
            let sql = format!(
                "SELECT {} AS facts FROM devices d WHERE d.id IN ({}) ORDER BY d.id",
                self.packed_facts(),
                crate::batch::placeholders(chunk.len())
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for id in chunk {
                q = q.bind(id.to_string());
            }
            for row in q.fetch_all(&self.pool).await? {
                out.push(unpack(&row)?);
            }
        }
        Ok(out)
    }

    /// One JSON value per device (`d`) holding everything the checks read:
    /// `[[id, product, state, metrics at], [report id, received at] | null, report | null,
    /// [certificate...]]`.
    /// The database assembles it because the driver's cost is per value decoded, and it is
    /// assembled by concatenation because the stored report is JSON already (validated when
    /// received): re-encoding it with the database's JSON functions costs more than everything
    /// else (measured with sigil-compliance-bench). Certificate DER is included (hex) only where
    /// the key algorithm was not recorded.
    fn packed_facts(&self) -> &'static str {
        match self.backend {
            crate::Backend::Sqlite => {
                "'[' || json_array(d.id, d.product_id, d.state, d.metrics_at) || ',' || \
                 ifnull((SELECT json_array(p.id, p.received_at) || ',' || p.report \
                     FROM posture_reports p WHERE p.device_id = d.id ORDER BY p.id DESC LIMIT 1), \
                     'null,null') || ',' || \
                 (SELECT json_group_array(json_array(c.serial, c.profile, c.not_before, \
                     c.not_after, c.revoked_at, c.spki_sha256, c.key_algorithm, \
                     CASE WHEN c.key_algorithm IS NULL THEN hex(c.der) END)) \
                     FROM certificates c WHERE c.device_id = d.id) || ']'"
            }
            crate::Backend::Postgres => {
                "'[' || json_build_array(d.id, d.product_id, d.state, d.metrics_at)::text || ',' || \
                 COALESCE((SELECT json_build_array(p.id, p.received_at)::text || ',' || p.report \
                     FROM posture_reports p WHERE p.device_id = d.id ORDER BY p.id DESC LIMIT 1), \
                     'null,null') || ',' || \
                 COALESCE((SELECT json_agg(json_build_array(c.serial, c.profile, c.not_before, \
                     c.not_after, c.revoked_at, c.spki_sha256, c.key_algorithm, \
                     CASE WHEN c.key_algorithm IS NULL THEN encode(c.der, 'hex') END))::text \
                     FROM certificates c WHERE c.device_id = d.id), '[]') || ']'"
            }
        }
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
            "INSERT INTO product_declarations (product_id, current_firmware, allowed_services, sboms, remediation_days, updated_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(product.to_string())
        .bind(json_text(&declaration.current_firmware))
        .bind(json_text(&declaration.allowed_services))
        .bind(json_text(&declaration.sboms))
        .bind(declaration.remediation_days.map(i64::from))
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
            "SELECT product_id, current_firmware, allowed_services, sboms, remediation_days FROM product_declarations",
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
                remediation_days: row
                    .try_get::<Option<i64>, _>("remediation_days")?
                    .map(|d| u32::try_from(d).map_err(|e| corrupt("remediation_days", e)))
                    .transpose()?,
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
        let list = crate::batch::placeholders_from(3, wanted.len());
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

/// A certificate as packed by [`Store::packed_facts`]: serial, profile, not before, not after,
/// revoked at, SPKI SHA-256, key algorithm, DER (hex) when the algorithm is not recorded.
type PackedCertificate = (
    String,
    String,
    i64,
    i64,
    Option<i64>,
    String,
    Option<String>,
    Option<String>,
);

/// [`Store::packed_facts`]: (id, product, state, metrics at), (report id, received at), report,
/// certificates.
type Packed = (
    (String, String, String, Option<i64>),
    Option<(String, i64)>,
    Option<sigil_domain::Posture>,
    Vec<PackedCertificate>,
);

fn unpack(row: &sqlx::any::AnyRow) -> Result<DeviceSnapshot, StoreError> {
    let text: String = row.try_get("facts")?;
    from_packed(serde_json::from_str(&text).map_err(|e| corrupt("compliance facts", e))?)
}

fn from_packed(
    ((device, product, state, metrics_at), report, posture, certs): Packed,
) -> Result<DeviceSnapshot, StoreError> {
    let id: DeviceId = device.parse().map_err(|e| corrupt("device id", e))?;
    let certificates = certs
        .into_iter()
        .map(
            |(serial, profile, not_before, not_after, revoked_at, spki, algorithm, der)| {
                Ok(ComplianceCertificate {
                    serial,
                    profile,
                    not_before: ts(not_before)?,
                    not_after: ts(not_after)?,
                    revoked_at: revoked_at.map(ts).transpose()?,
                    spki_sha256: spki,
                    key_algorithm: algorithm,
                    der: der
                        .map(|h| hex::decode(h).map_err(|e| corrupt("certificate DER", e)))
                        .transpose()?,
                })
            },
        )
        .collect::<Result<Vec<_>, StoreError>>()?;
    let posture = match (report, posture) {
        (Some((report_id, received_at)), Some(posture)) => Some(PostureRecord {
            id: report_id,
            device_id: id,
            received_at: ts(received_at)?,
            posture,
        }),
        _ => None,
    };
    Ok(DeviceSnapshot {
        device: ComplianceDevice {
            id,
            product_id: product.parse().map_err(|e| corrupt("device product", e))?,
            state,
        },
        certificates,
        posture,
        metrics_at: metrics_at.map(ts).transpose()?,
    })
}

/// JSON text of a declaration field (serialising strings and maps of strings cannot fail).
fn json_text<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}
