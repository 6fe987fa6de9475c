//! A staged rollout over a simulated fleet: a real Sigil server (on a runtime of its own, so
//! its CPU time can be read apart from the agents'), N real agents enrolled over EST, a
//! release uploaded and rolled out group by group. The agents follow their assignments with
//! the real TUF client and A/B installer, and report each step.
//!
//! With `inject_failures`, the health check of new slots starts failing once the rollout has
//! advanced past its first group: the failed installs (rolled back on the devices) reach the
//! error threshold and the rollout halts by itself. The health check is then fixed, the
//! failed devices retried, the rollout resumed, and it completes.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};

use sigil_agent::update::{Followed, InstallOptions};
use sigil_agent::{EnrollCredential, EnrollOptions, StateDir};
use sigil_testkit::AdminClient;

use crate::SimError;

#[derive(Debug, Clone)]
pub struct RolloutConfig {
    pub devices: usize,
    /// Cumulative group shares, e.g. `["10%", "25%", "50%", "100%"]`.
    pub groups: Vec<String>,
    pub success_threshold: String,
    pub error_threshold: String,
    pub min_sample: u32,
    /// Break the devices' health check after the first advance; fix it once halted.
    pub inject_failures: bool,
    /// How often each agent asks for its assignment.
    pub poll: Duration,
    /// Enrolments in flight at once.
    pub concurrency: usize,
    /// `None`: SQLite in the work directory.
    pub database_url: Option<String>,
    pub progress: bool,
}

impl Default for RolloutConfig {
    fn default() -> Self {
        Self {
            devices: 40,
            groups: ["10%", "25%", "50%", "100%"].map(String::from).to_vec(),
            // A group of 6 (the second of 40 devices) still succeeds with one failure: the
            // halt the demo shows is the error threshold's, at the second.
            success_threshold: "80%".into(),
            error_threshold: "10%".into(),
            min_sample: 2,
            inject_failures: true,
            poll: Duration::from_millis(300),
            concurrency: 32,
            database_url: None,
            progress: false,
        }
    }
}

#[derive(Debug, Default, Clone)]
pub struct RolloutSummary {
    pub devices: usize,
    pub enrol_elapsed: Duration,
    /// From the rollout's creation to its completion (the success threshold held in the last
    /// group).
    pub rollout_elapsed: Duration,
    /// From the rollout's creation until every device reported the release installed.
    pub all_installed_elapsed: Option<Duration>,
    /// Assignment requests the agents made (each a new mTLS connection, as a device that
    /// wakes up to poll makes).
    pub polls: u64,
    /// Updates the agents refused or failed, by what they reported; and attempts retried
    /// after a transient error, by kind.
    pub refusals: std::collections::BTreeMap<String, u64>,
    /// Each decision the rollout recorded, in order (`rollout.advanced: reason`, ...).
    pub decisions: Vec<String>,
    /// Why it halted, if it did.
    pub halted: Option<String>,
    pub final_state: String,
    /// Devices whose inventory record names the released version at the end.
    pub updated_in_inventory: usize,
    /// CPU seconds the server's threads used during the rollout.
    pub server_cpu_seconds: f64,
    pub rollout: Value,
}

impl std::fmt::Display for RolloutSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "devices:               {}", self.devices)?;
        writeln!(
            f,
            "enrolled in:           {:.1} s",
            self.enrol_elapsed.as_secs_f64()
        )?;
        writeln!(
            f,
            "rollout completed in:  {:.1} s",
            self.rollout_elapsed.as_secs_f64()
        )?;
        if let Some(all) = self.all_installed_elapsed {
            writeln!(f, "every device updated:  {:.1} s", all.as_secs_f64())?;
        }
        writeln!(f, "assignment polls:      {}", self.polls)?;
        for (why, n) in &self.refusals {
            writeln!(f, "not installed:         {n} x {why}")?;
        }
        writeln!(f, "final state:           {}", self.final_state)?;
        writeln!(f, "updated (inventory):   {}", self.updated_in_inventory)?;
        writeln!(
            f,
            "server CPU:            {:.2} s ({:.2} ms per device update)",
            self.server_cpu_seconds,
            self.server_cpu_seconds * 1e3 / self.devices.max(1) as f64
        )?;
        if let Some(h) = &self.halted {
            writeln!(f, "halted:                {h}")?;
        }
        for d in &self.decisions {
            writeln!(f, "  {d}")?;
        }
        Ok(())
    }
}

/// The server on a runtime (and threads) of its own.
pub(crate) struct ServerThread {
    pub(crate) api_addr: SocketAddr,
    pub(crate) admin: Arc<AdminClient>,
    pub(crate) data: PathBuf,
    token: String,
    fingerprint: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

const SERVER_THREAD: &str = "sigil-server";

impl ServerThread {
    /// A server on its own runtime; `database_url` `None`: SQLite in `work`.
    pub(crate) fn start(database_url: Option<String>, work: &Path) -> Result<Self, SimError> {
        let database_url =
            database_url.unwrap_or_else(|| format!("sqlite://{}", work.join("sigil.db").display()));
        let mut server = crate::server_config(work, ([127, 0, 0, 1], 0).into(), &database_url);
        server.rollout_tick = Duration::from_millis(250);
        server.enrollment_profile = "device".into();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name(SERVER_THREAD)
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    let _ = ready_tx.send(Err(SimError::Io(e)));
                    return;
                }
            };
            runtime.block_on(async move {
                match sigil_server::start(server, sigil_server::system_clock()).await {
                    Ok(handle) => {
                        let _ =
                            ready_tx.send(Ok((handle.api_addr, handle.new_admin_token.clone())));
                        let _ = stop_rx.await;
                        handle.shutdown().await;
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(SimError::Server(e)));
                    }
                }
            });
        });
        let (api_addr, token) = ready_rx
            .recv()
            .map_err(|e| SimError::Api(format!("server thread: {e}")))??;
        let token = token.unwrap_or_default();
        let data = work.join("data");
        let root_der = pem::parse(std::fs::read(data.join("ca/root.crt"))?)
            .map_err(|e| SimError::Api(e.to_string()))?
            .into_contents();
        let admin =
            Arc::new(AdminClient::new(&data, api_addr.port(), &token).map_err(SimError::Api)?);
        Ok(Self {
            api_addr,
            admin,
            data,
            token,
            fingerprint: hex::encode(sigil_ca::sha256(&root_der)),
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    pub(crate) fn stop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        self.stop();
    }
}

/// CPU seconds used so far by this process's threads that serve: the server's runtime and
/// its SQLite workers (`/proc/self/task/*/stat`, utime + stime).
pub fn server_cpu_seconds() -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    let ticks: u64 = tasks
        .flatten()
        .filter_map(|t| {
            let comm = std::fs::read_to_string(t.path().join("comm")).ok()?;
            let serving = comm.starts_with(SERVER_THREAD) || comm.starts_with("sqlx-sqlite");
            let stat = std::fs::read_to_string(t.path().join("stat")).ok()?;
            // Fields after the command name (which may hold spaces): state is field 3.
            let rest = stat.rsplit_once(')')?.1;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let (utime, stime): (u64, u64) =
                (fields.get(11)?.parse().ok()?, fields.get(12)?.parse().ok()?);
            serving.then_some(utime + stime)
        })
        .sum();
    ticks as f64 / 100.0
}

async fn upload_release(s: &ServerThread, product: &str, version: &str) -> Result<(), SimError> {
    let http = sigil_testkit::root_client(&s.data).map_err(SimError::Api)?;
    let content = format!("firmware {version} for the simulated sensor").into_bytes();
    let r = http
        .post(format!(
            "https://localhost:{}/api/v1/artefacts",
            s.api_addr.port()
        ))
        .bearer_auth(&s.token)
        .header("content-type", "application/octet-stream")
        .body(content)
        .send()
        .await
        .map_err(|e| SimError::Api(e.to_string()))?;
    let artefact: Value = r.json().await.map_err(|e| SimError::Api(e.to_string()))?;
    s.admin
        .try_post(
            &format!("/api/v1/products/{product}/releases"),
            json!({"version": version, "artefact_sha256": artefact["sha256"], "file_name": "firmware.bin"}),
        )
        .await
        .map_err(SimError::Api)?;
    Ok(())
}

pub(crate) async fn enrol_device(
    s: &ServerThread,
    product: &str,
    i: usize,
    work: &Path,
) -> Result<StateDir, SimError> {
    let device = s
        .admin
        .create_device(product, &format!("SIM-{i:06}"))
        .await
        .map_err(SimError::Api)?;
    let token = s
        .admin
        .enrollment_token(&device)
        .await
        .map_err(SimError::Api)?;
    let state = StateDir::open(work.join(format!("agents/{i}")))
        .map_err(|e| SimError::Api(e.to_string()))?;
    let options = EnrollOptions {
        server: format!("https://localhost:{}", s.api_addr.port()),
        ca_fingerprint: s.fingerprint.clone(),
        device_id: device,
        credential: EnrollCredential::Token(token),
    };
    let mut attempt = 0;
    loop {
        match sigil_agent::enroll(&state, &options).await {
            Ok(_) => return Ok(state),
            Err(e) if e.is_transient() && attempt < 10 => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
            }
            Err(e) => return Err(SimError::Api(format!("enrol SIM-{i:06}: {e}"))),
        }
    }
}

/// One device: follow assignments until the release is installed.
type Refusals = Arc<std::sync::Mutex<std::collections::BTreeMap<String, u64>>>;

/// Agents allowed to talk to the server at once. They all share one source address, and the
/// server accepts at most `MAX_CONNECTIONS_PER_ADDRESS` (256) connections from one address;
/// a real fleet comes from many.
const TALKING_AT_ONCE: usize = 128;

async fn follow(
    state: StateDir,
    install: InstallOptions,
    poll: Duration,
    polls: Arc<AtomicU64>,
    refusals: Refusals,
    talking: Arc<tokio::sync::Semaphore>,
) {
    // Spread the first polls over one interval, as a real fleet's are.
    tokio::time::sleep(poll.mul_f64(sigil_agent::random_fraction())).await;
    loop {
        polls.fetch_add(1, Ordering::Relaxed);
        let permit = talking.acquire().await;
        let followed = sigil_agent::update::follow_assignment(&state, &install).await;
        drop(permit);
        match followed {
            Ok(Followed::Installed(_)) => return,
            Ok(Followed::Refused(e)) => {
                let why: String = e.to_string().chars().take(120).collect();
                if let Ok(mut r) = refusals.lock() {
                    *r.entry(why).or_default() += 1;
                }
            }
            Ok(_) => {}
            Err(e) => {
                // Transient (the server busy or unreachable): retried at the next poll.
                if let Ok(mut r) = refusals.lock() {
                    *r.entry(format!("retried: {}", e.kind())).or_default() += 1;
                }
            }
        }
        tokio::time::sleep(poll).await;
    }
}

/// The simulated fleet at work: one task per agent, and what they count.
struct Fleet {
    agents: Vec<tokio::task::JoinHandle<()>>,
    polls: Arc<AtomicU64>,
    refusals: Refusals,
    /// While this file exists, the health check of every new slot fails.
    broken: PathBuf,
}

impl Fleet {
    fn start(states: Vec<StateDir>, config: &RolloutConfig, work: &Path) -> Result<Self, SimError> {
        let broken = work.join("broken");
        let health = work.join("health.sh");
        std::fs::write(
            &health,
            format!("#!/bin/sh\ntest ! -e '{}'\n", broken.display()),
        )?;
        std::fs::set_permissions(&health, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
        let polls = Arc::new(AtomicU64::new(0));
        let refusals: Refusals = Arc::default();
        let talking = Arc::new(tokio::sync::Semaphore::new(TALKING_AT_ONCE));
        let agents = states
            .into_iter()
            .map(|state| {
                let install = InstallOptions {
                    dir: state.root().join("slots"),
                    command: None,
                    health_command: Some(health.clone()),
                    health_deadline: Duration::from_secs(1),
                };
                tokio::spawn(follow(
                    state,
                    install,
                    config.poll,
                    polls.clone(),
                    refusals.clone(),
                    talking.clone(),
                ))
            })
            .collect();
        Ok(Self {
            agents,
            polls,
            refusals,
            broken,
        })
    }

    fn stop(self, summary: &mut RolloutSummary) {
        summary.polls = self.polls.load(Ordering::Relaxed);
        summary.refusals = self.refusals.lock().map(|r| r.clone()).unwrap_or_default();
        for agent in self.agents {
            agent.abort();
        }
    }
}

/// Run the rollout in `work` (which must exist and be empty).
pub async fn simulate_rollout(
    config: &RolloutConfig,
    work: &Path,
) -> Result<RolloutSummary, SimError> {
    let mut server = ServerThread::start(config.database_url.clone(), work)?;
    let admin = server.admin.clone();
    let product = admin
        .create_product("simulated sensor")
        .await
        .map_err(SimError::Api)?;
    upload_release(&server, &product, "2.0.0").await?;

    let enrol_started = Instant::now();
    let states: Vec<Result<StateDir, SimError>> = futures_util::stream::iter(0..config.devices)
        .map(|i| enrol_device(&server, &product, i, work))
        .buffer_unordered(config.concurrency.max(1))
        .collect()
        .await;
    let states = states.into_iter().collect::<Result<Vec<_>, _>>()?;
    let mut summary = RolloutSummary {
        devices: config.devices,
        enrol_elapsed: enrol_started.elapsed(),
        ..RolloutSummary::default()
    };
    let fleet = Fleet::start(states, config, work)?;

    let cpu_before = server_cpu_seconds();
    let started = Instant::now();
    let created = admin
        .try_post(
            &format!("/api/v1/products/{product}/rollouts"),
            json!({"release": "2.0.0", "groups": config.groups, "success_threshold": config.success_threshold,
                   "error_threshold": config.error_threshold, "min_sample": config.min_sample,
                   "timeout_seconds": 600}),
        )
        .await
        .map_err(SimError::Api)?;
    let id = created["id"].as_str().unwrap_or_default().to_owned();
    let deadline = Instant::now() + Duration::from_secs(120 + config.devices as u64 / 10);
    let rollout = drive(&admin, &id, config, &fleet.broken, deadline, &mut summary).await?;
    summary.rollout_elapsed = started.elapsed();
    // A rollout completes at its success threshold; the last devices may still be at work.
    let stragglers = (Instant::now() + config.poll * 3 + Duration::from_secs(30)).min(deadline);
    let rollout = wait_for_installs(&admin, &id, rollout, config.devices, stragglers).await?;
    if installed(&rollout) == config.devices as u64 {
        summary.all_installed_elapsed = Some(started.elapsed());
    }
    summary.server_cpu_seconds = server_cpu_seconds() - cpu_before;
    fleet.stop(&mut summary);
    summary.final_state = rollout["state"].as_str().unwrap_or_default().to_owned();
    summary.rollout = rollout;
    summary.decisions = decisions(&admin).await?;
    summary.updated_in_inventory = updated_in_inventory(&admin, &product).await?;
    server.stop();
    Ok(summary)
}

/// Follow the rollout until it completes or stops (or `deadline`): break the health check
/// once it is past its first group, and when it halts, fix it, retry and resume.
async fn drive(
    admin: &AdminClient,
    id: &str,
    config: &RolloutConfig,
    broken: &Path,
    deadline: Instant,
    summary: &mut RolloutSummary,
) -> Result<Value, SimError> {
    loop {
        let r = admin
            .try_get(&format!("/api/v1/rollouts/{id}"))
            .await
            .map_err(SimError::Api)?;
        let state = r["state"].as_str().unwrap_or_default();
        if config.progress {
            eprint!(
                "\r{state:>18} group {} {:?}      ",
                r["current_group"],
                r["groups"].as_array().map(|g| g
                    .iter()
                    .map(|g| g["installed"].as_u64().unwrap_or(0))
                    .collect::<Vec<_>>())
            );
        }
        if state == "completed" || state == "stopped" || Instant::now() > deadline {
            return Ok(r);
        }
        let group = r["current_group"].as_u64().unwrap_or(1);
        if config.inject_failures && summary.halted.is_none() && group >= 2 && !broken.exists() {
            std::fs::write(broken, b"")?;
        }
        if state == "halted" && summary.halted.is_none() {
            summary.halted = r["reason"].as_str().map(str::to_owned);
            // The fix: healthy slots again; then the failed devices retry and the rollout goes on.
            let _ = std::fs::remove_file(broken);
            for action in ["retry-failed", "resume"] {
                admin
                    .try_post(
                        &format!("/api/v1/rollouts/{id}/actions"),
                        json!({"action": action, "reason": "health check fixed"}),
                    )
                    .await
                    .map_err(SimError::Api)?;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Devices that reported the release installed, over every group.
fn installed(rollout: &Value) -> u64 {
    rollout["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|g| g["installed"].as_u64().unwrap_or(0))
        .sum()
}

async fn wait_for_installs(
    admin: &AdminClient,
    id: &str,
    mut rollout: Value,
    devices: usize,
    until: Instant,
) -> Result<Value, SimError> {
    while installed(&rollout) < devices as u64 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(200)).await;
        rollout = admin
            .try_get(&format!("/api/v1/rollouts/{id}"))
            .await
            .map_err(SimError::Api)?;
    }
    Ok(rollout)
}

/// Each rollout decision in the audit log, as `action: reason`.
async fn decisions(admin: &AdminClient) -> Result<Vec<String>, SimError> {
    let entries = admin
        .try_get("/api/v1/audit/entries?action=rollout.&limit=100")
        .await
        .map_err(SimError::Api)?;
    Ok(entries["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let entry = if e["entry"].is_object() {
                &e["entry"]
            } else {
                e
            };
            format!(
                "{}: {}",
                entry["action"].as_str().unwrap_or_default(),
                entry["details"]["reason"].as_str().unwrap_or_default()
            )
        })
        .collect())
}

/// Devices of `product` whose inventory record names the released version.
async fn updated_in_inventory(admin: &AdminClient, product: &str) -> Result<usize, SimError> {
    let mut updated = 0;
    let mut after = String::new();
    loop {
        let page = admin
            .try_get(&format!(
                "/api/v1/devices?product={product}&limit=500{after}"
            ))
            .await
            .map_err(SimError::Api)?;
        let items = page["items"].as_array().cloned().unwrap_or_default();
        updated += items
            .iter()
            .filter(|d| d["firmware_version"] == "2.0.0")
            .count();
        match items.last().and_then(|d| d["id"].as_str()) {
            Some(last) if items.len() == 500 => after = format!("&after={last}"),
            _ => break,
        }
    }
    Ok(updated)
}
