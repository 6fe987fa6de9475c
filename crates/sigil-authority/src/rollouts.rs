//! Staged rollouts: a published release reaches a product's devices group by group. The
//! decisions are `sigil_update::rollout`'s (pure); this service feeds it the counts, the
//! clock and the security signal, and records each decision, with the threshold that
//! triggered it, in the audit log.
//!
//! A background tick (every couple of seconds) does, for each rollout under way: devices that
//! newly match the selector join; devices silent past the timeout are timed out; a running
//! rollout is judged (advance, wait for approval, complete, halt); then devices of the current
//! group are assigned, within the rate and the maintenance window. Operator actions and the
//! tick take one lock within a process (several processes on one database are the replicas
//! issue's: the store's transitions are conditional on the state read, so a race is a conflict).

use std::cmp::Ordering;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

use sigil_audit::Actor;
use sigil_compliance::Status;
use sigil_compliance::device::DEVICE_CHECKS;
use sigil_store::{DeviceAssignment, DeviceSelector, RolloutRecord, StatusCount, UpdateReport};
use sigil_update::rollout::{self, BasisPoints, Decision, Phase, Plan, Progress, Tally, Window};
use sigil_update::{ReleaseVersion, VersionScheme};

use crate::{Authority, Refusal, RefusalKind, RequestError};

/// Lifecycle states a rollout reaches unless told otherwise: devices holding an identity.
const DEFAULT_STATES: [&str; 2] = ["provisioned", "active"];
const MAX_LISTED_DEVICES: usize = 10_000;

/// A rollout as asked for.
#[derive(Debug, Clone)]
pub struct NewRollout {
    pub release_version: String,
    pub selector: DeviceSelector,
    pub plan: Plan,
    pub window: Option<String>,
    pub rate_per_minute: Option<u32>,
    pub timeout: Duration,
    /// Install an older release than the product's newest (needs MFA at the API).
    pub rollback: bool,
}

/// One group's progress.
#[derive(Debug, Clone, Default)]
pub struct GroupProgress {
    /// Cumulative share of the matching devices, e.g. `10%`.
    pub share_basis_points: BasisPoints,
    /// Devices the groups up to this one reach now.
    pub reach: u64,
    pub assigned: u64,
    pub in_flight: u64,
    pub installed: u64,
    pub failed: u64,
    pub rejected: u64,
    pub timed_out: u64,
}

/// A rollout with its progress.
#[derive(Debug, Clone)]
pub struct RolloutView {
    pub record: RolloutRecord,
    pub release_version: String,
    pub target_name: String,
    pub plan: Plan,
    pub devices: u64,
    pub groups: Vec<GroupProgress>,
}

/// What an operator does to a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RolloutAction {
    Pause,
    Resume,
    Approve,
    Stop,
    RetryFailed,
}

fn plan_of(record: &RolloutRecord) -> Result<Plan, RequestError> {
    serde_json::from_value(record.plan.clone()).map_err(|e| {
        RequestError::Store(sigil_store::StoreError::Corrupt(format!(
            "rollout {} plan: {e}",
            record.id
        )))
    })
}

fn invalid(code: &'static str, detail: impl Into<String>) -> RequestError {
    Refusal::new(RefusalKind::Invalid, code, detail.into()).into()
}

fn system() -> Actor {
    Actor::system("rollouts")
}

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

/// Sum the counts into the progress the decision reads, and per-group figures for display.
fn progress(counts: &[StatusCount], group: u32, groups: usize) -> (Progress, Vec<Tally>, u64) {
    let mut per_group = vec![Tally::default(); groups];
    let mut total = 0;
    for c in counts {
        total += c.count;
        let Some(g) = c.group_index.and_then(|g| per_group.get_mut(g as usize)) else {
            continue;
        };
        g.assigned += c.count;
        match c.status.as_str() {
            "installed" => g.installed += c.count,
            "failed" => g.failed += c.count,
            "rejected" => g.rejected += c.count,
            "timed-out" => g.timed_out += c.count,
            _ => {}
        }
    }
    let mut cumulative = Tally::default();
    for t in &per_group {
        cumulative.assigned += t.assigned;
        cumulative.installed += t.installed;
        cumulative.failed += t.failed;
        cumulative.rejected += t.rejected;
        cumulative.timed_out += t.timed_out;
    }
    let newest_group = per_group.get(group as usize).copied().unwrap_or_default();
    (
        Progress {
            cumulative,
            newest_group,
            unassigned_in_reach: 0,
        },
        per_group,
        total,
    )
}

fn validate_selector(selector: &mut DeviceSelector) -> Result<(), RequestError> {
    if selector.states.is_empty() {
        selector.states = DEFAULT_STATES.iter().map(|s| (*s).to_owned()).collect();
    }
    for state in &selector.states {
        if !["registered", "provisioned", "active", "suspended"].contains(&state.as_str()) {
            return Err(invalid(
                "invalid-selector",
                format!("state `{state}`: use registered, provisioned, active or suspended"),
            ));
        }
    }
    if selector.devices.len() > MAX_LISTED_DEVICES {
        return Err(invalid(
            "invalid-selector",
            format!("at most {MAX_LISTED_DEVICES} listed devices"),
        ));
    }
    for id in &selector.devices {
        id.parse::<sigil_domain::DeviceId>()?;
    }
    for text in [&selector.site, &selector.tag].into_iter().flatten() {
        if text.is_empty() || text.len() > 200 || text.chars().any(char::is_control) {
            return Err(invalid(
                "invalid-selector",
                "site and tag: 1 to 200 characters, no control characters",
            ));
        }
    }
    Ok(())
}

impl Authority {
    /// Start rolling `new.release_version` out to the product's devices that `new.selector`
    /// matches. A release older than the product's newest is a rollback and must say so.
    pub async fn create_rollout(
        &self,
        actor: &Actor,
        product: &str,
        mut new: NewRollout,
    ) -> Result<RolloutView, RequestError> {
        let _decisions = self.rollout_lock.lock().await;
        let product_id: sigil_domain::ProductId = product.parse()?;
        self.store.get_product(product_id).await?;
        new.plan
            .validate()
            .map_err(|e| invalid("invalid-plan", e.to_string()))?;
        if let Some(w) = &new.window {
            Window::parse(w).map_err(|e| invalid("invalid-window", e.to_string()))?;
        }
        if new.rate_per_minute == Some(0) {
            return Err(invalid(
                "invalid-rate",
                "the rate must be at least 1 per minute",
            ));
        }
        if !(60..=30 * 86_400).contains(&new.timeout.as_secs()) {
            return Err(invalid(
                "invalid-timeout",
                "the timeout must be from 1 minute to 30 days",
            ));
        }
        validate_selector(&mut new.selector)?;
        let release = self.rollout_release(product, &new).await?;
        let now = self.now();
        let id = uuid::Uuid::now_v7().to_string();
        let candidates = self
            .store
            .rollout_newcomers(&id, product, &new.selector)
            .await?;
        if candidates.is_empty() {
            return Err(invalid(
                "no-devices",
                "no device of the product matches the selector (devices that enrol later join a rollout under way, but it needs one to start)",
            ));
        }
        let members = with_order_keys(&id, candidates);
        let record = RolloutRecord {
            id: id.clone(),
            product_id: product.to_owned(),
            release_id: release.id,
            selector: new.selector,
            plan: serde_json::to_value(&new.plan)
                .map_err(|e| invalid("invalid-plan", e.to_string()))?,
            rollback: new.rollback,
            window: new.window,
            rate_per_minute: new.rate_per_minute,
            timeout_seconds: new.timeout.as_secs(),
            state: "running".into(),
            current_group: 0,
            reason: format!("created by {}", actor.id),
            created_by: actor.id.clone(),
            created_at: now,
            updated_at: now,
        };
        self.store
            .create_rollout(actor, &record, &members, now)
            .await?;
        if let Err(e) = self.tick_rollout(&record).await {
            tracing::warn!(rollout = %id, error = %e, "first rollout tick failed; the next retries");
        }
        self.rollout_view(&id).await
    }

    /// The published release a new rollout ships, refused if it is older than the product's
    /// newest published release and the rollout is not declared a rollback (or the reverse).
    async fn rollout_release(
        &self,
        product: &str,
        new: &NewRollout,
    ) -> Result<sigil_store::ReleaseRecord, RequestError> {
        let channel = self.store.update_channel(product).await?.ok_or_else(|| {
            Refusal::new(
                RefusalKind::NotFound,
                "no-update-channel",
                format!("product {product} has no update channel"),
            )
        })?;
        let scheme = VersionScheme::parse(&channel.version_scheme)
            .map_err(|e| invalid("invalid-version", e.to_string()))?;
        let releases = self.store.releases(product).await?;
        let release = releases
            .iter()
            .find(|r| r.version == new.release_version)
            .cloned()
            .ok_or_else(|| {
                Refusal::new(
                    RefusalKind::NotFound,
                    "unknown-release",
                    format!("product {product} has no release {}", new.release_version),
                )
            })?;
        if release.state != "published" {
            return Err(Refusal::new(
                RefusalKind::Conflict,
                "release-unpublished",
                format!(
                    "release {} awaits its targets signatures: it cannot be rolled out yet",
                    release.version
                ),
            )
            .into());
        }
        let parse = |v: &str| ReleaseVersion::parse(scheme, v).ok();
        let ours = parse(&release.version);
        let newer = releases
            .iter()
            .filter(|r| r.state == "published")
            .filter_map(|r| Some((r, parse(&r.version)?)))
            .find(|(_, v)| {
                ours.as_ref()
                    .is_some_and(|o| v.precedence(o) == Ordering::Greater)
            });
        match (newer, new.rollback) {
            (Some((newest, _)), false) => Err(Refusal::new(
                RefusalKind::Conflict,
                "downgrade",
                format!(
                    "release {} is older than {}: rolling it out is a rollback (declare it one; it needs a second factor)",
                    release.version, newest.version
                ),
            )
            .into()),
            (None, true) => Err(invalid(
                "not-a-rollback",
                format!("release {} is the newest: this is not a rollback", release.version),
            )),
            _ => Ok(release),
        }
    }

    /// A rollout with its per-group progress.
    pub async fn rollout_view(&self, id: &str) -> Result<RolloutView, RequestError> {
        uuid::Uuid::parse_str(id).map_err(|_| invalid("invalid-id", "rollout ids are UUIDs"))?;
        let record = self.store.rollout(id).await?;
        let release = self.store.release(&record.release_id).await?;
        let plan = plan_of(&record)?;
        let counts = self.store.rollout_counts(id).await?;
        let (_, per_group, total) = progress(&counts, record.current_group, plan.groups.len());
        let groups = per_group
            .iter()
            .enumerate()
            .map(|(g, t)| GroupProgress {
                share_basis_points: plan.groups[g],
                reach: plan.reach(g, total),
                assigned: t.assigned,
                // Assigned and not ended: under way.
                in_flight: t
                    .assigned
                    .saturating_sub(t.installed + t.failed + t.rejected + t.timed_out),
                installed: t.installed,
                failed: t.failed,
                rejected: t.rejected,
                timed_out: t.timed_out,
            })
            .collect();
        Ok(RolloutView {
            release_version: release.version,
            target_name: release.target_name,
            plan,
            devices: total,
            groups,
            record,
        })
    }

    /// A product's rollouts, newest first.
    pub async fn product_rollouts(&self, product: &str) -> Result<Vec<RolloutView>, RequestError> {
        let product_id: sigil_domain::ProductId = product.parse()?;
        self.store.get_product(product_id).await?;
        let mut views = Vec::new();
        for r in self.store.rollouts(Some(product)).await? {
            views.push(self.rollout_view(&r.id).await?);
        }
        Ok(views)
    }

    /// An operator's action on a rollout; `note` is kept in the reason.
    pub async fn act_on_rollout(
        &self,
        actor: &Actor,
        id: &str,
        action: RolloutAction,
        note: Option<&str>,
    ) -> Result<RolloutView, RequestError> {
        uuid::Uuid::parse_str(id).map_err(|_| invalid("invalid-id", "rollout ids are UUIDs"))?;
        let _decisions = self.rollout_lock.lock().await;
        // Read under the lock: the tick cannot move the rollout between this read and the
        // transition.
        let current = self.store.rollout(id).await?;
        if let Some(n) = note
            && (n.len() > 500 || n.chars().any(char::is_control))
        {
            return Err(invalid(
                "invalid-reason",
                "reason: at most 500 characters, no control characters",
            ));
        }
        let by = |verb: &str| match note {
            Some(n) => format!("{verb} by {}: {n}", actor.id),
            None => format!("{verb} by {}", actor.id),
        };
        let now = self.now();
        let group = current.current_group;
        let (from, to, group, reason, audit_action): (&[&str], &str, u32, String, &str) =
            match action {
                RolloutAction::Pause => (
                    &["running", "awaiting-approval"],
                    "paused",
                    group,
                    by("paused"),
                    "rollout.paused",
                ),
                RolloutAction::Resume => (
                    &["paused", "halted"],
                    "running",
                    group,
                    by("resumed"),
                    "rollout.resumed",
                ),
                RolloutAction::Approve => {
                    let plan = plan_of(&current)?;
                    let next = (group + 1).min(plan.groups.len() as u32 - 1);
                    (
                        &["awaiting-approval"],
                        "running",
                        next,
                        by(&format!("group {} approved", next + 1)),
                        "rollout.approved",
                    )
                }
                RolloutAction::Stop => (
                    &sigil_store::ACTIVE_ROLLOUT_STATES,
                    "stopped",
                    group,
                    by("stopped"),
                    "rollout.stopped",
                ),
                RolloutAction::RetryFailed => {
                    if !sigil_store::ACTIVE_ROLLOUT_STATES.contains(&current.state.as_str()) {
                        return Err(Refusal::new(
                            RefusalKind::Conflict,
                            "rollout-finished",
                            format!("rollout {id} is {}: nothing to retry", current.state),
                        )
                        .into());
                    }
                    self.store.retry_rollout_failures(actor, id, now).await?;
                    drop(_decisions);
                    return self.rollout_view(id).await;
                }
            };
        let record = self
            .store
            .transition_rollout(actor, id, from, to, group, &reason, audit_action, now)
            .await?;
        if action == RolloutAction::Resume {
            // Devices told nothing while it stood still get their full time again, and what
            // installed devices fail now is what the operator resumed with.
            self.store.restart_waiting(id, now).await?;
            let mut baselines = Vec::new();
            for (device, _) in self.store.installed_members(id).await? {
                baselines.push((device.clone(), self.baseline(&device).await));
            }
            self.store.rebaseline(id, &baselines).await?;
        }
        if record.state == "running" {
            // The change is made; a failed first pass is retried by the next tick.
            if let Err(e) = self.tick_rollout(&record).await {
                tracing::warn!(rollout = %id, error = %e, "rollout tick after an action failed");
            }
        }
        drop(_decisions);
        self.rollout_view(id).await
    }

    /// What `device` should install now, if anything.
    pub async fn device_assignment(
        &self,
        device: sigil_domain::DeviceId,
    ) -> Result<Option<DeviceAssignment>, RequestError> {
        Ok(self.store.device_assignment(&device.to_string()).await?)
    }

    /// A device's report on its update.
    pub async fn report_update(
        &self,
        device: sigil_domain::DeviceId,
        report: UpdateReport,
    ) -> Result<(), RequestError> {
        if ![
            "downloading",
            "installing",
            "installed",
            "failed",
            "rejected",
        ]
        .contains(&report.status.as_str())
        {
            return Err(invalid(
                "invalid-report",
                "status: downloading, installing, installed, failed or rejected",
            ));
        }
        let bad_text = |t: &Option<String>, max: usize| {
            t.as_ref()
                .is_some_and(|t| t.len() > max || t.chars().any(char::is_control))
        };
        if bad_text(&report.reason, 500) || bad_text(&report.version, 64) {
            return Err(invalid(
                "invalid-report",
                "reason (500) and version (64): bounded, no control characters",
            ));
        }
        if report.status == "installed" && report.version.is_none() {
            return Err(invalid(
                "invalid-report",
                "an installed report names the version",
            ));
        }
        uuid::Uuid::parse_str(&report.rollout_id)
            .map_err(|_| invalid("invalid-report", "rollout ids are UUIDs"))?;
        Ok(self
            .store
            .record_update_report(&device.to_string(), &report, self.now())
            .await?)
    }

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
    async fn tick_rollout(&self, record: &RolloutRecord) -> Result<(), RequestError> {
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
            && let Some(device) = self.security_signal(id).await?
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
        let signal = self.security_signal(id).await?;
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
    async fn baseline(&self, device: &str) -> i64 {
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
    /// it was assigned, named with the check.
    async fn security_signal(&self, rollout: &str) -> Result<Option<String>, RequestError> {
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

fn with_order_keys(rollout: &str, devices: Vec<String>) -> Vec<(String, String)> {
    devices
        .into_iter()
        .map(|d| {
            let key = hex::encode(rollout::order_key(rollout, &d));
            (d, key)
        })
        .collect()
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
