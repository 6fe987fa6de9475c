//! `cargo run --release -p sigil-bench --bin sigil-compliance-bench -- [--devices N] [--events E]`
//!
//! The compliance engine over a fleet of N devices (default 10^6) in the embedded SQLite store:
//!
//! 1. the pure evaluation of all twelve device checks over the fleet in memory (the CPU floor);
//! 2. reading the fleet's compliance facts from SQLite, without evaluating (the I/O floor);
//! 3. a full evaluation (`compliance_rebuild`: read, evaluate, index), as the periodic run does;
//! 4. incremental re-evaluation after one event (a posture report that flips a check), timed
//!    from the commit to the refreshed result: the refresh alone (follower off), and end to end
//!    with the follower that wakes on the commit.
//!
//! The fleet is written straight into the tables with SQL (each device with one certificate
//! row, its key, and a posture report; certificate DER is a placeholder because the key
//! algorithm column is what evaluation reads): generating 10^6 real enrolments would take
//! hours and measure issuance, not compliance. 1 % of devices have an expired certificate and 2 %
//! a default password, so failures are listed too.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use sqlx::Executor;

use sigil_compliance::device::{
    self, CertificateFacts, DeviceFacts, FleetFacts, KeyOrigin, KeyType, ProductFacts,
};
use sigil_domain::{DeviceId, Posture};
use sigil_server::ServerConfig;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 1_000_000)]
    devices: u64,
    /// Events for the incremental measurements.
    #[arg(long, default_value_t = 1000)]
    events: usize,
    /// Build the fleet in this (empty or absent) directory and keep it, instead of a temporary one.
    #[arg(long)]
    keep: Option<std::path::PathBuf>,
    /// Only time full evaluations of the fleet kept in this directory (for profiling).
    #[arg(long)]
    full_only: Option<std::path::PathBuf>,
}

const DAY: i64 = 86_400;
/// Index of `device.no-default-password` in `DEVICE_CHECKS`.
const PASSWORD_CHECK: usize = 5;

fn device_id(i: u64) -> String {
    format!("0190b000-0000-7000-8000-{i:012x}")
}

fn posture(default_password: bool) -> Result<Posture> {
    Ok(serde_json::from_value(serde_json::json!({
        "firmware_version": "2.0.0", "secure_boot": true, "default_password": default_password,
        "listening_services": [{"protocol": "tcp", "port": 8883}], "debug_interfaces": [],
        "sbom_ref": "sha256:00"
    }))?)
}

/// Write the fleet with set-based SQL (a recursive sequence), one table at a time.
async fn populate(url: &str, n: u64, now: i64) -> Result<()> {
    let store = sigil_store::Store::open(url).await?;
    let pool = store.pool();
    let product = "0190b000-0000-7000-8000-aaaaaaaaaaaa";
    sqlx::query("INSERT INTO products (id, name, manufacturer, support_end, created_at) VALUES ($1, 'Bench gateway', 'Sigil', '2031-12-31', $2)")
        .bind(product)
        .bind(now)
        .execute(pool)
        .await?;
    sqlx::query("INSERT INTO product_declarations (product_id, current_firmware, allowed_services, sboms, updated_at) VALUES ($1, '[\"2.0.0\"]', '[\"tcp/8883\"]', '{}', $2)")
        .bind(product)
        .bind(now)
        .execute(pool)
        .await?;
    let seq = format!(
        "WITH RECURSIVE seq(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM seq WHERE i < {}) ",
        n - 1
    );
    let statements = [
        format!(
            "{seq}INSERT INTO devices (id, product_id, serial_number, state, created_at, updated_at) \
             SELECT printf('0190b000-0000-7000-8000-%012x', i), '{product}', 'SN-' || i, 'active', {now}, {now} FROM seq"
        ),
        format!(
            "{seq}INSERT INTO device_keys (spki_sha256, device_id, bound_at) \
             SELECT printf('%064x', i), printf('0190b000-0000-7000-8000-%012x', i), {now} FROM seq"
        ),
        format!(
            "{seq}INSERT INTO certificates (serial, device_id, profile, not_before, not_after, sha256, spki_sha256, status, der, issued_at, key_algorithm) \
             SELECT printf('%040x', i + 1), printf('0190b000-0000-7000-8000-%012x', i), 'device', {nb}, \
             CASE WHEN i % 100 = 7 THEN {expired} ELSE {na} END, printf('c%063x', i), printf('%064x', i), 'active', x'00', {nb}, 'ECDSA P-256' FROM seq",
            nb = now - DAY,
            na = now + 364 * DAY,
            expired = now - 1,
        ),
        format!(
            "{seq}INSERT INTO posture_reports (id, device_id, received_at, report) \
             SELECT printf('0190b000-0000-7000-9000-%012x', i), printf('0190b000-0000-7000-8000-%012x', i), {at}, \
             '{{\"firmware_version\":\"2.0.0\",\"secure_boot\":true,\"default_password\":' || \
             CASE WHEN i % 50 = 3 THEN 'true' ELSE 'false' END || \
             ',\"listening_services\":[{{\"protocol\":\"tcp\",\"port\":8883}}],\"debug_interfaces\":[],\"sbom_ref\":\"sha256:00\"}}' FROM seq",
            at = now - 3600,
        ),
    ];
    for sql in statements {
        pool.execute(sqlx::AssertSqlSafe(sql))
            .await
            .context("populating")?;
    }
    pool.execute("ANALYZE").await?;
    store.close().await;
    Ok(())
}

/// The pure evaluation over an in-memory fleet shaped like the database one.
fn pure(n: u64, now: i64) -> Result<(Duration, [u64; 4])> {
    let good = posture(false)?;
    let weak = posture(true)?;
    let mut fleet = FleetFacts::default();
    let devices: Vec<(DeviceId, Vec<CertificateFacts>, bool)> = (0..n)
        .map(|i| {
            let id: DeviceId = device_id(i)
                .parse()
                .unwrap_or_else(|_| DeviceId::generate());
            let spki = format!("{i:064x}");
            fleet.add_key(&spki, id, KeyOrigin::Sigil);
            let cert = CertificateFacts {
                serial: format!("{:040x}", i + 1),
                not_before: now - DAY,
                not_after: if i % 100 == 7 {
                    now - 1
                } else {
                    now + 364 * DAY
                },
                renew_after: now + 300 * DAY,
                revoked_at: None,
                key: KeyType::EcdsaP256,
                spki_sha256: spki,
            };
            (id, vec![cert], i % 50 == 3)
        })
        .collect();
    let product = ProductFacts {
        id: "bench".into(),
        support_end: Some(now + 1000 * DAY),
        current_firmware: Some(vec!["2.0.0".into()]),
        allowed_services: Some(vec!["tcp/8883".into()]),
        sboms: Default::default(),
        update_channel: None,
        vulnerabilities: None,
        disclosure: None,
        // Releases through Sigil, a security one among them: the update checks do their work.
        releases: Some(sigil_compliance::device::ReleaseFacts::new(
            sigil_update::VersionScheme::Semver,
            [("1.0.0", false), ("1.0.1", true), ("2.0.0", false)].map(|(v, security)| {
                let sha = format!("{:064x}", v.len());
                (
                    v.to_owned(),
                    security,
                    now - 10 * DAY,
                    format!("{v}/fw.bin"),
                    sha,
                )
            }),
        )),
        remediation_days: Some(30),
    };
    let started = Instant::now();
    let mut tally = [0u64; 4];
    for (id, certs, default_password) in &devices {
        let facts = DeviceFacts {
            id: *id,
            state: "active",
            certificates: certs,
            posture: Some((
                "r",
                now - 3600,
                if *default_password { &weak } else { &good },
            )),
            revoked_certificate_uses: &[],
            manufacturer_keys: &[],
            metrics_reported_at: Some(now - 30),
        };
        for s in device::device_statuses(&facts, &product, &fleet, now) {
            tally[s as usize] += 1;
        }
    }
    Ok((started.elapsed(), tally))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

fn summary(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    println!(
        "| {name} | {} | {:.3} | {:.3} | {:.3} | {:.3} |",
        samples.len(),
        percentile(&samples, 0.5).as_secs_f64() * 1e3,
        percentile(&samples, 0.95).as_secs_f64() * 1e3,
        percentile(&samples, 0.99).as_secs_f64() * 1e3,
        samples.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
}

async fn server(dir: &Path, url: &str, follow: bool) -> Result<sigil_server::ServerHandle> {
    let mut config = ServerConfig::new(dir.join("data"));
    config.database_url = Some(url.to_owned());
    config.listen = "127.0.0.1:0".parse()?;
    config.pki_listen = "127.0.0.1:0".parse()?;
    config.compliance_interval = None;
    config.follow_compliance = follow;
    Ok(sigil_server::start(config, sigil_server::system_clock()).await?)
}

/// Record a posture report flipping device `i`'s default-password result; the status the
/// check should then have.
async fn flip(handle: &sigil_server::ServerHandle, i: u64, round: usize) -> Result<(DeviceId, u8)> {
    let id: DeviceId = device_id(i).parse()?;
    // Devices with i % 50 == 3 start with a default password; each round flips it.
    let default_password = (i % 50 == 3) == (round % 2 == 1);
    handle
        .store
        .record_posture(
            &sigil_audit::Actor::device(&id.to_string()),
            id,
            &posture(default_password)?,
            time::OffsetDateTime::now_utc(),
        )
        .await?;
    let expected = if default_password {
        sigil_compliance::Status::Fail
    } else {
        sigil_compliance::Status::Pass
    };
    Ok((id, expected as u8))
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(dir) = &args.full_only {
        return full_only(dir).await;
    }
    let n = args.devices;
    if n == 0 {
        bail!("--devices must be at least 1");
    }
    let temporary = tempfile::tempdir()?;
    let dir: &Path = match &args.keep {
        Some(keep) => {
            std::fs::create_dir_all(keep)?;
            keep
        }
        None => temporary.path(),
    };
    let url = format!("sqlite://{}", dir.join("sigil.db").display());
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    println!(
        "fleet: {n} devices, {} cores",
        std::thread::available_parallelism()?
    );

    let started = Instant::now();
    populate(&url, n, now).await?;
    println!(
        "populated SQLite in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    pure_evaluation(n, now)?;

    let handle = server(dir, &url, false).await?;
    read_facts(&handle).await?;
    full_evaluation(&handle, n).await?;
    println!(
        "\n| incremental, one posture report | events | p50 ms | p95 ms | p99 ms | max ms |\n|---|---|---|---|---|---|"
    );
    refresh_after_commit(&handle, n, args.events).await?;
    handle.shutdown().await;

    let handle = server(dir, &url, true).await?;
    follower_after_commit(&handle, n, args.events).await?;
    handle.shutdown().await;
    Ok(())
}

/// `--full-only`: three full evaluations of the fleet kept in `dir`, each printed.
async fn full_only(dir: &Path) -> Result<()> {
    let url = format!("sqlite://{}", dir.join("sigil.db").display());
    let handle = server(dir, &url, false).await?;
    for _ in 0..3 {
        let stats = handle
            .compliance_rebuild()
            .await
            .map_err(anyhow::Error::msg)?;
        println!(
            "full: {} devices in {:.2} s",
            stats.devices,
            stats.elapsed.as_secs_f64()
        );
    }
    handle.shutdown().await;
    Ok(())
}

/// Phase 1: the check results and the first row of the phase table.
fn pure_evaluation(n: u64, now: i64) -> Result<()> {
    let (elapsed, tally) = pure(n, now)?;
    println!(
        "check results: {} pass, {} not applicable, {} unknown, {} fail",
        tally[0], tally[1], tally[2], tally[3]
    );
    println!(
        "\n| phase | devices | seconds | devices/s |\n|---|---|---|---|\n| pure evaluation, 12 device checks, one core | {n} | {:.2} | {:.0} |",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64()
    );
    Ok(())
}

/// Phase 2: page through the fleet's compliance facts without evaluating them.
async fn read_facts(handle: &sigil_server::ServerHandle) -> Result<()> {
    let started = Instant::now();
    let mut after = None;
    let mut read = 0u64;
    loop {
        let page = handle.store.compliance_page(after, 500).await?;
        read += page.len() as u64;
        match page.last() {
            Some(last) if page.len() == 500 => after = Some(last.device.id),
            _ => break,
        }
    }
    let elapsed = started.elapsed();
    println!(
        "| read compliance facts from SQLite (no evaluation) | {read} | {:.2} | {:.0} |",
        elapsed.as_secs_f64(),
        read as f64 / elapsed.as_secs_f64()
    );
    Ok(())
}

/// Phase 3: the median of three full evaluations, each of which must cover all `n` devices.
async fn full_evaluation(handle: &sigil_server::ServerHandle, n: u64) -> Result<()> {
    let mut full = Vec::new();
    for _ in 0..3 {
        let stats = handle
            .compliance_rebuild()
            .await
            .map_err(anyhow::Error::msg)?;
        if stats.devices as u64 != n {
            bail!("evaluated {} devices, expected {n}", stats.devices);
        }
        full.push(stats.elapsed);
    }
    full.sort();
    println!(
        "| full evaluation (read + evaluate + index), median of 3 | {n} | {:.2} | {:.0} |",
        full[1].as_secs_f64(),
        n as f64 / full[1].as_secs_f64()
    );
    Ok(())
}

/// Phase 4, follower off: after each event's commit, time an explicit refresh, which must
/// re-evaluate that one device to the expected status.
async fn refresh_after_commit(
    handle: &sigil_server::ServerHandle,
    n: u64,
    events: usize,
) -> Result<()> {
    let mut refresh = Vec::with_capacity(events);
    for round in 0..events {
        let i = (round as u64 * 7919) % n;
        let (id, expected) = flip(handle, i, round).await?;
        let started = Instant::now();
        let stats = handle
            .compliance_refresh()
            .await
            .map_err(anyhow::Error::msg)?;
        refresh.push(started.elapsed());
        let got = handle
            .compliance_statuses(id)
            .await
            .map(|s| s[PASSWORD_CHECK] as u8);
        if stats.devices != 1 || got != Some(expected) {
            bail!(
                "refresh re-evaluated {} devices; status {got:?}, expected {expected}",
                stats.devices
            );
        }
    }
    summary("refresh after the commit (follower off)", refresh);
    Ok(())
}

/// Phase 4, follower on: time each event's commit, and until the follower (woken by the
/// commit) shows the expected status.
async fn follower_after_commit(
    handle: &sigil_server::ServerHandle,
    n: u64,
    events: usize,
) -> Result<()> {
    // Wait for the follower's initial full evaluation.
    handle
        .compliance_refresh()
        .await
        .map_err(anyhow::Error::msg)?;
    let mut commits = Vec::with_capacity(events);
    let mut end_to_end = Vec::with_capacity(events);
    for round in 0..events {
        let i = (round as u64 * 104_729 + 1) % n;
        let started = Instant::now();
        let (id, expected) = flip(handle, i, round).await?;
        commits.push(started.elapsed());
        loop {
            if handle
                .compliance_statuses(id)
                .await
                .map(|s| s[PASSWORD_CHECK] as u8)
                == Some(expected)
            {
                break;
            }
            if started.elapsed() > Duration::from_secs(5) {
                bail!("the follower did not apply the event within 5 s");
            }
            tokio::task::yield_now().await;
        }
        end_to_end.push(started.elapsed());
    }
    summary("the posture write and its commit alone", commits);
    summary(
        "write + commit + follower's update (woken by the commit)",
        end_to_end,
    );
    Ok(())
}
