//! The organisation checks of behaviour monitoring: the detector runs, and no critical alarm
//! waits without an operator's decision.

use super::{Evidence, OrganisationFacts, Outcome, Status, Time, outcome};

/// The detector must have closed windows this recently (seconds): it does so twice a second
/// while it runs.
pub const DETECTION_MAX_LAG: Time = 120;

/// The detector as the server sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DetectionFacts {
    pub running: bool,
    /// When it last closed windows.
    pub last_tick: Option<Time>,
    /// `in-process` or `jetstream`.
    pub transport: String,
    pub profiles_version: i64,
    /// Behaviours in the security profiles in force that act on what they find (suppressed
    /// ones only record).
    pub behaviours: usize,
}

/// A critical alarm still active that no operator has decided on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UndecidedAlarm {
    pub id: String,
    pub device: String,
    pub behaviour: String,
    pub raised_at: Time,
}

/// `org.detection-running`.
pub(super) fn detection_running(f: &OrganisationFacts, now: Time) -> Outcome {
    let d = &f.detection;
    if !d.running {
        return outcome(
            Status::Fail,
            "the behaviour detector is not running",
            vec![],
        );
    }
    if d.behaviours == 0 {
        return outcome(
            Status::Fail,
            format!(
                "the security profiles in force (version {}) define no behaviour that acts",
                d.profiles_version
            ),
            vec![],
        );
    }
    match d.last_tick {
        Some(t) if now - t <= DETECTION_MAX_LAG => outcome(
            Status::Pass,
            format!(
                "the detector runs ({} transport, security profiles version {}: {} behaviours) and closed windows {} s ago",
                d.transport,
                d.profiles_version,
                d.behaviours,
                (now - t).max(0)
            ),
            vec![],
        ),
        Some(t) => outcome(
            Status::Fail,
            format!("the detector last closed windows {} s ago", now - t),
            vec![],
        ),
        None => outcome(
            Status::Fail,
            "the detector has not closed a window since it started",
            vec![],
        ),
    }
}

/// `org.alarms-decided`: every critical alarm still active has an operator's decision
/// (acknowledged or false positive).
pub(super) fn alarms_decided(f: &OrganisationFacts, now: Time) -> Outcome {
    match f.undecided_critical_alarms.as_slice() {
        [] => outcome(
            Status::Pass,
            "no critical alarm is open without a decision",
            vec![],
        ),
        open @ [first, rest @ ..] => {
            let oldest = rest
                .iter()
                .fold(first, |o, a| if a.raised_at < o.raised_at { a } else { o });
            outcome(
                Status::Fail,
                format!(
                    "{} critical alarm(s) open without a decision; the oldest: {} on device {}, raised {} min ago",
                    f.undecided_critical_count,
                    oldest.behaviour,
                    oldest.device,
                    (now - oldest.raised_at).max(0) / 60
                ),
                open.iter()
                    .take(20)
                    .map(|a| Evidence::Alarm(a.id.clone()))
                    .collect(),
            )
        }
    }
}
