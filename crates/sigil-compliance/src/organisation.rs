//! Organisation-scope checks and attestations, evaluated from facts the server gathers about
//! itself (its CA, revocation service, audit log, access policy and listeners). Pure: the
//! server reads, this decides.

use crate::Status;
use crate::device::{Evidence, KeyType, Outcome, Time};

mod monitoring;
pub use monitoring::{DETECTION_MAX_LAG, DetectionFacts, UndecidedAlarm};

/// A CA certificate of the hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaFacts {
    /// `root`, `issuing`.
    pub name: String,
    /// `None`: the certificate could not be read.
    pub not_after: Option<Time>,
    pub key: KeyType,
    /// The private key is stored encrypted (or in hardware).
    pub key_protected: bool,
}

/// The revocation list currently published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrlFacts {
    pub number: u64,
    pub this_update: Time,
    pub next_update: Time,
}

/// An attestation of an organisational control.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestationFacts {
    pub id: String,
    pub attested_by: String,
    pub expires_at: Time,
    pub document_name: String,
    pub document_sha256: String,
}

/// What the organisation checks read.
#[derive(Debug, Clone, Default)]
pub struct OrganisationFacts {
    pub cas: Vec<CaFacts>,
    pub crl: Option<CrlFacts>,
    /// How often the CRL is re-signed when nothing is revoked (seconds).
    pub crl_refresh: Time,
    /// The policy version in force, and whether it refuses a suspended and an unknown device.
    pub policy_version: i64,
    pub policy_refuses_untrusted: bool,
    /// Why the audit log failed verification, if it did.
    pub audit_failure: Option<String>,
    /// When the audit log was last verified against its signed checkpoint.
    pub audit_verified_at: Option<Time>,
    /// Every listener that carries credentials or device traffic requires TLS 1.2 or later,
    /// and devices authenticate with client certificates.
    pub tls_only: bool,
    /// Authentications by devices outside the inventory in the window: (audit entry, subject).
    pub unknown_devices: Vec<(u64, String)>,
    /// The behaviour detector.
    pub detection: DetectionFacts,
    /// Critical alarms still active with no operator's decision: how many, and the oldest
    /// (the evidence).
    pub undecided_critical_count: u64,
    pub undecided_critical_alarms: Vec<UndecidedAlarm>,
}

/// CA certificates must have at least this long left (seconds): re-keying a hierarchy takes
/// planning.
pub const CA_MIN_REMAINING: Time = 90 * 86_400;
/// The audit log must have been verified this recently (seconds).
pub const AUDIT_MAX_AGE: Time = 86_400;

fn outcome(status: Status, reason: impl Into<String>, evidence: Vec<Evidence>) -> Outcome {
    Outcome {
        status,
        reason: reason.into(),
        evidence,
    }
}

/// An attestation check's outcome: pass while a current attestation stands; unknown when there
/// is none or it has expired.
pub fn evaluate_attestation(
    latest: Option<&AttestationFacts>,
    now: Time,
    format_time: impl Fn(Time) -> String,
) -> Outcome {
    match latest {
        None => outcome(Status::Unknown, "no attestation recorded", vec![]),
        Some(a) if a.expires_at <= now => outcome(
            Status::Unknown,
            format!(
                "the attestation by {} expired on {}",
                a.attested_by,
                format_time(a.expires_at)
            ),
            vec![Evidence::Attestation(a.id.clone())],
        ),
        Some(a) => outcome(
            Status::Pass,
            format!(
                "attested by {} until {} (document {}, sha256 {})",
                a.attested_by,
                format_time(a.expires_at),
                a.document_name,
                a.document_sha256
            ),
            vec![Evidence::Attestation(a.id.clone())],
        ),
    }
}

/// Evaluate automated organisation check `check`; `None` for an id this module does not know.
pub fn evaluate_organisation(check: &str, f: &OrganisationFacts, now: Time) -> Option<Outcome> {
    Some(match check {
        "org.ca-certificate-validity" => ca_certificate_validity(f, now),
        "org.ca-key-protection" => ca_key_protection(f),
        "org.access-policy" => access_policy(f),
        "org.audit-log-integrity" => audit_log_integrity(f, now),
        "org.encryption-in-transit" => encryption_in_transit(f),
        "org.revocation-service" => revocation_service(f, now),
        "org.asset-visibility" => asset_visibility(f),
        "org.detection-running" => monitoring::detection_running(f, now),
        "org.alarms-decided" => monitoring::alarms_decided(f, now),
        _ => return None,
    })
}

/// `org.ca-certificate-validity`: the first CA certificate to expire has at least
/// [`CA_MIN_REMAINING`] left.
fn ca_certificate_validity(f: &OrganisationFacts, now: Time) -> Outcome {
    if let Some(ca) = f.cas.iter().find(|c| c.not_after.is_none()) {
        return outcome(
            Status::Unknown,
            format!("the {} CA certificate is unreadable", ca.name),
            vec![],
        );
    }
    match f
        .cas
        .iter()
        .filter_map(|c| c.not_after.map(|t| (c, t)))
        .min_by_key(|(_, t)| *t)
    {
        None => outcome(Status::Unknown, "no CA certificate", vec![]),
        Some((ca, t)) if t - now < CA_MIN_REMAINING => outcome(
            Status::Fail,
            format!(
                "the {} CA certificate expires in {} days",
                ca.name,
                (t - now) / 86_400
            ),
            vec![],
        ),
        Some((ca, t)) => outcome(
            Status::Pass,
            format!(
                "the first CA certificate to expire ({}) has {} days left",
                ca.name,
                (t - now) / 86_400
            ),
            vec![],
        ),
    }
}

/// `org.ca-key-protection`: every CA key is stored encrypted and meets the crypto policy.
fn ca_key_protection(f: &OrganisationFacts) -> Outcome {
    if f.cas.is_empty() {
        outcome(Status::Unknown, "no CA certificate", vec![])
    } else if let Some(ca) = f.cas.iter().find(|c| !c.key_protected) {
        outcome(
            Status::Fail,
            format!("the {} CA key is stored unencrypted", ca.name),
            vec![],
        )
    } else if let Some(ca) = f.cas.iter().find(|c| !c.key.meets_policy()) {
        outcome(
            Status::Fail,
            format!(
                "the {} CA key is {}, below policy",
                ca.name,
                ca.key.describe()
            ),
            vec![],
        )
    } else {
        let keys: Vec<String> = f
            .cas
            .iter()
            .map(|c| format!("{} {}", c.name, c.key.describe()))
            .collect();
        outcome(
            Status::Pass,
            format!(
                "CA keys encrypted at rest and of policy strength ({})",
                keys.join(", ")
            ),
            vec![],
        )
    }
}

/// `org.access-policy`: the policy in force refuses suspended and unknown devices.
fn access_policy(f: &OrganisationFacts) -> Outcome {
    if f.policy_refuses_untrusted {
        outcome(
            Status::Pass,
            format!(
                "policy version {} refuses suspended and unknown devices",
                f.policy_version
            ),
            vec![],
        )
    } else {
        outcome(
            Status::Fail,
            format!(
                "policy version {} lets an untrusted device connect",
                f.policy_version
            ),
            vec![],
        )
    }
}

/// `org.audit-log-integrity`: the log verified against its signed checkpoint within
/// [`AUDIT_MAX_AGE`].
fn audit_log_integrity(f: &OrganisationFacts, now: Time) -> Outcome {
    match (&f.audit_failure, f.audit_verified_at) {
        (Some(reason), _) => outcome(Status::Fail, reason.clone(), vec![]),
        (None, Some(t)) if now - t <= AUDIT_MAX_AGE => outcome(
            Status::Pass,
            format!(
                "log verified against its signed checkpoint {} s ago",
                now - t
            ),
            vec![],
        ),
        (None, Some(t)) => outcome(
            Status::Fail,
            format!("log last verified {} h ago", (now - t) / 3600),
            vec![],
        ),
        (None, None) => outcome(Status::Fail, "log never verified since start", vec![]),
    }
}

/// `org.encryption-in-transit`.
fn encryption_in_transit(f: &OrganisationFacts) -> Outcome {
    if f.tls_only {
        outcome(
            Status::Pass,
            "the API and EST are served only over TLS 1.2+; devices authenticate with mutual TLS",
            vec![],
        )
    } else {
        outcome(
            Status::Fail,
            "a listener carrying credentials or device traffic accepts plaintext",
            vec![],
        )
    }
}

/// `org.revocation-service`: a CRL is published, before its nextUpdate, and re-signed on
/// schedule.
fn revocation_service(f: &OrganisationFacts, now: Time) -> Outcome {
    match &f.crl {
        None => outcome(Status::Fail, "no CRL has been published", vec![]),
        Some(crl) if crl.next_update <= now => outcome(
            Status::Fail,
            format!("CRL {} is past its nextUpdate", crl.number),
            vec![],
        ),
        Some(crl) if now - crl.this_update > 2 * f.crl_refresh => outcome(
            Status::Fail,
            format!(
                "CRL {} was signed {} min ago; it is re-signed every {} min",
                crl.number,
                (now - crl.this_update) / 60,
                f.crl_refresh / 60
            ),
            vec![],
        ),
        Some(crl) => outcome(
            Status::Pass,
            format!(
                "CRL {} current (re-signed at every revocation); OCSP answers for the issuing CA",
                crl.number
            ),
            vec![],
        ),
    }
}

/// `org.asset-visibility`: no device outside the inventory authenticated in the window.
fn asset_visibility(f: &OrganisationFacts) -> Outcome {
    match f.unknown_devices.as_slice() {
        [] => outcome(
            Status::Pass,
            "no device outside the inventory seen authenticating in the last 30 days",
            vec![],
        ),
        seen => outcome(
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
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const NOW: Time = 1_800_000_000;
    const DAY: Time = 86_400;

    fn healthy() -> OrganisationFacts {
        let ca = |name: &str, days: Time| CaFacts {
            name: name.into(),
            not_after: Some(NOW + days * DAY),
            key: KeyType::EcdsaP384,
            key_protected: true,
        };
        OrganisationFacts {
            cas: vec![ca("root", 3650), ca("issuing", 1800)],
            crl: Some(CrlFacts {
                number: 7,
                this_update: NOW - 600,
                next_update: NOW + DAY,
            }),
            crl_refresh: 3600,
            policy_version: 3,
            policy_refuses_untrusted: true,
            audit_failure: None,
            audit_verified_at: Some(NOW - 60),
            tls_only: true,
            unknown_devices: vec![],
            detection: DetectionFacts {
                running: true,
                last_tick: Some(NOW - 1),
                transport: "in-process".into(),
                profiles_version: 0,
                behaviours: 13,
            },
            undecided_critical_count: 0,
            undecided_critical_alarms: vec![],
        }
    }

    const CHECKS: [&str; 9] = [
        "org.ca-certificate-validity",
        "org.ca-key-protection",
        "org.access-policy",
        "org.audit-log-integrity",
        "org.encryption-in-transit",
        "org.revocation-service",
        "org.asset-visibility",
        "org.detection-running",
        "org.alarms-decided",
    ];

    #[test]
    fn a_healthy_organisation_passes_every_check() {
        let f = healthy();
        for check in CHECKS {
            let o = evaluate_organisation(check, &f, NOW).unwrap();
            assert_eq!(o.status, Status::Pass, "{check}: {}", o.reason);
        }
        assert!(evaluate_organisation("org.nope", &f, NOW).is_none());
    }

    /// For each check: one change that fails it, and the reason given.
    #[test]
    fn each_organisation_check_fails_for_its_own_reason() {
        let fail = |check: &str, change: &dyn Fn(&mut OrganisationFacts), reason: &str| {
            let mut f = healthy();
            change(&mut f);
            let o = evaluate_organisation(check, &f, NOW).unwrap();
            assert_eq!(o.status, Status::Fail, "{check}: {}", o.reason);
            assert_eq!(o.reason, reason, "{check}");
        };
        fail(
            "org.ca-certificate-validity",
            &|f| f.cas[1].not_after = Some(NOW + 30 * DAY),
            "the issuing CA certificate expires in 30 days",
        );
        fail(
            "org.ca-key-protection",
            &|f| f.cas[0].key = KeyType::Rsa { bits: 2048 },
            "the root CA key is RSA-2048, below policy",
        );
        fail(
            "org.ca-key-protection",
            &|f| f.cas[1].key_protected = false,
            "the issuing CA key is stored unencrypted",
        );
        fail(
            "org.access-policy",
            &|f| f.policy_refuses_untrusted = false,
            "policy version 3 lets an untrusted device connect",
        );
        fail(
            "org.audit-log-integrity",
            &|f| f.audit_failure = Some("entry 12 does not match its leaf hash".into()),
            "entry 12 does not match its leaf hash",
        );
        fail(
            "org.audit-log-integrity",
            &|f| f.audit_verified_at = Some(NOW - 2 * DAY),
            "log last verified 48 h ago",
        );
        fail(
            "org.audit-log-integrity",
            &|f| f.audit_verified_at = None,
            "log never verified since start",
        );
        fail(
            "org.encryption-in-transit",
            &|f| f.tls_only = false,
            "a listener carrying credentials or device traffic accepts plaintext",
        );
        fail(
            "org.revocation-service",
            &|f| f.crl = None,
            "no CRL has been published",
        );
        fail(
            "org.revocation-service",
            &|f| f.crl.as_mut().unwrap().next_update = NOW,
            "CRL 7 is past its nextUpdate",
        );
        fail(
            "org.revocation-service",
            &|f| f.crl.as_mut().unwrap().this_update = NOW - 3 * 3600,
            "CRL 7 was signed 180 min ago; it is re-signed every 60 min",
        );
        fail(
            "org.asset-visibility",
            &|f| f.unknown_devices = vec![(41, "device:rogue".into())],
            "1 authentication(s) by devices not in the inventory in the last 30 days (e.g. device:rogue)",
        );
        fail(
            "org.detection-running",
            &|f| f.detection.running = false,
            "the behaviour detector is not running",
        );
        fail(
            "org.detection-running",
            &|f| f.detection.last_tick = Some(NOW - 600),
            "the detector last closed windows 600 s ago",
        );
        fail(
            "org.detection-running",
            &|f| f.detection.behaviours = 0,
            "the security profiles in force (version 0) define no behaviour that acts",
        );
        let alarm = |id: &str, raised_at: Time| UndecidedAlarm {
            id: id.into(),
            device: "d1".into(),
            behaviour: format!("behaviour-{id}"),
            raised_at,
        };
        fail(
            "org.alarms-decided",
            &|f| {
                f.undecided_critical_count = 2;
                f.undecided_critical_alarms = vec![alarm("a2", NOW - 60), alarm("a1", NOW - 7200)];
            },
            "2 critical alarm(s) open without a decision; the oldest: behaviour-a1 on device d1, raised 120 min ago",
        );
        // More than the evidence lists: the count is the total.
        fail(
            "org.alarms-decided",
            &|f| {
                f.undecided_critical_count = 250;
                f.undecided_critical_alarms = vec![alarm("a1", NOW - 7200)];
            },
            "250 critical alarm(s) open without a decision; the oldest: behaviour-a1 on device d1, raised 120 min ago",
        );
        let mut f = healthy();
        f.undecided_critical_count = 2;
        f.undecided_critical_alarms = vec![alarm("a2", NOW - 60), alarm("a1", NOW - 7200)];
        assert_eq!(
            evaluate_organisation("org.alarms-decided", &f, NOW)
                .unwrap()
                .evidence,
            vec![Evidence::Alarm("a2".into()), Evidence::Alarm("a1".into())]
        );
    }

    #[test]
    fn unreadable_ca_certificates_are_unknown() {
        let mut f = healthy();
        f.cas[0].not_after = None;
        let o = evaluate_organisation("org.ca-certificate-validity", &f, NOW).unwrap();
        assert_eq!(o.status, Status::Unknown);
    }

    #[test]
    fn attestations_count_until_they_expire() {
        let a = AttestationFacts {
            id: "a1".into(),
            attested_by: "Dana Smith, CISO".into(),
            expires_at: NOW + DAY,
            document_name: "ir-plan.pdf".into(),
            document_sha256: "ab".repeat(32),
        };
        let t = |t: Time| t.to_string();
        assert_eq!(evaluate_attestation(None, NOW, t).status, Status::Unknown);
        let o = evaluate_attestation(Some(&a), NOW, t);
        assert_eq!(o.status, Status::Pass);
        assert!(o.reason.starts_with("attested by Dana Smith, CISO"));
        let o = evaluate_attestation(Some(&a), NOW + DAY, t);
        assert_eq!(o.status, Status::Unknown);
        assert_eq!(
            o.reason,
            format!(
                "the attestation by Dana Smith, CISO expired on {}",
                NOW + DAY
            )
        );
        assert_eq!(o.evidence, vec![Evidence::Attestation("a1".into())]);
    }
}
