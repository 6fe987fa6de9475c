//! Test harness: starts the real Sigil server (real TLS, ephemeral ports) on SQLite or on a fresh
//! PostgreSQL database, in-process or as the real `sigil` binary.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::Connection;
use tempfile::TempDir;

use sigil_server::{ServerConfig, ServerHandle};

pub mod est;
pub mod operators;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// Run an async test body once per backend.
#[macro_export]
macro_rules! both_backends {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::common::Db::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name($crate::common::Db::Postgres).await
            }
        }
    };
}

/// A fresh PostgreSQL database URL next to `SIGIL_TEST_POSTGRES_URL`, or `None` to skip.
/// In CI (`CI` set) a missing PostgreSQL is a failure, not a skip.
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
    sqlx::any::install_default_drivers();
    let name = format!("sigil_t_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::AnyConnection::connect(&base)
        .await
        .expect("connect to SIGIL_TEST_POSTGRES_URL");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create test database");
    let _ = conn.close().await;
    let (prefix, _) = base.rsplit_once('/').expect("database URL has a path");
    let prefix = prefix.to_owned();
    // Drop query string of the base (if any) when replacing the database name.
    Some(format!("{prefix}/{name}"))
}

/// Drop a database made by [`fresh_postgres`] (best effort: a leftover is harmless).
pub async fn drop_postgres(url: &str) {
    let (Ok(base), Some((_, name))) = (
        std::env::var("SIGIL_TEST_POSTGRES_URL"),
        url.rsplit_once('/'),
    ) else {
        return;
    };
    if let Ok(mut conn) = sqlx::AnyConnection::connect(&base).await {
        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&mut conn)
        .await;
        let _ = conn.close().await;
    }
}

pub fn root_client(dir: &Path) -> reqwest::Client {
    let pem = std::fs::read(dir.join("ca/root.crt")).expect("root.crt");
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&pem).expect("root pem")])
        .build()
        .expect("client")
}

pub struct TestServer {
    pub dir: TempDir,
    pub handle: Option<ServerHandle>,
    pub api: String,
    pub pki: String,
    pub pki_addr: SocketAddr,
    pub token: String,
    pub http: reqwest::Client,
    pub db: Db,
    pub database_url: String,
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
        clock: sigil_server::Clock,
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
        let handle = sigil_server::start(config, clock)
            .await
            .expect("server starts");
        let token = std::fs::read_to_string(dir.path().join("data/admin.token"))
            .unwrap()
            .trim()
            .to_owned();
        assert_eq!(handle.new_admin_token.as_deref(), Some(token.as_str()));
        let http = root_client(&dir.path().join("data"));
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
        })
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn store(&self) -> &sigil_store::Store {
        &self.handle.as_ref().unwrap().store
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.api))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        split(r).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.api))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        split(r).await
    }

    pub async fn create_product(&self, name: &str) -> String {
        let (s, p) = self
            .post(
                "/api/v1/products",
                json!({"name": name, "manufacturer": "Acme", "support_end": "2031-12-31"}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{p}");
        p["id"].as_str().unwrap().to_owned()
    }

    pub async fn create_device(&self, product: &str, serial: &str) -> String {
        let (s, d) = self
            .post(
                "/api/v1/devices",
                json!({"product_id": product, "serial_number": serial}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{d}");
        d["id"].as_str().unwrap().to_owned()
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

    pub async fn shutdown(mut self) {
        if let Some(h) = self.handle.take() {
            h.shutdown().await;
        }
        if self.db == Db::Postgres {
            drop_postgres(&self.database_url).await;
        }
    }
}

pub async fn split(r: reqwest::Response) -> (StatusCode, Value) {
    let status = r.status();
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        assert_eq!(
            ct, "application/problem+json",
            "errors are problem+json: {body}"
        );
    }
    (status, body)
}

/// Run `openssl` with `args` in `dir`; panics with its stderr if it fails.
pub fn openssl(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl on PATH");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `openssl req` CSR for a new key made with `newkey_args`; returns the CSR PEM.
pub fn openssl_csr(dir: &Path, name: &str, newkey_args: &[&str]) -> String {
    let key = format!("{name}.key");
    let csr = format!("{name}.csr");
    let mut args = vec!["req", "-new"];
    args.extend_from_slice(newkey_args);
    args.extend_from_slice(&[
        "-nodes",
        "-keyout",
        &key,
        "-subj",
        "/CN=chosen-by-the-device/O=Evil",
        "-out",
        &csr,
    ]);
    openssl(dir, &args);
    std::fs::read_to_string(dir.join(csr)).unwrap()
}

pub fn p256_csr(dir: &Path, name: &str) -> String {
    openssl_csr(
        dir,
        name,
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
    )
}

/// The real `sigil serve` binary in a child process.
pub struct SpawnedServer {
    pub child: Child,
    pub api_addr: SocketAddr,
    pub pki_addr: SocketAddr,
}

impl SpawnedServer {
    pub fn spawn(
        data_dir: &Path,
        database_url: Option<&str>,
        envs: &[(&str, &str)],
    ) -> Result<Self, String> {
        Self::spawn_with(data_dir, database_url, envs, &[])
    }

    /// `sigil serve` with `args` added to the listener and data-directory flags.
    pub fn spawn_with(
        data_dir: &Path,
        database_url: Option<&str>,
        envs: &[(&str, &str)],
        args: &[&str],
    ) -> Result<Self, String> {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sigil"));
        cmd.args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--pki-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(data_dir)
        .args(args)
        .env_remove("SIGIL_CA_PASSPHRASE")
        .env("SIGIL_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        if let Some(url) = database_url {
            cmd.args(["--database-url", url]);
        }
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn sigil");
        let stderr = child.stderr.take().unwrap();
        let mut lines = BufReader::new(stderr).lines();
        let (mut api, mut pki) = (None, None);
        let mut seen = String::new();
        while api.is_none() || pki.is_none() {
            let Some(Ok(line)) = lines.next() else {
                let _ = child.wait();
                return Err(seen);
            };
            seen.push_str(&line);
            seen.push('\n');
            if let Some(rest) = line.strip_prefix("API:  https://") {
                api = rest.split('/').next().and_then(|a| a.parse().ok());
            }
            if let Some(rest) = line.strip_prefix("PKI:  http://") {
                pki = rest.split('/').next().and_then(|a| a.parse().ok());
            }
        }
        // Keep draining stderr so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Ok(Self {
            child,
            api_addr: api.unwrap(),
            pki_addr: pki.unwrap(),
        })
    }

    pub fn api(&self) -> String {
        format!("https://localhost:{}", self.api_addr.port())
    }

    pub fn kill9(mut self) {
        // std's Child::kill sends SIGKILL on Unix.
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for SpawnedServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A CSR (PEM) for a fresh P-256 key made in-process, for tests that need many distinct keys fast.
pub fn fresh_csr_pem() -> String {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    rcgen::CertificateParams::new(Vec::<String>::new())
        .unwrap()
        .serialize_request(&key)
        .unwrap()
        .pem()
        .unwrap()
}

/// Run the real `sigil` binary against `s`, configured as an operator would through the environment.
pub fn sigil(s: &TestServer, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sigil"))
        .args(args)
        .env("SIGIL_SERVER", &s.api)
        .env("SIGIL_TOKEN", &s.token)
        .env("SIGIL_CA_FILE", s.data_dir().join("ca/root.crt"))
        .env("SIGIL_DATA_DIR", "/nonexistent")
        .current_dir(s.dir.path())
        .output()
        .unwrap()
}

/// The command's stdout; panics with its output if it failed.
pub fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub fn json(out: Output) -> Value {
    serde_json::from_str(&ok(out)).unwrap()
}
