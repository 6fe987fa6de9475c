//! Attestations of organisational controls: stored with their evidence document, logged with
//! its SHA-256, current until they expire.

use serde_json::json;
use sqlx::Row;
use sqlx::any::AnyRow;
use time::OffsetDateTime;

use sigil_audit::{Actor, AuditEvent, Outcome};

use crate::revocation::hex_sha256;
use crate::rows::ts;
use crate::{Store, StoreError, audit};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attestation {
    pub id: String,
    pub check_id: String,
    pub attested_by: String,
    pub recorded_by: String,
    pub statement: String,
    pub document_name: String,
    pub document_sha256: String,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

/// An attestation to record.
pub struct NewAttestation<'a> {
    pub check_id: &'a str,
    pub attested_by: &'a str,
    pub statement: &'a str,
    pub document_name: &'a str,
    pub document: &'a [u8],
    pub expires_at: OffsetDateTime,
}

const COLUMNS: &str = "id, check_id, attested_by, recorded_by, statement, document_name, document_sha256, created_at, expires_at";

fn from_row(row: &AnyRow) -> Result<Attestation, StoreError> {
    Ok(Attestation {
        id: row.try_get("id")?,
        check_id: row.try_get("check_id")?,
        attested_by: row.try_get("attested_by")?,
        recorded_by: row.try_get("recorded_by")?,
        statement: row.try_get("statement")?,
        document_name: row.try_get("document_name")?,
        document_sha256: row.try_get("document_sha256")?,
        created_at: ts(row.try_get("created_at")?)?,
        expires_at: ts(row.try_get("expires_at")?)?,
    })
}

impl Store {
    pub async fn record_attestation(
        &self,
        actor: &Actor,
        new: &NewAttestation<'_>,
        now: OffsetDateTime,
    ) -> Result<Attestation, StoreError> {
        let record = Attestation {
            id: uuid::Uuid::now_v7().to_string(),
            check_id: new.check_id.to_owned(),
            attested_by: new.attested_by.to_owned(),
            recorded_by: actor.id.clone(),
            statement: new.statement.to_owned(),
            document_name: new.document_name.to_owned(),
            document_sha256: hex_sha256(new.document),
            created_at: now.replace_nanosecond(0).unwrap_or(now),
            expires_at: new.expires_at,
        };
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO attestations (id, check_id, attested_by, recorded_by, statement, document_name, document_sha256, document, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&record.id)
        .bind(&record.check_id)
        .bind(&record.attested_by)
        .bind(&record.recorded_by)
        .bind(&record.statement)
        .bind(&record.document_name)
        .bind(&record.document_sha256)
        .bind(new.document.to_vec())
        .bind(record.created_at.unix_timestamp())
        .bind(record.expires_at.unix_timestamp())
        .execute(&mut *tx)
        .await?;
        audit::append(
            &mut tx,
            vec![AuditEvent::new(
                now,
                actor.clone(),
                "compliance.attested",
                format!("check:{}", record.check_id),
                Outcome::Success,
                json!({"attestation": record.id, "attested_by": record.attested_by,
                       "statement": record.statement, "document_name": record.document_name,
                       "document_sha256": record.document_sha256,
                       "expires_at": record.expires_at.unix_timestamp()}),
            )],
        )
        .await?;
        tx.commit().await?;
        Ok(record)
    }

    /// The newest attestation of each check (expired ones included: the caller decides).
    pub async fn latest_attestations(&self) -> Result<Vec<Attestation>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM attestations a WHERE a.id = (SELECT MAX(b.id) FROM attestations b WHERE b.check_id = a.check_id) ORDER BY check_id"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(from_row)
            .collect()
    }

    /// An attestation's evidence document.
    pub async fn attestation_document(&self, id: &str) -> Result<(String, Vec<u8>), StoreError> {
        let row = sqlx::query("SELECT document_name, document FROM attestations WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound {
                kind: "attestation",
                id: id.to_owned(),
            })?;
        Ok((row.try_get("document_name")?, row.try_get("document")?))
    }
}
