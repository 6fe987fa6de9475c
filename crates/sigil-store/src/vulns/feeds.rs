//! The vulnerability feeds: OSV records (added, or replaced by a newer `modified`), the KEV
//! catalogue and EPSS scores (each replaced whole), and the reads matching needs.

use std::collections::{BTreeMap, HashMap};

use serde_json::json;
use sqlx::Row;
use time::OffsetDateTime;

use sigil_audit::{Actor, AuditEvent, Outcome};

use super::{ImportCounts, KevRow, VulnRecordRow};
use crate::batch::placeholders;
use crate::{Store, StoreError, WriteTx, audit};

/// Values per `IN (...)` list.
const IN_CHUNK: usize = 500;

/// Whether OSV timestamp `a` is later than `b` (RFC 3339; compared as text if one does not
/// parse, which orders same-format UTC timestamps correctly).
fn newer(a: &str, b: &str) -> bool {
    let parse =
        |t: &str| OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok();
    match (parse(a), parse(b)) {
        (Some(a), Some(b)) => a > b,
        _ => a > b,
    }
}

fn imported(actor: &Actor, now: OffsetDateTime, details: serde_json::Value) -> AuditEvent {
    AuditEvent::new(
        now,
        actor.clone(),
        "vulndb.imported",
        "vulndb".to_owned(),
        Outcome::Success,
        details,
    )
}

/// Insert a record new to the store, with its aliases and packages.
pub(crate) async fn insert_record(
    tx: &mut WriteTx,
    row: &VulnRecordRow,
    source: &str,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO vuln_records (id, modified, withdrawn, summary, record, source, imported_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&row.id)
    .bind(&row.modified)
    .bind(i64::from(row.withdrawn))
    .bind(row.summary.clone())
    .bind(&row.record)
    .bind(source)
    .bind(now.unix_timestamp())
    .execute(&mut **tx)
    .await?;
    insert_lookups(tx, row).await
}

async fn insert_lookups(tx: &mut WriteTx, row: &VulnRecordRow) -> Result<(), StoreError> {
    let mut aliases: Vec<&String> = row.aliases.iter().filter(|a| **a != row.id).collect();
    aliases.sort();
    aliases.dedup();
    for alias in aliases {
        sqlx::query("INSERT INTO vuln_aliases (alias, record_id) VALUES ($1, $2)")
            .bind(alias)
            .bind(&row.id)
            .execute(&mut **tx)
            .await?;
    }
    let mut packages: Vec<&(String, String)> = row.packages.iter().collect();
    packages.sort();
    packages.dedup();
    for (ecosystem, package) in packages {
        sqlx::query(
            "INSERT INTO vuln_packages (ecosystem, package, record_id) VALUES ($1, $2, $3)",
        )
        .bind(ecosystem)
        .bind(package)
        .bind(&row.id)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

impl Store {
    /// Add OSV records, or replace those whose `modified` changed; all or nothing, audited as
    /// one `vulndb.imported` entry naming the source.
    pub async fn import_vuln_records(
        &self,
        actor: &Actor,
        source: &str,
        sha256: &str,
        rows: &[VulnRecordRow],
        now: OffsetDateTime,
    ) -> Result<ImportCounts, StoreError> {
        let mut tx = self.begin_write().await?;
        let mut known: HashMap<String, String> = HashMap::new();
        for chunk in rows.chunks(IN_CHUNK) {
            let sql = format!(
                "SELECT id, modified FROM vuln_records WHERE id IN ({})",
                placeholders(chunk.len())
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for r in chunk {
                q = q.bind(&r.id);
            }
            for row in q.fetch_all(&mut *tx).await? {
                known.insert(row.try_get("id")?, row.try_get("modified")?);
            }
        }
        let mut counts = ImportCounts::default();
        for row in rows {
            match known.get(&row.id) {
                // Only a newer record replaces one: a stale mirror must not bring back a
                // withdrawn record or an old range.
                Some(modified) if !newer(&row.modified, modified) => {
                    counts.unchanged += 1;
                    continue;
                }
                Some(_) => {
                    counts.updated += 1;
                    for table in ["vuln_aliases", "vuln_packages"] {
                        sqlx::query(sqlx::AssertSqlSafe(format!(
                            "DELETE FROM {table} WHERE record_id = $1"
                        )))
                        .bind(&row.id)
                        .execute(&mut *tx)
                        .await?;
                    }
                    sqlx::query("DELETE FROM vuln_records WHERE id = $1")
                        .bind(&row.id)
                        .execute(&mut *tx)
                        .await?;
                }
                None => counts.added += 1,
            }
            insert_record(&mut tx, row, source, now).await?;
            // The same id twice in one import: the later one wins, counted once.
            known.insert(row.id.clone(), row.modified.clone());
        }
        audit::append(
            &mut tx,
            vec![imported(
                actor,
                now,
                json!({"kind": "osv", "source": source, "sha256": sha256, "records": rows.len(),
                       "added": counts.added, "updated": counts.updated, "unchanged": counts.unchanged}),
            )],
        )
        .await?;
        tx.commit().await?;
        Ok(counts)
    }

    /// Replace the KEV catalogue.
    pub async fn import_kev(
        &self,
        actor: &Actor,
        catalog_version: &str,
        sha256: &str,
        rows: &[KevRow],
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM kev_entries")
            .execute(&mut *tx)
            .await?;
        for r in rows {
            sqlx::query(
                "INSERT INTO kev_entries (cve, date_added, due_date, ransomware, name, catalog_version) VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (cve) DO NOTHING",
            )
            .bind(&r.cve)
            .bind(&r.date_added)
            .bind(r.due_date.clone())
            .bind(r.ransomware.clone())
            .bind(&r.name)
            .bind(catalog_version)
            .execute(&mut *tx)
            .await?;
        }
        audit::append(
            &mut tx,
            vec![imported(
                actor,
                now,
                json!({"kind": "kev", "catalog_version": catalog_version, "sha256": sha256, "entries": rows.len()}),
            )],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Replace the EPSS scores.
    pub async fn import_epss(
        &self,
        actor: &Actor,
        score_date: Option<&str>,
        sha256: &str,
        scores: &[(String, f64, f64)],
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM epss_scores")
            .execute(&mut *tx)
            .await?;
        for chunk in scores.chunks(IN_CHUNK) {
            let rows = crate::batch::value_rows(chunk.len(), 4);
            let sql = format!(
                "INSERT INTO epss_scores (cve, epss, percentile, score_date) VALUES {rows} ON CONFLICT (cve) DO NOTHING"
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (cve, epss, pct) in chunk {
                q = q
                    .bind(cve)
                    .bind(*epss)
                    .bind(*pct)
                    .bind(score_date.map(str::to_owned));
            }
            q.execute(&mut *tx).await?;
        }
        audit::append(
            &mut tx,
            vec![imported(
                actor,
                now,
                json!({"kind": "epss", "score_date": score_date, "sha256": sha256, "scores": scores.len()}),
            )],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// `(id, ecosystem, package, modified)` of every record (not withdrawn) naming one of
    /// `packages`: what a cache of compiled records is checked against.
    pub async fn vuln_record_keys_for(
        &self,
        packages: &[String],
    ) -> Result<Vec<(String, String, String, String)>, StoreError> {
        let mut out = Vec::new();
        for chunk in packages.chunks(IN_CHUNK) {
            let sql = format!(
                "SELECT r.id, p.ecosystem, p.package, r.modified FROM vuln_packages p JOIN vuln_records r ON r.id = p.record_id \
                 WHERE r.withdrawn = 0 AND p.package IN ({}) ORDER BY r.id",
                placeholders(chunk.len())
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for p in chunk {
                q = q.bind(p);
            }
            for row in q.fetch_all(&self.pool).await? {
                out.push((
                    row.try_get("id")?,
                    row.try_get("ecosystem")?,
                    row.try_get("package")?,
                    row.try_get("modified")?,
                ));
            }
        }
        Ok(out)
    }

    /// `(id, record JSON)` of the records `ids`.
    pub async fn vuln_records_by_id(
        &self,
        ids: &[String],
    ) -> Result<Vec<(String, String)>, StoreError> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(IN_CHUNK) {
            let sql = format!(
                "SELECT id, record FROM vuln_records WHERE id IN ({})",
                placeholders(chunk.len())
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for id in chunk {
                q = q.bind(id);
            }
            for row in q.fetch_all(&self.pool).await? {
                out.push((row.try_get("id")?, row.try_get("record")?));
            }
        }
        Ok(out)
    }

    /// KEV entries and EPSS scores of `cves`.
    pub async fn exploitation(
        &self,
        cves: &[String],
    ) -> Result<(BTreeMap<String, KevRow>, BTreeMap<String, (f64, f64)>), StoreError> {
        let mut kev = BTreeMap::new();
        let mut epss = BTreeMap::new();
        for chunk in cves.chunks(IN_CHUNK) {
            let list = placeholders(chunk.len());
            let sql = format!(
                "SELECT cve, date_added, due_date, ransomware, name FROM kev_entries WHERE cve IN ({list})"
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for c in chunk {
                q = q.bind(c);
            }
            for row in q.fetch_all(&self.pool).await? {
                let r = KevRow {
                    cve: row.try_get("cve")?,
                    date_added: row.try_get("date_added")?,
                    due_date: row.try_get("due_date")?,
                    ransomware: row.try_get("ransomware")?,
                    name: row.try_get("name")?,
                };
                kev.insert(r.cve.clone(), r);
            }
            let sql =
                format!("SELECT cve, epss, percentile FROM epss_scores WHERE cve IN ({list})");
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for c in chunk {
                q = q.bind(c);
            }
            for row in q.fetch_all(&self.pool).await? {
                epss.insert(
                    row.try_get("cve")?,
                    (row.try_get("epss")?, row.try_get("percentile")?),
                );
            }
        }
        Ok((kev, epss))
    }

    /// How many devices of `product` (not retired) run each firmware version, as the inventory
    /// records it (from posture reports and verified installs).
    pub async fn devices_by_firmware(
        &self,
        product: &str,
    ) -> Result<BTreeMap<String, u64>, StoreError> {
        let rows = sqlx::query(
            "SELECT firmware_version, count(*) AS n FROM devices WHERE product_id = $1 AND state <> 'retired' \
             AND firmware_version IS NOT NULL GROUP BY firmware_version",
        )
        .bind(product)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("firmware_version")?,
                    u64::try_from(r.try_get::<i64, _>("n")?).unwrap_or(0),
                ))
            })
            .collect()
    }
}
