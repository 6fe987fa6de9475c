//! The OCSP responder service (RFC 6960): a request's DER in, a signed response's DER out.
//! Every answer is an OCSP response; a request that cannot be parsed gets a `malformedRequest`
//! response. The HTTP binding (`POST /ocsp`, `GET /ocsp/<base64>`) is the PKI front-end's.
//!
//! Statuses come from the live database. Signed answers to nonce-less single-certificate
//! requests are cached for a few minutes; every revocation invalidates the whole cache before
//! the CRL is re-signed, so a cached `good` never outlives a revocation.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use time::OffsetDateTime;

use sigil_ca::IssuingCa;
use sigil_ca::ocsp::{self, OcspResponder, ParsedRequest, ResponseStatus, SerialStatus};
use sigil_domain::Serial;
use sigil_store::Store;

use crate::{AuthorityError, Clock};

/// nextUpdate - thisUpdate of every response.
pub const OCSP_VALIDITY: time::Duration = time::Duration::minutes(15);
/// A cached response is re-signed once it is this old, so a relying party always receives at
/// least `OCSP_VALIDITY - OCSP_REFRESH` of validity. Revocations do not wait for this: they
/// invalidate the cache at once.
pub const OCSP_REFRESH: time::Duration = time::Duration::minutes(5);
/// Life of a delegated responder certificate. ocsp-nocheck makes it unrevocable in practice, so
/// it is short and rotated at half-life.
pub const RESPONDER_CERT_VALIDITY: time::Duration = time::Duration::days(2);
/// Most responses kept signed (~0.5 KiB each).
const CACHE_CAPACITY: usize = 262_144;

/// Who signs OCSP responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OcspSigning {
    /// A delegated responder certificate (id-kp-OCSPSigning, ocsp-nocheck) with an in-memory key,
    /// so the issuing key signs nothing but certificates and CRLs.
    #[default]
    Delegated,
    IssuingCa,
}

impl OcspSigning {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Delegated => "delegated",
            Self::IssuingCa => "issuing-ca",
        }
    }
}

impl std::str::FromStr for OcspSigning {
    type Err = AuthorityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "delegated" => Ok(Self::Delegated),
            "issuing-ca" => Ok(Self::IssuingCa),
            other => Err(AuthorityError::Config(format!(
                "OCSP signer `{}`: expected `delegated` or `issuing-ca`",
                other.chars().take(32).collect::<String>()
            ))),
        }
    }
}

/// Signed answers for single-certificate requests without a nonce (what browsers, TLS
/// stacks and brokers send), keyed by the request's DER. Entries carry the revocation epoch
/// they were read in: a revocation bumps the epoch, so no answer read before it is served after.
#[derive(Debug)]
pub struct OcspCache {
    entries: quick_cache::sync::Cache<Vec<u8>, CachedResponse>,
    /// Statuses read from the database, for requests that must be signed afresh (with a nonce,
    /// or several certificates): a status changes only by a revocation, which bumps the epoch.
    statuses: quick_cache::sync::Cache<Serial, (SerialStatus, u64)>,
    epoch: AtomicU64,
}

#[derive(Debug, Clone)]
struct CachedResponse {
    der: Bytes,
    signed_at: OffsetDateTime,
    epoch: u64,
}

impl Default for OcspCache {
    fn default() -> Self {
        Self {
            entries: quick_cache::sync::Cache::new(CACHE_CAPACITY),
            statuses: quick_cache::sync::Cache::new(CACHE_CAPACITY),
            epoch: AtomicU64::new(0),
        }
    }
}

impl OcspCache {
    /// A revocation committed (or may have): forget every signed answer.
    pub fn invalidate(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }

    fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    fn get(&self, key: &[u8], now: OffsetDateTime) -> Option<Bytes> {
        let hit = self.entries.get(key)?;
        let fresh =
            hit.epoch == self.epoch() && now >= hit.signed_at && now - hit.signed_at < OCSP_REFRESH;
        fresh.then_some(hit.der)
    }

    fn status(&self, serial: &Serial) -> Option<SerialStatus> {
        let (status, epoch) = self.statuses.get(serial)?;
        (epoch == self.epoch()).then_some(status)
    }

    fn put(&self, key: Vec<u8>, der: Bytes, signed_at: OffsetDateTime, epoch: u64) {
        self.entries.insert(
            key,
            CachedResponse {
                der,
                signed_at,
                epoch,
            },
        );
    }
}

/// The responder in service (replaced when its delegated certificate is rotated).
pub struct OcspService {
    store: Store,
    ca: Arc<IssuingCa>,
    signing: OcspSigning,
    responder: RwLock<Arc<OcspResponder>>,
    pub cache: Arc<OcspCache>,
}

impl OcspService {
    pub fn new(
        store: Store,
        ca: Arc<IssuingCa>,
        signing: OcspSigning,
        cache: Arc<OcspCache>,
        now: OffsetDateTime,
    ) -> Result<Arc<Self>, AuthorityError> {
        let responder = Self::make_responder(&ca, signing, now)?;
        Ok(Arc::new(Self {
            store,
            ca,
            signing,
            responder: RwLock::new(Arc::new(responder)),
            cache,
        }))
    }

    fn make_responder(
        ca: &Arc<IssuingCa>,
        signing: OcspSigning,
        now: OffsetDateTime,
    ) -> Result<OcspResponder, AuthorityError> {
        Ok(match signing {
            OcspSigning::IssuingCa => OcspResponder::new(ca.clone())?,
            OcspSigning::Delegated => {
                OcspResponder::delegated(ca.clone(), RESPONDER_CERT_VALIDITY, now)?
            }
        })
    }

    pub fn responder(&self) -> Option<Arc<OcspResponder>> {
        self.responder.read().ok().map(|r| r.clone())
    }

    /// Replace a delegated responder certificate past half its life (checked every ten minutes).
    pub fn spawn_rotation(self: &Arc<Self>, clock: Clock) -> tokio::task::JoinHandle<()> {
        let service = self.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(std::time::Duration::from_secs(600));
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                if let Err(e) = service.rotate_if_due(clock()) {
                    tracing::error!(error = %e, "OCSP responder certificate rotation failed");
                }
            }
        })
    }

    fn rotate_if_due(&self, now: OffsetDateTime) -> Result<(), AuthorityError> {
        let due = self
            .responder()
            .and_then(|r| r.signer_not_after())
            .is_some_and(|not_after| not_after - now < RESPONDER_CERT_VALIDITY / 2);
        if due {
            let fresh = Arc::new(Self::make_responder(&self.ca, self.signing, now)?);
            if let Ok(mut current) = self.responder.write() {
                *current = fresh;
            }
            tracing::info!("rotated the delegated OCSP responder certificate");
        }
        Ok(())
    }
}

fn refuse(status: ResponseStatus, why: &str) -> Bytes {
    tracing::debug!(?status, why, "OCSP request refused");
    Bytes::from(ocsp::error_response(status))
}

impl OcspService {
    /// The DER OCSP response to the DER request `der`: signed statuses, or an error response
    /// (malformedRequest, tryLater, internalError) saying why not.
    pub async fn answer(&self, der: &[u8], now: OffsetDateTime) -> Bytes {
        let cache = &self.cache;
        // Keyed by the request's exact bytes: an answer is only stored after those same bytes
        // parsed as a nonce-less question about one certificate, so a hit needs no parsing.
        if let Some(answer) = cache.get(der, now) {
            return answer;
        }
        let request = match ocsp::parse_request(der) {
            Ok(r) => r,
            Err(e) => return refuse(e.status(), &e.to_string()),
        };
        let Some(responder) = self.responder() else {
            return refuse(ResponseStatus::InternalError, "responder lock poisoned");
        };
        // Read before the status lookup: an answer read before a revocation carries the old epoch.
        let epoch = cache.epoch();
        let statuses = match self.statuses(&responder, &request, epoch).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "OCSP status lookup failed");
                // RFC 6960: tryLater when the responder cannot answer for now.
                return refuse(ResponseStatus::TryLater, "database unavailable");
            }
        };
        let answer = match responder.respond(&request, &statuses, now, OCSP_VALIDITY) {
            Ok(der) => Bytes::from(der),
            Err(e) => {
                tracing::error!(error = %e, "signing an OCSP response failed");
                return refuse(ResponseStatus::InternalError, "signing failed");
            }
        };
        // Only a nonce-less question about one certificate has an answer worth keeping (a nonce
        // must be echoed under a fresh signature), and not `unknown`: the certificate may be being
        // issued right now.
        if !request.has_nonce()
            && matches!(
                statuses.as_slice(),
                [SerialStatus::Good | SerialStatus::Revoked { .. }]
            )
        {
            cache.put(der.to_vec(), answer.clone(), now, epoch);
        }
        answer
    }

    async fn statuses(
        &self,
        responder: &OcspResponder,
        request: &ParsedRequest,
        epoch: u64,
    ) -> Result<Vec<SerialStatus>, sigil_store::StoreError> {
        let cache = &self.cache;
        let mut out = Vec::with_capacity(request.certs.len());
        for id in &request.certs {
            let status = match id.serial() {
                Some(serial) if responder.is_issuer_of(id) => match cache.status(&serial) {
                    Some(known) => known,
                    None => {
                        let status = match self.store.certificate_revocation(&serial).await? {
                            None => SerialStatus::Unknown,
                            Some(None) => SerialStatus::Good,
                            Some(Some(r)) => SerialStatus::Revoked {
                                at: r.revoked_at,
                                reason: r.reason,
                            },
                        };
                        if status != SerialStatus::Unknown {
                            cache.statuses.insert(serial, (status, epoch));
                        }
                        status
                    }
                },
                _ => SerialStatus::Unknown,
            };
            out.push(status);
        }
        Ok(out)
    }
}
