//! Staged rollouts: which devices a rollout reaches, what each reported, and the rollout's
//! state. The decisions (who next, advance or halt) are the authority's, with
//! `sigil-update::rollout`; this module stores them, each change with its audit entry.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::Row;
use sqlx::any::AnyRow;
use time::OffsetDateTime;

use sigil_audit::{Actor, AuditEvent, Outcome};

use crate::rows::ts;
use crate::{Store, StoreError, WriteTx, audit};

/// States in which a rollout still holds its product (one such rollout per product).
pub const ACTIVE_ROLLOUT_STATES: [&str; 4] = ["running", "awaiting-approval", "paused", "halted"];
/// The same, for SQL.
const ACTIVE_SQL: &str = "('running', 'awaiting-approval', 'paused', 'halted')";
/// A device's statuses while its update is under way.
pub(crate) const IN_FLIGHT: &str = "('assigned', 'downloading', 'installing')";
/// Rows per multi-row insert (4 binds each; well under either engine's bind limit).
const INSERT_CHUNK: usize = 500;

/// Which devices of the product a rollout reaches (all conditions hold together).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceSelector {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// Lifecycle states (default: devices holding an identity, `provisioned` and `active`).
    pub states: Vec<String>,
    /// Only these device ids (empty: any).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutRecord {
    pub id: String,
    pub product_id: String,
    pub release_id: String,
    pub selector: DeviceSelector,
    /// The plan as JSON (the authority's `Plan`).
    pub plan: Value,
    pub rollback: bool,
    pub window: Option<String>,
    pub rate_per_minute: Option<u32>,
    pub timeout_seconds: u64,
    pub state: String,
    pub current_group: u32,
    pub reason: String,
    pub created_by: String,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// How many devices of one group (`None`: not assigned yet) are in one status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusCount {
    pub group_index: Option<u32>,
    pub status: String,
    pub count: u64,
}

/// What a device is asked to install now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceAssignment {
    pub rollout_id: String,
    pub release_version: String,
    pub target_name: String,
    pub rollback: bool,
    pub status: String,
}

/// A device's part in one rollout: what it was to install and where that stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceUpdate {
    pub rollout_id: String,
    pub rollout_state: String,
    pub release_version: String,
    /// pending, assigned, downloading, installing, installed, failed, rejected, timed-out
    pub status: String,
    pub reason: Option<String>,
    pub reported_version: Option<String>,
    pub updated_at: OffsetDateTime,
}

/// A device's update report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateReport {
    pub rollout_id: String,
    /// `downloading`, `installing`, `installed`, `failed` or `rejected`.
    pub status: String,
    pub reason: Option<String>,
    /// The version the device runs now (with `installed`).
    pub version: Option<String>,
}

const ROLLOUT_COLUMNS: &str = "id, product_id, release_id, selector, plan, rollback, maint_window, rate_per_minute, timeout_seconds, state, current_group, reason, created_by, created_at, updated_at";

pub(crate) fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("rollout {what}: {e}"))
}

fn rollout_from_row(row: &AnyRow) -> Result<RolloutRecord, StoreError> {
    let selector: String = row.try_get("selector")?;
    let plan: String = row.try_get("plan")?;
    Ok(RolloutRecord {
        id: row.try_get("id")?,
        product_id: row.try_get("product_id")?,
        release_id: row.try_get("release_id")?,
        selector: serde_json::from_str(&selector).map_err(|e| corrupt("selector", e))?,
        plan: serde_json::from_str(&plan).map_err(|e| corrupt("plan", e))?,
        rollback: row.try_get::<i64, _>("rollback")? == 1,
        window: row.try_get("maint_window")?,
        rate_per_minute: row
            .try_get::<Option<i64>, _>("rate_per_minute")?
            .map(|r| u32::try_from(r).map_err(|e| corrupt("rate", e)))
            .transpose()?,
        timeout_seconds: u64::try_from(row.try_get::<i64, _>("timeout_seconds")?)
            .map_err(|e| corrupt("timeout", e))?,
        state: row.try_get("state")?,
        current_group: u32::try_from(row.try_get::<i64, _>("current_group")?)
            .map_err(|e| corrupt("group", e))?,
        reason: row.try_get("reason")?,
        created_by: row.try_get("created_by")?,
        created_at: ts(row.try_get("created_at")?)?,
        updated_at: ts(row.try_get("updated_at")?)?,
    })
}

pub(crate) fn system() -> Actor {
    Actor::system("rollouts")
}

pub(crate) fn device_event(
    now: OffsetDateTime,
    actor: Actor,
    action: &str,
    device: &str,
    details: Value,
) -> AuditEvent {
    AuditEvent::new(
        now,
        actor,
        action,
        format!("device:{device}"),
        Outcome::Success,
        details,
    )
}

/// `($1, $2, $3, $4, 'pending', 0), ...`: four binds per member row.
fn pending_rows(rows: usize) -> String {
    (0..rows)
        .map(|r| {
            let b = r * 4;
            format!(
                "(${}, ${}, ${}, ${}, 'pending', 0)",
                b + 1,
                b + 2,
                b + 3,
                b + 4
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Insert `(device, order key)` members, skipping devices already in the rollout.
async fn insert_members(
    tx: &mut WriteTx,
    rollout: &str,
    members: &[(String, String)],
    now: OffsetDateTime,
) -> Result<Vec<String>, StoreError> {
    let mut added = Vec::new();
    for chunk in members.chunks(INSERT_CHUNK) {
        let sql = format!(
            "INSERT INTO rollout_devices (rollout_id, device_id, order_key, updated_at, status, baseline_failures) \
             VALUES {} ON CONFLICT (rollout_id, device_id) DO NOTHING RETURNING device_id",
            pending_rows(chunk.len())
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (device, key) in chunk {
            q = q
                .bind(rollout)
                .bind(device)
                .bind(key)
                .bind(now.unix_timestamp());
        }
        for row in q.fetch_all(&mut **tx).await? {
            added.push(row.try_get("device_id")?);
        }
    }
    Ok(added)
}

impl Store {
    /// Record a new rollout and the devices it may reach. Refused if the product already has
    /// a rollout that is not stopped or completed.
    pub async fn create_rollout(
        &self,
        actor: &Actor,
        rollout: &RolloutRecord,
        members: &[(String, String)],
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let active = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT id FROM rollouts WHERE product_id = $1 AND state IN {ACTIVE_SQL}"
        )))
        .bind(&rollout.product_id)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = active {
            let id: String = row.try_get("id")?;
            return Err(StoreError::Conflict(format!(
                "product {} already has rollout {id} under way: stop it first",
                rollout.product_id
            )));
        }
        let selector =
            serde_json::to_string(&rollout.selector).map_err(|e| corrupt("selector", e))?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO rollouts ({ROLLOUT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
        )))
        .bind(&rollout.id)
        .bind(&rollout.product_id)
        .bind(&rollout.release_id)
        .bind(selector)
        .bind(rollout.plan.to_string())
        .bind(i64::from(rollout.rollback))
        .bind(rollout.window.clone())
        .bind(rollout.rate_per_minute.map(i64::from))
        .bind(i64::try_from(rollout.timeout_seconds).map_err(|e| corrupt("timeout", e))?)
        .bind(&rollout.state)
        .bind(i64::from(rollout.current_group))
        .bind(&rollout.reason)
        .bind(&rollout.created_by)
        .bind(now.unix_timestamp())
        .bind(now.unix_timestamp())
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            crate::unique_to_conflict(e, || {
                format!("product {} already has a rollout under way: stop it first", rollout.product_id)
            })
        })?;
        insert_members(&mut tx, &rollout.id, members, now).await?;
        let event = AuditEvent::new(
            now,
            actor.clone(),
            "rollout.created",
            format!("rollout:{}", rollout.id),
            Outcome::Success,
            json!({"product": rollout.product_id, "release": rollout.release_id, "selector": rollout.selector,
                   "plan": rollout.plan, "rollback": rollout.rollback, "window": rollout.window,
                   "rate_per_minute": rollout.rate_per_minute, "timeout_seconds": rollout.timeout_seconds,
                   "devices": members.len()}),
        );
        audit::append(&mut tx, vec![event]).await?;
        Ok(tx.commit().await?)
    }

    pub async fn rollout(&self, id: &str) -> Result<RolloutRecord, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ROLLOUT_COLUMNS} FROM rollouts WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::NotFound {
            kind: "rollout",
            id: id.to_owned(),
        })?;
        rollout_from_row(&row)
    }

    /// A product's rollouts, newest first; or every rollout still under way (`None`).
    pub async fn rollouts(&self, product: Option<&str>) -> Result<Vec<RolloutRecord>, StoreError> {
        let rows =
            match product {
                Some(p) => sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {ROLLOUT_COLUMNS} FROM rollouts WHERE product_id = $1 ORDER BY id DESC"
                )))
                .bind(p)
                .fetch_all(&self.pool)
                .await?,
                None => sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {ROLLOUT_COLUMNS} FROM rollouts WHERE state IN {ACTIVE_SQL} ORDER BY id"
                )))
                .fetch_all(&self.pool)
                .await?,
            };
        rows.iter().map(rollout_from_row).collect()
    }

    /// Change a rollout's state (only from one of `from`), with its audit entry.
    #[allow(clippy::too_many_arguments)]
    pub async fn transition_rollout(
        &self,
        actor: &Actor,
        id: &str,
        from: &[&str],
        to: &str,
        group: u32,
        reason: &str,
        action: &str,
        now: OffsetDateTime,
    ) -> Result<RolloutRecord, StoreError> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query("SELECT state, current_group FROM rollouts WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| StoreError::NotFound {
                kind: "rollout",
                id: id.to_owned(),
            })?;
        let state: String = row.try_get("state")?;
        if !from.contains(&state.as_str()) {
            return Err(StoreError::Conflict(format!(
                "rollout {id} is {state}: {action} needs it {}",
                from.join(" or ")
            )));
        }
        // Conditional on the state read: a concurrent change (another process) makes it a
        // conflict rather than a lost update.
        let changed = sqlx::query("UPDATE rollouts SET state = $1, current_group = $2, reason = $3, updated_at = $4 WHERE id = $5 AND state = $6")
            .bind(to)
            .bind(i64::from(group))
            .bind(reason)
            .bind(now.unix_timestamp())
            .bind(id)
            .bind(&state)
            .execute(&mut *tx)
            .await?;
        if changed.rows_affected() != 1 {
            return Err(StoreError::Conflict(format!(
                "rollout {id} changed meanwhile: try again"
            )));
        }
        let event = AuditEvent::new(
            now,
            actor.clone(),
            action,
            format!("rollout:{id}"),
            Outcome::Success,
            json!({"from": state, "to": to, "group": group + 1, "reason": reason}),
        );
        audit::append(&mut tx, vec![event]).await?;
        tx.commit().await?;
        self.rollout(id).await
    }

    /// How many devices of each group are in each status.
    pub async fn rollout_counts(&self, id: &str) -> Result<Vec<StatusCount>, StoreError> {
        let rows = sqlx::query(
            "SELECT group_index, status, COUNT(*) AS n FROM rollout_devices WHERE rollout_id = $1 GROUP BY group_index, status",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(StatusCount {
                    group_index: row
                        .try_get::<Option<i64>, _>("group_index")?
                        .map(|g| u32::try_from(g).map_err(|e| corrupt("group", e)))
                        .transpose()?,
                    status: row.try_get("status")?,
                    count: u64::try_from(row.try_get::<i64, _>("n")?)
                        .map_err(|e| corrupt("count", e))?,
                })
            })
            .collect()
    }

    /// Devices of `product` the selector matches that are not members of `rollout` yet.
    pub async fn rollout_newcomers(
        &self,
        rollout: &str,
        product: &str,
        selector: &DeviceSelector,
    ) -> Result<Vec<String>, StoreError> {
        let mut sql = "SELECT d.id FROM devices d WHERE d.product_id = $1 \
             AND NOT EXISTS (SELECT 1 FROM rollout_devices m WHERE m.rollout_id = $2 AND m.device_id = d.id)"
            .to_owned();
        let mut binds: Vec<String> = vec![product.to_owned(), rollout.to_owned()];
        let next = |value: &str, binds: &mut Vec<String>| {
            binds.push(value.to_owned());
            format!("${}", binds.len())
        };
        if let Some(site) = &selector.site {
            let p = next(site, &mut binds);
            sql.push_str(&format!(" AND d.site = {p}"));
        }
        if let Some(tag) = &selector.tag {
            let p = next(tag, &mut binds);
            sql.push_str(&format!(
                " AND EXISTS (SELECT 1 FROM device_tags t WHERE t.device_id = d.id AND t.tag = {p})"
            ));
        }
        let states: Vec<String> = selector
            .states
            .iter()
            .map(|s| next(s, &mut binds))
            .collect();
        sql.push_str(&format!(" AND d.state IN ({})", states.join(", ")));
        if !selector.devices.is_empty() {
            let ids: Vec<String> = selector
                .devices
                .iter()
                .map(|d| next(d, &mut binds))
                .collect();
            sql.push_str(&format!(" AND d.id IN ({})", ids.join(", ")));
        }
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for b in binds {
            q = q.bind(b);
        }
        let rows = q.fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| r.try_get("id").map_err(Into::into))
            .collect()
    }

    /// Devices that joined a rollout under way (they enrolled, or came to match its selector).
    pub async fn join_rollout(
        &self,
        rollout: &str,
        members: &[(String, String)],
        now: OffsetDateTime,
    ) -> Result<usize, StoreError> {
        let mut tx = self.begin_write().await?;
        let added = insert_members(&mut tx, rollout, members, now).await?;
        let events = added
            .iter()
            .map(|d| {
                device_event(
                    now,
                    system(),
                    "rollout.device_joined",
                    d,
                    json!({"rollout": rollout}),
                )
            })
            .collect();
        audit::append(&mut tx, events).await?;
        tx.commit().await?;
        Ok(added.len())
    }
}
