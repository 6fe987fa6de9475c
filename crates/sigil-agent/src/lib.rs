//! The Sigil device agent: enrols a device over EST with a one-time token or a manufacturer
//! bootstrap certificate, trusting the server only through a pinned root CA fingerprint; then
//! renews the certificate over mTLS when it enters its renewal window, retrying with
//! exponential backoff and jitter through outages, and never losing its working identity
//! (see [`state`]).
//!
//! The key is generated on the device and never leaves it.

mod client;
mod error;
pub mod netstat;
pub mod posture;
pub mod state;
pub mod update;

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};

use client::pem_cert;
pub use client::{Credential, EstClient, MAX_CLOCK_SKEW, fetch_pinned_chain};
pub use error::AgentError;
pub use posture::{FileProvider, LinuxProvider, PostureProvider};
pub use state::{AgentConfig, Identity, StateDir};

/// The agent's notion of now (injectable so tests can move it).
pub type Clock = Arc<dyn Fn() -> OffsetDateTime + Send + Sync>;

pub fn system_clock() -> Clock {
    Arc::new(OffsetDateTime::now_utc)
}

/// How the device proves it may enrol the first time.
#[derive(Debug, Clone)]
pub enum EnrollCredential {
    Token(String),
    /// A manufacturer bootstrap certificate and its key, PEM.
    Bootstrap {
        cert_pem: String,
        key_pem: String,
    },
}

#[derive(Debug, Clone)]
pub struct EnrollOptions {
    pub server: String,
    /// `sha256:HEX` or `HEX`: SHA-256 of the server's root CA certificate, obtained out of band.
    pub ca_fingerprint: String,
    pub device_id: String,
    pub credential: EnrollCredential,
}

/// `sha256:HEX` or `HEX` -> lowercase hex of 32 bytes.
pub fn parse_fingerprint(text: &str) -> Result<String, AgentError> {
    let hex_part = text
        .strip_prefix("sha256:")
        .unwrap_or(text)
        .replace(':', "")
        .to_ascii_lowercase();
    match hex::decode(&hex_part) {
        Ok(bytes) if bytes.len() == 32 => Ok(hex_part),
        _ => Err(AgentError::Usage(format!(
            "CA fingerprint `{}` is not sha256:<64 hex digits>",
            text.chars().take(80).collect::<String>()
        ))),
    }
}

/// The key for generation `generation` (the one staged by an interrupted attempt, if it is
/// usable, else a fresh P-256 key, staged now) and a CSR for it; (CSR DER, SPKI DER).
fn key_and_csr(state: &StateDir, generation: u64) -> Result<(Vec<u8>, Vec<u8>), AgentError> {
    let staged = state
        .staged_key(generation)
        .and_then(|pem| rcgen::KeyPair::from_pem(&pem).ok());
    let key = match staged {
        Some(key) => key,
        None => {
            let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
                .map_err(|e| AgentError::State(format!("key generation: {e}")))?;
            state.stage_key(generation, &key.serialize_pem())?;
            key
        }
    };
    let csr = rcgen::CertificateParams::default()
        .serialize_request(&key)
        .map_err(|e| AgentError::State(format!("CSR: {e}")))?;
    Ok((
        csr.der().to_vec(),
        rcgen::PublicKeyData::subject_public_key_info(&key),
    ))
}

/// The issued certificate must come from the issuing CA at the head of `chain_pem`.
fn check_issued(cert_der: &[u8], chain_pem: &str) -> Result<(), AgentError> {
    let issuing = pem::parse_many(chain_pem)
        .ok()
        .and_then(|c| c.into_iter().next())
        .ok_or_else(|| AgentError::BadAnswer("empty CA chain".into()))?;
    if sigil_ca::directly_issued_by(cert_der, issuing.contents()) {
        Ok(())
    } else {
        Err(AgentError::BadAnswer(
            "the issued certificate does not chain to the pinned CA".into(),
        ))
    }
}

/// First enrolment: fetch and pin the CA, generate the key, enrol, store the identity.
pub async fn enroll(state: &StateDir, opts: &EnrollOptions) -> Result<Identity, AgentError> {
    let fingerprint = parse_fingerprint(&opts.ca_fingerprint)?;
    let server = opts.server.trim_end_matches('/').to_owned();
    if !server.starts_with("https://") {
        return Err(AgentError::Usage(format!(
            "--server `{server}`: EST runs over TLS; give an https:// URL"
        )));
    }
    let (root_pem, chain) = fetch_pinned_chain(&server, &fingerprint).await?;
    let credential = match &opts.credential {
        EnrollCredential::Token(token) => Credential::Token {
            device_id: &opts.device_id,
            token,
        },
        EnrollCredential::Bootstrap { cert_pem, key_pem } => Credential::Certificate {
            identity_pem: format!("{key_pem}\n{cert_pem}"),
        },
    };
    let client = EstClient::new(&server, &root_pem, &credential)?;
    let generation = state.current()?.map_or(1, |c| c.generation + 1);
    let (csr, spki) = key_and_csr(state, generation)?;
    let cert = client.enroll(false, &credential, &csr, &spki).await?;
    check_issued(&cert, &chain)?;
    state.save_config(
        &AgentConfig {
            server,
            ca_fingerprint: fingerprint,
            device_id: opts.device_id.clone(),
        },
        &root_pem,
    )?;
    state.commit(generation, &pem_cert(&cert), &chain)?;
    // Pin the product's update root now, over the channel just authenticated both ways. A
    // product without an update channel yet is pinned at the first update instead.
    match update::pin_channel(state).await {
        Ok(()) | Err(AgentError::Server { status: 404, .. }) => {}
        Err(e) => {
            tracing::warn!(error = %e, "the update root could not be pinned at enrolment; retried at the first update")
        }
    }
    state.current()?.ok_or(AgentError::NotEnrolled)
}

/// Re-enrol over mTLS with the current identity: a new key, a new certificate, the chain
/// refreshed (CA rollover). The old identity stays current until the new one is stored.
pub async fn renew(state: &StateDir) -> Result<Identity, AgentError> {
    let config = state.config()?;
    let current = state.current()?.ok_or(AgentError::NotEnrolled)?;
    let credential = Credential::Certificate {
        identity_pem: format!("{}\n{}", current.key_pem, current.cert_pem),
    };
    let client = EstClient::new(&config.server, &state.ca_pem()?, &credential)?;
    let chain = client.chain().await?;
    let generation = current.generation + 1;
    let (csr, spki) = key_and_csr(state, generation)?;
    let cert = client.enroll(true, &credential, &csr, &spki).await?;
    check_issued(&cert, &chain)?;
    state.commit(generation, &pem_cert(&cert), &chain)?;
    state.current()?.ok_or(AgentError::NotEnrolled)
}

/// Send `posture` to the server, authenticated by the current identity.
pub async fn report_posture(
    state: &StateDir,
    posture: &sigil_domain::Posture,
) -> Result<String, AgentError> {
    let config = state.config()?;
    let current = state.current()?.ok_or(AgentError::NotEnrolled)?;
    let credential = Credential::Certificate {
        identity_pem: format!("{}\n{}", current.key_pem, current.cert_pem),
    };
    EstClient::new(&config.server, &state.ca_pem()?, &credential)?
        .report_posture(posture)
        .await
}

/// Read `/proc` and report when the interval has passed: the first report holds the ports and
/// connections with zero counters, later ones the counters' growth since the previous report.
async fn send_metrics_if_due(
    state: &StateDir,
    opts: &MetricsOptions,
    last: &mut Option<(std::time::Instant, netstat::NetSnapshot)>,
    report: &mut RunReport,
) -> Result<(), AgentError> {
    if last
        .as_ref()
        .is_some_and(|(at, _)| at.elapsed() < opts.interval)
    {
        return Ok(());
    }
    let current = match netstat::read(&opts.proc_root) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "could not read the network tables");
            return Ok(());
        }
    };
    let previous = last.as_ref().map_or(&current, |(_, s)| s);
    let metrics = netstat::report(previous, &current);
    match report_metrics(state, &metrics).await {
        Ok(_) => {
            report.metrics_reports += 1;
            *last = Some((std::time::Instant::now(), current));
            Ok(())
        }
        Err(e) if e.is_transient() => {
            tracing::warn!(error = %e, "metrics report failed; retrying");
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Send a metrics report to the server, authenticated by the current identity.
pub async fn report_metrics(
    state: &StateDir,
    report: &sigil_detect::MetricsReport,
) -> Result<u64, AgentError> {
    let config = state.config()?;
    let current = state.current()?.ok_or(AgentError::NotEnrolled)?;
    let credential = Credential::Certificate {
        identity_pem: format!("{}\n{}", current.key_pem, current.cert_pem),
    };
    EstClient::new(&config.server, &state.ca_pem()?, &credential)?
        .report_metrics(report)
        .await
}

/// Validity of a certificate.
pub fn validity(cert_der: &[u8]) -> Result<(OffsetDateTime, OffsetDateTime), AgentError> {
    let (_, cert) = X509Certificate::from_der(cert_der)
        .map_err(|e| AgentError::State(format!("cert.pem: {e}")))?;
    Ok((
        cert.validity().not_before.to_datetime(),
        cert.validity().not_after.to_datetime(),
    ))
}

/// Default point in a certificate's life at which to renew: two thirds.
pub const DEFAULT_RENEW_FRACTION: f64 = 2.0 / 3.0;

/// When to renew: at `fraction` of the lifetime, minus up to 15% of that at random (`jitter` in
/// [0, 1)), so a fleet enrolled together does not renew together. With the default fraction
/// that is between 57% and 67% of the lifetime.
pub fn renewal_due(
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    fraction: f64,
    jitter: f64,
) -> OffsetDateTime {
    let life = not_after - not_before;
    let fraction = fraction.clamp(0.0, 1.0) * (1.0 - 0.15 * jitter.clamp(0.0, 1.0));
    not_before + life * fraction
}

/// A uniform random number in [0, 1).
pub fn random_fraction() -> f64 {
    let mut b = [0u8; 4];
    let _ = aws_lc_rs::rand::fill(&mut b);
    f64::from(u32::from_le_bytes(b)) / (f64::from(u32::MAX) + 1.0)
}

/// What the run loop did, for an observer (the fleet simulator, metrics).
#[derive(Debug, Clone)]
pub enum AgentEvent {
    Renewed {
        generation: u64,
        latency: Duration,
    },
    RenewalFailed {
        kind: &'static str,
    },
    PostureSent,
    /// An assigned update was installed (or found installed) and reported.
    UpdateInstalled {
        target: String,
    },
    /// An assigned update was refused or failed, and reported so.
    UpdateRefused {
        kind: &'static str,
    },
}

#[derive(Clone)]
pub struct RunOptions {
    pub clock: Clock,
    /// First retry delay after a failed renewal; doubles up to `max_backoff`.
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// Longest single sleep, so clock changes and shutdown are noticed.
    pub poll: Duration,
    /// Return after this many renewals (tests, simulation); `None`: run forever.
    pub renewals: Option<u64>,
    /// Renew at this fraction of the certificate's lifetime (before jitter).
    pub renew_fraction: f64,
    /// Where posture reports come from; `None`: none are sent.
    pub posture: Option<Arc<dyn PostureProvider>>,
    /// Report at least this often, and whenever the posture changes.
    pub posture_interval: Duration,
    /// Where to tell what happened, if anyone listens.
    pub events: Option<tokio::sync::mpsc::UnboundedSender<AgentEvent>>,
    /// Follow the server's rollouts into these slots, asking at every poll; `None`: never.
    pub updates: Option<update::InstallOptions>,
    /// Report network metrics read from `/proc` this often; `None`: never.
    pub metrics: Option<MetricsOptions>,
}

/// Where the device's network metrics are read, and how often they are reported.
#[derive(Clone, Debug)]
pub struct MetricsOptions {
    /// `/proc` on a device (a copy of its `net/` tables in tests).
    pub proc_root: std::path::PathBuf,
    pub interval: Duration,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            clock: system_clock(),
            min_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            poll: Duration::from_secs(60),
            renewals: None,
            renew_fraction: DEFAULT_RENEW_FRACTION,
            posture: None,
            posture_interval: Duration::from_secs(3600),
            events: None,
            updates: None,
            metrics: None,
        }
    }
}

/// What `run` did, when it returns.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RunReport {
    pub renewals: u64,
    pub failed_attempts: u64,
    pub posture_reports: u64,
    pub metrics_reports: u64,
}

/// Keep the identity fresh: renew when due, back off (with jitter) while the server is
/// unreachable, stop on anything that retrying cannot fix (revoked, refused, expired).
pub async fn run(state: &StateDir, opts: &RunOptions) -> Result<RunReport, AgentError> {
    let emit = |event: AgentEvent| {
        if let Some(tx) = &opts.events {
            let _ = tx.send(event);
        }
    };
    let mut report = RunReport::default();
    let mut backoff = opts.min_backoff;
    let mut jitter = random_fraction();
    let mut last_posture: Option<(std::time::Instant, sigil_domain::Posture)> = None;
    let mut last_metrics: Option<(std::time::Instant, netstat::NetSnapshot)> = None;
    loop {
        if let Some(metrics) = &opts.metrics {
            send_metrics_if_due(state, metrics, &mut last_metrics, &mut report).await?;
        }
        if opts.renewals.is_some_and(|n| report.renewals >= n) {
            return Ok(report);
        }
        if let Some(provider) = &opts.posture {
            let mut collected = provider.collect();
            if let (Ok(posture), Some(install)) = (&mut collected, &opts.updates)
                && let Err(e) = update::describe_installed(posture, install).await
            {
                tracing::warn!(error = %e, "could not read the installed release");
            }
            match collected {
                Ok(posture) => {
                    let due = last_posture.as_ref().is_none_or(|(at, sent)| {
                        at.elapsed() >= opts.posture_interval || *sent != posture
                    });
                    if due {
                        match report_posture(state, &posture).await {
                            Ok(_) => {
                                emit(AgentEvent::PostureSent);
                                report.posture_reports += 1;
                                last_posture = Some((std::time::Instant::now(), posture));
                            }
                            Err(e) if e.is_transient() => {
                                tracing::warn!(error = %e, "posture report failed; retrying");
                            }
                            Err(e) => return Err(e),
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "could not collect the posture"),
            }
        }
        if let Some(install) = &opts.updates {
            match update::follow_assignment(state, install).await {
                Ok(update::Followed::Nothing) => {}
                Ok(update::Followed::Installed(i)) => {
                    emit(AgentEvent::UpdateInstalled { target: i.target })
                }
                Ok(update::Followed::Refused(e)) => {
                    tracing::warn!(error = %e, "assigned update refused");
                    emit(AgentEvent::UpdateRefused { kind: e.kind() });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not follow the update assignment; retrying")
                }
            }
        }
        let current = state.current()?.ok_or(AgentError::NotEnrolled)?;
        let (not_before, not_after) = validity(&current.cert_der()?)?;
        let now = (opts.clock)();
        if now >= not_after {
            return Err(AgentError::Expired(not_after));
        }
        let due = renewal_due(not_before, not_after, opts.renew_fraction, jitter);
        if now < due {
            let wait = Duration::try_from(due - now)
                .unwrap_or(opts.poll)
                .min(opts.poll);
            tokio::time::sleep(wait).await;
            continue;
        }
        let started = std::time::Instant::now();
        match renew(state).await {
            Ok(identity) => {
                emit(AgentEvent::Renewed {
                    generation: identity.generation,
                    latency: started.elapsed(),
                });
                report.renewals += 1;
                backoff = opts.min_backoff;
                jitter = random_fraction();
                tracing::info!(
                    generation = identity.generation,
                    "renewed the device certificate"
                );
            }
            Err(e) if e.is_transient() => {
                emit(AgentEvent::RenewalFailed { kind: e.kind() });
                report.failed_attempts += 1;
                // Full jitter: anywhere up to the current backoff.
                let wait = backoff.mul_f64(0.5 + random_fraction() / 2.0);
                tracing::warn!(error = %e, retry_in = ?wait, "renewal failed; retrying");
                tokio::time::sleep(wait).await;
                backoff = (backoff * 2).min(opts.max_backoff);
            }
            Err(e) => {
                emit(AgentEvent::RenewalFailed { kind: e.kind() });
                return Err(e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_sha256_hex() {
        let hex64 = "ab".repeat(32);
        assert_eq!(
            parse_fingerprint(&format!("sha256:{hex64}")).unwrap(),
            hex64
        );
        assert_eq!(parse_fingerprint(&hex64.to_uppercase()).unwrap(), hex64);
        assert!(parse_fingerprint("sha256:abcd").is_err());
        assert!(parse_fingerprint("not hex").is_err());
    }

    #[test]
    fn renewal_is_due_between_57_and_67_percent_of_the_lifetime() {
        let nb = time::macros::datetime!(2026-01-01 0:00 UTC);
        let na = nb + time::Duration::minutes(300);
        let due = |j| renewal_due(nb, na, DEFAULT_RENEW_FRACTION, j);
        assert!(
            (due(0.0) - (nb + time::Duration::minutes(200))).abs() < time::Duration::seconds(1)
        );
        assert!(
            (due(1.0) - (nb + time::Duration::minutes(170))).abs() < time::Duration::seconds(1)
        );
        assert!(renewal_due(nb, na, 0.1, 0.5) > nb);
        let r = random_fraction();
        assert!((0.0..1.0).contains(&r));
    }
}
