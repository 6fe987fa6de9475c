//! `cargo run --release -p sigil-bench --bin sigil-update-bench -- [--seconds S] [--clients C]`
//!
//! 1. Metadata signing cost per release: a product with N targets (10^3, 10^4, 10^5) gets one
//!    more release; what the server does (the targets document of every release, canonical
//!    JSON, Ed25519, then snapshot and timestamp) side by side with the raw limit (one
//!    Ed25519 signature over the same canonical bytes) and with python-tuf's repository code
//!    building and signing the same document (`scripts/tuf_sign_bench.py`).
//! 2. Metadata requests served per second: C clients fetching `timestamp.json` over HTTPS
//!    (keep-alive) from the real server, beside the same clients on `/healthz` (the HTTP
//!    stack's own limit), one after the other in one run.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use serde_json::json;

use sigil_testkit::{Db, TestServer};
use sigil_update::tuf::repository::{self, RoleAssignment, target_file};
use sigil_update::tuf::{Ed25519Signer, Role, Root, Signer, TargetFile, canonical_json};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Runs per size for the signing comparison (the median is reported).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
}

fn targets_of(n: usize) -> BTreeMap<String, TargetFile> {
    (0..n)
        .map(|i| {
            let name = format!("{i}.0.0/fw.bin");
            let custom = json!({"release": format!("0190aaaa-0000-7000-8000-{i:012}"), "version": format!("{i}.0.0"), "security": false});
            (name, target_file(&format!("{i:064x}"), 1_000_000 + i as u64, custom))
        })
        .collect()
}

/// One release's metadata work on the server (`sign_checked`, as `Updates` calls it): the
/// targets document signed and checked against the root, then snapshot and timestamp; the
/// bytes of the targets file.
fn sign_release(
    targets: &BTreeMap<String, TargetFile>,
    keys: &[Ed25519Signer; 3],
    root: &Root,
) -> Result<usize> {
    let expires = time::OffsetDateTime::now_utc() + time::Duration::days(90);
    let doc = repository::targets(2, expires, targets.clone());
    let signed = repository::sign_checked(root, &doc, &[&keys[0] as &dyn Signer])?;
    let snapshot = repository::snapshot(2, expires, 2, &signed);
    let snapshot_bytes = repository::sign_checked(root, &snapshot, &[&keys[1] as &dyn Signer])?;
    let timestamp = repository::timestamp(2, expires, 2, &snapshot_bytes);
    repository::sign_checked(root, &timestamp, &[&keys[2] as &dyn Signer])?;
    Ok(signed.len())
}

/// A root assigning `keys` to targets, snapshot and timestamp (and `root_key` to root).
fn root_for(keys: &[Ed25519Signer; 3], root_key: &Ed25519Signer) -> Result<Root> {
    let expires = time::OffsetDateTime::now_utc() + time::Duration::days(365);
    let roles = [
        (Role::Root, root_key),
        (Role::Targets, &keys[0]),
        (Role::Snapshot, &keys[1]),
        (Role::Timestamp, &keys[2]),
    ];
    let assignments: Vec<RoleAssignment<'_>> = roles
        .iter()
        .map(|(role, key)| RoleAssignment {
            role: *role,
            keys: vec![key.public_key()],
            threshold: 1,
        })
        .collect();
    Ok(repository::root(1, expires, &assignments)?)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn signing(rounds: usize) -> Result<()> {
    let keys = [
        Ed25519Signer::generate()?.0,
        Ed25519Signer::generate()?.0,
        Ed25519Signer::generate()?.0,
    ];
    let root = root_for(&keys, &Ed25519Signer::generate()?.0)?;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/tuf_sign_bench.py");
    println!(
        "| targets | Sigil ms | raw Ed25519 over the canonical bytes ms | python-tuf ms | targets.json bytes | Sigil / raw | python-tuf / Sigil |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for n in [1_000usize, 10_000, 100_000] {
        let targets = targets_of(n);
        let mut ours = Vec::new();
        let mut size = 0;
        for _ in 0..rounds {
            let started = Instant::now();
            size = sign_release(&targets, &keys, &root)?;
            ours.push(started.elapsed().as_secs_f64());
        }
        let canonical = canonical_json(&repository::targets(
            2,
            time::OffsetDateTime::now_utc(),
            targets.clone(),
        ));
        let mut raw = Vec::new();
        for _ in 0..rounds {
            let started = Instant::now();
            keys[0].sign(&canonical)?;
            raw.push(started.elapsed().as_secs_f64());
        }
        let out = Command::new("python3")
            .arg(script)
            .arg(n.to_string())
            .arg(rounds.to_string())
            .output()
            .context("python3 with tuf")?;
        let text = String::from_utf8_lossy(&out.stdout);
        let python: f64 = text
            .split_whitespace()
            .next()
            .and_then(|t| t.parse().ok())
            .unwrap_or(f64::NAN);
        let (ours, raw) = (median(ours), median(raw));
        println!(
            "| {n} | {:.1} | {:.2} | {:.1} | {size} | {:.0}x | {:.1}x |",
            ours * 1e3,
            raw * 1e3,
            python * 1e3,
            ours / raw,
            python / ours
        );
    }
    Ok(())
}

async fn hammer(client: &reqwest::Client, url: &str, clients: usize, secs: f64) -> Result<f64> {
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (client, url, done) = (client.clone(), url.to_owned(), done.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let r = client.get(&url).send().await?;
                anyhow::ensure!(r.status().is_success(), "{url}: {}", r.status());
                r.bytes().await?;
                done.fetch_add(1, Ordering::Relaxed);
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / secs)
}

async fn serving(clients: usize, secs: f64) -> Result<()> {
    let s = TestServer::start(Db::Sqlite).await.context("server")?;
    let product = s.create_product("Bench").await;
    let r = s
        .http
        .post(format!("{}/api/v1/artefacts", s.api))
        .bearer_auth(&s.token)
        .header("content-type", "application/octet-stream")
        .body(vec![7u8; 4096])
        .send()
        .await?;
    let sha = r.json::<serde_json::Value>().await?["sha256"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let (st, body) = s
        .post(
            &format!("/api/v1/products/{product}/releases"),
            json!({"version": "1.0.0", "artefact_sha256": sha, "file_name": "fw.bin"}),
        )
        .await;
    anyhow::ensure!(st == 201, "release: {body}");
    let timestamp = hammer(
        &s.http,
        &format!("{}/tuf/{product}/metadata/timestamp.json", s.api),
        clients,
        secs,
    )
    .await?;
    let health = hammer(&s.http, &format!("{}/healthz", s.api), clients, secs).await?;
    println!("| {clients} clients | timestamp.json | /healthz | ratio |");
    println!("|---|---:|---:|---:|");
    println!(
        "| requests/s | {timestamp:.0} | {health:.0} | {:.2} |",
        timestamp / health
    );
    s.shutdown().await;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    signing(args.rounds)?;
    println!();
    serving(args.clients, args.seconds).await
}
