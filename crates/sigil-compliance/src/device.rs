//! Device- and product-scope checks, evaluated from facts the caller gathered (the store reads
//! them; nothing here does I/O or reads the clock). Every result carries a reason an auditor
//! can read and references to the evidence it rests on.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use sigil_domain::{DeviceId, Posture};

use crate::Status;

/// Unix seconds.
pub type Time = i64;

/// How old a posture report may be and still describe the device.
pub const POSTURE_MAX_AGE: Time = 24 * 3600;
/// How old a device's last behaviour metrics may be while it still counts as watched (the
/// agent reports every minute by default: fifteen missed reports).
pub const METRICS_MAX_AGE: Time = 15 * 60;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyType {
    EcdsaP256,
    EcdsaP384,
    EcdsaP521,
    Ed25519,
    Rsa { bits: u32 },
    Other(String),
}

impl KeyType {
    /// From the name the CA records at issuance (`ECDSA P-256`, `RSA-2048`, ...).
    pub fn from_name(name: &str) -> Self {
        match name {
            "ECDSA P-256" => Self::EcdsaP256,
            "ECDSA P-384" => Self::EcdsaP384,
            "ECDSA P-521" => Self::EcdsaP521,
            "Ed25519" => Self::Ed25519,
            other => match other.strip_prefix("RSA-").and_then(|b| b.parse().ok()) {
                Some(bits) => Self::Rsa { bits },
                None => Self::Other(other.to_owned()),
            },
        }
    }

    /// The crypto policy: at least 128-bit security.
    pub fn meets_policy(&self) -> bool {
        match self {
            Self::EcdsaP256 | Self::EcdsaP384 | Self::EcdsaP521 | Self::Ed25519 => true,
            Self::Rsa { bits } => *bits >= 3072,
            Self::Other(_) => false,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Self::EcdsaP256 => "ECDSA P-256".into(),
            Self::EcdsaP384 => "ECDSA P-384".into(),
            Self::EcdsaP521 => "ECDSA P-521".into(),
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

/// A manufacturer (IDevID) key a device authenticated with at bootstrap enrolment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManufacturerKey {
    /// SHA-256 of the bootstrap certificate's SubjectPublicKeyInfo, hex.
    pub spki_sha256: String,
    /// The audit entry recording the bootstrap authentication.
    pub audit_seq: u64,
}

/// Everything the device checks read about one device.
#[derive(Debug, Clone)]
pub struct DeviceFacts<'a> {
    pub id: DeviceId,
    /// Lifecycle state: registered | provisioned | active | suspended | retired.
    pub state: &'a str,
    pub certificates: &'a [CertificateFacts],
    /// The newest posture report: its id, when it arrived, and what it says.
    pub posture: Option<(&'a str, Time, &'a Posture)>,
    /// Audit entries recording an authentication attempt with one of this device's certificates
    /// after it was revoked.
    pub revoked_certificate_uses: &'a [u64],
    /// Manufacturer keys the device presented at bootstrap enrolment.
    pub manufacturer_keys: &'a [ManufacturerKey],
    /// When the device's last behaviour metrics report reached the detector.
    pub metrics_reported_at: Option<Time>,
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
    /// The product's update repository in Sigil, if it has one (read fresh at report time).
    pub update_channel: Option<crate::product::UpdateChannelFacts>,
    /// Releases the product publishes through Sigil, if any.
    pub releases: Option<ReleaseFacts>,
    /// Days a device may lack a security release once it is published, if declared.
    pub remediation_days: Option<u32>,
    /// SBOMs, findings, VEX and Article 14 cases (read fresh at report time).
    pub vulnerabilities: Option<crate::vulnerabilities::VulnFacts>,
    /// The disclosure policy that applies and the reports received (read at report time).
    pub disclosure: Option<crate::disclosure::DisclosureFacts>,
}

/// Where a device's key came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyOrigin {
    /// Certified by Sigil (the key of an issued certificate).
    Sigil,
    /// A manufacturer (IDevID) bootstrap certificate's key.
    Manufacturer,
}

/// Fleet-wide facts some device checks need: which devices hold each public key, and which
/// devices are retired (a retired clone no longer shares anything with the fleet).
///
/// Keys are held as 32 bytes and devices as 16, so the index of a million-device fleet stays
/// near 100 MB.
#[derive(Debug, Clone, Default)]
pub struct FleetFacts {
    key_holders: HashMap<[u8; 32], Vec<(DeviceId, KeyOrigin)>>,
    retired: HashSet<DeviceId>,
}

/// A key's index entry: its SHA-256 from hex, or (for anything that is not 64 hex digits) the
/// SHA-256 of the text, so every distinct text stays distinct.
fn key_bytes(spki_sha256: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    if hex::decode_to_slice(spki_sha256, &mut out).is_err() {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, spki_sha256.as_bytes());
        out.copy_from_slice(digest.as_ref());
    }
    out
}

impl FleetFacts {
    /// Record that `device` holds the key; true if this is news.
    pub fn add_key(&mut self, spki_sha256: &str, device: DeviceId, origin: KeyOrigin) -> bool {
        let holders = self.key_holders.entry(key_bytes(spki_sha256)).or_default();
        if holders.iter().any(|(d, o)| *d == device && *o == origin) {
            return false;
        }
        holders.push((device, origin));
        true
    }

    /// Every device holding the key (retired ones included).
    pub fn holders(&self, spki_sha256: &str) -> Vec<DeviceId> {
        let mut out: Vec<DeviceId> = self
            .key_holders
            .get(&key_bytes(spki_sha256))
            .map(|h| h.iter().map(|(d, _)| *d).collect())
            .unwrap_or_default();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Every device holding a key some other device holds too.
    pub fn sharing_devices(&self) -> std::collections::BTreeSet<DeviceId> {
        let mut out = std::collections::BTreeSet::new();
        for holders in self.key_holders.values() {
            if holders.iter().any(|(d, _)| *d != holders[0].0) {
                out.extend(holders.iter().map(|(d, _)| *d));
            }
        }
        out
    }

    pub fn is_retired(&self, device: DeviceId) -> bool {
        self.retired.contains(&device)
    }

    pub fn set_retired(&mut self, device: DeviceId, retired: bool) {
        if retired {
            self.retired.insert(device);
        } else {
            self.retired.remove(&device);
        }
    }

    /// Devices other than `device`, not retired, holding the key.
    fn other_holders(&self, spki_sha256: &str, device: DeviceId) -> Vec<DeviceId> {
        let mut out: Vec<DeviceId> = self
            .key_holders
            .get(&key_bytes(spki_sha256))
            .map(|h| {
                h.iter()
                    .map(|(d, _)| *d)
                    .filter(|d| *d != device && !self.retired.contains(d))
                    .collect()
            })
            .unwrap_or_default();
        out.sort_unstable();
        out.dedup();
        out
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
    Alarm(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outcome {
    pub status: Status,
    pub reason: String,
    pub evidence: Vec<Evidence>,
}

/// An outcome whose reason and evidence are built only when `explain` is set: a fleet
/// evaluation needs only statuses, and formatting a dozen reasons per device would be most of
/// its cost.
macro_rules! outcome {
    ($explain:expr, $status:expr, $reason:expr, $evidence:expr $(,)?) => {
        if $explain {
            Outcome {
                status: $status,
                reason: ($reason).into(),
                evidence: $evidence,
            }
        } else {
            Outcome {
                status: $status,
                reason: String::new(),
                evidence: Vec::new(),
            }
        }
    };
}

fn outcome(status: Status, reason: impl Into<String>, evidence: Vec<Evidence>) -> Outcome {
    Outcome {
        status,
        reason: reason.into(),
        evidence,
    }
}

// Declared after the `outcome!` macro, which the posture checks use too: a `macro_rules!`
// macro is in scope only in the modules declared after it.
mod metrics;
mod posture;
mod updates;

pub use updates::{PublishedRelease, ReleaseFacts};

/// The device-scope checks this module evaluates, in catalogue order.
pub const DEVICE_CHECKS: [&str; 15] = [
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
    "device.update-timely",
    "device.update-verified",
    "device.metrics-fresh",
];

/// Evaluate device check `check` (one of [`DEVICE_CHECKS`]); `None` for any other id.
pub fn evaluate_device(
    check: &str,
    device: &DeviceFacts<'_>,
    product: &ProductFacts,
    fleet: &FleetFacts,
    now: Time,
) -> Option<Outcome> {
    judge(check, device, product, fleet, now, true)
}

/// [`evaluate_device`], with the reason and evidence left empty unless `explain`.
fn judge(
    check: &str,
    device: &DeviceFacts<'_>,
    product: &ProductFacts,
    fleet: &FleetFacts,
    now: Time,
    explain: bool,
) -> Option<Outcome> {
    if !DEVICE_CHECKS.contains(&check) {
        return None;
    }
    // Devices not yet deployed or already retired are outside the fleet's posture.
    if device.state == "registered" || device.state == "retired" {
        return Some(outcome!(
            explain,
            Status::NotApplicable,
            format!("device is {}", device.state),
            vec![Evidence::Device(device.id.to_string())],
        ));
    }
    let judge = Judge {
        device,
        fleet,
        now,
        explain,
    };
    Some(match check {
        "device.unique-identity" => judge.unique_identity(),
        "device.key-not-shared" => judge.key_not_shared(),
        "device.certificate-current" => judge.certificate_current(),
        "device.key-strength" => judge.key_strength(),
        "device.revoked-certificate-unused" => judge.revoked_certificate_unused(),
        "device.posture-fresh" => posture::posture_fresh(device, now, explain),
        "device.metrics-fresh" => metrics::metrics_fresh(device, now, explain),
        "device.update-timely" => updates::update_timely(device, product, now, explain),
        "device.update-verified" => updates::update_verified(device, product, explain),
        posture_check => return posture::evaluate_posture(posture_check, device, product, explain),
    })
}

/// What the certificate and key checks of one deployed device read.
struct Judge<'f, 'a> {
    device: &'f DeviceFacts<'a>,
    fleet: &'f FleetFacts,
    now: Time,
    explain: bool,
}

impl<'a> Judge<'_, 'a> {
    /// The device's certificates valid now and not revoked.
    fn live_certificates(&self) -> Vec<&'a CertificateFacts> {
        self.device
            .certificates
            .iter()
            .filter(|c| c.live(self.now))
            .collect()
    }

    /// `device.unique-identity`.
    fn unique_identity(&self) -> Outcome {
        match self.live_certificates().as_slice() {
            [] => outcome!(
                self.explain,
                Status::Fail,
                "no valid, unrevoked certificate",
                vec![]
            ),
            certs => outcome!(
                self.explain,
                Status::Pass,
                format!("{} valid certificate(s) issued to this device", certs.len()),
                cert_refs(certs),
            ),
        }
    }

    /// `device.key-not-shared`: no other device (retired ones aside) holds one of this device's
    /// certified keys or the manufacturer keys it bootstrapped with.
    fn key_not_shared(&self) -> Outcome {
        let device = self.device;
        if device.certificates.is_empty() && device.manufacturer_keys.is_empty() {
            return outcome!(
                self.explain,
                Status::Unknown,
                "no certificate, so no key to compare",
                vec![],
            );
        }
        let mut reasons = Vec::new();
        let mut evidence = Vec::new();
        let mut others = self.devices_sharing(
            device.certificates.iter().map(|c| {
                (c.spki_sha256.as_str(), move || {
                    Evidence::Certificate(c.serial.clone())
                })
            }),
            &mut evidence,
        );
        if !others.is_empty() {
            reasons.push(format!(
                "public key shared with device(s) {}",
                join(&others)
            ));
        }
        let idevid_others = self.devices_sharing(
            device.manufacturer_keys.iter().map(|k| {
                (k.spki_sha256.as_str(), move || {
                    Evidence::AuditEntry(k.audit_seq)
                })
            }),
            &mut evidence,
        );
        if !idevid_others.is_empty() {
            reasons.push(format!(
                "manufacturer (IDevID) key shared with device(s) {}",
                join(&idevid_others)
            ));
            others.extend(idevid_others);
        }
        if reasons.is_empty() {
            outcome!(
                self.explain,
                Status::Pass,
                "no other device holds any of this device's public keys",
                cert_refs(&device.certificates.iter().collect::<Vec<_>>()),
            )
        } else {
            others.sort_unstable();
            others.dedup();
            evidence.extend(others.iter().map(|d| Evidence::Device(d.to_string())));
            evidence.dedup();
            outcome!(self.explain, Status::Fail, reasons.join("; "), evidence)
        }
    }

    /// The other devices (not retired) holding any of `keys`, sorted and deduplicated. `keys`
    /// are `(spki_sha256, evidence)`; the evidence of every key some other device holds is
    /// appended to `evidence` (built only then: most keys are not shared).
    fn devices_sharing<'k, E: FnOnce() -> Evidence>(
        &self,
        keys: impl Iterator<Item = (&'k str, E)>,
        evidence: &mut Vec<Evidence>,
    ) -> Vec<DeviceId> {
        let mut others = Vec::new();
        for (spki_sha256, key_evidence) in keys {
            let with = self.fleet.other_holders(spki_sha256, self.device.id);
            if !with.is_empty() {
                evidence.push(key_evidence());
                others.extend(with);
            }
        }
        others.sort_unstable();
        others.dedup();
        others
    }

    /// `device.certificate-current`: the newest unrevoked certificate has not expired and is
    /// not inside its renewal window.
    fn certificate_current(&self) -> Outcome {
        let (explain, now) = (self.explain, self.now);
        let newest = self
            .device
            .certificates
            .iter()
            .filter(|c| c.revoked_at.is_none())
            .max_by_key(|c| c.not_after);
        match newest {
            None => outcome!(explain, Status::Fail, "no unrevoked certificate", vec![]),
            Some(c) if c.not_after <= now => outcome!(
                explain,
                Status::Fail,
                format!("certificate {} expired", c.serial),
                vec![Evidence::Certificate(c.serial.clone())],
            ),
            Some(c) if c.renew_after <= now => outcome!(
                explain,
                Status::Fail,
                format!(
                    "certificate {} is inside its renewal window ({} s left) and has not been renewed",
                    c.serial,
                    c.not_after - now
                ),
                vec![Evidence::Certificate(c.serial.clone())],
            ),
            Some(c) => outcome!(
                explain,
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

    /// `device.key-strength`: every live certificate's key meets the crypto policy.
    fn key_strength(&self) -> Outcome {
        let explain = self.explain;
        let live = self.live_certificates();
        if live.is_empty() {
            return outcome!(
                explain,
                Status::Unknown,
                "no valid certificate to inspect",
                vec![],
            );
        }
        match live.iter().find(|c| !c.key.meets_policy()) {
            Some(c) => outcome!(
                explain,
                Status::Fail,
                format!(
                    "certificate {} has a {} key, below the crypto policy",
                    c.serial,
                    c.key.describe()
                ),
                vec![Evidence::Certificate(c.serial.clone())],
            ),
            None => outcome!(
                explain,
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

    /// `device.revoked-certificate-unused`.
    fn revoked_certificate_unused(&self) -> Outcome {
        match self.device.revoked_certificate_uses {
            [] => outcome!(
                self.explain,
                Status::Pass,
                "no use of a revoked certificate recorded",
                vec![],
            ),
            uses => outcome!(
                self.explain,
                Status::Fail,
                format!(
                    "{} authentication attempt(s) with a revoked certificate",
                    uses.len()
                ),
                uses.iter().map(|s| Evidence::AuditEntry(*s)).collect(),
            ),
        }
    }
}

/// References to `certs`, as evidence.
fn cert_refs(certs: &[&CertificateFacts]) -> Vec<Evidence> {
    certs
        .iter()
        .map(|c| Evidence::Certificate(c.serial.clone()))
        .collect()
}

fn join(devices: &[DeviceId]) -> String {
    devices
        .iter()
        .map(DeviceId::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every device check's status, in [`DEVICE_CHECKS`] order.
pub fn device_statuses(
    device: &DeviceFacts<'_>,
    product: &ProductFacts,
    fleet: &FleetFacts,
    now: Time,
) -> [Status; DEVICE_CHECKS.len()] {
    // Statuses only: no reason is formatted (most of a fleet evaluation's cost otherwise).
    DEVICE_CHECKS.map(|check| {
        judge(check, device, product, fleet, now, false)
            .map(|o| o.status)
            .unwrap_or(Status::Unknown)
    })
}

/// The first moment after `now` at which the passage of time alone can change one of the
/// device's results: a certificate starting, entering its renewal window or expiring, the
/// posture report going stale, a security release's remediation deadline passing. `None`:
/// nothing pending.
pub fn next_change(device: &DeviceFacts<'_>, product: &ProductFacts, now: Time) -> Option<Time> {
    let certificate_times = device
        .certificates
        .iter()
        .filter(|c| c.revoked_at.is_none())
        .flat_map(|c| [c.not_before, c.renew_after, c.not_after]);
    let posture_stale = device.posture.map(|(_, at, _)| at + POSTURE_MAX_AGE + 1);
    let metrics_stale = device
        .metrics_reported_at
        .map(|at| at + METRICS_MAX_AGE + 1);
    let remediation_due = updates::remediation_deadline(device, product);
    certificate_times
        .chain(posture_stale)
        .chain(metrics_stale)
        .chain(remediation_due)
        .filter(|t| *t > now)
        .min()
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
    use crate::test_support::dev;
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
            "sbom_ref": "sha256:abc",
            "installed_release": {"target": "2.1.0/fw.bin", "version": "2.1.0", "sha256": "aa".repeat(32)}
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
            update_channel: None,
            vulnerabilities: None,
            disclosure: None,
            releases: Some(ReleaseFacts::new(
                sigil_update::VersionScheme::Semver,
                [("2.0.0", true, "11"), ("2.1.0", false, "aa")].map(|(v, security, sha)| {
                    (
                        v.into(),
                        security,
                        NOW - 40 * DAY,
                        format!("{v}/fw.bin"),
                        sha.repeat(32),
                    )
                }),
            )),
            remediation_days: Some(30),
        }
    }

    struct Case {
        certs: Vec<CertificateFacts>,
        posture: Option<(Time, Posture)>,
        uses: Vec<u64>,
        manufacturer_keys: Vec<ManufacturerKey>,
        metrics: Option<Time>,
        state: &'static str,
        product: ProductFacts,
        fleet: FleetFacts,
    }

    impl Case {
        fn good() -> Self {
            let certs = vec![cert("01", KeyType::EcdsaP256, "k1")];
            let mut fleet = FleetFacts::default();
            fleet.add_key("k1", dev(1), KeyOrigin::Sigil);
            Self {
                certs,
                posture: Some((NOW - 3600, good_posture())),
                uses: vec![],
                manufacturer_keys: vec![],
                metrics: Some(NOW - 60),
                state: "active",
                product: product(),
                fleet,
            }
        }

        fn facts(&self) -> DeviceFacts<'_> {
            DeviceFacts {
                id: dev(1),
                state: self.state,
                certificates: &self.certs,
                posture: self.posture.as_ref().map(|(at, p)| ("r1", *at, p)),
                revoked_certificate_uses: &self.uses,
                manufacturer_keys: &self.manufacturer_keys,
                metrics_reported_at: self.metrics,
            }
        }

        fn run(&self, check: &str) -> Outcome {
            evaluate_device(check, &self.facts(), &self.product, &self.fleet, NOW).unwrap()
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
                    id: dev(9),
                    state: "active",
                    certificates: &[],
                    posture: None,
                    revoked_certificate_uses: &[],
                    manufacturer_keys: &[],
                    metrics_reported_at: None,
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
            &|c| {
                c.fleet.add_key("k1", dev(2), KeyOrigin::Sigil);
            },
            "public key shared with device(s) 00000000-0000-7000-8000-000000000002",
        );
        fail(
            "device.key-not-shared",
            &|c| {
                c.manufacturer_keys.push(ManufacturerKey {
                    spki_sha256: "idev".into(),
                    audit_seq: 7,
                });
                c.fleet.add_key("idev", dev(1), KeyOrigin::Manufacturer);
                c.fleet.add_key("idev", dev(3), KeyOrigin::Manufacturer);
            },
            "manufacturer (IDevID) key shared with device(s) 00000000-0000-7000-8000-000000000003",
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
            "device.metrics-fresh",
            &|c| c.metrics = Some(NOW - 3600),
            "last behaviour metrics are 60 min old (at most 15 min)",
        );
        fail(
            "device.metrics-fresh",
            &|c| c.metrics = None,
            "never reported behaviour metrics",
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

    /// The statuses-only evaluation agrees with the explained one, on every failing variant.
    #[test]
    fn statuses_match_the_explained_outcomes() {
        let mut cases = vec![Case::good()];
        let mut c = Case::good();
        c.certs[0].not_after = NOW - 1;
        cases.push(c);
        let mut c = Case::good();
        c.posture = None;
        cases.push(c);
        let mut c = Case::good();
        c.posture.as_mut().unwrap().1.default_password = Some(true);
        c.posture.as_mut().unwrap().1.debug_interfaces = vec!["jtag".into()];
        c.fleet.add_key("k1", dev(2), KeyOrigin::Sigil);
        cases.push(c);
        let mut c = Case::good();
        c.metrics = Some(NOW - METRICS_MAX_AGE - 1);
        cases.push(c);
        let mut c = Case::good();
        c.state = "retired";
        cases.push(c);
        for case in &cases {
            let quick = device_statuses(&case.facts(), &case.product, &case.fleet, NOW);
            let explained = DEVICE_CHECKS.map(|c| case.run(c).status);
            assert_eq!(quick, explained);
        }
    }

    #[test]
    fn a_retired_clone_no_longer_shares_a_key() {
        let mut case = Case::good();
        case.fleet.add_key("k1", dev(2), KeyOrigin::Sigil);
        assert_eq!(case.run("device.key-not-shared").status, Status::Fail);
        case.fleet.set_retired(dev(2), true);
        assert_eq!(case.run("device.key-not-shared").status, Status::Pass);
        assert_eq!(case.fleet.holders("k1"), vec![dev(1), dev(2)]);
        assert_eq!(
            case.fleet.sharing_devices().into_iter().collect::<Vec<_>>(),
            vec![dev(1), dev(2)]
        );
    }

    #[test]
    fn keys_in_hex_and_other_text_are_told_apart() {
        let mut fleet = FleetFacts::default();
        let hex_key = "ab".repeat(32);
        assert!(fleet.add_key(&hex_key, dev(1), KeyOrigin::Sigil));
        assert!(!fleet.add_key(&hex_key, dev(1), KeyOrigin::Sigil));
        assert!(fleet.add_key(&hex_key.to_uppercase(), dev(2), KeyOrigin::Sigil));
        assert_eq!(fleet.holders(&hex_key), vec![dev(1), dev(2)]);
        assert!(fleet.holders("something else").is_empty());
    }

    /// The next change is the first certificate or posture deadline after now; at that moment
    /// a result does change.
    #[test]
    fn next_change_is_when_time_alone_changes_a_result() {
        let case = Case::good();
        let device = DeviceFacts {
            id: dev(1),
            state: case.state,
            certificates: &case.certs,
            posture: case.posture.as_ref().map(|(at, p)| ("r1", *at, p)),
            revoked_certificate_uses: &[],
            manufacturer_keys: &[],
            metrics_reported_at: None,
        };
        let stale = NOW - 3600 + POSTURE_MAX_AGE + 1;
        assert_eq!(next_change(&device, &product(), NOW), Some(stale));
        let before = device_statuses(&device, &case.product, &case.fleet, stale - 1);
        let after = device_statuses(&device, &case.product, &case.fleet, stale);
        assert_ne!(before, after);
        assert_eq!(
            next_change(&device, &product(), stale),
            Some(NOW + 200 * DAY)
        );
        assert_eq!(next_change(&device, &product(), NOW + 300 * DAY), None);
    }

    /// Metrics going stale is a moment time alone changes a result, like a posture report's.
    #[test]
    fn metrics_going_stale_is_a_change() {
        let case = Case::good();
        let device = case.facts();
        let stale = NOW - 60 + METRICS_MAX_AGE + 1;
        assert_eq!(next_change(&device, &product(), NOW), Some(stale));
        let at = |t| device_statuses(&device, &case.product, &case.fleet, t);
        let index = DEVICE_CHECKS
            .iter()
            .position(|c| *c == "device.metrics-fresh")
            .unwrap();
        assert_eq!(at(stale - 1)[index], Status::Pass);
        assert_eq!(at(stale)[index], Status::Fail);
    }

    #[test]
    fn key_names_recorded_by_the_ca_are_understood() {
        for (name, key) in [
            ("ECDSA P-256", KeyType::EcdsaP256),
            ("ECDSA P-384", KeyType::EcdsaP384),
            ("ECDSA P-521", KeyType::EcdsaP521),
            ("Ed25519", KeyType::Ed25519),
            ("RSA-2048", KeyType::Rsa { bits: 2048 }),
        ] {
            assert_eq!(KeyType::from_name(name), key);
            assert_eq!(key.describe(), name);
        }
        assert!(!KeyType::from_name("RSA-2048").meets_policy());
        assert!(KeyType::from_name("RSA-3072").meets_policy());
        assert!(!KeyType::from_name("DSA").meets_policy());
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
