//! `cargo run --release -p sigil-bench --bin sigil-console-bench -- [--devices N] [--requests R]`
//!
//! Server time per web console page with N devices registered (default 100,000), each page
//! asked R times in turn by one logged-in client over a kept-alive HTTPS connection, beside the
//! REST API call the page is built on (the console calls the API in process, so the difference
//! is the console's own cost: its calls, parsing and rendering). Prints a Markdown table:
//! p50, p99 and max in milliseconds.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use serde_json::json;

use sigil_domain::{DeviceFields, NewDevice};
use sigil_testkit::{Db, TestServer};

#[derive(Parser)]
struct Args {
    /// Devices to register before measuring.
    #[arg(long, default_value_t = 100_000)]
    devices: usize,
    /// Requests per page.
    #[arg(long, default_value_t = 60)]
    requests: usize,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(args))
}

/// Register `count` devices of `product` in batches; the id of one device in each batch.
async fn seed(s: &TestServer, product: &str, count: usize) -> Result<Vec<String>> {
    let product_id = product.parse().context("product id")?;
    let actor = sigil_audit::Actor::system("sigil-console-bench");
    let sites = ["plant-1", "plant-2", "plant-3", "depot"];
    let mut registered = Vec::new();
    for start in (0..count).step_by(5_000) {
        let batch: Vec<NewDevice> = (start..(start + 5_000).min(count))
            .map(|i| {
                let tags = vec![format!("line-{}", i % 20)];
                NewDevice::parse(
                    product_id,
                    DeviceFields {
                        serial_number: &format!("SN-{i:07}"),
                        site: Some(sites[i % sites.len()]),
                        owner: Some("Facilities"),
                        tags: &tags,
                        ..DeviceFields::default()
                    },
                )
            })
            .collect::<Result<_, _>>()?;
        let created = s
            .store()
            .create_devices(&actor, batch, time::OffsetDateTime::now_utc())
            .await?;
        if let Some(d) = created.get(created.len() / 2) {
            registered.push(d.id.to_string());
        }
    }
    Ok(registered)
}

/// Each page measured, with the API call it rests on beside it.
fn pages(middle: &str, product: &str) -> Vec<(&'static str, String)> {
    vec![
        ("Overview", "/ui".into()),
        ("API: inventory summary", "/api/v1/inventory/summary".into()),
        ("Devices, first page", "/ui/devices".into()),
        (
            "API: devices, first page",
            "/api/v1/devices?limit=50".into(),
        ),
        (
            "Devices, a page halfway through",
            format!("/ui/devices?after={middle}"),
        ),
        (
            "Devices at a site, filtered by tag",
            "/ui/devices?site=depot&tag=line-7".into(),
        ),
        (
            "API: devices at a site, filtered by tag",
            "/api/v1/devices?site=depot&tag=line-7&limit=50".into(),
        ),
        (
            "Devices, searched: 1,000 serial numbers match",
            "/ui/devices?q=SN-0005".into(),
        ),
        (
            "API: devices, searched: 1,000 match",
            "/api/v1/devices?q=SN-0005&limit=50".into(),
        ),
        (
            "API: devices, searched: one device matches",
            "/api/v1/devices?q=SN-0050001&limit=50".into(),
        ),
        (
            "API: devices, searched: the whole fleet matches",
            "/api/v1/devices?q=SN-0&limit=50".into(),
        ),
        (
            "Devices by serial number, halfway through",
            format!("/ui/devices?sort=serial&after={middle}"),
        ),
        (
            "Devices failing a framework",
            "/ui/devices?compliance=eu-cra:fail".into(),
        ),
        ("A device", format!("/ui/devices/{middle}")),
        ("Products", "/ui/products".into()),
        ("A product", format!("/ui/products/{product}")),
        ("Compliance", "/ui/compliance".into()),
        (
            "A framework (evaluated over the fleet)",
            "/ui/compliance/eu-cra".into(),
        ),
        ("API: a framework", "/api/v1/compliance/eu-cra".into()),
        ("Audit log", "/ui/audit".into()),
        ("An audit entry with its proof", "/ui/audit/5".into()),
        ("Access", "/ui/access".into()),
    ]
}

async fn run(args: Args) -> Result<()> {
    let s = TestServer::start(Db::Sqlite).await.context("server")?;
    let product = s.create_product("Thermostat").await;
    let seeded = Instant::now();
    let registered = seed(&s, &product, args.devices).await?;
    eprintln!(
        "{} devices registered in {:.1} s",
        args.devices,
        seeded.elapsed().as_secs_f64()
    );
    let (st, _) = s.post("/api/v1/audit/checkpoint", json!({})).await;
    if !st.is_success() {
        bail!("checkpoint: {st}");
    }
    for _ in 0..2 {
        s.post("/api/v1/compliance/eu-cra/evaluate", json!({}))
            .await;
    }
    let (st, op) = s
        .post(
            "/api/v1/operators",
            json!({"username": "avery", "role": "auditor", "password": "avery-correct-horse"}),
        )
        .await;
    if !st.is_success() {
        bail!("operator: {op}");
    }
    let login = s
        .http
        .post(format!("{}/api/v1/auth/login", s.api))
        .json(&json!({"username": "avery", "password": "avery-correct-horse"}))
        .send()
        .await?;
    let cookie = login
        .headers()
        .get("set-cookie")
        .and_then(|c| c.to_str().ok())
        .and_then(|c| c.split(';').next())
        .context("session cookie")?
        .to_owned();
    let middle = registered
        .get(registered.len() / 2)
        .cloned()
        .unwrap_or_default();
    let pages = pages(&middle, &product);
    println!(
        "## Web console: server time per page ({} devices, {} requests each)\n",
        args.devices, args.requests
    );
    println!("| page | p50 ms | p99 ms | max ms |");
    println!("|---|---:|---:|---:|");
    for (name, path) in pages {
        let url = format!("{}{path}", s.api);
        let mut times = Vec::with_capacity(args.requests);
        for i in 0..args.requests + 3 {
            let started = Instant::now();
            let r = s.http.get(&url).header("cookie", &cookie).send().await?;
            let status = r.status();
            r.bytes().await?;
            if !status.is_success() {
                bail!("{path}: {status}");
            }
            if i >= 3 {
                times.push(started.elapsed());
            }
        }
        times.sort();
        let at = |q: f64| times[((times.len() as f64 - 1.0) * q).round() as usize];
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "| {name} | {:.1} | {:.1} | {:.1} |",
            ms(at(0.5)),
            ms(at(0.99)),
            ms(*times.last().unwrap_or(&Duration::ZERO))
        );
    }
    s.shutdown().await;
    Ok(())
}
