//! Compliance posture history: one row per framework evaluation.

use sqlx::Row;
use sqlx::any::AnyRow;
use time::OffsetDateTime;

use crate::rows::ts;
use crate::{Store, StoreError};

#[derive(Debug, Clone, PartialEq)]
pub struct ComplianceRun {
    pub id: String,
    pub framework: String,
    pub evaluated_at: OffsetDateTime,
    pub catalogue_version: String,
    pub score: f64,
    /// Counts of requirements by status.
    pub summary: serde_json::Value,
    /// Requirement id -> status.
    pub requirements: serde_json::Map<String, serde_json::Value>,
}

fn run_from_row(row: &AnyRow) -> Result<ComplianceRun, StoreError> {
    let json = |column: &str| -> Result<serde_json::Value, StoreError> {
        let text: String = row.try_get(column)?;
        serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(format!("{column}: {e}")))
    };
    let score: String = row.try_get("score")?;
    Ok(ComplianceRun {
        id: row.try_get("id")?,
        framework: row.try_get("framework")?,
        evaluated_at: ts(row.try_get("evaluated_at")?)?,
        catalogue_version: row.try_get("catalogue_version")?,
        score: score
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("score `{score}`")))?,
        summary: json("summary")?,
        requirements: match json("requirements")? {
            serde_json::Value::Object(m) => m,
            _ => return Err(StoreError::Corrupt("requirements is not an object".into())),
        },
    })
}

impl Store {
    /// Record a run; returns the previous run of the same framework, if any.
    pub async fn record_compliance_run(
        &self,
        run: &ComplianceRun,
    ) -> Result<Option<ComplianceRun>, StoreError> {
        let previous = self.compliance_history(&run.framework, 1).await?.pop();
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO compliance_runs (id, framework, evaluated_at, catalogue_version, score, summary, requirements) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&run.id)
        .bind(&run.framework)
        .bind(run.evaluated_at.unix_timestamp())
        .bind(&run.catalogue_version)
        .bind(run.score.to_string())
        .bind(run.summary.to_string())
        .bind(serde_json::Value::Object(run.requirements.clone()).to_string())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(previous)
    }

    /// The newest `limit` runs of `framework`, newest first.
    pub async fn compliance_history(
        &self,
        framework: &str,
        limit: u32,
    ) -> Result<Vec<ComplianceRun>, StoreError> {
        sqlx::query(
            "SELECT id, framework, evaluated_at, catalogue_version, score, summary, requirements \
             FROM compliance_runs WHERE framework = $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(framework)
        .bind(i64::from(limit.clamp(1, crate::MAX_PAGE)))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(run_from_row)
        .collect()
    }
}
