//! Vulnerability data: SBOMs and their components, OSV records with their aliases and the
//! packages they name, the KEV catalogue and EPSS scores. The parsing and the matching are
//! `sigil-vuln`'s (through the authority); this module stores what they produced, each change
//! with its audit entry, all or nothing.

use serde_json::json;
use sqlx::Row;
use time::OffsetDateTime;

use sigil_audit::{Actor, AuditEvent, Outcome};

use crate::rows::ts;
use crate::{Store, StoreError, audit};

/// One component of an SBOM, with the OSV package its purl names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentRow {
    pub name: String,
    pub version: Option<String>,
    pub purl: Option<String>,
    pub cpe: Option<String>,
    /// OSV ecosystem, with its release (`Debian:12`).
    pub ecosystem: Option<String>,
    /// The ecosystem's normalised package name.
    pub package: Option<String>,
}

/// An SBOM to store.
#[derive(Debug, Clone)]
pub struct NewSbom {
    pub product_id: String,
    pub firmware_version: String,
    pub release_id: Option<String>,
    pub format: String,
    pub spec_version: String,
    pub sha256: String,
    pub document: Vec<u8>,
    pub components: Vec<ComponentRow>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SbomRecord {
    pub id: String,
    pub product_id: String,
    pub firmware_version: String,
    pub release_id: Option<String>,
    pub format: String,
    pub spec_version: String,
    pub sha256: String,
    pub components: u64,
    pub created_by: String,
    pub created_at: OffsetDateTime,
}

/// An OSV record to store, with what it is looked up by.
#[derive(Debug, Clone)]
pub struct VulnRecordRow {
    pub id: String,
    pub modified: String,
    pub withdrawn: bool,
    pub summary: Option<String>,
    pub record: String,
    pub aliases: Vec<String>,
    /// `(ecosystem without release, normalised package name)`.
    pub packages: Vec<(String, String)>,
}

/// What an import changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImportCounts {
    pub added: u64,
    pub updated: u64,
    pub unchanged: u64,
}

/// A KEV entry as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KevRow {
    pub cve: String,
    pub date_added: String,
    pub due_date: Option<String>,
    pub ransomware: Option<String>,
    pub name: String,
}

const SBOM_COLUMNS: &str = "id, product_id, firmware_version, release_id, format, spec_version, sha256, components, created_by, created_at";

fn sbom_from_row(row: &sqlx::any::AnyRow) -> Result<SbomRecord, StoreError> {
    Ok(SbomRecord {
        id: row.try_get("id")?,
        product_id: row.try_get("product_id")?,
        firmware_version: row.try_get("firmware_version")?,
        release_id: row.try_get("release_id")?,
        format: row.try_get("format")?,
        spec_version: row.try_get("spec_version")?,
        sha256: row.try_get("sha256")?,
        components: u64::try_from(row.try_get::<i64, _>("components")?)
            .map_err(|_| StoreError::Corrupt("negative component count".into()))?,
        created_by: row.try_get("created_by")?,
        created_at: ts(row.try_get("created_at")?)?,
    })
}

/// Rows per multi-row INSERT (SQLite allows 32,766 bound values; a component row has 8).
const ROWS_PER_INSERT: usize = 500;

impl Store {
    /// Store an SBOM for a product's firmware version, replacing the one it had (audited as
    /// `sbom.uploaded`, with the previous document's SHA-256 when one is replaced).
    pub async fn put_sbom(
        &self,
        actor: &Actor,
        new: &NewSbom,
        now: OffsetDateTime,
    ) -> Result<SbomRecord, StoreError> {
        let mut tx = self.begin_write().await?;
        let previous = sqlx::query(
            "SELECT id, sha256 FROM sboms WHERE product_id = $1 AND firmware_version = $2",
        )
        .bind(&new.product_id)
        .bind(&new.firmware_version)
        .fetch_optional(&mut *tx)
        .await?;
        let mut replaced = None;
        if let Some(row) = previous {
            let old: String = row.try_get("id")?;
            replaced = Some(row.try_get::<String, _>("sha256")?);
            sqlx::query("DELETE FROM sbom_components WHERE sbom_id = $1")
                .bind(&old)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM sboms WHERE id = $1")
                .bind(&old)
                .execute(&mut *tx)
                .await?;
        }
        let id = uuid::Uuid::now_v7().to_string();
        sqlx::query(
            "INSERT INTO sboms (id, product_id, firmware_version, release_id, format, spec_version, sha256, document, components, created_by, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(&id)
        .bind(&new.product_id)
        .bind(&new.firmware_version)
        .bind(new.release_id.clone())
        .bind(&new.format)
        .bind(&new.spec_version)
        .bind(&new.sha256)
        .bind(new.document.clone())
        .bind(i64::try_from(new.components.len()).unwrap_or(i64::MAX))
        .bind(&actor.id)
        .bind(now.unix_timestamp())
        .execute(&mut *tx)
        .await?;
        for (chunk_index, chunk) in new.components.chunks(ROWS_PER_INSERT).enumerate() {
            let rows = crate::batch::value_rows(chunk.len(), 8);
            let sql = format!(
                "INSERT INTO sbom_components (sbom_id, idx, name, version, purl, cpe, ecosystem, package) VALUES {rows}"
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (i, c) in chunk.iter().enumerate() {
                let idx = chunk_index * ROWS_PER_INSERT + i;
                q = q
                    .bind(&id)
                    .bind(i64::try_from(idx).unwrap_or(i64::MAX))
                    .bind(c.name.clone())
                    .bind(c.version.clone())
                    .bind(c.purl.clone())
                    .bind(c.cpe.clone())
                    .bind(c.ecosystem.clone())
                    .bind(c.package.clone());
            }
            q.execute(&mut *tx).await?;
        }
        audit::append(
            &mut tx,
            vec![AuditEvent::new(
                now,
                actor.clone(),
                "sbom.uploaded",
                format!("product:{}", new.product_id),
                Outcome::Success,
                json!({"sbom": id, "firmware_version": new.firmware_version, "release": new.release_id,
                       "format": new.format, "spec_version": new.spec_version, "sha256": new.sha256,
                       "components": new.components.len(), "replaced_sha256": replaced}),
            )],
        )
        .await?;
        tx.commit().await?;
        self.sbom(&id).await
    }

    pub async fn sbom(&self, id: &str) -> Result<SbomRecord, StoreError> {
        let sql = format!("SELECT {SBOM_COLUMNS} FROM sboms WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound {
                kind: "sbom",
                id: id.to_owned(),
            })?;
        sbom_from_row(&row)
    }

    /// The document as uploaded.
    pub async fn sbom_document(&self, id: &str) -> Result<Vec<u8>, StoreError> {
        let row = sqlx::query("SELECT document FROM sboms WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound {
                kind: "sbom",
                id: id.to_owned(),
            })?;
        Ok(row.try_get("document")?)
    }

    /// A product's SBOMs, by firmware version.
    pub async fn sboms(&self, product: &str) -> Result<Vec<SbomRecord>, StoreError> {
        let sql = format!(
            "SELECT {SBOM_COLUMNS} FROM sboms WHERE product_id = $1 ORDER BY firmware_version"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(product)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(sbom_from_row)
            .collect()
    }

    /// An SBOM's components, in document order.
    pub async fn sbom_components(&self, sbom: &str) -> Result<Vec<ComponentRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT name, version, purl, cpe, ecosystem, package FROM sbom_components WHERE sbom_id = $1 ORDER BY idx",
        )
        .bind(sbom)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ComponentRow {
                    name: r.try_get("name")?,
                    version: r.try_get("version")?,
                    purl: r.try_get("purl")?,
                    cpe: r.try_get("cpe")?,
                    ecosystem: r.try_get("ecosystem")?,
                    package: r.try_get("package")?,
                })
            })
            .collect()
    }
}

mod feeds;
pub(crate) use feeds::insert_record;

/// A VEX statement as stored: `component` empty for the whole product.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VexRow {
    pub vulnerability: String,
    pub component: String,
    pub status: String,
    pub justification: Option<String>,
    pub statement: Option<String>,
}

impl Store {
    /// Record a VEX document's statements for `product` (each replacing the one on the same
    /// vulnerability and component), audited as `vex.imported` with the document's digest.
    pub async fn put_vex(
        &self,
        actor: &Actor,
        product: &str,
        format: &str,
        sha256: &str,
        rows: &[VexRow],
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        for r in rows {
            sqlx::query(
                "DELETE FROM vex_statements WHERE product_id = $1 AND vulnerability = $2 AND component = $3",
            )
            .bind(product)
            .bind(&r.vulnerability)
            .bind(&r.component)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO vex_statements (product_id, vulnerability, component, status, justification, statement, format, document_sha256, created_by, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(product)
            .bind(&r.vulnerability)
            .bind(&r.component)
            .bind(&r.status)
            .bind(r.justification.clone())
            .bind(r.statement.clone())
            .bind(format)
            .bind(sha256)
            .bind(&actor.id)
            .bind(now.unix_timestamp())
            .execute(&mut *tx)
            .await?;
        }
        audit::append(
            &mut tx,
            vec![AuditEvent::new(
                now,
                actor.clone(),
                "vex.imported",
                format!("product:{product}"),
                Outcome::Success,
                json!({"format": format, "sha256": sha256, "statements": rows.len()}),
            )],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// A product's VEX statements.
    pub async fn vex_statements(&self, product: &str) -> Result<Vec<VexRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT vulnerability, component, status, justification, statement FROM vex_statements WHERE product_id = $1 ORDER BY vulnerability, component",
        )
        .bind(product)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(VexRow {
                    vulnerability: r.try_get("vulnerability")?,
                    component: r.try_get("component")?,
                    status: r.try_get("status")?,
                    justification: r.try_get("justification")?,
                    statement: r.try_get("statement")?,
                })
            })
            .collect()
    }
}
