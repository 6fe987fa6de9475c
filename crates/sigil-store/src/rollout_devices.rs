//! The devices of a rollout: which are assigned next, timed out, retried, and what each one
//! reports as it installs the release.

use serde_json::json;
use sqlx::Row;
use time::OffsetDateTime;

use sigil_audit::{Actor, AuditEvent, Outcome};

use crate::rollouts::{DeviceAssignment, IN_FLIGHT, UpdateReport, corrupt, device_event, system};
use crate::{Store, StoreError, audit};

impl Store {
    /// The next `limit` unassigned members, in the rollout's order, that are still in one of
    /// `states` (a member suspended or retired since it joined is passed over).
    pub async fn pending_members(
        &self,
        rollout: &str,
        states: &[String],
        limit: u64,
    ) -> Result<Vec<String>, StoreError> {
        let sql = format!(
            "SELECT m.device_id FROM rollout_devices m JOIN devices d ON d.id = m.device_id \
             WHERE m.rollout_id = $1 AND m.status = 'pending' AND d.state IN ({}) ORDER BY m.order_key LIMIT $2",
            crate::batch::placeholders_from(3, states.len().max(1))
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(rollout)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX));
        if states.is_empty() {
            q = q.bind("active");
        }
        for state in states {
            q = q.bind(state);
        }
        let rows = q.fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| r.try_get("device_id").map_err(Into::into))
            .collect()
    }

    /// Devices assigned at or after `since` (for the rate limit).
    pub async fn assigned_since(
        &self,
        rollout: &str,
        since: OffsetDateTime,
    ) -> Result<u64, StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM rollout_devices WHERE rollout_id = $1 AND assigned_at >= $2",
        )
        .bind(rollout)
        .bind(since.unix_timestamp())
        .fetch_one(&self.pool)
        .await?;
        u64::try_from(row.try_get::<i64, _>("n")?).map_err(|e| corrupt("count", e))
    }

    /// Assign `devices` (each with the compliance checks it did not pass beforehand) to group
    /// `group` of the rollout; each gets its audit entry.
    pub async fn assign_rollout_devices(
        &self,
        rollout: &str,
        group: u32,
        devices: &[(String, i64)],
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let mut events = Vec::with_capacity(devices.len());
        for (device, baseline) in devices {
            let done = sqlx::query(
                "UPDATE rollout_devices SET status = 'assigned', group_index = $1, baseline_failures = $2, assigned_at = $3, updated_at = $3, reason = NULL \
                 WHERE rollout_id = $4 AND device_id = $5 AND status = 'pending'",
            )
            .bind(i64::from(group))
            .bind(*baseline)
            .bind(now.unix_timestamp())
            .bind(rollout)
            .bind(device)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 1 {
                events.push(device_event(
                    now,
                    system(),
                    "update.assigned",
                    device,
                    json!({"rollout": rollout, "group": group + 1}),
                ));
            }
        }
        audit::append(&mut tx, events).await?;
        Ok(tx.commit().await?)
    }

    /// Mark timed out the devices assigned before `deadline` that have not finished.
    pub async fn time_out_rollout_devices(
        &self,
        rollout: &str,
        deadline: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<usize, StoreError> {
        let mut tx = self.begin_write().await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE rollout_devices SET status = 'timed-out', reason = 'no outcome reported in time', updated_at = $1 \
             WHERE rollout_id = $2 AND status IN {IN_FLIGHT} AND assigned_at < $3 RETURNING device_id"
        )))
        .bind(now.unix_timestamp())
        .bind(rollout)
        .bind(deadline.unix_timestamp())
        .fetch_all(&mut *tx)
        .await?;
        let mut events = Vec::with_capacity(rows.len());
        for row in &rows {
            let device: String = row.try_get("device_id")?;
            events.push(device_event(
                now,
                system(),
                "update.timed_out",
                &device,
                json!({"rollout": rollout, "deadline": deadline.unix_timestamp()}),
            ));
        }
        audit::append(&mut tx, events).await?;
        tx.commit().await?;
        Ok(rows.len())
    }

    /// Assign again the devices whose update failed, was rejected or timed out.
    pub async fn retry_rollout_failures(
        &self,
        actor: &Actor,
        rollout: &str,
        now: OffsetDateTime,
    ) -> Result<usize, StoreError> {
        let mut tx = self.begin_write().await?;
        // Back in the queue, in their order: the tick assigns them again (each an
        // `update.assigned`, with a fresh compliance baseline) within the rate and the window,
        // in whichever group is current.
        let rows = sqlx::query(
            "UPDATE rollout_devices SET status = 'pending', group_index = NULL, reason = NULL, \
             reported_version = NULL, assigned_at = NULL, updated_at = $1 \
             WHERE rollout_id = $2 AND status IN ('failed', 'rejected', 'timed-out') RETURNING device_id",
        )
        .bind(now.unix_timestamp())
        .bind(rollout)
        .fetch_all(&mut *tx)
        .await?;
        let devices = rows
            .iter()
            .map(|r| r.try_get::<String, _>("device_id"))
            .collect::<Result<Vec<_>, _>>()?;
        audit::append(
            &mut tx,
            vec![AuditEvent::new(
                now,
                actor.clone(),
                "rollout.retried",
                format!("rollout:{rollout}"),
                Outcome::Success,
                json!({"devices": devices.len(), "requeued": &devices[..devices.len().min(100)]}),
            )],
        )
        .await?;
        tx.commit().await?;
        Ok(devices.len())
    }

    /// Restart the timeout of members assigned but not started (after a pause or halt, during
    /// which they were not told to start).
    pub async fn restart_waiting(
        &self,
        rollout: &str,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("UPDATE rollout_devices SET assigned_at = $1 WHERE rollout_id = $2 AND status = 'assigned'")
            .bind(now.unix_timestamp())
            .bind(rollout)
            .execute(&mut *tx)
            .await?;
        Ok(tx.commit().await?)
    }

    /// Take the checks `devices` do not pass now as their new baseline: an operator who
    /// resumes after a security halt has looked at them (the resume is the audit entry).
    pub async fn rebaseline(
        &self,
        rollout: &str,
        devices: &[(String, i64)],
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        for (device, baseline) in devices {
            sqlx::query("UPDATE rollout_devices SET baseline_failures = $1 WHERE rollout_id = $2 AND device_id = $3")
                .bind(*baseline)
                .bind(rollout)
                .bind(device)
                .execute(&mut *tx)
                .await?;
        }
        Ok(tx.commit().await?)
    }

    /// Members that installed the release, with the checks they did not pass when assigned.
    pub async fn installed_members(&self, rollout: &str) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT device_id, baseline_failures FROM rollout_devices WHERE rollout_id = $1 AND status = 'installed'",
        )
        .bind(rollout)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("device_id")?, r.try_get("baseline_failures")?)))
            .collect()
    }

    /// The device's updates, newest first (at most 20): every rollout it is part of.
    pub async fn device_updates(
        &self,
        device: &str,
    ) -> Result<Vec<crate::rollouts::DeviceUpdate>, StoreError> {
        let rows = sqlx::query(
            "SELECT m.rollout_id, r.state, rel.version, m.status, m.reason, m.reported_version, m.updated_at \
             FROM rollout_devices m JOIN rollouts r ON r.id = m.rollout_id JOIN releases rel ON rel.id = r.release_id \
             WHERE m.device_id = $1 ORDER BY m.updated_at DESC, m.rollout_id DESC LIMIT 20",
        )
        .bind(device)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(crate::rollouts::DeviceUpdate {
                    rollout_id: r.try_get("rollout_id")?,
                    rollout_state: r.try_get("state")?,
                    release_version: r.try_get("version")?,
                    status: r.try_get("status")?,
                    reason: r.try_get("reason")?,
                    reported_version: r.try_get("reported_version")?,
                    updated_at: crate::rows::ts(r.try_get("updated_at")?)?,
                })
            })
            .collect()
    }

    /// What `device` should install now, if anything: its update in a rollout that runs, waits
    /// for approval, or completed while it was assigned (completion judges the thresholds; the
    /// devices already assigned still finish). Paused, halted and stopped rollouts withhold it.
    pub async fn device_assignment(
        &self,
        device: &str,
    ) -> Result<Option<DeviceAssignment>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT m.rollout_id, m.status, r.rollback, rel.version, rel.target_name \
             FROM rollout_devices m JOIN rollouts r ON r.id = m.rollout_id JOIN releases rel ON rel.id = r.release_id \
             WHERE m.device_id = $1 AND m.status IN {IN_FLIGHT} AND r.state IN ('running', 'awaiting-approval', 'completed') \
             ORDER BY m.assigned_at DESC LIMIT 1"
        )))
        .bind(device)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(DeviceAssignment {
                rollout_id: r.try_get("rollout_id")?,
                status: r.try_get("status")?,
                rollback: r.try_get::<i64, _>("rollback")? == 1,
                release_version: r.try_get("version")?,
                target_name: r.try_get("target_name")?,
            })
        })
        .transpose()
    }

    /// Record a device's report on its update. Progress (`downloading`, `installing`) only
    /// moves an update under way forward; an outcome (`installed`, `failed`, `rejected`) ends
    /// it, also after a timeout (the device was slow, not silent). `installed` records the
    /// version the device now runs in the inventory.
    pub async fn record_update_report(
        &self,
        device: &str,
        report: &UpdateReport,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "SELECT m.status, rel.version FROM rollout_devices m JOIN rollouts r ON r.id = m.rollout_id \
             JOIN releases rel ON rel.id = r.release_id WHERE m.rollout_id = $1 AND m.device_id = $2",
        )
        .bind(&report.rollout_id)
        .bind(device)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| StoreError::NotFound {
            kind: "assignment",
            id: format!("{} in rollout {}", device, report.rollout_id),
        })?;
        let status: String = row.try_get("status")?;
        let shipped: String = row.try_get("version")?;
        // The inventory learns only the version this rollout ships, never one the device names.
        if report.status == "installed" && report.version.as_deref() != Some(shipped.as_str()) {
            return Err(StoreError::Conflict(format!(
                "this rollout ships {shipped}: an installed report names that version"
            )));
        }
        let rank = |s: &str| match s {
            "assigned" => 1,
            "downloading" => 2,
            "installing" => 3,
            _ => 4,
        };
        let outcome = matches!(report.status.as_str(), "installed" | "failed" | "rejected");
        let in_flight = matches!(status.as_str(), "assigned" | "downloading" | "installing");
        // A progress report repeated or arriving late (a retry after a lost answer, a device
        // that timed out but carries on) changes nothing and is no error: the outcome counts.
        if !outcome
            && (status == "timed-out" || (in_flight && rank(&report.status) <= rank(&status)))
        {
            return Ok(());
        }
        if !(in_flight || (outcome && status == "timed-out")) {
            return Err(StoreError::Conflict(format!(
                "the update is {status}: a `{}` report does not follow",
                report.status
            )));
        }
        let changed = sqlx::query("UPDATE rollout_devices SET status = $1, reason = $2, reported_version = $3, updated_at = $4 WHERE rollout_id = $5 AND device_id = $6 AND status = $7")
            .bind(&report.status)
            .bind(report.reason.clone())
            .bind(report.version.clone())
            .bind(now.unix_timestamp())
            .bind(&report.rollout_id)
            .bind(device)
            .bind(&status)
            .execute(&mut *tx)
            .await?;
        if changed.rows_affected() != 1 {
            return Err(StoreError::Conflict(
                "the update changed meanwhile: report again".into(),
            ));
        }
        if let (true, Some(version)) = (report.status == "installed", &report.version) {
            sqlx::query("UPDATE devices SET firmware_version = $1, updated_at = $2 WHERE id = $3")
                .bind(version)
                .bind(now.unix_timestamp())
                .bind(device)
                .execute(&mut *tx)
                .await?;
        }
        let event = device_event(
            now,
            Actor::device(device),
            "update.reported",
            device,
            json!({"rollout": report.rollout_id, "status": report.status, "reason": report.reason,
                   "version": report.version, "previous": status}),
        );
        audit::append(&mut tx, vec![event]).await?;
        Ok(tx.commit().await?)
    }
}
