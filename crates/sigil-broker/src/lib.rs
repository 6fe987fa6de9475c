//! Keeping a Mosquitto broker in step with Sigil: its dynamic-security clients and roles follow
//! the access policy's decisions, and its CRL file follows every CRL Sigil publishes.
//!
//! The sync follows the audit log as its change feed: every change to a device (enrolment,
//! lifecycle, revocation) is logged with the device's id, so reading new entries says which
//! devices to re-decide. That also picks up changes made by another Sigil instance sharing the
//! database. A full pass over the inventory runs at connect and periodically, which catches what
//! no entry announces (a certificate expiring) and any hand edits on the broker.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use std::future::Future;

use sigil_authority::Authority;
use sigil_domain::DeviceFilter;
use sigil_mosquitto::dynsec::{self, BrokerMirror};
use sigil_mosquitto::{Command, ControlClient, ControlConfig, MosquittoError};
use sigil_policy::{DeviceFacts, PolicyEngine};
use sigil_store::{StoreError, StoredCrl};

mod grant;
mod observer;

pub use grant::{broker_grant, commands_filter, quarantine_filter, telemetry_filter};

/// What the broker integrations ask of the authority.
pub trait BrokerAuthority: Send + std::marker::Sync + 'static {
    /// The access policy in force.
    fn policy(&self) -> Arc<PolicyEngine>;
    /// Its version: a new version re-decides every device.
    fn policy_version(&self) -> i64;
    /// The end of the audit log: the change feed's cursor.
    fn changes_end(&self) -> impl Future<Output = Result<u64, StoreError>> + Send;
    /// Devices named by audit entries from `cursor` on (at most `limit` entries), and the
    /// cursor after them.
    fn devices_changed_since(
        &self,
        cursor: u64,
        limit: u32,
    ) -> impl Future<Output = Result<(Vec<String>, u64), StoreError>> + Send;
    /// One page of the inventory's device ids, in id order.
    fn device_ids(
        &self,
        filter: &DeviceFilter,
    ) -> impl Future<Output = Result<Vec<sigil_domain::DeviceId>, StoreError>> + Send;
    /// What the policy is told about a device now.
    fn device_facts(
        &self,
        device: &str,
    ) -> impl Future<Output = Result<DeviceFacts, StoreError>> + Send;
    /// Each CRL as it is published.
    fn crls(&self) -> watch::Receiver<Option<Arc<StoredCrl>>>;
    /// Hand broker-side metrics to the detector.
    fn submit_metrics(
        &self,
        points: Vec<sigil_detect::Datapoint>,
    ) -> impl Future<Output = Result<(), String>> + Send;
    /// Now, in milliseconds since the epoch (the authority's clock).
    fn now_ms(&self) -> i64;
}

impl BrokerAuthority for Authority {
    fn policy(&self) -> Arc<PolicyEngine> {
        Authority::policy(self)
    }

    fn policy_version(&self) -> i64 {
        self.active_policy().version()
    }

    async fn changes_end(&self) -> Result<u64, StoreError> {
        self.store().audit_size().await
    }

    async fn devices_changed_since(
        &self,
        cursor: u64,
        limit: u32,
    ) -> Result<(Vec<String>, u64), StoreError> {
        self.store().devices_in_audit_since(cursor, limit).await
    }

    async fn device_ids(
        &self,
        filter: &DeviceFilter,
    ) -> Result<Vec<sigil_domain::DeviceId>, StoreError> {
        Ok(self
            .store()
            .list_devices(filter)
            .await?
            .into_iter()
            .map(|d| d.id)
            .collect())
    }

    async fn device_facts(&self, device: &str) -> Result<DeviceFacts, StoreError> {
        sigil_authority::access::device_facts(self.store(), device, self.now()).await
    }

    fn crls(&self) -> watch::Receiver<Option<Arc<StoredCrl>>> {
        self.crl().subscribe()
    }

    async fn submit_metrics(&self, points: Vec<sigil_detect::Datapoint>) -> Result<(), String> {
        Authority::submit_metrics(self, "broker", points)
            .await
            .map_err(|e| e.to_string())
    }

    fn now_ms(&self) -> i64 {
        Authority::now_ms(self)
    }
}

/// Errors setting the sync up: its configuration (the broker's CA file).
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct BrokerError(String);

/// How to reach and keep the broker.
#[derive(Clone)]
pub struct MosquittoSettings {
    pub host: String,
    pub port: u16,
    /// A dynamic-security user allowed on `$CONTROL/dynamic-security/#`.
    pub username: String,
    pub password: String,
    /// Trust anchors (PEM) for the broker's TLS certificate. The control connection is TLS only.
    pub ca_file: PathBuf,
    /// Where to write the CRL (PEM) the broker's `crlfile` names.
    pub crl_file: Option<PathBuf>,
    /// The broker's `pid_file`: it is sent SIGHUP after each CRL so it re-reads it.
    pub pid_file: Option<PathBuf>,
    /// How often the audit log is read for changed devices.
    pub poll_interval: Duration,
    /// How often the whole inventory is re-decided.
    pub resync_interval: Duration,
    /// Watch the broker (its log topic and the devices' topics) for behaviour monitoring.
    /// Needs `log_dest topic` in the broker's configuration and an account that may read
    /// `$SYS/#` and `devices/#` (the dynamic-security admin made by `mosquitto_ctrl dynsec init`).
    pub observe: bool,
}

impl MosquittoSettings {
    pub fn new(host: impl Into<String>, port: u16, ca_file: impl Into<PathBuf>) -> Self {
        Self {
            host: host.into(),
            port,
            username: "sigil".into(),
            password: String::new(),
            ca_file: ca_file.into(),
            crl_file: None,
            pid_file: None,
            poll_interval: Duration::from_millis(500),
            resync_interval: Duration::from_secs(600),
            observe: true,
        }
    }
}

impl std::fmt::Debug for MosquittoSettings {
    // The password never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MosquittoSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("ca_file", &self.ca_file)
            .field("crl_file", &self.crl_file)
            .field("pid_file", &self.pid_file)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
enum SyncError {
    #[error(transparent)]
    Broker(#[from] MosquittoError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Start the sync and (if configured) the CRL file follower.
pub fn spawn<A: BrokerAuthority>(
    settings: &MosquittoSettings,
    authority: Arc<A>,
) -> Result<Vec<JoinHandle<()>>, BrokerError> {
    let control = ControlConfig {
        host: settings.host.clone(),
        port: settings.port,
        username: settings.username.clone(),
        password: settings.password.clone(),
        tls: Arc::new(tls_config(&settings.ca_file)?),
        client_id: format!("sigil-sync-{}", std::process::id()),
        timeout: Duration::from_secs(10),
    };
    let crls = authority.crls();
    let mut tasks = Vec::new();
    if settings.observe {
        let mut observer = control.clone();
        observer.client_id = format!("sigil-observer-{}", std::process::id());
        tasks.push(tokio::spawn(observer::run(observer, authority.clone())));
    }
    let sync = Sync {
        control,
        authority,
        poll_interval: settings.poll_interval,
        resync_interval: settings.resync_interval,
    };
    tasks.push(tokio::spawn(sync.run()));
    if let Some(path) = &settings.crl_file {
        tasks.push(tokio::spawn(follow_crls(
            crls,
            path.clone(),
            settings.pid_file.clone(),
        )));
    }
    Ok(tasks)
}

fn tls_config(ca_file: &Path) -> Result<rustls::ClientConfig, BrokerError> {
    let bad = |e: String| BrokerError(format!("{}: {e}", ca_file.display()));
    let pem = std::fs::read(ca_file).map_err(|e| bad(e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    for block in ::pem::parse_many(&pem).map_err(|e| bad(e.to_string()))? {
        if block.tag() == "CERTIFICATE" {
            roots
                .add(rustls_pki_types::CertificateDer::from(
                    block.into_contents(),
                ))
                .map_err(|e| bad(e.to_string()))?;
        }
    }
    if roots.is_empty() {
        return Err(bad("no certificate in the broker CA file".into()));
    }
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| BrokerError(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth())
}

struct Sync<A> {
    control: ControlConfig,
    authority: Arc<A>,
    poll_interval: Duration,
    resync_interval: Duration,
}

impl<A: BrokerAuthority> Sync<A> {
    /// Reconnect with backoff for as long as the server runs; each session re-reads the broker.
    async fn run(self) {
        let mut backoff = Duration::from_millis(250);
        loop {
            let started = Instant::now();
            if let Err(e) = self.session().await {
                tracing::warn!(error = %e, host = %self.control.host, "mosquitto sync interrupted");
            }
            // A session that lasted is not a failure streak.
            if started.elapsed() > Duration::from_secs(60) {
                backoff = Duration::from_millis(250);
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    }

    async fn session(&self) -> Result<(), SyncError> {
        let mut control = ControlClient::connect(&self.control).await?;
        control.execute(&[dynsec::default_access()]).await?;
        loop {
            // Entries from here on are re-read after the full pass: nothing slips between.
            let mut cursor = self.authority.changes_end().await?;
            let (clients, roles) = control.list_all().await?;
            let mut mirror = BrokerMirror::from_listings(&clients, &roles)?;
            let changed = self.full_pass(&mut control, &mut mirror).await?;
            tracing::info!(
                devices = mirror.len(),
                changed,
                "mosquitto dynamic security in step"
            );
            let resync_at = Instant::now() + self.resync_interval;
            let policy_version = self.authority.policy_version();
            // A new policy version may change any device's grant: start a full pass.
            while Instant::now() < resync_at && self.authority.policy_version() == policy_version {
                tokio::time::sleep(self.poll_interval).await;
                loop {
                    let (devices, next) =
                        self.authority.devices_changed_since(cursor, 1000).await?;
                    if next == cursor {
                        break;
                    }
                    self.apply(&mut control, &mut mirror, &devices).await?;
                    cursor = next;
                }
            }
        }
    }

    /// Re-decide every device in the inventory, and remove what the broker holds for devices
    /// no longer in it. Returns how many devices changed.
    async fn full_pass(
        &self,
        control: &mut ControlClient,
        mirror: &mut BrokerMirror,
    ) -> Result<usize, SyncError> {
        let mut changed = 0;
        let mut seen = std::collections::BTreeSet::new();
        let mut filter = DeviceFilter {
            limit: sigil_store::MAX_PAGE,
            ..DeviceFilter::default()
        };
        loop {
            let page = self.authority.device_ids(&filter).await?;
            let ids: Vec<String> = page.iter().map(ToString::to_string).collect();
            seen.extend(ids.iter().cloned());
            changed += self.apply(control, mirror, &ids).await?;
            match page.last() {
                Some(last) if page.len() == filter.limit as usize => filter.after = Some(*last),
                _ => break,
            }
        }
        let gone: Vec<String> = mirror
            .devices()
            .filter(|d| !seen.contains(*d))
            .map(str::to_owned)
            .collect();
        changed += self.apply(control, mirror, &gone).await?;
        Ok(changed)
    }

    /// Decide `devices` now and send the broker what differs. Returns how many changed.
    async fn apply(
        &self,
        control: &mut ControlClient,
        mirror: &mut BrokerMirror,
        devices: &[String],
    ) -> Result<usize, SyncError> {
        let policy = self.authority.policy();
        let mut commands: Vec<Command> = Vec::new();
        let mut decided = Vec::new();
        for device in devices {
            let facts = self.authority.device_facts(device).await?;
            let grant = broker_grant(&policy, &facts);
            let plan = dynsec::plan(device, &mirror.get(device), grant.as_ref());
            if !plan.is_empty() {
                tracing::info!(
                    device = %device,
                    granted = grant.is_some(),
                    state = %facts.state,
                    certificate = %facts.certificate_status,
                    "mosquitto: updating device"
                );
                commands.extend(plan);
                decided.push((device, grant));
            }
        }
        if commands.is_empty() {
            return Ok(0);
        }
        if let Err(e) = control.execute(&commands).await {
            // Some commands of the batch may have run: what the broker holds is unknown.
            for (device, _) in &decided {
                mirror.forget(device);
            }
            return Err(e.into());
        }
        for (device, grant) in &decided {
            mirror.set(device, grant.as_ref());
        }
        Ok(decided.len())
    }
}

/// Write each new CRL where the broker reads it, then have the broker re-read it.
async fn follow_crls(
    mut crls: watch::Receiver<Option<Arc<StoredCrl>>>,
    path: PathBuf,
    pid_file: Option<PathBuf>,
) {
    loop {
        let crl = crls.borrow_and_update().clone();
        if let Some(crl) = crl {
            let pem = ::pem::encode(&::pem::Pem::new("X509 CRL", crl.der.clone()));
            match sigil_authority::datadir::write_file(&path, pem.as_bytes(), 0o644) {
                Ok(()) => {
                    tracing::info!(number = crl.number, path = %path.display(), "wrote broker CRL");
                    if let Some(pid_file) = &pid_file
                        && let Err(e) = signal_reload(pid_file)
                    {
                        tracing::error!(error = %e, "could not signal the broker to reload its CRL");
                    }
                }
                Err(e) => tracing::error!(error = %e, "could not write the broker CRL"),
            }
        }
        if crls.changed().await.is_err() {
            return;
        }
    }
}

/// SIGHUP to the process named by `pid_file`: Mosquitto re-reads its configuration, CRL included.
fn signal_reload(pid_file: &Path) -> Result<(), String> {
    let text =
        std::fs::read_to_string(pid_file).map_err(|e| format!("{}: {e}", pid_file.display()))?;
    let pid: i32 = text
        .trim()
        .parse()
        .map_err(|_| format!("{}: not a process id", pid_file.display()))?;
    let pid = rustix::process::Pid::from_raw(pid)
        .ok_or_else(|| format!("{}: not a process id", pid_file.display()))?;
    rustix::process::kill_process(pid, rustix::process::Signal::HUP)
        .map_err(|e| format!("SIGHUP to {}: {e}", pid.as_raw_nonzero()))
}
