//! CRA Article 14 cases. The review pass (after every feed, SBOM or VEX change, and on a
//! timer) finds each actively exploited vulnerability (in CISA's KEV catalogue) on a deployed
//! firmware version and opens a case, aware from that moment; it records the release that
//! corrects it (the final report's clock), sends each deadline's alert once as it nears and
//! once it passes, and closes the case when no device runs an affected version any more.
//! Every step is audited by the store. Drafts of the three reports come from the same data.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

use sigil_audit::Actor;
use sigil_store::{CaseRecord, NewCase};
use sigil_update::{ReleaseVersion, VersionScheme};
use sigil_vuln::reporting::{
    CaseClock, CorrectiveMeasure, DeviceLine, Draft, Exposure, REGULATION, Stage, urgency,
};

use super::handling::{open_finding, stamp};
use super::{Finding, ProductFindings};
use crate::{Authority, Refusal, RefusalKind, RequestError, rfc3339};

/// Most devices a draft lists by name (the count is always complete).
const LISTED_DEVICES: u32 = 1000;

fn system() -> Actor {
    Actor::system("vulnerability-review")
}

fn refuse(kind: RefusalKind, code: &'static str, why: String) -> RequestError {
    Refusal::new(kind, code, why).into()
}

/// One deadline of a case, as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeadlineView {
    pub stage: &'static str,
    pub article: &'static str,
    /// None for the final report until a corrective measure is available.
    pub due: Option<String>,
    pub submitted_at: Option<String>,
    pub reference: Option<String>,
    /// `pending`, `submitted`, `overdue` (due and not submitted) or `late` (submitted after).
    pub status: &'static str,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AlertView {
    pub stage: String,
    pub urgency: String,
    pub sent_at: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CaseView {
    pub id: String,
    pub product_id: String,
    pub vulnerability: String,
    pub cause: String,
    pub reason: String,
    pub state: String,
    pub aware_at: String,
    pub fix_release: Option<String>,
    pub fix_available_at: Option<String>,
    pub closed_at: Option<String>,
    pub close_reason: Option<String>,
    pub opened_by: String,
    pub deadlines: Vec<DeadlineView>,
    pub alerts: Vec<AlertView>,
}

fn clock_of(case: &CaseRecord) -> CaseClock {
    CaseClock {
        aware_at: case.aware_at,
        fix_available_at: case.fix_available_at,
    }
}

/// The API's view of a case at `now`.
pub fn case_view(case: &CaseRecord, now: time::OffsetDateTime) -> CaseView {
    let clock = clock_of(case);
    let deadlines = Stage::ALL
        .into_iter()
        .map(|stage| {
            let due = clock.due(stage);
            let report = case.reports.iter().find(|r| r.stage == stage.as_str());
            let status = match (report, due) {
                (Some(r), Some(d)) if r.submitted_at > d => "late",
                (Some(_), _) => "submitted",
                (None, Some(d)) if now >= d => "overdue",
                (None, _) => "pending",
            };
            DeadlineView {
                stage: stage.as_str(),
                article: stage.article(),
                due: stamp(due),
                submitted_at: report.map(|r| rfc3339(r.submitted_at)),
                reference: report.and_then(|r| r.reference.clone()),
                status,
            }
        })
        .collect();
    CaseView {
        id: case.id.clone(),
        product_id: case.product_id.clone(),
        vulnerability: case.vulnerability.clone(),
        cause: case.cause.clone(),
        reason: case.reason.clone(),
        state: case.state.clone(),
        aware_at: rfc3339(case.aware_at),
        fix_release: case.fix_release.clone(),
        fix_available_at: stamp(case.fix_available_at),
        closed_at: stamp(case.closed_at),
        close_reason: case.close_reason.clone(),
        opened_by: case.opened_by.clone(),
        deadlines,
        alerts: case
            .alerts
            .iter()
            .map(|a| AlertView {
                stage: a.stage.clone(),
                urgency: a.urgency.clone(),
                sent_at: rfc3339(a.sent_at),
            })
            .collect(),
    }
}

/// Whether a finding is about the case's vulnerability (by any of its ids).
fn about(case_vulnerability: &str, f: &Finding) -> bool {
    f.vulnerability == case_vulnerability || f.ids.iter().any(|i| i == case_vulnerability)
}

/// Firmware versions whose SBOM has the vulnerability, and the devices on them. A case
/// follows the components, not the VEX: a statement (which `vuln.manage` may record) does not
/// close a case opened on an actively exploited vulnerability; shipping the fix does.
fn affected(found: &ProductFindings, vulnerability: &str) -> (BTreeSet<String>, u64) {
    let mut per_version = BTreeMap::new();
    for f in found.findings.iter().filter(|f| about(vulnerability, f)) {
        per_version.insert(f.firmware_version.clone(), f.devices);
    }
    let devices = per_version.values().sum();
    (per_version.into_keys().collect(), devices)
}

impl Authority {
    /// The product's version order (its update channel's scheme; SemVer without one).
    pub(super) async fn version_scheme(
        &self,
        product: &str,
    ) -> Result<VersionScheme, RequestError> {
        Ok(match self.store.update_channel(product).await? {
            Some(c) => VersionScheme::parse(&c.version_scheme).unwrap_or_default(),
            None => VersionScheme::Semver,
        })
    }

    /// One review of every product: sightings recorded, cases opened, advanced and closed,
    /// alerts sent. One review runs at a time.
    pub async fn review_vulnerabilities(&self) -> Result<(), RequestError> {
        let _one = self.vuln_review_lock.lock().await;
        for product in self.store.list_products().await? {
            let id = product.id.to_string();
            if let Err(e) = self.review_product(&id).await {
                tracing::error!(product = %id, error = %e, "vulnerability review failed");
            }
        }
        Ok(())
    }

    async fn review_product(&self, product: &str) -> Result<(), RequestError> {
        let found = self.product_findings(product).await?;
        let now = self.now();
        let pairs: Vec<(String, String)> = found
            .findings
            .iter()
            .map(|f| (f.vulnerability.clone(), f.component.clone()))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        self.store.record_exposures(product, &pairs, now).await?;
        let cases = self.store.cases(Some(product), false).await?;
        let mut exploited = BTreeMap::new();
        for f in &found.findings {
            if let Some(added) = &f.known_exploited
                && f.devices > 0
                && open_finding(f)
            {
                let (_, ids) = exploited
                    .entry(f.vulnerability.clone())
                    .or_insert((added.clone(), BTreeSet::new()));
                ids.extend(f.ids.iter().cloned());
            }
        }
        for (vulnerability, (added, ids)) in exploited {
            // Under any of its ids (over all its findings): a case opened before an alias
            // became the preferred id keeps its clock, and no second case is opened.
            let open = cases.iter().any(|c| {
                c.state == "open"
                    && (c.vulnerability == vulnerability || ids.contains(&c.vulnerability))
            });
            if !open {
                let new = NewCase {
                    product_id: product.to_owned(),
                    vulnerability,
                    cause: "known-exploited".into(),
                    reason: format!(
                        "in CISA's Known Exploited Vulnerabilities catalogue since {added}, and on deployed devices"
                    ),
                };
                self.store.open_case(&system(), &new, now).await?;
            }
        }
        for case in self.store.cases(Some(product), false).await? {
            self.advance_case(&case, &found).await?;
        }
        Ok(())
    }

    /// The fix, the closing, and the alerts of one case.
    async fn advance_case(
        &self,
        case: &CaseRecord,
        found: &ProductFindings,
    ) -> Result<(), RequestError> {
        let now = self.now();
        let (versions, devices) = affected(found, &case.vulnerability);
        let components: BTreeSet<String> = found
            .findings
            .iter()
            .filter(|f| about(&case.vulnerability, f))
            .map(|f| f.component.clone())
            .collect();
        let mut case = case.clone();
        // A list cut short may lack this vulnerability: no fix and no closing on it.
        let complete = !found.truncated;
        if complete
            && case.fix_release.is_none()
            && let Some((release, at)) = self
                .corrective_release(&case.product_id, &versions, &components)
                .await?
        {
            // Available to this case from when it opened at the earliest: a release published
            // long before the vulnerability was known exploited does not make the final report
            // due before the case exists.
            let at = at.max(case.aware_at);
            self.store
                .set_case_fix(&system(), &case.id, &release, at, now)
                .await?;
            case = self.store.case(&case.id).await?;
        }
        if complete && case.state == "open" && devices == 0 {
            let reason = match &case.fix_release {
                Some(r) => {
                    format!("release {r} installed: no device runs an affected firmware version")
                }
                None => "no device runs an affected firmware version".to_owned(),
            };
            self.store
                .close_case(&system(), &case.id, &reason, now)
                .await?;
        }
        let clock = clock_of(&case);
        for stage in Stage::ALL {
            let submitted = case.reports.iter().any(|r| r.stage == stage.as_str());
            let Some(u) = urgency(&clock, stage, submitted, now) else {
                continue;
            };
            let sent = case
                .alerts
                .iter()
                .any(|a| a.stage == stage.as_str() && a.urgency == u.as_str());
            if sent
                || !self
                    .store
                    .record_case_alert(&system(), &case.id, stage.as_str(), u.as_str(), now)
                    .await?
            {
                continue;
            }
            if let Some(sink) = &self.alerts {
                sink.deliver(json!({
                    "kind": "cra-article-14",
                    "case": case.id,
                    "product": case.product_id,
                    "vulnerability": case.vulnerability,
                    "stage": stage.as_str(),
                    "article": stage.article(),
                    "urgency": u.as_str(),
                    "due": stamp(clock.due(stage)),
                    "sent_at": rfc3339(now),
                }));
            }
        }
        Ok(())
    }

    /// The first published release, after every affected version, whose SBOM has no open
    /// finding of the vulnerability: the corrective measure, and when it became available.
    async fn corrective_release(
        &self,
        product: &str,
        affected_versions: &BTreeSet<String>,
        components: &BTreeSet<String>,
    ) -> Result<Option<(String, time::OffsetDateTime)>, RequestError> {
        if affected_versions.is_empty() {
            return Ok(None);
        }
        let scheme = self.version_scheme(product).await?;
        let order = |v: &str| ReleaseVersion::parse(scheme, v).ok();
        let Some(newest_affected) = affected_versions
            .iter()
            .filter_map(|v| order(v))
            .max_by(|a, b| a.precedence(b))
        else {
            return Ok(None);
        };
        let sboms: BTreeMap<String, String> = self
            .store
            .sboms(product)
            .await?
            .into_iter()
            .map(|s| (s.firmware_version, s.id))
            .collect();
        let mut candidates: Vec<(String, time::OffsetDateTime, String)> = self
            .store
            .releases(product)
            .await?
            .into_iter()
            .filter(|r| !affected_versions.contains(&r.version))
            .filter(|r| order(&r.version).is_some_and(|v| v.precedence(&newest_affected).is_gt()))
            .filter_map(|r| {
                let sbom = sboms.get(&r.version)?.clone();
                r.published_at.map(|at| (r.version, at, sbom))
            })
            .collect();
        candidates.sort_by_key(|(_, at, _)| *at);
        // The fix still ships the component, at a version no record finds affected: an SBOM
        // that lists nothing (or not the component) proves no fix.
        for (version, at, sbom) in candidates {
            let listed = self.store.sbom_components(&sbom).await?;
            if listed.iter().any(|c| components.contains(&c.name)) {
                return Ok(Some((version, at)));
            }
        }
        Ok(None)
    }

    /// Open a case by hand: the operator knows the vulnerability is actively exploited. It
    /// must be a finding of the product (the drafts name its devices from the findings).
    pub async fn open_case(
        &self,
        actor: &Actor,
        product: &str,
        vulnerability: &str,
        reason: &str,
    ) -> Result<CaseView, RequestError> {
        let product_id: sigil_domain::ProductId = product.parse()?;
        self.store.get_product(product_id).await?;
        if reason.trim().is_empty() || reason.len() > 2000 {
            return Err(refuse(
                RefusalKind::Invalid,
                "invalid-reason",
                "say why the vulnerability is actively exploited (1 to 2000 characters)".into(),
            ));
        }
        let found = self.product_findings(product).await?;
        if vulnerability.is_empty()
            || vulnerability.len() > 100
            || vulnerability
                .chars()
                .any(|c| c.is_control() || c.is_whitespace())
        {
            return Err(refuse(
                RefusalKind::Invalid,
                "invalid-vulnerability",
                "a vulnerability id is 1 to 100 characters, no spaces or control characters".into(),
            ));
        }
        let Some(f) = found
            .findings
            .iter()
            .find(|f| about(vulnerability, f) && f.devices > 0 && open_finding(f))
        else {
            return Err(refuse(
                RefusalKind::Invalid,
                "not-a-finding",
                format!(
                    "no device of product {product} runs firmware affected by {vulnerability}: a case needs a finding on deployed devices (import its record and the product's SBOM first)"
                ),
            ));
        };
        let new = NewCase {
            product_id: product.to_owned(),
            vulnerability: f.vulnerability.clone(),
            cause: "operator".into(),
            reason: reason.to_owned(),
        };
        let _one = self.vuln_review_lock.lock().await;
        let (case, _) = self.store.open_case(actor, &new, self.now()).await?;
        self.advance_case(&case, &found).await?;
        Ok(case_view(&self.store.case(&case.id).await?, self.now()))
    }

    pub async fn case(&self, id: &str) -> Result<CaseView, RequestError> {
        Ok(case_view(&self.store.case(id).await?, self.now()))
    }

    pub async fn cases(
        &self,
        product: Option<&str>,
        open_only: bool,
        before: Option<&str>,
        limit: u32,
    ) -> Result<Vec<CaseView>, RequestError> {
        let now = self.now();
        Ok(self
            .store
            .cases_page(product, open_only, before, i64::from(limit))
            .await?
            .iter()
            .map(|c| case_view(c, now))
            .collect())
    }

    /// Record that a stage's report was submitted to the CSIRT (with its reference there).
    pub async fn record_case_report(
        &self,
        actor: &Actor,
        id: &str,
        stage: &str,
        reference: Option<&str>,
    ) -> Result<CaseView, RequestError> {
        let stage = Stage::parse(stage).ok_or_else(|| {
            refuse(
                RefusalKind::Invalid,
                "invalid-stage",
                format!("unknown stage `{stage}` (early-warning, notification, final-report)"),
            )
        })?;
        if reference.is_some_and(|r| r.len() > 500 || r.chars().any(char::is_control)) {
            return Err(refuse(
                RefusalKind::Invalid,
                "invalid-reference",
                "a reference is at most 500 characters, none of them control characters".into(),
            ));
        }
        let case = self.store.case(id).await?;
        if stage == Stage::FinalReport && case.fix_available_at.is_none() {
            return Err(refuse(
                RefusalKind::Conflict,
                "no-corrective-measure",
                "the final report follows a corrective measure; none is available yet".into(),
            ));
        }
        let case = self
            .store
            .record_case_report(actor, id, stage.as_str(), reference, self.now())
            .await?;
        Ok(case_view(&case, self.now()))
    }

    /// A draft of one of the case's reports, from the current findings and inventory.
    pub async fn case_draft(&self, id: &str, stage: &str) -> Result<Draft, RequestError> {
        let stage = Stage::parse(stage).ok_or_else(|| {
            refuse(
                RefusalKind::Invalid,
                "invalid-stage",
                format!("unknown stage `{stage}` (early-warning, notification, final-report)"),
            )
        })?;
        let case = self.store.case(id).await?;
        let product_id: sigil_domain::ProductId = case.product_id.parse()?;
        let product = self.store.get_product(product_id).await?;
        let found = self.product_findings(&case.product_id).await?;
        let (versions, _) = affected(&found, &case.vulnerability);
        let versions: Vec<String> = versions.into_iter().collect();
        let (total, devices) = self
            .store
            .devices_running(&case.product_id, &versions, LISTED_DEVICES)
            .await?;
        let countries = self
            .store
            .countries_running(&case.product_id, &versions)
            .await?;
        let listed = devices
            .into_iter()
            .map(|d| DeviceLine {
                id: d.id,
                serial_number: d.serial_number,
                firmware_version: d.firmware_version,
                site: d.site,
                country: d.country,
            })
            .collect();
        let of_it: Vec<&Finding> = found
            .findings
            .iter()
            .filter(|f| about(&case.vulnerability, f))
            .collect();
        let first = of_it.first();
        let mut mitigations = BTreeSet::new();
        if let Some(r) = &case.fix_release {
            mitigations.insert(format!("install release {r} of {}", product.name));
        }
        for f in &of_it {
            match (&f.vex, &f.fixed) {
                (Some(v), _) if v.statement.is_some() => {
                    mitigations.insert(v.statement.clone().unwrap_or_default());
                }
                (_, Some(fixed)) => {
                    mitigations.insert(format!("update {} to {fixed} or later", f.component));
                }
                _ => {}
            }
        }
        Ok(Draft {
            regulation: REGULATION,
            stage,
            article: stage.article(),
            due: stamp(clock_of(&case).due(stage)),
            manufacturer: product.manufacturer,
            product: product.name,
            vulnerability: case.vulnerability.clone(),
            aliases: first
                .map(|f| {
                    f.ids
                        .iter()
                        .filter(|i| **i != case.vulnerability)
                        .cloned()
                        .collect()
                })
                .unwrap_or_default(),
            summary: first.and_then(|f| f.summary.clone()),
            severity: first.map_or("unknown".into(), |f| f.severity.to_string()),
            cvss_score: first.and_then(|f| f.cvss_score),
            exploitation: case.reason.clone(),
            aware_at: rfc3339(case.aware_at),
            affected: Exposure::of(total, versions, &countries, listed),
            mitigations: mitigations.into_iter().collect(),
            corrective_measure: match (&case.fix_release, case.fix_available_at) {
                (Some(r), Some(at)) => Some(CorrectiveMeasure {
                    release: r.clone(),
                    available_since: rfc3339(at),
                }),
                _ => None,
            },
        })
    }
}
