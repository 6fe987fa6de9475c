//! The rollout state machine: which devices a staged rollout reaches, and what it does next.
//! Pure: the authority feeds it the plan, the group's counts and the time, and records the
//! decision (with the threshold that triggered it) in the audit log.
//!
//! A rollout has cumulative groups (e.g. 1%, 10%, 50%, 100% of the matching devices, in a
//! stable pseudo-random order). The current group advances when its success condition holds
//! (installed / assigned >= the success threshold), or waits for an operator's approval where
//! asked. It halts by itself when any one kind of failure (failure, rejection, timeout: each
//! counted separately, each only once it has a minimum sample) reaches the error threshold, or
//! on a security signal (a device that installed the release fell out of compliance, or raised
//! a high or critical alarm).

use std::fmt;

use crate::UpdateError;

/// A share in basis points (1/100 of a percent): 9500 is 95%.
pub type BasisPoints = u32;

/// Parse `95%`, `0.5%` or `95` into basis points (0 to 10000).
pub fn parse_percent(text: &str) -> Result<BasisPoints, UpdateError> {
    let invalid =
        |reason: &str| UpdateError::Rollout(format!("`{text}` is not a percentage: {reason}"));
    let number = text.trim().trim_end_matches('%');
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty()
        || whole.len() > 3
        || fraction.len() > 2
        || !whole
            .bytes()
            .chain(fraction.bytes())
            .all(|b| b.is_ascii_digit())
    {
        return Err(invalid(
            "use a number from 0 to 100 with at most two decimals",
        ));
    }
    let whole: u32 = whole.parse().map_err(|_| invalid("not a number"))?;
    let fraction: u32 = format!("{fraction:0<2}")
        .parse()
        .map_err(|_| invalid("not a number"))?;
    let bp = whole * 100 + fraction;
    if bp > 10_000 {
        return Err(invalid("more than 100%"));
    }
    Ok(bp)
}

/// How a rollout proceeds (stored with the rollout as JSON).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Plan {
    /// Cumulative shares of the matching devices, strictly increasing, the last 100%.
    pub groups: Vec<BasisPoints>,
    pub success_threshold: BasisPoints,
    pub error_threshold: BasisPoints,
    /// Reports of one failure kind needed before its share is judged.
    pub min_sample: u32,
    /// Wait for an operator between groups.
    pub approval: bool,
}

impl Plan {
    pub fn validate(&self) -> Result<(), UpdateError> {
        let bad = |m: String| Err(UpdateError::Rollout(m));
        if self.groups.is_empty() || self.groups.len() > 20 {
            return bad("a rollout has 1 to 20 groups".into());
        }
        if self.groups.windows(2).any(|w| w[0] >= w[1]) || self.groups[0] == 0 {
            return bad("groups must grow strictly, from above 0%".into());
        }
        if self.groups.last() != Some(&10_000) {
            return bad("the last group must be 100%".into());
        }
        if self.success_threshold == 0 || self.success_threshold > 10_000 {
            return bad("the success threshold must be above 0% and at most 100%".into());
        }
        if self.error_threshold == 0 || self.error_threshold > 10_000 {
            return bad("the error threshold must be above 0% and at most 100%".into());
        }
        if self.min_sample == 0 {
            return bad("the minimum sample must be at least 1".into());
        }
        Ok(())
    }

    /// How many of `total` devices groups `0..=group` reach together (at least one per group
    /// while devices remain).
    pub fn reach(&self, group: usize, total: u64) -> u64 {
        let Some(share) = self.groups.get(group) else {
            return total;
        };
        let by_share = (u128::from(total) * u128::from(*share)).div_ceil(10_000);
        let at_least = (group as u64 + 1).min(total);
        u64::try_from(by_share)
            .unwrap_or(total)
            .max(at_least)
            .min(total)
    }
}

/// Why a device's update did not succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FailureKind {
    /// Downloading or installing failed (or the new slot was unhealthy and rolled back).
    Failure,
    /// The device refused the update: its verification failed, or the version is a downgrade.
    Rejection,
    /// The device did not report an outcome within the rollout's timeout.
    Timeout,
}

impl FailureKind {
    pub const ALL: [FailureKind; 3] = [
        FailureKind::Failure,
        FailureKind::Rejection,
        FailureKind::Timeout,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Failure => "failure",
            Self::Rejection => "rejection",
            Self::Timeout => "timeout",
        }
    }
}

/// What the devices of the groups reached so far have reported.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Devices assigned the release so far.
    pub assigned: u64,
    pub installed: u64,
    pub failed: u64,
    pub rejected: u64,
    pub timed_out: u64,
}

impl Tally {
    fn of(&self, kind: FailureKind) -> u64 {
        match kind {
            FailureKind::Failure => self.failed,
            FailureKind::Rejection => self.rejected,
            FailureKind::Timeout => self.timed_out,
        }
    }
}

/// Where a rollout is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Devices of groups `0..=group` are assigned.
    Running {
        group: usize,
    },
    /// Group `group` succeeded; the next waits for an operator.
    AwaitingApproval {
        group: usize,
    },
    /// Paused by an operator, or halted by itself (the reason says which threshold).
    Paused {
        group: usize,
        reason: String,
    },
    Stopped,
    Completed,
}

/// What to do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Nothing yet: reports are still coming.
    Wait,
    /// The group succeeded: assign the next one.
    Advance { to: usize, reason: String },
    /// The group succeeded: ask an operator before the next one.
    AwaitApproval { reason: String },
    /// The last group succeeded.
    Complete { reason: String },
    /// Stop assigning; the reason names the threshold or signal.
    Halt { reason: String },
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::Wait => f.write_str("wait"),
            Decision::Advance { to, reason } => write!(f, "advance to group {}: {reason}", to + 1),
            Decision::AwaitApproval { reason } => write!(f, "await approval: {reason}"),
            Decision::Complete { reason } => write!(f, "complete: {reason}"),
            Decision::Halt { reason } => write!(f, "halt: {reason}"),
        }
    }
}

/// `9500` as `95%`, `50` as `0.50%`.
pub fn format_percent(bp: BasisPoints) -> String {
    if bp.is_multiple_of(100) {
        format!("{}%", bp / 100)
    } else {
        format!("{}.{:02}%", bp / 100, bp % 100)
    }
}

/// What the devices reached so far, and those of the newest group alone, have reported.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    pub cumulative: Tally,
    pub newest_group: Tally,
    /// Devices within the current group's reach not assigned yet (held back by the rate or
    /// the window): the group cannot succeed before they are.
    pub unassigned_in_reach: u64,
}

/// The first failure kind whose share of `tally` reaches the error threshold past the minimum
/// sample, as a reason naming the threshold.
fn over_error_threshold(plan: &Plan, tally: &Tally, scope: &str) -> Option<String> {
    if tally.assigned == 0 {
        return None;
    }
    FailureKind::ALL.into_iter().find_map(|kind| {
        let count = tally.of(kind);
        let share = u128::from(count) * 10_000 / u128::from(tally.assigned);
        (count >= u64::from(plan.min_sample) && share >= u128::from(plan.error_threshold)).then(|| {
            format!(
                "{} threshold: {count} of {} devices {scope} ({}) reached the error threshold {} (minimum sample {})",
                kind.as_str(),
                tally.assigned,
                format_percent(u32::try_from(share).unwrap_or(10_000)),
                format_percent(plan.error_threshold),
                plan.min_sample
            )
        })
    })
}

/// Why `tally` (with `unassigned` devices still to come) cannot reach the success threshold
/// any more, if it cannot.
fn unreachable(plan: &Plan, tally: &Tally, unassigned: u64, scope: &str) -> Option<String> {
    let total = tally.assigned + unassigned;
    let ended = tally.failed + tally.rejected + tally.timed_out;
    if total == 0 || ended == 0 {
        return None;
    }
    let best = u128::from(total - ended.min(total)) * 10_000 / u128::from(total);
    (best < u128::from(plan.success_threshold)).then(|| {
        format!(
            "success threshold unreachable: {ended} of {total} devices of {scope} ended without installing (failed {}, rejected {}, timed out {}); at most {} can install, below {}",
            tally.failed,
            tally.rejected,
            tally.timed_out,
            format_percent(u32::try_from(best).unwrap_or(0)),
            format_percent(plan.success_threshold)
        )
    })
}

fn success_share(tally: &Tally) -> Option<u128> {
    (tally.assigned > 0).then(|| u128::from(tally.installed) * 10_000 / u128::from(tally.assigned))
}

/// Halt on a security signal: `device` (and what it now fails) installed the release and is
/// no longer compliant. Holds in every phase that may still assign devices.
pub fn security_halt(device: &str) -> Decision {
    Decision::Halt {
        reason: format!("security signal: device {device} after installing the release"),
    }
}

/// Decide a running rollout's next step. The error threshold is judged over everything
/// assigned so far and over the newest group alone (a group that fails entirely halts the
/// rollout even when earlier groups dilute it); the success threshold must hold for both.
/// `security_signal` names a device that installed the release and then fell out of
/// compliance (or raised an alarm), if any.
pub fn decide(
    plan: &Plan,
    phase: &Phase,
    progress: &Progress,
    security_signal: Option<&str>,
) -> Decision {
    let Phase::Running { group } = *phase else {
        return Decision::Wait;
    };
    if let Some(device) = security_signal {
        return security_halt(device);
    }
    let errors = over_error_threshold(
        plan,
        &progress.newest_group,
        &format!("of group {}", group + 1),
    )
    .or_else(|| over_error_threshold(plan, &progress.cumulative, "so far"));
    if let Some(reason) = errors {
        return Decision::Halt { reason };
    }
    // A group that can no longer reach the success threshold (too many devices ended without
    // installing, each kind below its minimum sample) would wait for ever: it halts instead.
    if let Some(reason) = unreachable(
        plan,
        &progress.newest_group,
        progress.unassigned_in_reach,
        &format!("group {}", group + 1),
    )
    .or_else(|| {
        unreachable(
            plan,
            &progress.cumulative,
            progress.unassigned_in_reach,
            "all groups so far",
        )
    }) {
        return Decision::Halt { reason };
    }
    if progress.unassigned_in_reach > 0 {
        return Decision::Wait;
    }
    // A group that adds no device (a fleet smaller than the plan's steps) is judged on
    // everything so far.
    let Some(all) = success_share(&progress.cumulative) else {
        return Decision::Wait;
    };
    let newest = success_share(&progress.newest_group).unwrap_or(all);
    let threshold = u128::from(plan.success_threshold);
    if all < threshold || newest < threshold {
        return Decision::Wait;
    }
    let reason = format!(
        "success threshold: {} of {} devices installed, {} of the {} in group {} ({} >= {})",
        progress.cumulative.installed,
        progress.cumulative.assigned,
        progress.newest_group.installed,
        progress.newest_group.assigned,
        group + 1,
        format_percent(u32::try_from(all.min(newest)).unwrap_or(10_000)),
        format_percent(plan.success_threshold)
    );
    if group + 1 >= plan.groups.len() {
        Decision::Complete { reason }
    } else if plan.approval {
        Decision::AwaitApproval { reason }
    } else {
        Decision::Advance {
            to: group + 1,
            reason,
        }
    }
}

/// A device's place in a rollout's order: a stable hash of the rollout and device ids, so
/// each rollout reaches a different, unbiased first 1%.
pub fn order_key(rollout: &str, device: &str) -> [u8; 32] {
    let mut input = Vec::with_capacity(rollout.len() + device.len() + 1);
    input.extend_from_slice(rollout.as_bytes());
    input.push(0);
    input.extend_from_slice(device.as_bytes());
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &input);
    let mut key = [0u8; 32];
    key.copy_from_slice(digest.as_ref());
    key
}

/// A daily maintenance window in UTC: `HH:MM-HH:MM` (it may wrap past midnight).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start_minute: u32,
    pub end_minute: u32,
}

impl Window {
    pub fn parse(text: &str) -> Result<Self, UpdateError> {
        let invalid =
            || UpdateError::Rollout(format!("window `{text}`: expected HH:MM-HH:MM (UTC)"));
        let (a, b) = text.split_once('-').ok_or_else(invalid)?;
        let minute = |t: &str| -> Option<u32> {
            let (h, m) = t.trim().split_once(':')?;
            let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
            (h < 24 && m < 60 && t.trim().len() == 5).then_some(h * 60 + m)
        };
        let (start_minute, end_minute) = (
            minute(a).ok_or_else(invalid)?,
            minute(b).ok_or_else(invalid)?,
        );
        if start_minute == end_minute {
            return Err(invalid());
        }
        Ok(Self {
            start_minute,
            end_minute,
        })
    }

    /// Whether the minute of the day `minute` (0..1440) is inside the window.
    pub fn contains(&self, minute: u32) -> bool {
        if self.start_minute < self.end_minute {
            (self.start_minute..self.end_minute).contains(&minute)
        } else {
            minute >= self.start_minute || minute < self.end_minute
        }
    }
}

#[cfg(test)]
#[path = "rollout_tests.rs"]
mod tests;
