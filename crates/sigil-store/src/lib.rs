//! Sigil's persistence. One [`Store`] runs on SQLite (the embedded default, WAL mode,
//! `synchronous=FULL`) or PostgreSQL, through sqlx's `Any` driver, with one migration set per
//! backend. Every operation that writes is exactly one transaction: a crash at any point leaves
//! either all of a change or none of it.
//!
//! Domain rules (lifecycle transitions, field validation) come from `sigil-domain`; this crate
//! applies them inside the transaction that reads the current state, so a decision is never made
//! on stale data.

mod attestations;
mod audit;
mod batch;
mod bootstrap;
mod certificates;
mod compliance;
mod compliance_runs;
mod device_query;
mod disclosure;
mod enrollment;
mod error;
pub mod exclusive;
mod foreign;
mod import;
mod inventory;
mod monitoring;
mod operators;
mod overview;
mod policy;
mod posture;
mod revocation;
mod rollout_devices;
mod rollouts;
mod rows;
mod tokens;
mod updates;
mod vuln_cases;
mod vulns;

use std::path::Path;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use std::sync::Arc;

use sqlx::{Any, AnyPool, Transaction};
use time::OffsetDateTime;
use tokio::sync::{Mutex, OwnedMutexGuard, mpsc};

use sigil_domain::Serial;

pub use attestations::{Attestation, NewAttestation};
pub use audit::{AuditQuery, StoredEntry};
pub use bootstrap::ManufacturerCaRecord;
pub use compliance::{AuditChange, ComplianceCertificate, ComplianceDevice, DeviceSnapshot};
pub use compliance_runs::ComplianceRun;
pub use disclosure::{Decision, DisclosurePolicyRecord, NewReport, ReportRecord};
pub use enrollment::TokenRefusal;
pub use error::{IssueError, StoreError};
pub use foreign::{ForeignImport, ForeignRecord};
pub use import::Registered;
pub use monitoring::{AlarmFilter, AlarmRecord, NewAlarm};
pub use operators::{FailureOutcome, NewOperator, NewSession, OperatorRecord, SessionRecord};
pub use overview::{EXPIRY_WINDOWS, InventorySummary};
pub use policy::PolicyVersion;
pub use posture::PostureRecord;
pub use revocation::{RevokedCertificate, StoredCrl};
pub use rollouts::{
    ACTIVE_ROLLOUT_STATES, DeviceAssignment, DeviceSelector, DeviceUpdate, RolloutRecord,
    StatusCount, UpdateReport,
};
pub use rows::{CertificateRecord, CertificateStatus, NewCertificate, TokenRecord};
pub use tokens::NewApiToken;
pub use updates::{ReleaseRecord, TufDocument, TufKeyRecord, UpdateChannel};
pub use vuln_cases::{AffectedDevice, CaseAlert, CaseRecord, CaseReport, NewCase, SiteRecord};
pub use vulns::{ComponentRow, ImportCounts, KevRow, NewSbom, SbomRecord, VexRow, VulnRecordRow};

/// What entitles a caller to a new certificate for a device. Checked before signing and again,
/// authoritatively, inside the transaction that records the certificate, so two requests
/// racing on one credential cannot both win.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IssuanceBasis {
    /// An operator's request or a one-time enrolment token: the lifecycle alone decides.
    Authorised,
    /// Renewal authenticated by the certificate with this serial, which must still be the
    /// device's active certificate.
    Renewal(Serial),
    /// A manufacturer (IDevID) certificate: only for a device holding no unrevoked certificate.
    Bootstrap,
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

async fn sqlite_pool(url: &str, connections: u32) -> Result<AnyPool, StoreError> {
    Ok(AnyPoolOptions::new()
        .max_connections(connections)
        .after_connect(|conn, _meta| {
            Box::pin(async move {
                // WAL: readers never block the writer. FULL: a committed transaction survives
                // power loss, not only a process crash.
                sqlx::raw_sql(
                    "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                     PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;",
                )
                .execute(conn)
                .await?;
                Ok(())
            })
        })
        .connect(url)
        .await?)
}

/// Which database engine a [`Store`] runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Largest page a listing returns.
pub const MAX_PAGE: u32 = 500;

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    write_pool: AnyPool,
    backend: Backend,
    lock: WriteLock,
    recorder: mpsc::Sender<batch::RecordJob>,
    commits: Commits,
}

/// Counts committed write transactions, so followers of the database (the compliance engine,
/// the broker sync) wake at once on a change made by this process instead of polling.
#[derive(Clone)]
pub(crate) struct Commits(Arc<tokio::sync::watch::Sender<u64>>);

impl Commits {
    fn new() -> Self {
        Self(Arc::new(tokio::sync::watch::Sender::new(0)))
    }

    pub(crate) fn bump(&self) {
        self.0.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// Serialises writers in-process on SQLite, which has one write lock per database file: waiting
/// here is a queue, where waiting on SQLite's busy handler is sleep-and-retry.
#[derive(Clone, Default)]
pub(crate) struct WriteLock(Arc<Mutex<()>>);

impl WriteLock {
    pub(crate) async fn acquire(&self, backend: Backend) -> Option<OwnedMutexGuard<()>> {
        match backend {
            Backend::Sqlite => Some(self.0.clone().lock_owned().await),
            Backend::Postgres => None,
        }
    }
}

/// A write transaction, holding the SQLite writer lock while it lives.
struct WriteTx {
    tx: Transaction<'static, Any>,
    _guard: Option<OwnedMutexGuard<()>>,
    commits: Commits,
}

impl WriteTx {
    async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await?;
        self.commits.bump();
        Ok(())
    }
}

impl std::ops::Deref for WriteTx {
    type Target = sqlx::AnyConnection;
    fn deref(&self) -> &Self::Target {
        &self.tx
    }
}

impl std::ops::DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.tx
    }
}

impl Store {
    /// Open (creating if needed) and migrate the database at `url`: `sqlite://PATH` or
    /// `postgres://...`.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(StoreError::Config(
                "database URL must start with sqlite:// or postgres://".into(),
            ));
        };
        // Reads and writes use separate pools, so a write never queues behind a crowd of reads
        // for a connection. On SQLite there is one writer connection: SQLite has one write lock.
        let (pool, write_pool) = match backend {
            Backend::Sqlite => {
                let url = if url.contains('?') {
                    url.to_owned()
                } else {
                    format!("{url}?mode=rwc")
                };
                (sqlite_pool(&url, 8).await?, sqlite_pool(&url, 1).await?)
            }
            Backend::Postgres => (
                AnyPoolOptions::new()
                    .max_connections(16)
                    .connect(url)
                    .await?,
                AnyPoolOptions::new()
                    .max_connections(4)
                    .connect(url)
                    .await?,
            ),
        };
        let migrator = match backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator.run(&write_pool).await?;
        let lock = WriteLock::default();
        let commits = Commits::new();
        let recorder =
            batch::spawn_writer(write_pool.clone(), backend, lock.clone(), commits.clone());
        Ok(Self {
            pool,
            write_pool,
            backend,
            lock,
            recorder,
            commits,
        })
    }

    /// The embedded default: a SQLite file.
    pub async fn open_sqlite_file(path: &Path) -> Result<Self, StoreError> {
        let path = path
            .to_str()
            .ok_or_else(|| StoreError::Config("database path is not UTF-8".into()))?;
        Self::open(&format!("sqlite://{path}")).await
    }

    /// Changes with every write this process commits (its value means nothing else). Changes
    /// made by another process sharing the database are not signalled: poll as well.
    pub fn commits(&self) -> tokio::sync::watch::Receiver<u64> {
        self.commits.0.subscribe()
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The underlying pool, for tests and tooling that inspect the database directly.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub async fn close(&self) {
        self.pool.close().await;
        self.write_pool.close().await;
    }

    /// A write transaction. On SQLite it takes the write lock up front (`BEGIN IMMEDIATE`) so a
    /// read-then-write transaction cannot fail half-way on lock upgrade.
    async fn begin_write(&self) -> Result<WriteTx, StoreError> {
        let guard = self.lock.acquire(self.backend).await;
        let tx = match self.backend {
            Backend::Sqlite => self.write_pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.write_pool.begin().await?,
        };
        Ok(WriteTx {
            tx,
            _guard: guard,
            commits: self.commits.clone(),
        })
    }

    /// `FOR UPDATE` where the engine has row locks; SQLite's write lock already serialises.
    fn device_for_update(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite => "SELECT state FROM devices WHERE id = $1",
            Backend::Postgres => "SELECT state FROM devices WHERE id = $1 FOR UPDATE",
        }
    }

    fn tags_aggregate(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite => "group_concat(tag, ',')",
            Backend::Postgres => "string_agg(tag, ',')",
        }
    }
}

pub(crate) fn truncate_to_second(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(0).unwrap_or(t)
}

pub(crate) fn unique_to_conflict(e: sqlx::Error, message: impl FnOnce() -> String) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.kind() == sqlx::error::ErrorKind::UniqueViolation => {
            StoreError::Conflict(message())
        }
        _ => StoreError::Database(e),
    }
}
