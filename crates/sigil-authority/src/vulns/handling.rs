//! Handling findings: the remediation policy (days per severity), each finding's deadline
//! from when Sigil first saw it, the findings of one device, and sites with their countries
//! (Article 14 reports name the member states affected devices are in).

use std::collections::BTreeMap;

use serde::Serialize;
use time::OffsetDateTime;

use sigil_audit::Actor;
use sigil_store::SiteRecord;
use sigil_vuln::reporting::is_country_code;
use sigil_vuln::{RemediationPolicy, SeverityLevel};

use super::{Finding, ProductFindings};
use crate::{Authority, Refusal, RefusalKind, RequestError, rfc3339};

const KNOWN_EXPLOITED: &str = "known_exploited";

fn invalid(code: &'static str, why: String) -> RequestError {
    Refusal::new(RefusalKind::Invalid, code, why).into()
}

/// A device's findings: those of the firmware version it runs.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceFindings {
    pub device: String,
    pub product_id: String,
    pub firmware_version: Option<String>,
    pub findings: Vec<Finding>,
    /// The product's lists were cut short (see `ProductFindings::truncated`).
    pub truncated: bool,
}

/// Whether a finding still asks for remediation: VEX saying `not_affected` or `fixed` ends it.
pub(super) fn open_finding(f: &Finding) -> bool {
    !matches!(
        f.vex.as_ref().map(|v| v.status.as_str()),
        Some("not_affected" | "fixed")
    )
}

impl Authority {
    pub async fn remediation_policy(&self) -> Result<RemediationPolicy, RequestError> {
        let stored = self.store.remediation_policy().await?;
        let mut policy = RemediationPolicy::default();
        for (name, days) in stored {
            if name == KNOWN_EXPLOITED {
                policy.known_exploited_days = days;
            } else if let Ok(level) = name.parse::<SeverityLevel>() {
                policy.days.insert(level, days);
            }
        }
        Ok(policy)
    }

    /// Replace the remediation policy: every severity must have a deadline of 1 to 3650 days.
    pub async fn set_remediation_policy(
        &self,
        actor: &Actor,
        policy: &RemediationPolicy,
    ) -> Result<RemediationPolicy, RequestError> {
        policy
            .check()
            .map_err(|why| invalid("invalid-policy", why))?;
        let mut rows: BTreeMap<String, u32> = policy
            .days
            .iter()
            .map(|(level, days)| (level.as_str().to_owned(), *days))
            .collect();
        rows.insert(KNOWN_EXPLOITED.to_owned(), policy.known_exploited_days);
        self.store
            .set_remediation_policy(actor, &rows, self.now())
            .await?;
        self.remediation_policy().await
    }

    /// Register a site's country (ISO 3166-1 alpha-2).
    pub async fn put_site(
        &self,
        actor: &Actor,
        name: &str,
        country: &str,
    ) -> Result<SiteRecord, RequestError> {
        if name.is_empty() || name.len() > 200 || name.chars().any(char::is_control) {
            return Err(invalid(
                "invalid-site",
                "a site name is 1 to 200 characters, none of them control characters".into(),
            ));
        }
        if !is_country_code(country) {
            return Err(invalid(
                "invalid-country",
                format!(
                    "`{country}` is not an ISO 3166-1 alpha-2 country code (such as DE, FR, US)"
                ),
            ));
        }
        Ok(self
            .store
            .put_site(actor, name, country, self.now())
            .await?)
    }

    pub async fn sites(&self) -> Result<Vec<SiteRecord>, RequestError> {
        Ok(self.store.sites().await?)
    }

    /// Fill in each finding's first sighting and remediation deadline. The review pass
    /// records sightings; a finding it has not seen yet counts from now.
    pub(super) async fn add_deadlines(
        &self,
        product: &str,
        found: &mut ProductFindings,
    ) -> Result<(), RequestError> {
        let now = self.now();
        let policy = self.remediation_policy().await?;
        let seen = self.store.record_exposures(product, &[], now).await?;
        for f in &mut found.findings {
            // The earliest sighting under any of its ids: an alias that becomes the preferred
            // id later (a CVE assigned to a GHSA) does not restart the clock.
            let first = std::iter::once(&f.vulnerability)
                .chain(&f.ids)
                .filter_map(|id| seen.get(&(id.clone(), f.component.clone())))
                .min()
                .copied()
                .unwrap_or(now);
            f.first_seen = Some(rfc3339(first));
            if open_finding(f) {
                let due = deadline(&policy, first, f);
                f.remediation_due = Some(rfc3339(due));
                f.overdue = now > due;
            }
        }
        Ok(())
    }

    /// The findings of the firmware version a device runs, with their deadlines.
    pub async fn device_findings(&self, device: &str) -> Result<DeviceFindings, RequestError> {
        let id: sigil_domain::DeviceId = device.parse()?;
        let record = self.store.get_device(id).await?;
        let product = record.product_id.to_string();
        let firmware = record.firmware_version.clone();
        let all = self.product_findings(&product).await?;
        let findings = match &firmware {
            Some(v) => all
                .findings
                .into_iter()
                .filter(|f| &f.firmware_version == v)
                .collect(),
            None => Vec::new(),
        };
        Ok(DeviceFindings {
            device: device.to_owned(),
            product_id: product,
            firmware_version: firmware,
            findings,
            truncated: all.truncated,
        })
    }
}

/// A finding's deadline: its severity's days from the first sighting, or, once CISA lists it
/// as exploited, the KEV days from the later of that listing and the first sighting (whichever
/// comes first). A year-old low finding is not overdue the moment it enters the catalogue.
fn deadline(policy: &RemediationPolicy, first: OffsetDateTime, f: &Finding) -> OffsetDateTime {
    let by_severity = policy.deadline(first, f.severity, false);
    let Some(added) = &f.known_exploited else {
        return by_severity;
    };
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let listed = time::Date::parse(added, &format)
        .map(|d| d.midnight().assume_utc())
        .unwrap_or(first);
    let by_kev = listed.max(first) + time::Duration::days(i64::from(policy.known_exploited_days));
    by_severity.min(by_kev)
}

/// An optional instant in the API's timestamp format (RFC 3339).
pub(super) fn stamp(t: Option<OffsetDateTime>) -> Option<String> {
    t.map(rfc3339)
}
