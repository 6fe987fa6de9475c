//! Bringing the authority up, in two steps around the server's listeners (whose bound
//! addresses name the PKI URLs written into certificates):
//!
//! 1. [`Authority::prepare`]: one process per data directory and database, the CA created or
//!    loaded, the database opened, the audit log's key, the bootstrap admin token.
//! 2. [`Authority::open`]: the CRL re-signed, the OCSP responder, the audit log's first
//!    checkpoint, the policy in force, the sealed-secrets key, the compliance catalogue.
//!
//! Then [`Authority::spawn_background`] starts what runs on its own (checkpoints, CRL refresh,
//! responder rotation, failure summaries, compliance).

use std::sync::Arc;

use time::Duration;
use tokio::task::JoinHandle;

use sigil_audit::{Actor, AuditEvent, LogKey, Outcome};
use sigil_ca::{CaNames, IdentityScheme, IssuingCa, KeyAlgorithm, Profile, PublicUrls};
use sigil_store::Store;

use crate::exclusive::ProcessLock;
use crate::failures::FailureLedger;
use crate::ocsp::{OcspCache, OcspService, OcspSigning};
use crate::{
    ADMIN_TOKEN_NAME, AlertSink, AuditLog, Authority, AuthorityError, ClientTrust, Clock,
    CrlPublisher, DataDir, RevokedSerials, compliance, datadir, exclusive, generate_token, policy,
    secrets, token_hash,
};

/// Where the authority keeps its state.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub data_dir: DataDir,
    /// `None`: SQLite in the data directory.
    pub database_url: Option<String>,
    /// Key algorithm for a CA created on first start.
    pub algorithm: KeyAlgorithm,
    /// Origin (name) of the audit log, used when its key is created. Default
    /// `sigil/<first 8 hex digits of the root certificate's SHA-256>/audit`.
    pub log_origin: Option<String>,
}

/// What every service is built on: the data directory, the CA, the database, the log key.
pub struct Foundation {
    pub dir: DataDir,
    pub ca: Arc<IssuingCa>,
    pub store: Store,
    pub log_key: LogKey,
}

/// The outcome of [`Authority::prepare`].
pub struct Prepared {
    pub foundation: Foundation,
    /// Held for as long as the process serves.
    pub lock: ProcessLock,
    /// Set when this start created the bootstrap admin token.
    pub new_admin_token: Option<String>,
}

/// The settings of the services [`Authority::open`] starts.
pub struct Services {
    pub urls: PublicUrls,
    pub scheme: IdentityScheme,
    pub enrollment_profile: &'static Profile,
    pub ocsp_signing: OcspSigning,
    /// nextUpdate - thisUpdate of the CRLs.
    pub crl_validity: Duration,
    /// What the TLS layer refuses, refreshed with every CRL.
    pub revoked: RevokedSerials,
    pub failures: FailureLedger,
    /// Where compliance drops are announced, if anywhere.
    pub alerts: Option<Arc<dyn AlertSink>>,
    pub trust: Arc<dyn ClientTrust>,
    /// Update repositories: expiries and the largest artefact.
    pub updates: crate::updates::UpdateSettings,
    /// How device metrics travel to the detector (in process by default, or JetStream).
    pub monitoring: crate::monitoring::MonitoringSettings,
}

/// What runs on its own once the authority is open.
#[derive(Debug, Clone)]
pub struct Background {
    /// How often the audit log signs a checkpoint while it grows.
    pub checkpoint_interval: std::time::Duration,
    /// How long a certificate replaced by re-enrolment stays valid before it is revoked.
    pub superseded_overlap: Option<Duration>,
    /// Evaluate every compliance framework this often (`None`: only on request).
    pub compliance_interval: Option<std::time::Duration>,
    /// Keep compliance results current by following the database.
    pub follow_compliance: bool,
    /// How often rollouts under way are judged and assign devices.
    pub rollout_tick: std::time::Duration,
    /// How often findings, sightings and Article 14 cases are reviewed (besides after every
    /// change to feeds, SBOMs or VEX, and the deadlines' alerts).
    pub vuln_review: std::time::Duration,
}

impl Authority {
    /// Take the data directory and the database for this process, creating the CA on first
    /// use, and mint the bootstrap admin token once per database.
    pub async fn prepare(config: &StoreConfig, clock: &Clock) -> Result<Prepared, AuthorityError> {
        let dir = &config.data_dir;
        let url = match &config.database_url {
            Some(url) => url.clone(),
            None => dir.default_database_url(),
        };
        // Before anything else touches the directory or the database: one process serves them.
        datadir::create_private_dir(dir.root())?;
        let lock = exclusive::lock(dir, &url).await?;
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
            // The database holds token hashes and inventory: create it owner-only (SQLite
            // gives its -wal and -shm files the same mode).
            datadir::create_private_file(&dir.sqlite_path())?;
        }
        let store = Store::open(&url).await?;

        let root_sha256 = hex::encode(sigil_ca::sha256(ca.root_cert_der()));
        let origin = config
            .log_origin
            .clone()
            .unwrap_or_else(|| format!("sigil/{}/audit", &root_sha256[..8]));
        let (log_key, created_log) = dir.load_or_create_log_key(&origin)?;
        let system = Actor::system("sigil");
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
                system,
                "audit_log.created",
                format!("log:{}", log_key.origin()),
                Outcome::Success,
                serde_json::json!({"origin": log_key.origin(), "verifier_key": log_key.verifier_key()}),
            ));
        }
        store.append_audit(startup).await?;
        let new_admin_token = mint_bootstrap_token(dir, &store, clock).await?;
        Ok(Prepared {
            foundation: Foundation {
                dir: dir.clone(),
                ca,
                store,
                log_key,
            },
            lock,
            new_admin_token,
        })
    }

    /// Start the services on a prepared foundation. The CRL is re-signed first (the
    /// revocation set or its URL may have changed while the server was down), before the
    /// first checkpoint, so that the checkpoint covers everything start-up logged.
    pub async fn open(
        foundation: Foundation,
        services: Services,
        clock: Clock,
    ) -> Result<Arc<Self>, AuthorityError> {
        let Foundation {
            dir,
            ca,
            store,
            log_key,
        } = foundation;
        let ocsp_cache = Arc::new(OcspCache::default());
        let crl = CrlPublisher::open(
            store.clone(),
            ca.clone(),
            services.urls.clone(),
            services.revoked,
            ocsp_cache.clone(),
            services.crl_validity,
            clock(),
        )
        .await?;
        let ocsp = OcspService::new(
            store.clone(),
            ca.clone(),
            services.ocsp_signing,
            ocsp_cache,
            clock(),
        )?;
        let audit = AuditLog::open(store.clone(), log_key, dir.clone()).await?;
        // Sign the start-up state now, so the first checkpoint does not wait for the timer; a
        // log that fails its integrity check still serves (reads, exports) but signs nothing.
        if let Err(e) = audit.checkpoint(clock()).await {
            tracing::error!(error = %e, "audit log: no checkpoint signed at start");
        }
        let policy = Arc::new(policy::ActivePolicy::load(&store).await?);
        let secrets = secrets::SecretBox::new(&dir.operator_secrets_key()?)?;
        let updates = Arc::new(crate::updates::Updates::new(
            store.clone(),
            clock.clone(),
            services.updates,
            &dir.update_keys_key()?,
            dir.artefacts_dir(),
        )?);
        let monitoring = crate::monitoring::Monitoring::open(
            services.monitoring,
            &dir.metrics_bus_key()?,
            &store,
        )
        .await
        .map_err(|e| AuthorityError::Config(format!("monitoring: {e}")))?;
        Ok(Arc::new(Self {
            monitoring,
            store,
            ca,
            urls: services.urls,
            scheme: services.scheme,
            enrollment_profile: services.enrollment_profile,
            clock,
            audit,
            crl,
            ocsp,
            policy,
            secrets,
            failures: services.failures,
            catalogue: sigil_compliance::Catalogue::shipped()?,
            compliance: compliance::live::LiveCompliance::default(),
            alerts: services.alerts,
            trust: services.trust,
            updates,
            rollout_lock: tokio::sync::Mutex::new(()),
            vuln_review_lock: tokio::sync::Mutex::new(()),
            intake: Default::default(),
            vuln_review_wanted: tokio::sync::Notify::new(),
            compiled: crate::vulns::CompiledCache::default(),
        }))
    }

    /// Start the authority's own tasks; they run until aborted.
    pub fn spawn_background(self: &Arc<Self>, settings: &Background) -> Vec<JoinHandle<()>> {
        let mut tasks = vec![
            self.audit
                .spawn_periodic(settings.checkpoint_interval, self.clock.clone()),
            self.crl
                .spawn_refresh(self.clock.clone(), settings.superseded_overlap),
            self.ocsp.spawn_rotation(self.clock.clone()),
            spawn_failure_summaries(self.clone()),
            self.updates.clone().spawn_refresh(),
            crate::rollouts::spawn_rollouts(self.clone(), settings.rollout_tick),
            crate::vulns::spawn_reviews(self.clone(), settings.vuln_review),
            crate::monitoring::spawn_detector(self.clone()),
            crate::monitoring::spawn_own_metrics(self.clone()),
        ];
        if settings.follow_compliance {
            tasks.push(compliance::live::spawn_follower(self.clone()));
        }
        if let Some(interval) = settings.compliance_interval {
            tasks.push(compliance::spawn_periodic(self.clone(), interval));
        }
        tasks
    }

    /// A client certificate the TLS layer refused in a handshake (the handshake itself cannot
    /// wait for a database write, so it is reported afterwards).
    pub async fn record_refused_client_certificate(
        &self,
        serial: &str,
        subject: &str,
        issuer: &str,
        reason: &str,
    ) {
        let event = AuditEvent::new(
            self.now(),
            Actor::device("unknown"),
            "tls.client_certificate",
            format!("certificate:{serial}"),
            Outcome::Denied,
            serde_json::json!({"reason": reason, "subject": subject, "issuer": issuer}),
        );
        if let Err(e) = self.store.append_audit(vec![event]).await {
            tracing::error!(error = %e, "could not record a refused client certificate");
        }
    }
}

/// The bootstrap token is minted once, on the first start. Revoked, it stays revoked: a
/// restart (or a backup of the directory) must not hand out admin again. A lost admin is
/// recovered on purpose, with `sigil admin recover` (audited).
async fn mint_bootstrap_token(
    dir: &DataDir,
    store: &Store,
    clock: &Clock,
) -> Result<Option<String>, AuthorityError> {
    if store.token_name_used(ADMIN_TOKEN_NAME).await? {
        return Ok(None);
    }
    let token = generate_token()?;
    store
        .replace_api_token(
            &Actor::system("sigil"),
            ADMIN_TOKEN_NAME,
            "admin",
            &token_hash(&token),
            clock(),
        )
        .await?;
    dir.write_admin_token(&token)?;
    tracing::info!(
        "wrote bootstrap admin API token to {}",
        dir.admin_token_path().display()
    );
    Ok(Some(token))
}

/// Every second, one `auth.failures_summarised` entry per address whose window ended with
/// failures past the limit: how many, when, on which channels.
fn spawn_failure_summaries(authority: Arc<Authority>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        loop {
            tick.tick().await;
            let now = authority.now();
            let events: Vec<AuditEvent> = authority
                .failures
                .drain_ended(now)
                .into_iter()
                .map(|s| {
                    AuditEvent::new(
                        now,
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
                && let Err(e) = authority.store.append_audit(events).await
            {
                tracing::error!(error = %e, "could not record failed-authentication summaries");
            }
        }
    })
}
