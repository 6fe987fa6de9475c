//! Fresh PostgreSQL databases, one per test or benchmark run, next to a base URL.

use sqlx::Connection;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// Create a database with a fresh name next to `base` (a PostgreSQL URL) and return its URL.
pub async fn create_database(base: &str) -> Result<String, sqlx::Error> {
    sqlx::any::install_default_drivers();
    let name = format!("sigil_t_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::AnyConnection::connect(base).await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await?;
    let _ = conn.close().await;
    let (prefix, _) = base
        .rsplit_once('/')
        .ok_or_else(|| sqlx::Error::Configuration("the URL has no database path".into()))?;
    Ok(format!("{prefix}/{name}"))
}

/// Drop a database made by [`create_database`] (best effort: a leftover is harmless).
pub async fn drop_database(base: &str, url: &str) {
    let Some((_, name)) = url.rsplit_once('/') else {
        return;
    };
    sqlx::any::install_default_drivers();
    if let Ok(mut conn) = sqlx::AnyConnection::connect(base).await {
        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&mut conn)
        .await;
        let _ = conn.close().await;
    }
}

/// A fresh database next to `SIGIL_TEST_POSTGRES_URL`, or `None` to skip. In CI (`CI` set) a
/// missing PostgreSQL is a failure, not a skip.
pub async fn fresh_postgres() -> Option<String> {
    let Ok(base) = std::env::var("SIGIL_TEST_POSTGRES_URL") else {
        if std::env::var_os("CI").is_some() {
            panic!(
                "CI is set but SIGIL_TEST_POSTGRES_URL is not: PostgreSQL tests cannot be skipped in CI"
            );
        }
        eprintln!("SKIPPED: SIGIL_TEST_POSTGRES_URL not set");
        return None;
    };
    Some(
        create_database(&base)
            .await
            .expect("create a test database next to SIGIL_TEST_POSTGRES_URL"),
    )
}

/// Drop a database made by [`fresh_postgres`].
pub async fn drop_postgres(url: &str) {
    if let Ok(base) = std::env::var("SIGIL_TEST_POSTGRES_URL") {
        drop_database(&base, url).await;
    }
}
