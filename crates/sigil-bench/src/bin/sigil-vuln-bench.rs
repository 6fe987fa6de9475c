//! `cargo run --release -p sigil-bench --bin sigil-vuln-bench -- [--records N] [--components N] [--devices N]`
//!
//! Vulnerability data at scale, against the real server (SQLite), side by side in one run:
//! 1. Import of an OSV ecosystem archive (`all.zip` shape) through the API, beside the raw
//!    read of the same archive in-process (unzip and parse, `sigil_vuln::archive`) and
//!    Python's `zipfile` + `json` reading it.
//! 2. Matching an SBOM of C components against R records: the server's findings (the API
//!    call, which reads the candidate records from the database, parses, compiles and matches
//!    them), the same matching in-process on records already parsed (the matching alone), and
//!    a Python matcher on PyPA's `packaging` (`scripts/osv_match_reference.py`).
//! 3. Exposure: D devices run the firmware; a new advisory (an OSV record, then its KEV
//!    entry) is imported; how long until the product's findings (and so every device's)
//!    show it with all D devices, and until its Article 14 case is open.

use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use serde_json::{Value, json};

use sigil_testkit::{Db, TestServer};
use sigil_vuln::archive::read_osv_archive;
use sigil_vuln::{Ecosystem, OsvRecord, Verdict};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 200_000)]
    records: usize,
    #[arg(long, default_value_t = 5_000)]
    components: usize,
    #[arg(long, default_value_t = 1_000_000)]
    devices: usize,
    /// Runs of each matching measurement (the median is reported).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
}

/// Distinct packages the records name: ten records each at 200,000 records.
fn packages(records: usize) -> usize {
    (records / 10).max(1)
}

/// Record `i`: package `pkg-{i % P}`, affected from `{k}.0` up to (not including) the fix
/// `{k}.5.0`, or up to `last_affected` for every third record, with a CVE alias.
fn record(i: usize, p: usize) -> Value {
    let k = i / p;
    let end = if i.is_multiple_of(3) {
        json!({"last_affected": format!("{k}.4.9")})
    } else {
        json!({"fixed": format!("{k}.5.0")})
    };
    json!({
        "schema_version": "1.6.0",
        "id": format!("PYSEC-BENCH-{i}"),
        "modified": "2026-12-01T00:00:00Z",
        "aliases": [format!("CVE-2026-{}", 100_000 + i)],
        "summary": format!("synthetic advisory {i}"),
        "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N"}],
        "affected": [{
            "package": {"ecosystem": "PyPI", "name": format!("pkg-{}", i % p)},
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": format!("{k}.0")}, end]}]
        }]
    })
}

fn archive(records: usize) -> Result<Vec<u8>> {
    let p = packages(records);
    let mut out = std::io::Cursor::new(Vec::new());
    let mut zip = zip::ZipWriter::new(&mut out);
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for i in 0..records {
        zip.start_file(format!("PYSEC-BENCH-{i}.json"), options)?;
        zip.write_all(record(i, p).to_string().as_bytes())?;
    }
    zip.finish()?;
    Ok(out.into_inner())
}

/// A CycloneDX 1.6 SBOM of `n` PyPI components, each a package the records name at a
/// version inside some of their ranges.
fn sbom(n: usize, records: usize) -> Value {
    let p = packages(records);
    let components: Vec<Value> = (0..n)
        .map(|i| {
            let name = format!("pkg-{}", (i * 7) % p);
            let version = format!("{}.{}.0", i % 4, i % 7);
            json!({"type": "library", "bom-ref": format!("c{i}"), "name": name, "version": version,
                   "purl": format!("pkg:pypi/{name}@{version}")})
        })
        .collect();
    json!({"bomFormat": "CycloneDX", "specVersion": "1.6", "version": 1,
           "serialNumber": "urn:uuid:3e671687-395b-41f5-a30f-a58921a69b79",
           "components": components})
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

async fn upload(s: &TestServer, path: &str, body: Vec<u8>) -> Result<Value> {
    let r = s
        .http
        .post(format!("{}{path}", s.api))
        .bearer_auth(&s.token)
        .header("content-type", "application/octet-stream")
        .body(body)
        .send()
        .await?;
    let status = r.status();
    let body: Value = r.json().await?;
    if !status.is_success() {
        bail!("{path}: {status} {body}");
    }
    Ok(body)
}

/// The matching alone: the SBOM's components against records already parsed, the way the
/// server judges them (compiled once, each distinct package version once).
fn match_in_process(records: &[OsvRecord], sbom: &Value) -> usize {
    let mut by_package: std::collections::HashMap<String, Vec<sigil_vuln::CompiledAffected>> =
        std::collections::HashMap::new();
    let mut wanted = std::collections::HashSet::new();
    for c in sbom["components"].as_array().into_iter().flatten() {
        wanted.insert(c["name"].as_str().unwrap_or_default().to_owned());
    }
    for r in records {
        for entry in sigil_vuln::compile(r) {
            if wanted.contains(&entry.name) {
                by_package
                    .entry(entry.name.clone())
                    .or_default()
                    .push(entry);
            }
        }
    }
    let eco = Ecosystem::parse("PyPI");
    let mut findings = 0;
    for c in sbom["components"].as_array().into_iter().flatten() {
        let name = c["name"].as_str().unwrap_or_default();
        let version = c["version"].as_str().unwrap_or_default();
        for entry in by_package.get(name).into_iter().flatten() {
            if entry.ecosystem.covers(&eco)
                && matches!(entry.evaluate(version), Verdict::Affected { .. })
            {
                findings += 1;
            }
        }
    }
    findings
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    println!(
        "records {}, packages {}, components {}, devices {}",
        args.records,
        packages(args.records),
        args.components,
        args.devices
    );

    let work = tempfile::tempdir()?;
    let (s, parsed, zip_path) = import_phase(&args, work.path()).await?;
    let product = matching_phase(&args, &s, &parsed, &zip_path, work.path()).await?;
    exposure_phase(&args, &s, &product).await
}

/// 1. The archive imported through the API, beside the raw read and Python's.
async fn import_phase(
    args: &Args,
    work: &std::path::Path,
) -> Result<(TestServer, Vec<OsvRecord>, std::path::PathBuf)> {
    // 1. Import.
    let zipped = archive(args.records)?;
    let zip_path = work.join("PyPI-all.zip");
    std::fs::write(&zip_path, &zipped)?;
    let t = Instant::now();
    let mut parsed = Vec::with_capacity(args.records);
    read_osv_archive(&zipped, |r| {
        parsed.push(r);
        Ok(())
    })?;
    let raw_read = t.elapsed().as_secs_f64();
    let py = Command::new("python3")
        .args([
            "-c",
            "import json, sys, time, zipfile\nt = time.perf_counter()\nz = zipfile.ZipFile(sys.argv[1])\nn = sum(1 for name in z.namelist() if json.loads(z.read(name)))\nprint(time.perf_counter() - t)",
        ])
        .arg(&zip_path)
        .output()?;
    let py_read: f64 = String::from_utf8_lossy(&py.stdout)
        .trim()
        .parse()
        .context("python read")?;
    let s = TestServer::start_with(Db::Sqlite, |c| c.vuln_review = Duration::from_secs(3600))
        .await
        .context("server")?;
    let t = Instant::now();
    let imported = upload(&s, "/api/v1/vulndb/imports?source=bench", zipped.clone()).await?;
    let import = t.elapsed().as_secs_f64();
    println!(
        "\n## Import of a {} MB OSV archive ({} records)",
        zipped.len() / 1_000_000,
        imported["records"]
    );
    println!("| path | seconds | records/s | vs raw read |");
    println!("|---|---:|---:|---:|");
    for (name, secs) in [
        (
            "Sigil import (API: unzip, parse, check, store, audit)",
            import,
        ),
        ("raw read (unzip + parse, in-process)", raw_read),
        ("python3 zipfile + json", py_read),
    ] {
        println!(
            "| {name} | {secs:.2} | {:.0} | {:.1}x |",
            args.records as f64 / secs,
            secs / raw_read
        );
    }

    Ok((s, parsed, zip_path))
}

/// 2. The SBOM matched by the server, in-process, and by Python.
async fn matching_phase(
    args: &Args,
    s: &TestServer,
    parsed: &[OsvRecord],
    zip_path: &std::path::Path,
    work: &std::path::Path,
) -> Result<String> {
    // 2. Matching.
    let product = s.create_product("Bench").await;
    let bom = sbom(args.components, args.records);
    let bom_path = work.join("bench.cdx.json");
    std::fs::write(&bom_path, bom.to_string())?;
    upload(
        s,
        &format!("/api/v1/products/{product}/sboms?version=2.0.0"),
        bom.to_string().into_bytes(),
    )
    .await?;
    // The SBOM upload asked for a review (the same work as a findings request): let it end
    // before measuring, after one warm-up request.
    let _ = s.get(&format!("/api/v1/products/{product}/findings")).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut server = Vec::new();
    let mut findings = 0;
    for _ in 0..args.rounds {
        let t = Instant::now();
        let (st, list) = s.get(&format!("/api/v1/products/{product}/findings")).await;
        server.push(t.elapsed().as_secs_f64());
        if !st.is_success() {
            bail!("findings: {st} {list}");
        }
        findings = list["items"].as_array().map_or(0, Vec::len);
    }
    let mut local = Vec::new();
    let mut local_findings = 0;
    for _ in 0..args.rounds {
        let t = Instant::now();
        local_findings = match_in_process(parsed, &bom);
        local.push(t.elapsed().as_secs_f64());
    }
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/osv_match_reference.py"
    );
    let py = Command::new("python3")
        .arg(script)
        .arg(zip_path)
        .arg(&bom_path)
        .output()?;
    let reference: Value = serde_json::from_slice(&py.stdout).with_context(|| format!("{py:?}"))?;
    let py_match = reference["seconds"].as_f64().unwrap_or(f64::NAN);
    let (server, local) = (median(server), median(local));
    println!(
        "\n## Matching {} components against {} records",
        args.components, args.records
    );
    println!("| path | seconds | findings | vs in-process |");
    println!("|---|---:|---:|---:|");
    println!(
        "| Sigil findings (API: read candidates, parse, compile, match, KEV/EPSS/VEX, deadlines) | {server:.3} | {findings} | {:.1}x |",
        server / local
    );
    println!("| in-process matching, records parsed | {local:.3} | {local_findings} | 1.0x |");
    println!(
        "| Python + packaging (PEP 440), records parsed | {py_match:.3} | {} | {:.1}x |",
        reference["findings"],
        py_match / local
    );

    Ok(product)
}

/// 3. A new advisory reaching the findings of D devices, and its case opening.
async fn exposure_phase(args: &Args, s: &TestServer, product: &str) -> Result<()> {
    // 3. Exposure of D devices to a new advisory.
    let t = Instant::now();
    insert_devices(s, product, args.devices).await?;
    let inserted = t.elapsed().as_secs_f64();
    let new = json!({"id": "GHSA-bench-new1-0001", "modified": "2026-12-05T00:00:00Z",
        "aliases": ["CVE-2026-999999"], "summary": "a new advisory",
        "affected": [{"package": {"ecosystem": "PyPI", "name": "pkg-0"},
                      "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}]}]}]});
    let t = Instant::now();
    upload(s, "/api/v1/vulndb/imports", new.to_string().into_bytes()).await?;
    let devices = loop {
        let (_, list) = s.get(&format!("/api/v1/products/{product}/findings")).await;
        let hit = list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|f| f["vulnerability"] == "CVE-2026-999999");
        if let Some(f) = hit {
            break f["devices"].as_u64().unwrap_or(0);
        }
    };
    let reflected = t.elapsed().as_secs_f64();
    let kev = json!({"catalogVersion": "bench", "vulnerabilities": [{"cveID": "CVE-2026-999999",
        "vendorProject": "bench", "product": "pkg-0", "vulnerabilityName": "bench", "dateAdded": "2026-12-05",
        "shortDescription": "-", "requiredAction": "-", "dueDate": "2026-12-26", "knownRansomwareCampaignUse": "Unknown", "notes": ""}]});
    let t = Instant::now();
    upload(s, "/api/v1/vulndb/imports", kev.to_string().into_bytes()).await?;
    loop {
        let (_, cases) = s.get("/api/v1/cases").await;
        if cases["items"].as_array().is_some_and(|a| !a.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let case = t.elapsed().as_secs_f64();
    println!(
        "\n## Exposure of {} devices to a new advisory",
        args.devices
    );
    println!("| step | seconds |");
    println!("|---|---:|");
    println!(
        "| insert {} devices running 2.0.0 (setup, SQL) | {inserted:.1} |",
        args.devices
    );
    println!(
        "| OSV record imported -> product findings show it on {devices} devices | {reflected:.3} |"
    );
    println!("| KEV entry imported -> Article 14 case open | {case:.3} |");
    Ok(())
}

/// `n` devices of `product` on firmware 2.0.0, written straight into the database (the
/// inventory API would take hours at 10^6 and is not what is measured).
async fn insert_devices(s: &TestServer, product: &str, n: usize) -> Result<()> {
    let pool = s.store().pool();
    let mut tx = pool.begin().await?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    const ROWS: usize = 500;
    for start in (0..n).step_by(ROWS) {
        let end = (start + ROWS).min(n);
        let values = (start..end)
            .map(|i| {
                format!(
                    "('0190bbbb-0000-7000-8000-{i:012x}', $1, 'SN-{i}', '2.0.0', 'active', $2, $2)"
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "INSERT INTO devices (id, product_id, serial_number, firmware_version, state, created_at, updated_at) VALUES {values}"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(product)
            .bind(now)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}
