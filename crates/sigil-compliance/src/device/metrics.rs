//! `device.metrics-fresh`: the device's behaviour metrics reach the detector. A device whose
//! agent stopped reporting is a device no one watches: its port scans and new listeners go
//! unseen, however good its last report was.

use super::{DeviceFacts, Evidence, METRICS_MAX_AGE, Outcome, Time};
use crate::Status;

pub(super) fn metrics_fresh(device: &DeviceFacts<'_>, now: Time, explain: bool) -> Outcome {
    let evidence = || {
        if explain {
            vec![Evidence::Device(device.id.to_string())]
        } else {
            Vec::new()
        }
    };
    match device.metrics_reported_at {
        None => outcome!(
            explain,
            Status::Fail,
            "the device has never reported behaviour metrics",
            evidence(),
        ),
        Some(at) if now - at > METRICS_MAX_AGE => outcome!(
            explain,
            Status::Fail,
            format!(
                "last behaviour metrics are {} min old (at most {} min)",
                (now - at) / 60,
                METRICS_MAX_AGE / 60
            ),
            evidence(),
        ),
        Some(at) => outcome!(
            explain,
            Status::Pass,
            format!(
                "behaviour metrics reached the detector {} s ago",
                (now - at).max(0)
            ),
            evidence(),
        ),
    }
}
