//! `cargo run --release -p sigil-bench -- [--seconds S] [--postgres URL]`
//!
//! Prints a Markdown report: raw ECDSA P-256 sign/verify rates (the physical limit of issuance:
//! one CSR verification plus one certificate signature), then certificates per second through
//! the library, through the durable store on SQLite and PostgreSQL, and through the HTTPS API
//! with concurrent clients, and `openssl x509 -req` issuing the same kind of certificate.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use serde_json::json;

use sigil_ca::{
    CaHierarchy, CaNames, IdentityScheme, IssuingCa, KeyAlgorithm, Profile, PublicUrls,
    ValidatedCsr,
};
use sigil_domain::{DeviceFields, DeviceId, NewDevice, NewProduct};
use sigil_store::Store;

mod openssl;

use openssl::openssl_rate;

#[derive(Parser)]
struct Args {
    /// Seconds per measurement.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// PostgreSQL server URL (a fresh database is created next to it). Default: SIGIL_TEST_POSTGRES_URL.
    #[arg(long, env = "SIGIL_TEST_POSTGRES_URL")]
    postgres: Option<String>,
    /// Distinct device keys to generate (each issuance needs a fresh one).
    #[arg(long, default_value_t = 30000)]
    keys: usize,
    /// Run only the backends whose name contains this (e.g. `sqlite`), for profiling.
    #[arg(long)]
    only: Option<String>,
    /// Concurrent API clients.
    #[arg(long, default_value_t = 32)]
    clients: usize,
}

fn main() -> Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("SIGIL_LOG"))
        .with_writer(std::io::stderr)
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let secs = Duration::from_secs_f64(args.seconds);
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let bench = Bench {
        args,
        rt,
        secs,
        cores,
    };
    bench.print_run();

    // 1. The physical limit.
    let limit_1 = bench.raw_ecdsa_table()?;

    let fixtures = Fixtures::generate(bench.args.keys)?;

    // 2. Library path: parse + verify CSR, build + sign certificate. No storage.
    println!("## Certificates per second\n");
    println!(
        "| path | backend | concurrency | certs/s | p50 ms | p99 ms | vs sign+verify limit ({cores} cores) |\n|---|---|---:|---:|---:|---:|---:|"
    );
    let limit = limit_1 * cores as f64;
    let (csr_verify_us, sign_us) = bench.one_core_costs(&fixtures)?;
    for threads in [1, cores] {
        let rate = library_rate(&fixtures, threads, secs)?;
        println!(
            "| library (CSR verify + sign) | - | {threads} threads | {rate:.0} | - | - | {:.2}x |",
            limit / rate
        );
    }

    // 3. Durable store path and 4. HTTPS API, per backend.
    let dir = tempfile::tempdir()?;
    let mut commit_ms = Vec::new();
    for (name, url) in &bench.backends(dir.path())? {
        commit_ms.extend(bench.store_rows(&fixtures, name, url, limit)?);
        bench.api_rows(&fixtures, name, dir.path(), limit)?;
    }

    // 5. The standard tool.
    let openssl = openssl_rate(dir.path(), secs)?;
    println!(
        "| `openssl x509 -req` (one process per cert) | files | 1 | {openssl:.1} | - | - | {:.0}x |\n",
        limit / openssl
    );

    println!("## Where the time goes (one core)\n");
    println!("- CSR parse + proof-of-possession verify: {csr_verify_us:.1} µs");
    println!("- certificate build + ECDSA sign: {sign_us:.1} µs");
    for (name, p50) in commit_ms {
        println!(
            "- {name}: one durable issuance transaction (read device, bind key, insert, commit): {p50:.2} ms p50, sequential"
        );
    }
    if let Some(base) = &bench.args.postgres {
        bench.rt.block_on(drop_created(base))?;
    }
    Ok(())
}

/// What every measurement shares.
struct Bench {
    args: Args,
    rt: tokio::runtime::Runtime,
    /// Time per measurement.
    secs: Duration,
    cores: usize,
}

/// The issuing CA and the device CSRs (one fresh key each) that every issuance path uses.
struct Fixtures {
    now: time::OffsetDateTime,
    ca: Arc<IssuingCa>,
    urls: PublicUrls,
    profile: &'static Profile,
    csrs: Arc<Vec<Vec<u8>>>,
}

impl Fixtures {
    fn generate(keys: usize) -> Result<Self> {
        let now = time::OffsetDateTime::now_utc();
        let h = CaHierarchy::generate(KeyAlgorithm::EcdsaP256, &CaNames::default(), now)?;
        let ca = Arc::new(IssuingCa::load(
            &h.issuing_cert_pem,
            h.issuing_key,
            &h.root_cert_pem,
        )?);
        let urls = PublicUrls::new("http://127.0.0.1:8080")?;
        let profile = Profile::by_name("device")?;
        let csrs = Arc::new(make_csrs(keys)?);
        Ok(Self {
            now,
            ca,
            urls,
            profile,
            csrs,
        })
    }
}

impl Bench {
    fn print_run(&self) {
        let cores = self.cores;
        println!("## Run\n");
        println!(
            "- cores: {cores}, measurement: {:.1} s each, API clients: {}",
            self.args.seconds, self.args.clients
        );
        println!("- CA: ECDSA P-256 issuing CA; device keys ECDSA P-256; profile `device`\n");
    }

    /// Print the raw ECDSA table; sign + verify per second on one core (the issuance limit).
    fn raw_ecdsa_table(&self) -> Result<f64> {
        let cores = self.cores;
        let (sign, verify) = raw_ecdsa(self.secs)?;
        let limit_1 = 1.0 / (1.0 / sign + 1.0 / verify);
        println!("## Raw ECDSA P-256 (aws-lc-rs, one core)\n");
        println!(
            "| operation | per second (1 core) | per second ({cores} cores, ideal) |\n|---|---:|---:|"
        );
        println!("| sign | {sign:.0} | {:.0} |", sign * cores as f64);
        println!("| verify | {verify:.0} | {:.0} |", verify * cores as f64);
        println!(
            "| sign + verify (the issuance limit) | {limit_1:.0} | {:.0} |\n",
            limit_1 * cores as f64
        );
        Ok(limit_1)
    }

    /// Microseconds on one core for a CSR parse + verify, and for a certificate build + sign.
    fn one_core_costs(&self, fx: &Fixtures) -> Result<(f64, f64)> {
        let (secs, csrs) = (self.secs, &fx.csrs);
        let t = Instant::now();
        let mut n = 0;
        while t.elapsed() < secs {
            ValidatedCsr::from_der(&csrs[n % csrs.len()])?;
            n += 1;
        }
        let csr_verify_us = t.elapsed().as_secs_f64() * 1e6 / n as f64;
        let parsed = ValidatedCsr::from_der(&csrs[0])?;
        let t = Instant::now();
        let mut m = 0;
        while t.elapsed() < secs {
            fx.ca.issue_device_certificate(
                &parsed,
                DeviceId::generate(),
                fx.profile,
                &IdentityScheme::Urn,
                &fx.urls,
                fx.now,
            )?;
            m += 1;
        }
        let sign_us = t.elapsed().as_secs_f64() * 1e6 / m as f64;
        Ok((csr_verify_us, sign_us))
    }

    /// The storage backends to measure: SQLite in `dir`, and PostgreSQL when given (a fresh
    /// database), less those `--only` leaves out.
    fn backends(&self, dir: &std::path::Path) -> Result<Vec<(&'static str, String)>> {
        let mut backends: Vec<(&'static str, String)> = Vec::new();
        backends.push((
            "sqlite",
            format!("sqlite://{}", dir.join("bench.db").display()),
        ));
        if let Some(base) = &self.args.postgres {
            let url = self.rt.block_on(fresh_pg(base))?;
            backends.push(("postgres", url));
        } else {
            eprintln!("no --postgres / SIGIL_TEST_POSTGRES_URL: PostgreSQL rows skipped");
        }
        if let Some(only) = &self.args.only {
            backends.retain(|(name, _)| name.contains(only.as_str()));
        }
        Ok(backends)
    }

    /// The durable store rows of one backend; its sequential (one task) p50 commit time.
    fn store_rows(
        &self,
        fx: &Fixtures,
        name: &str,
        url: &str,
        limit: f64,
    ) -> Result<Option<(String, f64)>> {
        let store = self.rt.block_on(Store::open(url))?;
        let mut commit_ms = None;
        // One key per device, across runs on this database.
        let next = Arc::new(AtomicUsize::new(0));
        for conc in [1, 16, 64] {
            let (rate, p50, p99) = self
                .rt
                .block_on(store_rate(&store, fx, conc, self.secs, &next))?;
            println!(
                "| store (library + durable commit) | {name} | {conc} tasks | {rate:.0} | {p50:.2} | {p99:.2} | {:.2}x |",
                limit / rate
            );
            if conc == 1 {
                commit_ms = Some((name.to_string(), p50));
            }
        }
        self.rt.block_on(store.close());
        Ok(commit_ms)
    }

    /// HTTPS API rows against a server on a fresh database of the same backend.
    fn api_rows(&self, fx: &Fixtures, name: &str, dir: &std::path::Path, limit: f64) -> Result<()> {
        let args = &self.args;
        for clients in [1, args.clients, 4 * args.clients] {
            let api_url = match name {
                "sqlite" => format!(
                    "sqlite://{}",
                    dir.join(format!("api-{clients}.db")).display()
                ),
                _ => self
                    .rt
                    .block_on(fresh_pg(args.postgres.as_deref().unwrap_or_default()))?,
            };
            let (rate, p50, p99) = self
                .rt
                .block_on(api_rate(&api_url, dir, &fx.csrs, clients, self.secs))?;
            println!(
                "| HTTPS API (TLS 1.3, keep-alive) | {name} | {clients} clients | {rate:.0} | {p50:.2} | {p99:.2} | {:.2}x |",
                limit / rate
            );
        }
        Ok(())
    }
}

fn raw_ecdsa(secs: Duration) -> Result<(f64, f64)> {
    use aws_lc_rs::signature::{
        ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair,
        UnparsedPublicKey,
    };
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
        .map_err(|_| anyhow::anyhow!("keygen"))?;
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref())
        .map_err(|_| anyhow::anyhow!("key"))?;
    let msg = [0x42u8; 300]; // about the size of a TBSCertificate
    let t = Instant::now();
    let mut n = 0u64;
    let mut sig = Vec::new();
    while t.elapsed() < secs {
        sig = key
            .sign(&rng, &msg)
            .map_err(|_| anyhow::anyhow!("sign"))?
            .as_ref()
            .to_vec();
        n += 1;
    }
    let sign = n as f64 / t.elapsed().as_secs_f64();
    let public =
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, key.public_key().as_ref().to_vec());
    let t = Instant::now();
    let mut m = 0u64;
    while t.elapsed() < secs {
        public
            .verify(&msg, &sig)
            .map_err(|_| anyhow::anyhow!("verify"))?;
        m += 1;
    }
    Ok((sign, m as f64 / t.elapsed().as_secs_f64()))
}

fn make_csrs(n: usize) -> Result<Vec<Vec<u8>>> {
    (0..n)
        .map(|_| {
            let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
            Ok(rcgen::CertificateParams::new(Vec::<String>::new())?
                .serialize_request(&key)?
                .der()
                .to_vec())
        })
        .collect()
}

fn library_rate(fx: &Fixtures, threads: usize, secs: Duration) -> Result<f64> {
    let (ca, csrs, urls, profile) = (&fx.ca, &fx.csrs, &fx.urls, fx.profile);
    let count = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let (ca, csrs, count, urls) = (ca.clone(), csrs.clone(), count.clone(), urls.clone());
            s.spawn(move || {
                let mut i = t;
                let now = time::OffsetDateTime::now_utc();
                while start.elapsed() < secs {
                    let Ok(csr) = ValidatedCsr::from_der(&csrs[i % csrs.len()]) else {
                        return;
                    };
                    if ca
                        .issue_device_certificate(
                            &csr,
                            DeviceId::generate(),
                            profile,
                            &IdentityScheme::Urn,
                            &urls,
                            now,
                        )
                        .is_err()
                    {
                        return;
                    }
                    count.fetch_add(1, Ordering::Relaxed);
                    i += threads;
                }
            });
        }
    });
    Ok(count.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64())
}

async fn store_rate(
    store: &Store,
    fx: &Fixtures,
    tasks: usize,
    secs: Duration,
    next: &Arc<AtomicUsize>,
) -> Result<(f64, f64, f64)> {
    let (ca, csrs, urls, profile) = (&fx.ca, &fx.csrs, &fx.urls, fx.profile);
    let now = time::OffsetDateTime::now_utc();
    let product = store
        .create_product(
            &bench_actor(),
            NewProduct::parse(&format!("P{}", uuid::Uuid::new_v4()), "M", "2030-01-01")?,
            now,
        )
        .await?;
    // Registration is set up outside the timed region, in bulk: one device per remaining key.
    let first = next.load(Ordering::Relaxed);
    let new: Vec<NewDevice> = (first..csrs.len())
        .map(|i| {
            NewDevice::parse(
                product.id,
                DeviceFields {
                    serial_number: &format!("S{i}"),
                    ..Default::default()
                },
            )
        })
        .collect::<Result<_, _>>()?;
    let devices: Arc<Vec<DeviceId>> = Arc::new(
        store
            .create_devices(&bench_actor(), new, now)
            .await?
            .into_iter()
            .map(|d| d.id)
            .collect(),
    );
    let start = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let (store, ca, csrs, urls, next, devices) = (
            store.clone(),
            ca.clone(),
            csrs.clone(),
            urls.clone(),
            next.clone(),
            devices.clone(),
        );
        handles.push(tokio::spawn(async move {
            let actor = bench_actor();
            let mut lat = Vec::new();
            while start.elapsed() < secs {
                let i = next.fetch_add(1, Ordering::Relaxed);
                // Each key may be bound to one device only: stop when the pool is used up.
                let (Some(der), Some(&device_id)) = (csrs.get(i), devices.get(i - first)) else {
                    break;
                };
                let t = Instant::now();
                let csr = ValidatedCsr::from_der(der)?;
                let ca2 = ca.clone();
                let urls2 = urls.clone();
                store
                    .issue_certificate(
                        &actor,
                        device_id,
                        sigil_store::IssuanceBasis::Authorised,
                        &csr.spki_fingerprint().clone(),
                        now,
                        move || {
                            let c = ca2.issue_device_certificate(
                                &csr,
                                device_id,
                                profile,
                                &IdentityScheme::Urn,
                                &urls2,
                                now,
                            )?;
                            Ok::<_, sigil_ca::CaError>(sigil_authority::enrolment::store_record(c))
                        },
                    )
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                lat.push(t.elapsed());
            }
            Ok::<_, anyhow::Error>(lat)
        }));
    }
    let mut lat = Vec::new();
    for h in handles {
        lat.extend(h.await??);
    }
    Ok(summarise(lat, start.elapsed()))
}

/// Throughput counts only the issuance requests; device registration happens before the clock starts.
async fn api_rate(
    database_url: &str,
    work: &std::path::Path,
    csrs: &Arc<Vec<Vec<u8>>>,
    clients: usize,
    secs: Duration,
) -> Result<(f64, f64, f64)> {
    let data = work.join(format!("data-{}", uuid::Uuid::new_v4()));
    let mut config = sigil_server::ServerConfig::new(&data);
    config.database_url = Some(database_url.to_owned());
    config.listen = "127.0.0.1:0".parse()?;
    config.pki_listen = "127.0.0.1:0".parse()?;
    let handle = sigil_server::start(config, sigil_server::system_clock()).await?;
    let token = handle
        .new_admin_token
        .clone()
        .context("fresh server has a token")?;
    let root = std::fs::read(data.join("ca/root.crt"))?;
    let http = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&root)?])
        .pool_max_idle_per_host(clients)
        .build()?;
    let api = format!("https://localhost:{}", handle.api_addr.port());
    let product: serde_json::Value = http
        .post(format!("{api}/api/v1/products"))
        .bearer_auth(&token)
        .json(&json!({"name": "P", "manufacturer": "M", "support_end": "2030-01-01"}))
        .send()
        .await?
        .json()
        .await?;
    // Pre-register enough devices; pair each with a distinct key.
    let budget = csrs.len();
    let mut devices = Vec::with_capacity(budget);
    for i in 0..budget {
        let d: serde_json::Value = http
            .post(format!("{api}/api/v1/devices"))
            .bearer_auth(&token)
            .json(&json!({"product_id": product["id"], "serial_number": format!("S{i}")}))
            .send()
            .await?
            .json()
            .await?;
        devices.push(d["id"].as_str().context("device id")?.to_owned());
    }
    let bodies: Arc<Vec<(String, String)>> = Arc::new(
        devices
            .into_iter()
            .zip(csrs.iter())
            .map(|(d, der)| (d, sigil_testkit::csr::csr_pem(der)))
            .collect(),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..clients {
        let (http, api, token, bodies, next) = (
            http.clone(),
            api.clone(),
            token.clone(),
            bodies.clone(),
            next.clone(),
        );
        handles.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while start.elapsed() < secs {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((device, csr)) = bodies.get(i) else {
                    break;
                };
                let t = Instant::now();
                let r = http
                    .post(format!("{api}/api/v1/devices/{device}/certificates"))
                    .bearer_auth(&token)
                    .json(&json!({"csr": csr}))
                    .send()
                    .await?;
                if r.status().as_u16() != 201 {
                    bail!("issuance failed: {}", r.text().await?);
                }
                r.bytes().await?;
                lat.push(t.elapsed());
            }
            Ok::<_, anyhow::Error>(lat)
        }));
    }
    let mut lat = Vec::new();
    for h in handles {
        lat.extend(h.await??);
    }
    let elapsed = start.elapsed();
    if next.load(Ordering::Relaxed) >= budget {
        eprintln!("note: API run used all {budget} pre-registered devices before the time was up");
    }
    handle.shutdown().await;
    Ok(summarise(lat, elapsed))
}

fn summarise(mut lat: Vec<Duration>, elapsed: Duration) -> (f64, f64, f64) {
    lat.sort();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .map(|d| d.as_secs_f64() * 1e3)
            .unwrap_or(0.0)
    };
    (
        lat.len() as f64 / elapsed.as_secs_f64(),
        pct(0.5),
        pct(0.99),
    )
}

/// Databases this run created, dropped at the end.
static CREATED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

async fn drop_created(base: &str) -> Result<()> {
    let urls: Vec<String> = CREATED
        .lock()
        .map(|mut v| std::mem::take(&mut *v))
        .unwrap_or_default();
    for url in urls {
        sigil_testkit::postgres::drop_database(base, &url).await;
    }
    Ok(())
}

async fn fresh_pg(base: &str) -> Result<String> {
    let url = sigil_testkit::postgres::create_database(base).await?;
    if let Ok(mut v) = CREATED.lock() {
        v.push(url.clone());
    }
    Ok(url)
}

/// The audit actor the benchmark's writes are recorded under.
fn bench_actor() -> sigil_audit::Actor {
    sigil_audit::Actor::system("sigil-bench")
}
