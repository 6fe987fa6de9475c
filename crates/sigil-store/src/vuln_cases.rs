//! Vulnerability handling: the remediation policy, sites and their countries, when each
//! vulnerability was first seen in a product, and CRA Article 14 cases (opened, given a fix,
//! closed, reopened, their reports recorded and their alerts sent), every change audited in
//! its transaction.

use std::collections::{BTreeMap, HashMap};

use serde_json::json;
use sqlx::Row;
use time::OffsetDateTime;

use sigil_audit::{Actor, AuditEvent, Outcome};

use crate::rows::ts;
use crate::{Store, StoreError, audit};

/// A site and the country it is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteRecord {
    pub name: String,
    pub country: String,
    pub updated_by: String,
    pub updated_at: OffsetDateTime,
}

/// A case to open.
#[derive(Debug, Clone)]
pub struct NewCase {
    pub product_id: String,
    pub vulnerability: String,
    /// `known-exploited`, `operator` or `incident`.
    pub cause: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseReport {
    pub stage: String,
    pub submitted_at: OffsetDateTime,
    pub reference: Option<String>,
    pub submitted_by: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseAlert {
    pub stage: String,
    pub urgency: String,
    pub sent_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseRecord {
    pub id: String,
    pub product_id: String,
    pub vulnerability: String,
    pub cause: String,
    pub reason: String,
    pub aware_at: OffsetDateTime,
    pub fix_release: Option<String>,
    pub fix_available_at: Option<OffsetDateTime>,
    pub state: String,
    pub closed_at: Option<OffsetDateTime>,
    pub close_reason: Option<String>,
    pub opened_by: String,
    pub reports: Vec<CaseReport>,
    pub alerts: Vec<CaseAlert>,
}

/// A device running an affected firmware version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AffectedDevice {
    pub id: String,
    pub serial_number: String,
    pub firmware_version: String,
    pub site: Option<String>,
    pub country: Option<String>,
}

const CASE_COLUMNS: &str = "id, product_id, vulnerability, cause, reason, aware_at, fix_release, fix_available_at, state, closed_at, close_reason, opened_by";

fn opt_ts(v: Option<i64>) -> Result<Option<OffsetDateTime>, StoreError> {
    v.map(ts).transpose()
}

fn case_from_row(row: &sqlx::any::AnyRow) -> Result<CaseRecord, StoreError> {
    Ok(CaseRecord {
        id: row.try_get("id")?,
        product_id: row.try_get("product_id")?,
        vulnerability: row.try_get("vulnerability")?,
        cause: row.try_get("cause")?,
        reason: row.try_get("reason")?,
        aware_at: ts(row.try_get("aware_at")?)?,
        fix_release: row.try_get("fix_release")?,
        fix_available_at: opt_ts(row.try_get("fix_available_at")?)?,
        state: row.try_get("state")?,
        closed_at: opt_ts(row.try_get("closed_at")?)?,
        close_reason: row.try_get("close_reason")?,
        opened_by: row.try_get("opened_by")?,
        reports: Vec::new(),
        alerts: Vec::new(),
    })
}

fn event(
    now: OffsetDateTime,
    actor: &Actor,
    action: &str,
    case: &str,
    details: serde_json::Value,
) -> AuditEvent {
    AuditEvent::new(
        now,
        actor.clone(),
        action,
        format!("case:{case}"),
        Outcome::Success,
        details,
    )
}

/// Rows per multi-row INSERT of exposures (four values each).
const EXPOSURES_PER_INSERT: usize = 500;

impl Store {
    /// Days to remediate, by severity name (and `known_exploited`).
    pub async fn remediation_policy(&self) -> Result<BTreeMap<String, u32>, StoreError> {
        let rows = sqlx::query("SELECT severity, days FROM remediation_policy")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let days: i64 = r.try_get("days")?;
                Ok((
                    r.try_get("severity")?,
                    u32::try_from(days)
                        .map_err(|_| StoreError::Corrupt("remediation days".into()))?,
                ))
            })
            .collect()
    }

    /// Replace the remediation policy (audited as `vuln.policy.set`, with old and new).
    pub async fn set_remediation_policy(
        &self,
        actor: &Actor,
        days: &BTreeMap<String, u32>,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let before = self.remediation_policy().await?;
        let mut tx = self.begin_write().await?;
        for (severity, d) in days {
            let changed =
                sqlx::query("UPDATE remediation_policy SET days = $1 WHERE severity = $2")
                    .bind(i64::from(*d))
                    .bind(severity)
                    .execute(&mut *tx)
                    .await?;
            if changed.rows_affected() != 1 {
                return Err(StoreError::Conflict(format!(
                    "unknown severity `{severity}`"
                )));
            }
        }
        audit::append(
            &mut tx,
            vec![AuditEvent::new(
                now,
                actor.clone(),
                "vuln.policy.set",
                "remediation-policy".to_owned(),
                Outcome::Success,
                json!({"before": before, "after": days}),
            )],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Register (or move) a site in a country (audited as `site.set`).
    pub async fn put_site(
        &self,
        actor: &Actor,
        name: &str,
        country: &str,
        now: OffsetDateTime,
    ) -> Result<SiteRecord, StoreError> {
        let mut tx = self.begin_write().await?;
        let before: Option<String> = sqlx::query("SELECT country FROM sites WHERE name = $1")
            .bind(name)
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| r.try_get("country"))
            .transpose()?;
        sqlx::query("DELETE FROM sites WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO sites (name, country, updated_by, updated_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(name)
        .bind(country)
        .bind(&actor.id)
        .bind(now.unix_timestamp())
        .execute(&mut *tx)
        .await?;
        audit::append(
            &mut tx,
            vec![AuditEvent::new(
                now,
                actor.clone(),
                "site.set",
                format!("site:{name}"),
                Outcome::Success,
                json!({"country": country, "previous_country": before}),
            )],
        )
        .await?;
        tx.commit().await?;
        Ok(SiteRecord {
            name: name.to_owned(),
            country: country.to_owned(),
            updated_by: actor.id.clone(),
            updated_at: now,
        })
    }

    pub async fn sites(&self) -> Result<Vec<SiteRecord>, StoreError> {
        let rows =
            sqlx::query("SELECT name, country, updated_by, updated_at FROM sites ORDER BY name")
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| {
                Ok(SiteRecord {
                    name: r.try_get("name")?,
                    country: r.try_get("country")?,
                    updated_by: r.try_get("updated_by")?,
                    updated_at: ts(r.try_get("updated_at")?)?,
                })
            })
            .collect()
    }

    /// Record `(vulnerability, component)` pairs found in a product now (those already known
    /// keep their first sighting), and return when each was first seen.
    pub async fn record_exposures(
        &self,
        product: &str,
        found: &[(String, String)],
        now: OffsetDateTime,
    ) -> Result<HashMap<(String, String), OffsetDateTime>, StoreError> {
        if !found.is_empty() {
            let mut tx = self.begin_write().await?;
            for chunk in found.chunks(EXPOSURES_PER_INSERT) {
                let rows = crate::batch::value_rows(chunk.len(), 4);
                let sql = format!(
                    "INSERT INTO vuln_exposures (product_id, vulnerability, component, first_seen) VALUES {rows} \
                     ON CONFLICT (product_id, vulnerability, component) DO NOTHING"
                );
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
                for (vulnerability, component) in chunk {
                    q = q
                        .bind(product)
                        .bind(vulnerability.clone())
                        .bind(component.clone())
                        .bind(now.unix_timestamp());
                }
                q.execute(&mut *tx).await?;
            }
            tx.commit().await?;
        }
        let rows = sqlx::query(
            "SELECT vulnerability, component, first_seen FROM vuln_exposures WHERE product_id = $1",
        )
        .bind(product)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    (r.try_get("vulnerability")?, r.try_get("component")?),
                    ts(r.try_get("first_seen")?)?,
                ))
            })
            .collect()
    }

    /// Open a case, or reopen a closed one for the same product and vulnerability (audited as
    /// `vuln.case.opened` or `vuln.case.reopened`). An open case is returned as it is.
    pub async fn open_case(
        &self,
        actor: &Actor,
        new: &NewCase,
        now: OffsetDateTime,
    ) -> Result<(CaseRecord, bool), StoreError> {
        let mut tx = self.begin_write().await?;
        let sql = format!(
            "SELECT {CASE_COLUMNS} FROM vuln_cases WHERE product_id = $1 AND vulnerability = $2"
        );
        let existing = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&new.product_id)
            .bind(&new.vulnerability)
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| case_from_row(&r))
            .transpose()?;
        let (id, action) = match existing {
            Some(c) if c.state == "open" => return Ok((self.case(&c.id).await?, false)),
            Some(c) => {
                sqlx::query("UPDATE vuln_cases SET state = 'open', closed_at = NULL, close_reason = NULL WHERE id = $1")
                    .bind(&c.id)
                    .execute(&mut *tx)
                    .await?;
                (c.id, "vuln.case.reopened")
            }
            None => {
                let id = uuid::Uuid::now_v7().to_string();
                sqlx::query(
                    "INSERT INTO vuln_cases (id, product_id, vulnerability, cause, reason, aware_at, state, opened_by) \
                     VALUES ($1, $2, $3, $4, $5, $6, 'open', $7)",
                )
                .bind(&id)
                .bind(&new.product_id)
                .bind(&new.vulnerability)
                .bind(&new.cause)
                .bind(&new.reason)
                .bind(now.unix_timestamp())
                .bind(&actor.id)
                .execute(&mut *tx)
                .await?;
                (id, "vuln.case.opened")
            }
        };
        audit::append(
            &mut tx,
            vec![event(
                now,
                actor,
                action,
                &id,
                json!({
                "product": new.product_id, "vulnerability": new.vulnerability,
                "cause": new.cause, "reason": new.reason}),
            )],
        )
        .await?;
        tx.commit().await?;
        Ok((self.case(&id).await?, true))
    }

    /// Record the release that corrects a case's vulnerability (audited as
    /// `vuln.case.fix-available`); the final report's clock starts at `available_at`.
    pub async fn set_case_fix(
        &self,
        actor: &Actor,
        case: &str,
        release: &str,
        available_at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let changed = sqlx::query(
            "UPDATE vuln_cases SET fix_release = $1, fix_available_at = $2 WHERE id = $3 AND fix_release IS NULL",
        )
        .bind(release)
        .bind(available_at.unix_timestamp())
        .bind(case)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed == 0 {
            return Ok(());
        }
        audit::append(
            &mut tx,
            vec![event(
                now,
                actor,
                "vuln.case.fix-available",
                case,
                json!({
                "release": release, "available_at": available_at.unix_timestamp()}),
            )],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Close a case (audited as `vuln.case.closed`).
    pub async fn close_case(
        &self,
        actor: &Actor,
        case: &str,
        reason: &str,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let changed = sqlx::query("UPDATE vuln_cases SET state = 'closed', closed_at = $1, close_reason = $2 WHERE id = $3 AND state = 'open'")
            .bind(now.unix_timestamp())
            .bind(reason)
            .bind(case)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if changed == 0 {
            return Ok(());
        }
        audit::append(
            &mut tx,
            vec![event(
                now,
                actor,
                "vuln.case.closed",
                case,
                json!({"reason": reason}),
            )],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Record that a stage's report was submitted (audited as `vuln.case.report-submitted`);
    /// a stage is submitted once.
    pub async fn record_case_report(
        &self,
        actor: &Actor,
        case: &str,
        stage: &str,
        reference: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<CaseRecord, StoreError> {
        self.case(case).await?;
        let mut tx = self.begin_write().await?;
        // Checked inside the write transaction: two submissions at once get one 409.
        let already =
            sqlx::query("SELECT 1 AS one FROM vuln_case_reports WHERE case_id = $1 AND stage = $2")
                .bind(case)
                .bind(stage)
                .fetch_optional(&mut *tx)
                .await?;
        if already.is_some() {
            return Err(StoreError::Conflict(format!(
                "the {stage} of case {case} is already recorded as submitted"
            )));
        }
        sqlx::query("INSERT INTO vuln_case_reports (case_id, stage, submitted_at, reference, submitted_by) VALUES ($1, $2, $3, $4, $5)")
            .bind(case)
            .bind(stage)
            .bind(now.unix_timestamp())
            .bind(reference.map(str::to_owned))
            .bind(&actor.id)
            .execute(&mut *tx)
            .await?;
        audit::append(
            &mut tx,
            vec![event(
                now,
                actor,
                "vuln.case.report-submitted",
                case,
                json!({"stage": stage, "reference": reference}),
            )],
        )
        .await?;
        tx.commit().await?;
        self.case(case).await
    }

    /// Record an alert about a stage, once: false if it was already sent (audited as
    /// `vuln.case.alerted`).
    pub async fn record_case_alert(
        &self,
        actor: &Actor,
        case: &str,
        stage: &str,
        urgency: &str,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO vuln_case_alerts (case_id, stage, urgency, sent_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (case_id, stage, urgency) DO NOTHING",
        )
        .bind(case)
        .bind(stage)
        .bind(urgency)
        .bind(now.unix_timestamp())
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if inserted {
            audit::append(
                &mut tx,
                vec![event(
                    now,
                    actor,
                    "vuln.case.alerted",
                    case,
                    json!({"stage": stage, "urgency": urgency}),
                )],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(inserted)
    }

    pub async fn case(&self, id: &str) -> Result<CaseRecord, StoreError> {
        let sql = format!("SELECT {CASE_COLUMNS} FROM vuln_cases WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound {
                kind: "case",
                id: id.to_owned(),
            })?;
        let mut case = case_from_row(&row)?;
        for r in sqlx::query("SELECT stage, submitted_at, reference, submitted_by FROM vuln_case_reports WHERE case_id = $1 ORDER BY submitted_at")
            .bind(id)
            .fetch_all(&self.pool)
            .await?
        {
            case.reports.push(CaseReport {
                stage: r.try_get("stage")?,
                submitted_at: ts(r.try_get("submitted_at")?)?,
                reference: r.try_get("reference")?,
                submitted_by: r.try_get("submitted_by")?,
            });
        }
        for r in sqlx::query("SELECT stage, urgency, sent_at FROM vuln_case_alerts WHERE case_id = $1 ORDER BY sent_at, stage")
            .bind(id)
            .fetch_all(&self.pool)
            .await?
        {
            case.alerts.push(CaseAlert {
                stage: r.try_get("stage")?,
                urgency: r.try_get("urgency")?,
                sent_at: ts(r.try_get("sent_at")?)?,
            });
        }
        Ok(case)
    }

    /// Cases, newest first, of one product or all, open ones or all.
    pub async fn cases(
        &self,
        product: Option<&str>,
        open_only: bool,
    ) -> Result<Vec<CaseRecord>, StoreError> {
        self.cases_page(product, open_only, None, i64::MAX).await
    }

    /// A page of cases, newest first: those older than the case `before`, at most `limit`.
    pub async fn cases_page(
        &self,
        product: Option<&str>,
        open_only: bool,
        before: Option<&str>,
        limit: i64,
    ) -> Result<Vec<CaseRecord>, StoreError> {
        let ids: Vec<String> = sqlx::query(
            "SELECT id FROM vuln_cases WHERE ($1 = '' OR product_id = $1) AND ($2 = 0 OR state = 'open') \
             AND ($3 = '' OR id < $3) ORDER BY id DESC LIMIT $4",
        )
            .bind(product.unwrap_or(""))
            .bind(i64::from(open_only))
            .bind(before.unwrap_or(""))
            .bind(limit)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| r.try_get("id"))
            .collect::<Result<_, _>>()?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.push(self.case(&id).await?);
        }
        Ok(out)
    }

    /// Where the devices of a product (not retired) running one of `firmware_versions` are:
    /// devices per country of their site (`None`: no site, or a site with no country).
    pub async fn countries_running(
        &self,
        product: &str,
        firmware_versions: &[String],
    ) -> Result<Vec<(Option<String>, u64)>, StoreError> {
        let mut per: BTreeMap<Option<String>, u64> = BTreeMap::new();
        for version in firmware_versions {
            let rows = sqlx::query(
                "SELECT s.country AS country, count(*) AS n FROM devices d LEFT JOIN sites s ON s.name = d.site \
                 WHERE d.product_id = $1 AND d.firmware_version = $2 AND d.state <> 'retired' GROUP BY s.country",
            )
            .bind(product)
            .bind(version)
            .fetch_all(&self.pool)
            .await?;
            for r in rows {
                let n: i64 = r.try_get("n")?;
                *per.entry(r.try_get("country")?).or_default() += u64::try_from(n).unwrap_or(0);
            }
        }
        Ok(per.into_iter().collect())
    }

    /// Devices of a product (not retired) running one of `firmware_versions`: how many, and
    /// the first `limit` of them with their site's country.
    pub async fn devices_running(
        &self,
        product: &str,
        firmware_versions: &[String],
        limit: u32,
    ) -> Result<(u64, Vec<AffectedDevice>), StoreError> {
        let mut total = 0;
        let mut out = Vec::new();
        for version in firmware_versions {
            let n: i64 = sqlx::query(
                "SELECT count(*) AS n FROM devices WHERE product_id = $1 AND firmware_version = $2 AND state <> 'retired'",
            )
            .bind(product)
            .bind(version)
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?;
            total += u64::try_from(n).unwrap_or(0);
            let room = i64::from(limit) - i64::try_from(out.len()).unwrap_or(i64::MAX);
            if room <= 0 {
                continue;
            }
            let rows = sqlx::query(
                "SELECT d.id, d.serial_number, d.firmware_version, d.site, s.country FROM devices d \
                 LEFT JOIN sites s ON s.name = d.site \
                 WHERE d.product_id = $1 AND d.firmware_version = $2 AND d.state <> 'retired' ORDER BY d.id LIMIT $3",
            )
            .bind(product)
            .bind(version)
            .bind(room)
            .fetch_all(&self.pool)
            .await?;
            for r in rows {
                out.push(AffectedDevice {
                    id: r.try_get("id")?,
                    serial_number: r.try_get("serial_number")?,
                    firmware_version: r.try_get("firmware_version")?,
                    site: r.try_get("site")?,
                    country: r.try_get("country")?,
                });
            }
        }
        Ok((total, out))
    }
}
