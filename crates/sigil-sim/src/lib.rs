//! The fleet simulator: N device agents (the real `sigil-agent` library, each with its own key,
//! state directory and identity) against a real Sigil server started here, through a TCP proxy
//! that can drop connections and slow them down, with a server restart in the middle. Devices
//! are registered through the API and enrol with one-time tokens over EST; certificates are
//! short-lived (`device-minutes`, 5 minutes) so rotations happen. At the end every device's
//! identity is checked against the server.
//!
//! Agents renew at two thirds of the lifetime by default (about 4 minutes); `renew_fraction`
//! makes them renew earlier, so a test sees several rotations in seconds. Time is never faked:
//! server, agents and TLS all use the real clock.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use x509_parser::prelude::{FromDer, X509Certificate};

use sigil_agent::{AgentEvent, EnrollCredential, EnrollOptions, RunOptions, StateDir};
use sigil_testkit::AdminClient;

pub mod monitor;
pub mod rollout;

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("server: {0}")]
    Server(#[from] sigil_server::ServerError),
    #[error("API: {0}")]
    Api(String),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub devices: usize,
    /// Renewals each device must complete.
    pub rotations: u64,
    /// When in a certificate's life agents renew (default 2/3).
    pub renew_fraction: f64,
    /// Restart the server once, when half the rotations are done.
    pub restart: bool,
    /// Share of new connections the proxy drops at once.
    pub drop_rate: f64,
    /// Share of new connections the proxy delays by `slow_delay`.
    pub slow_rate: f64,
    pub slow_delay: Duration,
    /// Enrolments in flight at once.
    pub concurrency: usize,
    /// `None`: SQLite in the work directory.
    pub database_url: Option<String>,
    /// Print a progress line to stderr every second.
    pub progress: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            devices: 200,
            rotations: 2,
            renew_fraction: sigil_agent::DEFAULT_RENEW_FRACTION,
            restart: true,
            drop_rate: 0.02,
            slow_rate: 0.02,
            slow_delay: Duration::from_millis(500),
            concurrency: 64,
            database_url: None,
            progress: false,
        }
    }
}

#[derive(Debug, Default, Clone)]
pub struct Summary {
    pub devices: usize,
    pub enrolled: usize,
    pub rotations: u64,
    pub restarts: u32,
    pub dropped_connections: u64,
    pub slowed_connections: u64,
    /// Failed attempts (enrolment or renewal) by cause; most were retried.
    pub failures: BTreeMap<String, u64>,
    pub enrol_p50_ms: f64,
    pub enrol_p99_ms: f64,
    pub renew_p50_ms: f64,
    pub renew_p99_ms: f64,
    /// Devices that ended without a stored identity.
    pub identities_lost: usize,
    /// Devices whose identity is not a valid, unrevoked certificate the server knows, and why.
    pub inconsistent: Vec<String>,
    pub elapsed: Duration,
}

impl Summary {
    pub fn ok(&self) -> bool {
        self.identities_lost == 0 && self.inconsistent.is_empty() && self.enrolled == self.devices
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "| | |\n|---|---:|")?;
        writeln!(f, "| devices | {} |", self.devices)?;
        writeln!(f, "| enrolled | {} |", self.enrolled)?;
        writeln!(f, "| rotations | {} |", self.rotations)?;
        writeln!(f, "| server restarts | {} |", self.restarts)?;
        writeln!(
            f,
            "| connections dropped by the proxy | {} |",
            self.dropped_connections
        )?;
        writeln!(
            f,
            "| connections slowed by the proxy | {} |",
            self.slowed_connections
        )?;
        for (cause, n) in &self.failures {
            writeln!(f, "| failed attempts: {cause} | {n} |")?;
        }
        writeln!(
            f,
            "| enrolment p50 / p99 ms | {:.1} / {:.1} |",
            self.enrol_p50_ms, self.enrol_p99_ms
        )?;
        writeln!(
            f,
            "| renewal p50 / p99 ms | {:.1} / {:.1} |",
            self.renew_p50_ms, self.renew_p99_ms
        )?;
        writeln!(f, "| identities lost | {} |", self.identities_lost)?;
        writeln!(
            f,
            "| inconsistent with the server | {} |",
            self.inconsistent.len()
        )?;
        writeln!(f, "| elapsed | {:.1} s |", self.elapsed.as_secs_f64())?;
        for i in self.inconsistent.iter().take(10) {
            writeln!(f, "\n- {i}")?;
        }
        Ok(())
    }
}

/// A TCP proxy in front of the API listener that drops or delays some new connections.
struct Proxy {
    addr: SocketAddr,
    dropped: Arc<AtomicU64>,
    slowed: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

fn chance() -> f64 {
    sigil_agent::random_fraction()
}

impl Proxy {
    async fn start(upstream: SocketAddr, config: &SimConfig) -> Result<Self, SimError> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (dropped, slowed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (d, s, config) = (dropped.clone(), slowed.clone(), config.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    continue;
                };
                if chance() < config.drop_rate {
                    d.fetch_add(1, Ordering::Relaxed);
                    drop(client);
                    continue;
                }
                let delay = if chance() < config.slow_rate {
                    s.fetch_add(1, Ordering::Relaxed);
                    config.slow_delay
                } else {
                    Duration::ZERO
                };
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        Ok(Self {
            addr,
            dropped,
            slowed,
            task,
        })
    }
}

pub(crate) fn server_config(
    work: &Path,
    listen: SocketAddr,
    database_url: &str,
) -> sigil_server::ServerConfig {
    let mut config = sigil_server::ServerConfig::new(work.join("data"));
    config.database_url = Some(database_url.to_owned());
    config.listen = listen;
    config.pki_listen = "127.0.0.1:0".parse().unwrap_or(listen);
    config.enrollment_profile = "device-minutes".into();
    config
}

fn percentiles(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort();
    let at = |p: f64| {
        v.get(((v.len() as f64 * p) as usize).min(v.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    (at(0.5), at(0.99))
}

/// What each device task reports at its end.
struct DeviceOutcome {
    device: String,
    state: PathBuf,
    enrol_latency: Option<Duration>,
}

/// The server under test. A restart starts it again on the same API address and database.
struct SimServer {
    handle: Option<sigil_server::ServerHandle>,
    api_addr: SocketAddr,
    database_url: String,
    /// The API as the administrator, for registration and the final checks.
    admin: Arc<AdminClient>,
    /// SHA-256 of the root certificate, hex: what agents pin when they enrol.
    fingerprint: String,
}

impl SimServer {
    async fn start(config: &SimConfig, work: &Path) -> Result<Self, SimError> {
        let database_url = config
            .database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", work.join("sigil.db").display()));
        let handle = sigil_server::start(
            server_config(
                work,
                "127.0.0.1:0".parse().unwrap_or(([127, 0, 0, 1], 0).into()),
                &database_url,
            ),
            sigil_server::system_clock(),
        )
        .await?;
        let api_addr = handle.api_addr;
        let root_pem = std::fs::read(work.join("data/ca/root.crt"))?;
        let root_der = pem::parse(&root_pem)
            .map_err(|e| SimError::Api(e.to_string()))?
            .into_contents();
        let fingerprint = hex::encode(sigil_ca::sha256(&root_der));
        let token = handle.new_admin_token.clone().unwrap_or_default();
        let admin = Arc::new(
            AdminClient::new(&work.join("data"), api_addr.port(), &token).map_err(SimError::Api)?,
        );
        Ok(Self {
            handle: Some(handle),
            api_addr,
            database_url,
            admin,
            fingerprint,
        })
    }

    async fn restart(&mut self, work: &Path) -> Result<(), SimError> {
        self.shutdown().await;
        self.handle = Some(
            sigil_server::start(
                server_config(work, self.api_addr, &self.database_url),
                sigil_server::system_clock(),
            )
            .await?,
        );
        Ok(())
    }

    async fn shutdown(&mut self) {
        if let Some(h) = self.handle.take() {
            h.shutdown().await;
        }
    }
}

/// Run the simulation in `work` (which must exist and be empty).
pub async fn simulate(config: &SimConfig, work: &Path) -> Result<Summary, SimError> {
    let started = Instant::now();
    let mut server = SimServer::start(config, work).await?;
    let proxy = Proxy::start(server.api_addr, config).await?;
    let registrations = register_devices(&server.admin, config.devices).await?;
    let mut fleet = Fleet::spawn(config, work, registrations, &server.fingerprint, proxy.addr);
    fleet.watch(config, work, started, &mut server).await?;
    fleet.drain_events().await;
    if config.progress {
        eprintln!();
    }
    let mut summary = fleet.summary;
    summary.dropped_connections = proxy.dropped.load(Ordering::Relaxed);
    summary.slowed_connections = proxy.slowed.load(Ordering::Relaxed);
    proxy.task.abort();

    let enrol_latencies: Vec<Duration> = fleet
        .outcomes
        .iter()
        .filter_map(|o| o.enrol_latency)
        .collect();
    summary.enrolled = enrol_latencies.len();
    (summary.enrol_p50_ms, summary.enrol_p99_ms) = percentiles(enrol_latencies);
    (summary.renew_p50_ms, summary.renew_p99_ms) = percentiles(fleet.renew_latencies);
    check_fleet(&server.admin, &fleet.outcomes, &mut summary).await;
    server.shutdown().await;
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// Register every device and a one-time token for it, through the API: (device id, token).
async fn register_devices(
    admin: &Arc<AdminClient>,
    devices: usize,
) -> Result<Vec<(String, String)>, SimError> {
    let product = admin
        .try_post(
            "/api/v1/products",
            json!({"name": "simulated sensor", "manufacturer": "Sigil Sim", "support_end": "2035-01-01"}),
        )
        .await
        .map_err(SimError::Api)?;
    let product_id = product["id"].as_str().unwrap_or_default().to_owned();
    let registrations: Vec<Result<(String, String), SimError>> =
        futures_util::stream::iter(0..devices)
            .map(|i| register_device(admin.clone(), product_id.clone(), i))
            .buffer_unordered(16)
            .collect()
            .await;
    registrations.into_iter().collect()
}

async fn register_device(
    admin: Arc<AdminClient>,
    product_id: String,
    i: usize,
) -> Result<(String, String), SimError> {
    let d = admin
        .try_post(
            "/api/v1/devices",
            json!({"product_id": product_id, "serial_number": format!("SIM-{i:06}")}),
        )
        .await
        .map_err(SimError::Api)?;
    let id = d["id"].as_str().unwrap_or_default().to_owned();
    let t = admin
        .try_post(
            &format!("/api/v1/devices/{id}/enrollment-tokens"),
            json!({}),
        )
        .await
        .map_err(SimError::Api)?;
    Ok((id, t["token"].as_str().unwrap_or_default().to_owned()))
}

/// What every device task shares.
#[derive(Clone)]
struct AgentContext {
    server_url: String,
    fingerprint: String,
    /// Bounds the enrolments in flight at once.
    enrolments: Arc<tokio::sync::Semaphore>,
    events: tokio::sync::mpsc::UnboundedSender<(String, AgentEvent)>,
    enrolled: Arc<AtomicU64>,
    rotations: u64,
    renew_fraction: f64,
    poll: Duration,
}

/// One device's life: enrol (retrying transient failures), then run until it has rotated
/// enough.
async fn run_device(
    ctx: AgentContext,
    device: String,
    token: String,
    state_path: PathBuf,
) -> DeviceOutcome {
    let mut outcome = DeviceOutcome {
        device: device.clone(),
        state: state_path.clone(),
        enrol_latency: None,
    };
    let Ok(state) = StateDir::open(&state_path) else {
        return outcome;
    };
    let options = EnrollOptions {
        server: ctx.server_url.clone(),
        ca_fingerprint: ctx.fingerprint.clone(),
        device_id: device.clone(),
        credential: EnrollCredential::Token(token),
    };
    outcome.enrol_latency = enrol(&ctx, &state, &options).await;
    if outcome.enrol_latency.is_none() {
        return outcome;
    }
    run_agent(&ctx, &state, &device).await;
    outcome
}

/// Enrol with up to 30 attempts and jittered exponential backoff; the latency of the attempt
/// that succeeded. Every failed attempt is reported as an event.
async fn enrol(ctx: &AgentContext, state: &StateDir, options: &EnrollOptions) -> Option<Duration> {
    let mut backoff = Duration::from_millis(200);
    for _ in 0..30 {
        let permit = ctx.enrolments.acquire().await;
        let t = Instant::now();
        let result = sigil_agent::enroll(state, options).await;
        drop(permit);
        match result {
            Ok(_) => {
                let latency = t.elapsed();
                ctx.enrolled.fetch_add(1, Ordering::Relaxed);
                return Some(latency);
            }
            Err(e) => {
                let _ = ctx.events.send((
                    options.device_id.clone(),
                    AgentEvent::RenewalFailed {
                        kind: enrol_kind(&e),
                    },
                ));
                if !e.is_transient() {
                    return None;
                }
                tokio::time::sleep(backoff.mul_f64(0.5 + chance() / 2.0)).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
    None
}

/// Run the enrolled agent until it has renewed `rotations` times, forwarding its events.
async fn run_agent(ctx: &AgentContext, state: &StateDir, device: &str) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let forward = {
        let (events_tx, device) = (ctx.events.clone(), device.to_owned());
        tokio::spawn(async move {
            while let Some(e) = rx.recv().await {
                let _ = events_tx.send((device.clone(), e));
            }
        })
    };
    let run = RunOptions {
        min_backoff: Duration::from_millis(200),
        max_backoff: Duration::from_secs(3),
        poll: ctx.poll,
        renewals: Some(ctx.rotations),
        renew_fraction: ctx.renew_fraction,
        events: Some(tx),
        ..RunOptions::default()
    };
    let _ = sigil_agent::run(state, &run).await;
    // Dropping the options drops the event sender, which ends the forwarding task.
    drop(run);
    let _ = forward.await;
}

/// The running fleet: its device tasks and what they have reported so far.
struct Fleet {
    tasks: tokio::task::JoinSet<DeviceOutcome>,
    events: tokio::sync::mpsc::UnboundedReceiver<(String, AgentEvent)>,
    enrolled: Arc<AtomicU64>,
    summary: Summary,
    renew_latencies: Vec<Duration>,
    outcomes: Vec<DeviceOutcome>,
}

impl Fleet {
    /// Start every agent: enrol (a bounded number at once), then run until it has rotated enough.
    fn spawn(
        config: &SimConfig,
        work: &Path,
        registrations: Vec<(String, String)>,
        fingerprint: &str,
        proxy: SocketAddr,
    ) -> Self {
        let (events_tx, events) = tokio::sync::mpsc::unbounded_channel::<(String, AgentEvent)>();
        let renew_fraction = config.renew_fraction;
        let ctx = AgentContext {
            server_url: format!("https://localhost:{}", proxy.port()),
            fingerprint: fingerprint.to_owned(),
            enrolments: Arc::new(tokio::sync::Semaphore::new(config.concurrency.max(1))),
            events: events_tx,
            enrolled: Arc::new(AtomicU64::new(0)),
            rotations: config.rotations,
            renew_fraction,
            // Poll often enough to renew within a few percent of the due time.
            poll: Duration::from_secs_f64((360.0 * renew_fraction / 20.0).clamp(0.2, 10.0)),
        };
        let mut tasks = tokio::task::JoinSet::new();
        for (device, token) in registrations {
            let state_path = work.join("agents").join(&device);
            tasks.spawn(run_device(ctx.clone(), device, token, state_path));
        }
        // Only the tasks hold senders now: the channel closes when the last one ends.
        let enrolled = ctx.enrolled.clone();
        drop(ctx);
        Self {
            tasks,
            events,
            enrolled,
            summary: Summary {
                devices: config.devices,
                ..Summary::default()
            },
            renew_latencies: Vec::new(),
            outcomes: Vec::new(),
        }
    }

    /// Watch until every device task has ended: count events, print progress, restart the
    /// server half-way.
    async fn watch(
        &mut self,
        config: &SimConfig,
        work: &Path,
        started: Instant,
        server: &mut SimServer,
    ) -> Result<(), SimError> {
        let total_rotations = config.devices as u64 * config.rotations;
        let mut ticker = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                event = self.events.recv() => if let Some((_, event)) = event {
                    record(&mut self.summary, &mut self.renew_latencies, event);
                },
                done = self.tasks.join_next() => match done {
                    Some(Ok(outcome)) => self.outcomes.push(outcome),
                    Some(Err(e)) => return Err(SimError::Api(format!("a device task panicked: {e}"))),
                    None => break,
                },
                _ = ticker.tick() => {
                    if config.progress {
                        self.print_progress(config, started, total_rotations);
                    }
                    if config.restart
                        && self.summary.restarts == 0
                        && self.summary.rotations * 2 >= total_rotations
                    {
                        if config.progress {
                            eprintln!("\nrestarting the server...");
                        }
                        server.restart(work).await?;
                        self.summary.restarts += 1;
                    }
                }
            }
        }
        Ok(())
    }

    fn print_progress(&self, config: &SimConfig, started: Instant, total_rotations: u64) {
        eprint!(
            "\r[{:>6.1}s] enrolled {}/{}  rotations {}/{}  devices done {}  failed attempts {}   ",
            started.elapsed().as_secs_f64(),
            self.enrolled.load(Ordering::Relaxed),
            config.devices,
            self.summary.rotations,
            total_rotations,
            self.outcomes.len(),
            self.summary.failures.values().sum::<u64>()
        );
    }

    /// Count the events still queued after the last task ended.
    async fn drain_events(&mut self) {
        while let Ok(Some((_, event))) =
            tokio::time::timeout(Duration::from_millis(50), self.events.recv()).await
        {
            record(&mut self.summary, &mut self.renew_latencies, event);
        }
    }
}

/// Consistency: every device holds a valid certificate that the server knows as active.
async fn check_fleet(admin: &AdminClient, outcomes: &[DeviceOutcome], summary: &mut Summary) {
    let checks: Vec<Result<(), String>> = futures_util::stream::iter(outcomes.iter())
        .map(|o| check_device(admin, o))
        .buffer_unordered(16)
        .collect()
        .await;
    for check in checks {
        match check {
            Ok(()) => {}
            Err(why) if why.starts_with("lost:") => {
                summary.identities_lost += 1;
                summary.inconsistent.push(why);
            }
            Err(why) => summary.inconsistent.push(why),
        }
    }
}

/// Count one agent event into the summary.
fn record(summary: &mut Summary, renew_latencies: &mut Vec<Duration>, event: AgentEvent) {
    match event {
        AgentEvent::Renewed { latency, .. } => {
            summary.rotations += 1;
            renew_latencies.push(latency);
        }
        AgentEvent::RenewalFailed { kind } => {
            *summary.failures.entry(kind.to_owned()).or_default() += 1;
        }
        AgentEvent::PostureSent | AgentEvent::UpdateInstalled { .. } => {}
        AgentEvent::UpdateRefused { kind } => {
            *summary
                .failures
                .entry(format!("update: {kind}"))
                .or_default() += 1;
        }
    }
}

fn enrol_kind(e: &sigil_agent::AgentError) -> &'static str {
    match e.kind() {
        "unreachable" => "enrol: unreachable",
        "server-error" => "enrol: server-error",
        "credential-refused" => "enrol: credential-refused",
        _ => "enrol: other",
    }
}

async fn check_device(admin: &AdminClient, o: &DeviceOutcome) -> Result<(), String> {
    let device = &o.device;
    let state = StateDir::open(&o.state).map_err(|e| format!("lost: {device}: {e}"))?;
    let current = state
        .current()
        .map_err(|e| format!("lost: {device}: {e}"))?
        .ok_or_else(|| format!("lost: {device}: no identity stored"))?;
    let der = current.cert_der().map_err(|e| format!("{device}: {e}"))?;
    let (_, cert) = X509Certificate::from_der(&der).map_err(|e| format!("{device}: {e}"))?;
    if !cert.validity().is_valid() {
        return Err(format!("{device}: its certificate is not valid now"));
    }
    let serial = hex::encode(cert.raw_serial());
    let record = admin
        .try_get(&format!("/api/v1/certificates/{serial}"))
        .await
        .map_err(|e| format!("{device}: {e}"))?;
    if record["device_id"] != device.as_str() {
        return Err(format!(
            "{device}: the server does not know certificate {serial}: {record}"
        ));
    }
    if record["status"] != "active" {
        return Err(format!(
            "{device}: certificate {serial} is {} on the server",
            record["status"]
        ));
    }
    if record["sha256"] != hex::encode(sigil_ca::sha256(&der)) {
        return Err(format!(
            "{device}: certificate {serial} differs from the server's"
        ));
    }
    Ok(())
}
