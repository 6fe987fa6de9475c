//! Sigil's network front: the HTTPS REST API, the public PKI listener, and the data directory
//! bootstrap that turns an empty directory into a working CA.

pub mod access;
pub mod api;
pub mod auditlog;
pub mod body;
pub mod compliance;
pub mod crl;
pub mod datadir;
mod error;
pub mod exclusive;
pub mod failures;
pub mod mosquitto;
pub mod mtls;
pub mod ocsp;
pub mod pki;
pub mod policy;
pub mod recovery;
pub mod secrets;
pub mod tls;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use sigil_audit::{Actor, AuditEvent, Outcome};
use sigil_ca::{CaNames, IdentityScheme, KeyAlgorithm, PublicUrls};
use sigil_store::Store;

use auditlog::AuditLog;

pub use api::{AppState, Clock, system_clock};
pub use datadir::{DataDir, PassphraseSource};
pub use error::ServerError;

/// Validity of the API listener's certificate. It is re-issued (with a fresh key) at each start.
const SERVER_CERT_VALIDITY: Duration = Duration::days(90);

/// Name of the bootstrap token written to `DIR/admin.token`.
pub const ADMIN_TOKEN_NAME: &str = "bootstrap-admin";

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub data_dir: DataDir,
    /// `None`: SQLite in the data directory.
    pub database_url: Option<String>,
    pub listen: SocketAddr,
    pub pki_listen: SocketAddr,
    /// Base URL written into certificates for OCSP, CRL and caIssuers. Default: `http://<pki_listen>`.
    pub pki_base_url: Option<String>,
    /// Extra DNS names for the API listener's certificate (`localhost` is always included).
    pub tls_names: Vec<String>,
    /// `None`: `urn:sigil:device:<id>`; `Some(td)`: `spiffe://<td>/device/<id>`.
    pub trust_domain: Option<String>,
    /// Key algorithm for a CA created on first start.
    pub algorithm: KeyAlgorithm,
    /// Origin (name) of the audit log, used when its key is created. Default
    /// `sigil/<first 8 hex digits of the root certificate's SHA-256>/audit`.
    pub log_origin: Option<String>,
    /// How often the audit log signs a checkpoint while it grows.
    pub checkpoint_interval: std::time::Duration,
    /// Who signs OCSP responses.
    pub ocsp_signing: ocsp::OcspSigning,
    /// How long a certificate replaced by re-enrolment stays valid before it is revoked
    /// (reason superseded). `None`: it stays valid until it expires.
    pub superseded_overlap: Option<Duration>,
    /// Profile name for certificates issued at first EST enrolment.
    pub enrollment_profile: String,
    /// Keep a Mosquitto broker's dynamic security (and CRL file) in step.
    pub mosquitto: Option<mosquitto::MosquittoSettings>,
    /// Evaluate every compliance framework this often, keeping history and alerting on drops
    /// (`None`: only on request).
    pub compliance_interval: Option<std::time::Duration>,
    /// POST a JSON alert here when a compliance requirement gets worse (https, or http to a
    /// loopback address).
    pub compliance_webhook: Option<String>,
    /// Keep compliance results current by following the database (off only to benchmark a
    /// refresh on its own; reads still apply every change first).
    pub follow_compliance: bool,
    /// Failed authentications recorded one by one per source address and window; past that
    /// they are answered with 429 and summarised in one audit entry per address and window.
    pub failures_per_window: u64,
    pub failure_window: std::time::Duration,
    /// nextUpdate - thisUpdate of the CRLs: how long relying parties that check the CRL (the
    /// broker) keep working while Sigil is down.
    pub crl_validity: Duration,
}

impl ServerConfig {
    pub fn new(data_dir: impl Into<std::path::PathBuf>) -> Self {
        Self {
            data_dir: DataDir::new(data_dir),
            database_url: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            pki_listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            pki_base_url: None,
            tls_names: Vec::new(),
            trust_domain: None,
            algorithm: KeyAlgorithm::EcdsaP256,
            log_origin: None,
            checkpoint_interval: std::time::Duration::from_secs(60),
            ocsp_signing: ocsp::OcspSigning::default(),
            superseded_overlap: None,
            enrollment_profile: sigil_ca::DEFAULT_PROFILE.to_owned(),
            mosquitto: None,
            compliance_interval: Some(std::time::Duration::from_secs(15 * 60)),
            compliance_webhook: None,
            follow_compliance: true,
            failures_per_window: 10,
            failure_window: std::time::Duration::from_secs(60),
            crl_validity: crl::CRL_VALIDITY,
        }
    }
}

/// A running server. Dropping it does not stop it; call [`ServerHandle::shutdown`].
pub struct ServerHandle {
    pub api_addr: SocketAddr,
    pub pki_addr: SocketAddr,
    pub store: Store,
    /// Set when this start created the bootstrap admin token.
    pub new_admin_token: Option<String>,
    state: AppState,
    /// Released after the tasks have stopped.
    _lock: exclusive::ProcessLock,
    tasks: Vec<JoinHandle<()>>,
}

impl ServerHandle {
    /// Evaluate the whole fleet's compliance again from the database (what the periodic run
    /// does), for benchmarks and tooling.
    pub async fn compliance_rebuild(&self) -> Result<compliance::live::RefreshStats, String> {
        self.state
            .compliance
            .rebuild(&self.state)
            .await
            .map_err(|e| e.detail)
    }

    /// Apply what changed since the last compliance refresh.
    pub async fn compliance_refresh(&self) -> Result<compliance::live::RefreshStats, String> {
        self.state
            .compliance
            .refresh(&self.state)
            .await
            .map_err(|e| e.detail)
    }

    /// One device's current device-check results as the engine holds them (no refresh).
    pub async fn compliance_statuses(
        &self,
        device: sigil_domain::DeviceId,
    ) -> Option<sigil_compliance::DeviceStatuses> {
        self.state.compliance.statuses(device).await
    }

    pub async fn shutdown(self) {
        for t in &self.tasks {
            t.abort();
        }
        for t in self.tasks {
            let _ = t.await;
        }
        self.store.close().await;
    }

    /// Wait until the server stops (it runs until aborted).
    pub async fn wait(mut self) {
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
    }
}

/// Initialise the data directory if needed, open the database, and start both listeners.
pub async fn start(config: ServerConfig, clock: Clock) -> Result<ServerHandle, ServerError> {
    let enrollment_profile = sigil_ca::Profile::by_name(&config.enrollment_profile)?;
    let webhook = config
        .compliance_webhook
        .as_deref()
        .map(compliance::Webhook::new)
        .transpose()?
        .map(Arc::new);
    let dir = &config.data_dir;
    let url = match &config.database_url {
        Some(url) => url.clone(),
        None => dir.default_database_url(),
    };
    raise_descriptor_limit();
    // Before anything else touches the directory or the database: one process serves them.
    datadir::create_private_dir(dir.root())?;
    let process_lock = exclusive::lock(dir, &url).await?;
    let created_ca = !dir.is_initialised();
    if created_ca {
        let source = dir.initialise(config.algorithm, &CaNames::default(), clock())?;
        tracing::info!(
            ?source,
            "initialised data directory {}",
            dir.root().display()
        );
    }
    let ca = Arc::new(dir.load_issuing_ca()?);

    if config.database_url.is_none() {
        // The database holds token hashes and inventory: create it owner-only (SQLite gives
        // its -wal and -shm files the same mode).
        datadir::create_private_file(&dir.sqlite_path())?;
    }
    let store = Store::open(&url).await?;
    let system = Actor::system("sigil");

    let root_sha256 = hex::encode(sigil_ca::sha256(ca.root_cert_der()));
    let origin = config
        .log_origin
        .clone()
        .unwrap_or_else(|| format!("sigil/{}/audit", &root_sha256[..8]));
    let (log_key, created_log) = dir.load_or_create_log_key(&origin)?;
    let mut startup = Vec::new();
    if created_ca {
        startup.push(AuditEvent::new(
            clock(),
            system.clone(),
            "ca.created",
            format!("ca:{root_sha256}"),
            Outcome::Success,
            serde_json::json!({
                "algorithm": config.algorithm.to_string(),
                "root_sha256": root_sha256,
                "issuing_sha256": hex::encode(sigil_ca::sha256(ca.issuing_cert_der())),
            }),
        ));
    }
    if created_log {
        startup.push(AuditEvent::new(
            clock(),
            system.clone(),
            "audit_log.created",
            format!("log:{}", log_key.origin()),
            Outcome::Success,
            serde_json::json!({"origin": log_key.origin(), "verifier_key": log_key.verifier_key()}),
        ));
    }
    store.append_audit(startup).await?;

    // The bootstrap token is minted once, on the first start. Revoked, it stays revoked: a
    // restart (or a backup of the directory) must not hand out admin again. A lost admin is
    // recovered on purpose, with `sigil admin recover` (audited).
    let new_admin_token = if store.token_name_used(ADMIN_TOKEN_NAME).await? {
        None
    } else {
        let token = api::generate_token()?;
        store
            .replace_api_token(
                &system,
                ADMIN_TOKEN_NAME,
                "admin",
                &api::token_hash(&token),
                clock(),
            )
            .await?;
        dir.write_admin_token(&token)?;
        tracing::info!(
            "wrote bootstrap admin API token to {}",
            dir.admin_token_path().display()
        );
        Some(token)
    };

    let api_listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| ServerError::Config(format!("cannot listen on {}: {e}", config.listen)))?;
    let pki_listener = TcpListener::bind(config.pki_listen)
        .await
        .map_err(|e| ServerError::Config(format!("cannot listen on {}: {e}", config.pki_listen)))?;
    let api_addr = api_listener
        .local_addr()
        .map_err(|e| ServerError::Config(e.to_string()))?;
    let pki_addr = pki_listener
        .local_addr()
        .map_err(|e| ServerError::Config(e.to_string()))?;

    let base = config
        .pki_base_url
        .clone()
        .unwrap_or_else(|| format!("http://{pki_addr}"));
    let urls = PublicUrls::new(&base)?;
    let scheme = match &config.trust_domain {
        Some(td) => IdentityScheme::spiffe(td)?,
        None => IdentityScheme::Urn,
    };

    let mut names = vec!["localhost".to_owned()];
    names.extend(config.tls_names.iter().cloned());
    let mut ips: Vec<IpAddr> = vec![
        IpAddr::from([127, 0, 0, 1]),
        IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
    ];
    if !api_addr.ip().is_unspecified() && !ips.contains(&api_addr.ip()) {
        ips.push(api_addr.ip());
    }
    let server_cert = ca.issue_server_certificate(&names, &ips, SERVER_CERT_VALIDITY, clock())?;
    let revoked = mtls::RevokedSerials::default();
    let (refusals_tx, refusals_rx) = tokio::sync::mpsc::channel(1024);
    let client_verifier = mtls::SigilClientVerifier::new(
        &[ca.root_cert_der(), ca.issuing_cert_der()],
        revoked.clone(),
        Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
        Some(refusals_tx),
    )?;
    let manufacturer_cas: Vec<Vec<u8>> = store
        .manufacturer_cas(None)
        .await?
        .into_iter()
        .map(|ca| ca.der)
        .collect();
    client_verifier.set_manufacturer_cas(&manufacturer_cas)?;
    let refusals_task = spawn_refusal_recorder(store.clone(), refusals_rx, clock.clone());
    let tls_config = tls::server_config(server_cert, client_verifier.clone())?;

    store
        .append_audit(vec![AuditEvent::new(
            clock(),
            system.clone(),
            "server.started",
            format!("log:{}", log_key.origin()),
            Outcome::Success,
            serde_json::json!({
                "version": env!("CARGO_PKG_VERSION"),
                "api_listen": api_addr.to_string(),
                "pki_listen": pki_addr.to_string(),
                "database": store_kind(&store),
                "pki_base_url": base,
                "tls_names": names,
                "trust_domain": config.trust_domain,
                "checkpoint_interval_seconds": config.checkpoint_interval.as_secs(),
                "ocsp_signing": config.ocsp_signing.as_str(),
                "superseded_overlap_seconds": config.superseded_overlap.map(|d| d.whole_seconds()),
                "enrollment_profile": enrollment_profile.name,
                "mosquitto": config.mosquitto.as_ref().map(|m| format!("{}:{}", m.host, m.port)),
                "crl_validity_hours": config.crl_validity.whole_hours(),
            }),
        )])
        .await?;
    // The CRL is re-signed at every start (see CrlPublisher::open), before the first checkpoint
    // so that the checkpoint covers everything start-up logged.
    let ocsp_cache = Arc::new(ocsp::OcspCache::default());
    let crl = crl::CrlPublisher::open(
        store.clone(),
        ca.clone(),
        urls.clone(),
        revoked.clone(),
        ocsp_cache.clone(),
        config.crl_validity,
        clock(),
    )
    .await?;
    let ocsp_service =
        ocsp::OcspService::new(ca.clone(), config.ocsp_signing, ocsp_cache, clock())?;
    let ocsp_task = ocsp_service.spawn_rotation(clock.clone());
    let audit = AuditLog::open(store.clone(), log_key, dir.clone()).await?;
    // Sign the start-up state now, so the first checkpoint does not wait for the timer; a log
    // that fails its integrity check still serves (reads, exports) but signs nothing more.
    if let Err(e) = audit.checkpoint(clock()).await {
        tracing::error!(error = %e, "audit log: no checkpoint signed at start");
    }
    let checkpoint_task = audit.spawn_periodic(config.checkpoint_interval, clock.clone());
    let crl_task = crl.spawn_refresh(clock.clone(), config.superseded_overlap);

    let policy = Arc::new(policy::ActivePolicy::load(&store).await?);
    let secrets = Arc::new(secrets::SecretBox::new(&dir.operator_secrets_key()?)?);
    let mut tasks = Vec::new();
    if let Some(settings) = &config.mosquitto {
        tasks.extend(mosquitto::spawn(
            settings,
            store.clone(),
            policy.clone(),
            crl.subscribe(),
            clock.clone(),
        )?);
    }
    let failures = Arc::new(failures::FailureLedger::new(
        Duration::try_from(config.failure_window)
            .map_err(|e| ServerError::Config(format!("failure window: {e}")))?,
        config.failures_per_window,
    ));
    tasks.push(spawn_failure_summaries(
        store.clone(),
        failures.clone(),
        clock.clone(),
    ));
    let state_clock = clock.clone();
    let state = AppState {
        audit: audit.clone(),
        crl: crl.clone(),
        store: store.clone(),
        ca: ca.clone(),
        urls,
        scheme,
        enrollment_profile,
        clock,
        client_verifier,
        policy,
        secrets,
        login_limiter: Arc::default(),
        failures,
        catalogue: Arc::new(sigil_compliance::Catalogue::shipped()?),
        compliance: Arc::default(),
        compliance_webhook: webhook,
    };
    if config.follow_compliance {
        tasks.push(compliance::live::spawn_follower(state.clone()));
    }
    if let Some(interval) = config.compliance_interval {
        tasks.push(compliance::spawn_periodic(state.clone(), interval));
    }
    let compliance_state = state.clone();
    let api_app = api::router(state);
    let ocsp_state = ocsp::OcspState {
        service: ocsp_service,
        store: store.clone(),
        clock: state_clock,
    };
    let pki_app = pki::router(&ca, audit, crl, ocsp_state);

    let api_task = tokio::spawn(tls::serve_tls(api_listener, tls_config, api_app));
    let pki_task = tokio::spawn(tls::serve_plain(pki_listener, pki_app));
    tracing::info!(%api_addr, %pki_addr, database = store_kind(&store), "sigil is serving");
    Ok(ServerHandle {
        api_addr,
        pki_addr,
        store,
        new_admin_token,
        state: compliance_state,
        _lock: process_lock,
        tasks: {
            tasks.extend([
                api_task,
                pki_task,
                checkpoint_task,
                crl_task,
                ocsp_task,
                refusals_task,
            ]);
            tasks
        },
    })
}

/// Client certificates refused in TLS handshakes go to the audit log (the handshake itself
/// cannot wait for a database write).
fn spawn_refusal_recorder(
    store: Store,
    mut refusals: tokio::sync::mpsc::Receiver<mtls::RefusedClientCertificate>,
    clock: Clock,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(r) = refusals.recv().await {
            let event = AuditEvent::new(
                clock(),
                Actor::device("unknown"),
                "tls.client_certificate",
                format!("certificate:{}", r.serial),
                Outcome::Denied,
                serde_json::json!({"reason": r.reason, "subject": r.subject, "issuer": r.issuer}),
            );
            if let Err(e) = store.append_audit(vec![event]).await {
                tracing::error!(error = %e, "could not record a refused client certificate");
            }
        }
    })
}

/// Raise the soft open-file limit to the hard one: the usual soft 1,024 is less than the
/// listeners' connection bounds (tls::MAX_CONNECTIONS each). Failing to is logged, not fatal.
pub fn raise_descriptor_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        let raised = rustix::process::Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => {
                tracing::debug!(from = ?limit.current, to = ?limit.maximum, "raised the open-file limit")
            }
            Err(e) => tracing::warn!(error = %e, "could not raise the open-file limit"),
        }
    }
    let now = getrlimit(Resource::Nofile).current;
    if now.is_some_and(|n| n < 2 * tls::MAX_CONNECTIONS as u64 + 1024) {
        tracing::warn!(limit = ?now, "the open-file limit is below what both listeners may hold; raise it (LimitNOFILE)");
    }
}

/// Every second, one `auth.failures_summarised` entry per address whose window ended with
/// failures past the limit: how many, when, on which channels.
fn spawn_failure_summaries(
    store: Store,
    ledger: Arc<failures::FailureLedger>,
    clock: Clock,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            tick.tick().await;
            let events: Vec<AuditEvent> = ledger
                .drain_ended(clock())
                .into_iter()
                .map(|s| {
                    AuditEvent::new(
                        clock(),
                        Actor::system("sigil"),
                        "auth.failures_summarised",
                        format!("address:{}", s.address),
                        Outcome::Denied,
                        serde_json::json!({
                            "source_ip": s.address,
                            "window_start": s.window_start.unix_timestamp(),
                            "window_end": s.window_end.unix_timestamp(),
                            "recorded": s.recorded,
                            "suppressed": s.suppressed,
                            "channels": s.channels,
                        }),
                    )
                })
                .collect();
            if !events.is_empty()
                && let Err(e) = store.append_audit(events).await
            {
                tracing::error!(error = %e, "could not record failed-authentication summaries");
            }
        }
    })
}

fn store_kind(store: &Store) -> &'static str {
    match store.backend() {
        sigil_store::Backend::Sqlite => "sqlite",
        sigil_store::Backend::Postgres => "postgres",
    }
}
