//! Group commit for certificate issuance.
//!
//! A durable commit costs one fsync (about a millisecond here), far more than signing a
//! certificate (tens of microseconds). So certificates are recorded by a single writer task that
//! takes every issuance waiting in its queue and records them in one transaction, each inside its
//! own savepoint: an item that fails its checks is rolled back alone, the others commit together,
//! and every caller is answered only after the commit that made its certificate durable.

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
            let outcome = record_batch(&pool, backend, &lock, &batch).await;
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
    let mut results = Vec::with_capacity(batch.len());
    for job in batch {
        sqlx::query("SAVEPOINT issue").execute(&mut *tx).await?;
        match record_one(&mut tx, backend, job).await {
            Ok(record) => {
                sqlx::query("RELEASE SAVEPOINT issue")
                    .execute(&mut *tx)
                    .await?;
                results.push(Ok(record));
            }
            Err(e) => {
                sqlx::query("ROLLBACK TO SAVEPOINT issue")
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("RELEASE SAVEPOINT issue")
                    .execute(&mut *tx)
                    .await?;
                results.push(Err(e));
            }
        }
    }
    tx.commit().await?;
    Ok(results)
}

/// The authoritative checks and writes for one issuance, inside the batch transaction.
async fn record_one(
    tx: &mut Transaction<'static, Any>,
    backend: Backend,
    job: &RecordJob,
) -> Result<CertificateRecord, StoreError> {
    let device = job.device;
    let lock_sql = match backend {
        Backend::Sqlite => "SELECT state FROM devices WHERE id = $1",
        Backend::Postgres => "SELECT state FROM devices WHERE id = $1 FOR UPDATE",
    };
    let row = sqlx::query(lock_sql)
        .bind(device.to_string())
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| StoreError::NotFound {
            kind: "device",
            id: device.to_string(),
        })?;
    let state = LifecycleState::from_str(&row.try_get::<String, _>("state")?)
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let next = state.apply(LifecycleEvent::IdentityIssued)?;

    let spki = &job.cert.spki_sha256;
    let bound_to = sqlx::query("SELECT device_id FROM device_keys WHERE spki_sha256 = $1")
        .bind(spki.as_str())
        .fetch_optional(&mut **tx)
        .await?;
    match bound_to {
        Some(row) => {
            let owner = DeviceId::from_str(&row.try_get::<String, _>("device_id")?)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            if owner != device {
                return Err(StoreError::KeyBound(owner));
            }
        }
        None => {
            sqlx::query(
                "INSERT INTO device_keys (spki_sha256, device_id, bound_at) VALUES ($1, $2, $3)",
            )
            .bind(spki.as_str())
            .bind(device.to_string())
            .bind(job.now.unix_timestamp())
            .execute(&mut **tx)
            .await
            .map_err(|e| {
                unique_to_conflict(e, || {
                    "public key was bound to another device concurrently".into()
                })
            })?;
        }
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
    .map_err(|e| unique_to_conflict(e, || "certificate serial collision".into()))?;

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
