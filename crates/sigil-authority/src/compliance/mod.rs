//! Evaluating the compliance catalogue against the live fleet: device and product checks from
//! the store's snapshots (pure evaluation in `sigil-compliance`), organisation checks from the
//! server's own state, rolled up per framework requirement.

pub mod live;

/// Why a compliance evaluation could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ComplianceError {
    #[error(transparent)]
    Store(#[from] sigil_store::StoreError),
    /// The vulnerability facts could not be gathered.
    #[error("vulnerability facts: {0}")]
    Facts(String),
}

/// Where compliance drops are announced (the server delivers them by webhook).
pub trait AlertSink: Send + Sync {
    /// Hand over an alert without holding up the evaluation; delivery failures are the
    /// sink's to log.
    fn deliver(&self, alert: serde_json::Value);
}

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;
use x509_parser::prelude::{FromDer, X509Certificate};

use sigil_compliance::device::{self, Evidence, KeyType, Outcome};
use sigil_compliance::organisation;
use sigil_compliance::{Catalogue, CheckKind, Framework, Scope, Status, StatusCounts, roll_up};
use sigil_domain::DeviceId;
use sigil_store::Attestation;

use crate::Authority;

/// How many failing devices a report lists per check (the counts are always complete).
const LISTED_FAILURES: usize = 100;

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeviceFailure {
    pub device: String,
    #[schema(value_type = String)]
    pub status: Status,
    pub reason: String,
    #[schema(value_type = Vec<Object>)]
    pub evidence: Vec<Evidence>,
}

#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct Counts {
    pub pass: u64,
    pub fail: u64,
    pub unknown: u64,
    pub not_applicable: u64,
}

impl From<sigil_compliance::StatusCounts> for Counts {
    fn from(c: sigil_compliance::StatusCounts) -> Self {
        Self {
            pass: c.pass,
            fail: c.fail,
            unknown: c.unknown,
            not_applicable: c.not_applicable,
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CheckResult {
    pub check: String,
    pub title: String,
    #[schema(value_type = String)]
    pub scope: Scope,
    #[schema(value_type = String)]
    pub status: Status,
    /// For a single evaluation (organisation, or one device): why.
    pub reason: Option<String>,
    pub counts: Counts,
    /// The first failing (or unknown) devices or products, with reasons and evidence.
    pub failures: Vec<DeviceFailure>,
    pub aws_device_defender: Vec<String>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RequirementResult {
    pub id: String,
    pub group: String,
    pub group_title: String,
    pub summary: String,
    #[schema(value_type = String)]
    pub status: Status,
    pub checks: Vec<CheckResult>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FrameworkReport {
    pub framework: String,
    pub title: String,
    pub framework_version: String,
    pub catalogue_version: String,
    pub evaluated_at: String,
    /// Requirements by status.
    pub summary: Counts,
    /// Passing requirements as a share of those that apply and could be decided, 0..=100.
    pub score: f64,
    pub devices_evaluated: u64,
    pub requirements: Vec<RequirementResult>,
}

/// One check's accumulated results.
#[derive(Default)]
struct Tally {
    counts: StatusCounts,
    failures: Vec<DeviceFailure>,
    reason: Option<String>,
}

impl Tally {
    fn record(&mut self, subject: &str, o: Outcome) {
        self.counts.add(o.status);
        self.list(subject, &o);
        self.reason = Some(o.reason);
    }

    /// Keep `o` among the listed failures if it is one and the list has room.
    fn list(&mut self, subject: &str, o: &Outcome) {
        if matches!(o.status, Status::Fail | Status::Unknown)
            && self.failures.len() < LISTED_FAILURES
        {
            self.failures.push(DeviceFailure {
                device: subject.to_owned(),
                status: o.status,
                reason: o.reason.clone(),
                evidence: o.evidence.clone(),
            });
        }
    }
}

/// The certified key's type: as recorded at issuance, else from the certificate.
pub(crate) fn key_type(recorded: Option<&str>, der: Option<&[u8]>) -> KeyType {
    if let Some(name) = recorded {
        return KeyType::from_name(name);
    }
    match der.map(sigil_ca::certificate_key) {
        Some(Ok(key)) => KeyType::from_name(&key.to_string()),
        Some(Err(e)) => KeyType::Other(e.to_string()),
        None => KeyType::Other("no certificate".into()),
    }
}

/// What the organisation checks read, from the server's own state.
fn organisation_facts(
    state: &Authority,
    crl: Option<&sigil_store::StoredCrl>,
    unknown_devices: Vec<(u64, String)>,
    (detection, undecided_critical_count, undecided_critical_alarms): (
        organisation::DetectionFacts,
        u64,
        Vec<organisation::UndecidedAlarm>,
    ),
) -> organisation::OrganisationFacts {
    // The policy in force must refuse an untrusted device, and an unknown one.
    let engine = state.policy();
    let suspended = sigil_policy::DeviceFacts {
        id: DeviceId::generate().to_string(),
        product: "probe".into(),
        state: "suspended".into(),
        certificate_status: "valid".into(),
        compliance: "unknown".into(),
        quarantined: false,
    };
    let unknown = sigil_policy::DeviceFacts {
        state: "unknown".into(),
        certificate_status: "none".into(),
        ..suspended.clone()
    };
    let denies = |facts: sigil_policy::DeviceFacts| {
        engine
            .decide(
                &sigil_policy::Principal::Device(facts),
                "connect",
                &sigil_policy::Target::Broker("probe".into()),
                &sigil_policy::OperatorContext::default(),
            )
            .is_ok_and(|d| !d.allowed)
    };
    let cas = [
        ("root", state.ca.root_cert_der()),
        ("issuing", state.ca.issuing_cert_der()),
    ]
    .map(|(name, der)| organisation::CaFacts {
        name: name.to_owned(),
        not_after: X509Certificate::from_der(der)
            .ok()
            .map(|(_, c)| c.validity().not_after.timestamp()),
        key: key_type(None, Some(der)),
        // DataDir loads CA keys only from encrypted PKCS#8 (scrypt + AES-256) and refuses
        // anything else.
        key_protected: true,
    })
    .to_vec();
    organisation::OrganisationFacts {
        cas,
        crl: crl.map(|c| organisation::CrlFacts {
            number: c.number,
            this_update: c.this_update.unix_timestamp(),
            next_update: c.next_update.unix_timestamp(),
        }),
        crl_refresh: crate::crl::CRL_REFRESH.whole_seconds(),
        policy_version: state.policy.version(),
        policy_refuses_untrusted: denies(suspended) && denies(unknown),
        audit_failure: state.audit.integrity_failure(),
        audit_verified_at: state
            .audit
            .verified_at()
            .map(OffsetDateTime::unix_timestamp),
        // The API and EST listener is rustls only (TLS 1.2+), devices present certificates;
        // the PKI listener serves only signed objects (CRL, OCSP, CA certificates).
        tls_only: true,
        unknown_devices,
        detection,
        undecided_critical_count,
        undecided_critical_alarms,
    }
}

/// `product` with the facts `check` reads that are read at report time (its update channel,
/// its vulnerabilities, kept in `vuln_facts` for the other checks, or its disclosure).
async fn product_facts_for(
    state: &Authority,
    check: &str,
    product: &device::ProductFacts,
    vuln_facts: &mut BTreeMap<String, sigil_compliance::vulnerabilities::VulnFacts>,
) -> Result<device::ProductFacts, ComplianceError> {
    let mut p = product.clone();
    let facts_error = |e: crate::RequestError| ComplianceError::Facts(e.to_string());
    if matches!(
        check,
        "product.update-channel" | "product.security-updates-separate"
    ) {
        p.update_channel = state.updates().channel_facts(&p.id).await?;
    }
    if sigil_compliance::vulnerabilities::CHECKS.contains(&check) {
        if !vuln_facts.contains_key(&p.id) {
            let current = p.current_firmware.clone().unwrap_or_default();
            let facts = state
                .product_vuln_facts(&p.id, &current)
                .await
                .map_err(facts_error)?;
            vuln_facts.insert(p.id.clone(), facts);
        }
        p.vulnerabilities = vuln_facts.get(&p.id).cloned();
    }
    if sigil_compliance::disclosure::CHECKS.contains(&check) {
        p.disclosure = Some(
            state
                .product_disclosure_facts(&p.id)
                .await
                .map_err(facts_error)?,
        );
    }
    Ok(p)
}

/// `check`'s outcome for `product`. One product whose facts cannot be read is unknown for
/// the check (and the error logged); the others are still evaluated.
async fn product_outcome(
    state: &Authority,
    check: &str,
    product: &device::ProductFacts,
    vuln_facts: &mut BTreeMap<String, sigil_compliance::vulnerabilities::VulnFacts>,
    unix: i64,
    stands_in: Option<&Outcome>,
) -> Option<Outcome> {
    match product_facts_for(state, check, product, vuln_facts).await {
        Ok(p) => sigil_compliance::product::evaluate_product(check, &p, unix, stands_in),
        Err(e) => {
            tracing::error!(product = %product.id, check, error = %e, "product facts unreadable");
            Some(Outcome {
                status: sigil_compliance::Status::Unknown,
                reason: format!("its facts could not be read: {e}"),
                evidence: vec![Evidence::Product(product.id.clone())],
            })
        }
    }
}

/// Evaluate `framework` now (all devices, products and the organisation), or only `device`.
/// Device results come from the continuous engine, brought up to date first; the listed
/// failures are evaluated again for their reasons and evidence.
pub async fn evaluate(
    state: &Authority,
    framework: &Framework,
    catalogue: &Catalogue,
    only_device: Option<DeviceId>,
) -> Result<FrameworkReport, ComplianceError> {
    let now = state.now();
    let unix = now.unix_timestamp();
    let used: Vec<&str> = {
        let mut v: Vec<&str> = framework
            .requirements
            .iter()
            .flat_map(|r| r.checks.iter().map(String::as_str))
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    let device_checks: Vec<&str> = used
        .iter()
        .copied()
        .filter(|c| c.starts_with("device."))
        .collect();
    let crl = state.crl.current().await;
    let attestations: HashMap<String, Attestation> = state
        .store
        .latest_attestations()
        .await?
        .into_iter()
        .map(|a| (a.check_id.clone(), a))
        .collect();
    // Read before the engine's lock is taken: the follower waits on that lock.
    let detection = state.detection_facts().await?;
    let live = state.compliance.fresh(state).await?;
    let mut tallies: BTreeMap<&str, Tally> = BTreeMap::new();
    let devices_evaluated = tally_devices(
        state,
        &live,
        &device_checks,
        only_device,
        unix,
        &mut tallies,
    )
    .await?;
    let org = organisation_facts(state, crl.as_deref(), live.unknown_devices(unix), detection);
    let products: Vec<device::ProductFacts> = live.products().cloned().collect();
    drop(live);
    let attested = organisation_outcome(
        catalogue,
        "attest.secure-update-mechanism",
        &attestations,
        &org,
        unix,
    );
    let vulnerability_handling = organisation_outcome(
        catalogue,
        "attest.vulnerability-handling",
        &attestations,
        &org,
        unix,
    );
    let disclosure_attested = organisation_outcome(
        catalogue,
        "attest.vulnerability-disclosure",
        &attestations,
        &org,
        unix,
    );
    let mut vuln_facts = BTreeMap::new();
    for check in used.iter().filter(|c| c.starts_with("product.")) {
        let vulnerability_check = sigil_compliance::vulnerabilities::CHECKS.contains(check);
        let disclosure_check = sigil_compliance::disclosure::CHECKS.contains(check);
        let stands_in = if *check == "product.security-updates-separate" || vulnerability_check {
            vulnerability_handling.as_ref()
        } else if disclosure_check {
            disclosure_attested.as_ref()
        } else {
            attested.as_ref()
        };
        for p in &products {
            let outcome = product_outcome(state, check, p, &mut vuln_facts, unix, stands_in).await;
            if let Some(o) = outcome {
                tallies.entry(check).or_default().record(&p.id, o);
            }
        }
    }
    for check in &used {
        if let Some(o) = organisation_outcome(catalogue, check, &attestations, &org, unix) {
            tallies.entry(check).or_default().record("organisation", o);
        }
    }

    let (requirements, summary) = requirement_results(framework, catalogue, &tallies, only_device);
    let decided = summary.pass + summary.fail + summary.unknown;
    let score = if decided == 0 {
        100.0
    } else {
        (summary.pass as f64 * 1000.0 / decided as f64).round() / 10.0
    };
    Ok(FrameworkReport {
        framework: framework.info.id.clone(),
        title: framework.info.title.clone(),
        framework_version: framework.info.version.clone(),
        catalogue_version: catalogue.version().to_owned(),
        evaluated_at: crate::rfc3339(now),
        summary: summary.into(),
        score,
        devices_evaluated,
        requirements,
    })
}

/// The device checks' tallies: one device's outcomes, or the fleet's counts with the listed
/// failures evaluated again for their reasons and evidence. Returns how many devices count.
async fn tally_devices<'c>(
    state: &Authority,
    live: &live::Live,
    device_checks: &[&'c str],
    only_device: Option<DeviceId>,
    unix: i64,
    tallies: &mut BTreeMap<&'c str, Tally>,
) -> Result<u64, ComplianceError> {
    Ok(match only_device {
        Some(id) => {
            let snapshot = state.store.device_snapshot(id).await?;
            for (check, o) in live.outcomes(&snapshot, unix) {
                if device_checks.contains(&check) {
                    tallies.entry(check).or_default().record(&id.to_string(), o);
                }
            }
            1
        }
        None => {
            let listed: Vec<(&str, Vec<DeviceId>)> = device_checks
                .iter()
                .map(|c| (*c, live.failing(c, LISTED_FAILURES)))
                .collect();
            let ids: BTreeSet<DeviceId> = listed.iter().flat_map(|(_, d)| d.clone()).collect();
            let ids: Vec<DeviceId> = ids.into_iter().collect();
            let mut outcomes: HashMap<DeviceId, Vec<(&str, Outcome)>> = HashMap::new();
            for s in state.store.device_snapshots(&ids).await? {
                outcomes.insert(s.device.id, live.outcomes(&s, unix));
            }
            for (check, devices) in listed {
                let tally = tallies.entry(check).or_default();
                tally.counts = live.counts(check).unwrap_or_default();
                for d in devices {
                    let found = outcomes
                        .get(&d)
                        .and_then(|o| o.iter().find(|(c, _)| *c == check));
                    if let Some((_, o)) = found {
                        tally.list(&d.to_string(), o);
                    }
                }
            }
            live.results.len() as u64
        }
    })
}

/// An organisation check's outcome (an attestation, or a fact of Sigil's own state); `None` for
/// checks of another scope.
fn organisation_outcome(
    catalogue: &Catalogue,
    check: &str,
    attestations: &HashMap<String, Attestation>,
    org: &organisation::OrganisationFacts,
    unix: i64,
) -> Option<Outcome> {
    let def = catalogue.check(check)?;
    if def.scope != Scope::Organisation {
        return None;
    }
    Some(if def.kind == CheckKind::Attestation {
        let latest = attestations
            .get(check)
            .map(|a| organisation::AttestationFacts {
                id: a.id.clone(),
                attested_by: a.attested_by.clone(),
                expires_at: a.expires_at.unix_timestamp(),
                document_name: a.document_name.clone(),
                document_sha256: a.document_sha256.clone(),
            });
        organisation::evaluate_attestation(latest.as_ref(), unix, |t| {
            OffsetDateTime::from_unix_timestamp(t)
                .map(crate::rfc3339)
                .unwrap_or_else(|_| t.to_string())
        })
    } else {
        organisation::evaluate_organisation(check, org, unix).unwrap_or_else(|| Outcome {
            status: Status::Unknown,
            reason: format!("{check} has no evaluation in this version of Sigil"),
            evidence: vec![],
        })
    })
}

/// Each requirement's checks and rolled-up status, and the requirements counted by status.
fn requirement_results(
    framework: &Framework,
    catalogue: &Catalogue,
    tallies: &BTreeMap<&str, Tally>,
    only_device: Option<DeviceId>,
) -> (Vec<RequirementResult>, StatusCounts) {
    let mut summary = StatusCounts::default();
    let requirements = framework
        .requirements
        .iter()
        .map(|r| {
            let checks: Vec<CheckResult> = r
                .checks
                .iter()
                .filter_map(|c| {
                    let def = catalogue.check(c)?;
                    let tally = tallies.get(c.as_str());
                    let counts = tally.map(|t| t.counts).unwrap_or_default();
                    Some(CheckResult {
                        check: c.clone(),
                        title: def.title.clone(),
                        scope: def.scope,
                        status: counts.status(),
                        reason: tally
                            .filter(|_| def.scope == Scope::Organisation || only_device.is_some())
                            .and_then(|t| t.reason.clone()),
                        failures: tally.map(|t| t.failures.clone()).unwrap_or_default(),
                        counts: counts.into(),
                        aws_device_defender: def.aws_device_defender.clone(),
                    })
                })
                .collect();
            let status = roll_up(checks.iter().map(|c| c.status));
            summary.add(status);
            RequirementResult {
                id: r.id.clone(),
                group: r.group.clone(),
                group_title: r.group_title.clone(),
                summary: r.summary.clone(),
                status,
                checks,
            }
        })
        .collect();
    (requirements, summary)
}

/// A requirement whose status got worse between two runs.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Regression {
    pub requirement: String,
    pub before: String,
    pub after: String,
}

/// How bad a status is, for comparing runs: anything that moves up this order is a drop.
fn severity(status: &str) -> u8 {
    match status {
        "fail" => 3,
        "unknown" => 2,
        "pass" => 1,
        _ => 0,
    }
}

/// Evaluate `framework`, keep the run in the history, and raise an alert (log and audit
/// entry) for every requirement whose status got worse since the previous run.
pub async fn record_run(
    state: &Authority,
    framework: &Framework,
) -> Result<(FrameworkReport, Vec<Regression>), ComplianceError> {
    let report = evaluate(state, framework, &state.catalogue, None).await?;
    let requirements: serde_json::Map<String, serde_json::Value> = report
        .requirements
        .iter()
        .map(|r| (r.id.clone(), serde_json::Value::from(r.status.as_str())))
        .collect();
    let run = sigil_store::ComplianceRun {
        id: uuid::Uuid::now_v7().to_string(),
        framework: framework.info.id.clone(),
        evaluated_at: state.now(),
        catalogue_version: report.catalogue_version.clone(),
        score: report.score,
        summary: serde_json::to_value(&report.summary).unwrap_or_default(),
        requirements,
    };
    let previous = state.store.record_compliance_run(&run).await?;
    let regressions: Vec<Regression> = previous
        .as_ref()
        .map(|prev| {
            run.requirements
                .iter()
                .filter_map(|(id, after)| {
                    let after = after.as_str().unwrap_or_default();
                    let before = prev.requirements.get(id)?.as_str().unwrap_or_default();
                    (severity(after) > severity(before)).then(|| Regression {
                        requirement: id.clone(),
                        before: before.to_owned(),
                        after: after.to_owned(),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    if !regressions.is_empty() {
        let score_before = previous.as_ref().map(|p| p.score);
        tracing::warn!(
            framework = %run.framework,
            regressions = regressions.len(),
            score = run.score,
            ?score_before,
            "compliance posture dropped"
        );
        let event = sigil_audit::AuditEvent::new(
            run.evaluated_at,
            sigil_audit::Actor::system("sigil"),
            "compliance.degraded",
            format!("framework:{}", run.framework),
            sigil_audit::Outcome::Failure,
            serde_json::json!({"run": run.id, "score_before": score_before, "score_after": run.score,
                               "regressions": regressions}),
        );
        state.store.append_audit(vec![event]).await?;
        if let Some(alerts) = &state.alerts {
            let body = serde_json::json!({
                "event": "compliance.degraded",
                "framework": run.framework,
                "run": run.id,
                "evaluated_at": report.evaluated_at,
                "score_before": score_before,
                "score_after": run.score,
                "regressions": regressions,
            });
            alerts.deliver(body);
        }
    }
    Ok((report, regressions))
}

/// Evaluate every framework every `interval`, keeping history and alerting on drops.
pub fn spawn_periodic(
    state: Arc<Authority>,
    interval: std::time::Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut first = true;
        loop {
            ticker.tick().await;
            // The full run: everything evaluated again from the database, whatever the
            // follower has applied. At start the engine's own first evaluation is that run.
            let rebuilt = if std::mem::take(&mut first) {
                state.compliance.refresh(&state).await
            } else {
                state.compliance.rebuild(&state).await
            };
            match rebuilt {
                Ok(stats) => tracing::info!(
                    devices = stats.devices,
                    millis = stats.elapsed.as_millis() as u64,
                    "compliance full evaluation"
                ),
                Err(e) => {
                    tracing::error!(error = %e, "compliance full evaluation failed");
                    continue;
                }
            }
            for framework in state.catalogue.frameworks() {
                if let Err(e) = record_run(&state, framework).await {
                    tracing::error!(framework = %framework.info.id, error = %e, "compliance evaluation failed");
                }
            }
        }
    })
}
