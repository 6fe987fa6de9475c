//! The device checks that read the product's releases published through Sigil:
//! `device.update-verified` (the device runs a signed target its agent verified) and
//! `device.update-timely` (no security release has waited on the device past the product's
//! remediation deadline).

use sigil_update::{ReleaseVersion, VersionScheme};

use super::{DeviceFacts, Evidence, Outcome, ProductFacts, Time};
use crate::Status;

const DAY: Time = 86_400;

/// A product's releases published through Sigil (signed targets of its TUF repository).
#[derive(Debug, Clone, Default)]
pub struct ReleaseFacts {
    pub scheme: VersionScheme,
    /// Published releases, oldest first in the scheme's order.
    pub releases: Vec<PublishedRelease>,
}

#[derive(Debug, Clone)]
pub struct PublishedRelease {
    pub version: ReleaseVersion,
    pub security: bool,
    /// When a signed targets document first listed it.
    pub published_at: Time,
    /// The TUF target's name and SHA-256 (hex, lower case).
    pub target: String,
    pub sha256: String,
}

impl ReleaseFacts {
    /// From `(version, security, published at, target, sha256)` in any order; versions that
    /// do not parse under the scheme are left out (the upload refused them: none should exist).
    pub fn new(
        scheme: VersionScheme,
        releases: impl IntoIterator<Item = (String, bool, Time, String, String)>,
    ) -> Self {
        let mut releases: Vec<PublishedRelease> = releases
            .into_iter()
            .filter_map(|(version, security, published_at, target, sha256)| {
                Some(PublishedRelease {
                    version: ReleaseVersion::parse(scheme, &version).ok()?,
                    security,
                    published_at,
                    target,
                    sha256: sha256.to_ascii_lowercase(),
                })
            })
            .collect();
        releases.sort_by(|a, b| a.version.precedence(&b.version));
        Self { scheme, releases }
    }
}

/// The product's published releases, or the not-applicable outcome when it has none.
fn releases(product: &ProductFacts, explain: bool) -> Result<&ReleaseFacts, Outcome> {
    match &product.releases {
        Some(r) if !r.releases.is_empty() => Ok(r),
        _ => Err(outcome!(
            explain,
            Status::NotApplicable,
            "the product publishes no release through Sigil (its update mechanism is attested)",
            vec![Evidence::Product(product.id.clone())],
        )),
    }
}

fn date(t: Time) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .map(|t| t.date().to_string())
        .unwrap_or_else(|_| t.to_string())
}

/// `device.update-verified`: what the device runs is a release of the product's signed
/// repository, installed by an agent that checked its signatures, length and hashes first.
/// The running slot's SHA-256 (from the posture report) must be a published target's.
pub(super) fn update_verified(
    device: &DeviceFacts<'_>,
    product: &ProductFacts,
    explain: bool,
) -> Outcome {
    let channel = match releases(product, explain) {
        Ok(c) => c,
        Err(not_applicable) => return not_applicable,
    };
    let Some((report, _, posture)) = device.posture else {
        return outcome!(explain, Status::Unknown, "no posture report", vec![]);
    };
    let evidence = vec![Evidence::Posture(report.to_owned())];
    let Some(installed) = &posture.installed_release else {
        return outcome!(
            explain,
            Status::Unknown,
            format!(
                "the agent reports no release it installed: the device runs firmware {} that \
                 no verified update put there (a factory image, or no update agent)",
                posture
                    .firmware_version
                    .as_deref()
                    .unwrap_or("of unknown version")
            ),
            evidence,
        );
    };
    let sha256 = installed.sha256.to_ascii_lowercase();
    match channel.releases.iter().find(|r| r.sha256 == sha256) {
        Some(release) => outcome!(
            explain,
            Status::Pass,
            format!(
                "runs release {} (target {}, SHA-256 {}), a signed target of the product's \
                 repository, verified by its agent before it was installed",
                release.version,
                release.target,
                &sha256[..16]
            ),
            evidence,
        ),
        None => outcome!(
            explain,
            Status::Fail,
            format!(
                "runs target {} with SHA-256 {}, which is no published release of the product",
                installed.target,
                &sha256[..sha256.len().min(16)]
            ),
            evidence,
        ),
    }
}

/// The version the device runs: its update slot's, else the firmware it reports.
fn running_version<'d>(device: &DeviceFacts<'d>) -> Option<&'d str> {
    let (_, _, posture) = device.posture?;
    posture
        .installed_release
        .as_ref()
        .and_then(|r| r.version.as_deref())
        .or(posture.firmware_version.as_deref())
}

/// The oldest-published security release newer than `running`: the fix the device has
/// lacked the longest.
fn oldest_missing_fix<'r>(
    channel: &'r ReleaseFacts,
    running: &ReleaseVersion,
) -> Option<&'r PublishedRelease> {
    channel
        .releases
        .iter()
        .filter(|r| r.security && r.version.precedence(running).is_gt())
        .min_by_key(|r| r.published_at)
}

/// `device.update-timely`: the device runs the current release, or every security release it
/// lacks was published less than the product's remediation deadline ago. Feature releases it
/// lacks do not count (CRA Annex I Part II (2) asks for security updates without delay).
pub(super) fn update_timely(
    device: &DeviceFacts<'_>,
    product: &ProductFacts,
    now: Time,
    explain: bool,
) -> Outcome {
    let channel = match releases(product, explain) {
        Ok(c) => c,
        Err(not_applicable) => return not_applicable,
    };
    let Some((report, _, _)) = device.posture else {
        return outcome!(explain, Status::Unknown, "no posture report", vec![]);
    };
    let evidence = vec![
        Evidence::Posture(report.to_owned()),
        Evidence::Product(product.id.clone()),
    ];
    let Some(version) = running_version(device) else {
        return outcome!(
            explain,
            Status::Unknown,
            "the agent did not report a firmware version",
            evidence,
        );
    };
    let running = match ReleaseVersion::parse(channel.scheme, version) {
        Ok(v) => v,
        Err(_) => {
            return outcome!(
                explain,
                Status::Unknown,
                format!(
                    "firmware {version} is not a {} version: it cannot be placed among the \
                     product's releases",
                    channel.scheme
                ),
                evidence,
            );
        }
    };
    let current = channel.releases.last().map(|r| &r.version);
    if current.is_some_and(|c| running.precedence(c).is_ge()) {
        return outcome!(
            explain,
            Status::Pass,
            format!("runs {running}, the current release"),
            evidence,
        );
    }
    let Some(fix) = oldest_missing_fix(channel, &running) else {
        return outcome!(
            explain,
            Status::Pass,
            format!(
                "runs {running}: the newer releases are feature releases, no security fix is missing"
            ),
            evidence,
        );
    };
    let Some(days) = product.remediation_days else {
        return outcome!(
            explain,
            Status::Unknown,
            format!(
                "runs {running} without security release {} (published {}), and the product \
                 declares no remediation deadline",
                fix.version,
                date(fix.published_at)
            ),
            evidence,
        );
    };
    let deadline = fix.published_at + Time::from(days) * DAY;
    if now < deadline {
        outcome!(
            explain,
            Status::Pass,
            format!(
                "runs {running}; security release {} (published {}) is due by {} ({} days left \
                 of the {days}-day remediation deadline)",
                fix.version,
                date(fix.published_at),
                date(deadline),
                (deadline - now + DAY - 1) / DAY
            ),
            evidence,
        )
    } else {
        outcome!(
            explain,
            Status::Fail,
            format!(
                "runs {running} without security release {} (published {}): the {days}-day \
                 remediation deadline passed on {}",
                fix.version,
                date(fix.published_at),
                date(deadline)
            ),
            evidence,
        )
    }
}

/// When the remediation deadline of the fix the device lacks the longest falls, if it is
/// still ahead: the moment `device.update-timely` turns from pass to fail by time alone.
pub(super) fn remediation_deadline(
    device: &DeviceFacts<'_>,
    product: &ProductFacts,
) -> Option<Time> {
    let channel = product.releases.as_ref()?;
    let days = product.remediation_days?;
    let running = ReleaseVersion::parse(channel.scheme, running_version(device)?).ok()?;
    let fix = oldest_missing_fix(channel, &running)?;
    Some(fix.published_at + Time::from(days) * DAY)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::device::DeviceFacts;
    use crate::test_support::dev;
    use sigil_domain::{InstalledRelease, Posture};

    const NOW: Time = 1_800_000_000;

    /// 1.0.0, security fix 1.0.1 published 20 days ago, feature release 1.1.0, and security
    /// fix 1.1.1 published 5 days ago; a 30-day deadline unless said otherwise.
    fn product(remediation_days: Option<u32>) -> ProductFacts {
        let releases = [
            ("1.0.0", false, 90),
            ("1.1.1", true, 5),
            ("1.0.1", true, 20),
            ("1.1.0", false, 10),
        ]
        .map(|(v, security, age)| {
            let sha = format!("{:0>64}", v.replace('.', ""));
            (
                v.to_owned(),
                security,
                NOW - age * DAY,
                format!("{v}/fw.bin"),
                sha,
            )
        });
        ProductFacts {
            id: "p1".into(),
            releases: Some(ReleaseFacts::new(VersionScheme::Semver, releases)),
            remediation_days,
            ..ProductFacts::default()
        }
    }

    fn posture(firmware: &str, installed: Option<(&str, &str)>) -> Posture {
        Posture {
            firmware_version: Some(firmware.into()),
            secure_boot: None,
            boot_state: None,
            default_password: None,
            listening_services: vec![],
            debug_interfaces: vec![],
            last_update: None,
            sbom_ref: None,
            installed_release: installed.map(|(version, sha)| InstalledRelease {
                target: format!("{version}/fw.bin"),
                version: Some(version.into()),
                sha256: sha.into(),
            }),
        }
    }

    fn judge(check: &str, posture: Option<&Posture>, product: &ProductFacts, now: Time) -> Outcome {
        let device = DeviceFacts {
            id: dev(1),
            state: "active",
            certificates: &[],
            posture: posture.map(|p| ("r1", NOW, p)),
            revoked_certificate_uses: &[],
            manufacturer_keys: &[],
            metrics_reported_at: None,
        };
        match check {
            "timely" => update_timely(&device, product, now, true),
            _ => update_verified(&device, product, true),
        }
    }

    #[test]
    fn timely_counts_only_missing_security_releases_against_the_deadline() {
        let p = product(Some(30));
        let cases = [
            // (running, now, status, words the reason must hold)
            ("1.1.1", NOW, Status::Pass, "current release"),
            ("2.0.0-rc.1", NOW, Status::Pass, "current release"),
            // Lacks 1.0.1 (20 days old) and 1.1.1: the clock runs from the older fix.
            ("1.0.0", NOW, Status::Pass, "1.0.1 (published"),
            ("1.0.0", NOW + 10 * DAY, Status::Fail, "deadline passed"),
            ("1.0.0", NOW + 10 * DAY - 1, Status::Pass, "1 days left"),
            // Lacks only 1.1.1 (5 days old): 25 days left, whatever feature release it lacks.
            ("1.0.1", NOW, Status::Pass, "25 days left"),
            ("1.0.1", NOW + 25 * DAY, Status::Fail, "1.1.1"),
            ("debian 12", NOW, Status::Unknown, "not a semver version"),
        ];
        for (running, now, status, words) in cases {
            let o = judge("timely", Some(&posture(running, None)), &p, now);
            assert_eq!(o.status, status, "{running} at {now}: {}", o.reason);
            assert!(o.reason.contains(words), "{running}: {}", o.reason);
        }
        // A device that lacks only a feature release is on time.
        let mut only_feature = product(Some(30));
        let channel = only_feature.releases.as_mut().unwrap();
        channel
            .releases
            .retain(|r| r.version.to_string() != "1.1.1");
        let o = judge(
            "timely",
            Some(&posture("1.0.1", None)),
            &only_feature,
            NOW + 400 * DAY,
        );
        assert_eq!(o.status, Status::Pass, "{}", o.reason);
        assert!(o.reason.contains("feature releases"), "{}", o.reason);
        // The slot's version is what the device runs, over the OS's own.
        let o = judge(
            "timely",
            Some(&posture("os 1", Some(("1.1.1", "x")))),
            &p,
            NOW,
        );
        assert_eq!(o.status, Status::Pass, "{}", o.reason);
    }

    #[test]
    fn timely_cannot_decide_without_a_deadline_or_a_report_and_skips_products_without_releases() {
        let o = judge("timely", Some(&posture("1.0.0", None)), &product(None), NOW);
        assert_eq!(o.status, Status::Unknown);
        assert!(
            o.reason.contains("declares no remediation deadline"),
            "{}",
            o.reason
        );
        assert_eq!(
            judge("timely", None, &product(Some(30)), NOW).status,
            Status::Unknown
        );
        let none = ProductFacts::default();
        let o = judge("timely", Some(&posture("1.0.0", None)), &none, NOW);
        assert_eq!(o.status, Status::NotApplicable);
    }

    #[test]
    fn verified_needs_the_running_slot_to_be_a_published_target() {
        let p = product(Some(30));
        let signed = format!("{:0>64}", "101");
        let o = judge(
            "verified",
            Some(&posture("1.0.1", Some(("1.0.1", &signed)))),
            &p,
            NOW,
        );
        assert_eq!(o.status, Status::Pass, "{}", o.reason);
        assert!(o.reason.contains("release 1.0.1"), "{}", o.reason);
        // Upper-case hex is the same digest.
        let upper = signed.to_ascii_uppercase();
        let o = judge(
            "verified",
            Some(&posture("1.0.1", Some(("1.0.1", &upper)))),
            &p,
            NOW,
        );
        assert_eq!(o.status, Status::Pass, "{}", o.reason);
        // Something else in the slot, even under a released version's name.
        let other = "ee".repeat(32);
        let o = judge(
            "verified",
            Some(&posture("1.0.1", Some(("1.0.1", &other)))),
            &p,
            NOW,
        );
        assert_eq!(o.status, Status::Fail);
        assert!(o.reason.contains("no published release"), "{}", o.reason);
        // A factory image: nothing verified it.
        let o = judge("verified", Some(&posture("1.0.0", None)), &p, NOW);
        assert_eq!(o.status, Status::Unknown);
        assert!(o.reason.contains("factory image"), "{}", o.reason);
        let none = ProductFacts::default();
        assert_eq!(
            judge("verified", Some(&posture("1.0.0", None)), &none, NOW).status,
            Status::NotApplicable
        );
    }

    #[test]
    fn the_deadline_is_when_time_alone_fails_the_device() {
        let p = product(Some(30));
        let lagging = posture("1.0.0", None);
        let device = DeviceFacts {
            id: dev(1),
            state: "active",
            certificates: &[],
            posture: Some(("r1", NOW, &lagging)),
            revoked_certificate_uses: &[],
            manufacturer_keys: &[],
            metrics_reported_at: None,
        };
        assert_eq!(remediation_deadline(&device, &p), Some(NOW + 10 * DAY));
        assert_eq!(remediation_deadline(&device, &product(None)), None);
    }
}
