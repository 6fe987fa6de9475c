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
use std::time::Duration;

use sigil_audit::Actor;
use sigil_store::{DeviceAssignment, DeviceSelector, RolloutRecord, StatusCount, UpdateReport};
use sigil_update::rollout::{self, BasisPoints, Plan, Progress, Tally, Window};
use sigil_update::{ReleaseVersion, VersionScheme};

use crate::{Authority, Refusal, RefusalKind, RequestError};

/// Lifecycle states a rollout reaches unless told otherwise: devices holding an identity.
mod tick;
pub use tick::spawn_rollouts;

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

pub(super) fn invalid(code: &'static str, detail: impl Into<String>) -> RequestError {
    Refusal::new(RefusalKind::Invalid, code, detail.into()).into()
}

fn system() -> Actor {
    Actor::system("rollouts")
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
