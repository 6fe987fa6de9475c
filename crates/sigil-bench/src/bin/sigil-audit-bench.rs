//! `cargo run --release -p sigil-bench --bin sigil-audit-bench -- [--sizes 1000000,10000000]`
//!
//! Prints a Markdown report on the audit log: durable appends per second (one entry per
//! transaction, and batched), against the physical limits (fsync rate of the disk, SHA-256 rate);
//! inclusion and consistency proof generation time as the log grows to the requested sizes;
//! and storage bytes per entry. SQLite always; PostgreSQL when a URL is given.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use serde_json::json;
use sqlx::Row;

use sigil_audit::{Actor, AuditEvent, Outcome, tree};
use sigil_store::Store;

#[derive(Parser)]
struct Args {
    /// Seconds per rate measurement.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Log sizes at which to measure proof generation (the log is grown to each in turn).
    #[arg(long, value_delimiter = ',', default_value = "1000000,10000000")]
    sizes: Vec<u64>,
    /// Log sizes for PostgreSQL (growing its log is slower).
    #[arg(long, value_delimiter = ',', default_value = "1000000")]
    pg_sizes: Vec<u64>,
    /// PostgreSQL server URL (a fresh database is created next to it). Default: SIGIL_TEST_POSTGRES_URL.
    #[arg(long, env = "SIGIL_TEST_POSTGRES_URL")]
    postgres: Option<String>,
    /// Proofs generated per measurement.
    #[arg(long, default_value_t = 2000)]
    proofs: usize,
    /// Directory for the SQLite database (default: a temporary directory).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(args))
}

async fn run(args: Args) -> Result<()> {
    let secs = Duration::from_secs_f64(args.seconds);
    let tmp = tempfile::tempdir()?;
    let dir = args.dir.clone().unwrap_or_else(|| tmp.path().to_owned());

    println!("## Physical limits\n");
    let fsyncs = fsync_rate(&dir, secs)?;
    let (hashes, entry_len) = sha256_rate(secs);
    println!("| operation | per second |\n|---|---:|");
    println!("| write 512 B + fdatasync, same disk | {fsyncs:.0} |");
    println!("| leaf hash, SHA-256 of a {entry_len}-byte entry (1 core) | {hashes:.0} |\n");

    let sqlite_url = format!("sqlite://{}", dir.join("audit-bench.db").display());
    let mut backends = vec![("sqlite", sqlite_url, args.sizes.clone())];
    if let Some(base) = &args.postgres {
        backends.push(("postgres", fresh_pg(base).await?, args.pg_sizes.clone()));
    }

    println!("## Durable appends per second\n");
    println!(
        "| backend | entries per transaction | concurrent writers | entries/s | p50 ms per commit | p99 ms per commit |\n|---|---:|---:|---:|---:|---:|"
    );
    let mut stores = Vec::new();
    for (name, url, sizes) in backends {
        let store = Store::open(&url).await?;
        for (batch, writers) in [(1, 1), (1, 16), (10, 1), (100, 1), (1000, 1)] {
            let (rate, p50, p99) = append_rate(&store, batch, writers, secs).await?;
            println!("| {name} | {batch} | {writers} | {rate:.0} | {p50:.2} | {p99:.2} |");
        }
        stores.push((name, url, store, sizes));
    }

    println!("\n## Proof generation\n");
    println!(
        "Each proof: read its O(log n) stored hashes by primary key, combine them. Times are per proof, sequential, random positions.\n"
    );
    println!(
        "| backend | log size | hashes per inclusion proof | inclusion p50 µs | inclusion p99 µs | consistency p50 µs | consistency p99 µs | root µs | grow time |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    let mut storage = Vec::new();
    for (name, url, store, sizes) in &stores {
        for &size in sizes {
            let grow = grow_to(store, size).await?;
            let size = store.audit_size().await?;
            let m = proof_times(store, size, args.proofs).await?;
            println!(
                "| {name} | {size} | {:.1} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} s |",
                m.hashes_per_proof,
                m.inclusion.0,
                m.inclusion.1,
                m.consistency.0,
                m.consistency.1,
                m.root_us,
                grow.as_secs_f64()
            );
            storage.push((*name, size, bytes_used(store, url).await?));
        }
    }

    println!("\n## Storage\n");
    println!(
        "| backend | entries | bytes used by the log | bytes per entry |\n|---|---:|---:|---:|"
    );
    for (name, size, bytes) in storage {
        let entries = size;
        println!(
            "| {name} | {entries} | {bytes} | {:.0} |",
            bytes as f64 / entries as f64
        );
    }
    println!(
        "\nA typical entry is {entry_len} bytes of canonical JSON; its leaf and interior hashes are ~2 x 32 bytes."
    );
    for (name, url, store, _) in stores {
        store.close().await;
        if name == "postgres" {
            drop_pg(args.postgres.as_deref().unwrap_or_default(), &url).await;
        }
    }
    Ok(())
}

/// A realistic entry: a certificate issued to a device by an operator token.
fn event(n: u64) -> AuditEvent {
    AuditEvent::new(
        time::OffsetDateTime::now_utc(),
        Actor::operator("0b5c1d2e-7f1a-4c3b-9e8d-123456789abc"),
        "certificate.issued",
        format!("certificate:{n:040x}"),
        Outcome::Success,
        json!({
            "device": "3f2a9c1e-5b7d-4e8f-a1b2-c3d4e5f60718",
            "profile": "device",
            "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
            "spki_sha256": "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752",
            "not_before": 1_790_000_000u64,
            "not_after": 1_797_776_000u64,
        }),
    )
}

fn fsync_rate(dir: &std::path::Path, secs: Duration) -> Result<f64> {
    let path = dir.join("fsync-probe");
    let mut f = std::fs::File::create(&path)?;
    let block = [0u8; 512];
    let t = Instant::now();
    let mut n = 0u64;
    while t.elapsed() < secs {
        f.write_all(&block)?;
        f.sync_data()?;
        n += 1;
    }
    std::fs::remove_file(&path)?;
    Ok(n as f64 / t.elapsed().as_secs_f64())
}

fn sha256_rate(secs: Duration) -> (f64, usize) {
    let text = event(1)
        .into_entry(123_456)
        .to_canonical()
        .unwrap_or_default();
    let t = Instant::now();
    let mut n = 0u64;
    while t.elapsed() < secs {
        std::hint::black_box(tree::leaf_hash(std::hint::black_box(&text)));
        n += 1;
    }
    (n as f64 / t.elapsed().as_secs_f64(), text.len())
}

async fn append_rate(
    store: &Store,
    batch: usize,
    writers: usize,
    secs: Duration,
) -> Result<(f64, f64, f64)> {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..writers {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut n = 0u64;
            while start.elapsed() < secs {
                let events = (0..batch as u64).map(|i| event(n + i)).collect();
                let t = Instant::now();
                store.append_audit(events).await?;
                lat.push(t.elapsed());
                n += batch as u64;
            }
            anyhow::Ok((n, lat))
        }));
    }
    let mut total = 0;
    let mut lat = Vec::new();
    for t in tasks {
        let (n, l) = t.await??;
        total += n;
        lat.extend(l);
    }
    let elapsed = start.elapsed().as_secs_f64();
    lat.sort();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    Ok((total as f64 / elapsed, pct(0.5), pct(0.99)))
}

/// Append in batches of 1,000 until the log holds `size` entries.
async fn grow_to(store: &Store, size: u64) -> Result<Duration> {
    let t = Instant::now();
    let mut have = store.audit_size().await?;
    let mut last_report = Instant::now();
    while have < size {
        let n = (size - have).min(1000);
        store
            .append_audit((0..n).map(|i| event(have + i)).collect())
            .await?;
        have += n;
        if last_report.elapsed() > Duration::from_secs(30) {
            eprintln!("  growing log: {have} / {size}");
            last_report = Instant::now();
        }
    }
    Ok(t.elapsed())
}

struct ProofTimes {
    hashes_per_proof: f64,
    inclusion: (f64, f64),
    consistency: (f64, f64),
    root_us: f64,
}

async fn proof_times(store: &Store, size: u64, count: usize) -> Result<ProofTimes> {
    // A fixed-seed linear congruential sequence: reproducible random positions without a
    // dependency.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = |bound: u64| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 11) % bound
    };
    let root = store.audit_root(size).await?;
    let t = Instant::now();
    for _ in 0..100 {
        store.audit_root(size).await?;
    }
    let root_us = t.elapsed().as_secs_f64() * 1e6 / 100.0;

    let mut inclusion = Vec::with_capacity(count);
    let mut hashes = 0usize;
    for _ in 0..count {
        let seq = next(size);
        let t = Instant::now();
        let (leaf, proof) = store.audit_inclusion_proof(seq, size).await?;
        inclusion.push(t.elapsed());
        hashes += proof.len();
        // Every measured proof is a correct one.
        tree::verify_inclusion(&proof, size, root, seq, leaf).context("inclusion proof")?;
    }
    let mut consistency = Vec::with_capacity(count);
    for _ in 0..count {
        let from = 1 + next(size - 1);
        let t = Instant::now();
        let proof = store.audit_consistency_proof(from, size).await?;
        consistency.push(t.elapsed());
        let old = store.audit_root(from).await?;
        tree::verify_consistency(&proof, from, old, size, root).context("consistency proof")?;
    }
    Ok(ProofTimes {
        hashes_per_proof: hashes as f64 / count as f64,
        inclusion: percentiles(inclusion),
        consistency: percentiles(consistency),
        root_us,
    })
}

fn percentiles(mut lat: Vec<Duration>) -> (f64, f64) {
    lat.sort();
    let at = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1e6)
    };
    (at(0.5), at(0.99))
}

/// Bytes the audit tables occupy, indexes included.
async fn bytes_used(store: &Store, url: &str) -> Result<u64> {
    let pool = store.pool();
    if url.starts_with("sqlite:") {
        // Fold the WAL into the main file, then count the pages of the audit tables and their
        // indexes (the dbstat virtual table is not always compiled in; page counts are).
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(pool)
            .await?;
        let page_size: i64 = sqlx::query("PRAGMA page_size")
            .fetch_one(pool)
            .await?
            .try_get(0)?;
        let pages: i64 = sqlx::query("PRAGMA page_count")
            .fetch_one(pool)
            .await?
            .try_get(0)?;
        let free: i64 = sqlx::query("PRAGMA freelist_count")
            .fetch_one(pool)
            .await?
            .try_get(0)?;
        // The bench database holds nothing but the audit log (and empty inventory tables).
        Ok(((pages - free) * page_size) as u64)
    } else {
        let bytes: i64 = sqlx::query(
            "SELECT (pg_total_relation_size('audit_entries') + pg_total_relation_size('audit_hashes') \
             + pg_total_relation_size('audit_head') + pg_total_relation_size('audit_checkpoints'))::BIGINT AS b",
        )
        .fetch_one(pool)
        .await?
        .try_get("b")?;
        Ok(bytes as u64)
    }
}

async fn fresh_pg(base: &str) -> Result<String> {
    Ok(sigil_testkit::postgres::create_database(base).await?)
}

async fn drop_pg(base: &str, url: &str) {
    sigil_testkit::postgres::drop_database(base, url).await;
}
