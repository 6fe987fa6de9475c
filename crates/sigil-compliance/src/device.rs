//! Device- and product-scope checks, evaluated from facts the caller gathered (the store reads
//! them; nothing here does I/O or reads the clock). Every result carries a reason an auditor
//! can read and references to the evidence it rests on.

use std::collections::HashMap;

use serde::Serialize;

use sigil_domain::Posture;

use crate::Status;

/// Unix seconds.
pub type Time = i64;

/// How old a posture report may be and still describe the device.
pub const POSTURE_MAX_AGE: Time = 24 * 3600;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyType {
    EcdsaP256,
    EcdsaP384,
    Ed25519,
    Rsa { bits: u32 },
    Other(String),
}

impl KeyType {
    /// The crypto policy: at least 128-bit security.
    fn meets_policy(&self) -> bool {
        match self {
            Self::EcdsaP256 | Self::EcdsaP384 | Self::Ed25519 => true,
            Self::Rsa { bits } => *bits >= 3072,
            Self::Other(_) => false,
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::EcdsaP256 => "ECDSA P-256".into(),
            Self::EcdsaP384 => "ECDSA P-384".into(),
            Self::Ed25519 => "Ed25519".into(),
            Self::Rsa { bits } => format!("RSA-{bits}"),
            Self::Other(name) => name.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFacts {
    pub serial: String,
    pub not_before: Time,
    pub not_after: Time,
    /// Start of the profile's renewal window.
    pub renew_after: Time,
    pub revoked_at: Option<Time>,
    pub key: KeyType,
    /// SHA-256 of the SubjectPublicKeyInfo, hex.
    pub spki_sha256: String,
}

impl CertificateFacts {
    fn live(&self, now: Time) -> bool {
        self.revoked_at.is_none() && self.not_before <= now && now < self.not_after
    }
}

/// Everything the device checks read about one device.
#[derive(Debug, Clone)]
pub struct DeviceFacts<'a> {
    pub id: &'a str,
    /// Lifecycle state: registered | provisioned | active | suspended | retired.
    pub state: &'a str,
    pub certificates: &'a [CertificateFacts],
    /// The newest posture report: its id, when it arrived, and what it says.
    pub posture: Option<(&'a str, Time, &'a Posture)>,
    /// Audit entries recording an authentication attempt with one of this device's certificates
    /// after it was revoked.
    pub revoked_certificate_uses: &'a [u64],
}

/// What the product declares.
#[derive(Debug, Clone, Default)]
pub struct ProductFacts {
    pub id: String,
    /// End of security support (unix seconds), if declared.
    pub support_end: Option<Time>,
    /// Firmware versions the manufacturer lists as current; `None`: not declared.
    pub current_firmware: Option<Vec<String>>,
    /// `protocol/port` services the product is expected to expose; `None`: not declared.
    pub allowed_services: Option<Vec<String>>,
    /// The SBOM of each firmware version, when registered.
    pub sboms: HashMap<String, String>,
}

/// Fleet-wide facts some device checks need: which devices hold each public key.
#[derive(Debug, Default)]
pub struct FleetFacts {
    key_holders: HashMap<String, Vec<String>>,
}

impl FleetFacts {
    pub fn add_key(&mut self, spki_sha256: &str, device: &str) {
        let holders = self.key_holders.entry(spki_sha256.to_owned()).or_default();
        if !holders.iter().any(|d| d == device) {
            holders.push(device.to_owned());
        }
    }

    fn other_holders(&self, spki: &str, device: &str) -> Vec<&str> {
        self.key_holders
            .get(spki)
            .map(|h| {
                h.iter()
                    .map(String::as_str)
                    .filter(|d| *d != device)
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// What a result rests on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", content = "ref", rename_all = "kebab-case")]
pub enum Evidence {
    Certificate(String),
    Posture(String),
    AuditEntry(u64),
    Product(String),
    Device(String),
    Attestation(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outcome {
    pub status: Status,
    pub reason: String,
    pub evidence: Vec<Evidence>,
}

fn outcome(status: Status, reason: impl Into<String>, evidence: Vec<Evidence>) -> Outcome {
    Outcome {
        status,
        reason: reason.into(),
        evidence,
    }
}

/// The device-scope checks this module evaluates, in catalogue order.
pub const DEVICE_CHECKS: [&str; 12] = [
    "device.unique-identity",
    "device.key-not-shared",
    "device.certificate-current",
    "device.key-strength",
    "device.revoked-certificate-unused",
    "device.no-default-password",
    "device.secure-boot",
    "device.debug-disabled",
    "device.expected-services",
    "device.firmware-current",
    "device.posture-fresh",
    "device.sbom-reference",
];

/// Evaluate device check `check` (one of [`DEVICE_CHECKS`]); `None` for any other id.
pub fn evaluate_device(
    check: &str,
    device: &DeviceFacts<'_>,
    product: &ProductFacts,
    fleet: &FleetFacts,
    now: Time,
) -> Option<Outcome> {
    if !DEVICE_CHECKS.contains(&check) {
        return None;
    }
    // Devices not yet deployed or already retired are outside the fleet's posture.
    if device.state == "registered" || device.state == "retired" {
        return Some(outcome(
            Status::NotApplicable,
            format!("device is {}", device.state),
            vec![Evidence::Device(device.id.to_owned())],
        ));
    }
    let live: Vec<&CertificateFacts> = device.certificates.iter().filter(|c| c.live(now)).collect();
    let cert_refs = |certs: &[&CertificateFacts]| {
        certs
            .iter()
            .map(|c| Evidence::Certificate(c.serial.clone()))
            .collect::<Vec<_>>()
    };
    Some(match check {
        "device.unique-identity" => match live.as_slice() {
            [] => outcome(Status::Fail, "no valid, unrevoked certificate", vec![]),
            certs => outcome(
                Status::Pass,
                format!("{} valid certificate(s) issued to this device", certs.len()),
                cert_refs(certs),
            ),
        },
        "device.key-not-shared" => {
            if device.certificates.is_empty() {
                return Some(outcome(
                    Status::Unknown,
                    "no certificate, so no key to compare",
                    vec![],
                ));
            }
            let mut shared = Vec::new();
            for c in device.certificates {
                for other in fleet.other_holders(&c.spki_sha256, device.id) {
                    shared.push((c, other));
                }
            }
            if shared.is_empty() {
                outcome(
                    Status::Pass,
                    "no other device holds any of this device's public keys",
                    cert_refs(&device.certificates.iter().collect::<Vec<_>>()),
                )
            } else {
                let mut evidence: Vec<Evidence> = shared
                    .iter()
                    .map(|(c, _)| Evidence::Certificate(c.serial.clone()))
                    .collect();
                evidence.extend(
                    shared
                        .iter()
                        .map(|(_, d)| Evidence::Device((*d).to_owned())),
                );
                evidence.dedup();
                let others: Vec<&str> = shared.iter().map(|(_, d)| *d).collect();
                outcome(
                    Status::Fail,
                    format!("public key shared with device(s) {}", others.join(", ")),
                    evidence,
                )
            }
        }
        "device.certificate-current" => {
            let newest = device
                .certificates
                .iter()
                .filter(|c| c.revoked_at.is_none())
                .max_by_key(|c| c.not_after);
            match newest {
                None => outcome(Status::Fail, "no unrevoked certificate", vec![]),
                Some(c) if c.not_after <= now => outcome(
                    Status::Fail,
                    format!("certificate {} expired", c.serial),
                    vec![Evidence::Certificate(c.serial.clone())],
                ),
                Some(c) if c.renew_after <= now => outcome(
                    Status::Fail,
                    format!(
                        "certificate {} is inside its renewal window ({} s left) and has not been renewed",
                        c.serial,
                        c.not_after - now
                    ),
                    vec![Evidence::Certificate(c.serial.clone())],
                ),
                Some(c) => outcome(
                    Status::Pass,
                    format!(
                        "certificate {} valid, renewal due in {} s",
                        c.serial,
                        c.renew_after - now
                    ),
                    vec![Evidence::Certificate(c.serial.clone())],
                ),
            }
        }
        "device.key-strength" => {
            if live.is_empty() {
                return Some(outcome(
                    Status::Unknown,
                    "no valid certificate to inspect",
                    vec![],
                ));
            }
            let weak: Vec<&&CertificateFacts> =
                live.iter().filter(|c| !c.key.meets_policy()).collect();
            match weak.first() {
                Some(c) => outcome(
                    Status::Fail,
                    format!(
                        "certificate {} has a {} key, below the crypto policy",
                        c.serial,
                        c.key.describe()
                    ),
                    vec![Evidence::Certificate(c.serial.clone())],
                ),
                None => outcome(
                    Status::Pass,
                    format!(
                        "keys meet the crypto policy ({})",
                        live.iter()
                            .map(|c| c.key.describe())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    cert_refs(&live),
                ),
            }
        }
        "device.revoked-certificate-unused" => match device.revoked_certificate_uses {
            [] => outcome(
                Status::Pass,
                "no use of a revoked certificate recorded",
                vec![],
            ),
            uses => outcome(
                Status::Fail,
                format!(
                    "{} authentication attempt(s) with a revoked certificate",
                    uses.len()
                ),
                uses.iter().map(|s| Evidence::AuditEntry(*s)).collect(),
            ),
        },
        "device.posture-fresh" => match device.posture {
            None => outcome(
                Status::Fail,
                "the device has never reported its posture",
                vec![],
            ),
            Some((id, at, _)) if now - at > POSTURE_MAX_AGE => outcome(
                Status::Fail,
                format!("last posture report is {} h old", (now - at) / 3600),
                vec![Evidence::Posture(id.to_owned())],
            ),
            Some((id, _, _)) => outcome(
                Status::Pass,
                "posture reported within the last day",
                vec![Evidence::Posture(id.to_owned())],
            ),
        },
        posture_check => return evaluate_posture(posture_check, device, product),
    })
}

/// Checks that read the newest posture report (stale or missing reports give unknown).
fn evaluate_posture(
    check: &str,
    device: &DeviceFacts<'_>,
    product: &ProductFacts,
) -> Option<Outcome> {
    let Some((report_id, _, posture)) = device.posture else {
        return Some(outcome(Status::Unknown, "no posture report", vec![]));
    };
    let evidence = vec![Evidence::Posture(report_id.to_owned())];
    let flag = |value: Option<bool>, good: bool, yes: &str, no: &str, missing: &str| match value {
        None => outcome(Status::Unknown, missing, evidence.clone()),
        Some(v) if v == good => outcome(Status::Pass, yes, evidence.clone()),
        Some(_) => outcome(Status::Fail, no, evidence.clone()),
    };
    Some(match check {
        "device.no-default-password" => flag(
            posture.default_password,
            false,
            "no default or universal password set",
            "a default or universal password is still set",
            "the agent does not know whether a default password is set",
        ),
        "device.secure-boot" => flag(
            posture.secure_boot,
            true,
            "secure boot enforced",
            "secure boot is not enabled",
            "the agent could not read the secure boot state",
        ),
        "device.debug-disabled" => {
            if posture.debug_interfaces.is_empty() {
                outcome(Status::Pass, "no debug interface enabled", evidence)
            } else {
                outcome(
                    Status::Fail,
                    format!(
                        "debug interfaces enabled: {}",
                        posture.debug_interfaces.join(", ")
                    ),
                    evidence,
                )
            }
        }
        "device.expected-services" => {
            let Some(allowed) = &product.allowed_services else {
                return Some(outcome(
                    Status::Unknown,
                    "the product declares no expected services",
                    vec![Evidence::Product(product.id.clone())],
                ));
            };
            let unexpected: Vec<String> = posture
                .listening_services
                .iter()
                .map(|s| format!("{}/{}", s.protocol, s.port))
                .filter(|s| !allowed.contains(s))
                .collect();
            if unexpected.is_empty() {
                outcome(Status::Pass, "only expected services listening", evidence)
            } else {
                outcome(
                    Status::Fail,
                    format!("unexpected services listening: {}", unexpected.join(", ")),
                    evidence,
                )
            }
        }
        "device.firmware-current" => {
            let Some(current) = &product.current_firmware else {
                return Some(outcome(
                    Status::Unknown,
                    "the product declares no current firmware",
                    vec![Evidence::Product(product.id.clone())],
                ));
            };
            match &posture.firmware_version {
                None => outcome(
                    Status::Unknown,
                    "the agent did not report a firmware version",
                    evidence,
                ),
                Some(v) if current.contains(v) => {
                    outcome(Status::Pass, format!("firmware {v} is current"), evidence)
                }
                Some(v) => outcome(
                    Status::Fail,
                    format!(
                        "firmware {v} is not a current release ({})",
                        current.join(", ")
                    ),
                    evidence,
                ),
            }
        }
        "device.sbom-reference" => {
            let registered = posture
                .firmware_version
                .as_ref()
                .and_then(|v| product.sboms.get(v));
            match (&posture.sbom_ref, registered) {
                (Some(r), _) | (None, Some(r)) => {
                    outcome(Status::Pass, format!("SBOM {r}"), evidence)
                }
                (None, None) => outcome(Status::Fail, "no SBOM for the running firmware", evidence),
            }
        }
        _ => return None,
    })
}

/// `product.support-period`.
pub fn evaluate_product_support(product: &ProductFacts, now: Time) -> Outcome {
    let evidence = vec![Evidence::Product(product.id.clone())];
    match product.support_end {
        None => outcome(
            Status::Fail,
            "no end of security support declared",
            evidence,
        ),
        Some(end) if end <= now => outcome(Status::Fail, "security support has ended", evidence),
        Some(end) => outcome(
            Status::Pass,
            format!("supported for another {} days", (end - now) / 86_400),
            evidence,
        ),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use sigil_domain::ListeningService;

    const NOW: Time = 1_800_000_000;
    const DAY: Time = 86_400;

    fn cert(serial: &str, key: KeyType, spki: &str) -> CertificateFacts {
        CertificateFacts {
            serial: serial.into(),
            not_before: NOW - 10 * DAY,
            not_after: NOW + 300 * DAY,
            renew_after: NOW + 200 * DAY,
            revoked_at: None,
            key,
            spki_sha256: spki.into(),
        }
    }

    fn good_posture() -> Posture {
        serde_json::from_value(serde_json::json!({
            "firmware_version": "2.1.0", "secure_boot": true, "default_password": false,
            "listening_services": [{"protocol": "tcp", "port": 8883}], "debug_interfaces": [],
            "sbom_ref": "sha256:abc"
        }))
        .unwrap()
    }

    fn product() -> ProductFacts {
        ProductFacts {
            id: "p1".into(),
            support_end: Some(NOW + 365 * DAY),
            current_firmware: Some(vec!["2.1.0".into()]),
            allowed_services: Some(vec!["tcp/8883".into()]),
            sboms: HashMap::new(),
        }
    }

    struct Case {
        certs: Vec<CertificateFacts>,
        posture: Option<(Time, Posture)>,
        uses: Vec<u64>,
        state: &'static str,
        product: ProductFacts,
        fleet: FleetFacts,
    }

    impl Case {
        fn good() -> Self {
            let certs = vec![cert("01", KeyType::EcdsaP256, "k1")];
            let mut fleet = FleetFacts::default();
            fleet.add_key("k1", "d1");
            Self {
                certs,
                posture: Some((NOW - 3600, good_posture())),
                uses: vec![],
                state: "active",
                product: product(),
                fleet,
            }
        }

        fn run(&self, check: &str) -> Outcome {
            let device = DeviceFacts {
                id: "d1",
                state: self.state,
                certificates: &self.certs,
                posture: self.posture.as_ref().map(|(at, p)| ("r1", *at, p)),
                revoked_certificate_uses: &self.uses,
            };
            evaluate_device(check, &device, &self.product, &self.fleet, NOW).unwrap()
        }
    }

    #[test]
    fn a_healthy_device_passes_every_device_check() {
        let case = Case::good();
        for check in DEVICE_CHECKS {
            let o = case.run(check);
            assert_eq!(o.status, Status::Pass, "{check}: {}", o.reason);
        }
        assert!(
            evaluate_device(
                "device.nope",
                &DeviceFacts {
                    id: "d",
                    state: "active",
                    certificates: &[],
                    posture: None,
                    revoked_certificate_uses: &[]
                },
                &product(),
                &FleetFacts::default(),
                NOW
            )
            .is_none()
        );
    }

    /// For each check: one change to the healthy device that fails it, and the reason given.
    #[test]
    fn each_device_check_fails_for_its_own_reason() {
        let fail = |check: &str, change: &dyn Fn(&mut Case), reason: &str| {
            let mut case = Case::good();
            change(&mut case);
            let o = case.run(check);
            assert_eq!(o.status, Status::Fail, "{check}: {}", o.reason);
            assert!(
                o.reason.contains(reason),
                "{check}: {:?} lacks {reason:?}",
                o.reason
            );
        };
        fail(
            "device.unique-identity",
            &|c| c.certs[0].revoked_at = Some(NOW - 1),
            "no valid",
        );
        fail(
            "device.key-not-shared",
            &|c| c.fleet.add_key("k1", "d2"),
            "shared with device(s) d2",
        );
        fail(
            "device.certificate-current",
            &|c| c.certs[0].not_after = NOW - 1,
            "expired",
        );
        fail(
            "device.certificate-current",
            &|c| c.certs[0].renew_after = NOW - DAY,
            "renewal window",
        );
        fail(
            "device.key-strength",
            &|c| c.certs[0].key = KeyType::Rsa { bits: 2048 },
            "RSA-2048",
        );
        fail(
            "device.revoked-certificate-unused",
            &|c| c.uses = vec![42],
            "1 authentication attempt",
        );
        fail(
            "device.no-default-password",
            &|c| c.posture.as_mut().unwrap().1.default_password = Some(true),
            "default",
        );
        fail(
            "device.secure-boot",
            &|c| c.posture.as_mut().unwrap().1.secure_boot = Some(false),
            "not enabled",
        );
        fail(
            "device.debug-disabled",
            &|c| c.posture.as_mut().unwrap().1.debug_interfaces = vec!["jtag".into()],
            "jtag",
        );
        fail(
            "device.expected-services",
            &|c| {
                c.posture
                    .as_mut()
                    .unwrap()
                    .1
                    .listening_services
                    .push(ListeningService {
                        protocol: "tcp".into(),
                        port: 23,
                        address: None,
                        process: Some("telnetd".into()),
                    })
            },
            "tcp/23",
        );
        fail(
            "device.firmware-current",
            &|c| c.posture.as_mut().unwrap().1.firmware_version = Some("1.0.0".into()),
            "1.0.0 is not a current release",
        );
        fail(
            "device.posture-fresh",
            &|c| c.posture.as_mut().unwrap().0 = NOW - 3 * DAY,
            "72 h old",
        );
        fail(
            "device.posture-fresh",
            &|c| c.posture = None,
            "never reported",
        );
        fail(
            "device.sbom-reference",
            &|c| c.posture.as_mut().unwrap().1.sbom_ref = None,
            "no SBOM",
        );
    }

    #[test]
    fn missing_data_is_unknown_and_undeployed_devices_are_not_applicable() {
        let mut case = Case::good();
        case.posture.as_mut().unwrap().1.secure_boot = None;
        assert_eq!(case.run("device.secure-boot").status, Status::Unknown);
        case.posture = None;
        assert_eq!(
            case.run("device.no-default-password").status,
            Status::Unknown
        );
        let mut case = Case::good();
        case.product.current_firmware = None;
        assert_eq!(case.run("device.firmware-current").status, Status::Unknown);
        case.state = "retired";
        for check in DEVICE_CHECKS {
            assert_eq!(case.run(check).status, Status::NotApplicable, "{check}");
        }
        // An SBOM registered for the running firmware counts.
        let mut case = Case::good();
        case.posture.as_mut().unwrap().1.sbom_ref = None;
        case.product
            .sboms
            .insert("2.1.0".into(), "https://example.com/sbom.json".into());
        assert_eq!(case.run("device.sbom-reference").status, Status::Pass);
    }

    #[test]
    fn product_support_period() {
        let mut p = product();
        assert_eq!(evaluate_product_support(&p, NOW).status, Status::Pass);
        p.support_end = Some(NOW - 1);
        assert_eq!(
            evaluate_product_support(&p, NOW).reason,
            "security support has ended"
        );
        p.support_end = None;
        assert_eq!(evaluate_product_support(&p, NOW).status, Status::Fail);
    }
}
