//! The server: Sigil's configuration, listeners, TLS, start and stop. It assembles the
//! authority (`sigil-authority`) and mounts the protocol front-ends on two listeners: the API
//! listener (HTTPS, optional client certificates) carries the REST API (`sigil-api`) and EST
//! (`sigil-est`); the PKI listener (plain HTTP) carries CA files, CRL, OCSP and checkpoints
//! (`sigil-pki`). The broker integrations (`sigil-broker`) run beside them.

mod error;
pub mod feeds;
pub mod mtls;
mod nats;
pub mod tls;
mod webhook;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use sigil_audit::{Actor, AuditEvent, Outcome};
use sigil_authority::compliance::ComplianceError;
use sigil_authority::compliance::live::RefreshStats;
use sigil_authority::failures::FailureLedger;
use sigil_authority::{AlertSink, Authority, Background, RevokedSerials, Services, StoreConfig};
use sigil_ca::{IdentityScheme, IssuingCa, KeyAlgorithm, PublicUrls};
use sigil_store::Store;

pub use error::ServerError;
pub use sigil_authority::updates::UpdateSettings;
pub use sigil_authority::{
    ADMIN_TOKEN_NAME, Clock, DataDir, OcspSigning, PassphraseSource, recovery, system_clock,
};
pub use sigil_broker::MosquittoSettings;
pub use webhook::Webhook;

/// Validity of the API listener's certificate. It is re-issued (with a fresh key) at each start.
const SERVER_CERT_VALIDITY: Duration = Duration::days(90);

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
    pub ocsp_signing: OcspSigning,
    /// How long a certificate replaced by re-enrolment stays valid before it is revoked
    /// (reason superseded). `None`: it stays valid until it expires.
    pub superseded_overlap: Option<Duration>,
    /// Profile name for certificates issued at first EST enrolment.
    pub enrollment_profile: String,
    /// Keep a Mosquitto broker's dynamic security (and CRL file) in step.
    pub mosquitto: Option<MosquittoSettings>,
    /// Carry device metrics on NATS JetStream (`None`: in process).
    pub nats: Option<sigil_nats::QueueConfig>,
    /// Evaluate every compliance framework this often, keeping history and alerting on drops
    /// (`None`: only on request).
    pub compliance_interval: Option<std::time::Duration>,
    /// POST a JSON alert here when a compliance requirement gets worse (https, or http to a
    /// loopback address).
    pub compliance_webhook: Option<String>,
    /// Keep compliance results current by following the database (off only to benchmark a
    /// refresh on its own; reads still apply every change first).
    pub follow_compliance: bool,
    /// How often rollouts under way are judged and assign devices.
    pub rollout_tick: std::time::Duration,
    /// How often vulnerability findings and Article 14 cases are reviewed (they are also
    /// reviewed after every feed, SBOM or VEX change).
    pub vuln_review: std::time::Duration,
    /// Vulnerability feeds (OSV archives or records, the KEV catalogue, EPSS scores) fetched
    /// and imported on a schedule: https, or http to a loopback mirror.
    pub vuln_feeds: Vec<String>,
    pub vuln_feed_interval: std::time::Duration,
    /// Failed authentications recorded one by one per source address and window; past that
    /// they are answered with 429 and summarised in one audit entry per address and window.
    pub failures_per_window: u64,
    pub failure_window: std::time::Duration,
    /// nextUpdate - thisUpdate of the CRLs: how long relying parties that check the CRL (the
    /// broker) keep working while Sigil is down.
    pub crl_validity: Duration,
    /// Update repositories: metadata expiries and the largest artefact accepted.
    pub updates: UpdateSettings,
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
            ocsp_signing: OcspSigning::default(),
            superseded_overlap: None,
            enrollment_profile: sigil_ca::DEFAULT_PROFILE.to_owned(),
            mosquitto: None,
            nats: None,
            compliance_interval: Some(std::time::Duration::from_secs(15 * 60)),
            compliance_webhook: None,
            follow_compliance: true,
            rollout_tick: std::time::Duration::from_secs(2),
            vuln_review: std::time::Duration::from_secs(60),
            vuln_feeds: Vec::new(),
            vuln_feed_interval: std::time::Duration::from_secs(6 * 3600),
            failures_per_window: 10,
            failure_window: std::time::Duration::from_secs(60),
            crl_validity: sigil_authority::crl::CRL_VALIDITY,
            updates: UpdateSettings::default(),
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
    authority: Arc<Authority>,
    /// Released after the tasks have stopped.
    _lock: sigil_authority::exclusive::ProcessLock,
    tasks: Vec<JoinHandle<()>>,
}

impl ServerHandle {
    /// The services behind the listeners (for tests, benchmarks and tooling in-process).
    pub fn authority(&self) -> &Arc<Authority> {
        &self.authority
    }

    /// Evaluate the whole fleet's compliance again from the database (what the periodic run
    /// does), for benchmarks and tooling.
    pub async fn compliance_rebuild(&self) -> Result<RefreshStats, ComplianceError> {
        self.authority.compliance().rebuild(&self.authority).await
    }

    /// Apply what changed since the last compliance refresh.
    pub async fn compliance_refresh(&self) -> Result<RefreshStats, ComplianceError> {
        self.authority.compliance().refresh(&self.authority).await
    }

    /// One device's current device-check results as the engine holds them (no refresh).
    pub async fn compliance_statuses(
        &self,
        device: sigil_domain::DeviceId,
    ) -> Option<sigil_compliance::DeviceStatuses> {
        self.authority.compliance().statuses(device).await
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

/// Both listeners, bound (their addresses name the URLs written into certificates).
struct Listeners {
    api: TcpListener,
    pki: TcpListener,
    api_addr: SocketAddr,
    pki_addr: SocketAddr,
}

async fn bind(config: &ServerConfig) -> Result<Listeners, ServerError> {
    let listen = |addr: SocketAddr| async move {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| ServerError::Config(format!("cannot listen on {addr}: {e}")))?;
        let bound = listener
            .local_addr()
            .map_err(|e| ServerError::Config(e.to_string()))?;
        Ok::<_, ServerError>((listener, bound))
    };
    let (api, api_addr) = listen(config.listen).await?;
    let (pki, pki_addr) = listen(config.pki_listen).await?;
    Ok(Listeners {
        api,
        pki,
        api_addr,
        pki_addr,
    })
}

/// The API listener's TLS: a certificate from Sigil's CA (fresh key, never on disk) and the
/// client-certificate verifier (Sigil's chain minus the revoked set, or a registered
/// manufacturer CA; refusals reported on the returned channel).
struct ApiTls {
    config: Arc<rustls::ServerConfig>,
    verifier: Arc<mtls::SigilClientVerifier>,
    revoked: RevokedSerials,
    refusals: tokio::sync::mpsc::Receiver<mtls::RefusedClientCertificate>,
}

async fn api_tls(
    config: &ServerConfig,
    ca: &IssuingCa,
    store: &Store,
    api_addr: SocketAddr,
    now: time::OffsetDateTime,
) -> Result<ApiTls, ServerError> {
    let names = tls_names(config);
    let mut ips: Vec<IpAddr> = vec![
        IpAddr::from([127, 0, 0, 1]),
        IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
    ];
    if !api_addr.ip().is_unspecified() && !ips.contains(&api_addr.ip()) {
        ips.push(api_addr.ip());
    }
    let server_cert = ca.issue_server_certificate(&names, &ips, SERVER_CERT_VALIDITY, now)?;
    let revoked = RevokedSerials::default();
    let (refusals_tx, refusals) = tokio::sync::mpsc::channel(1024);
    let verifier = mtls::SigilClientVerifier::new(
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
    verifier.set_manufacturer_cas(&manufacturer_cas)?;
    Ok(ApiTls {
        config: tls::server_config(server_cert, verifier.clone())?,
        verifier,
        revoked,
        refusals,
    })
}

/// DNS names of the API listener's certificate: `localhost` and the configured ones.
fn tls_names(config: &ServerConfig) -> Vec<String> {
    let mut names = vec!["localhost".to_owned()];
    names.extend(config.tls_names.iter().cloned());
    names
}

/// The settings that need nothing but the configuration, checked before anything is touched.
struct Checked {
    enrollment_profile: &'static sigil_ca::Profile,
    alerts: Option<Arc<dyn AlertSink>>,
    failures: FailureLedger,
}

impl Checked {
    fn new(config: &ServerConfig) -> Result<Self, ServerError> {
        config
            .updates
            .validate()
            .map_err(|e| ServerError::Config(e.to_string()))?;
        Ok(Self {
            enrollment_profile: sigil_ca::Profile::by_name(&config.enrollment_profile)?,
            alerts: match config.compliance_webhook.as_deref() {
                Some(url) => Some(Arc::new(Webhook::new(url)?) as Arc<dyn AlertSink>),
                None => None,
            },
            failures: FailureLedger::new(
                Duration::try_from(config.failure_window)
                    .map_err(|e| ServerError::Config(format!("failure window: {e}")))?,
                config.failures_per_window,
            ),
        })
    }
}

/// The services' settings and the API listener's TLS (at `api_addr`), with the PKI URLs under
/// `pki_base_url`: everything a start can refuse, checked before the start is logged.
async fn services(
    config: &ServerConfig,
    checked: Checked,
    foundation: &sigil_authority::Foundation,
    pki_base_url: &str,
    api_addr: SocketAddr,
    now: time::OffsetDateTime,
) -> Result<(Services, ApiTls), ServerError> {
    let Checked {
        enrollment_profile,
        alerts,
        failures,
    } = checked;
    let urls = PublicUrls::new(pki_base_url)?;
    let scheme = match &config.trust_domain {
        Some(td) => IdentityScheme::spiffe(td)?,
        None => IdentityScheme::Urn,
    };
    let tls = api_tls(config, &foundation.ca, &foundation.store, api_addr, now).await?;
    let services = Services {
        urls,
        scheme,
        enrollment_profile,
        ocsp_signing: config.ocsp_signing,
        crl_validity: config.crl_validity,
        revoked: tls.revoked.clone(),
        failures,
        alerts,
        trust: tls.verifier.clone(),
        updates: config.updates,
        monitoring: match &config.nats {
            Some(nats) => sigil_authority::monitoring::MonitoringSettings {
                transport: Arc::new(nats::JetStreamTransport::connect(nats.clone()).await?),
            },
            None => sigil_authority::monitoring::MonitoringSettings::default(),
        },
    };
    Ok((services, tls))
}

/// What the API listener serves: the REST API with EST, the update repositories and the
/// disclosure desk beside it, and the web console (which calls that API in process).
pub fn api_app(authority: &Arc<Authority>) -> axum::Router {
    let est = sigil_est::router::<Authority>().with_state(authority.clone());
    let tuf = sigil_tuf::router::<Authority>().with_state(authority.clone());
    let disclosure = sigil_disclosure::router::<Authority>().with_state(authority.clone());
    let api = sigil_api::router(
        sigil_api::AppState::new(authority.clone()),
        est.merge(tuf).merge(disclosure),
    );
    sigil_console::router(api.clone()).merge(api)
}

/// A server's authority and API application without listeners, for in-process tests and
/// tools: the same data directory, database and services as [`start`] (no background tasks).
pub struct InProcess {
    pub authority: Arc<Authority>,
    /// The API listener's application (REST API and EST).
    pub app: axum::Router,
    /// Set when this opening created the bootstrap admin token.
    pub new_admin_token: Option<String>,
    _lock: sigil_authority::exclusive::ProcessLock,
}

pub async fn open_in_process(
    config: &ServerConfig,
    clock: Clock,
) -> Result<InProcess, ServerError> {
    let checked = Checked::new(config)?;
    let prepared = Authority::prepare(&store_config(config), &clock).await?;
    let base = config
        .pki_base_url
        .clone()
        .unwrap_or_else(|| format!("http://{}", config.pki_listen));
    let (services, _) = services(
        config,
        checked,
        &prepared.foundation,
        &base,
        config.listen,
        clock(),
    )
    .await?;
    let authority = Authority::open(prepared.foundation, services, clock).await?;
    Ok(InProcess {
        app: api_app(&authority),
        authority,
        new_admin_token: prepared.new_admin_token,
        _lock: prepared.lock,
    })
}

fn store_config(config: &ServerConfig) -> StoreConfig {
    StoreConfig {
        data_dir: config.data_dir.clone(),
        database_url: config.database_url.clone(),
        algorithm: config.algorithm,
        log_origin: config.log_origin.clone(),
    }
}

/// Initialise the data directory if needed, open the database, and start both listeners.
pub async fn start(config: ServerConfig, clock: Clock) -> Result<ServerHandle, ServerError> {
    // Settings that cannot work are refused before anything is touched.
    let checked = Checked::new(&config)?;
    raise_descriptor_limit();
    let prepared = Authority::prepare(&store_config(&config), &clock).await?;
    let store = prepared.foundation.store.clone();
    let listeners = bind(&config).await?;
    let base = config
        .pki_base_url
        .clone()
        .unwrap_or_else(|| format!("http://{}", listeners.pki_addr));
    let (services, tls) = services(
        &config,
        checked,
        &prepared.foundation,
        &base,
        listeners.api_addr,
        clock(),
    )
    .await?;
    record_start(&store, &config, &listeners, &base, &prepared, clock()).await?;
    let authority = Authority::open(prepared.foundation, services, clock).await?;
    // The broker's and the feeds' settings can still be refused: before any task is running.
    let feeds = feeds::FeedRefresh::new(&config.vuln_feeds, config.vuln_feed_interval)?;
    let mut tasks = match &config.mosquitto {
        Some(settings) => sigil_broker::spawn(settings, authority.clone())?,
        None => Vec::new(),
    };
    tasks.extend(feeds.spawn(authority.clone()));
    tasks.extend(authority.spawn_background(&Background {
        checkpoint_interval: config.checkpoint_interval,
        superseded_overlap: config.superseded_overlap,
        compliance_interval: config.compliance_interval,
        follow_compliance: config.follow_compliance,
        rollout_tick: config.rollout_tick,
        vuln_review: config.vuln_review,
    }));
    tasks.push(spawn_refusal_recorder(authority.clone(), tls.refusals));
    let pki_app = sigil_pki::router(authority.clone());
    tasks.push(tokio::spawn(tls::serve_tls(
        listeners.api,
        tls.config,
        api_app(&authority),
    )));
    tasks.push(tokio::spawn(tls::serve_plain(listeners.pki, pki_app)));
    let (api_addr, pki_addr) = (listeners.api_addr, listeners.pki_addr);
    tracing::info!(%api_addr, %pki_addr, database = store_kind(&store), "sigil is serving");
    Ok(ServerHandle {
        api_addr,
        pki_addr,
        store,
        new_admin_token: prepared.new_admin_token,
        authority,
        _lock: prepared.lock,
        tasks,
    })
}

/// `server.started`: the configuration this process serves with.
async fn record_start(
    store: &Store,
    config: &ServerConfig,
    listeners: &Listeners,
    pki_base_url: &str,
    prepared: &sigil_authority::Prepared,
    now: time::OffsetDateTime,
) -> Result<(), ServerError> {
    let origin = prepared.foundation.log_key.origin();
    store
        .append_audit(vec![AuditEvent::new(
            now,
            Actor::system("sigil"),
            "server.started",
            format!("log:{origin}"),
            Outcome::Success,
            serde_json::json!({
                "version": env!("CARGO_PKG_VERSION"),
                "api_listen": listeners.api_addr.to_string(),
                "pki_listen": listeners.pki_addr.to_string(),
                "database": store_kind(store),
                "pki_base_url": pki_base_url,
                "tls_names": tls_names(config),
                "trust_domain": config.trust_domain,
                "checkpoint_interval_seconds": config.checkpoint_interval.as_secs(),
                "ocsp_signing": config.ocsp_signing.as_str(),
                "superseded_overlap_seconds": config.superseded_overlap.map(|d| d.whole_seconds()),
                "enrollment_profile": config.enrollment_profile,
                "mosquitto": config.mosquitto.as_ref().map(|m| format!("{}:{}", m.host, m.port)),
                "crl_validity_hours": config.crl_validity.whole_hours(),
            }),
        )])
        .await?;
    Ok(())
}

/// Client certificates refused in TLS handshakes go to the audit log (the handshake itself
/// cannot wait for a database write).
fn spawn_refusal_recorder(
    authority: Arc<Authority>,
    mut refusals: tokio::sync::mpsc::Receiver<mtls::RefusedClientCertificate>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(r) = refusals.recv().await {
            authority
                .record_refused_client_certificate(&r.serial, &r.subject, &r.issuer, &r.reason)
                .await;
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

fn store_kind(store: &Store) -> &'static str {
    match store.backend() {
        sigil_store::Backend::Sqlite => "sqlite",
        sigil_store::Backend::Postgres => "postgres",
    }
}
