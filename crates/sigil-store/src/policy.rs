//! Versions of the access policy: append-only, newest in force.

use serde_json::json;
use sqlx::Row;
use sqlx::any::AnyRow;
use time::OffsetDateTime;

use sigil_audit::{Actor, AuditEvent, Outcome};

use crate::revocation::hex_sha256;
use crate::{Store, StoreError, audit};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyVersion {
    pub version: i64,
    pub text: String,
    pub sha256: String,
    pub comment: String,
    pub created_at: OffsetDateTime,
    pub created_by: String,
}

fn version_from_row(row: &AnyRow) -> Result<PolicyVersion, StoreError> {
    Ok(PolicyVersion {
        version: row.try_get("version")?,
        text: row.try_get("text")?,
        sha256: row.try_get("sha256")?,
        comment: row.try_get("comment")?,
        created_at: OffsetDateTime::from_unix_timestamp(row.try_get("created_at")?)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
        created_by: row.try_get("created_by")?,
    })
}

const COLUMNS: &str = "version, text, sha256, comment, created_at, created_by";

/// The documents kept as append-only versions, newest in force.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Versioned {
    /// The access policy (Cedar).
    Policy,
    /// Behaviour monitoring's security profiles (JSON).
    SecurityProfiles,
}

impl Versioned {
    fn table(self) -> &'static str {
        match self {
            Self::Policy => "policy_versions",
            Self::SecurityProfiles => "security_profile_versions",
        }
    }

    fn action(self) -> &'static str {
        match self {
            Self::Policy => "policy.applied",
            Self::SecurityProfiles => "monitoring.profiles_applied",
        }
    }

    fn subject(self) -> &'static str {
        match self {
            Self::Policy => "policy",
            Self::SecurityProfiles => "security-profiles",
        }
    }
}

impl Store {
    /// Record `text` (already validated) as the next version, and log it with its hash and
    /// `details` (what it replaced, the policy ids).
    pub async fn apply_policy(
        &self,
        actor: &Actor,
        text: &str,
        comment: &str,
        details: serde_json::Value,
        now: OffsetDateTime,
    ) -> Result<PolicyVersion, StoreError> {
        self.append_version(Versioned::Policy, actor, text, comment, details, now)
            .await
    }

    /// The policy in force, if one was ever applied.
    pub async fn current_policy(&self) -> Result<Option<PolicyVersion>, StoreError> {
        self.latest_version(Versioned::Policy).await
    }

    /// Record a document (already validated) as the next version of its kind, audited with its
    /// hash, its comment and `details`, in one transaction.
    pub(crate) async fn append_version(
        &self,
        kind: Versioned,
        actor: &Actor,
        text: &str,
        comment: &str,
        details: serde_json::Value,
        now: OffsetDateTime,
    ) -> Result<PolicyVersion, StoreError> {
        let table = kind.table();
        let mut tx = self.begin_write().await?;
        let sql = format!("SELECT COALESCE(MAX(version), 0) AS v FROM {table}");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_one(&mut *tx)
            .await?;
        let version = row.try_get::<i64, _>("v")? + 1;
        let sha256 = hex_sha256(text.as_bytes());
        let sql = format!(
            "INSERT INTO {table} (version, text, sha256, comment, created_at, created_by) VALUES ($1, $2, $3, $4, $5, $6)"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(version)
            .bind(text)
            .bind(&sha256)
            .bind(comment)
            .bind(now.unix_timestamp())
            .bind(&actor.id)
            .execute(&mut *tx)
            .await?;
        let mut details = details;
        if let Some(o) = details.as_object_mut() {
            o.insert("version".into(), json!(version));
            o.insert("sha256".into(), json!(sha256));
            o.insert("comment".into(), json!(comment));
        }
        audit::append(
            &mut tx,
            vec![AuditEvent::new(
                now,
                actor.clone(),
                kind.action(),
                format!("{}:{version}", kind.subject()),
                Outcome::Success,
                details,
            )],
        )
        .await?;
        tx.commit().await?;
        Ok(PolicyVersion {
            version,
            text: text.to_owned(),
            sha256,
            comment: comment.to_owned(),
            created_at: now,
            created_by: actor.id.clone(),
        })
    }

    /// The newest version of a kind of document, if any was ever applied.
    pub(crate) async fn latest_version(
        &self,
        kind: Versioned,
    ) -> Result<Option<PolicyVersion>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM {} ORDER BY version DESC LIMIT 1",
            kind.table()
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_optional(&self.pool)
            .await?
            .map(|r| version_from_row(&r))
            .transpose()
    }

    pub async fn policy_version(&self, version: i64) -> Result<PolicyVersion, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM policy_versions WHERE version = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(version)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound {
                kind: "policy version",
                id: version.to_string(),
            })?;
        version_from_row(&row)
    }

    /// Every version, newest first.
    pub async fn policy_versions(&self) -> Result<Vec<PolicyVersion>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM policy_versions ORDER BY version DESC");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(version_from_row)
            .collect()
    }
}
