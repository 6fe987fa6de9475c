//! Group commit for certificate issuance.
//!
//! A durable commit costs one fsync (about a millisecond here), far more than signing a
//! certificate (tens of microseconds). So certificates are recorded by a single writer task that
//! takes every issuance waiting in its queue and records them in one transaction. Each item's
//! checks run before any of its writes, so an item refused by a check writes nothing and the
//! others commit together; an unexpected database error fails the whole batch (nothing commits,
//! every caller is told). Every caller is answered only after the commit that made its
//! certificate durable.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;

use sqlx::{Any, AnyPool, Row, Transaction};
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};

use serde_json::json;
use sigil_audit::{Actor, AuditEvent, Outcome};
use sigil_domain::{DeviceId, Issuance, LifecycleState, issuance_rule};

use crate::{
    Backend, CertificateRecord, CertificateStatus, Commits, IssuanceBasis, NewCertificate,
    StoreError, WriteLock, truncate_to_second, unique_to_conflict,
};

/// Most issuances recorded in one transaction.
const MAX_BATCH: usize = 512;

pub(crate) struct RecordJob {
    pub actor: Actor,
    pub device: DeviceId,
    pub basis: IssuanceBasis,
    pub cert: NewCertificate,
    pub now: OffsetDateTime,
    pub reply: oneshot::Sender<Result<CertificateRecord, StoreError>>,
}

pub(crate) fn spawn_writer(
    pool: AnyPool,
    backend: Backend,
    lock: WriteLock,
    commits: Commits,
) -> mpsc::Sender<RecordJob> {
    let (tx, mut rx) = mpsc::channel::<RecordJob>(4 * MAX_BATCH);
    tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            let started = std::time::Instant::now();
            let outcome = record_batch(&pool, backend, &lock, &batch).await;
            if outcome.is_ok() {
                commits.bump();
            }
            tracing::debug!(
                items = batch.len(),
                micros = started.elapsed().as_micros() as u64,
                "issuance batch recorded"
            );
            match outcome {
                Ok(results) => {
                    for (job, result) in batch.into_iter().zip(results) {
                        let _ = job.reply.send(result);
                    }
                }
                Err(e) => {
                    // The transaction (or its commit) failed: nothing in it is durable.
                    tracing::error!(error = %e, items = batch.len(), "issuance batch failed");
                    let message = e.to_string();
                    for job in batch {
                        let _ = job.reply.send(Err(StoreError::Batch(message.clone())));
                    }
                }
            }
        }
    });
    tx
}

async fn record_batch(
    pool: &AnyPool,
    backend: Backend,
    lock: &WriteLock,
    batch: &[RecordJob],
) -> Result<Vec<Result<CertificateRecord, StoreError>>, StoreError> {
    let _guard = lock.acquire(backend).await;
    let mut tx = match backend {
        Backend::Sqlite => pool.begin_with("BEGIN IMMEDIATE").await?,
        Backend::Postgres => pool.begin().await?,
    };
    let mut view = read_view(&mut tx, backend, batch).await?;

    // Decide each item in queue order, against the view as the earlier items left it: the
    // outcome is the same as running them one after another.
    let decisions: Vec<Result<Decision, StoreError>> =
        batch.iter().map(|job| view.decide(job)).collect();

    write_decisions(&mut tx, batch, &decisions, &view).await?;
    tx.commit().await?;
    Ok(decisions.into_iter().map(|d| d.map(|d| d.record)).collect())
}

/// What the checks need, read in two statements for the whole batch.
struct View {
    /// Device -> (state as stored, state after the items decided so far).
    states: HashMap<DeviceId, (LifecycleState, LifecycleState)>,
    /// SPKI SHA-256 -> the device the key is bound to (stored, or bound earlier in this batch).
    owners: HashMap<String, DeviceId>,
    /// Device -> its credentials as stored, then as the items decided so far left them.
    credentials: HashMap<DeviceId, Credentials>,
}

/// What a device holds that matters to who may obtain its next certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Credentials {
    /// Serials of its active (not superseded, not revoked) certificates.
    pub active: Vec<String>,
    /// Whether it holds any certificate that is not revoked (active or superseded).
    pub any_unrevoked: bool,
}

struct Decision {
    record: CertificateRecord,
    key_is_new: bool,
    state_before: LifecycleState,
    state_after: LifecycleState,
}

async fn read_view(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    batch: &[RecordJob],
) -> Result<View, StoreError> {
    let corrupt = |e: &dyn std::fmt::Display| StoreError::Corrupt(e.to_string());
    let device_ids = unique(batch.iter().map(|j| j.device.to_string()));
    // On PostgreSQL the device rows stay locked until the batch commits.
    let lock_clause = match backend {
        Backend::Sqlite => "",
        Backend::Postgres => " FOR UPDATE",
    };
    let sql = format!(
        "SELECT id, state FROM devices WHERE id IN ({}){lock_clause}",
        placeholders(device_ids.len())
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for id in &device_ids {
        query = query.bind(id.as_str());
    }
    let mut states = HashMap::new();
    for row in query.fetch_all(&mut **tx).await? {
        let id = DeviceId::from_str(&row.try_get::<String, _>("id")?).map_err(|e| corrupt(&e))?;
        let state = LifecycleState::from_str(&row.try_get::<String, _>("state")?)
            .map_err(|e| corrupt(&e))?;
        states.insert(id, (state, state));
    }

    let spkis = unique(batch.iter().map(|j| j.cert.spki_sha256.to_string()));
    let sql = format!(
        "SELECT spki_sha256, device_id FROM device_keys WHERE spki_sha256 IN ({})",
        placeholders(spkis.len())
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for spki in &spkis {
        query = query.bind(spki.as_str());
    }
    let mut owners = HashMap::new();
    for row in query.fetch_all(&mut **tx).await? {
        let owner =
            DeviceId::from_str(&row.try_get::<String, _>("device_id")?).map_err(|e| corrupt(&e))?;
        owners.insert(row.try_get::<String, _>("spki_sha256")?, owner);
    }
    let credentials = read_credentials(&mut **tx, &device_ids).await?;
    Ok(View {
        states,
        owners,
        credentials,
    })
}

/// The unrevoked certificates of `devices`, as [`Credentials`].
pub(crate) async fn read_credentials<'e, E>(
    executor: E,
    devices: &[String],
) -> Result<HashMap<DeviceId, Credentials>, StoreError>
where
    E: sqlx::Executor<'e, Database = Any>,
{
    let corrupt = |e: &dyn std::fmt::Display| StoreError::Corrupt(e.to_string());
    let sql = format!(
        "SELECT device_id, serial, status FROM certificates WHERE status <> 'revoked' AND device_id IN ({})",
        placeholders(devices.len())
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for id in devices {
        query = query.bind(id.as_str());
    }
    let mut credentials: HashMap<DeviceId, Credentials> = HashMap::new();
    for row in query.fetch_all(executor).await? {
        let id =
            DeviceId::from_str(&row.try_get::<String, _>("device_id")?).map_err(|e| corrupt(&e))?;
        let entry = credentials.entry(id).or_default();
        entry.any_unrevoked = true;
        if row.try_get::<String, _>("status")? == CertificateStatus::Active.as_str() {
            entry.active.push(row.try_get("serial")?);
        }
    }
    Ok(credentials)
}

impl View {
    fn decide(&mut self, job: &RecordJob) -> Result<Decision, StoreError> {
        let device = job.device;
        let (_, current) = self
            .states
            .get_mut(&device)
            .ok_or_else(|| StoreError::NotFound {
                kind: "device",
                id: device.to_string(),
            })?;
        let spki = job.cert.spki_sha256.as_str();
        let credentials = self.credentials.entry(device).or_default();
        entitlement_rule(&job.basis, credentials)?;
        let Issuance { next, key_is_new } =
            issuance_rule(device, *current, self.owners.get(spki).copied())?;
        let state_before = *current;
        *current = next;
        if key_is_new {
            self.owners.insert(spki.to_owned(), device);
        }
        let c = &job.cert;
        // The new certificate supersedes every active one: a later item of this batch that
        // renews with one of those is refused, as it would be after this commit.
        *credentials = Credentials {
            active: vec![c.serial.to_string()],
            any_unrevoked: true,
        };
        Ok(Decision {
            key_is_new,
            state_before,
            state_after: next,
            record: CertificateRecord {
                serial: c.serial.clone(),
                device_id: device,
                profile: c.profile.clone(),
                not_before: truncate_to_second(c.not_before),
                not_after: truncate_to_second(c.not_after),
                sha256: c.sha256.clone(),
                spki_sha256: c.spki_sha256.clone(),
                status: CertificateStatus::Active,
                issued_at: truncate_to_second(job.now),
                der: c.der.clone(),
                revoked_at: None,
                revocation_reason: None,
            },
        })
    }
}

/// Whether `basis` entitles its holder to a new certificate for a device holding `credentials`.
/// Only the device's current certificate renews it (a superseded one, from a backup or a
/// previous owner, must not take the identity back), and a manufacturer certificate enrols only
/// a device with no unrevoked certificate: re-bootstrapping an enrolled device needs an
/// operator to revoke its identity first.
pub(crate) fn entitlement_rule(
    basis: &IssuanceBasis,
    credentials: &Credentials,
) -> Result<(), StoreError> {
    match basis {
        IssuanceBasis::Authorised => Ok(()),
        IssuanceBasis::Renewal(serial) if credentials.active.iter().any(|s| s == serial.as_str()) => {
            Ok(())
        }
        IssuanceBasis::Renewal(serial) => Err(StoreError::NotEntitled(format!(
            "certificate {serial} is not the device's current certificate (it was superseded or revoked); only the current certificate renews an identity"
        ))),
        IssuanceBasis::Bootstrap if !credentials.any_unrevoked => Ok(()),
        IssuanceBasis::Bootstrap => Err(StoreError::NotEntitled(
            "the device is already enrolled: a manufacturer certificate enrols a device only once; to re-bootstrap it (after a factory reset), an operator first revokes its certificates".into(),
        )),
    }
}

/// Every accepted item's writes, as one multi-row statement per table.
async fn write_decisions(
    tx: &mut Transaction<'static, Any>,
    batch: &[RecordJob],
    decisions: &[Result<Decision, StoreError>],
    view: &View,
) -> Result<(), StoreError> {
    let accepted: Vec<(&RecordJob, &Decision)> = batch
        .iter()
        .zip(decisions)
        .filter_map(|(job, d)| d.as_ref().ok().map(|d| (job, d)))
        .collect();
    if accepted.is_empty() {
        return Ok(());
    }
    bind_new_keys(tx, &accepted).await?;
    let superseded = supersede_active(tx, &accepted).await?;
    insert_certificates(tx, &accepted).await?;
    advance_states(tx, &accepted, view).await?;
    // The log entries, in the same transaction: no certificate without its entry.
    let events = accepted
        .iter()
        .map(|(job, d)| issued_event(job, d, &superseded))
        .collect();
    crate::audit::append(tx, events).await?;
    Ok(())
}

/// Keys certified for the first time are bound to their device, for good.
async fn bind_new_keys(
    tx: &mut Transaction<'static, Any>,
    accepted: &[(&RecordJob, &Decision)],
) -> Result<(), StoreError> {
    let new_keys: Vec<&(&RecordJob, &Decision)> =
        accepted.iter().filter(|(_, d)| d.key_is_new).collect();
    if new_keys.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "INSERT INTO device_keys (spki_sha256, device_id, bound_at) VALUES {}",
        value_rows(new_keys.len(), 3)
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for (job, _) in &new_keys {
        query = query
            .bind(job.cert.spki_sha256.as_str())
            .bind(job.device.to_string())
            .bind(job.now.unix_timestamp());
    }
    query
        .execute(&mut **tx)
        .await
        .map_err(|e| unique_to_conflict(e, || "public key bound concurrently".into()))?;
    Ok(())
}

/// A device's earlier active certificates are superseded by the new one (they stay valid
/// until they expire or are revoked; relying parties see no change). Returns the superseded
/// serials by device.
async fn supersede_active(
    tx: &mut Transaction<'static, Any>,
    accepted: &[(&RecordJob, &Decision)],
) -> Result<HashMap<String, Vec<String>>, StoreError> {
    let devices: Vec<String> = accepted
        .iter()
        .map(|(_, d)| d.record.device_id.to_string())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let sql = format!(
        "UPDATE certificates SET status = 'superseded' WHERE status = 'active' AND device_id IN ({}) RETURNING serial, device_id",
        placeholders(devices.len())
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for d in &devices {
        query = query.bind(d.as_str());
    }
    let mut superseded: HashMap<String, Vec<String>> = HashMap::new();
    for row in query.fetch_all(&mut **tx).await? {
        superseded
            .entry(row.try_get("device_id")?)
            .or_default()
            .push(row.try_get("serial")?);
    }
    Ok(superseded)
}

async fn insert_certificates(
    tx: &mut Transaction<'static, Any>,
    accepted: &[(&RecordJob, &Decision)],
) -> Result<(), StoreError> {
    let sql = format!(
        "INSERT INTO certificates (serial, device_id, profile, not_before, not_after, sha256, spki_sha256, status, der, issued_at, key_algorithm) VALUES {}",
        value_rows(accepted.len(), 11)
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for (job, d) in accepted {
        let r = &d.record;
        query = query
            .bind(r.serial.as_str())
            .bind(r.device_id.to_string())
            .bind(r.profile.as_str())
            .bind(r.not_before.unix_timestamp())
            .bind(r.not_after.unix_timestamp())
            .bind(r.sha256.as_str())
            .bind(r.spki_sha256.as_str())
            .bind(r.status.as_str())
            .bind(r.der.as_slice())
            .bind(r.issued_at.unix_timestamp())
            .bind(job.cert.key_algorithm.as_str());
    }
    query
        .execute(&mut **tx)
        .await
        .map_err(|e| unique_to_conflict(e, || "certificate serial collision".into()))?;
    Ok(())
}

/// Lifecycle: one UPDATE per resulting state.
async fn advance_states(
    tx: &mut Transaction<'static, Any>,
    accepted: &[(&RecordJob, &Decision)],
    view: &View,
) -> Result<(), StoreError> {
    let updated_at = accepted
        .iter()
        .map(|(job, _)| job.now.unix_timestamp())
        .max()
        .unwrap_or_default();
    let mut by_state: HashMap<LifecycleState, Vec<String>> = HashMap::new();
    for (id, (stored, after)) in &view.states {
        if stored != after {
            by_state.entry(*after).or_default().push(id.to_string());
        }
    }
    for (state, ids) in by_state {
        let sql = format!(
            "UPDATE devices SET state = $1, updated_at = $2 WHERE id IN ({})",
            placeholders_from(3, ids.len())
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(state.as_str())
            .bind(updated_at);
        for id in &ids {
            query = query.bind(id.as_str());
        }
        query.execute(&mut **tx).await?;
    }
    Ok(())
}

/// `certificate.issued`, with what it did to the device and its key.
fn issued_event(
    job: &RecordJob,
    d: &Decision,
    superseded: &HashMap<String, Vec<String>>,
) -> AuditEvent {
    let r = &d.record;
    AuditEvent::new(
        job.now,
        job.actor.clone(),
        "certificate.issued",
        format!("certificate:{}", r.serial),
        Outcome::Success,
        json!({
            "device": r.device_id.to_string(),
            "profile": r.profile,
            "sha256": r.sha256.as_str(),
            "spki_sha256": r.spki_sha256.as_str(),
            "key_newly_bound": d.key_is_new,
            "not_before": r.not_before.unix_timestamp(),
            "not_after": r.not_after.unix_timestamp(),
            "device_state": {"from": d.state_before.as_str(), "to": d.state_after.as_str()},
            "supersedes": superseded.get(&r.device_id.to_string()).cloned().unwrap_or_default(),
        }),
    )
}

fn unique(items: impl Iterator<Item = String>) -> Vec<String> {
    let mut seen = HashSet::new();
    items.filter(|i| seen.insert(i.clone())).collect()
}

/// `$1, $2, ..., $n`
pub(crate) fn placeholders(n: usize) -> String {
    placeholders_from(1, n)
}

pub(crate) fn placeholders_from(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `($1, $2, $3), ($4, $5, $6), ...` for `rows` rows of `columns` columns.
pub(crate) fn value_rows(rows: usize, columns: usize) -> String {
    (0..rows)
        .map(|r| format!("({})", placeholders_from(r * columns + 1, columns)))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issuance_refusals_keep_their_meaning() {
        let (a, b) = (DeviceId::generate(), DeviceId::generate());
        let refused = |state, owner| StoreError::from(issuance_rule(a, state, owner).unwrap_err());
        assert!(
            matches!(refused(LifecycleState::Active, Some(b)), StoreError::KeyBound(o) if o == b)
        );
        assert!(matches!(
            refused(LifecycleState::Suspended, None),
            StoreError::Lifecycle(_)
        ));
    }

    #[test]
    fn entitlement_rule() {
        let current = Credentials {
            active: vec!["02".into()],
            any_unrevoked: true,
        };
        let renew = |s: &str| IssuanceBasis::Renewal(s.parse().expect("serial"));
        assert!(super::entitlement_rule(&renew("02"), &current).is_ok());
        assert!(matches!(
            super::entitlement_rule(&renew("01"), &current),
            Err(StoreError::NotEntitled(_))
        ));
        assert!(super::entitlement_rule(&IssuanceBasis::Authorised, &current).is_ok());
        assert!(matches!(
            super::entitlement_rule(&IssuanceBasis::Bootstrap, &current),
            Err(StoreError::NotEntitled(_))
        ));
        let superseded_only = Credentials {
            active: vec![],
            any_unrevoked: true,
        };
        assert!(super::entitlement_rule(&IssuanceBasis::Bootstrap, &superseded_only).is_err());
        assert!(super::entitlement_rule(&renew("02"), &superseded_only).is_err());
        let none = Credentials::default();
        assert!(super::entitlement_rule(&IssuanceBasis::Bootstrap, &none).is_ok());
    }

    #[test]
    fn placeholder_lists() {
        assert_eq!(placeholders(3), "$1, $2, $3");
        assert_eq!(placeholders_from(3, 2), "$3, $4");
        assert_eq!(value_rows(2, 2), "($1, $2), ($3, $4)");
    }
}
