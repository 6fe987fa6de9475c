//! EST: `simpleenroll` enrolments end to end, each a new device on a fresh TLS connection.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use base64::Engine;
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::cpu::{CpuOf, cpu_seconds};
use crate::http::exchange;
use crate::{Sigil, csr_der, percentile};

/// A device about to enrol: its id, one-time token and CSR (base64 DER, as EST sends it).
struct Enrollee {
    basic: String,
    csr_b64: String,
}

async fn enrollees(sigil: &Sigil, n: usize) -> Result<Vec<Enrollee>> {
    let devices = sigil.devices(n, "est").await?;
    let mut out = Vec::with_capacity(n);
    for device in devices {
        let t = sigil
            .post(
                &format!("/api/v1/devices/{device}/enrollment-tokens"),
                json!({}),
            )
            .await?;
        let token = t["token"].as_str().context("token")?;
        out.push(Enrollee {
            basic: base64::engine::general_purpose::STANDARD.encode(format!("{device}:{token}")),
            csr_b64: base64::engine::general_purpose::STANDARD.encode(csr_der()?),
        });
    }
    Ok(out)
}

struct EstLoad {
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
    handshake_ms: f64,
    request_ms: f64,
    server_cpu_us: f64,
}

/// `clients` devices enrolling at once, each on a fresh TCP + TLS connection (no session
/// resumption: every device is new). With `enroll` false, only the handshakes.
async fn est_load(
    sigil: &Sigil,
    tls: &tokio_rustls::TlsConnector,
    pending: &Arc<Vec<Enrollee>>,
    next: &Arc<AtomicUsize>,
    clients: usize,
    secs: Duration,
    enroll: bool,
) -> Result<EstLoad> {
    let cpu = CpuOf::Threads("sigil-server");
    let cpu_before = cpu_seconds(cpu);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (tls, pending, next, addr) =
            (tls.clone(), pending.clone(), next.clone(), sigil.api_addr);
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            let mut buf = Vec::with_capacity(8192);
            while start.elapsed() < secs {
                let who = if enroll {
                    match pending.get(next.fetch_add(1, Ordering::Relaxed)) {
                        Some(e) => Some(e),
                        None => break,
                    }
                } else {
                    None
                };
                let t0 = Instant::now();
                let tcp = TcpStream::connect(addr).await?;
                tcp.set_nodelay(true)?;
                let name = rustls_pki_types::ServerName::try_from("localhost")?;
                let mut stream = tls.connect(name, tcp).await?;
                let t1 = Instant::now();
                if let Some(e) = who {
                    let request = format!(
                        "POST /.well-known/est/simpleenroll HTTP/1.1\r\nHost: localhost\r\nAuthorization: Basic {}\r\nContent-Type: application/pkcs10\r\nContent-Transfer-Encoding: base64\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
                        e.basic,
                        e.csr_b64.len(),
                        e.csr_b64
                    );
                    let answer = exchange(&mut stream, request.as_bytes(), &mut buf).await?;
                    ensure!(
                        answer.status == 200 && !answer.body.is_empty(),
                        "simpleenroll: HTTP {} {}",
                        answer.status,
                        String::from_utf8_lossy(&answer.body)
                    );
                }
                let _ = stream.shutdown().await;
                samples.push((t1 - t0, t1.elapsed()));
            }
            Ok::<_, anyhow::Error>(samples)
        }));
    }
    let mut samples = Vec::new();
    for t in tasks {
        samples.extend(t.await??);
    }
    let elapsed = start.elapsed();
    let server_cpu = cpu_seconds(cpu) - cpu_before;
    let n = samples.len().max(1) as f64;
    let mean = |f: fn(&(Duration, Duration)) -> Duration| {
        samples.iter().map(|s| f(s).as_secs_f64()).sum::<f64>() * 1e3 / n
    };
    let (handshake_ms, request_ms) = (mean(|s| s.0), mean(|s| s.1));
    let mut totals: Vec<Duration> = samples.iter().map(|(h, r)| *h + *r).collect();
    totals.sort();
    Ok(EstLoad {
        rate: samples.len() as f64 / elapsed.as_secs_f64(),
        p50_ms: percentile(&totals, 0.5),
        p99_ms: percentile(&totals, 0.99),
        handshake_ms,
        request_ms,
        server_cpu_us: server_cpu * 1e6 / n,
    })
}

/// CPU time of the issuance work itself on one core: parse and verify the CSR, build and sign
/// the certificate.
fn signing_us(sigil: &Sigil, csrs: &[Enrollee]) -> Result<f64> {
    let key = sigil.issuing_key()?;
    let ca = sigil_ca::IssuingCa::load(
        &std::fs::read_to_string(sigil.data.join("ca/issuing.crt"))?,
        key,
        &std::fs::read_to_string(sigil.data.join("ca/root.crt"))?,
    )?;
    let urls = sigil_ca::PublicUrls::new("http://127.0.0.1:8080")?;
    let profile = sigil_ca::Profile::by_name(sigil_ca::DEFAULT_PROFILE)?;
    let now = time::OffsetDateTime::now_utc();
    let ders: Vec<Vec<u8>> = csrs
        .iter()
        .take(500)
        .map(|e| base64::engine::general_purpose::STANDARD.decode(&e.csr_b64))
        .collect::<Result<_, _>>()?;
    let t = Instant::now();
    for der in &ders {
        let csr = sigil_ca::ValidatedCsr::from_der(der)?;
        ca.issue_device_certificate(
            &csr,
            sigil_domain::DeviceId::generate(),
            profile,
            &sigil_ca::IdentityScheme::Urn,
            &urls,
            now,
        )?;
    }
    Ok(t.elapsed().as_secs_f64() * 1e6 / ders.len().max(1) as f64)
}

pub(crate) async fn est_bench(sigil: &Sigil, secs: Duration, budget: usize) -> Result<()> {
    eprintln!("registering {budget} devices with one-time enrolment tokens...");
    let pending = Arc::new(enrollees(sigil, budget).await?);
    let next = Arc::new(AtomicUsize::new(0));
    let mut roots = rustls::RootCertStore::empty();
    let root_pem = std::fs::read(sigil.data.join("ca/root.crt"))?;
    let root = pem::parse(&root_pem)?;
    roots.add(rustls_pki_types::CertificateDer::from(root.into_contents()))?;
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.resumption = rustls::client::Resumption::disabled();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());

    println!(
        "## EST enrolments per second
"
    );
    println!(
        "Each enrolment is a new device: TCP connect, full TLS 1.3 handshake (no resumption),          `POST /.well-known/est/simpleenroll` with HTTP Basic (device id, one-time token) and a          base64 PKCS#10 CSR (P-256), a PKCS#7 certs-only answer, then close. The token is          checked, consumed and the certificate stored and audited in one durable transaction.\n"
    );
    println!(
        "| concurrent devices | enrolments/s | p50 ms | p99 ms | TLS handshake ms (mean) | request ms (mean) | server CPU µs/enrolment |\n|---:|---:|---:|---:|---:|---:|---:|"
    );
    let mut at_16 = None;
    for clients in [1, 16, 64] {
        let l = est_load(sigil, &tls, &pending, &next, clients, secs, true).await?;
        println!(
            "| {clients} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {:.0} |",
            l.rate, l.p50_ms, l.p99_ms, l.handshake_ms, l.request_ms, l.server_cpu_us
        );
        if clients == 16 {
            at_16 = Some(l);
        }
    }
    if next.load(Ordering::Relaxed) >= pending.len() {
        eprintln!("note: all {budget} registered devices enrolled before the time was up");
    }
    let handshakes = est_load(sigil, &tls, &pending, &next, 16, secs, false).await?;
    let sign_us = signing_us(sigil, &pending)?;
    if let Some(l) = at_16 {
        let total = l.server_cpu_us.max(f64::MIN_POSITIVE);
        let tls_us = handshakes.server_cpu_us;
        let rest = (total - tls_us - sign_us).max(0.0);
        println!("\n### Where the server's time goes (16 concurrent devices)\n");
        println!("| part | server CPU µs per enrolment | share |\n|---|---:|---:|");
        println!(
            "| TLS handshake (ECDHE + server signature; measured alone: {:.0} handshakes/s) | {tls_us:.0} | {:.0}% |",
            handshakes.rate,
            100.0 * tls_us / total
        );
        println!(
            "| CSR proof-of-possession verify + certificate signing (library, one core) | {sign_us:.0} | {:.0}% |",
            100.0 * sign_us / total
        );
        println!(
            "| storage and the rest (token check and consume, issuance transaction with its audit entries, HTTP, base64, PKCS#7) | {rest:.0} | {:.0}% |",
            100.0 * rest / total
        );
        println!(
            "\nServer CPU alone would allow {:.0} enrolments/s on {cores} cores; measured {:.0}/s with the load generator (itself doing TLS client handshakes) on the same cores.\n",
            cores as f64 * 1e6 / total,
            l.rate
        );
    }
    Ok(())
}
