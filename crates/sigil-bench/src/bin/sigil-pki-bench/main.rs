//! `cargo run --release -p sigil-bench --bin sigil-pki-bench -- [--seconds S] [--only ocsp|est]`
//!
//! Prints a Markdown report of Sigil's lifecycle endpoints under load:
//!
//! - **OCSP**: responses per second and latency from Sigil's responder and from `openssl ocsp`
//!   run as a responder (`-index`) for the same CA and the same revocation set, driven by the same
//!   load generator with the same requests (made by `openssl ocsp -reqout`). Answers are checked:
//!   every response must be a successful OCSPResponse, and before the clock starts one good and
//!   one revoked answer from each server is verified with `openssl ocsp -respin`.
//! - **EST**: `simpleenroll` enrolments per second end to end, each on a fresh TLS connection
//!   with a one-time token, and where the time of one enrolment goes.
//!
//! The load generator is a minimal HTTP/1.1 client (keep-alive when the server allows it), so
//! that the client's own cost stays small next to the servers': client and servers share the
//! machine's cores.

mod cpu;
mod est;
mod http;
mod ocsp;
mod responder;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use clap::Parser;
use serde_json::{Value, json};

use sigil_testkit::AdminClient;

use est::est_bench;
use ocsp::ocsp_bench;

#[derive(Parser)]
struct Args {
    /// Seconds per measurement.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Run only this part: `ocsp` or `est`.
    #[arg(long)]
    only: Option<String>,
    /// Certificates in the OCSP set (a tenth of them revoked).
    #[arg(long, default_value_t = 1000)]
    certificates: usize,
    /// Concurrent OCSP connections.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Devices registered (each with a one-time token) for the EST runs.
    #[arg(long, default_value_t = 10000)]
    est_devices: usize,
    /// Database for the server (default: SQLite in a temporary directory).
    #[arg(long)]
    database_url: Option<String>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("SIGIL_LOG"))
        .with_writer(std::io::stderr)
        .init();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // The server gets its own runtime (as in its own process); the load generator another.
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores)
        .thread_name("sigil-server")
        .enable_all()
        .build()?;
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores)
        .thread_name("load")
        .enable_all()
        .build()?;
    let work = tempfile::tempdir()?;
    let data = work.path().join("data");
    let mut config = sigil_server::ServerConfig::new(&data);
    config.database_url = Some(
        args.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", work.path().join("sigil.db").display())),
    );
    config.listen = "127.0.0.1:0".parse()?;
    config.pki_listen = "127.0.0.1:0".parse()?;
    let server = server_rt.block_on(sigil_server::start(config, sigil_server::system_clock()))?;
    let token = server
        .new_admin_token
        .clone()
        .context("a fresh server writes an admin token")?;
    let sigil = Sigil {
        admin: AdminClient::new(&data, server.api_addr.port(), &token)
            .map_err(anyhow::Error::msg)?,
        api_addr: server.api_addr,
        pki_addr: server.pki_addr,
        data: data.clone(),
    };
    let secs = Duration::from_secs_f64(args.seconds);
    println!("## Run\n");
    println!(
        "- cores: {cores} (server and load generator share them), {:.1} s per measurement",
        args.seconds
    );
    println!(
        "- database: {}\n",
        if args.database_url.is_some() {
            "as given"
        } else {
            "SQLite (the embedded default)"
        }
    );
    let wants = |part: &str| args.only.as_deref().is_none_or(|o| o == part);
    if wants("ocsp") {
        client_rt.block_on(ocsp_bench(&sigil, work.path(), &args, secs))?;
    }
    if wants("est") {
        client_rt.block_on(est_bench(&sigil, secs, args.est_devices))?;
    }
    server_rt.block_on(server.shutdown());
    Ok(())
}

struct Sigil {
    admin: AdminClient,
    api_addr: std::net::SocketAddr,
    pki_addr: std::net::SocketAddr,
    data: PathBuf,
}

impl Sigil {
    /// The issuing CA's key, decrypted with the development passphrase file (benchmark only:
    /// openssl and the library rows need it in the clear).
    fn issuing_key(&self) -> Result<rcgen::KeyPair> {
        let passphrase = std::fs::read_to_string(self.data.join("ca-passphrase"))?;
        let sealed = std::fs::read_to_string(self.data.join("ca/issuing.key"))?;
        Ok(sigil_ca::open_private_key(
            &sealed,
            passphrase.trim().as_bytes(),
        )?)
    }

    async fn get(&self, path: &str) -> Result<Value> {
        self.admin.try_get(path).await.map_err(anyhow::Error::msg)
    }

    async fn post(&self, path: &str, body: Value) -> Result<Value> {
        self.admin
            .try_post(path, body)
            .await
            .map_err(anyhow::Error::msg)
    }

    /// Register `n` devices of a new product; their ids.
    async fn devices(&self, n: usize, tag: &str) -> Result<Vec<String>> {
        let product = self
            .post(
                "/api/v1/products",
                json!({"name": format!("bench-{tag}"), "manufacturer": "M", "support_end": "2035-01-01"}),
            )
            .await?;
        let mut ids = Vec::with_capacity(n);
        for i in 0..n {
            let d = self
                .post(
                    "/api/v1/devices",
                    json!({"product_id": product["id"], "serial_number": format!("{tag}-{i}")}),
                )
                .await?;
            ids.push(d["id"].as_str().context("device id")?.to_owned());
        }
        Ok(ids)
    }
}

/// A fresh P-256 key's CSR, DER.
fn csr_der() -> Result<Vec<u8>> {
    Ok(sigil_testkit::csr::fresh_csr_der())
}

fn openssl(dir: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .context("running openssl")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(out.status.success(), "openssl {args:?}: {text}");
    Ok(text)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    sorted
        .get(((sorted.len() as f64 * p) as usize).min(sorted.len().saturating_sub(1)))
        .map_or(0.0, |d| d.as_secs_f64() * 1e3)
}
