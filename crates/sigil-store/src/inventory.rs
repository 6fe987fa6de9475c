//! Products and devices: the inventory, and the lifecycle transitions of devices.

use std::str::FromStr;

use serde_json::json;
use sqlx::Row;
use time::OffsetDateTime;

use sigil_audit::{Actor, AuditEvent, Outcome};
use sigil_domain::{
    Device, DeviceChange, DeviceFilter, DeviceId, LifecycleEvent, LifecycleState, NewDevice,
    NewProduct, Product, ProductId, RevocationReason, Serial,
};

use crate::rows::{DEVICE_COLUMNS, device_from_row, product_from_row};
use crate::{
    Store, StoreError, WriteTx, audit, revocation, truncate_to_second, unique_to_conflict,
};

impl Store {
    // ---- products ------------------------------------------------------------------------

    pub async fn create_product(
        &self,
        actor: &Actor,
        new: NewProduct,
        now: OffsetDateTime,
    ) -> Result<Product, StoreError> {
        let product = Product {
            id: ProductId::generate(),
            name: new.name,
            manufacturer: new.manufacturer,
            support_end: new.support_end,
            created_at: truncate_to_second(now),
        };
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO products (id, name, manufacturer, support_end, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(product.id.to_string())
        .bind(&product.name)
        .bind(&product.manufacturer)
        .bind(product.support_end.to_string()) // YYYY-MM-DD
        .bind(product.created_at.unix_timestamp())
        .execute(&mut *tx)
        .await
        .map_err(|e| unique_to_conflict(e, || format!("a product named `{}` from `{}` already exists", product.name, product.manufacturer)))?;
        let event = AuditEvent::new(
            now,
            actor.clone(),
            "product.created",
            format!("product:{}", product.id),
            Outcome::Success,
            json!({
                "name": product.name,
                "manufacturer": product.manufacturer,
                "support_end": product.support_end.to_string(),
            }),
        );
        audit::append(&mut tx, vec![event]).await?;
        tx.commit().await?;
        Ok(product)
    }

    pub async fn get_product(&self, id: ProductId) -> Result<Product, StoreError> {
        let row = sqlx::query(
            "SELECT id, name, manufacturer, support_end, created_at FROM products WHERE id = $1",
        )
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::NotFound {
            kind: "product",
            id: id.to_string(),
        })?;
        product_from_row(&row)
    }

    pub async fn list_products(&self) -> Result<Vec<Product>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, name, manufacturer, support_end, created_at FROM products ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(product_from_row).collect()
    }

    // ---- devices -------------------------------------------------------------------------

    pub async fn create_device(
        &self,
        actor: &Actor,
        new: NewDevice,
        now: OffsetDateTime,
    ) -> Result<Device, StoreError> {
        self.create_devices(actor, vec![new], now)
            .await?
            .pop()
            .ok_or_else(|| StoreError::Corrupt("device insert returned nothing".into()))
    }

    /// Register many devices in one transaction (fleet import): all of them or none.
    pub async fn create_devices(
        &self,
        actor: &Actor,
        new: Vec<NewDevice>,
        now: OffsetDateTime,
    ) -> Result<Vec<Device>, StoreError> {
        self.create_devices_with(actor, new, now, Vec::new()).await
    }

    /// [`Self::create_devices`], with more audit entries written in the same transaction.
    pub(crate) async fn create_devices_with(
        &self,
        actor: &Actor,
        new: Vec<NewDevice>,
        now: OffsetDateTime,
        extra: Vec<AuditEvent>,
    ) -> Result<Vec<Device>, StoreError> {
        let logged_at = now;
        let now = truncate_to_second(now);
        let mut tx = self.begin_write().await?;
        let mut known_products = std::collections::HashSet::new();
        let mut out = Vec::with_capacity(new.len());
        for n in new {
            if known_products.insert(n.product_id) {
                let exists = sqlx::query("SELECT 1 FROM products WHERE id = $1")
                    .bind(n.product_id.to_string())
                    .fetch_optional(&mut *tx)
                    .await?
                    .is_some();
                if !exists {
                    return Err(StoreError::NotFound {
                        kind: "product",
                        id: n.product_id.to_string(),
                    });
                }
            }
            let device = Device {
                id: DeviceId::generate(),
                product_id: n.product_id,
                serial_number: n.serial_number,
                hardware_id: n.hardware_id,
                owner: n.owner,
                site: n.site,
                tags: n.tags,
                firmware_version: n.firmware_version,
                state: LifecycleState::Registered,
                created_at: now,
                updated_at: now,
            };
            insert_device(&mut tx, &device).await?;
            out.push(device);
        }
        let mut events: Vec<AuditEvent> = out
            .iter()
            .map(|d| {
                AuditEvent::new(
                    logged_at,
                    actor.clone(),
                    "device.created",
                    format!("device:{}", d.id),
                    Outcome::Success,
                    json!({
                        "product": d.product_id.to_string(),
                        "serial_number": d.serial_number,
                        "hardware_id": d.hardware_id,
                        "owner": d.owner,
                        "site": d.site,
                        "firmware_version": d.firmware_version,
                        "tags": d.tags.iter().map(|t| t.as_str()).collect::<Vec<_>>(),
                        "state": d.state.as_str(),
                    }),
                )
            })
            .collect();
        events.extend(extra);
        audit::append(&mut tx, events).await?;
        tx.commit().await?;
        Ok(out)
    }

    pub async fn get_device(&self, id: DeviceId) -> Result<Device, StoreError> {
        let sql = format!(
            "SELECT {DEVICE_COLUMNS}, (SELECT {} FROM device_tags t WHERE t.device_id = d.id) AS tags FROM devices d WHERE d.id = $1",
            self.tags_aggregate()
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound {
                kind: "device",
                id: id.to_string(),
            })?;
        device_from_row(&row)
    }

    /// Devices matching `filter`, in its order, at most `filter.limit`.
    pub async fn list_devices(&self, filter: &DeviceFilter) -> Result<Vec<Device>, StoreError> {
        let Some((sql, binds)) =
            crate::device_query::listing(filter, self.backend, self.tags_aggregate())
        else {
            return Ok(Vec::new());
        };
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for value in binds {
            query = query.bind(value);
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter().map(device_from_row).collect()
    }

    /// Apply a lifecycle event to a device, refusing it if the state machine does.
    pub async fn transition_device(
        &self,
        actor: &Actor,
        id: DeviceId,
        event: LifecycleEvent,
        now: OffsetDateTime,
    ) -> Result<Device, StoreError> {
        let mut tx = self.begin_write().await?;
        let current = self.locked_state(&mut tx, id).await?;
        let next = current.apply(event)?;
        sqlx::query("UPDATE devices SET state = $1, updated_at = $2 WHERE id = $3")
            .bind(next.as_str())
            .bind(now.unix_timestamp())
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        // A retired device keeps no valid identity: its certificates are revoked with it.
        let revoked = if event == LifecycleEvent::Retire {
            revocation::revoke_in_tx(
                &mut tx,
                actor,
                id,
                RevocationReason::CessationOfOperation,
                now,
            )
            .await?
        } else {
            Vec::new()
        };
        let mut details = json!({"from": current.as_str(), "to": next.as_str()});
        if !revoked.is_empty() {
            details["revoked_certificates"] =
                json!(revoked.iter().map(Serial::as_str).collect::<Vec<_>>());
        }
        let event = AuditEvent::new(
            now,
            actor.clone(),
            &format!("device.{}", lifecycle_verb(event)),
            format!("device:{id}"),
            Outcome::Success,
            details,
        );
        audit::append(&mut tx, vec![event]).await?;
        tx.commit().await?;
        self.get_device(id).await
    }

    pub(crate) async fn locked_state(
        &self,
        tx: &mut WriteTx,
        id: DeviceId,
    ) -> Result<LifecycleState, StoreError> {
        let row = sqlx::query(self.device_for_update())
            .bind(id.to_string())
            .fetch_optional(&mut **tx)
            .await?
            .ok_or_else(|| StoreError::NotFound {
                kind: "device",
                id: id.to_string(),
            })?;
        let state: String = row.try_get("state")?;
        LifecycleState::from_str(&state).map_err(|e| StoreError::Corrupt(e.to_string()))
    }

    // ---- certificates --------------------------------------------------------------------
}

fn lifecycle_verb(event: LifecycleEvent) -> &'static str {
    match event {
        LifecycleEvent::IdentityIssued => "provisioned",
        LifecycleEvent::Activate => "activated",
        LifecycleEvent::Suspend => "suspended",
        LifecycleEvent::Resume => "resumed",
        LifecycleEvent::Retire => "retired",
    }
}

async fn insert_device(tx: &mut WriteTx, device: &Device) -> Result<(), StoreError> {
    let now = device.created_at.unix_timestamp();
    sqlx::query(
        "INSERT INTO devices (id, product_id, serial_number, hardware_id, owner, site, firmware_version, state, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(device.id.to_string())
    .bind(device.product_id.to_string())
    .bind(&device.serial_number)
    .bind(device.hardware_id.clone())
    .bind(device.owner.clone())
    .bind(device.site.clone())
    .bind(device.firmware_version.clone())
    .bind(device.state.as_str())
    .bind(now)
    .bind(now)
    .execute(&mut **tx)
    .await
    .map_err(|e| {
        unique_to_conflict(e, || {
            format!("a device with serial number `{}` (for this product) or this hardware id already exists", device.serial_number)
        })
    })?;
    for tag in &device.tags {
        sqlx::query("INSERT INTO device_tags (device_id, tag) VALUES ($1, $2)")
            .bind(device.id.to_string())
            .bind(tag.as_str())
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

impl Store {
    /// Edit a device's descriptive fields, audited with the values before and after.
    pub async fn update_device(
        &self,
        actor: &Actor,
        id: DeviceId,
        change: &DeviceChange,
        now: OffsetDateTime,
    ) -> Result<Device, StoreError> {
        let mut tx = self.begin_write().await?;
        let before = self.device_in(&mut tx, id).await?;
        let mut after = change.applied_to(&before);
        after.updated_at = truncate_to_second(now);
        sqlx::query(
            "UPDATE devices SET hardware_id = $1, owner = $2, site = $3, updated_at = $4 WHERE id = $5",
        )
        .bind(after.hardware_id.clone())
        .bind(after.owner.clone())
        .bind(after.site.clone())
        .bind(after.updated_at.unix_timestamp())
        .bind(id.to_string())
        .execute(&mut *tx)
        .await
        .map_err(|e| unique_to_conflict(e, || "another device already has this hardware id".to_owned()))?;
        if change.tags.is_some() {
            sqlx::query("DELETE FROM device_tags WHERE device_id = $1")
                .bind(id.to_string())
                .execute(&mut *tx)
                .await?;
            for tag in &after.tags {
                sqlx::query("INSERT INTO device_tags (device_id, tag) VALUES ($1, $2)")
                    .bind(id.to_string())
                    .bind(tag.as_str())
                    .execute(&mut *tx)
                    .await?;
            }
        }
        let fields = |d: &Device| {
            json!({
                "hardware_id": d.hardware_id,
                "owner": d.owner,
                "site": d.site,
                "tags": d.tags.iter().map(|t| t.as_str()).collect::<Vec<_>>(),
            })
        };
        let event = AuditEvent::new(
            now,
            actor.clone(),
            "device.updated",
            format!("device:{id}"),
            Outcome::Success,
            json!({"before": fields(&before), "after": fields(&after)}),
        );
        audit::append(&mut tx, vec![event]).await?;
        tx.commit().await?;
        Ok(after)
    }

    /// The device as this transaction sees it, its row locked for the rest of it.
    async fn device_in(&self, tx: &mut WriteTx, id: DeviceId) -> Result<Device, StoreError> {
        self.locked_state(tx, id).await?;
        let sql = format!(
            "SELECT {DEVICE_COLUMNS}, (SELECT {} FROM device_tags t WHERE t.device_id = d.id) AS tags FROM devices d WHERE d.id = $1",
            self.tags_aggregate()
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.to_string())
            .fetch_optional(&mut **tx)
            .await?
            .ok_or_else(|| StoreError::NotFound {
                kind: "device",
                id: id.to_string(),
            })?;
        device_from_row(&row)
    }
}
