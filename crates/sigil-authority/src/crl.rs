//! Publishing the issuing CA's CRL: re-signed at once after every revocation, and refreshed well
//! before its nextUpdate, so relying parties never hold an expired CRL. The newest one is kept in
//! memory for the PKI listener and in the database (its number only grows, across restarts).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use time::{Duration, OffsetDateTime};
use tokio::sync::{Mutex, watch};

use sigil_audit::Actor;
use sigil_ca::{CrlContents, IssuingCa, PublicUrls, RevokedEntry};
use sigil_domain::Serial;
use sigil_store::{Store, StoredCrl};

use crate::ocsp::OcspCache;
use crate::{AuthorityError, Clock};

/// How long a CRL is valid (nextUpdate - thisUpdate) unless configured otherwise. Relying
/// parties that check CRLs (a broker's `crlfile`) refuse every certificate once it has passed,
/// so this is also how long Sigil may be down before they fail closed.
pub const CRL_VALIDITY: Duration = Duration::hours(24);
/// How old a CRL may get before it is re-signed even without a revocation.
pub const CRL_REFRESH: Duration = Duration::hours(1);

/// Serials of revoked, unexpired certificates, shared by the CRL publisher (writer) and the
/// TLS verifier (reader).
#[derive(Debug, Clone, Default)]
pub struct RevokedSerials(Arc<RwLock<HashSet<Serial>>>);

impl RevokedSerials {
    pub fn replace(&self, serials: impl IntoIterator<Item = Serial>) {
        if let Ok(mut set) = self.0.write() {
            *set = serials.into_iter().collect();
        }
    }

    /// Fails closed: a poisoned lock counts as revoked.
    pub fn contains(&self, serial: &Serial) -> bool {
        self.0.read().map_or(true, |set| set.contains(serial))
    }
}

pub struct CrlPublisher {
    store: Store,
    ca: Arc<IssuingCa>,
    urls: PublicUrls,
    /// The CRL being served; subscribers (the broker's CRL file) hear of each new one.
    current: watch::Sender<Option<Arc<StoredCrl>>>,
    /// What the TLS listener refuses; refreshed with every CRL.
    revoked_serials: RevokedSerials,
    /// Signed OCSP answers, forgotten whenever the revocation set may have changed.
    ocsp_cache: Arc<OcspCache>,
    /// Serialises signing, so numbers are assigned in order.
    signing: Mutex<()>,
    /// A revocation committed but its CRL failed to publish: retry at the next tick.
    stale: AtomicBool,
    /// nextUpdate - thisUpdate of every CRL signed.
    validity: Duration,
}

impl CrlPublisher {
    /// Sign a fresh CRL at start: the revocation set may have changed while the server was down,
    /// and the distribution point URL it names may have changed with the configuration.
    pub async fn open(
        store: Store,
        ca: Arc<IssuingCa>,
        urls: PublicUrls,
        revoked_serials: RevokedSerials,
        ocsp_cache: Arc<OcspCache>,
        validity: Duration,
        now: OffsetDateTime,
    ) -> Result<Arc<Self>, AuthorityError> {
        if validity <= CRL_REFRESH {
            return Err(AuthorityError::Config(format!(
                "the CRL validity must be longer than its refresh interval ({} h)",
                CRL_REFRESH.whole_hours()
            )));
        }
        let latest = store.latest_crl().await?.map(Arc::new);
        let publisher = Arc::new(Self {
            store,
            ca,
            urls,
            current: watch::Sender::new(latest),
            revoked_serials,
            ocsp_cache,
            signing: Mutex::new(()),
            stale: AtomicBool::new(false),
            validity,
        });
        publisher.publish(&Actor::system("sigil"), now).await?;
        Ok(publisher)
    }

    /// The CRL being served.
    pub async fn current(&self) -> Option<Arc<StoredCrl>> {
        self.current.borrow().clone()
    }

    /// Follow the CRLs as they are published.
    pub fn subscribe(&self) -> watch::Receiver<Option<Arc<StoredCrl>>> {
        self.current.subscribe()
    }

    async fn refresh_if_due(&self, now: OffsetDateTime) -> Result<(), AuthorityError> {
        let due = self.stale.load(Ordering::Acquire)
            || match self.current().await {
                None => true,
                Some(crl) => now - crl.this_update >= CRL_REFRESH,
            };
        if due {
            self.publish(&Actor::system("sigil"), now).await?;
        }
        Ok(())
    }

    /// Sign and publish a CRL of everything revoked and unexpired now. Callers call this after
    /// a revocation commits, so the OCSP cache is invalidated first, before anything can fail.
    pub async fn publish(
        &self,
        actor: &Actor,
        now: OffsetDateTime,
    ) -> Result<Arc<StoredCrl>, AuthorityError> {
        self.ocsp_cache.invalidate();
        let _signing = self.signing.lock().await;
        let revoked: Vec<RevokedEntry> = self
            .store
            .revoked_certificates(now)
            .await?
            .into_iter()
            .map(|r| RevokedEntry {
                serial: r.serial,
                revoked_at: r.revoked_at,
                reason: r.reason,
            })
            .collect();
        // The TLS listener refuses these from now on, whether or not the CRL below gets signed.
        self.revoked_serials
            .replace(revoked.iter().map(|r| r.serial.clone()));
        // CRL times are whole seconds in the DER; keep the stored copy identical.
        let this_update = now.replace_nanosecond(0).unwrap_or(now);
        let previous = self.store.latest_crl().await?.map_or(0, |c| c.number);
        let contents = CrlContents {
            number: previous + 1,
            this_update,
            next_update: this_update + self.validity,
            revoked: &revoked,
        };
        let der = self.ca.sign_crl(&contents, &self.urls)?;
        let crl = StoredCrl {
            number: contents.number,
            this_update: contents.this_update,
            next_update: contents.next_update,
            der,
        };
        self.store.insert_crl(actor, &crl, revoked.len()).await?;
        let crl = Arc::new(crl);
        self.current.send_replace(Some(crl.clone()));
        self.stale.store(false, Ordering::Release);
        tracing::info!(
            number = crl.number,
            revoked = revoked.len(),
            "published CRL"
        );
        Ok(crl)
    }

    /// Have the next tick re-sign the CRL (after a failed publication).
    pub fn mark_stale(&self) {
        self.ocsp_cache.invalidate();
        self.stale.store(true, Ordering::Release);
    }

    /// Refresh the CRL before it goes stale (checked every minute), and, when `overlap` is set,
    /// revoke superseded certificates once their overlap has ended (checked at least every
    /// half overlap), publishing a CRL at once when that revoked any.
    pub fn spawn_refresh(
        self: &Arc<Self>,
        clock: Clock,
        overlap: Option<Duration>,
    ) -> tokio::task::JoinHandle<()> {
        let publisher = self.clone();
        let minute = std::time::Duration::from_secs(60);
        let tick = overlap
            .and_then(|o| std::time::Duration::try_from(o / 2).ok())
            .map_or(minute, |half| {
                half.clamp(std::time::Duration::from_secs(1), minute)
            });
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(tick);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                let now = clock();
                if let Some(overlap) = overlap
                    && let Err(e) = publisher.end_overlaps(now - overlap, now).await
                {
                    tracing::error!(error = %e, "revoking superseded certificates failed");
                }
                if let Err(e) = publisher.refresh_if_due(now).await {
                    tracing::error!(error = %e, "CRL refresh failed");
                }
            }
        })
    }

    async fn end_overlaps(
        &self,
        replaced_before: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<(), AuthorityError> {
        let system = Actor::system("sigil");
        let serials = self
            .store
            .revoke_superseded(&system, replaced_before, now)
            .await?;
        if !serials.is_empty() {
            tracing::info!(
                count = serials.len(),
                "revoked superseded certificates after their overlap"
            );
            if let Err(e) = self.publish(&system, now).await {
                self.mark_stale();
                return Err(e);
            }
        }
        Ok(())
    }
}
