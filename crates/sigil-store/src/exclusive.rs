//! One Sigil process per database, until replicas are supported: a second server beside the
//! first would keep its own revoked set, OCSP cache and CRL number, and answer `good` for a
//! certificate the first has revoked.
//!
//! On PostgreSQL the lock is a session advisory lock held on a connection of its own for the
//! process's life (the server releases it when that connection closes, even after `kill -9`).
//! On SQLite the caller locks the database file itself (see [`sqlite_path`]).

use std::path::PathBuf;
use std::time::Duration;

use sqlx::{AnyConnection, Connection, Row};

use crate::StoreError;

/// The advisory lock key: "SIGIL" in ASCII. Advisory locks are per database.
const LOCK_KEY: i64 = 0x53_49_47_49_4C;

/// Held for as long as the process serves the database.
pub struct DatabaseLock {
    // Only held, never used: the Mutex makes the lock shareable between threads.
    _connection: Option<std::sync::Mutex<AnyConnection>>,
}

impl std::fmt::Debug for DatabaseLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DatabaseLock")
    }
}

/// The file of an SQLite URL (`sqlite://path?options`), or `None` for another backend or an
/// in-memory database.
pub fn sqlite_path(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    (!path.is_empty() && path != ":memory:").then(|| PathBuf::from(path))
}

/// Take the database's single-process lock, waiting up to `wait` for a previous holder that
/// just died (PostgreSQL notices a closed connection within moments). SQLite: nothing to do
/// here.
pub async fn lock_database(url: &str, wait: Duration) -> Result<DatabaseLock, StoreError> {
    if !(url.starts_with("postgres:") || url.starts_with("postgresql:")) {
        return Ok(DatabaseLock { _connection: None });
    }
    sqlx::any::install_default_drivers();
    let mut connection = AnyConnection::connect(url).await?;
    let started = std::time::Instant::now();
    loop {
        let row = sqlx::query("SELECT pg_try_advisory_lock($1) AS held")
            .bind(LOCK_KEY)
            .fetch_one(&mut connection)
            .await?;
        if row.try_get::<bool, _>("held")? {
            return Ok(DatabaseLock {
                _connection: Some(std::sync::Mutex::new(connection)),
            });
        }
        if started.elapsed() >= wait {
            return Err(StoreError::Config(
                "another Sigil process is serving this PostgreSQL database (it holds Sigil's advisory lock); run one process per database".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_paths_from_urls() {
        assert_eq!(
            sqlite_path("sqlite:///var/lib/sigil/sigil.db?mode=rwc"),
            Some(PathBuf::from("/var/lib/sigil/sigil.db"))
        );
        assert_eq!(sqlite_path("sqlite:rel.db"), Some(PathBuf::from("rel.db")));
        assert_eq!(sqlite_path("sqlite::memory:"), None);
        assert_eq!(sqlite_path("postgres://h/db"), None);
    }
}
