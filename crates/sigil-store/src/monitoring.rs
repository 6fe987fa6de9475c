//! Behaviour monitoring's records: security profile versions, alarms and their decisions, and
//! quarantine. Every change is audited in its transaction, naming the device, so the Mosquitto
//! sync and the compliance engine hear of it from the audit log.

use serde_json::{Value, json};
use sqlx::Row;
use sqlx::any::AnyRow;
use time::OffsetDateTime;

use sigil_audit::{Actor, AuditEvent, Outcome};
use sigil_domain::{DeviceId, LifecycleState};

use crate::policy::{PolicyVersion, Versioned};
use crate::rows::ts;
use crate::{Store, StoreError, audit};

/// An alarm as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct AlarmRecord {
    pub id: String,
    pub device_id: String,
    pub profile: String,
    pub behaviour: String,
    pub metric: String,
    pub severity: String,
    pub mitigation: String,
    pub suppressed: bool,
    pub active: bool,
    pub raised_at_ms: i64,
    pub cleared_at_ms: Option<i64>,
    /// `acknowledged` or `false_positive`, once an operator decided.
    pub decision: Option<String>,
    pub decided_at: Option<OffsetDateTime>,
    pub decided_by: Option<String>,
    pub note: Option<String>,
    pub explanation: Value,
    pub cleared_explanation: Option<Value>,
}

/// An alarm the detector raised.
#[derive(Debug, Clone)]
pub struct NewAlarm {
    pub device: DeviceId,
    pub profile: String,
    pub behaviour: String,
    pub metric: String,
    pub severity: String,
    pub mitigation: String,
    pub suppressed: bool,
    pub raised_at_ms: i64,
    pub explanation: Value,
}

/// Which alarms to list, newest first.
#[derive(Debug, Clone, Default)]
pub struct AlarmFilter {
    pub device: Option<DeviceId>,
    /// Only active (`true`) or only cleared (`false`) alarms.
    pub active: Option<bool>,
    /// Only alarms no operator decided on.
    pub undecided: bool,
    pub limit: u32,
    /// The last id of the previous page.
    pub before: Option<String>,
}

const COLUMNS: &str = "id, device_id, profile, behaviour, metric, severity, mitigation, suppressed, active, raised_at_ms, cleared_at_ms, decision, decided_at, decided_by, note, explanation, cleared_explanation";

fn json_column(r: &AnyRow, name: &str) -> Result<Option<Value>, StoreError> {
    r.try_get::<Option<String>, _>(name)?
        .map(|text| {
            serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(format!("{name}: {e}")))
        })
        .transpose()
}

fn alarm(r: &AnyRow) -> Result<AlarmRecord, StoreError> {
    Ok(AlarmRecord {
        id: r.try_get("id")?,
        device_id: r.try_get("device_id")?,
        profile: r.try_get("profile")?,
        behaviour: r.try_get("behaviour")?,
        metric: r.try_get("metric")?,
        severity: r.try_get("severity")?,
        mitigation: r.try_get("mitigation")?,
        suppressed: r.try_get::<i64, _>("suppressed")? != 0,
        active: r.try_get::<i64, _>("active")? != 0,
        raised_at_ms: r.try_get("raised_at_ms")?,
        cleared_at_ms: r.try_get("cleared_at_ms")?,
        decision: r.try_get("decision")?,
        decided_at: r
            .try_get::<Option<i64>, _>("decided_at")?
            .map(ts)
            .transpose()?,
        decided_by: r.try_get("decided_by")?,
        note: r.try_get("note")?,
        explanation: json_column(r, "explanation")?.unwrap_or(Value::Null),
        cleared_explanation: json_column(r, "cleared_explanation")?,
    })
}

fn summary(explanation: &Value) -> Value {
    explanation.get("summary").cloned().unwrap_or(Value::Null)
}

impl Store {
    /// Record a raised alarm, unless the device already has one active for the behaviour
    /// (`None`: another detector was first, or the alarm is already known).
    pub async fn raise_alarm(
        &self,
        actor: &Actor,
        new: &NewAlarm,
        now: OffsetDateTime,
    ) -> Result<Option<AlarmRecord>, StoreError> {
        let mut tx = self.begin_write().await?;
        if self.locked_state(&mut tx, new.device).await? == LifecycleState::Retired {
            return Ok(None);
        }
        let exists = sqlx::query(
            "SELECT id FROM alarms WHERE device_id = $1 AND behaviour = $2 AND active = 1",
        )
        .bind(new.device.to_string())
        .bind(&new.behaviour)
        .fetch_optional(&mut *tx)
        .await?;
        if exists.is_some() {
            return Ok(None);
        }
        let id = uuid::Uuid::now_v7().to_string();
        let explanation = new.explanation.to_string();
        sqlx::query(
            "INSERT INTO alarms (id, device_id, profile, behaviour, metric, severity, mitigation, suppressed, active, raised_at_ms, explanation) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, $9, $10)",
        )
        .bind(&id)
        .bind(new.device.to_string())
        .bind(&new.profile)
        .bind(&new.behaviour)
        .bind(&new.metric)
        .bind(&new.severity)
        .bind(&new.mitigation)
        .bind(i64::from(new.suppressed))
        .bind(new.raised_at_ms)
        .bind(&explanation)
        .execute(&mut *tx)
        .await?;
        let event = AuditEvent::new(
            now,
            actor.clone(),
            "alarm.raised",
            format!("device:{}", new.device),
            Outcome::Success,
            json!({
                "alarm": id, "profile": new.profile, "behaviour": new.behaviour,
                "metric": new.metric, "severity": new.severity, "mitigation": new.mitigation,
                "suppressed": new.suppressed, "summary": summary(&new.explanation),
            }),
        );
        audit::append(&mut tx, vec![event]).await?;
        tx.commit().await?;
        self.alarm(&id).await.map(Some)
    }

    /// Clear the device's active alarm of `behaviour`, if it has one.
    pub async fn clear_alarm(
        &self,
        actor: &Actor,
        device: DeviceId,
        behaviour: &str,
        at_ms: i64,
        explanation: &Value,
        now: OffsetDateTime,
    ) -> Result<Option<AlarmRecord>, StoreError> {
        let mut tx = self.begin_write().await?;
        let Some(row) = sqlx::query(
            "SELECT id FROM alarms WHERE device_id = $1 AND behaviour = $2 AND active = 1",
        )
        .bind(device.to_string())
        .bind(behaviour)
        .fetch_optional(&mut *tx)
        .await?
        else {
            return Ok(None);
        };
        let id: String = row.try_get("id")?;
        sqlx::query("UPDATE alarms SET active = 0, cleared_at_ms = $1, cleared_explanation = $2 WHERE id = $3")
            .bind(at_ms)
            .bind(explanation.to_string())
            .bind(&id)
            .execute(&mut *tx)
            .await?;
        let event = AuditEvent::new(
            now,
            actor.clone(),
            "alarm.cleared",
            format!("device:{device}"),
            Outcome::Success,
            json!({"alarm": id, "behaviour": behaviour, "summary": summary(explanation)}),
        );
        audit::append(&mut tx, vec![event]).await?;
        tx.commit().await?;
        self.alarm(&id).await.map(Some)
    }

    /// An operator's decision on an alarm: `acknowledged` or `false_positive`. A decision is
    /// final once it is `false_positive`; the same decision twice is a conflict.
    pub async fn decide_alarm(
        &self,
        actor: &Actor,
        id: &str,
        decision: &str,
        note: &str,
        now: OffsetDateTime,
    ) -> Result<AlarmRecord, StoreError> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query("SELECT device_id, behaviour, decision FROM alarms WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| StoreError::NotFound {
                kind: "alarm",
                id: id.to_owned(),
            })?;
        let previous: Option<String> = row.try_get("decision")?;
        match previous.as_deref() {
            Some(p) if p == decision => {
                return Err(StoreError::Conflict(format!(
                    "alarm {id} is already {decision}"
                )));
            }
            Some("false_positive") => {
                return Err(StoreError::Conflict(format!(
                    "alarm {id} was judged a false positive"
                )));
            }
            _ => {}
        }
        let device: String = row.try_get("device_id")?;
        let behaviour: String = row.try_get("behaviour")?;
        sqlx::query("UPDATE alarms SET decision = $1, decided_at = $2, decided_by = $3, note = $4 WHERE id = $5")
            .bind(decision)
            .bind(now.unix_timestamp())
            .bind(&actor.id)
            .bind(note)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let event = AuditEvent::new(
            now,
            actor.clone(),
            &format!("alarm.{decision}"),
            format!("device:{device}"),
            Outcome::Success,
            json!({"alarm": id, "behaviour": behaviour, "previous": previous, "note": note}),
        );
        audit::append(&mut tx, vec![event]).await?;
        tx.commit().await?;
        self.alarm(id).await
    }

    pub async fn alarm(&self, id: &str) -> Result<AlarmRecord, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM alarms WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound {
                kind: "alarm",
                id: id.to_owned(),
            })?;
        alarm(&row)
    }

    /// Alarms, newest first.
    pub async fn list_alarms(&self, filter: &AlarmFilter) -> Result<Vec<AlarmRecord>, StoreError> {
        let mut sql = format!("SELECT {COLUMNS} FROM alarms WHERE 1 = 1");
        let mut binds: Vec<String> = Vec::new();
        if let Some(device) = filter.device {
            binds.push(device.to_string());
            sql.push_str(&format!(" AND device_id = ${}", binds.len()));
        }
        match filter.active {
            Some(true) => sql.push_str(" AND active = 1"),
            Some(false) => sql.push_str(" AND active = 0"),
            None => {}
        }
        if filter.undecided {
            sql.push_str(" AND decision IS NULL");
        }
        if let Some(before) = &filter.before {
            binds.push(before.clone());
            sql.push_str(&format!(" AND id < ${}", binds.len()));
        }
        sql.push_str(&format!(
            " ORDER BY id DESC LIMIT {}",
            filter.limit.clamp(1, crate::MAX_PAGE)
        ));
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for b in &binds {
            query = query.bind(b);
        }
        query
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(alarm)
            .collect()
    }

    /// Put a device in quarantine or take it out; `false` if it already was in that state.
    /// Audited as `device.quarantined` or `device.released`.
    pub async fn set_quarantine(
        &self,
        actor: &Actor,
        device: DeviceId,
        quarantined: bool,
        details: Value,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        if self.locked_state(&mut tx, device).await? == LifecycleState::Retired {
            return Err(StoreError::Conflict(format!("device {device} is retired")));
        }
        let current: Option<i64> = sqlx::query("SELECT quarantined_at FROM devices WHERE id = $1")
            .bind(device.to_string())
            .fetch_one(&mut *tx)
            .await?
            .try_get("quarantined_at")?;
        if current.is_some() == quarantined {
            return Ok(false);
        }
        sqlx::query("UPDATE devices SET quarantined_at = $1, updated_at = $2 WHERE id = $3")
            .bind(quarantined.then(|| now.unix_timestamp()))
            .bind(now.unix_timestamp())
            .bind(device.to_string())
            .execute(&mut *tx)
            .await?;
        let action = if quarantined {
            "device.quarantined"
        } else {
            "device.released"
        };
        let event = AuditEvent::new(
            now,
            actor.clone(),
            action,
            format!("device:{device}"),
            Outcome::Success,
            details,
        );
        audit::append(&mut tx, vec![event]).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// An active high or critical alarm, not judged a false positive, raised since `since_ms`
    /// on a device that installed the rollout's release: (device, behaviour, severity).
    pub async fn rollout_alarm(
        &self,
        rollout: &str,
        since_ms: i64,
    ) -> Result<Option<(String, String, String)>, StoreError> {
        let row = sqlx::query(
            "SELECT a.device_id, a.behaviour, a.severity FROM alarms a \
             JOIN rollout_devices m ON m.device_id = a.device_id \
             WHERE m.rollout_id = $1 AND m.status = 'installed' AND a.active = 1 \
             AND a.severity IN ('high', 'critical') \
             AND (a.decision IS NULL OR a.decision <> 'false_positive') \
             AND a.raised_at_ms >= $2 ORDER BY a.id LIMIT 1",
        )
        .bind(rollout)
        .bind(since_ms)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok((
                r.try_get("device_id")?,
                r.try_get("behaviour")?,
                r.try_get("severity")?,
            ))
        })
        .transpose()
    }

    /// Since when the device is quarantined, if it is.
    pub async fn quarantined_since(
        &self,
        device: DeviceId,
    ) -> Result<Option<OffsetDateTime>, StoreError> {
        self.device_time(device, "quarantined_at").await
    }

    /// A nullable time column of the device's row.
    async fn device_time(
        &self,
        device: DeviceId,
        column: &'static str,
    ) -> Result<Option<OffsetDateTime>, StoreError> {
        let sql = format!("SELECT {column} FROM devices WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(device.to_string())
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound {
                kind: "device",
                id: device.to_string(),
            })?;
        row.try_get::<Option<i64>, _>(column)?.map(ts).transpose()
    }

    /// When the device's last behaviour metrics report reached a detector (as recorded by the
    /// last flush, a few seconds behind).
    pub async fn metrics_reported_at(
        &self,
        device: DeviceId,
    ) -> Result<Option<OffsetDateTime>, StoreError> {
        self.device_time(device, "metrics_at").await
    }

    /// Record a security profile document (already validated) as the next version.
    pub async fn apply_security_profiles(
        &self,
        actor: &Actor,
        text: &str,
        comment: &str,
        now: OffsetDateTime,
    ) -> Result<PolicyVersion, StoreError> {
        self.append_version(
            Versioned::SecurityProfiles,
            actor,
            text,
            comment,
            json!({}),
            now,
        )
        .await
    }

    /// The security profiles in force, if any were ever applied.
    pub async fn current_security_profiles(&self) -> Result<Option<PolicyVersion>, StoreError> {
        self.latest_version(Versioned::SecurityProfiles).await
    }

    /// Record when each device's last behaviour metrics report reached the detector (unix
    /// seconds). A time never moves back, and is written only when it moves on by
    /// [`METRICS_MIN_ADVANCE`] (the freshness checks count in minutes). A device reporting for
    /// the first time, or more than `resume_gap` seconds after its recorded report, is audited
    /// as `monitoring.metrics_resumed`: the compliance engine re-reads the devices an entry
    /// names, and may have judged this one stale meanwhile; between those moments it needs no
    /// word (it re-reads a device when its metrics would go stale). Returns the devices audited.
    pub async fn record_metrics_reports(
        &self,
        actor: &Actor,
        reports: &[(DeviceId, i64)],
        resume_gap: i64,
        now: OffsetDateTime,
    ) -> Result<Vec<DeviceId>, StoreError> {
        // Rows are locked in id order: two detectors flushing the same devices cannot deadlock.
        let mut reports = reports.to_vec();
        reports.sort_unstable();
        reports.dedup_by_key(|(device, _)| *device);
        let lock = match self.backend {
            crate::Backend::Sqlite => "",
            crate::Backend::Postgres => " FOR UPDATE",
        };
        let mut events = Vec::new();
        let mut resumed = Vec::new();
        let mut tx = self.begin_write().await?;
        for chunk in reports.chunks(METRICS_CHUNK) {
            let sql = format!(
                "SELECT id, metrics_at FROM devices WHERE id IN ({}) ORDER BY id{lock}",
                crate::batch::placeholders(chunk.len())
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (device, _) in chunk {
                query = query.bind(device.to_string());
            }
            let mut previous = std::collections::HashMap::new();
            for row in query.fetch_all(&mut *tx).await? {
                previous.insert(
                    row.try_get::<String, _>("id")?,
                    row.try_get::<Option<i64>, _>("metrics_at")?,
                );
            }
            let mut newer = Vec::new();
            for (device, at) in chunk {
                let Some(before) = previous.get(&device.to_string()) else {
                    continue; // not (or no longer) in the inventory
                };
                if before.is_some_and(|b| *at - b < METRICS_MIN_ADVANCE) {
                    continue;
                }
                newer.push((device, *at));
                if before.is_none_or(|b| *at - b > resume_gap) {
                    resumed.push(*device);
                    events.push(AuditEvent::new(
                        now,
                        actor.clone(),
                        "monitoring.metrics_resumed",
                        format!("device:{device}"),
                        Outcome::Success,
                        json!({"previous_report": before, "report": at}),
                    ));
                }
            }
            if !newer.is_empty() {
                set_metrics_at(&mut tx, &newer).await?;
            }
        }
        // The audit log's head is locked last, after every device row, as in every other
        // transaction that changes a device.
        audit::append(&mut tx, events).await?;
        tx.commit().await?;
        Ok(resumed)
    }

    /// Critical alarms still active that no operator decided on (suppressed behaviours'
    /// alarms aside: recorded only, announced to no one): how many, and the oldest `limit` of
    /// them as (alarm, device, behaviour, raised at in ms).
    pub async fn undecided_critical_alarms(
        &self,
        limit: u32,
    ) -> Result<(u64, Vec<(String, String, String, i64)>), StoreError> {
        const OPEN: &str = "FROM alarms WHERE active = 1 AND decision IS NULL \
                            AND severity = 'critical' AND suppressed = 0";
        let count: i64 = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT count(*) AS n {OPEN}")))
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?;
        let oldest = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT id, device_id, behaviour, raised_at_ms {OPEN} ORDER BY raised_at_ms LIMIT $1"
        )))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            Ok((
                r.try_get("id")?,
                r.try_get("device_id")?,
                r.try_get("behaviour")?,
                r.try_get("raised_at_ms")?,
            ))
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
        Ok((u64::try_from(count).unwrap_or(0), oldest))
    }
}

/// Devices per statement when recording metrics reports (two parameters each).
const METRICS_CHUNK: usize = 500;
/// How far a recorded report time must move on to be written again (seconds).
pub const METRICS_MIN_ADVANCE: i64 = 60;

/// `UPDATE devices SET metrics_at = CASE id WHEN $1 THEN $2 ... END`, one statement for a
/// chunk, the ids bound once.
async fn set_metrics_at(
    tx: &mut sqlx::AnyConnection,
    newer: &[(&DeviceId, i64)],
) -> Result<(), StoreError> {
    let cases: String = (0..newer.len())
        .map(|i| format!(" WHEN ${} THEN ${}", 2 * i + 1, 2 * i + 2))
        .collect();
    let ids: Vec<String> = (0..newer.len())
        .map(|i| format!("${}", 2 * i + 1))
        .collect();
    let sql = format!(
        "UPDATE devices SET metrics_at = CASE id{cases} END WHERE id IN ({})",
        ids.join(", ")
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for (device, at) in newer {
        query = query.bind(device.to_string()).bind(*at);
    }
    query.execute(&mut *tx).await?;
    Ok(())
}
