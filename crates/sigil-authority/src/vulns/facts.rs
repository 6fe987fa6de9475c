//! What the vulnerability-handling compliance checks read of a product: its SBOMs, the open
//! findings on firmware devices run (with deadlines), the vulnerabilities a later release
//! fixed and whether the product's VEX says so, and its Article 14 cases.

use std::collections::BTreeSet;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use sigil_compliance::vulnerabilities::{CaseFacts, DeployedFinding, VulnFacts};
use sigil_vuln::reporting::{CaseClock, Stage};
use sigil_vuln::vex::{VexStatus, product_purl};

use super::handling::open_finding;
use crate::{Authority, RequestError};

fn unix(text: Option<&str>) -> Option<i64> {
    OffsetDateTime::parse(text?, &Rfc3339)
        .ok()
        .map(OffsetDateTime::unix_timestamp)
}

impl Authority {
    /// The facts, for a product whose current firmware versions are `current`.
    pub async fn product_vuln_facts(
        &self,
        product: &str,
        current: &[String],
    ) -> Result<VulnFacts, RequestError> {
        let sbom_versions: Vec<String> = self
            .store
            .sboms(product)
            .await?
            .into_iter()
            .map(|s| s.firmware_version)
            .collect();
        let mut facts = VulnFacts {
            sbom_versions,
            ..VulnFacts::default()
        };
        for case in self.store.cases(Some(product), false).await? {
            let clock = CaseClock {
                aware_at: case.aware_at,
                fix_available_at: case.fix_available_at,
            };
            let deadlines = Stage::ALL
                .into_iter()
                .map(|stage| {
                    let submitted = case
                        .reports
                        .iter()
                        .find(|r| r.stage == stage.as_str())
                        .map(|r| r.submitted_at.unix_timestamp());
                    let due = clock.due(stage).map(OffsetDateTime::unix_timestamp);
                    (stage.as_str().to_owned(), due, submitted)
                })
                .collect();
            facts.cases.push(CaseFacts {
                id: case.id,
                vulnerability: case.vulnerability,
                deadlines,
            });
        }
        if facts.sbom_versions.is_empty() {
            return Ok(facts);
        }
        facts.vex_public = self.disclosure_policy(Some(product)).await?.is_some();
        let found = self.product_findings(product).await?;
        let (record, statements) = self.product_vex(product, Some(&found)).await?;
        for f in found.findings.iter().filter(|f| open_finding(f)) {
            facts.deployed.push(DeployedFinding {
                vulnerability: f.vulnerability.clone(),
                firmware_version: f.firmware_version.clone(),
                component: f.component.clone(),
                devices: f.devices,
                known_exploited: f.known_exploited.is_some(),
                due: unix(f.remediation_due.as_deref()).unwrap_or(i64::MAX),
            });
        }
        // Fixed: found in some version, open in no current one whose SBOM Sigil has.
        let current: Vec<&String> = current
            .iter()
            .filter(|v| facts.sbom_versions.contains(v))
            .collect();
        if current.is_empty() {
            return Ok(facts);
        }
        let open_now: BTreeSet<&str> = found
            .findings
            .iter()
            .filter(|f| open_finding(f) && current.contains(&&f.firmware_version))
            .map(|f| f.vulnerability.as_str())
            .collect();
        let earlier: BTreeSet<&str> = found
            .findings
            .iter()
            .filter(|f| !current.contains(&&f.firmware_version))
            .map(|f| f.vulnerability.as_str())
            .collect();
        for vulnerability in earlier.difference(&open_now) {
            let published = current.iter().all(|version| {
                let purl = product_purl(&record.name, version);
                statements.iter().any(|s| {
                    (s.vulnerability == *vulnerability
                        || s.aliases.iter().any(|a| a == vulnerability))
                        && s.product == purl
                        && matches!(s.status, VexStatus::Fixed | VexStatus::NotAffected)
                })
            });
            facts.fixed.push(((*vulnerability).to_owned(), published));
        }
        Ok(facts)
    }
}
