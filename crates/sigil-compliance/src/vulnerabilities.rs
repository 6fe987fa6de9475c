//! Product checks of vulnerability handling (CRA Annex I Part II, Article 14), from what
//! Sigil knows: SBOMs, findings on the firmware devices run, remediation deadlines, the
//! product's published VEX and its Article 14 cases. Where Sigil holds no SBOM of the product
//! the vulnerability-handling attestation stands in, as it did before these checks existed.

use crate::Status;
use crate::device::{Evidence, Outcome, ProductFacts, Time};

/// An open finding (VEX says neither `not_affected` nor `fixed`) on a firmware version
/// devices run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployedFinding {
    pub vulnerability: String,
    pub firmware_version: String,
    pub component: String,
    pub devices: u64,
    pub known_exploited: bool,
    /// The remediation policy's deadline (unix seconds).
    pub due: Time,
}

/// One Article 14 case: each stage's deadline and submission (unix seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseFacts {
    pub id: String,
    pub vulnerability: String,
    /// `(stage, due, submitted)`; the final report has no deadline before a fix.
    pub deadlines: Vec<(String, Option<Time>, Option<Time>)>,
}

/// What Sigil knows of a product's vulnerabilities.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VulnFacts {
    /// Firmware versions with an SBOM in Sigil.
    pub sbom_versions: Vec<String>,
    pub deployed: Vec<DeployedFinding>,
    /// Vulnerabilities an earlier version had and the current one does not, and whether the
    /// product's VEX says so of the current version (`fixed` or `not_affected`).
    pub fixed: Vec<(String, bool)>,
    /// Whether Sigil publishes the product's VEX (a disclosure policy is published for it,
    /// and with it `/disclosure/{product}/vex.json`).
    pub vex_public: bool,
    pub cases: Vec<CaseFacts>,
}

/// The product checks of this module.
pub const CHECKS: [&str; 5] = [
    "product.sbom-current",
    "product.exploited-remediated",
    "product.remediation-timely",
    "product.fixes-published",
    "product.article14-deadlines",
];

/// The outcome of `check` for `product`, or `None` if it is not one of [`CHECKS`].
pub fn evaluate(
    check: &str,
    product: &ProductFacts,
    now: Time,
    attested: Option<&Outcome>,
) -> Option<Outcome> {
    let evidence = vec![Evidence::Product(product.id.clone())];
    let outcome = |status, reason: String| Outcome {
        status,
        reason,
        evidence: evidence.clone(),
    };
    if check == "product.sbom-current" {
        return Some(sbom_current(product, outcome));
    }
    if !CHECKS.contains(&check) {
        return None;
    }
    let Some(facts) = product
        .vulnerabilities
        .as_ref()
        .filter(|f| !f.sbom_versions.is_empty())
    else {
        return Some(match attested {
            Some(a) => Outcome {
                status: a.status,
                reason: format!(
                    "no SBOM in Sigil; attested vulnerability handling: {}",
                    a.reason
                ),
                evidence: a.evidence.clone(),
            },
            None => outcome(
                Status::Unknown,
                "no SBOM in Sigil and no attested vulnerability handling".into(),
            ),
        });
    };
    Some(match check {
        "product.exploited-remediated" => exploited_remediated(facts, outcome),
        "product.remediation-timely" => remediation_timely(facts, now, outcome),
        "product.fixes-published" => fixes_published(facts, outcome),
        _ => article14_deadlines(facts, now, outcome),
    })
}

/// `product.sbom-current` (CRA Annex I Part II (1)): every current version (the newest
/// published release, else the declared current firmware) has an SBOM, in Sigil or at least
/// referenced in the product's declaration.
fn sbom_current(product: &ProductFacts, outcome: impl Fn(Status, String) -> Outcome) -> Outcome {
    let in_sigil = product
        .vulnerabilities
        .as_ref()
        .map(|f| f.sbom_versions.clone())
        .unwrap_or_default();
    let current = product.current_firmware.clone().unwrap_or_default();
    if current.is_empty() {
        // Devices' own SBOM references (`device.sbom-reference`) still count.
        return outcome(
            Status::NotApplicable,
            "no current release known: publish one or declare the current firmware".into(),
        );
    }
    let missing: Vec<&str> = current
        .iter()
        .filter(|v| !in_sigil.contains(v) && !product.sboms.contains_key(*v))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        return outcome(
            Status::Fail,
            format!("no SBOM for current firmware {}", missing.join(", ")),
        );
    }
    let referenced: Vec<&str> = current
        .iter()
        .filter(|v| !in_sigil.contains(v))
        .map(String::as_str)
        .collect();
    if referenced.is_empty() {
        outcome(
            Status::Pass,
            format!(
                "current firmware {} has its SBOM in Sigil",
                current.join(", ")
            ),
        )
    } else {
        outcome(
            Status::Pass,
            format!(
                "the SBOM of {} is referenced, not ingested",
                referenced.join(", ")
            ),
        )
    }
}

fn listed(findings: &[&DeployedFinding]) -> String {
    let mut shown: Vec<String> = findings
        .iter()
        .take(5)
        .map(|f| {
            format!(
                "{} in {} of {} ({} devices)",
                f.vulnerability, f.component, f.firmware_version, f.devices
            )
        })
        .collect();
    if findings.len() > 5 {
        shown.push(format!("and {} more", findings.len() - 5));
    }
    shown.join("; ")
}

/// `product.exploited-remediated` (Part I (2)(a), Part II (2)): no vulnerability in CISA's
/// KEV catalogue is open on a firmware version devices run.
fn exploited_remediated(facts: &VulnFacts, outcome: impl Fn(Status, String) -> Outcome) -> Outcome {
    let exploited: Vec<&DeployedFinding> = facts
        .deployed
        .iter()
        .filter(|f| f.known_exploited && f.devices > 0)
        .collect();
    if exploited.is_empty() {
        return outcome(
            Status::Pass,
            "no known exploited vulnerability on firmware devices run".into(),
        );
    }
    outcome(
        Status::Fail,
        format!("known exploited and deployed: {}", listed(&exploited)),
    )
}

/// `product.remediation-timely` (Part II (2)): no open finding on deployed firmware is past
/// the remediation policy's deadline.
fn remediation_timely(
    facts: &VulnFacts,
    now: Time,
    outcome: impl Fn(Status, String) -> Outcome,
) -> Outcome {
    let deployed: Vec<&DeployedFinding> = facts.deployed.iter().filter(|f| f.devices > 0).collect();
    let late: Vec<&DeployedFinding> = deployed.iter().copied().filter(|f| f.due <= now).collect();
    if !late.is_empty() {
        return outcome(
            Status::Fail,
            format!("past the remediation deadline: {}", listed(&late)),
        );
    }
    match deployed.iter().map(|f| f.due).min() {
        None => outcome(
            Status::Pass,
            "no open vulnerability on firmware devices run".into(),
        ),
        Some(first) => outcome(
            Status::Pass,
            format!(
                "{} open finding(s) on deployed firmware, the first due in {} days",
                deployed.len(),
                (first - now) / 86_400
            ),
        ),
    }
}

/// `product.fixes-published` (Part II (4)): every vulnerability the current release no longer
/// has is published in the product's VEX as fixed (or not affecting it).
fn fixes_published(facts: &VulnFacts, outcome: impl Fn(Status, String) -> Outcome) -> Outcome {
    if facts.fixed.is_empty() {
        return outcome(
            Status::NotApplicable,
            "no vulnerability fixed by a later release yet".into(),
        );
    }
    let missing: Vec<&str> = facts
        .fixed
        .iter()
        .filter(|(_, published)| !published)
        .map(|(v, _)| v.as_str())
        .collect();
    if !facts.vex_public {
        return outcome(
            Status::Fail,
            format!(
                "{} fixed vulnerabilit(ies), and the product's VEX is not public: publish a disclosure policy (sigil disclosure set-policy) and Sigil serves its VEX at /disclosure/<product>/vex.json",
                facts.fixed.len()
            ),
        );
    }
    if missing.is_empty() {
        return outcome(
            Status::Pass,
            format!(
                "{} fixed vulnerabilit(ies) in the product's VEX as fixed or not affecting the current release",
                facts.fixed.len()
            ),
        );
    }
    outcome(
        Status::Fail,
        format!(
            "fixed but not in the product's VEX (record a statement: the component was removed?): {}",
            missing.join(", ")
        ),
    )
}

/// `product.article14-deadlines` (Article 14(2)): every report of every case was submitted by
/// its deadline, or is not yet due.
fn article14_deadlines(
    facts: &VulnFacts,
    now: Time,
    outcome: impl Fn(Status, String) -> Outcome,
) -> Outcome {
    if facts.cases.is_empty() {
        return outcome(
            Status::NotApplicable,
            "no actively exploited vulnerability case".into(),
        );
    }
    let mut missed = Vec::new();
    for case in &facts.cases {
        for (stage, due, submitted) in &case.deadlines {
            let Some(due) = due else { continue };
            match submitted {
                Some(at) if at > due => missed.push(format!(
                    "{} {stage} submitted {} min late",
                    case.vulnerability,
                    (at - due) / 60
                )),
                None if now >= *due => {
                    missed.push(format!("{} {stage} overdue", case.vulnerability));
                }
                _ => {}
            }
        }
    }
    if missed.is_empty() {
        return outcome(
            Status::Pass,
            format!("{} case(s), every report on time so far", facts.cases.len()),
        );
    }
    outcome(Status::Fail, missed.join("; "))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const NOW: Time = 1_800_000_000;
    const DAY: Time = 86_400;

    fn finding(v: &str, devices: u64, kev: bool, due: Time) -> DeployedFinding {
        DeployedFinding {
            vulnerability: v.into(),
            firmware_version: "2.0.0".into(),
            component: "requests".into(),
            devices,
            known_exploited: kev,
            due,
        }
    }

    fn product(facts: VulnFacts) -> ProductFacts {
        ProductFacts {
            id: "p".into(),
            current_firmware: Some(vec!["2.0.0".into()]),
            vulnerabilities: Some(facts),
            ..ProductFacts::default()
        }
    }

    fn with_sbom(f: VulnFacts) -> VulnFacts {
        VulnFacts {
            sbom_versions: vec!["2.0.0".into()],
            ..f
        }
    }

    fn status(check: &str, p: &ProductFacts) -> Status {
        evaluate(check, p, NOW, None).unwrap().status
    }

    #[test]
    fn the_current_release_needs_an_sbom() {
        let p = product(with_sbom(VulnFacts::default()));
        assert_eq!(status("product.sbom-current", &p), Status::Pass);
        let mut newer = p.clone();
        newer.current_firmware = Some(vec!["2.1.0".into()]);
        let o = evaluate("product.sbom-current", &newer, NOW, None).unwrap();
        assert_eq!(o.status, Status::Fail);
        assert!(o.reason.contains("2.1.0"), "{}", o.reason);
        newer
            .sboms
            .insert("2.1.0".into(), "https://example.org/sbom".into());
        assert_eq!(status("product.sbom-current", &newer), Status::Pass);
        let undeclared = ProductFacts::default();
        assert_eq!(
            status("product.sbom-current", &undeclared),
            Status::NotApplicable
        );
    }

    #[test]
    fn known_exploited_on_deployed_firmware_fails() {
        let deployed = |f| {
            product(with_sbom(VulnFacts {
                deployed: vec![f],
                ..VulnFacts::default()
            }))
        };
        let check = "product.exploited-remediated";
        assert_eq!(
            status(check, &deployed(finding("CVE-1", 3, true, NOW + DAY))),
            Status::Fail
        );
        assert_eq!(
            status(check, &deployed(finding("CVE-1", 0, true, NOW + DAY))),
            Status::Pass
        );
        assert_eq!(
            status(check, &deployed(finding("CVE-1", 3, false, NOW + DAY))),
            Status::Pass
        );
    }

    #[test]
    fn remediation_fails_from_the_deadline_on() {
        let at = |due| {
            product(with_sbom(VulnFacts {
                deployed: vec![finding("CVE-1", 1, false, due)],
                ..VulnFacts::default()
            }))
        };
        let check = "product.remediation-timely";
        assert_eq!(status(check, &at(NOW + 1)), Status::Pass);
        let o = evaluate(check, &at(NOW), NOW, None).unwrap();
        assert_eq!(o.status, Status::Fail);
        assert!(
            o.reason.contains("CVE-1 in requests of 2.0.0 (1 devices)"),
            "{}",
            o.reason
        );
    }

    #[test]
    fn fixes_must_be_in_the_vex() {
        let fixed = |published| {
            product(with_sbom(VulnFacts {
                fixed: vec![("CVE-1".into(), published)],
                vex_public: true,
                ..VulnFacts::default()
            }))
        };
        assert_eq!(
            status("product.fixes-published", &fixed(true)),
            Status::Pass
        );
        assert_eq!(
            status("product.fixes-published", &fixed(false)),
            Status::Fail
        );
        assert_eq!(
            status(
                "product.fixes-published",
                &product(with_sbom(VulnFacts::default()))
            ),
            Status::NotApplicable
        );
        // In the VEX, but the VEX is not public: not published.
        let private = product(with_sbom(VulnFacts {
            fixed: vec![("CVE-1".into(), true)],
            ..VulnFacts::default()
        }));
        let o = evaluate("product.fixes-published", &private, 0, None).unwrap();
        assert_eq!(o.status, Status::Fail);
        assert!(o.reason.contains("not public"), "{}", o.reason);
    }

    #[test]
    fn article_14_reports_late_or_overdue_fail() {
        let case = |deadlines: Vec<(&str, Option<Time>, Option<Time>)>| {
            product(with_sbom(VulnFacts {
                cases: vec![CaseFacts {
                    id: "c".into(),
                    vulnerability: "CVE-1".into(),
                    deadlines: deadlines
                        .into_iter()
                        .map(|(s, d, at)| (s.to_owned(), d, at))
                        .collect(),
                }],
                ..VulnFacts::default()
            }))
        };
        let check = "product.article14-deadlines";
        // On time, or not yet due: pass.
        assert_eq!(
            status(
                check,
                &case(vec![
                    ("early-warning", Some(NOW - 10), Some(NOW - 20)),
                    ("notification", Some(NOW + 10), None),
                    ("final-report", None, None)
                ])
            ),
            Status::Pass
        );
        // Submitted a minute late.
        let late = evaluate(
            check,
            &case(vec![("early-warning", Some(NOW - 100), Some(NOW - 40))]),
            NOW,
            None,
        )
        .unwrap();
        assert_eq!(late.status, Status::Fail);
        assert!(late.reason.contains("1 min late"), "{}", late.reason);
        // Due now and not submitted.
        assert_eq!(
            status(check, &case(vec![("notification", Some(NOW), None)])),
            Status::Fail
        );
        assert_eq!(
            status(check, &product(with_sbom(VulnFacts::default()))),
            Status::NotApplicable
        );
    }

    #[test]
    fn without_an_sbom_the_attestation_stands_in() {
        let none = product(VulnFacts::default());
        assert_eq!(status("product.remediation-timely", &none), Status::Unknown);
        let attested = Outcome {
            status: Status::Pass,
            reason: "documented".into(),
            evidence: vec![],
        };
        let o = evaluate("product.exploited-remediated", &none, NOW, Some(&attested)).unwrap();
        assert_eq!(o.status, Status::Pass);
        assert!(
            o.reason.contains("attested vulnerability handling"),
            "{}",
            o.reason
        );
        assert!(evaluate("product.support-period", &none, NOW, None).is_none());
    }
}
