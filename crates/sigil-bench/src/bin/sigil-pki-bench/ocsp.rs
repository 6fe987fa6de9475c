//! OCSP: Sigil's responder against `openssl ocsp -index` for the same CA, the same revocation
//! set and the same requests.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::json;
use tokio::net::TcpStream;

use crate::cpu::{CpuOf, cpu_seconds};
use crate::http::exchange;
use crate::responder::{free_port, start_openssl_responder};
use crate::{Args, Sigil, openssl, percentile};

/// An `OCSPResponse` whose status is `successful` (the enumerated value right after the
/// outer SEQUENCE header).
fn is_successful_ocsp(body: &[u8]) -> bool {
    let header = match body.get(1) {
        Some(&len) if len < 0x80 => 2,
        Some(&len) => 2 + usize::from(len & 0x7f),
        None => return false,
    };
    body.first() == Some(&0x30) && body.get(header..header + 3) == Some(&[0x0a, 0x01, 0x00])
}

struct Load {
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
    connections_opened: usize,
    /// CPU time the responder spent per response (its threads or processes only, not the
    /// load generator's), in microseconds.
    server_cpu_us: f64,
}

/// `connections` clients POSTing `requests` round robin to `addr` for `secs`.
async fn ocsp_load(
    (addr, path): (std::net::SocketAddr, &'static str),
    requests: &Arc<Vec<Vec<u8>>>,
    connections: usize,
    secs: Duration,
    cpu_of: CpuOf,
) -> Result<Load> {
    let cpu_before = cpu_seconds(cpu_of);
    let start = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let opened = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (requests, next, opened) = (requests.clone(), next.clone(), opened.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut buf = Vec::with_capacity(8192);
            let mut stream: Option<TcpStream> = None;
            while start.elapsed() < secs {
                let body = &requests[next.fetch_add(1, Ordering::Relaxed) % requests.len()];
                let mut request = format!(
                    "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/ocsp-request\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                )
                .into_bytes();
                request.extend_from_slice(body);
                let t = Instant::now();
                let mut conn = match stream.take() {
                    Some(c) => c,
                    None => {
                        opened.fetch_add(1, Ordering::Relaxed);
                        let c = TcpStream::connect(addr).await?;
                        c.set_nodelay(true)?;
                        c
                    }
                };
                let answer = exchange(&mut conn, &request, &mut buf).await?;
                latencies.push(t.elapsed());
                if answer.status != 200 || !is_successful_ocsp(&answer.body) {
                    bail!("not a successful OCSP response (HTTP {})", answer.status);
                }
                if answer.keep_alive {
                    stream = Some(conn);
                }
            }
            Ok::<_, anyhow::Error>(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await??);
    }
    let elapsed = start.elapsed();
    let server_cpu = cpu_seconds(cpu_of) - cpu_before;
    latencies.sort();
    Ok(Load {
        server_cpu_us: server_cpu * 1e6 / latencies.len().max(1) as f64,
        rate: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50_ms: percentile(&latencies, 0.5),
        p99_ms: percentile(&latencies, 0.99),
        connections_opened: opened.load(Ordering::Relaxed),
    })
}

/// One answer from `addr` to `req` (about `serial`), verified by `openssl ocsp -respin`;
/// openssl's verdict text.
async fn verified_answer(
    dir: &Path,
    (addr, path): (std::net::SocketAddr, &'static str),
    req: &[u8],
    serial: &str,
    name: &str,
) -> Result<String> {
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/ocsp-request\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        req.len()
    )
    .into_bytes();
    request.extend_from_slice(req);
    let mut conn = TcpStream::connect(addr).await?;
    let answer = exchange(&mut conn, &request, &mut Vec::new()).await?;
    std::fs::write(dir.join(name), &answer.body)?;
    let serial = format!("0x{serial}");
    openssl(
        dir,
        &[
            "ocsp",
            "-respin",
            name,
            "-issuer",
            "issuing.crt",
            "-CAfile",
            "root.crt",
            "-serial",
            &serial,
        ],
    )
}

/// Where a responder takes OCSP requests: its address and the path it answers POSTs on.
type Endpoint = (std::net::SocketAddr, &'static str);

/// DER OCSP requests, one per certificate of the set.
type Requests = Vec<Vec<u8>>;

/// A certificate of the OCSP set: its serial (upper-case hex) and whether it is revoked.
type Serial = (String, bool);

pub(crate) async fn ocsp_bench(
    sigil: &Sigil,
    work: &Path,
    args: &Args,
    secs: Duration,
) -> Result<()> {
    let dir = work.join("ocsp");
    std::fs::create_dir_all(&dir)?;
    std::fs::copy(sigil.data.join("ca/issuing.crt"), dir.join("issuing.crt"))?;
    std::fs::copy(sigil.data.join("ca/root.crt"), dir.join("root.crt"))?;

    // The certificate set: issued through the API, a tenth revoked (keyCompromise).
    let n = args.certificates.max(10);
    let serials = issue_set(sigil, &dir, n).await?;
    // openssl needs the issuing key in the clear: decrypt it once, for this benchmark only.
    std::fs::write(
        dir.join("issuing.key"),
        sigil.issuing_key()?.serialize_pem(),
    )?;

    let (plain, nonced) = write_requests(&dir, &serials)?;
    let openssl_port = free_port()?;
    let run = OcspRun {
        dir,
        plain: Arc::new(plain),
        nonced: Arc::new(nonced),
        openssl_port,
        // openssl's responder answers POSTs to `/` only.
        openssl_at: (
            std::net::SocketAddr::from(([127, 0, 0, 1], openssl_port)),
            "/",
        ),
        sigil_at: (sigil.pki_addr, "/ocsp"),
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        connections: args.connections,
        secs,
    };
    run.verify_answers(&serials).await?;
    eprintln!("answers from both responders verified with openssl");
    run.measure(n).await
}

/// Issue `n` certificates through the API, revoke every tenth, and write openssl's
/// `index.txt` (and its `.attr`) for the same set into `dir`.
async fn issue_set(sigil: &Sigil, dir: &Path, n: usize) -> Result<Vec<Serial>> {
    eprintln!("issuing {n} certificates for the OCSP set...");
    let devices = sigil.devices(n, "ocsp").await?;
    let mut index = String::new();
    let mut serials = Vec::with_capacity(n);
    for (i, device) in devices.iter().enumerate() {
        let revoked = i % 10 == 0;
        let (serial, line) = issue_one(sigil, device, revoked).await?;
        index.push_str(&line);
        serials.push((serial, revoked));
    }
    std::fs::write(dir.join("index.txt"), index)?;
    std::fs::write(dir.join("index.txt.attr"), "unique_subject = no\n")?;
    Ok(serials)
}

/// Issue one certificate to `device` (and revoke it if `revoked`): its serial and its
/// `index.txt` line.
async fn issue_one(sigil: &Sigil, device: &str, revoked: bool) -> Result<(String, String)> {
    let pem = sigil_testkit::csr::fresh_csr_pem();
    let cert = sigil
        .post(
            &format!("/api/v1/devices/{device}/certificates"),
            json!({"csr": pem}),
        )
        .await?;
    let serial = cert["serial"].as_str().context("serial")?.to_uppercase();
    let not_after = time::OffsetDateTime::parse(
        cert["not_after"].as_str().context("not_after")?,
        &time::format_description::well_known::Rfc3339,
    )?;
    let expiry = openssl_time(not_after)?;
    if !revoked {
        let line = format!("V\t{expiry}\t\t{serial}\tunknown\t/CN={device}\n");
        return Ok((serial, line));
    }
    let r = sigil
        .post(
            &format!("/api/v1/devices/{device}/revoke"),
            json!({"reason": "keyCompromise"}),
        )
        .await?;
    let at = sigil
        .get(&format!("/api/v1/certificates/{}", serial.to_lowercase()))
        .await?;
    ensure!(r["revoked"].as_array().is_some_and(|a| !a.is_empty()));
    let revoked_at = time::OffsetDateTime::parse(
        at["revoked_at"].as_str().context("revoked_at")?,
        &time::format_description::well_known::Rfc3339,
    )?;
    let line = format!(
        "R\t{expiry}\t{},keyCompromise\t{serial}\tunknown\t/CN={device}\n",
        openssl_time(revoked_at)?
    );
    Ok((serial, line))
}

/// The same requests for both servers, made by openssl: with no nonce (as browsers, TLS
/// stacks and brokers ask) and with one (a fresh signature per answer).
fn write_requests(dir: &Path, serials: &[Serial]) -> Result<(Requests, Requests)> {
    eprintln!("writing OCSP requests with openssl...");
    let mut plain = Vec::with_capacity(serials.len());
    let mut nonced = Vec::with_capacity(serials.len());
    for (i, (serial, _)) in serials.iter().enumerate() {
        let serial_arg = format!("0x{serial}");
        let name = format!("req-{i}.der");
        openssl(
            dir,
            &[
                "ocsp",
                "-issuer",
                "issuing.crt",
                "-serial",
                &serial_arg,
                "-no_nonce",
                "-reqout",
                &name,
            ],
        )?;
        plain.push(std::fs::read(dir.join(&name))?);
        openssl(
            dir,
            &[
                "ocsp",
                "-issuer",
                "issuing.crt",
                "-serial",
                &serial_arg,
                "-reqout",
                "nonce.der",
            ],
        )?;
        nonced.push(std::fs::read(dir.join("nonce.der"))?);
    }
    Ok((plain, nonced))
}

/// What the OCSP measurements share: the requests and both responders.
struct OcspRun {
    /// openssl's working directory: the CA files, `index.txt`, the requests.
    dir: PathBuf,
    /// Requests without a nonce.
    plain: Arc<Requests>,
    /// Requests with a nonce.
    nonced: Arc<Requests>,
    openssl_port: u16,
    openssl_at: Endpoint,
    sigil_at: Endpoint,
    cores: usize,
    connections: usize,
    secs: Duration,
}

impl OcspRun {
    /// Correctness first: both servers' answers for a good and a revoked serial verify, and
    /// say the same thing.
    async fn verify_answers(&self, serials: &[Serial]) -> Result<()> {
        let (revoked_i, _) = serials
            .iter()
            .enumerate()
            .find(|(_, (_, r))| *r)
            .context("a revoked serial")?;
        let good_i = (revoked_i + 1) % serials.len();
        let _responder = start_openssl_responder(&self.dir, self.openssl_port, None)?;
        for (label, addr) in [("sigil", self.sigil_at), ("openssl", self.openssl_at)] {
            for (i, expect) in [(good_i, "good"), (revoked_i, "revoked")] {
                let text = verified_answer(
                    &self.dir,
                    addr,
                    &self.plain[i],
                    &serials[i].0,
                    &format!("{label}-{expect}.der"),
                )
                .await?;
                ensure!(
                    text.contains("Response verify OK") && text.contains(&format!(": {expect}")),
                    "{label} for a {expect} serial: {text}"
                );
            }
        }
        Ok(())
    }

    /// The table: Sigil without and with nonces, then openssl as one process and with
    /// `-multi`, and the ratio of Sigil's cached rate to openssl's best.
    async fn measure(&self, n: usize) -> Result<()> {
        let cores = self.cores;
        println!("## OCSP responses per second\n");
        println!(
            "{} certificates, one in ten revoked; the same DER requests (from `openssl ocsp -reqout`) sent \
             round robin over {} connections; HTTP/1.1 keep-alive where the server allows it.\n",
            n, self.connections
        );
        println!(
            "| responder | requests | responses/s | p50 ms | p99 ms | TCP connections opened | responder CPU µs/response | responder alone on {cores} cores, responses/s |\n|---|---|---:|---:|---:|---:|---:|---:|"
        );
        // Warm Sigil's cache the way production traffic would: the first pass signs, later ones hit.
        let sigil_cpu = CpuOf::Threads("sigil-server");
        ocsp_load(
            self.sigil_at,
            &self.plain,
            self.connections,
            Duration::from_secs(1),
            sigil_cpu,
        )
        .await?;
        let l = self.load(self.sigil_at, &self.plain, sigil_cpu).await?;
        self.row("Sigil", "no nonce (cached answers)", &l);
        let sigil_cached = (l.rate, self.capacity(&l));
        let l = self.load(self.sigil_at, &self.nonced, sigil_cpu).await?;
        self.row("Sigil", "with nonce (signed per request)", &l);
        let openssl_best = self.openssl_rows().await?;
        println!(
            "\nSigil (cached) / best `openssl ocsp`: **{:.1}x** measured, **{:.1}x** in responder CPU per response\n",
            sigil_cached.0 / openssl_best.0.max(f64::MIN_POSITIVE),
            sigil_cached.1 / openssl_best.1.max(f64::MIN_POSITIVE)
        );
        Ok(())
    }

    /// `openssl ocsp` as one process and with one worker per core, without and with nonces;
    /// its best rate and best capacity.
    async fn openssl_rows(&self) -> Result<(f64, f64)> {
        let mut openssl_best: (f64, f64) = (0.0, 0.0);
        for multi in [None, Some(self.cores as u32)] {
            let responder = start_openssl_responder(&self.dir, self.openssl_port, multi)?;
            let name = match multi {
                None => "`openssl ocsp -index` (one process)".to_owned(),
                Some(m) => format!("`openssl ocsp -index -multi {m}`"),
            };
            for (kind, reqs) in [("no nonce", &self.plain), ("with nonce", &self.nonced)] {
                let l = self.load(self.openssl_at, reqs, responder.cpu()).await?;
                self.row(&name, kind, &l);
                openssl_best = (
                    openssl_best.0.max(l.rate),
                    openssl_best.1.max(self.capacity(&l)),
                );
            }
        }
        Ok(openssl_best)
    }

    /// One timed measurement over all the connections.
    async fn load(&self, at: Endpoint, requests: &Arc<Requests>, cpu_of: CpuOf) -> Result<Load> {
        ocsp_load(at, requests, self.connections, self.secs, cpu_of).await
    }

    /// Responses per second the responder alone could serve on every core, from its CPU time.
    fn capacity(&self, l: &Load) -> f64 {
        self.cores as f64 * 1e6 / l.server_cpu_us.max(f64::MIN_POSITIVE)
    }

    fn row(&self, name: &str, kind: &str, l: &Load) {
        println!(
            "| {name} | {kind} | {:.0} | {:.2} | {:.2} | {} | {:.1} | {:.0} |",
            l.rate,
            l.p50_ms,
            l.p99_ms,
            l.connections_opened,
            l.server_cpu_us,
            self.capacity(l)
        );
    }
}

/// openssl's index.txt time: `YYMMDDHHMMSSZ`.
fn openssl_time(t: time::OffsetDateTime) -> Result<String> {
    let f = time::macros::format_description!(
        "[year repr:last_two][month][day][hour][minute][second]Z"
    );
    Ok(t.format(&f)?)
}
