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
mod compliance;
mod compliance_runs;
mod enrollment;
mod error;
pub mod exclusive;
mod operators;
mod policy;
mod posture;
mod revocation;
mod rows;

use std::path::Path;
use std::str::FromStr;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use std::sync::Arc;

use sqlx::{Any, AnyPool, Row, Transaction};
use time::OffsetDateTime;
use tokio::sync::{Mutex, OwnedMutexGuard, mpsc, oneshot};

use serde_json::json;
use sigil_audit::{Actor, AuditEvent, Outcome};
use sigil_domain::{
    Device, DeviceFilter, DeviceId, Fingerprint, LifecycleEvent, LifecycleState, NewDevice,
    NewProduct, Product, ProductId, RevocationReason, Serial,
};

pub use attestations::{Attestation, NewAttestation};
pub use audit::{AuditQuery, StoredEntry};
pub use bootstrap::ManufacturerCaRecord;
pub use compliance::{AuditChange, ComplianceCertificate, ComplianceDevice, DeviceSnapshot};
pub use compliance_runs::ComplianceRun;
pub use enrollment::TokenRefusal;
pub use error::{IssueError, StoreError};
pub use operators::{FailureOutcome, NewOperator, NewSession, OperatorRecord, SessionRecord};
pub use policy::PolicyVersion;
pub use posture::PostureRecord;
pub use revocation::{RevokedCertificate, StoredCrl};
pub use rows::{CertificateRecord, CertificateStatus, NewCertificate, TokenRecord};

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

use rows::{CERT_COLUMNS, DEVICE_COLUMNS, certificate_from_row, device_from_row, product_from_row};

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

    // ---- products ------------------------------------------------------------------------

    pub async fn create_product(
        &self,
        actor: &Actor,
        new: NewProduct,
        now: OffsetDateTime,
    ) -> Result<Product, StoreError> {
        let product = Product {
            id: ProductId::generate(),
            name: new.name,
            manufacturer: new.manufacturer,
            support_end: new.support_end,
            created_at: truncate_to_second(now),
        };
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO products (id, name, manufacturer, support_end, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(product.id.to_string())
        .bind(&product.name)
        .bind(&product.manufacturer)
        .bind(product.support_end.to_string()) // YYYY-MM-DD
        .bind(product.created_at.unix_timestamp())
        .execute(&mut *tx)
        .await
        .map_err(|e| unique_to_conflict(e, || format!("a product named `{}` from `{}` already exists", product.name, product.manufacturer)))?;
        let event = AuditEvent::new(
            now,
            actor.clone(),
            "product.created",
            format!("product:{}", product.id),
            Outcome::Success,
            json!({
                "name": product.name,
                "manufacturer": product.manufacturer,
                "support_end": product.support_end.to_string(),
            }),
        );
        audit::append(&mut tx, vec![event]).await?;
        tx.commit().await?;
        Ok(product)
    }

    pub async fn get_product(&self, id: ProductId) -> Result<Product, StoreError> {
        let row = sqlx::query(
            "SELECT id, name, manufacturer, support_end, created_at FROM products WHERE id = $1",
        )
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::NotFound {
            kind: "product",
            id: id.to_string(),
        })?;
        product_from_row(&row)
    }

    pub async fn list_products(&self) -> Result<Vec<Product>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, name, manufacturer, support_end, created_at FROM products ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(product_from_row).collect()
    }

    // ---- devices -------------------------------------------------------------------------

    pub async fn create_device(
        &self,
        actor: &Actor,
        new: NewDevice,
        now: OffsetDateTime,
    ) -> Result<Device, StoreError> {
        self.create_devices(actor, vec![new], now)
            .await?
            .pop()
            .ok_or_else(|| StoreError::Corrupt("device insert returned nothing".into()))
    }

    /// Register many devices in one transaction (fleet import): all of them or none.
    pub async fn create_devices(
        &self,
        actor: &Actor,
        new: Vec<NewDevice>,
        now: OffsetDateTime,
    ) -> Result<Vec<Device>, StoreError> {
        let logged_at = now;
        let now = truncate_to_second(now);
        let mut tx = self.begin_write().await?;
        let mut known_products = std::collections::HashSet::new();
        let mut out = Vec::with_capacity(new.len());
        for n in new {
            if known_products.insert(n.product_id) {
                let exists = sqlx::query("SELECT 1 FROM products WHERE id = $1")
                    .bind(n.product_id.to_string())
                    .fetch_optional(&mut *tx)
                    .await?
                    .is_some();
                if !exists {
                    return Err(StoreError::NotFound {
                        kind: "product",
                        id: n.product_id.to_string(),
                    });
                }
            }
            let device = Device {
                id: DeviceId::generate(),
                product_id: n.product_id,
                serial_number: n.serial_number,
                hardware_id: n.hardware_id,
                owner: n.owner,
                site: n.site,
                tags: n.tags,
                firmware_version: n.firmware_version,
                state: LifecycleState::Registered,
                created_at: now,
                updated_at: now,
            };
            insert_device(&mut tx, &device).await?;
            out.push(device);
        }
        let events = out
            .iter()
            .map(|d| {
                AuditEvent::new(
                    logged_at,
                    actor.clone(),
                    "device.created",
                    format!("device:{}", d.id),
                    Outcome::Success,
                    json!({
                        "product": d.product_id.to_string(),
                        "serial_number": d.serial_number,
                        "hardware_id": d.hardware_id,
                        "owner": d.owner,
                        "site": d.site,
                        "firmware_version": d.firmware_version,
                        "tags": d.tags.iter().map(|t| t.as_str()).collect::<Vec<_>>(),
                        "state": d.state.as_str(),
                    }),
                )
            })
            .collect();
        audit::append(&mut tx, events).await?;
        tx.commit().await?;
        Ok(out)
    }

    pub async fn get_device(&self, id: DeviceId) -> Result<Device, StoreError> {
        let sql = format!(
            "SELECT {DEVICE_COLUMNS}, (SELECT {} FROM device_tags t WHERE t.device_id = d.id) AS tags FROM devices d WHERE d.id = $1",
            self.tags_aggregate()
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound {
                kind: "device",
                id: id.to_string(),
            })?;
        device_from_row(&row)
    }

    /// Devices matching `filter`, ordered by id (creation time), at most `filter.limit`.
    pub async fn list_devices(&self, filter: &DeviceFilter) -> Result<Vec<Device>, StoreError> {
        let mut sql = format!(
            "SELECT {DEVICE_COLUMNS}, (SELECT {} FROM device_tags t WHERE t.device_id = d.id) AS tags FROM devices d WHERE 1 = 1",
            self.tags_aggregate()
        );
        // Placeholders are numbered in the order they are bound ($1, $2, ...).
        let mut binds: Vec<String> = Vec::new();
        let mut push = |clause: &str, value: String, sql: &mut String| {
            binds.push(value);
            sql.push_str(&clause.replace('?', &format!("${}", binds.len())));
        };
        if let Some(state) = filter.state {
            push(" AND d.state = ?", state.as_str().to_owned(), &mut sql);
        }
        if let Some(product) = filter.product {
            push(" AND d.product_id = ?", product.to_string(), &mut sql);
        }
        if let Some(tag) = &filter.tag {
            push(
                " AND EXISTS (SELECT 1 FROM device_tags t2 WHERE t2.device_id = d.id AND t2.tag = ?)",
                tag.as_str().to_owned(),
                &mut sql,
            );
        }
        if let Some(after) = filter.after {
            push(" AND d.id > ?", after.to_string(), &mut sql);
        }
        let limit = i64::from(filter.limit.clamp(1, MAX_PAGE));
        sql.push_str(&format!(" ORDER BY d.id LIMIT {limit}"));
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for value in binds {
            query = query.bind(value);
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter().map(device_from_row).collect()
    }

    /// Apply a lifecycle event to a device, refusing it if the state machine does.
    pub async fn transition_device(
        &self,
        actor: &Actor,
        id: DeviceId,
        event: LifecycleEvent,
        now: OffsetDateTime,
    ) -> Result<Device, StoreError> {
        let mut tx = self.begin_write().await?;
        let current = self.locked_state(&mut tx, id).await?;
        let next = current.apply(event)?;
        sqlx::query("UPDATE devices SET state = $1, updated_at = $2 WHERE id = $3")
            .bind(next.as_str())
            .bind(now.unix_timestamp())
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        // A retired device keeps no valid identity: its certificates are revoked with it.
        let revoked = if event == LifecycleEvent::Retire {
            revocation::revoke_in_tx(
                &mut tx,
                actor,
                id,
                RevocationReason::CessationOfOperation,
                now,
            )
            .await?
        } else {
            Vec::new()
        };
        let mut details = json!({"from": current.as_str(), "to": next.as_str()});
        if !revoked.is_empty() {
            details["revoked_certificates"] =
                json!(revoked.iter().map(Serial::as_str).collect::<Vec<_>>());
        }
        let event = AuditEvent::new(
            now,
            actor.clone(),
            &format!("device.{}", lifecycle_verb(event)),
            format!("device:{id}"),
            Outcome::Success,
            details,
        );
        audit::append(&mut tx, vec![event]).await?;
        tx.commit().await?;
        self.get_device(id).await
    }

    async fn locked_state(
        &self,
        tx: &mut WriteTx,
        id: DeviceId,
    ) -> Result<LifecycleState, StoreError> {
        let row = sqlx::query(self.device_for_update())
            .bind(id.to_string())
            .fetch_optional(&mut **tx)
            .await?
            .ok_or_else(|| StoreError::NotFound {
                kind: "device",
                id: id.to_string(),
            })?;
        let state: String = row.try_get("state")?;
        LifecycleState::from_str(&state).map_err(|e| StoreError::Corrupt(e.to_string()))
    }

    // ---- certificates --------------------------------------------------------------------

    /// Issue a certificate to `device`.
    ///
    /// A read-only pre-check refuses devices that may not receive an identity and keys bound to
    /// another device before anything is signed. Then `sign` runs (in the caller's task, so
    /// signing uses every core), and the certificate goes to the group-commit writer, which
    /// repeats the checks authoritatively inside the transaction that records the certificate,
    /// binds the key and advances the lifecycle. The caller gets the record only after that
    /// transaction committed; a certificate whose recording is refused is dropped unreleased.
    #[allow(clippy::too_many_arguments)]
    pub async fn issue_certificate<E>(
        &self,
        actor: &Actor,
        device: DeviceId,
        basis: IssuanceBasis,
        spki_sha256: &Fingerprint,
        now: OffsetDateTime,
        sign: impl FnOnce() -> Result<NewCertificate, E>,
    ) -> Result<CertificateRecord, IssueError<E>> {
        self.precheck_issuance(device, &basis, spki_sha256).await?;
        let cert = sign().map_err(IssueError::Sign)?;
        if cert.spki_sha256 != *spki_sha256 {
            return Err(StoreError::Corrupt(
                "signed certificate certifies a different key than checked".into(),
            )
            .into());
        }
        let (reply, answer) = oneshot::channel();
        self.recorder
            .send(batch::RecordJob {
                actor: actor.clone(),
                device,
                basis,
                cert,
                now,
                reply,
            })
            .await
            .map_err(|_| StoreError::Closed)?;
        Ok(answer.await.map_err(|_| StoreError::Closed)??)
    }

    async fn precheck_issuance(
        &self,
        device: DeviceId,
        basis: &IssuanceBasis,
        spki_sha256: &Fingerprint,
    ) -> Result<(), StoreError> {
        let row = sqlx::query(
            "SELECT d.state, (SELECT k.device_id FROM device_keys k WHERE k.spki_sha256 = $2) AS key_owner \
             FROM devices d WHERE d.id = $1",
        )
        .bind(device.to_string())
        .bind(spki_sha256.as_str())
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::NotFound { kind: "device", id: device.to_string() })?;
        let corrupt = |e: &dyn std::fmt::Display| StoreError::Corrupt(e.to_string());
        let state = LifecycleState::from_str(&row.try_get::<String, _>("state")?)
            .map_err(|e| corrupt(&e))?;
        let key_owner = row
            .try_get::<Option<String>, _>("key_owner")?
            .map(|o| DeviceId::from_str(&o).map_err(|e| corrupt(&e)))
            .transpose()?;
        sigil_domain::issuance_rule(device, state, key_owner)?;
        if *basis != IssuanceBasis::Authorised {
            let credentials = batch::read_credentials(&self.pool, &[device.to_string()]).await?;
            batch::entitlement_rule(
                basis,
                &credentials.get(&device).cloned().unwrap_or_default(),
            )?;
        }
        Ok(())
    }

    pub async fn get_certificate(&self, serial: &Serial) -> Result<CertificateRecord, StoreError> {
        let sql = format!("SELECT {CERT_COLUMNS} FROM certificates WHERE serial = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(serial.as_str())
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound {
                kind: "certificate",
                id: serial.to_string(),
            })?;
        certificate_from_row(&row)
    }

    /// Certificates, newest first, optionally for one device.
    pub async fn list_certificates(
        &self,
        device: Option<DeviceId>,
        limit: u32,
    ) -> Result<Vec<CertificateRecord>, StoreError> {
        let limit = i64::from(limit.clamp(1, MAX_PAGE));
        let rows = match device {
            Some(d) => {
                let sql = format!(
                    "SELECT {CERT_COLUMNS} FROM certificates WHERE device_id = $1 ORDER BY issued_at DESC, serial LIMIT {limit}"
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(d.to_string())
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                let sql = format!(
                    "SELECT {CERT_COLUMNS} FROM certificates ORDER BY issued_at DESC, serial LIMIT {limit}"
                );
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.iter().map(certificate_from_row).collect()
    }

    /// Every certificate, by serial, a page at a time (for snapshots).
    pub async fn certificates_after(
        &self,
        after: Option<&Serial>,
        limit: u32,
    ) -> Result<Vec<CertificateRecord>, StoreError> {
        let limit = i64::from(limit.clamp(1, MAX_PAGE));
        let sql = format!(
            "SELECT {CERT_COLUMNS} FROM certificates WHERE serial > $1 ORDER BY serial LIMIT {limit}"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(after.map(|s| s.as_str().to_owned()).unwrap_or_default())
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(certificate_from_row)
            .collect()
    }

    // ---- API tokens ----------------------------------------------------------------------

    /// Store a token by the SHA-256 of its secret. Returns the token id.
    pub async fn insert_api_token(
        &self,
        actor: &Actor,
        token: &NewApiToken<'_>,
        token_hash: &Fingerprint,
        now: OffsetDateTime,
    ) -> Result<String, StoreError> {
        let id = uuid::Uuid::now_v7().to_string();
        let scopes = token.scopes.join(",");
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO api_tokens (id, name, role, token_hash, created_at, expires_at, revoked_at, scopes) VALUES ($1, $2, $3, $4, $5, $6, NULL, $7)",
        )
        .bind(&id)
        .bind(token.name)
        .bind(token.role)
        .bind(token_hash.as_str())
        .bind(now.unix_timestamp())
        .bind(token.expires_at.map(|t| t.unix_timestamp()))
        .bind(&scopes)
        .execute(&mut *tx)
        .await?;
        let expires = token.expires_at.map(|t| t.unix_timestamp());
        let event = token_created(actor, &id, token, now, expires, 0);
        audit::append(&mut tx, vec![event]).await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Every token (secrets are not stored), newest first.
    pub async fn list_api_tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        sqlx::query("SELECT id, name, role, token_hash, expires_at, revoked_at, last_used_at, scopes FROM api_tokens ORDER BY id DESC")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(rows::token_from_row)
            .collect()
    }

    /// Revoke token `id` and log it. `NotFound` if there is none; revoking twice is a no-op.
    pub async fn revoke_api_token(
        &self,
        actor: &Actor,
        id: &str,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let exists = sqlx::query("SELECT revoked_at FROM api_tokens WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| StoreError::NotFound {
                kind: "API token",
                id: id.to_owned(),
            })?;
        if exists.try_get::<Option<i64>, _>("revoked_at")?.is_some() {
            return Ok(());
        }
        sqlx::query("UPDATE api_tokens SET revoked_at = $1 WHERE id = $2")
            .bind(now.unix_timestamp())
            .bind(id)
            .execute(&mut *tx)
            .await?;
        audit::append(
            &mut tx,
            vec![AuditEvent::new(
                now,
                actor.clone(),
                "token.revoked",
                format!("token:{id}"),
                Outcome::Success,
                json!({}),
            )],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Revoke every live token called `name` and store a new one, atomically.
    pub async fn replace_api_token(
        &self,
        actor: &Actor,
        name: &str,
        role: &str,
        token_hash: &Fingerprint,
        now: OffsetDateTime,
    ) -> Result<String, StoreError> {
        let id = uuid::Uuid::now_v7().to_string();
        let mut tx = self.begin_write().await?;
        let revoked = sqlx::query(
            "UPDATE api_tokens SET revoked_at = $1 WHERE name = $2 AND revoked_at IS NULL",
        )
        .bind(now.unix_timestamp())
        .bind(name)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        sqlx::query(
            "INSERT INTO api_tokens (id, name, role, token_hash, created_at, expires_at, revoked_at) VALUES ($1, $2, $3, $4, $5, NULL, NULL)",
        )
        .bind(&id)
        .bind(name)
        .bind(role)
        .bind(token_hash.as_str())
        .bind(now.unix_timestamp())
        .execute(&mut *tx)
        .await?;
        audit::append(
            &mut tx,
            vec![token_created(
                actor,
                &id,
                &NewApiToken {
                    name,
                    role,
                    scopes: &["*".to_owned()],
                    expires_at: None,
                },
                now,
                None,
                revoked,
            )],
        )
        .await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Whether a token of this name was ever created, revoked or not.
    pub async fn token_name_used(&self, name: &str) -> Result<bool, StoreError> {
        Ok(sqlx::query("SELECT 1 FROM api_tokens WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .is_some())
    }

    /// The token whose secret hashes to `token_hash`, if any (revoked or expired ones included:
    /// the caller decides and reports why it refuses).
    pub async fn find_api_token(
        &self,
        token_hash: &Fingerprint,
    ) -> Result<Option<TokenRecord>, StoreError> {
        let row = sqlx::query("SELECT id, name, role, token_hash, expires_at, revoked_at, last_used_at, scopes FROM api_tokens WHERE token_hash = $1")
            .bind(token_hash.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| rows::token_from_row(&r)).transpose()
    }

    /// Record that token `id` was used, unless its use was recorded within `interval` (another
    /// request may have just done so: the conditional update decides, once). Returns whether an
    /// entry was written.
    pub async fn record_token_use(
        &self,
        id: &str,
        now: OffsetDateTime,
        interval: time::Duration,
        details: serde_json::Value,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let updated = sqlx::query(
            "UPDATE api_tokens SET last_used_at = $1 WHERE id = $2 AND (last_used_at IS NULL OR last_used_at <= $3)",
        )
        .bind(now.unix_timestamp())
        .bind(id)
        .bind((now - interval).unix_timestamp())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated == 0 {
            return Ok(false);
        }
        let event = AuditEvent::new(
            now,
            Actor::operator(id),
            "token.used",
            format!("token:{id}"),
            Outcome::Success,
            details,
        );
        audit::append(&mut tx, vec![event]).await?;
        tx.commit().await?;
        Ok(true)
    }
}

/// A token to store.
pub struct NewApiToken<'a> {
    pub name: &'a str,
    pub role: &'a str,
    /// What it may be used for (see the `token-scope` policy); `*` for everything its role allows.
    pub scopes: &'a [String],
    pub expires_at: Option<OffsetDateTime>,
}

fn lifecycle_verb(event: LifecycleEvent) -> &'static str {
    match event {
        LifecycleEvent::IdentityIssued => "provisioned",
        LifecycleEvent::Activate => "activated",
        LifecycleEvent::Suspend => "suspended",
        LifecycleEvent::Resume => "resumed",
        LifecycleEvent::Retire => "retired",
    }
}

/// The entry for a new API token. Never the secret, nor its hash.
fn token_created(
    actor: &Actor,
    id: &str,
    token: &NewApiToken<'_>,
    now: OffsetDateTime,
    expires_at: Option<i64>,
    replaced: u64,
) -> AuditEvent {
    AuditEvent::new(
        now,
        actor.clone(),
        "token.created",
        format!("token:{id}"),
        Outcome::Success,
        json!({"name": token.name, "role": token.role, "scopes": token.scopes, "expires_at": expires_at, "revoked_tokens_of_same_name": replaced}),
    )
}

async fn insert_device(tx: &mut WriteTx, device: &Device) -> Result<(), StoreError> {
    let now = device.created_at.unix_timestamp();
    sqlx::query(
        "INSERT INTO devices (id, product_id, serial_number, hardware_id, owner, site, firmware_version, state, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(device.id.to_string())
    .bind(device.product_id.to_string())
    .bind(&device.serial_number)
    .bind(device.hardware_id.clone())
    .bind(device.owner.clone())
    .bind(device.site.clone())
    .bind(device.firmware_version.clone())
    .bind(device.state.as_str())
    .bind(now)
    .bind(now)
    .execute(&mut **tx)
    .await
    .map_err(|e| {
        unique_to_conflict(e, || {
            format!("a device with serial number `{}` (for this product) or this hardware id already exists", device.serial_number)
        })
    })?;
    for tag in &device.tags {
        sqlx::query("INSERT INTO device_tags (device_id, tag) VALUES ($1, $2)")
            .bind(device.id.to_string())
            .bind(tag.as_str())
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
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
