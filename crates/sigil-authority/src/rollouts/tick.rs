//! The rollout tick: for each rollout under way, devices that newly match join, silent ones
//! time out, a running rollout is judged, and devices of the current group are assigned
//! within the rate and the maintenance window.

use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

use sigil_compliance::Status;
use sigil_compliance::device::DEVICE_CHECKS;
use sigil_store::RolloutRecord;
use sigil_update::rollout::{self, Decision, Phase, Plan, Window};

use super::{invalid, plan_of, progress, system, with_order_keys};
use crate::{Authority, RequestError};

/// The bit set of device checks whose status is one of `which`, by position in
/// `DEVICE_CHECKS` (append new checks at its end: stored baselines keep their meaning).
fn mask(statuses: &[Status], which: &[Status]) -> i64 {
    statuses
        .iter()
        .enumerate()
        .filter(|(_, s)| which.contains(s))
        .fold(0, |mask, (i, _)| mask | (1 << i))
}

/// Checks that did not pass when the device was assigned: failing, or undecided (no data
/// yet). Only a check that passed then and fails after the install is a security signal;
/// learning a status for the first time is not a regression.
fn not_passing(statuses: &[Status]) -> i64 {
    mask(statuses, &[Status::Fail, Status::Unknown])
}

fn failing(statuses: &[Status]) -> i64 {
    mask(statuses, &[Status::Fail])
}

impl Authority {
    /// One pass over every rollout under way.
    pub async fn tick_rollouts(&self) -> Result<(), RequestError> {
        let _decisions = self.rollout_lock.lock().await;
        for record in self.store.rollouts(None).await? {
            if let Err(e) = self.tick_rollout(&record).await {
                tracing::error!(rollout = %record.id, error = %e, "rollout tick failed");
            }
        }
        Ok(())
    }

    /// Join, time out, judge and assign, for one rollout (the caller holds the lock).
    pub(super) async fn tick_rollout(&self, record: &RolloutRecord) -> Result<(), RequestError> {
        let now = self.now();
        let id = &record.id;
        if record.state == "running" || record.state == "awaiting-approval" {
            let newcomers = self
                .store
                .rollout_newcomers(id, &record.product_id, &record.selector)
                .await?;
            if !newcomers.is_empty() {
                self.store
                    .join_rollout(id, &with_order_keys(id, newcomers), now)
                    .await?;
            }
        }
        // No timeouts while it stands still: its devices are not told to start.
        if record.state == "running" || record.state == "awaiting-approval" {
            let timeout = time::Duration::seconds(
                i64::try_from(record.timeout_seconds).unwrap_or(i64::MAX / 2),
            );
            self.store
                .time_out_rollout_devices(id, now - timeout, now)
                .await?;
        }
        if record.state == "awaiting-approval"
            && let Some(device) = self.security_signal(record).await?
        {
            let halt = rollout::security_halt(&device);
            self.apply_from(record, "awaiting-approval", &halt, now)
                .await?;
            return Ok(());
        }
        if record.state != "running" {
            return Ok(());
        }
        let plan = plan_of(record)?;
        let counts = self.store.rollout_counts(id).await?;
        let (mut progress, _, total) = progress(&counts, record.current_group, plan.groups.len());
        let room = plan
            .reach(record.current_group as usize, total)
            .saturating_sub(progress.cumulative.assigned);
        let eligible = self
            .store
            .pending_members(id, &record.selector.states, room)
            .await?;
        progress.unassigned_in_reach = eligible.len() as u64;
        let signal = self.security_signal(record).await?;
        let decision = rollout::decide(
            &plan,
            &Phase::Running {
                group: record.current_group as usize,
            },
            &progress,
            signal.as_deref(),
        );
        let Some(group) = self.apply_from(record, "running", &decision, now).await? else {
            return Ok(());
        };
        // Still the same group: the members just read are the ones to assign.
        let eligible = (group == record.current_group).then_some(eligible);
        self.assign(
            record,
            &plan,
            group,
            progress.cumulative.assigned,
            total,
            now,
            eligible,
        )
        .await
    }

    /// Record a decision taken in state `from`; the group to assign from afterwards (`None`:
    /// assign nothing).
    async fn apply_from(
        &self,
        record: &RolloutRecord,
        from: &str,
        decision: &Decision,
        now: OffsetDateTime,
    ) -> Result<Option<u32>, RequestError> {
        let group = record.current_group;
        let (to, next, reason, action) = match decision {
            Decision::Wait => return Ok(Some(group)),
            Decision::Advance { to, reason } => ("running", *to as u32, reason, "rollout.advanced"),
            Decision::AwaitApproval { reason } => (
                "awaiting-approval",
                group,
                reason,
                "rollout.awaiting_approval",
            ),
            Decision::Complete { reason } => ("completed", group, reason, "rollout.completed"),
            Decision::Halt { reason } => ("halted", group, reason, "rollout.halted"),
        };
        self.store
            .transition_rollout(
                &system(),
                &record.id,
                &[from],
                to,
                next,
                reason,
                action,
                now,
            )
            .await?;
        Ok((to == "running").then_some(next))
    }

    /// Assign devices up to the group's reach, within the rate and the window; `eligible`:
    /// the group's pending members in order, if already read.
    #[allow(clippy::too_many_arguments)]
    async fn assign(
        &self,
        record: &RolloutRecord,
        plan: &Plan,
        group: u32,
        assigned: u64,
        total: u64,
        now: OffsetDateTime,
        eligible: Option<Vec<String>>,
    ) -> Result<(), RequestError> {
        if let Some(w) = &record.window {
            let window = Window::parse(w).map_err(|e| invalid("invalid-window", e.to_string()))?;
            let minute = u32::from(now.hour()) * 60 + u32::from(now.minute());
            if !window.contains(minute) {
                return Ok(());
            }
        }
        let mut wanted = plan.reach(group as usize, total).saturating_sub(assigned);
        if let Some(rate) = record.rate_per_minute {
            let recent = self
                .store
                .assigned_since(&record.id, now - time::Duration::MINUTE)
                .await?;
            wanted = wanted.min(u64::from(rate).saturating_sub(recent));
        }
        if wanted == 0 {
            return Ok(());
        }
        let devices = match eligible {
            Some(mut read) => {
                read.truncate(usize::try_from(wanted).unwrap_or(usize::MAX));
                read
            }
            None => {
                self.store
                    .pending_members(&record.id, &record.selector.states, wanted)
                    .await?
            }
        };
        let mut with_baseline = Vec::with_capacity(devices.len());
        for d in devices {
            let baseline = self.baseline(&d).await;
            with_baseline.push((d, baseline));
        }
        Ok(self
            .store
            .assign_rollout_devices(&record.id, group, &with_baseline, now)
            .await?)
    }

    /// The checks `device` does not pass now. Unknown to the engine (not evaluated yet, or
    /// the follower is off): every bit set, so no check counts as passed before.
    pub(super) async fn baseline(&self, device: &str) -> i64 {
        match device.parse() {
            Ok(id) => self
                .compliance
                .statuses(id)
                .await
                .map_or(!0, |s| not_passing(&s)),
            Err(_) => !0,
        }
    }

    /// A device that installed the release and now fails a compliance check it passed when
    /// it was assigned, named with the check; or one with a high or critical alarm raised
    /// since the rollout began (not judged a false positive), named with the behaviour.
    async fn security_signal(
        &self,
        record: &RolloutRecord,
    ) -> Result<Option<String>, RequestError> {
        let rollout = record.id.as_str();
        let since_ms = (record.created_at.unix_timestamp_nanos() / 1_000_000) as i64;
        if let Some((device, behaviour, severity)) =
            self.store.rollout_alarm(rollout, since_ms).await?
        {
            return Ok(Some(format!(
                "{device} (raised the {severity} alarm {behaviour})"
            )));
        }
        for (device, baseline) in self.store.installed_members(rollout).await? {
            let Ok(id) = device.parse() else { continue };
            let Some(statuses) = self.compliance.statuses(id).await else {
                continue;
            };
            let newly = failing(&statuses) & !baseline;
            if newly != 0 {
                let checks: Vec<&str> = DEVICE_CHECKS
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| newly & (1 << i) != 0)
                    .map(|(_, c)| *c)
                    .collect();
                return Ok(Some(format!(
                    "{device} (now failing {})",
                    checks.join(", ")
                )));
            }
        }
        Ok(None)
    }
}

/// Run [`Authority::tick_rollouts`] every `every` until the process ends.
pub fn spawn_rollouts(authority: Arc<Authority>, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = authority.tick_rollouts().await {
                tracing::error!(error = %e, "rollout tick failed");
            }
        }
    })
}
