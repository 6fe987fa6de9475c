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

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use base64::Engine;
use clap::Parser;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use sigil_testkit::AdminClient;

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

// ---- a minimal HTTP/1.1 client ------------------------------------------------------------

struct HttpAnswer {
    status: u16,
    body: Vec<u8>,
    /// The server will take another request on this connection.
    keep_alive: bool,
}

/// Write `request` (a complete HTTP/1.1 request) and read one answer.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    request: &[u8],
    buf: &mut Vec<u8>,
) -> Result<HttpAnswer> {
    stream.write_all(request).await?;
    buf.clear();
    let mut chunk = [0u8; 4096];
    let header_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).await?;
        ensure!(n > 0, "connection closed before the response headers");
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = std::str::from_utf8(&buf[..header_end]).context("response headers")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("status line")?;
    let mut length = None;
    let mut keep_alive = status_line.starts_with("HTTP/1.1");
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = value.parse::<usize>().ok();
        } else if name.eq_ignore_ascii_case("connection") {
            keep_alive = value.eq_ignore_ascii_case("keep-alive");
        }
    }
    let mut body = buf[header_end..].to_vec();
    match length {
        Some(len) => {
            while body.len() < len {
                let n = stream.read(&mut chunk).await?;
                ensure!(n > 0, "connection closed inside the body");
                body.extend_from_slice(&chunk[..n]);
            }
            body.truncate(len);
        }
        None => {
            stream.read_to_end(&mut body).await?;
            keep_alive = false;
        }
    }
    Ok(HttpAnswer {
        status,
        body,
        keep_alive,
    })
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    sorted
        .get(((sorted.len() as f64 * p) as usize).min(sorted.len().saturating_sub(1)))
        .map_or(0.0, |d| d.as_secs_f64() * 1e3)
}

// ---- OCSP ---------------------------------------------------------------------------------

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

/// Where to read a responder's CPU time from.
#[derive(Clone, Copy)]
enum CpuOf {
    /// This process's threads whose name starts with this (the in-process server runtime).
    Threads(&'static str),
    /// Every process in this process group (openssl and its `-multi` workers).
    ProcessGroup(u32),
}

/// utime + stime in seconds from a `/proc/.../stat` line (fields 14 and 15, after the
/// parenthesised command name).
fn stat_cpu_seconds(stat: &str) -> Option<(f64, i64)> {
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    // After the name: state(0) ppid(1) pgrp(2) ... utime(11) stime(12).
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    let pgrp: i64 = fields.get(2)?.parse().ok()?;
    // USER_HZ is 100 on Linux.
    Some((ticks / 100.0, pgrp))
}

fn cpu_seconds(of: CpuOf) -> f64 {
    let read_dir = |dir: &str| std::fs::read_dir(dir).into_iter().flatten().flatten();
    match of {
        CpuOf::Threads(prefix) => read_dir("/proc/self/task")
            .filter(|t| {
                std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.starts_with(prefix))
            })
            .filter_map(|t| std::fs::read_to_string(t.path().join("stat")).ok())
            .filter_map(|s| stat_cpu_seconds(&s).map(|(cpu, _)| cpu))
            .sum(),
        CpuOf::ProcessGroup(group) => read_dir("/proc")
            .filter_map(|p| std::fs::read_to_string(p.path().join("stat")).ok())
            .filter_map(|s| stat_cpu_seconds(&s))
            .filter(|(_, pgrp)| *pgrp == i64::from(group))
            .map(|(cpu, _)| cpu)
            .sum(),
    }
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

/// `openssl ocsp` as a responder; killed on drop.
struct OpensslResponder(Child);

impl OpensslResponder {
    fn cpu(&self) -> CpuOf {
        CpuOf::ProcessGroup(self.0.id())
    }
}

impl Drop for OpensslResponder {
    fn drop(&mut self) {
        // `-multi` forks workers: end the whole process group.
        let _ = Command::new("kill")
            .args(["-TERM", "--", &format!("-{}", self.0.id())])
            .status();
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn start_openssl_responder(dir: &Path, port: u16, multi: Option<u32>) -> Result<OpensslResponder> {
    let port_arg = port.to_string();
    let mut args = vec![
        "ocsp",
        "-index",
        "index.txt",
        "-port",
        &port_arg,
        "-rsigner",
        "issuing.crt",
        "-rkey",
        "issuing.key",
        "-CA",
        "issuing.crt",
        "-nmin",
        "15",
    ];
    let workers = multi.map(|m| m.to_string());
    if let Some(w) = &workers {
        args.extend(["-multi", w]);
    }
    use std::os::unix::process::CommandExt;
    let child = Command::new("openssl")
        .args(&args)
        .process_group(0)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting openssl ocsp")?;
    let responder = OpensslResponder(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    // Wait for the port to be taken. Not by connecting: openssl 3.0's responder spins forever on
    // a connection closed before it sent a request, and serves nobody after it.
    while std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
        ensure!(
            Instant::now() < deadline,
            "openssl ocsp did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(responder)
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

async fn ocsp_bench(sigil: &Sigil, work: &Path, args: &Args, secs: Duration) -> Result<()> {
    let dir = work.join("ocsp");
    std::fs::create_dir_all(&dir)?;
    std::fs::copy(sigil.data.join("ca/issuing.crt"), dir.join("issuing.crt"))?;
    std::fs::copy(sigil.data.join("ca/root.crt"), dir.join("root.crt"))?;

    // The certificate set: issued through the API, a tenth revoked (keyCompromise).
    let n = args.certificates.max(10);
    eprintln!("issuing {n} certificates for the OCSP set...");
    let devices = sigil.devices(n, "ocsp").await?;
    let mut index = String::new();
    let mut serials = Vec::with_capacity(n);
    for (i, device) in devices.iter().enumerate() {
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
        let revoked = i % 10 == 0;
        if revoked {
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
            index.push_str(&format!(
                "R\t{expiry}\t{},keyCompromise\t{serial}\tunknown\t/CN={device}\n",
                openssl_time(revoked_at)?
            ));
        } else {
            index.push_str(&format!("V\t{expiry}\t\t{serial}\tunknown\t/CN={device}\n"));
        }
        serials.push((serial, revoked));
    }
    std::fs::write(dir.join("index.txt"), index)?;
    std::fs::write(dir.join("index.txt.attr"), "unique_subject = no\n")?;
    // openssl needs the issuing key in the clear: decrypt it once, for this benchmark only.
    std::fs::write(
        dir.join("issuing.key"),
        sigil.issuing_key()?.serialize_pem(),
    )?;

    // The same requests for both servers, made by openssl: with no nonce (as browsers, TLS
    // stacks and brokers ask) and with one (a fresh signature per answer).
    eprintln!("writing OCSP requests with openssl...");
    let mut plain = Vec::with_capacity(n);
    let mut nonced = Vec::with_capacity(n);
    for (i, (serial, _)) in serials.iter().enumerate() {
        let serial_arg = format!("0x{serial}");
        let name = format!("req-{i}.der");
        openssl(
            &dir,
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
            &dir,
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
    let plain = Arc::new(plain);
    let nonced = Arc::new(nonced);

    let openssl_port = free_port()?;
    // openssl's responder answers POSTs to `/` only.
    let openssl_at = (
        std::net::SocketAddr::from(([127, 0, 0, 1], openssl_port)),
        "/",
    );
    let sigil_at = (sigil.pki_addr, "/ocsp");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());

    // Correctness first: both servers' answers for a good and a revoked serial verify, and say
    // the same thing.
    let (revoked_i, _) = serials
        .iter()
        .enumerate()
        .find(|(_, (_, r))| *r)
        .context("a revoked serial")?;
    let good_i = (revoked_i + 1) % serials.len();
    {
        let _responder = start_openssl_responder(&dir, openssl_port, None)?;
        for (label, addr) in [("sigil", sigil_at), ("openssl", openssl_at)] {
            for (i, expect) in [(good_i, "good"), (revoked_i, "revoked")] {
                let text = verified_answer(
                    &dir,
                    addr,
                    &plain[i],
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
    }
    eprintln!("answers from both responders verified with openssl");

    println!("## OCSP responses per second\n");
    println!(
        "{} certificates, one in ten revoked; the same DER requests (from `openssl ocsp -reqout`) sent \
         round robin over {} connections; HTTP/1.1 keep-alive where the server allows it.\n",
        n, args.connections
    );
    println!(
        "| responder | requests | responses/s | p50 ms | p99 ms | TCP connections opened | responder CPU µs/response | responder alone on {cores} cores, responses/s |\n|---|---|---:|---:|---:|---:|---:|---:|"
    );
    let mut openssl_best: (f64, f64) = (0.0, 0.0);
    let capacity = |l: &Load| cores as f64 * 1e6 / l.server_cpu_us.max(f64::MIN_POSITIVE);
    let row = |name: &str, kind: &str, l: &Load| {
        println!(
            "| {name} | {kind} | {:.0} | {:.2} | {:.2} | {} | {:.1} | {:.0} |",
            l.rate,
            l.p50_ms,
            l.p99_ms,
            l.connections_opened,
            l.server_cpu_us,
            capacity(l)
        );
    };
    // Warm Sigil's cache the way production traffic would: the first pass signs, later ones hit.
    let sigil_cpu = CpuOf::Threads("sigil-server");
    ocsp_load(
        sigil_at,
        &plain,
        args.connections,
        Duration::from_secs(1),
        sigil_cpu,
    )
    .await?;
    let l = ocsp_load(sigil_at, &plain, args.connections, secs, sigil_cpu).await?;
    row("Sigil", "no nonce (cached answers)", &l);
    let sigil_cached = (l.rate, capacity(&l));
    let l = ocsp_load(sigil_at, &nonced, args.connections, secs, sigil_cpu).await?;
    row("Sigil", "with nonce (signed per request)", &l);
    for multi in [None, Some(cores as u32)] {
        let responder = start_openssl_responder(&dir, openssl_port, multi)?;
        let name = match multi {
            None => "`openssl ocsp -index` (one process)".to_owned(),
            Some(m) => format!("`openssl ocsp -index -multi {m}`"),
        };
        for (kind, reqs) in [("no nonce", &plain), ("with nonce", &nonced)] {
            let l = ocsp_load(openssl_at, reqs, args.connections, secs, responder.cpu()).await?;
            row(&name, kind, &l);
            openssl_best = (openssl_best.0.max(l.rate), openssl_best.1.max(capacity(&l)));
        }
    }
    println!(
        "\nSigil (cached) / best `openssl ocsp`: **{:.1}x** measured, **{:.1}x** in responder CPU per response\n",
        sigil_cached.0 / openssl_best.0.max(f64::MIN_POSITIVE),
        sigil_cached.1 / openssl_best.1.max(f64::MIN_POSITIVE)
    );
    Ok(())
}

/// openssl's index.txt time: `YYMMDDHHMMSSZ`.
fn openssl_time(t: time::OffsetDateTime) -> Result<String> {
    let f = time::macros::format_description!(
        "[year repr:last_two][month][day][hour][minute][second]Z"
    );
    Ok(t.format(&f)?)
}

// ---- EST ----------------------------------------------------------------------------------

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

async fn est_bench(sigil: &Sigil, secs: Duration, budget: usize) -> Result<()> {
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
