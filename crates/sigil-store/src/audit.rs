//! Audit log storage. Entries are appended inside the transaction of the change they record
//! ([`append`] takes the open transaction), so a change and its entry commit or vanish together.
//! The tree maths is `sigil_audit::tree`; this module only moves hashes in and out of SQL.

use sqlx::{AnyConnection, Row};

use sigil_audit::tree::{self, Hashes};
use sigil_audit::{AuditEvent, Hash};

use crate::{Store, StoreError};

/// Rows per multi-row INSERT (and ids per `IN` list). Far under the bind limits; measured
/// (sigil-audit-bench): on SQLite, statements of 1,000 rows made 1,000-entry appends 2.5x slower
/// than statements of 100.
const ROWS_PER_INSERT: usize = 100;

/// One stored entry: its position and canonical text.
#[derive(Debug, Clone)]
pub struct StoredEntry {
    pub seq: u64,
    pub entry: String,
}

/// Filters for reading the log. Times are compared as entry time strings (fixed-width RFC 3339
/// UTC, so text order is time order).
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub since: Option<String>,
    pub until: Option<String>,
    pub actor: Option<String>,
    pub device: Option<String>,
    /// Exact action, or a prefix ending in `.` (e.g. `device.`).
    pub action: Option<String>,
    /// Only entries after this sequence number (paging forward).
    pub after: Option<u64>,
    /// Only entries before this sequence number (paging backward).
    pub before: Option<u64>,
    /// Newest first.
    pub newest_first: bool,
    pub limit: u32,
}

fn to_i64(v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::Corrupt(format!("{v} out of range")))
}

fn to_u64(v: i64) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("negative value {v} in audit log")))
}

/// Append `events`, in order, within the caller's transaction. Returns their sequence numbers.
pub(crate) async fn append(
    conn: &mut AnyConnection,
    events: Vec<AuditEvent>,
) -> Result<Vec<u64>, StoreError> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    let count = events.len() as u64;
    // Takes the head row lock first on PostgreSQL: appenders queue here, and seq stays gapless
    // because a rolled-back transaction rolls back its increment too.
    let row = sqlx::query("UPDATE audit_head SET size = size + $1 WHERE id = 1 RETURNING size")
        .bind(to_i64(count)?)
        .fetch_one(&mut *conn)
        .await?;
    let new_size = to_u64(row.try_get::<i64, _>("size")?)?;
    let start = new_size
        .checked_sub(count)
        .ok_or_else(|| StoreError::Corrupt("audit head below zero".into()))?;

    let mut known = read_hashes(&mut *conn, &tree::frontier_indexes(start)).await?;
    let mut texts = Vec::with_capacity(events.len());
    let mut leaves = Vec::with_capacity(events.len());
    let mut rows = Vec::with_capacity(events.len());
    for (offset, event) in events.into_iter().enumerate() {
        let entry = event.into_entry(start + offset as u64);
        let text = entry
            .to_canonical()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        leaves.push(tree::leaf_hash(&text));
        rows.push((
            entry.seq,
            entry.time.clone(),
            entry.actor.id.clone(),
            entry.action.clone(),
            entry.device().map(str::to_owned),
        ));
        texts.push(text);
    }
    let new_hashes = tree::append(start, &leaves, &mut known)
        .map_err(|e| StoreError::Corrupt(format!("audit tree: {e}")))?;

    for chunk in rows
        .iter()
        .zip(&texts)
        .collect::<Vec<_>>()
        .chunks(ROWS_PER_INSERT)
    {
        let sql = format!(
            "INSERT INTO audit_entries (seq, recorded_at, actor_id, action, device_id, entry) VALUES {}",
            crate::batch::value_rows(chunk.len(), 6)
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for ((seq, time, actor, action, device), text) in chunk {
            query = query
                .bind(to_i64(*seq)?)
                .bind(time.as_str())
                .bind(actor.as_str())
                .bind(action.as_str())
                .bind(device.clone())
                .bind(text.as_str());
        }
        query.execute(&mut *conn).await?;
    }
    for chunk in new_hashes.chunks(ROWS_PER_INSERT) {
        let sql = format!(
            "INSERT INTO audit_hashes (idx, hash) VALUES {}",
            crate::batch::value_rows(chunk.len(), 2)
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (idx, hash) in chunk {
            query = query.bind(to_i64(*idx)?).bind(hash.0.to_vec());
        }
        query.execute(&mut *conn).await?;
    }
    Ok((start..new_size).collect())
}

/// The hashes at `indexes` that exist (callers decide whether a missing one is corruption).
async fn read_some_hashes(conn: &mut AnyConnection, indexes: &[u64]) -> Result<Hashes, StoreError> {
    let mut out = Hashes::with_capacity(indexes.len());
    for chunk in indexes.chunks(ROWS_PER_INSERT) {
        let sql = format!(
            "SELECT idx, hash FROM audit_hashes WHERE idx IN ({})",
            crate::batch::placeholders(chunk.len())
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for idx in chunk {
            query = query.bind(to_i64(*idx)?);
        }
        for row in query.fetch_all(&mut *conn).await? {
            let idx = to_u64(row.try_get::<i64, _>("idx")?)?;
            let bytes: Vec<u8> = row.try_get("hash")?;
            let hash =
                Hash(bytes.try_into().map_err(|_| {
                    StoreError::Corrupt(format!("audit hash {idx} is not 32 bytes"))
                })?);
            out.insert(idx, hash);
        }
    }
    Ok(out)
}

/// The hashes at `indexes`; every one must exist.
async fn read_hashes(conn: &mut AnyConnection, indexes: &[u64]) -> Result<Hashes, StoreError> {
    let out = read_some_hashes(conn, indexes).await?;
    if let Some(missing) = indexes.iter().find(|i| !out.contains_key(i)) {
        return Err(StoreError::Corrupt(format!(
            "audit log hash {missing} is missing"
        )));
    }
    Ok(out)
}

fn entry_from_row(row: &sqlx::any::AnyRow) -> Result<StoredEntry, StoreError> {
    Ok(StoredEntry {
        seq: to_u64(row.try_get::<i64, _>("seq")?)?,
        entry: row.try_get("entry")?,
    })
}

impl Store {
    /// Append entries that record no change of their own (refusals, authentication failures,
    /// start-up facts), in one transaction.
    pub async fn append_audit(&self, events: Vec<AuditEvent>) -> Result<Vec<u64>, StoreError> {
        let mut tx = self.begin_write().await?;
        let seqs = append(&mut tx, events).await?;
        tx.commit().await?;
        Ok(seqs)
    }

    /// Number of entries in the log.
    pub async fn audit_size(&self) -> Result<u64, StoreError> {
        let row = sqlx::query("SELECT size FROM audit_head WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        to_u64(row.try_get::<i64, _>("size")?)
    }

    /// The RFC 6962 root of the first `size` entries.
    pub async fn audit_root(&self, size: u64) -> Result<Hash, StoreError> {
        let hashes =
            read_hashes(&mut *self.pool.acquire().await?, &tree::root_indexes(size)).await?;
        tree::root(size, &hashes).map_err(|e| StoreError::Corrupt(e.to_string()))
    }

    /// Entry `seq`'s stored leaf hash and its inclusion proof in the tree of `size` entries.
    pub async fn audit_inclusion_proof(
        &self,
        seq: u64,
        size: u64,
    ) -> Result<(Hash, Vec<Hash>), StoreError> {
        let mut indexes = tree::inclusion_proof_indexes(seq, size)
            .map_err(|e| StoreError::Conflict(e.to_string()))?;
        indexes.push(tree::leaf_index(seq));
        let hashes = read_hashes(&mut *self.pool.acquire().await?, &indexes).await?;
        let proof = tree::inclusion_proof(seq, size, &hashes)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Ok((hashes[&tree::leaf_index(seq)], proof))
    }

    /// The consistency proof from the tree of `from` entries to the tree of `to` entries.
    pub async fn audit_consistency_proof(
        &self,
        from: u64,
        to: u64,
    ) -> Result<Vec<Hash>, StoreError> {
        let indexes = tree::consistency_proof_indexes(from, to)
            .map_err(|e| StoreError::Conflict(e.to_string()))?;
        let hashes = read_hashes(&mut *self.pool.acquire().await?, &indexes).await?;
        tree::consistency_proof(from, to, &hashes).map_err(|e| StoreError::Corrupt(e.to_string()))
    }

    /// Entries matching `q`.
    pub async fn audit_entries(&self, q: &AuditQuery) -> Result<Vec<StoredEntry>, StoreError> {
        let mut sql = String::from("SELECT seq, entry FROM audit_entries WHERE 1 = 1");
        let mut binds: Vec<String> = Vec::new();
        let mut push = |clause: &str, value: String, sql: &mut String| {
            binds.push(value);
            sql.push_str(&clause.replace('?', &format!("${}", binds.len())));
        };
        if let Some(v) = &q.since {
            push(" AND recorded_at >= ?", v.clone(), &mut sql);
        }
        if let Some(v) = &q.until {
            push(" AND recorded_at < ?", v.clone(), &mut sql);
        }
        if let Some(v) = &q.actor {
            push(" AND actor_id = ?", v.clone(), &mut sql);
        }
        if let Some(v) = &q.device {
            push(" AND device_id = ?", v.clone(), &mut sql);
        }
        match q.action.as_deref() {
            Some(prefix) if prefix.ends_with('.') => {
                // Escape LIKE wildcards in the prefix itself.
                let escaped = prefix
                    .replace('\\', "\\\\")
                    .replace('%', "\\%")
                    .replace('_', "\\_");
                push(
                    " AND action LIKE ? ESCAPE '\\'",
                    format!("{escaped}%"),
                    &mut sql,
                );
            }
            Some(exact) => push(" AND action = ?", exact.to_owned(), &mut sql),
            None => {}
        }
        // Sequence bounds are numbers we format ourselves, not user text. They come from the
        // caller: a bound past every possible sequence number (they are i64 in the database)
        // is a question with a plain answer, not a sign of corruption.
        if let Some(after) = q.after {
            match i64::try_from(after) {
                Ok(after) => sql.push_str(&format!(" AND seq > {after}")),
                Err(_) => return Ok(Vec::new()),
            }
        }
        if let Some(before) = q.before.and_then(|b| i64::try_from(b).ok()) {
            sql.push_str(&format!(" AND seq < {before}"));
        }
        let order = if q.newest_first { "DESC" } else { "ASC" };
        let limit = q.limit.clamp(1, crate::MAX_PAGE);
        sql.push_str(&format!(" ORDER BY seq {order} LIMIT {limit}"));
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for value in binds {
            query = query.bind(value);
        }
        query
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(entry_from_row)
            .collect()
    }

    /// The devices named by the entries from position `from` on (at most `limit` entries, each
    /// device once), and the position after the last entry read. Followers of the
    /// log (the broker sync) use it as a change feed.
    pub async fn devices_in_audit_since(
        &self,
        from: u64,
        limit: u32,
    ) -> Result<(Vec<String>, u64), StoreError> {
        let rows = sqlx::query(
            "SELECT seq, device_id FROM audit_entries WHERE seq >= $1 ORDER BY seq LIMIT $2",
        )
        .bind(to_i64(from)?)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let mut next = from;
        let mut devices = std::collections::BTreeSet::new();
        for row in &rows {
            next = to_u64(row.try_get::<i64, _>("seq")?)? + 1;
            if let Some(d) = row.try_get::<Option<String>, _>("device_id")? {
                devices.insert(d);
            }
        }
        Ok((devices.into_iter().collect(), next))
    }

    /// Entries `[from, from + limit)` (fewer at the end) with their stored leaf hashes, for
    /// exports. Positions with no row are simply absent: the verifier reports the gap.
    pub async fn audit_range(
        &self,
        from: u64,
        to: u64,
    ) -> Result<Vec<(StoredEntry, Option<Hash>)>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, entry FROM audit_entries WHERE seq >= $1 AND seq < $2 ORDER BY seq",
        )
        .bind(to_i64(from)?)
        .bind(to_i64(to)?)
        .fetch_all(&self.pool)
        .await?;
        let entries = rows
            .iter()
            .map(entry_from_row)
            .collect::<Result<Vec<_>, StoreError>>()?;
        let indexes: Vec<u64> = entries.iter().map(|e| tree::leaf_index(e.seq)).collect();
        // A missing leaf hash is the verifier's to report , not an error here.
        let leaves = read_some_hashes(&mut *self.pool.acquire().await?, &indexes).await?;
        Ok(entries
            .into_iter()
            .map(|e| {
                let leaf = leaves.get(&tree::leaf_index(e.seq)).copied();
                (e, leaf)
            })
            .collect())
    }

    /// Record a checkpoint the log signed.
    pub async fn insert_checkpoint(
        &self,
        size: u64,
        note: &str,
        created_at: time::OffsetDateTime,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO audit_checkpoints (size, note, created_at) VALUES ($1, $2, $3) ON CONFLICT (size) DO NOTHING",
        )
        .bind(to_i64(size)?)
        .bind(note)
        .bind(created_at.unix_timestamp())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Signed checkpoints with size in `[from, to]`, ascending.
    pub async fn checkpoints(&self, from: u64, to: u64) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT note FROM audit_checkpoints WHERE size >= $1 AND size <= $2 ORDER BY size",
        )
        .bind(to_i64(from)?)
        .bind(to_i64(to)?)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| r.try_get::<String, _>("note").map_err(Into::into))
            .collect()
    }

    /// The newest signed checkpoint as stored (its signature is the caller's to check).
    pub async fn latest_checkpoint(&self) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query("SELECT note FROM audit_checkpoints ORDER BY size DESC LIMIT 1")
                .fetch_optional(&self.pool)
                .await?
                .map(|r| r.try_get::<String, _>("note"))
                .transpose()?,
        )
    }
}
