//! Coordinated vulnerability disclosure: each scope's policy (a product's, or `*` for the
//! organisation's) and the reports received, acknowledged and decided; an accepted report's
//! advisory is stored as an OSV record in the same transaction. Every change is audited in
//! its transaction. The checks on what goes in are `sigil-vuln`'s (through the authority).

use serde_json::json;
use sqlx::Row;
use time::OffsetDateTime;

use sigil_audit::{Actor, AuditEvent, Outcome};

use crate::rows::ts;
use crate::vulns::VulnRecordRow;
use crate::{Store, StoreError, audit};

/// A scope's policy as stored (the JSON of `sigil_vuln::disclosure::DisclosurePolicy`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisclosurePolicyRecord {
    pub scope: String,
    pub policy: String,
    pub expires_at: OffsetDateTime,
    pub updated_by: String,
    pub updated_at: OffsetDateTime,
}

/// A report to record.
#[derive(Debug, Clone)]
pub struct NewReport {
    pub id: String,
    pub product_id: String,
    /// `public` (received on the public intake) or `operator` (entered by an operator).
    pub channel: String,
    pub receipt_hash: Option<String>,
    /// The submission's JSON.
    pub submission: String,
    pub acknowledge_by: OffsetDateTime,
    pub decide_by: OffsetDateTime,
    /// Entered into the audit entry instead of the text: reports may hold unpublished details.
    pub sha256: String,
    pub exploited: bool,
    /// Where a public report came from (an IPv4 address or IPv6 /64), for the audit entry.
    pub source_address: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportRecord {
    pub id: String,
    pub product_id: String,
    pub channel: String,
    pub submission: String,
    pub received_by: String,
    pub received_at: OffsetDateTime,
    pub acknowledge_by: OffsetDateTime,
    pub decide_by: OffsetDateTime,
    /// `received`, `acknowledged`, `accepted` or `rejected`.
    pub state: String,
    pub acknowledged_at: Option<OffsetDateTime>,
    pub decided_at: Option<OffsetDateTime>,
    pub decided_by: Option<String>,
    pub decision: Option<String>,
    pub advisory_id: Option<String>,
}

const REPORT_COLUMNS: &str = "id, product_id, channel, submission, received_by, received_at, acknowledge_by, decide_by, state, acknowledged_at, decided_at, decided_by, decision, advisory_id";

fn report_from_row(row: &sqlx::any::AnyRow) -> Result<ReportRecord, StoreError> {
    let opt = |v: Option<i64>| v.map(ts).transpose();
    Ok(ReportRecord {
        id: row.try_get("id")?,
        product_id: row.try_get("product_id")?,
        channel: row.try_get("channel")?,
        submission: row.try_get("submission")?,
        received_by: row.try_get("received_by")?,
        received_at: ts(row.try_get("received_at")?)?,
        acknowledge_by: ts(row.try_get("acknowledge_by")?)?,
        decide_by: ts(row.try_get("decide_by")?)?,
        state: row.try_get("state")?,
        acknowledged_at: opt(row.try_get("acknowledged_at")?)?,
        decided_at: opt(row.try_get("decided_at")?)?,
        decided_by: row.try_get("decided_by")?,
        decision: row.try_get("decision")?,
        advisory_id: row.try_get("advisory_id")?,
    })
}

fn policy_from_row(row: &sqlx::any::AnyRow) -> Result<DisclosurePolicyRecord, StoreError> {
    Ok(DisclosurePolicyRecord {
        scope: row.try_get("scope")?,
        policy: row.try_get("policy")?,
        expires_at: ts(row.try_get("expires_at")?)?,
        updated_by: row.try_get("updated_by")?,
        updated_at: ts(row.try_get("updated_at")?)?,
    })
}

fn event(
    now: OffsetDateTime,
    actor: &Actor,
    action: &str,
    subject: String,
    details: serde_json::Value,
) -> AuditEvent {
    AuditEvent::new(
        now,
        actor.clone(),
        action,
        subject,
        Outcome::Success,
        details,
    )
}

/// How an operator decides a report.
#[derive(Debug, Clone)]
pub enum Decision {
    /// A vulnerability: its advisory, matched against every product's SBOMs from now on.
    Accept(VulnRecordRow),
    /// Not a vulnerability, out of scope, or a duplicate: the reason says which.
    Reject(String),
}

impl Store {
    /// Publish (or replace) `scope`'s policy.
    pub async fn put_disclosure_policy(
        &self,
        actor: &Actor,
        scope: &str,
        policy: &str,
        expires_at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<DisclosurePolicyRecord, StoreError> {
        let mut tx = self.begin_write().await?;
        let before: Option<String> =
            sqlx::query("SELECT policy FROM disclosure_policies WHERE scope = $1")
                .bind(scope)
                .fetch_optional(&mut *tx)
                .await?
                .map(|r| r.try_get("policy"))
                .transpose()?;
        sqlx::query("DELETE FROM disclosure_policies WHERE scope = $1")
            .bind(scope)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO disclosure_policies (scope, policy, expires_at, updated_by, updated_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(scope)
        .bind(policy)
        .bind(expires_at.unix_timestamp())
        .bind(&actor.id)
        .bind(now.unix_timestamp())
        .execute(&mut *tx)
        .await?;
        // The policy is public: the entry keeps it whole, before and after.
        let parse = |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap_or_default();
        audit::append(
            &mut tx,
            vec![event(
                now,
                actor,
                "disclosure.policy.set",
                format!("disclosure:{scope}"),
                json!({"policy": parse(policy), "previous": before.as_deref().map(parse)}),
            )],
        )
        .await?;
        tx.commit().await?;
        Ok(DisclosurePolicyRecord {
            scope: scope.to_owned(),
            policy: policy.to_owned(),
            expires_at,
            updated_by: actor.id.clone(),
            updated_at: now,
        })
    }

    pub async fn disclosure_policy(
        &self,
        scope: &str,
    ) -> Result<Option<DisclosurePolicyRecord>, StoreError> {
        sqlx::query("SELECT * FROM disclosure_policies WHERE scope = $1")
            .bind(scope)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(policy_from_row)
            .transpose()
    }

    pub async fn disclosure_policies(&self) -> Result<Vec<DisclosurePolicyRecord>, StoreError> {
        sqlx::query("SELECT * FROM disclosure_policies ORDER BY scope")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(policy_from_row)
            .collect()
    }

    /// Record a report as received.
    pub async fn receive_report(
        &self,
        actor: &Actor,
        report: &NewReport,
        now: OffsetDateTime,
    ) -> Result<ReportRecord, StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO disclosure_reports (id, product_id, channel, receipt_hash, submission, received_by, received_at, acknowledge_by, decide_by, state) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'received')",
        )
        .bind(&report.id)
        .bind(&report.product_id)
        .bind(&report.channel)
        .bind(report.receipt_hash.clone())
        .bind(&report.submission)
        .bind(&actor.id)
        .bind(now.unix_timestamp())
        .bind(report.acknowledge_by.unix_timestamp())
        .bind(report.decide_by.unix_timestamp())
        .execute(&mut *tx)
        .await?;
        audit::append(
            &mut tx,
            vec![event(
                now,
                actor,
                "disclosure.report.received",
                format!("disclosure-report:{}", report.id),
                json!({"product": report.product_id, "channel": report.channel,
                       "sha256": report.sha256, "exploited": report.exploited,
                       "address": report.source_address}),
            )],
        )
        .await?;
        let stored = report_in(&mut *tx, &report.id).await?;
        tx.commit().await?;
        Ok(stored)
    }

    /// Acknowledge a received report (a report acknowledged or decided stays as it is).
    pub async fn acknowledge_report(
        &self,
        actor: &Actor,
        id: &str,
        now: OffsetDateTime,
    ) -> Result<ReportRecord, StoreError> {
        let mut tx = self.begin_write().await?;
        let report = report_in(&mut *tx, id).await?;
        if report.state != "received" {
            return Err(StoreError::Conflict(format!(
                "report {id} is already {}",
                report.state
            )));
        }
        // The state in the predicate: a concurrent decision (PostgreSQL reads committed) wins.
        let changed = sqlx::query(
            "UPDATE disclosure_reports SET state = 'acknowledged', acknowledged_at = $1 WHERE id = $2 AND state = 'received'",
        )
        .bind(now.unix_timestamp())
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed != 1 {
            return Err(StoreError::Conflict(format!(
                "report {id} changed meanwhile"
            )));
        }
        audit::append(
            &mut tx,
            vec![event(
                now,
                actor,
                "disclosure.report.acknowledged",
                format!("disclosure-report:{id}"),
                json!({"product": report.product_id,
                       "on_time": now <= report.acknowledge_by}),
            )],
        )
        .await?;
        let stored = report_in(&mut *tx, id).await?;
        tx.commit().await?;
        Ok(stored)
    }

    /// Accept or reject a report not decided yet; deciding acknowledges it too. An accepted
    /// report's advisory is stored with it (source `disclosure`).
    pub async fn decide_report(
        &self,
        actor: &Actor,
        id: &str,
        decision: &Decision,
        now: OffsetDateTime,
    ) -> Result<ReportRecord, StoreError> {
        let mut tx = self.begin_write().await?;
        let report = report_in(&mut *tx, id).await?;
        if matches!(report.state.as_str(), "accepted" | "rejected") {
            return Err(StoreError::Conflict(format!(
                "report {id} was already {}",
                report.state
            )));
        }
        let (state, reason, advisory) = match decision {
            Decision::Accept(row) => {
                crate::vulns::insert_record(&mut tx, row, "disclosure", now).await?;
                ("accepted", None, Some(row.id.clone()))
            }
            Decision::Reject(reason) => ("rejected", Some(reason.clone()), None),
        };
        // Only an undecided report is decided: of two concurrent decisions one fails, and its
        // advisory goes with its transaction.
        let changed = sqlx::query(
            "UPDATE disclosure_reports SET state = $1, decided_at = $2, decided_by = $3, decision = $4, advisory_id = $5, \
             acknowledged_at = COALESCE(acknowledged_at, $2) WHERE id = $6 AND state IN ('received', 'acknowledged')",
        )
        .bind(state)
        .bind(now.unix_timestamp())
        .bind(&actor.id)
        .bind(reason.clone())
        .bind(advisory.clone())
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed != 1 {
            return Err(StoreError::Conflict(format!(
                "report {id} was decided meanwhile"
            )));
        }
        audit::append(
            &mut tx,
            vec![event(
                now,
                actor,
                &format!("disclosure.report.{state}"),
                format!("disclosure-report:{id}"),
                json!({"product": report.product_id, "advisory": advisory, "reason": reason,
                       "on_time": now <= report.decide_by}),
            )],
        )
        .await?;
        let stored = report_in(&mut *tx, id).await?;
        tx.commit().await?;
        Ok(stored)
    }

    pub async fn disclosure_report(&self, id: &str) -> Result<ReportRecord, StoreError> {
        report_in(&self.pool, id).await
    }

    /// The report a receipt's hash belongs to.
    pub async fn report_by_receipt(
        &self,
        receipt_hash: &str,
    ) -> Result<Option<ReportRecord>, StoreError> {
        let sql =
            format!("SELECT {REPORT_COLUMNS} FROM disclosure_reports WHERE receipt_hash = $1");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(receipt_hash)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(report_from_row)
            .transpose()
    }

    /// Reports, newest first: of one product or all, undecided only or all, at most `limit`.
    pub async fn disclosure_reports(
        &self,
        product: Option<&str>,
        open_only: bool,
        limit: u32,
    ) -> Result<Vec<ReportRecord>, StoreError> {
        let sql = format!(
            "SELECT {REPORT_COLUMNS} FROM disclosure_reports WHERE ($1 = '' OR product_id = $1) \
             AND ($2 = 0 OR state IN ('received', 'acknowledged')) ORDER BY received_at DESC, id LIMIT $3"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(product.unwrap_or(""))
            .bind(i64::from(open_only))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(report_from_row)
            .collect()
    }

    /// Public reports not yet acknowledged: the intake stops taking more past a bound.
    pub async fn unacknowledged_public_reports(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM disclosure_reports WHERE state = 'received' AND channel = 'public'",
        )
        .fetch_one(&self.pool)
        .await?
        .try_get("n")?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}

/// One report, read from the pool or inside a write transaction.
async fn report_in<'e, E>(executor: E, id: &str) -> Result<ReportRecord, StoreError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let sql = format!("SELECT {REPORT_COLUMNS} FROM disclosure_reports WHERE id = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(executor)
        .await?
        .ok_or_else(|| StoreError::NotFound {
            kind: "disclosure report",
            id: id.to_owned(),
        })?;
    report_from_row(&row)
}
