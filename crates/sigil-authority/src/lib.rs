//! Sigil's authority: the services every protocol front-end uses, and no HTTP.
//!
//! It holds issuance and enrolment (`issue`, `enrol_with_token`, `enrol_bootstrapped`,
//! `re_enrol`), revocation's CRL publisher, the OCSP service and its cache, the audit log's
//! signer, the data directory and its secrets, the access policy in force, the failed
//! authentication ledger, the continuous compliance engine, and the clock. Front-ends (the
//! REST API, EST, the public PKI listener, the broker integrations) reach it through the
//! narrow interface each defines for itself; the server crate assembles it and the listeners.

pub mod access;
pub mod auditlog;
mod clock;
pub mod compliance;
pub mod crl;
pub mod datadir;
pub mod enrolment;
mod error;
pub mod exclusive;
pub mod failures;
mod foreign;
pub mod monitoring;
pub mod ocsp;
pub mod policy;
pub mod recovery;
pub mod refusals;
pub mod rollouts;
pub mod secrets;
mod startup;
mod tokens;
pub mod updates;
pub mod vulns;

use std::sync::Arc;

use time::OffsetDateTime;

use sigil_ca::{IdentityScheme, IssuingCa, Profile, PublicUrls};
use sigil_store::Store;

pub use auditlog::AuditLog;
pub use clock::{Clock, rfc3339, system_clock};
pub use compliance::AlertSink;
pub use crl::{CrlPublisher, RevokedSerials};
pub use datadir::{DataDir, PassphraseSource};
pub use error::{
    AuthorityError, INTERNAL_REASON, KEY_BOUND_REASON, Refusal, RefusalKind, RequestError,
    ca_error_is_callers,
};
pub use ocsp::{OcspService, OcspSigning};
pub use refusals::RefusalRecord;
pub use startup::{Background, Foundation, Prepared, Services, StoreConfig};
pub use tokens::{ADMIN_TOKEN_NAME, generate_secret, generate_token, token_hash};

/// The TLS layer's trust in client certificates, as far as the authority changes it: the
/// registered manufacturer CAs whose bootstrap certificates may enrol.
pub trait ClientTrust: Send + Sync {
    fn set_manufacturer_cas(&self, ders: &[Vec<u8>]) -> Result<(), AuthorityError>;
}

/// The services, assembled once at start (see [`Authority::prepare`] and [`Authority::open`]).
pub struct Authority {
    store: Store,
    ca: Arc<IssuingCa>,
    urls: PublicUrls,
    scheme: IdentityScheme,
    /// Profile of certificates issued at first enrolment (renewals keep their profile).
    enrollment_profile: &'static Profile,
    clock: Clock,
    audit: Arc<AuditLog>,
    crl: Arc<CrlPublisher>,
    ocsp: Arc<OcspService>,
    policy: Arc<policy::ActivePolicy>,
    /// Seals operator TOTP seeds in the database.
    secrets: secrets::SecretBox,
    failures: failures::FailureLedger,
    catalogue: sigil_compliance::Catalogue,
    compliance: compliance::live::LiveCompliance,
    alerts: Option<Arc<dyn AlertSink>>,
    monitoring: monitoring::Monitoring,
    trust: Arc<dyn ClientTrust>,
    /// Update repositories, releases, artefacts.
    updates: Arc<updates::Updates>,
    /// Rollout decisions and operator actions on rollouts are made one at a time.
    rollout_lock: tokio::sync::Mutex<()>,
    /// One vulnerability review at a time; a change to the data asks for one now.
    vuln_review_lock: tokio::sync::Mutex<()>,
    vuln_review_wanted: tokio::sync::Notify,
    /// OSV records compiled by earlier findings requests.
    compiled: vulns::CompiledCache,
    /// Reports the public disclosure intake took this hour.
    intake: vulns::IntakeLimiter,
}

impl Authority {
    pub fn now(&self) -> OffsetDateTime {
        (self.clock)()
    }

    /// The inventory, certificates, tokens and audit log (every write audited in its
    /// transaction).
    /// Where alarms and compliance drops are announced, if anywhere.
    pub fn alerts(&self) -> Option<&Arc<dyn AlertSink>> {
        self.alerts.as_ref()
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn ca(&self) -> &Arc<IssuingCa> {
        &self.ca
    }

    pub fn urls(&self) -> &PublicUrls {
        &self.urls
    }

    pub fn scheme(&self) -> &IdentityScheme {
        &self.scheme
    }

    pub fn audit(&self) -> &Arc<AuditLog> {
        &self.audit
    }

    pub fn crl(&self) -> &Arc<CrlPublisher> {
        &self.crl
    }

    pub fn ocsp(&self) -> &Arc<OcspService> {
        &self.ocsp
    }

    /// A snapshot of the access policy in force.
    pub fn policy(&self) -> Arc<sigil_policy::PolicyEngine> {
        self.policy.engine()
    }

    /// The access policy in force, to read its version or install a new one.
    pub fn active_policy(&self) -> &Arc<policy::ActivePolicy> {
        &self.policy
    }

    pub fn secrets(&self) -> &secrets::SecretBox {
        &self.secrets
    }

    /// The compliance control catalogue.
    pub fn catalogue(&self) -> &sigil_compliance::Catalogue {
        &self.catalogue
    }

    /// Software updates: channels, releases, artefacts, the TUF repositories.
    pub fn updates(&self) -> &Arc<updates::Updates> {
        &self.updates
    }

    /// The continuous compliance engine's results.
    pub fn compliance(&self) -> &compliance::live::LiveCompliance {
        &self.compliance
    }

    /// Re-sign the CRL after a committed revocation. A failure does not undo the revocation
    /// (it is recorded and enforced already); the publisher retries within a minute.
    pub async fn publish_crl(&self, actor: &sigil_audit::Actor) -> Option<u64> {
        match self.crl.publish(actor, self.now()).await {
            Ok(crl) => Some(crl.number),
            Err(e) => {
                tracing::error!(error = %e, "revocation committed but the CRL could not be re-signed; retrying");
                self.crl.mark_stale();
                None
            }
        }
    }

    /// Register a manufacturer CA for a product: its bootstrap certificates are accepted by
    /// the TLS layer from the next handshake on.
    pub async fn add_manufacturer_ca(
        &self,
        actor: &sigil_audit::Actor,
        product: sigil_domain::ProductId,
        ca: &sigil_ca::ManufacturerCa,
    ) -> Result<sigil_store::ManufacturerCaRecord, RequestError> {
        let now = self.now();
        let record = self
            .store
            .add_manufacturer_ca(
                actor,
                product,
                &ca.sha256,
                &ca.subject,
                &ca.der,
                ca.not_after,
                now,
            )
            .await?;
        let all: Vec<Vec<u8>> = self
            .store
            .manufacturer_cas(None)
            .await?
            .into_iter()
            .map(|c| c.der)
            .collect();
        self.trust.set_manufacturer_cas(&all)?;
        Ok(record)
    }
}
