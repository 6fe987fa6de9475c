//! Group commit for certificate issuance.
//!
//! A durable commit costs one fsync (about a millisecond here), far more than signing a
//! certificate (tens of microseconds). So certificates are recorded by a single writer task that
//! takes every issuance waiting in its queue and records them in one transaction. Each item's
//! checks run before any of its writes, so an item refused by a check writes nothing and the
//! others commit together; an unexpected database error fails the whole batch (nothing commits,
//! every caller is told). Every caller is answered only after the commit that made its
//! certificate durable.

use std::str::FromStr;

use sqlx::{Any, AnyPool, Row, Transaction};
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};

use sigil_domain::{DeviceId, LifecycleEvent, LifecycleState};

use crate::{
    Backend, CertificateRecord, CertificateStatus, NewCertificate, StoreError, WriteLock,
    truncate_to_second, unique_to_conflict,
};

/// Most issuances recorded in one transaction.
const MAX_BATCH: usize = 512;

pub(crate) struct RecordJob {
    pub device: DeviceId,
    pub cert: NewCertificate,
    pub now: OffsetDateTime,
    pub reply: oneshot::Sender<Result<CertificateRecord, StoreError>>,
}

pub(crate) fn spawn_writer(
    pool: AnyPool,
    backend: Backend,
    lock: WriteLock,
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
            match record_batch(&pool, backend, &lock, &batch).await {
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
    let mut results = Vec::with_capacity(batch.len());
    for job in batch {
        match record_one(&mut tx, backend, job).await {
            Ok(record) => results.push(Ok(record)),
            // Refused before any write of this item: the batch goes on.
            Err(Outcome::Refused(e)) => results.push(Err(e)),
            // A write failed: the transaction may hold part of this item, so none of it commits.
            Err(Outcome::Failed(e)) => return Err(e),
        }
    }
    tx.commit().await?;
    Ok(results)
}

enum Outcome {
    /// Refused by a check, before any write: the rest of the batch is unaffected.
    Refused(StoreError),
    /// A read or write failed: the batch must not commit.
    Failed(StoreError),
}

impl From<sqlx::Error> for Outcome {
    fn from(e: sqlx::Error) -> Self {
        Self::Failed(e.into())
    }
}

/// Device state and current owner of the key in one round trip; on PostgreSQL the device row
/// stays locked until the batch commits.
const CHECK_SQLITE: &str = "SELECT d.state, (SELECT k.device_id FROM device_keys k WHERE k.spki_sha256 = $2) AS key_owner \
     FROM devices d WHERE d.id = $1";
const CHECK_POSTGRES: &str = "SELECT d.state, (SELECT k.device_id FROM device_keys k WHERE k.spki_sha256 = $2) AS key_owner \
     FROM devices d WHERE d.id = $1 FOR UPDATE OF d";

/// The authoritative checks, then the writes, for one issuance inside the batch transaction.
async fn record_one(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    job: &RecordJob,
) -> Result<CertificateRecord, Outcome> {
    let device = job.device;
    let spki = &job.cert.spki_sha256;
    let check = match backend {
        Backend::Sqlite => CHECK_SQLITE,
        Backend::Postgres => CHECK_POSTGRES,
    };
    let corrupt = |e: &dyn std::fmt::Display| Outcome::Failed(StoreError::Corrupt(e.to_string()));
    let row = sqlx::query(check)
        .bind(device.to_string())
        .bind(spki.as_str())
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| {
            Outcome::Refused(StoreError::NotFound {
                kind: "device",
                id: device.to_string(),
            })
        })?;
    let state: String = row.try_get("state")?;
    let state = LifecycleState::from_str(&state).map_err(|e| corrupt(&e))?;
    let next = state
        .apply(LifecycleEvent::IdentityIssued)
        .map_err(|e| Outcome::Refused(e.into()))?;
    let key_owner: Option<String> = row.try_get("key_owner")?;
    let key_is_new = match key_owner {
        None => true,
        Some(owner) => {
            let owner = DeviceId::from_str(&owner).map_err(|e| corrupt(&e))?;
            if owner != device {
                return Err(Outcome::Refused(StoreError::KeyBound(owner)));
            }
            false
        }
    };

    // Writes. From here on any error fails the whole batch.
    let failed = |e: StoreError| Outcome::Failed(e);
    if key_is_new {
        sqlx::query(
            "INSERT INTO device_keys (spki_sha256, device_id, bound_at) VALUES ($1, $2, $3)",
        )
        .bind(spki.as_str())
        .bind(device.to_string())
        .bind(job.now.unix_timestamp())
        .execute(&mut **tx)
        .await
        .map_err(|e| {
            failed(unique_to_conflict(e, || {
                "public key was bound to another device concurrently".into()
            }))
        })?;
    }
    let c = &job.cert;
    let record = CertificateRecord {
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
    };
    sqlx::query(
        "INSERT INTO certificates (serial, device_id, profile, not_before, not_after, sha256, spki_sha256, status, der, issued_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(record.serial.as_str())
    .bind(device.to_string())
    .bind(&record.profile)
    .bind(record.not_before.unix_timestamp())
    .bind(record.not_after.unix_timestamp())
    .bind(record.sha256.as_str())
    .bind(record.spki_sha256.as_str())
    .bind(record.status.as_str())
    .bind(record.der.clone())
    .bind(record.issued_at.unix_timestamp())
    .execute(&mut **tx)
    .await
    .map_err(|e| failed(unique_to_conflict(e, || "certificate serial collision".into())))?;

    if next != state {
        sqlx::query("UPDATE devices SET state = $1, updated_at = $2 WHERE id = $3")
            .bind(next.as_str())
            .bind(job.now.unix_timestamp())
            .bind(device.to_string())
            .execute(&mut **tx)
            .await?;
    }
    Ok(record)
}
