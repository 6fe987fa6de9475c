//! Coordinated vulnerability disclosure: each product's policy (its `security.txt`), reports
//! received on the public intake or entered by an operator, their acknowledgement and decision
//! deadlines, and the advisory an accepted report becomes. The advisory is an OSV record like
//! any imported one, so the same matching finds the firmware and the devices it affects, its
//! remediation deadline counts from the report's receipt, and a fix release closes it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use serde::Serialize;
use time::{Duration, OffsetDateTime};
use utoipa::ToSchema;

use sigil_audit::Actor;
use sigil_compliance::disclosure::{DisclosureFacts, ReportFacts};
use sigil_store::{Decision, DisclosurePolicyRecord, NewReport, ReportRecord};
use sigil_vuln::disclosure::{
    ADVISORY_PREFIX, AdvisorySpec, DEFAULT_ACKNOWLEDGE_DAYS, DEFAULT_TRIAGE_DAYS, DisclosureError,
    DisclosurePolicy, ReportClock, Submission,
};

use super::cases::CaseView;
use super::record_row;
use crate::failures::address_key;
use crate::{Authority, Refusal, RefusalKind, RequestError, rfc3339};

/// The scope of the organisation's policy, for products without one of their own.
pub const ORGANISATION: &str = "*";
/// Public reports waiting for acknowledgement past which the intake refuses more (a flood
/// must not bury the real ones, nor fill the database).
pub const MAX_UNACKNOWLEDGED_PUBLIC: u64 = 500;
/// Public reports accepted per hour, from one address and from all.
pub const REPORTS_PER_ADDRESS: u32 = 5;
pub const REPORTS_PER_WINDOW: u32 = 100;
const WINDOW: Duration = Duration::HOUR;

/// How many public reports were taken this hour, per address and in all. The total bounds
/// the map. Time is passed in.
#[derive(Debug, Default)]
pub struct IntakeLimiter {
    window: Mutex<Option<IntakeWindow>>,
}

#[derive(Debug)]
struct IntakeWindow {
    start: OffsetDateTime,
    total: u32,
    per_address: HashMap<String, u32>,
}

impl IntakeLimiter {
    /// Take one report from `ip` at `now`, or say in how many seconds to try again.
    pub fn admit(&self, ip: Option<IpAddr>, now: OffsetDateTime) -> Result<(), u64> {
        let mut guard = self.window.lock().unwrap_or_else(|e| e.into_inner());
        let w = match guard.as_mut() {
            Some(w) if now < w.start + WINDOW => w,
            _ => guard.insert(IntakeWindow {
                start: now,
                total: 0,
                per_address: HashMap::new(),
            }),
        };
        let retry = u64::try_from((w.start + WINDOW - now).whole_seconds().max(1)).unwrap_or(1);
        let key = ip.map_or_else(|| "unknown".to_owned(), intake_key);
        let mine = w.per_address.get(&key).copied().unwrap_or(0);
        if w.total >= REPORTS_PER_WINDOW || mine >= REPORTS_PER_ADDRESS {
            return Err(retry);
        }
        w.total += 1;
        w.per_address.insert(key, mine + 1);
        Ok(())
    }
}

/// The bucket an address's reports count in: an IPv4 address, or an IPv6 /48 (a site's
/// usual allocation: one host easily holds a /64 and often many of them).
fn intake_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_none() => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}::/48", s[0], s[1], s[2])
        }
        other => address_key(other),
    }
}

/// A report as operators see it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReportView {
    pub id: String,
    pub product_id: String,
    /// `public` or `operator`.
    pub channel: String,
    /// `received`, `acknowledged`, `accepted` or `rejected`.
    pub state: String,
    pub summary: String,
    pub details: String,
    pub affected: Option<String>,
    pub reporter: Option<String>,
    pub cvss: Option<String>,
    pub exploited: bool,
    pub received_by: String,
    pub received_at: String,
    pub acknowledge_by: String,
    pub decide_by: String,
    pub acknowledged_at: Option<String>,
    pub decided_at: Option<String>,
    pub decided_by: Option<String>,
    /// Why it was rejected.
    pub decision: Option<String>,
    /// The advisory an accepted report became (an OSV record id).
    pub advisory_id: Option<String>,
    /// A deadline passed with its step not taken.
    pub overdue: bool,
}

/// What a reporter may learn with their receipt: where the report stands, not its content.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReportStatus {
    pub id: String,
    pub product_id: String,
    pub state: String,
    pub received_at: String,
    pub acknowledged_at: Option<String>,
    pub decided_at: Option<String>,
    pub decision: Option<String>,
    pub advisory_id: Option<String>,
}

/// What the intake answers a reporter.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Receipt {
    pub id: String,
    /// Keep it: it is the only way to ask for the report's status (sent as a bearer token).
    pub receipt: String,
    pub received_at: String,
    pub acknowledge_by: String,
}

/// An accepted report, and the Article 14 case it opened when reported exploited.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Accepted {
    pub report: ReportView,
    pub case: Option<CaseView>,
    /// Why no case was opened for an exploited report (no deployed device affected yet).
    pub case_note: Option<String>,
}

fn invalid(e: DisclosureError) -> RequestError {
    Refusal::new(RefusalKind::Invalid, "invalid-disclosure", e.to_string()).into()
}

fn submission_of(r: &ReportRecord) -> Submission {
    serde_json::from_str(&r.submission).unwrap_or_else(|_| Submission {
        product: r.product_id.clone(),
        summary: "(unreadable)".into(),
        details: String::new(),
        affected: None,
        reporter: None,
        cvss: None,
        exploited: false,
    })
}

fn report_view(r: ReportRecord, now: OffsetDateTime) -> ReportView {
    let s = submission_of(&r);
    let overdue = match r.state.as_str() {
        "received" => now > r.acknowledge_by || now > r.decide_by,
        "acknowledged" => now > r.decide_by,
        _ => false,
    };
    ReportView {
        id: r.id,
        product_id: r.product_id,
        channel: r.channel,
        state: r.state,
        summary: s.summary,
        details: s.details,
        affected: s.affected,
        reporter: s.reporter,
        cvss: s.cvss,
        exploited: s.exploited,
        received_by: r.received_by,
        received_at: rfc3339(r.received_at),
        acknowledge_by: rfc3339(r.acknowledge_by),
        decide_by: rfc3339(r.decide_by),
        acknowledged_at: r.acknowledged_at.map(rfc3339),
        decided_at: r.decided_at.map(rfc3339),
        decided_by: r.decided_by,
        decision: r.decision,
        advisory_id: r.advisory_id,
        overdue,
    }
}

/// A stored value that does not read back (or a value that does not serialise): a defect.
fn internal(e: serde_json::Error) -> RequestError {
    crate::AuthorityError::Internal(e.to_string()).into()
}

fn policy_of(record: &DisclosurePolicyRecord) -> Result<DisclosurePolicy, RequestError> {
    serde_json::from_str(&record.policy).map_err(internal)
}

impl Authority {
    /// Publish `product`'s policy (`None`: the organisation's).
    pub async fn set_disclosure_policy(
        &self,
        actor: &Actor,
        product: Option<&str>,
        policy: &DisclosurePolicy,
    ) -> Result<DisclosurePolicyRecord, RequestError> {
        let scope = match product {
            Some(p) => {
                let id: sigil_domain::ProductId = p.parse()?;
                self.store.get_product(id).await?;
                id.to_string()
            }
            None => ORGANISATION.to_owned(),
        };
        let now = self.now();
        policy.check(now).map_err(invalid)?;
        let json = serde_json::to_string(policy).map_err(internal)?;
        Ok(self
            .store
            .put_disclosure_policy(actor, &scope, &json, policy.expires, now)
            .await?)
    }

    /// The policy set for exactly `product` (`None`: the organisation's).
    pub async fn disclosure_policy(
        &self,
        product: Option<&str>,
    ) -> Result<Option<(DisclosurePolicyRecord, DisclosurePolicy)>, RequestError> {
        let scope = product.unwrap_or(ORGANISATION);
        match self.store.disclosure_policy(scope).await? {
            Some(r) => {
                let p = policy_of(&r)?;
                Ok(Some((r, p)))
            }
            None => Ok(None),
        }
    }

    /// The policy that applies to `product`: its own, else the organisation's.
    pub async fn applicable_disclosure_policy(
        &self,
        product: &str,
    ) -> Result<Option<(DisclosurePolicyRecord, DisclosurePolicy)>, RequestError> {
        match self.disclosure_policy(Some(product)).await? {
            Some(p) => Ok(Some(p)),
            None => self.disclosure_policy(None).await,
        }
    }

    /// The `security.txt` of `product` (`None`: the organisation's), if one is published.
    pub async fn security_txt(
        &self,
        product: Option<&str>,
    ) -> Result<Option<String>, RequestError> {
        let (title, policy) = match product {
            Some(p) => {
                let id: sigil_domain::ProductId = match p.parse() {
                    Ok(id) => id,
                    Err(_) => return Ok(None),
                };
                let Ok(record) = self.store.get_product(id).await else {
                    return Ok(None);
                };
                let title = format!("{} ({})", record.name, record.id);
                (title, self.applicable_disclosure_policy(p).await?)
            }
            None => (
                "all products".to_owned(),
                self.disclosure_policy(None).await?,
            ),
        };
        // No `Canonical` field: Sigil is not told the URL it is reached at.
        Ok(policy.map(|(_, p)| p.security_txt(&title, &[])))
    }

    /// What the disclosure compliance checks read of `product`.
    pub async fn product_disclosure_facts(
        &self,
        product: &str,
    ) -> Result<DisclosureFacts, RequestError> {
        let policy = self
            .applicable_disclosure_policy(product)
            .await?
            .map(|(record, p)| {
                let whose = if record.scope == ORGANISATION {
                    "the organisation".to_owned()
                } else {
                    record.scope.clone()
                };
                (record.expires_at.unix_timestamp(), p.contacts.len(), whose)
            });
        let reports = self
            .store
            .disclosure_reports(Some(product), false, u32::MAX)
            .await?
            .into_iter()
            // A report decided without acknowledgement was acknowledged by the decision.
            .map(|r| ReportFacts {
                id: r.id,
                acknowledge_by: r.acknowledge_by.unix_timestamp(),
                acknowledged: r.acknowledged_at.map(OffsetDateTime::unix_timestamp),
                decide_by: r.decide_by.unix_timestamp(),
                decided: r.decided_at.map(OffsetDateTime::unix_timestamp),
            })
            .collect();
        Ok(DisclosureFacts { policy, reports })
    }

    /// Whether the public intake takes one more report from `ip` now (`Err`: retry after
    /// these seconds).
    pub fn intake_admit(&self, ip: Option<IpAddr>) -> Result<(), u64> {
        self.intake.admit(ip, self.now())
    }

    /// A report from the public intake. Only products with a published policy take reports.
    pub async fn receive_public_report(
        &self,
        ip: Option<IpAddr>,
        submission: &Submission,
    ) -> Result<Receipt, RequestError> {
        submission.check().map_err(invalid)?;
        let mut canonical = submission.clone();
        let not_taken = || {
            RequestError::from(Refusal::new(
                RefusalKind::NotFound,
                "no-disclosure-policy",
                format!(
                    "product `{}` takes no reports here: it has no published disclosure policy",
                    submission.product
                ),
            ))
        };
        let product: sigil_domain::ProductId =
            submission.product.parse().map_err(|_| not_taken())?;
        if self.store.get_product(product).await.is_err() {
            return Err(not_taken());
        }
        let Some((_, policy)) = self
            .applicable_disclosure_policy(&product.to_string())
            .await?
        else {
            return Err(not_taken());
        };
        // The id as stored (a UUID in upper case parses too, and would miss the product's row).
        canonical.product = product.to_string();
        if self.store.unacknowledged_public_reports().await? >= MAX_UNACKNOWLEDGED_PUBLIC {
            return Err(Refusal::new(
                RefusalKind::Conflict,
                "intake-full",
                "too many reports wait for acknowledgement: write to a contact in security.txt",
            )
            .into());
        }
        let receipt = crate::tokens::generate_secret("sigil-report_")?;
        let hash = hex::encode(sigil_ca::sha256(receipt.as_bytes()));
        let actor = Actor::system("disclosure-intake");
        let report = self
            .record_report(
                &actor,
                &canonical,
                (policy.acknowledge_days, policy.triage_days),
                "public",
                Some(hash),
                ip,
            )
            .await?;
        Ok(Receipt {
            id: report.id,
            receipt,
            received_at: rfc3339(report.received_at),
            acknowledge_by: rfc3339(report.acknowledge_by),
        })
    }

    /// A report an operator received elsewhere (mail, a partner, a CSIRT) and enters.
    pub async fn enter_report(
        &self,
        actor: &Actor,
        submission: &Submission,
    ) -> Result<ReportView, RequestError> {
        submission.check().map_err(invalid)?;
        let product: sigil_domain::ProductId = submission.product.parse()?;
        self.store.get_product(product).await?;
        let mut canonical = submission.clone();
        canonical.product = product.to_string();
        // Without a published policy, the defaults give the deadlines.
        let clock = match self
            .applicable_disclosure_policy(&product.to_string())
            .await?
        {
            Some((_, p)) => (p.acknowledge_days, p.triage_days),
            None => (DEFAULT_ACKNOWLEDGE_DAYS, DEFAULT_TRIAGE_DAYS),
        };
        let report = self
            .record_report(actor, &canonical, clock, "operator", None, None)
            .await?;
        Ok(report_view(report, self.now()))
    }

    async fn record_report(
        &self,
        actor: &Actor,
        submission: &Submission,
        (acknowledge_days, triage_days): (u32, u32),
        channel: &str,
        receipt_hash: Option<String>,
        ip: Option<IpAddr>,
    ) -> Result<ReportRecord, RequestError> {
        let now = self.now();
        let clock = ReportClock::new(now, acknowledge_days, triage_days);
        let json = serde_json::to_string(submission).map_err(internal)?;
        let new = NewReport {
            id: uuid::Uuid::new_v4().to_string(),
            product_id: submission.product.clone(),
            channel: channel.to_owned(),
            receipt_hash,
            sha256: hex::encode(sigil_ca::sha256(json.as_bytes())),
            submission: json,
            acknowledge_by: clock.acknowledge_by,
            decide_by: clock.decide_by,
            exploited: submission.exploited,
            source_address: ip.map(address_key),
        };
        Ok(self.store.receive_report(actor, &new, now).await?)
    }

    /// Where the report a receipt belongs to stands (`None`: no such receipt).
    pub async fn report_status(&self, receipt: &str) -> Result<Option<ReportStatus>, RequestError> {
        let hash = hex::encode(sigil_ca::sha256(receipt.as_bytes()));
        Ok(self
            .store
            .report_by_receipt(&hash)
            .await?
            .map(|r| ReportStatus {
                id: r.id,
                product_id: r.product_id,
                state: r.state,
                received_at: rfc3339(r.received_at),
                acknowledged_at: r.acknowledged_at.map(rfc3339),
                decided_at: r.decided_at.map(rfc3339),
                decision: r.decision,
                advisory_id: r.advisory_id,
            }))
    }

    pub async fn disclosure_report(&self, id: &str) -> Result<ReportView, RequestError> {
        Ok(report_view(
            self.store.disclosure_report(id).await?,
            self.now(),
        ))
    }

    pub async fn disclosure_reports(
        &self,
        product: Option<&str>,
        open_only: bool,
    ) -> Result<Vec<ReportView>, RequestError> {
        let now = self.now();
        Ok(self
            .store
            .disclosure_reports(product, open_only, 1000)
            .await?
            .into_iter()
            .map(|r| report_view(r, now))
            .collect())
    }

    pub async fn acknowledge_report(
        &self,
        actor: &Actor,
        id: &str,
    ) -> Result<ReportView, RequestError> {
        let r = self.store.acknowledge_report(actor, id, self.now()).await?;
        Ok(report_view(r, self.now()))
    }

    pub async fn reject_report(
        &self,
        actor: &Actor,
        id: &str,
        reason: &str,
    ) -> Result<ReportView, RequestError> {
        if reason.trim().is_empty()
            || reason.chars().count() > 2000
            || reason.chars().any(|c| c.is_control() && c != '\n')
        {
            return Err(Refusal::new(
                RefusalKind::Invalid,
                "invalid-reason",
                "say why the report is rejected (1 to 2000 characters)",
            )
            .into());
        }
        let decision = Decision::Reject(reason.to_owned());
        let r = self
            .store
            .decide_report(actor, id, &decision, self.now())
            .await?;
        Ok(report_view(r, self.now()))
    }

    /// Accept a report as a vulnerability of `spec`'s component: its advisory joins the
    /// vulnerability data, its remediation clock starts at the report's receipt, and an
    /// `exploited` one opens an Article 14 case where devices run affected firmware.
    pub async fn accept_report(
        &self,
        actor: &Actor,
        id: &str,
        spec: &AdvisorySpec,
        exploited: bool,
    ) -> Result<Accepted, RequestError> {
        let report = self.store.disclosure_report(id).await?;
        let submission = submission_of(&report);
        let now = self.now();
        // The reporter's score stands unless the operator gives one.
        let mut spec = spec.clone();
        spec.cvss = spec.cvss.or_else(|| submission.cvss.clone());
        let advisory_id = format!(
            "{ADVISORY_PREFIX}{}-{}",
            report.received_at.year(),
            id.replace('-', "").get(..8).unwrap_or(id).to_uppercase()
        );
        let (record, json) = spec
            .record(&advisory_id, &submission.summary, &submission.details, now)
            .map_err(invalid)?;
        let row = record_row(&record, json);
        // No review between the advisory and its first sighting: the review would record it
        // as first seen now, and the clock must run from the report's receipt.
        let review = self.vuln_review_lock.lock().await;
        let decided = self
            .store
            .decide_report(actor, id, &Decision::Accept(row), now)
            .await?;
        // The remediation clock of what the report found runs from its receipt.
        let found = self.product_findings(&report.product_id).await?;
        let exposures: Vec<(String, String)> = found
            .findings
            .iter()
            .filter(|f| f.ids.contains(&advisory_id) || f.vulnerability == advisory_id)
            .map(|f| (f.vulnerability.clone(), f.component.clone()))
            .collect();
        self.store
            .record_exposures(&report.product_id, &exposures, report.received_at)
            .await?;
        drop(review);
        self.vuln_review_wanted.notify_one();
        // The operator's judgement, not the reporter's claim, opens a regulatory case.
        let (case, case_note) = if exploited {
            let reason = format!("reported actively exploited in disclosure report {id}");
            match self
                .open_case(actor, &report.product_id, &advisory_id, &reason)
                .await
            {
                Ok(c) => (Some(c), None),
                Err(e) => (None, Some(e.to_string())),
            }
        } else {
            (None, None)
        };
        Ok(Accepted {
            report: report_view(decided, self.now()),
            case,
            case_note,
        })
    }
}
