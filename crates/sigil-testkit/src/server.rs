//! The real server in-process: real TLS on ephemeral ports, SQLite or a fresh PostgreSQL
//! database, the bootstrap admin token read back from the data directory.

use std::net::SocketAddr;
use std::path::PathBuf;

use reqwest::StatusCode;
use serde_json::Value;
use tempfile::TempDir;

use sigil_server::{Clock, ServerConfig, ServerHandle};

use crate::client::{AdminClient, root_client};
use crate::postgres::{Db, drop_postgres, fresh_postgres};

pub struct TestServer {
    pub dir: TempDir,
    pub handle: Option<ServerHandle>,
    /// `https://localhost:<api port>`
    pub api: String,
    /// `http://<pki address>`
    pub pki: String,
    pub pki_addr: SocketAddr,
    pub token: String,
    /// Trusts only this server's root CA.
    pub http: reqwest::Client,
    pub db: Db,
    pub database_url: String,
    /// The configuration it was started with (ports as bound), for restarts.
    config: ServerConfig,
    clock: Clock,
}

impl TestServer {
    /// Start in-process. `None` when the backend is unavailable (skipped locally).
    pub async fn start(db: Db) -> Option<Self> {
        Self::start_with(db, |_| {}).await
    }

    /// Start in-process with `configure` applied to the configuration first.
    pub async fn start_with(db: Db, configure: impl FnOnce(&mut ServerConfig)) -> Option<Self> {
        Self::start_with_clock(db, configure, sigil_server::system_clock()).await
    }

    /// Start in-process on `clock` (for tests that move time on).
    pub async fn start_with_clock(
        db: Db,
        configure: impl FnOnce(&mut ServerConfig),
        clock: Clock,
    ) -> Option<Self> {
        let dir = tempfile::tempdir().expect("tempdir");
        let database_url = match db {
            Db::Sqlite => format!("sqlite://{}", dir.path().join("sigil.db").display()),
            Db::Postgres => fresh_postgres().await?,
        };
        let mut config = ServerConfig::new(dir.path().join("data"));
        config.database_url = Some(database_url.clone());
        config.listen = "127.0.0.1:0".parse().unwrap();
        config.pki_listen = "127.0.0.1:0".parse().unwrap();
        // Tests send many bad requests from one address on purpose; the limit of failed
        // authentications has a test of its own (hardening_access.rs), which lowers this.
        config.failures_per_window = 100_000;
        configure(&mut config);
        let handle = sigil_server::start(config.clone(), clock.clone())
            .await
            .expect("server starts");
        let token = std::fs::read_to_string(dir.path().join("data/admin.token"))
            .unwrap()
            .trim()
            .to_owned();
        assert_eq!(handle.new_admin_token.as_deref(), Some(token.as_str()));
        let http = root_client(&dir.path().join("data")).unwrap();
        // A restart keeps the ports.
        config.listen = handle.api_addr;
        config.pki_listen = handle.pki_addr;
        Some(Self {
            api: format!("https://localhost:{}", handle.api_addr.port()),
            pki: format!("http://{}", handle.pki_addr),
            pki_addr: handle.pki_addr,
            handle: Some(handle),
            dir,
            token,
            http,
            db,
            database_url,
            config,
            clock,
        })
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn handle(&self) -> &ServerHandle {
        self.handle.as_ref().expect("the server is running")
    }

    pub fn store(&self) -> &sigil_store::Store {
        &self.handle().store
    }

    /// The administrator's client (the bootstrap token).
    pub fn admin(&self) -> AdminClient {
        AdminClient {
            http: self.http.clone(),
            api: self.api.clone(),
            token: self.token.clone(),
        }
    }

    /// `sha256:<hex>` of the root CA certificate: what a device pins.
    pub fn root_fingerprint(&self) -> String {
        let pem = std::fs::read_to_string(self.data_dir().join("ca/root.crt")).unwrap();
        let der = pem::parse(pem).unwrap().into_contents();
        format!("sha256:{}", hex::encode(sigil_ca::sha256(&der)))
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.admin().get(path).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.admin().post(path, body).await
    }

    pub async fn create_product(&self, name: &str) -> String {
        self.admin().create_product(name).await.unwrap()
    }

    pub async fn create_device(&self, product: &str, serial: &str) -> String {
        self.admin().create_device(product, serial).await.unwrap()
    }

    /// Rows in `table`, read directly from the database.
    pub async fn count(&self, table: &str) -> i64 {
        use sqlx::Row;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) AS n FROM {table}"
        )))
        .fetch_one(self.store().pool())
        .await
        .unwrap();
        row.try_get::<i64, _>("n").unwrap()
    }

    /// Stop the server (the data and database stay).
    pub async fn stop(&mut self) {
        if let Some(h) = self.handle.take() {
            h.shutdown().await;
        }
    }

    /// Start again on the same data directory, database and ports.
    pub async fn restart(&mut self) {
        self.stop().await;
        let handle = sigil_server::start(self.config.clone(), self.clock.clone())
            .await
            .expect("server restarts");
        self.handle = Some(handle);
    }

    pub async fn shutdown(mut self) {
        self.stop().await;
        if self.db == Db::Postgres {
            drop_postgres(&self.database_url).await;
        }
    }
}
