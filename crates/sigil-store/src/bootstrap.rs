//! Manufacturer (IDevID) CAs trusted per product, and finding the device a bootstrap
//! certificate names.

use serde_json::json;
use sqlx::Row;
use time::OffsetDateTime;

use sigil_audit::{Actor, AuditEvent, Outcome};
use sigil_domain::{DeviceId, Fingerprint, ProductId};

use crate::{Store, StoreError, audit, unique_to_conflict};

/// A registered manufacturer CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManufacturerCaRecord {
    pub id: String,
    pub product_id: ProductId,
    pub sha256: Fingerprint,
    pub subject: String,
    pub der: Vec<u8>,
    pub not_after: OffsetDateTime,
    pub created_at: OffsetDateTime,
}

const COLUMNS: &str = "id, product_id, sha256, subject, der, not_after, created_at";

fn record_from_row(row: &sqlx::any::AnyRow) -> Result<ManufacturerCaRecord, StoreError> {
    let corrupt = |what: &str, e: &dyn std::fmt::Display| {
        StoreError::Corrupt(format!("manufacturer CA {what}: {e}"))
    };
    let time = |column: &str| -> Result<OffsetDateTime, StoreError> {
        OffsetDateTime::from_unix_timestamp(row.try_get::<i64, _>(column)?)
            .map_err(|e| corrupt(column, &e))
    };
    Ok(ManufacturerCaRecord {
        id: row.try_get("id")?,
        product_id: row
            .try_get::<String, _>("product_id")?
            .parse()
            .map_err(|e| corrupt("product_id", &e))?,
        sha256: row
            .try_get::<String, _>("sha256")?
            .parse()
            .map_err(|e| corrupt("sha256", &e))?,
        subject: row.try_get("subject")?,
        der: row.try_get("der")?,
        not_after: time("not_after")?,
        created_at: time("created_at")?,
    })
}

impl Store {
    /// Trust the CA certificate `der` (already checked to be a CA) for bootstrap enrolment of
    /// `product`'s devices.
    #[allow(clippy::too_many_arguments)]
    pub async fn add_manufacturer_ca(
        &self,
        actor: &Actor,
        product: ProductId,
        sha256: &Fingerprint,
        subject: &str,
        der: &[u8],
        not_after: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<ManufacturerCaRecord, StoreError> {
        self.get_product(product).await?;
        let record = ManufacturerCaRecord {
            id: uuid::Uuid::now_v7().to_string(),
            product_id: product,
            sha256: sha256.clone(),
            subject: subject.to_owned(),
            der: der.to_vec(),
            not_after: not_after.replace_nanosecond(0).unwrap_or(not_after),
            created_at: now.replace_nanosecond(0).unwrap_or(now),
        };
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO manufacturer_cas (id, product_id, sha256, subject, der, not_after, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&record.id)
        .bind(product.to_string())
        .bind(sha256.as_str())
        .bind(subject)
        .bind(der)
        .bind(record.not_after.unix_timestamp())
        .bind(record.created_at.unix_timestamp())
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            unique_to_conflict(e, || {
                format!("this CA ({sha256}) is already trusted for product {product}")
            })
        })?;
        audit::append(
            &mut tx,
            vec![AuditEvent::new(
                now,
                actor.clone(),
                "manufacturer_ca.added",
                format!("product:{product}"),
                Outcome::Success,
                json!({
                    "manufacturer_ca": record.id,
                    "sha256": sha256.as_str(),
                    "subject": subject,
                    "not_after": record.not_after.unix_timestamp(),
                }),
            )],
        )
        .await?;
        tx.commit().await?;
        Ok(record)
    }

    /// Every registered manufacturer CA (for the TLS listener's trust anchors), or one
    /// product's.
    pub async fn manufacturer_cas(
        &self,
        product: Option<ProductId>,
    ) -> Result<Vec<ManufacturerCaRecord>, StoreError> {
        let rows = match product {
            Some(p) => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {COLUMNS} FROM manufacturer_cas WHERE product_id = $1 ORDER BY id"
                )))
                .bind(p.to_string())
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {COLUMNS} FROM manufacturer_cas ORDER BY id"
                )))
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter().map(record_from_row).collect()
    }

    /// Devices of `product` whose serial number or hardware id is one of `names`.
    pub async fn devices_named(
        &self,
        product: ProductId,
        names: &[String],
    ) -> Result<Vec<DeviceId>, StoreError> {
        let mut found = Vec::new();
        for name in names {
            let rows = sqlx::query(
                "SELECT id FROM devices WHERE product_id = $1 AND (serial_number = $2 OR hardware_id = $2)",
            )
            .bind(product.to_string())
            .bind(name)
            .fetch_all(&self.pool)
            .await?;
            for row in rows {
                let id: DeviceId = row
                    .try_get::<String, _>("id")?
                    .parse()
                    .map_err(|e| StoreError::Corrupt(format!("device id: {e}")))?;
                if !found.contains(&id) {
                    found.push(id);
                }
            }
        }
        Ok(found)
    }
}
