//! Product checks: the declared support period, the signed update channel, and security
//! updates shipped apart from functionality.

use crate::Status;
use crate::device::{Evidence, Outcome, ProductFacts, Time, evaluate_product_support};

/// A product's update repository as published: each role's newest version and expiry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpdateChannelFacts {
    /// `(role, version, expires)` of every published role.
    pub published: Vec<(String, u64, Time)>,
    /// The version scheme releases are ordered by: `semver` or `integer`.
    pub scheme: String,
    /// Published releases, oldest first in that order: `(version, security)`.
    pub releases: Vec<(String, bool)>,
}

const ROLES: [&str; 4] = ["root", "targets", "snapshot", "timestamp"];

/// The outcome of product check `check`, or `None` if it is not a product check.
/// `attested` is the outcome of the attestation that stands in for the check where Sigil has
/// no evidence (a product without a channel in Sigil): the update mechanism's for
/// `product.update-channel`, vulnerability handling's for `product.security-updates-separate`.
pub fn evaluate_product(
    check: &str,
    product: &ProductFacts,
    now: Time,
    attested: Option<&Outcome>,
) -> Option<Outcome> {
    match check {
        "product.support-period" => Some(evaluate_product_support(product, now)),
        "product.update-channel" => Some(evaluate_update_channel(product, now, attested)),
        "product.security-updates-separate" => Some(evaluate_security_separate(product, attested)),
        _ => crate::vulnerabilities::evaluate(check, product, now, attested)
            .or_else(|| crate::disclosure::evaluate(check, product, now, attested)),
    }
}

/// `product.update-channel`: every role of the product's repository is published and none
/// has expired. Without a channel in Sigil, the attestation decides (or nothing does).
pub fn evaluate_update_channel(
    product: &ProductFacts,
    now: Time,
    attested: Option<&Outcome>,
) -> Outcome {
    let evidence = vec![Evidence::Product(product.id.clone())];
    let Some(channel) = &product.update_channel else {
        return match attested {
            Some(a) => Outcome {
                status: a.status,
                reason: format!(
                    "no update channel in Sigil; attested mechanism: {}",
                    a.reason
                ),
                evidence: a.evidence.clone(),
            },
            None => Outcome {
                status: Status::Unknown,
                reason: "no update channel in Sigil and no attested update mechanism".into(),
                evidence,
            },
        };
    };
    let missing: Vec<&str> = ROLES
        .into_iter()
        .filter(|r| !channel.published.iter().any(|(role, _, _)| role == r))
        .collect();
    if !missing.is_empty() {
        return Outcome {
            status: Status::Fail,
            reason: format!(
                "{} metadata not published (awaiting offline signatures)",
                missing.join(", ")
            ),
            evidence,
        };
    }
    let expired: Vec<String> = channel
        .published
        .iter()
        .filter(|(_, _, expires)| *expires <= now)
        .map(|(role, version, _)| format!("{role} v{version}"))
        .collect();
    if !expired.is_empty() {
        return Outcome {
            status: Status::Fail,
            reason: format!(
                "expired metadata: {}; devices refuse it (freeze protection)",
                expired.join(", ")
            ),
            evidence,
        };
    }
    let earliest = channel
        .published
        .iter()
        .map(|(_, _, e)| *e)
        .min()
        .unwrap_or(now);
    Outcome {
        status: Status::Pass,
        reason: format!(
            "signed update channel; the earliest metadata expiry is in {} h",
            (earliest - now) / 3600
        ),
        evidence,
    }
}

/// `major.minor` of a semver version, if it is one.
fn major_minor(version: &str) -> Option<(u64, u64)> {
    let core = version.split(['-', '+']).next()?;
    let mut parts = core.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// `product.security-updates-separate` (CRA Annex I Part II (2): security updates provided
/// separately from functionality updates, where feasible). Under semver, a security release
/// must be a patch release over the release before it: a new major or minor version ships
/// functionality with the fix, and a user who wants only the fix cannot have it.
pub fn evaluate_security_separate(product: &ProductFacts, attested: Option<&Outcome>) -> Outcome {
    let evidence = vec![Evidence::Product(product.id.clone())];
    let outcome = |status, reason: String| Outcome {
        status,
        reason,
        evidence: evidence.clone(),
    };
    let Some(channel) = &product.update_channel else {
        return match attested {
            Some(a) => Outcome {
                status: a.status,
                reason: format!(
                    "no releases in Sigil; attested vulnerability handling: {}",
                    a.reason
                ),
                evidence: a.evidence.clone(),
            },
            None => outcome(
                Status::Unknown,
                "no releases in Sigil and no attested vulnerability handling".into(),
            ),
        };
    };
    if channel.scheme != "semver" {
        return outcome(
            Status::Unknown,
            format!(
                "{} versions do not tell a fix from a feature",
                channel.scheme
            ),
        );
    }
    let mut security = 0;
    let mut bundled = Vec::new();
    for (i, (version, is_security)) in channel.releases.iter().enumerate() {
        if !is_security {
            continue;
        }
        security += 1;
        let Some((previous, _)) = i.checked_sub(1).and_then(|p| channel.releases.get(p)) else {
            continue;
        };
        if major_minor(version) != major_minor(previous) {
            bundled.push(format!("{version} (over {previous})"));
        }
    }
    if security == 0 {
        return outcome(Status::NotApplicable, "no security release yet".into());
    }
    if !bundled.is_empty() {
        return outcome(
            Status::Fail,
            format!(
                "security release {} is a new major or minor version: it ships functionality with the fix",
                bundled.join(", ")
            ),
        );
    }
    outcome(
        Status::Pass,
        format!("{security} security release(s), each a patch release over the one before"),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const NOW: Time = 1_800_000_000;

    fn with(published: Vec<(&str, u64, Time)>) -> ProductFacts {
        ProductFacts {
            id: "p".into(),
            update_channel: Some(UpdateChannelFacts {
                published: published
                    .into_iter()
                    .map(|(r, v, e)| (r.to_owned(), v, e))
                    .collect(),
                ..UpdateChannelFacts::default()
            }),
            ..ProductFacts::default()
        }
    }

    #[test]
    fn a_channel_passes_only_complete_and_unexpired() {
        let all = |ts: Time| {
            vec![
                ("root", 1, NOW + 9e6 as i64),
                ("targets", 3, NOW + 9e5 as i64),
                ("snapshot", 3, NOW + 9e4 as i64),
                ("timestamp", 7, ts),
            ]
        };
        assert_eq!(
            evaluate_update_channel(&with(all(NOW + 7200)), NOW, None).status,
            Status::Pass
        );
        let expired = evaluate_update_channel(&with(all(NOW - 1)), NOW, None);
        assert_eq!(expired.status, Status::Fail);
        assert!(
            expired.reason.contains("timestamp v7"),
            "{}",
            expired.reason
        );
        let pending = evaluate_update_channel(&with(vec![("root", 1, NOW + 10)]), NOW, None);
        assert_eq!(pending.status, Status::Fail);
        assert!(
            pending.reason.contains("targets, snapshot, timestamp"),
            "{}",
            pending.reason
        );
    }

    #[test]
    fn without_a_channel_the_attestation_decides() {
        let none = ProductFacts {
            id: "p".into(),
            ..ProductFacts::default()
        };
        assert_eq!(
            evaluate_update_channel(&none, NOW, None).status,
            Status::Unknown
        );
        let attested = Outcome {
            status: Status::Pass,
            reason: "attested".into(),
            evidence: vec![],
        };
        assert_eq!(
            evaluate_update_channel(&none, NOW, Some(&attested)).status,
            Status::Pass
        );
        assert!(evaluate_product("device.unique-identity", &none, NOW, None).is_none());
    }

    fn releasing(scheme: &str, releases: &[(&str, bool)]) -> ProductFacts {
        ProductFacts {
            id: "p".into(),
            update_channel: Some(UpdateChannelFacts {
                scheme: scheme.into(),
                releases: releases
                    .iter()
                    .map(|(v, s)| ((*v).to_owned(), *s))
                    .collect(),
                ..UpdateChannelFacts::default()
            }),
            ..ProductFacts::default()
        }
    }

    #[test]
    fn security_releases_must_be_patch_releases() {
        let status = |p: &ProductFacts| evaluate_security_separate(p, None).status;
        let patch = releasing(
            "semver",
            &[
                ("1.0.0", false),
                ("1.0.1", true),
                ("1.1.0", false),
                ("1.1.1-rc.1", true),
            ],
        );
        assert_eq!(status(&patch), Status::Pass);
        let bundled = releasing("semver", &[("1.0.0", false), ("1.1.0", true)]);
        let o = evaluate_security_separate(&bundled, None);
        assert_eq!(o.status, Status::Fail);
        assert!(o.reason.contains("1.1.0 (over 1.0.0)"), "{}", o.reason);
        let major = releasing("semver", &[("1.4.2", false), ("2.0.0", true)]);
        assert_eq!(status(&major), Status::Fail);
        // The first release has nothing to be apart from.
        assert_eq!(
            status(&releasing("semver", &[("1.0.0", true)])),
            Status::Pass
        );
        assert_eq!(
            status(&releasing("semver", &[("1.0.0", false)])),
            Status::NotApplicable
        );
        assert_eq!(
            status(&releasing("integer", &[("7", false), ("8", true)])),
            Status::Unknown
        );
        assert_eq!(status(&ProductFacts::default()), Status::Unknown);
        // Without releases in Sigil, the vulnerability-handling attestation stands in.
        let attested = Outcome {
            status: Status::Pass,
            reason: "documented process".into(),
            evidence: Vec::new(),
        };
        let o = evaluate_security_separate(&ProductFacts::default(), Some(&attested));
        assert_eq!(o.status, Status::Pass);
        assert!(
            o.reason.contains("attested vulnerability handling"),
            "{}",
            o.reason
        );
    }
}
