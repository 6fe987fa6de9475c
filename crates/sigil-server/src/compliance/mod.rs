//! Evaluating the compliance catalogue against the live fleet: device and product checks from
//! the store's snapshots (pure evaluation in `sigil-compliance`), organisation checks from the
//! server's own state, rolled up per framework requirement.

pub mod live;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;
use x509_parser::prelude::{FromDer, X509Certificate};

use sigil_compliance::device::{self, Evidence, KeyType, Outcome};
use sigil_compliance::{Catalogue, CheckKind, Framework, Scope, Status, roll_up};
use sigil_domain::DeviceId;
use sigil_store::Attestation;

use crate::api::ApiError;
use crate::api::AppState;

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

impl Counts {
    fn add(&mut self, s: Status) {
        match s {
            Status::Pass => self.pass += 1,
            Status::Fail => self.fail += 1,
            Status::Unknown => self.unknown += 1,
            Status::NotApplicable => self.not_applicable += 1,
        }
    }

    /// The check's status over everything it was evaluated on.
    fn status(&self) -> Status {
        let seen = [
            (self.fail, Status::Fail),
            (self.unknown, Status::Unknown),
            (self.pass, Status::Pass),
        ];
        roll_up(seen.into_iter().filter(|(n, _)| *n > 0).map(|(_, s)| s))
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
    counts: Counts,
    failures: Vec<DeviceFailure>,
    reason: Option<String>,
}

impl Tally {
    fn record(&mut self, subject: &str, o: Outcome) {
        self.counts.add(o.status);
        if matches!(o.status, Status::Fail | Status::Unknown)
            && self.failures.len() < LISTED_FAILURES
        {
            self.failures.push(DeviceFailure {
                device: subject.to_owned(),
                status: o.status,
                reason: o.reason.clone(),
                evidence: o.evidence,
            });
        }
        self.reason = Some(o.reason);
    }
}

/// Organisation checks from the server's own state, and attestations.
fn organisation_check(
    state: &AppState,
    check: &str,
    kind: CheckKind,
    attestations: &HashMap<String, Attestation>,
    crl: Option<&sigil_store::StoredCrl>,
    unknown_devices: &[(u64, String)],
    now: OffsetDateTime,
) -> Outcome {
    let o = |status, reason: String, evidence| Outcome {
        status,
        reason,
        evidence,
    };
    if kind == CheckKind::Attestation {
        let rfc3339 = crate::api::rfc3339;
        return match attestations.get(check) {
            None => o(Status::Unknown, "no attestation recorded".into(), vec![]),
            Some(a) if a.expires_at <= now => o(
                Status::Unknown,
                format!(
                    "the attestation by {} expired on {}",
                    a.attested_by,
                    rfc3339(a.expires_at)
                ),
                vec![Evidence::Attestation(a.id.clone())],
            ),
            Some(a) => o(
                Status::Pass,
                format!(
                    "attested by {} until {} (document {}, sha256 {})",
                    a.attested_by,
                    rfc3339(a.expires_at),
                    a.document_name,
                    a.document_sha256
                ),
                vec![Evidence::Attestation(a.id.clone())],
            ),
        };
    }
    match check {
        "org.ca-certificate-validity" => {
            let mut soonest: Option<(String, OffsetDateTime)> = None;
            for (name, der) in [
                ("root", state.ca.root_cert_der()),
                ("issuing", state.ca.issuing_cert_der()),
            ] {
                if let Ok((_, c)) = X509Certificate::from_der(der) {
                    let t = c.validity().not_after.to_datetime();
                    if soonest.as_ref().is_none_or(|(_, s)| t < *s) {
                        soonest = Some((name.to_owned(), t));
                    }
                }
            }
            match soonest {
                None => o(Status::Unknown, "CA certificates unreadable".into(), vec![]),
                Some((name, t)) if t - now < time::Duration::days(90) => o(
                    Status::Fail,
                    format!(
                        "the {name} CA certificate expires in {} days",
                        (t - now).whole_days()
                    ),
                    vec![],
                ),
                Some((name, t)) => o(
                    Status::Pass,
                    format!(
                        "the first CA certificate to expire ({name}) has {} days left",
                        (t - now).whole_days()
                    ),
                    vec![],
                ),
            }
        }
        "org.access-policy" => {
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
            if denies(suspended) && denies(unknown) {
                o(
                    Status::Pass,
                    format!(
                        "policy version {} refuses suspended and unknown devices",
                        state.policy.version()
                    ),
                    vec![],
                )
            } else {
                o(
                    Status::Fail,
                    format!(
                        "policy version {} lets an untrusted device connect",
                        state.policy.version()
                    ),
                    vec![],
                )
            }
        }
        "org.audit-log-integrity" => {
            match (state.audit.integrity_failure(), state.audit.verified_at()) {
                (Some(reason), _) => o(Status::Fail, reason, vec![]),
                (None, Some(t)) if now - t <= time::Duration::days(1) => o(
                    Status::Pass,
                    format!(
                        "log verified against its signed checkpoint {} s ago",
                        (now - t).whole_seconds()
                    ),
                    vec![],
                ),
                (None, Some(t)) => o(
                    Status::Fail,
                    format!("log last verified {} h ago", (now - t).whole_hours()),
                    vec![],
                ),
                (None, None) => o(
                    Status::Fail,
                    "log never verified since start".into(),
                    vec![],
                ),
            }
        }
        "org.ca-key-protection" => {
            // The server only loads CA keys from encrypted PKCS#8 (DataDir refuses others), so
            // what remains to check is their strength.
            let keys = [
                ("root", state.ca.root_cert_der()),
                ("issuing", state.ca.issuing_cert_der()),
            ]
            .map(|(name, der)| (name, live::key_type(None, Some(der))));
            match keys.iter().find(|(_, k)| {
                !matches!(
                    k,
                    KeyType::EcdsaP256 | KeyType::EcdsaP384 | KeyType::Ed25519
                ) && !matches!(k, KeyType::Rsa { bits } if *bits >= 3072)
            }) {
                Some((name, k)) => o(
                    Status::Fail,
                    format!("the {name} CA key is {k:?}, below policy"),
                    vec![],
                ),
                None => o(
                    Status::Pass,
                    format!(
                        "CA keys encrypted at rest (PKCS#8, scrypt + AES-256) and of policy strength ({:?}, {:?})",
                        keys[0].1, keys[1].1
                    ),
                    vec![],
                ),
            }
        }
        "org.encryption-in-transit" => o(
            Status::Pass,
            "the API and EST are served only over TLS 1.2+; devices authenticate with mutual TLS"
                .into(),
            vec![],
        ),
        "org.revocation-service" => match crl {
            None => o(Status::Fail, "no CRL has been published".into(), vec![]),
            Some(crl) if crl.next_update <= now => o(
                Status::Fail,
                format!("CRL {} is past its nextUpdate", crl.number),
                vec![],
            ),
            Some(crl) if now - crl.this_update > crate::crl::CRL_REFRESH * 2 => o(
                Status::Fail,
                format!(
                    "CRL {} was signed {} min ago; it is re-signed hourly",
                    crl.number,
                    (now - crl.this_update).whole_minutes()
                ),
                vec![],
            ),
            Some(crl) => o(
                Status::Pass,
                format!(
                    "CRL {} current (re-signed at every revocation); OCSP answers for the issuing CA",
                    crl.number
                ),
                vec![],
            ),
        },
        "org.asset-visibility" => match unknown_devices {
            [] => o(
                Status::Pass,
                "no device outside the inventory seen authenticating in the last 30 days".into(),
                vec![],
            ),
            seen => o(
                Status::Fail,
                format!(
                    "{} authentication(s) by devices not in the inventory in the last 30 days (e.g. {})",
                    seen.len(),
                    seen[0].1
                ),
                seen.iter()
                    .take(20)
                    .map(|(seq, _)| Evidence::AuditEntry(*seq))
                    .collect(),
            ),
        },
        other => o(
            Status::Unknown,
            format!("{other} has no evaluation in this version of Sigil"),
            vec![],
        ),
    }
}

/// Evaluate `framework` now (all devices, products and the organisation), or only `device`.
/// Device results come from the continuous engine, brought up to date first; the listed
/// failures are evaluated again for their reasons and evidence.
pub async fn evaluate(
    state: &AppState,
    framework: &Framework,
    catalogue: &Catalogue,
    only_device: Option<DeviceId>,
) -> Result<FrameworkReport, ApiError> {
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
    let live = state.compliance.fresh(state).await?;
    let mut tallies: BTreeMap<&str, Tally> = BTreeMap::new();
    let devices_evaluated = match only_device {
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
                tally.counts = live.counts(check).map(Counts::from).unwrap_or_default();
                for d in devices {
                    let found = outcomes
                        .get(&d)
                        .and_then(|o| o.iter().find(|(c, _)| *c == check));
                    if let Some((_, o)) = found
                        && matches!(o.status, Status::Fail | Status::Unknown)
                    {
                        tally.failures.push(DeviceFailure {
                            device: d.to_string(),
                            status: o.status,
                            reason: o.reason.clone(),
                            evidence: o.evidence.clone(),
                        });
                    }
                }
            }
            live.results.len() as u64
        }
    };
    for check in used.iter().filter(|c| c.starts_with("product.")) {
        for p in live.products() {
            tallies
                .entry(check)
                .or_default()
                .record(&p.id, device::evaluate_product_support(p, unix));
        }
    }
    let unknown_devices = live.unknown_devices(unix);
    drop(live);
    for check in &used {
        let Some(def) = catalogue.check(check) else {
            continue;
        };
        if def.scope == Scope::Organisation {
            let o = organisation_check(
                state,
                check,
                def.kind,
                &attestations,
                crl.as_deref(),
                &unknown_devices,
                now,
            );
            tallies.entry(check).or_default().record("organisation", o);
        }
    }

    let mut summary = Counts::default();
    let requirements: Vec<RequirementResult> = framework
        .requirements
        .iter()
        .map(|r| {
            let checks: Vec<CheckResult> = r
                .checks
                .iter()
                .filter_map(|c| {
                    let def = catalogue.check(c)?;
                    let tally = tallies.get(c.as_str());
                    let counts = tally.map(|t| t.counts.clone()).unwrap_or_default();
                    Some(CheckResult {
                        check: c.clone(),
                        title: def.title.clone(),
                        scope: def.scope,
                        status: counts.status(),
                        reason: tally
                            .filter(|_| def.scope == Scope::Organisation || only_device.is_some())
                            .and_then(|t| t.reason.clone()),
                        failures: tally.map(|t| t.failures.clone()).unwrap_or_default(),
                        counts,
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
        evaluated_at: crate::api::rfc3339(now),
        summary,
        score,
        devices_evaluated,
        requirements,
    })
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
    state: &AppState,
    framework: &Framework,
) -> Result<(FrameworkReport, Vec<Regression>), ApiError> {
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
        if let Some(hook) = &state.compliance_webhook {
            let body = serde_json::json!({
                "event": "compliance.degraded",
                "framework": run.framework,
                "run": run.id,
                "evaluated_at": report.evaluated_at,
                "score_before": score_before,
                "score_after": run.score,
                "regressions": regressions,
            });
            // Delivery must not hold up the evaluation; a failure is logged.
            let hook = hook.clone();
            tokio::spawn(async move { hook.send(&body).await });
        }
    }
    Ok((report, regressions))
}

/// Evaluate every framework every `interval`, keeping history and alerting on drops.
pub fn spawn_periodic(
    state: AppState,
    interval: std::time::Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            // The full run: everything evaluated again from the database, whatever the
            // follower has applied.
            match state.compliance.rebuild(&state).await {
                Ok(stats) => tracing::info!(
                    devices = stats.devices,
                    millis = stats.elapsed.as_millis() as u64,
                    "compliance full evaluation"
                ),
                Err(e) => {
                    tracing::error!(error = %e.detail, "compliance full evaluation failed");
                    continue;
                }
            }
            for framework in state.catalogue.frameworks() {
                if let Err(e) = record_run(&state, framework).await {
                    tracing::error!(framework = %framework.info.id, error = %e.detail, "compliance evaluation failed");
                }
            }
        }
    })
}

/// A compliance alert receiver.
pub struct Webhook {
    url: reqwest::Url,
    http: reqwest::Client,
}

impl Webhook {
    /// Refuse anything but https, or http to a loopback address (a local relay).
    pub fn new(url: &str) -> Result<Self, crate::ServerError> {
        let bad =
            |why: &str| crate::ServerError::Config(format!("compliance webhook `{url}`: {why}"));
        let parsed = reqwest::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
        let loopback = parsed.host_str().is_some_and(|h| {
            h == "localhost"
                || h.trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        });
        match parsed.scheme() {
            "https" => {}
            "http" if loopback => {}
            _ => return Err(bad("must be https (http only to a loopback address)")),
        }
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| bad(&e.to_string()))?;
        Ok(Self { url: parsed, http })
    }

    async fn send(&self, body: &serde_json::Value) {
        match self.http.post(self.url.clone()).json(body).send().await {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => {
                tracing::error!(status = %r.status(), url = %self.url, "compliance webhook refused the alert")
            }
            Err(e) => {
                tracing::error!(error = %e, url = %self.url, "compliance webhook unreachable")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhooks_must_be_https_except_to_loopback() {
        assert!(Webhook::new("https://alerts.example.com/sigil").is_ok());
        assert!(Webhook::new("http://127.0.0.1:9000/hook").is_ok());
        assert!(Webhook::new("http://[::1]/hook").is_ok());
        assert!(Webhook::new("http://localhost/hook").is_ok());
        for bad in [
            "http://alerts.example.com/hook",
            "http://10.0.0.1/hook",
            "ftp://x/y",
            "not a url",
        ] {
            assert!(Webhook::new(bad).is_err(), "{bad}");
        }
    }
}
