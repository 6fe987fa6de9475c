//! Device imports: which of a file's devices are already registered, and writing all of a
//! file's devices (with one summary entry) in one transaction, or none.

use std::collections::HashSet;

use serde_json::json;
use sqlx::Row;
use time::OffsetDateTime;

use sigil_audit::{Actor, AuditEvent, Outcome};
use sigil_domain::{Device, NewDevice, ProductId};

use crate::{Store, StoreError};

/// Keys per query (well under SQLite's and PostgreSQL's bound-parameter limits).
const CHUNK: usize = 400;

/// Devices of a file that are already registered.
#[derive(Debug, Default)]
pub struct Registered {
    /// (product, serial number) pairs taken.
    pub serials: HashSet<(ProductId, String)>,
    /// Hardware ids taken.
    pub hardware_ids: HashSet<String>,
}

impl Store {
    pub async fn registered_devices(
        &self,
        devices: &[&NewDevice],
    ) -> Result<Registered, StoreError> {
        let mut found = Registered::default();
        for chunk in devices.chunks(CHUNK) {
            let pairs: Vec<String> = (0..chunk.len())
                .map(|i| format!("(${}, ${})", 2 * i + 1, 2 * i + 2))
                .collect();
            let sql = format!(
                "SELECT product_id, serial_number FROM devices WHERE (product_id, serial_number) IN (VALUES {})",
                pairs.join(", ")
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for d in chunk {
                query = query
                    .bind(d.product_id.to_string())
                    .bind(d.serial_number.clone());
            }
            for row in query.fetch_all(&self.pool).await? {
                let product: String = row.try_get("product_id")?;
                let product = product
                    .parse()
                    .map_err(|_| StoreError::Corrupt(format!("product id `{product}`")))?;
                found
                    .serials
                    .insert((product, row.try_get("serial_number")?));
            }
            let hardware: Vec<&String> = chunk
                .iter()
                .filter_map(|d| d.hardware_id.as_ref())
                .collect();
            if hardware.is_empty() {
                continue;
            }
            let marks: Vec<String> = (1..=hardware.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT hardware_id FROM devices WHERE hardware_id IN ({})",
                marks.join(", ")
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for hw in hardware {
                query = query.bind(hw.clone());
            }
            for row in query.fetch_all(&self.pool).await? {
                found.hardware_ids.insert(row.try_get("hardware_id")?);
            }
        }
        Ok(found)
    }

    /// Register every device of an import in one transaction, each audited as created, and
    /// the import itself (its file's SHA-256 and size) as one more entry: all or nothing.
    pub async fn import_devices(
        &self,
        actor: &Actor,
        devices: Vec<NewDevice>,
        file_sha256: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<Device>, StoreError> {
        let summary = AuditEvent::new(
            now,
            actor.clone(),
            "device.imported",
            format!("import:{file_sha256}"),
            Outcome::Success,
            json!({"devices": devices.len(), "sha256": file_sha256}),
        );
        self.create_devices_with(actor, devices, now, vec![summary])
            .await
    }
}
