//! Software updates: each product's update channel (its TUF repository's keys and signed
//! documents), releases and the artefacts they ship. The TUF logic is the authority's (with
//! `sigil-update`); this module stores what it decided, each change with its audit entry.

use serde_json::{Value, json};
use sqlx::Row;
use sqlx::any::AnyRow;
use time::OffsetDateTime;

use sigil_audit::{Actor, AuditEvent, Outcome};

use crate::rows::ts;
use crate::{Store, StoreError, WriteTx, audit, truncate_to_second, unique_to_conflict};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateChannel {
    pub product_id: String,
    pub version_scheme: String,
    pub created_at: OffsetDateTime,
}

/// One key of one role. `sealed_private` is `None` for a key kept off the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TufKeyRecord {
    pub role: String,
    pub key_id: String,
    pub public_key: String,
    pub sealed_private: Option<Vec<u8>>,
}

/// A signed document of a product's repository, as served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TufDocument {
    pub role: String,
    pub version: u64,
    pub document: Vec<u8>,
    pub expires_at: OffsetDateTime,
    /// `false` while it awaits offline signatures (never served).
    pub published: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseRecord {
    pub id: String,
    pub product_id: String,
    pub version: String,
    pub target_name: String,
    pub sha256: String,
    pub length: u64,
    pub security: bool,
    pub notes: String,
    pub sbom_sha256: Option<String>,
    /// `awaiting-signature` until a published targets document lists it, then `published`.
    pub state: String,
    pub created_by: String,
    pub created_at: OffsetDateTime,
    /// When a published targets document first listed it.
    pub published_at: Option<OffsetDateTime>,
}

const RELEASE_COLUMNS: &str = "id, product_id, version, target_name, sha256, length, security, notes, sbom_sha256, state, created_by, created_at, published_at";

fn release_from_row(row: &AnyRow) -> Result<ReleaseRecord, StoreError> {
    Ok(ReleaseRecord {
        id: row.try_get("id")?,
        product_id: row.try_get("product_id")?,
        version: row.try_get("version")?,
        target_name: row.try_get("target_name")?,
        sha256: row.try_get("sha256")?,
        length: u64::try_from(row.try_get::<i64, _>("length")?)
            .map_err(|_| StoreError::Corrupt("negative release length".into()))?,
        security: row.try_get::<i64, _>("security")? == 1,
        notes: row.try_get("notes")?,
        sbom_sha256: row.try_get("sbom_sha256")?,
        state: row.try_get("state")?,
        created_by: row.try_get("created_by")?,
        created_at: ts(row.try_get("created_at")?)?,
        published_at: row
            .try_get::<Option<i64>, _>("published_at")?
            .map(ts)
            .transpose()?,
    })
}

fn document_from_row(row: &AnyRow) -> Result<TufDocument, StoreError> {
    Ok(TufDocument {
        role: row.try_get("role")?,
        version: u64::try_from(row.try_get::<i64, _>("version")?)
            .map_err(|_| StoreError::Corrupt("negative metadata version".into()))?,
        document: row.try_get("document")?,
        expires_at: ts(row.try_get("expires_at")?)?,
        published: row.try_get::<i64, _>("published")? == 1,
    })
}

fn version_i64(version: u64) -> Result<i64, StoreError> {
    i64::try_from(version).map_err(|_| StoreError::Conflict("metadata version out of range".into()))
}

/// Write `documents` of `product`: a published document is inserted (its version must be
/// new); an unpublished one replaces the role's earlier unpublished document. Publishing a
/// role's document drops that role's unpublished one of the same or an older version, and
/// publishing targets marks every release it now carries published.
async fn write_documents(
    tx: &mut WriteTx,
    product: &str,
    documents: &[TufDocument],
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    for doc in documents {
        let version = version_i64(doc.version)?;
        sqlx::query("DELETE FROM tuf_metadata WHERE product_id = $1 AND role = $2 AND published = 0 AND ($3 = 0 OR version <= $4)")
            .bind(product)
            .bind(&doc.role)
            .bind(i64::from(doc.published))
            .bind(version)
            .execute(&mut **tx)
            .await?;
        sqlx::query(
            "INSERT INTO tuf_metadata (product_id, role, version, document, expires_at, published, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(product)
        .bind(&doc.role)
        .bind(version)
        .bind(doc.document.clone())
        .bind(doc.expires_at.unix_timestamp())
        .bind(i64::from(doc.published))
        .bind(now.unix_timestamp())
        .execute(&mut **tx)
        .await
        .map_err(|e| {
            unique_to_conflict(e, || {
                format!("{} metadata version {} of product {product} already exists", doc.role, doc.version)
            })
        })?;
        if doc.published && doc.role == "targets" {
            mark_published(tx, product, &doc.document, now).await?;
        }
    }
    Ok(())
}

/// Record keys of `product`'s roles (a key already recorded for its role is a conflict).
async fn insert_keys(
    tx: &mut WriteTx,
    product: &str,
    keys: &[TufKeyRecord],
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    for key in keys {
        sqlx::query(
            "INSERT INTO tuf_keys (product_id, role, key_id, public_key, sealed_private, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(product)
        .bind(&key.role)
        .bind(&key.key_id)
        .bind(&key.public_key)
        .bind(key.sealed_private.clone())
        .bind(now.unix_timestamp())
        .execute(&mut **tx)
        .await
        .map_err(|e| unique_to_conflict(e, || format!("key {} is already a {} key of product {product}", key.key_id, key.role)))?;
    }
    Ok(())
}

/// Mark published the releases awaiting signature that this signed targets document lists
/// (only those: a document re-signed without a newer release leaves that release waiting).
async fn mark_published(
    tx: &mut WriteTx,
    product: &str,
    document: &[u8],
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    let doc: Value = serde_json::from_slice(document)
        .map_err(|e| StoreError::Corrupt(format!("targets document: {e}")))?;
    let listed = doc["signed"]["targets"].as_object();
    let waiting = sqlx::query("SELECT id, target_name FROM releases WHERE product_id = $1 AND state = 'awaiting-signature'")
        .bind(product)
        .fetch_all(&mut **tx)
        .await?;
    for row in waiting {
        let name: String = row.try_get("target_name")?;
        if listed.is_some_and(|t| t.contains_key(&name)) {
            let id: String = row.try_get("id")?;
            sqlx::query("UPDATE releases SET state = 'published', published_at = $2 WHERE id = $1")
                .bind(id)
                .bind(now.unix_timestamp())
                .execute(&mut **tx)
                .await?;
        }
    }
    Ok(())
}

/// What the audit entry says of the documents written: role, version, published.
fn documents_detail(documents: &[TufDocument]) -> Value {
    Value::Array(
        documents
            .iter()
            .map(|d| {
                json!({"role": d.role, "version": d.version, "published": d.published,
                            "expires_at": d.expires_at.unix_timestamp()})
            })
            .collect(),
    )
}

impl Store {
    /// Create `product`'s update channel with its keys and first documents.
    pub async fn create_update_channel(
        &self,
        actor: &Actor,
        channel: &UpdateChannel,
        keys: &[TufKeyRecord],
        documents: &[TufDocument],
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let product = &channel.product_id;
        sqlx::query("INSERT INTO update_channels (product_id, version_scheme, created_at) VALUES ($1, $2, $3)")
            .bind(product)
            .bind(&channel.version_scheme)
            .bind(truncate_to_second(channel.created_at).unix_timestamp())
            .execute(&mut *tx)
            .await
            .map_err(|e| unique_to_conflict(e, || format!("product {product} already has an update channel")))?;
        insert_keys(&mut tx, product, keys, now).await?;
        write_documents(&mut tx, product, documents, now).await?;
        let key_detail: Vec<Value> = keys
            .iter()
            .map(|k| json!({"role": k.role, "key_id": k.key_id, "online": k.sealed_private.is_some()}))
            .collect();
        let event = AuditEvent::new(
            now,
            actor.clone(),
            "update.channel_created",
            format!("product:{product}"),
            Outcome::Success,
            json!({"version_scheme": channel.version_scheme, "keys": key_detail,
                   "metadata": documents_detail(documents)}),
        );
        audit::append(&mut tx, vec![event]).await?;
        Ok(tx.commit().await?)
    }

    pub async fn update_channel(&self, product: &str) -> Result<Option<UpdateChannel>, StoreError> {
        let row = sqlx::query("SELECT product_id, version_scheme, created_at FROM update_channels WHERE product_id = $1")
            .bind(product)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| {
            Ok(UpdateChannel {
                product_id: row.try_get("product_id")?,
                version_scheme: row.try_get("version_scheme")?,
                created_at: ts(row.try_get("created_at")?)?,
            })
        })
        .transpose()
    }

    /// Every product with an update channel.
    pub async fn update_channel_products(&self) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT product_id FROM update_channels ORDER BY product_id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| Ok(r.try_get("product_id")?)).collect()
    }

    pub async fn tuf_keys(&self, product: &str) -> Result<Vec<TufKeyRecord>, StoreError> {
        let rows = sqlx::query("SELECT role, key_id, public_key, sealed_private FROM tuf_keys WHERE product_id = $1 ORDER BY role, key_id")
            .bind(product)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(TufKeyRecord {
                    role: row.try_get("role")?,
                    key_id: row.try_get("key_id")?,
                    public_key: row.try_get("public_key")?,
                    sealed_private: row.try_get("sealed_private")?,
                })
            })
            .collect()
    }

    /// A published document of `role`: version `version`, or the newest.
    pub async fn tuf_document(
        &self,
        product: &str,
        role: &str,
        version: Option<u64>,
    ) -> Result<Option<TufDocument>, StoreError> {
        let row = match version {
            Some(v) => {
                sqlx::query("SELECT role, version, document, expires_at, published FROM tuf_metadata WHERE product_id = $1 AND role = $2 AND version = $3 AND published = 1")
                    .bind(product)
                    .bind(role)
                    .bind(version_i64(v)?)
                    .fetch_optional(&self.pool)
                    .await?
            }
            None => {
                sqlx::query("SELECT role, version, document, expires_at, published FROM tuf_metadata WHERE product_id = $1 AND role = $2 AND published = 1 ORDER BY version DESC LIMIT 1")
                    .bind(product)
                    .bind(role)
                    .fetch_optional(&self.pool)
                    .await?
            }
        };
        row.as_ref().map(document_from_row).transpose()
    }

    /// The documents awaiting offline signatures.
    pub async fn unpublished_tuf_documents(
        &self,
        product: &str,
    ) -> Result<Vec<TufDocument>, StoreError> {
        let rows = sqlx::query("SELECT role, version, document, expires_at, published FROM tuf_metadata WHERE product_id = $1 AND published = 0 ORDER BY role")
            .bind(product)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(document_from_row).collect()
    }

    /// Write documents of `product` (see [`write_documents`]) with an audit entry
    /// `action` whose details are `details` plus the documents' roles and versions.
    pub async fn put_tuf_documents(
        &self,
        actor: &Actor,
        product: &str,
        documents: &[TufDocument],
        action: &str,
        mut details: Value,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        write_documents(&mut tx, product, documents, now).await?;
        if let Some(map) = details.as_object_mut() {
            map.insert("metadata".into(), documents_detail(documents));
        }
        let event = AuditEvent::new(
            now,
            actor.clone(),
            action,
            format!("product:{product}"),
            Outcome::Success,
            details,
        );
        audit::append(&mut tx, vec![event]).await?;
        Ok(tx.commit().await?)
    }

    /// Add keys (a rotation) and the documents that use them, in one transaction with an
    /// audit entry `action`.
    #[allow(clippy::too_many_arguments)]
    pub async fn add_tuf_keys(
        &self,
        actor: &Actor,
        product: &str,
        keys: &[TufKeyRecord],
        documents: &[TufDocument],
        action: &str,
        details: Value,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        insert_keys(&mut tx, product, keys, now).await?;
        write_documents(&mut tx, product, documents, now).await?;
        let event = AuditEvent::new(
            now,
            actor.clone(),
            action,
            format!("product:{product}"),
            Outcome::Success,
            details,
        );
        audit::append(&mut tx, vec![event]).await?;
        Ok(tx.commit().await?)
    }

    /// Record an uploaded artefact (idempotent: the same content twice is one artefact, and
    /// one audit entry).
    pub async fn record_artefact(
        &self,
        actor: &Actor,
        sha256: &str,
        length: u64,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let exists = sqlx::query("SELECT 1 AS one FROM artefacts WHERE sha256 = $1")
            .bind(sha256)
            .fetch_optional(&mut *tx)
            .await?
            .is_some();
        if exists {
            return Ok(false);
        }
        let length_i64 =
            i64::try_from(length).map_err(|_| StoreError::Conflict("artefact too large".into()))?;
        sqlx::query("INSERT INTO artefacts (sha256, length, created_at) VALUES ($1, $2, $3)")
            .bind(sha256)
            .bind(length_i64)
            .bind(now.unix_timestamp())
            .execute(&mut *tx)
            .await?;
        let event = AuditEvent::new(
            now,
            actor.clone(),
            "artefact.uploaded",
            format!("artefact:{sha256}"),
            Outcome::Success,
            json!({"sha256": sha256, "length": length}),
        );
        audit::append(&mut tx, vec![event]).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// An artefact's length, if it was uploaded.
    pub async fn artefact_length(&self, sha256: &str) -> Result<Option<u64>, StoreError> {
        let row = sqlx::query("SELECT length FROM artefacts WHERE sha256 = $1")
            .bind(sha256)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            u64::try_from(r.try_get::<i64, _>("length")?)
                .map_err(|_| StoreError::Corrupt("negative artefact length".into()))
        })
        .transpose()
    }

    /// Record a release with the repository documents that carry it, in one transaction.
    pub async fn record_release(
        &self,
        actor: &Actor,
        release: &ReleaseRecord,
        documents: &[TufDocument],
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let length = i64::try_from(release.length)
            .map_err(|_| StoreError::Conflict("release too large".into()))?;
        sqlx::query(
            "INSERT INTO releases (id, product_id, version, target_name, sha256, length, security, notes, sbom_sha256, state, created_by, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'awaiting-signature', $10, $11)",
        )
        .bind(&release.id)
        .bind(&release.product_id)
        .bind(&release.version)
        .bind(&release.target_name)
        .bind(&release.sha256)
        .bind(length)
        .bind(i64::from(release.security))
        .bind(&release.notes)
        .bind(release.sbom_sha256.clone())
        .bind(&release.created_by)
        .bind(truncate_to_second(release.created_at).unix_timestamp())
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            unique_to_conflict(e, || {
                format!("product {} already has a release {} (or a target named {})", release.product_id, release.version, release.target_name)
            })
        })?;
        write_documents(&mut tx, &release.product_id, documents, now).await?;
        let event = AuditEvent::new(
            now,
            actor.clone(),
            "release.created",
            format!("release:{}", release.id),
            Outcome::Success,
            json!({"product": release.product_id, "version": release.version, "target": release.target_name,
                   "sha256": release.sha256, "length": release.length, "security": release.security,
                   "sbom_sha256": release.sbom_sha256, "metadata": documents_detail(documents)}),
        );
        audit::append(&mut tx, vec![event]).await?;
        Ok(tx.commit().await?)
    }

    /// A product's releases, oldest first.
    pub async fn releases(&self, product: &str) -> Result<Vec<ReleaseRecord>, StoreError> {
        let sql =
            format!("SELECT {RELEASE_COLUMNS} FROM releases WHERE product_id = $1 ORDER BY id");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(product)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(release_from_row)
            .collect()
    }

    /// The published release of `product` that ships `target_name` with content `sha256`.
    pub async fn published_release(
        &self,
        product: &str,
        sha256: &str,
        target_name: &str,
    ) -> Result<Option<ReleaseRecord>, StoreError> {
        let sql = format!(
            "SELECT {RELEASE_COLUMNS} FROM releases WHERE product_id = $1 AND target_name = $2 AND sha256 = $3 AND state = 'published'"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(product)
            .bind(target_name)
            .bind(sha256)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(release_from_row).transpose()
    }

    pub async fn release(&self, id: &str) -> Result<ReleaseRecord, StoreError> {
        let sql = format!("SELECT {RELEASE_COLUMNS} FROM releases WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound {
                kind: "release",
                id: id.to_owned(),
            })?;
        release_from_row(&row)
    }
}
