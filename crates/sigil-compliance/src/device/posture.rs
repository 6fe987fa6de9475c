//! The device checks that read the newest posture report: its age, and what it says (a missing
//! report gives unknown, except to `device.posture-fresh`, which it fails).

use sigil_domain::Posture;

use super::{DeviceFacts, Evidence, Outcome, POSTURE_MAX_AGE, ProductFacts, Time};
use crate::Status;

/// `device.posture-fresh`: the device reported its posture within [`POSTURE_MAX_AGE`].
pub(super) fn posture_fresh(device: &DeviceFacts<'_>, now: Time, explain: bool) -> Outcome {
    match device.posture {
        None => outcome!(
            explain,
            Status::Fail,
            "the device has never reported its posture",
            vec![],
        ),
        Some((id, at, _)) if now - at > POSTURE_MAX_AGE => outcome!(
            explain,
            Status::Fail,
            format!("last posture report is {} h old", (now - at) / 3600),
            vec![Evidence::Posture(id.to_owned())],
        ),
        Some((id, _, _)) => outcome!(
            explain,
            Status::Pass,
            "posture reported within the last day",
            vec![Evidence::Posture(id.to_owned())],
        ),
    }
}

/// Checks that read the newest posture report (stale or missing reports give unknown).
pub(super) fn evaluate_posture(
    check: &str,
    device: &DeviceFacts<'_>,
    product: &ProductFacts,
    explain: bool,
) -> Option<Outcome> {
    let Some((report_id, _, posture)) = device.posture else {
        return Some(outcome!(
            explain,
            Status::Unknown,
            "no posture report",
            vec![]
        ));
    };
    let report = Report {
        posture,
        product,
        explain,
        evidence: if explain {
            vec![Evidence::Posture(report_id.to_owned())]
        } else {
            Vec::new()
        },
    };
    Some(match check {
        "device.no-default-password" => report.flag(
            posture.default_password,
            false,
            "no default or universal password set",
            "a default or universal password is still set",
            "the agent does not know whether a default password is set",
        ),
        "device.secure-boot" => report.flag(
            posture.secure_boot,
            true,
            "secure boot enforced",
            "secure boot is not enabled",
            "the agent could not read the secure boot state",
        ),
        "device.debug-disabled" => report.debug_disabled(),
        "device.expected-services" => report.expected_services(),
        "device.firmware-current" => report.firmware_current(),
        "device.sbom-reference" => report.sbom_reference(),
        _ => return None,
    })
}

/// One posture report, with what the checks on it share: the product it is judged against and
/// the evidence every result cites (the report itself; empty unless `explain`).
struct Report<'p> {
    posture: &'p Posture,
    product: &'p ProductFacts,
    explain: bool,
    evidence: Vec<Evidence>,
}

impl Report<'_> {
    /// A check of one reported flag: pass when it is `good`, unknown when not reported.
    fn flag(self, value: Option<bool>, good: bool, yes: &str, no: &str, missing: &str) -> Outcome {
        match value {
            None => outcome!(self.explain, Status::Unknown, missing, self.evidence),
            Some(v) if v == good => outcome!(self.explain, Status::Pass, yes, self.evidence),
            Some(_) => outcome!(self.explain, Status::Fail, no, self.evidence),
        }
    }

    /// `device.debug-disabled`.
    fn debug_disabled(self) -> Outcome {
        let debug_interfaces = &self.posture.debug_interfaces;
        if debug_interfaces.is_empty() {
            outcome!(
                self.explain,
                Status::Pass,
                "no debug interface enabled",
                self.evidence
            )
        } else {
            outcome!(
                self.explain,
                Status::Fail,
                format!("debug interfaces enabled: {}", debug_interfaces.join(", ")),
                self.evidence,
            )
        }
    }

    /// `device.expected-services`: only the services the product declares are listening.
    fn expected_services(self) -> Outcome {
        let Some(allowed) = &self.product.allowed_services else {
            return outcome!(
                self.explain,
                Status::Unknown,
                "the product declares no expected services",
                vec![Evidence::Product(self.product.id.clone())],
            );
        };
        let unexpected: Vec<String> = self
            .posture
            .listening_services
            .iter()
            .map(|s| format!("{}/{}", s.protocol, s.port))
            .filter(|s| !allowed.contains(s))
            .collect();
        if unexpected.is_empty() {
            outcome!(
                self.explain,
                Status::Pass,
                "only expected services listening",
                self.evidence
            )
        } else {
            outcome!(
                self.explain,
                Status::Fail,
                format!("unexpected services listening: {}", unexpected.join(", ")),
                self.evidence,
            )
        }
    }

    /// `device.firmware-current`: the running firmware is one the product lists as current.
    fn firmware_current(self) -> Outcome {
        let Some(current) = &self.product.current_firmware else {
            return outcome!(
                self.explain,
                Status::Unknown,
                "the product declares no current firmware",
                vec![Evidence::Product(self.product.id.clone())],
            );
        };
        match &self.posture.firmware_version {
            None => outcome!(
                self.explain,
                Status::Unknown,
                "the agent did not report a firmware version",
                self.evidence,
            ),
            Some(v) if current.contains(v) => outcome!(
                self.explain,
                Status::Pass,
                format!("firmware {v} is current"),
                self.evidence
            ),
            Some(v) => outcome!(
                self.explain,
                Status::Fail,
                format!(
                    "firmware {v} is not a current release ({})",
                    current.join(", ")
                ),
                self.evidence,
            ),
        }
    }

    /// `device.sbom-reference`: the report names an SBOM, or one is registered for the running
    /// firmware.
    fn sbom_reference(self) -> Outcome {
        let registered = self
            .posture
            .firmware_version
            .as_ref()
            .and_then(|v| self.product.sboms.get(v));
        match (&self.posture.sbom_ref, registered) {
            (Some(r), _) | (None, Some(r)) => {
                outcome!(
                    self.explain,
                    Status::Pass,
                    format!("SBOM {r}"),
                    self.evidence
                )
            }
            (None, None) => outcome!(
                self.explain,
                Status::Fail,
                "no SBOM for the running firmware",
                self.evidence
            ),
        }
    }
}
