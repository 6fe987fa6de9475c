//! Behaviour monitoring, pure: what a device's metrics are ([`Metric`], [`Datapoint`]), the
//! security profiles that say what is normal ([`ProfileSet`], reviewed and versioned like access
//! policies), and the [`Detector`] that turns datapoints into alarms which say which behaviour,
//! which values and which baseline raised them.
//!
//! No clock and no I/O: every datapoint carries its time and [`Detector::tick`] is told the
//! time, so the same datapoints always give the same alarms (the tests replay fleets).

mod detector;
mod metric;
mod profile;
mod stats;

pub use detector::{AlarmEvent, Detector, DetectorStats, Explanation, Transition};
pub use metric::{Datapoint, MAX_SET, Metric, MetricKind, MetricsReport, Value};
pub use profile::{
    Aggregate, Behaviour, Criterion, DEFAULT_PROFILES, Mitigation, Profile, ProfileSet, Severity,
};
pub use stats::{Robust, median_mad, percentile};

/// What can be wrong with a profile document or a metrics report.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DetectError {
    #[error("profile document: {0}")]
    Profile(String),
    #[error("metrics report: {0}")]
    Report(String),
}
