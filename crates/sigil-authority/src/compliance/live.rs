//! The continuous compliance engine: every device's check results, kept current.
//!
//! A full evaluation ([`Live::rebuild`]) reads the whole fleet once. After that the engine
//! follows the audit log, which records every change that matters (enrolments, renewals,
//! revocations, lifecycle changes, posture reports, broker and TLS authentications, bootstrap
//! enrolments, product declarations): each new entry names a device, and only the devices named
//! are read again and re-evaluated. The clock is followed too: each device carries the moment
//! time alone will change a result (a certificate expiring, a posture report going stale), and
//! is re-evaluated then. A read ([`LiveCompliance::fresh`]) first applies everything committed
//! so far, so an answer always reflects every event before it.
//!
//! The follower wakes on every commit this process makes (`Store::commits`), and polls once a
//! second for changes made by another Sigil instance on the same database.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use tokio::sync::{Mutex, MutexGuard};

use sigil_compliance::device::{
    self, CertificateFacts, DeviceFacts, FleetFacts, KeyOrigin, ManufacturerKey, Outcome,
    ProductFacts, Time,
};
use sigil_compliance::{FleetResults, Status};
use sigil_domain::{DeviceId, Posture, ProductId};
use sigil_store::{AuditQuery, DeviceSnapshot};

use super::ComplianceError;
use crate::Authority;

/// How long an authentication by an unknown device, or with a revoked certificate, stays a
/// finding.
pub const AUTHENTICATION_WINDOW: Time = 30 * 86_400;
/// Audit actions whose entries the engine reads (for the others, the device they name is
/// enough).
const READ_ACTIONS: [&str; 3] = [
    "broker.connect",
    "tls.client_certificate",
    "est.bootstrap_authenticated",
];
/// Devices read per store round trip in a full evaluation.
const PAGE: u32 = 1000;
/// Readers of the inventory side by side in a full evaluation.
const READERS: u32 = 2;
/// Audit entries read per round trip when catching up.
const CHANGES_PER_READ: u32 = 2000;
/// How often the follower looks for changes another process made.
const POLL: Duration = Duration::from_secs(1);

/// What one refresh did.
#[derive(Debug, Clone, Copy, Default)]
pub struct RefreshStats {
    pub entries: u64,
    pub devices: usize,
    pub rebuilt: bool,
    pub elapsed: Duration,
}

/// The engine: its state behind a lock that reads and the follower share.
#[derive(Default)]
pub struct LiveCompliance {
    inner: Mutex<Live>,
}

impl LiveCompliance {
    /// The state, with every committed change and the clock applied.
    pub async fn fresh(&self, state: &Authority) -> Result<MutexGuard<'_, Live>, ComplianceError> {
        let mut live = self.inner.lock().await;
        live.refresh(state).await?;
        Ok(live)
    }

    /// Apply what changed since the last refresh.
    pub async fn refresh(&self, state: &Authority) -> Result<RefreshStats, ComplianceError> {
        self.inner.lock().await.refresh(state).await
    }

    /// Evaluate the whole fleet again from the database. The new results are built aside
    /// while the current ones keep answering, then swapped in and brought up to date.
    pub async fn rebuild(&self, state: &Authority) -> Result<RefreshStats, ComplianceError> {
        let started = Instant::now();
        let mut fresh = Live::default();
        fresh.rebuild(state).await?;
        let mut live = self.inner.lock().await;
        *live = fresh;
        live.refresh(state).await?;
        Ok(RefreshStats {
            devices: live.results.len(),
            rebuilt: true,
            elapsed: started.elapsed(),
            ..RefreshStats::default()
        })
    }

    /// One device's results as held now.
    pub async fn statuses(&self, device: DeviceId) -> Option<sigil_compliance::DeviceStatuses> {
        self.inner.lock().await.results.statuses(device)
    }

    async fn next_due(&self) -> Option<Time> {
        self.inner.lock().await.results.next_due()
    }
}

/// Follow the database and the clock, keeping the results current.
pub fn spawn_follower(state: std::sync::Arc<Authority>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut commits = state.store.commits();
        loop {
            match state.compliance.refresh(&state).await {
                Ok(stats) if stats.devices > 0 || stats.rebuilt => tracing::debug!(
                    entries = stats.entries,
                    devices = stats.devices,
                    rebuilt = stats.rebuilt,
                    micros = stats.elapsed.as_micros() as u64,
                    "compliance results updated"
                ),
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(error = %e, "compliance follower could not refresh");
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
            }
            let mut wait = POLL;
            if let Some(due) = state.compliance.next_due().await {
                let secs = due.saturating_sub(state.now().unix_timestamp()).max(0);
                wait = wait.min(Duration::from_secs(secs as u64));
            }
            tokio::select! {
                changed = commits.changed() => if changed.is_err() { return },
                () = tokio::time::sleep(wait) => {}
            }
        }
    })
}

/// The engine's state.
#[derive(Default)]
pub struct Live {
    built: bool,
    /// The audit position applied up to (exclusive).
    cursor: u64,
    pub(crate) results: FleetResults,
    /// Authentications by devices outside the inventory: (audit entry, time, subject).
    unknown_devices: VecDeque<(u64, Time, String)>,
    /// Shared with the readers of a full evaluation, which evaluate on it side by side;
    /// changed through `Arc::make_mut`.
    ctx: Arc<Context>,
}

/// What evaluating a device reads besides the device itself.
#[derive(Clone, Default)]
struct Context {
    fleet: FleetFacts,
    products: HashMap<ProductId, ProductFacts>,
    /// Authentications with a revoked certificate: (audit entry, time) per device.
    revoked_uses: HashMap<DeviceId, Vec<(u64, Time)>>,
    manufacturer_keys: HashMap<DeviceId, Vec<ManufacturerKey>>,
}

/// One device's facts, owned, for the pure checks.
pub(crate) struct OwnedFacts<'a> {
    id: DeviceId,
    state: String,
    product: ProductId,
    certificates: Vec<CertificateFacts>,
    posture: Option<(&'a str, Time, &'a Posture)>,
    revoked_uses: Vec<u64>,
    /// When the oldest revoked use leaves the window.
    uses_expire: Option<Time>,
    manufacturer_keys: Vec<ManufacturerKey>,
    metrics_reported_at: Option<Time>,
}

impl OwnedFacts<'_> {
    pub(crate) fn facts(&self) -> DeviceFacts<'_> {
        DeviceFacts {
            id: self.id,
            state: &self.state,
            certificates: &self.certificates,
            posture: self.posture,
            revoked_certificate_uses: &self.revoked_uses,
            manufacturer_keys: &self.manufacturer_keys,
            metrics_reported_at: self.metrics_reported_at,
        }
    }
}

fn entry_time(v: &serde_json::Value) -> Option<Time> {
    let text = v["time"].as_str()?;
    OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(OffsetDateTime::unix_timestamp)
}

impl Context {
    /// The facts the checks read about a device.
    pub(crate) fn owned_facts<'a>(&self, s: &'a DeviceSnapshot, now: Time) -> OwnedFacts<'a> {
        let id = s.device.id;
        let certificates = s
            .certificates
            .iter()
            .map(|c| {
                let renew_after = sigil_ca::Profile::by_name(&c.profile)
                    .map(|p| p.renew_after(c.not_before, c.not_after))
                    .unwrap_or(c.not_after);
                CertificateFacts {
                    serial: c.serial.clone(),
                    not_before: c.not_before.unix_timestamp(),
                    not_after: c.not_after.unix_timestamp(),
                    renew_after: renew_after.unix_timestamp(),
                    revoked_at: c.revoked_at.map(OffsetDateTime::unix_timestamp),
                    key: super::key_type(c.key_algorithm.as_deref(), c.der.as_deref()),
                    spki_sha256: c.spki_sha256.clone(),
                }
            })
            .collect();
        let recent: Vec<(u64, Time)> = self
            .revoked_uses
            .get(&id)
            .map(|u| {
                u.iter()
                    .copied()
                    .filter(|(_, t)| *t > now - AUTHENTICATION_WINDOW)
                    .collect()
            })
            .unwrap_or_default();
        OwnedFacts {
            id,
            state: s.device.state.clone(),
            product: s.device.product_id,
            certificates,
            posture: s
                .posture
                .as_ref()
                .map(|p| (p.id.as_str(), p.received_at.unix_timestamp(), &p.posture)),
            uses_expire: recent
                .iter()
                .map(|(_, t)| t + AUTHENTICATION_WINDOW + 1)
                .min(),
            revoked_uses: recent.into_iter().map(|(seq, _)| seq).collect(),
            manufacturer_keys: self.manufacturer_keys.get(&id).cloned().unwrap_or_default(),
            metrics_reported_at: s.metrics_at.map(OffsetDateTime::unix_timestamp),
        }
    }

    /// Every device check's outcome for one device, with reasons and evidence.
    pub(crate) fn outcomes(&self, s: &DeviceSnapshot, now: Time) -> Vec<(&'static str, Outcome)> {
        let owned = self.owned_facts(s, now);
        let facts = owned.facts();
        let product = self
            .products
            .get(&owned.product)
            .cloned()
            .unwrap_or_default();
        device::DEVICE_CHECKS
            .iter()
            .filter_map(|c| {
                device::evaluate_device(c, &facts, &product, &self.fleet, now).map(|o| (*c, o))
            })
            .collect()
    }

    /// One device's results and when time alone next changes them.
    fn judge(
        &self,
        s: &DeviceSnapshot,
        now: Time,
    ) -> (sigil_compliance::DeviceStatuses, Option<Time>) {
        let owned = self.owned_facts(s, now);
        let facts = owned.facts();
        let none = ProductFacts::default();
        let product = self.products.get(&owned.product).unwrap_or(&none);
        let statuses = device::device_statuses(&facts, product, &self.fleet, now);
        let due = [device::next_change(&facts, product, now), owned.uses_expire]
            .into_iter()
            .flatten()
            .filter(|t| *t > now)
            .min();
        (statuses, due)
    }
}

impl Live {
    /// The newest products and their declarations.
    async fn load_products(&mut self, state: &Authority) -> Result<(), ComplianceError> {
        let declarations = state.store.product_declarations().await?;
        // Where a product publishes releases through Sigil, its newest release is the current
        // firmware, in place of the hand-kept list in its declaration.
        let mut released = state.updates().release_facts().await?;
        Arc::make_mut(&mut self.ctx).products = state
            .store
            .list_products()
            .await?
            .into_iter()
            .map(|p| {
                let end = p
                    .support_end
                    .with_hms(23, 59, 59)
                    .map(|t| t.assume_utc().unix_timestamp())
                    .ok();
                let declared = declarations.get(&p.id);
                let releases = released.remove(&p.id.to_string());
                let newest = releases
                    .as_ref()
                    .and_then(|r| r.releases.last())
                    .map(|r| r.version.to_string());
                let facts = ProductFacts {
                    id: p.id.to_string(),
                    support_end: end,
                    current_firmware: match newest {
                        Some(version) => Some(vec![version]),
                        None => declared.map(|d| d.current_firmware.clone()),
                    },
                    allowed_services: declared.map(|d| d.allowed_services.clone()),
                    sboms: declared
                        .map(|d| d.sboms.clone().into_iter().collect())
                        .unwrap_or_default(),
                    update_channel: None,
                    vulnerabilities: None,
                    disclosure: None,
                    releases,
                    remediation_days: declared.and_then(|d| d.remediation_days),
                };
                (p.id, facts)
            })
            .collect();
        Ok(())
    }

    pub(crate) fn products(&self) -> impl Iterator<Item = &ProductFacts> {
        self.ctx.products.values()
    }

    /// Authentications by devices outside the inventory within the window before `now`.
    pub(crate) fn unknown_devices(&self, now: Time) -> Vec<(u64, String)> {
        self.unknown_devices
            .iter()
            .filter(|(_, t, _)| *t > now - AUTHENTICATION_WINDOW)
            .map(|(seq, _, s)| (*seq, s.clone()))
            .collect()
    }

    /// Learn from one audit entry of a [`READ_ACTIONS`] action; returns devices whose results
    /// it may change.
    async fn read_entry(
        &mut self,
        state: &Authority,
        seq: u64,
        text: &str,
    ) -> Result<Vec<DeviceId>, ComplianceError> {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else {
            return Ok(Vec::new());
        };
        let action = v["action"].as_str().unwrap_or_default();
        let subject = v["subject"].as_str().unwrap_or_default();
        let device: Option<DeviceId> = subject.strip_prefix("device:").and_then(|d| d.parse().ok());
        let at = entry_time(&v).unwrap_or_default();
        if action == "est.bootstrap_authenticated" {
            let (Some(device), Some(spki)) =
                (device, v["details"]["bootstrap_spki_sha256"].as_str())
            else {
                return Ok(Vec::new());
            };
            let ctx = Arc::make_mut(&mut self.ctx);
            let keys = ctx.manufacturer_keys.entry(device).or_default();
            if !keys.iter().any(|k| k.spki_sha256 == spki) {
                keys.push(ManufacturerKey {
                    spki_sha256: spki.to_owned(),
                    audit_seq: seq,
                });
            }
            ctx.fleet.add_key(spki, device, KeyOrigin::Manufacturer);
            return Ok(ctx.fleet.holders(spki));
        }
        let reason = v["details"]["reason"].as_str().unwrap_or_default();
        if v["details"]["state"] == "unknown" || reason.contains("UnknownIssuer") {
            self.unknown_devices
                .push_back((seq, at, subject.to_owned()));
        }
        let revoked_user = if v["details"]["certificate_status"] == "revoked" {
            device
        } else if reason.contains("Revoked")
            && let Some(serial) = subject
                .strip_prefix("certificate:")
                .and_then(|s| s.parse().ok())
        {
            match state.store.get_certificate(&serial).await {
                Ok(cert) => Some(cert.device_id),
                Err(sigil_store::StoreError::NotFound { .. }) => None,
                Err(e) => return Err(e.into()),
            }
        } else {
            None
        };
        Ok(match revoked_user {
            Some(d) => {
                let uses = Arc::make_mut(&mut self.ctx)
                    .revoked_uses
                    .entry(d)
                    .or_default();
                if !uses.iter().any(|(s, _)| *s == seq) {
                    uses.push((seq, at));
                }
                vec![d]
            }
            None => Vec::new(),
        })
    }

    /// Evaluate one device and record its results.
    fn evaluate(&mut self, s: &DeviceSnapshot, now: Time) {
        let (statuses, due) = self.ctx.judge(s, now);
        self.results.set(s.device.id, statuses, due);
    }

    /// Every device check's outcome for one device, with reasons and evidence.
    pub(crate) fn outcomes(&self, s: &DeviceSnapshot, now: Time) -> Vec<(&'static str, Outcome)> {
        self.ctx.outcomes(s, now)
    }

    /// Read `ids` again and re-evaluate them, and any device that now shares (or no longer
    /// shares) a key with one of them.
    async fn reevaluate(
        &mut self,
        state: &Authority,
        ids: BTreeSet<DeviceId>,
        now: Time,
    ) -> Result<usize, ComplianceError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let wanted: Vec<DeviceId> = ids.iter().copied().collect();
        let snapshots = state.store.device_snapshots(&wanted).await?;
        let found: HashSet<DeviceId> = snapshots.iter().map(|s| s.device.id).collect();
        for gone in wanted.iter().filter(|d| !found.contains(d)) {
            self.results.remove(*gone);
        }
        let mut co_holders = BTreeSet::new();
        let ctx = Arc::make_mut(&mut self.ctx);
        for s in &snapshots {
            let id = s.device.id;
            let retired = s.device.state == "retired";
            let mut changed = ctx.fleet.is_retired(id) != retired;
            ctx.fleet.set_retired(id, retired);
            for c in &s.certificates {
                changed |= ctx.fleet.add_key(&c.spki_sha256, id, KeyOrigin::Sigil);
            }
            if changed {
                let manufacturer = ctx.manufacturer_keys.get(&id).into_iter().flatten();
                let keys = s
                    .certificates
                    .iter()
                    .map(|c| c.spki_sha256.as_str())
                    .chain(manufacturer.map(|k| k.spki_sha256.as_str()));
                for key in keys {
                    co_holders.extend(ctx.fleet.holders(key));
                }
            }
        }
        for s in &snapshots {
            self.evaluate(s, now);
        }
        let others: Vec<DeviceId> = co_holders.difference(&ids).copied().collect();
        let more = state.store.device_snapshots(&others).await?;
        for s in &more {
            self.evaluate(s, now);
        }
        Ok(snapshots.len() + more.len())
    }

    /// Apply every audit entry since the last refresh and every device that fell due.
    async fn refresh(&mut self, state: &Authority) -> Result<RefreshStats, ComplianceError> {
        let started = Instant::now();
        if !self.built {
            self.rebuild(state).await?;
            return Ok(RefreshStats {
                devices: self.results.len(),
                rebuilt: true,
                elapsed: started.elapsed(),
                ..RefreshStats::default()
            });
        }
        let now = state.now().unix_timestamp();
        let mut touched = BTreeSet::new();
        let mut entries = 0;
        let mut products_changed = false;
        let mut declared = false;
        loop {
            let (changes, next) = state
                .store
                .audit_changes_since(self.cursor, CHANGES_PER_READ, &READ_ACTIONS)
                .await?;
            if changes.is_empty() {
                break;
            }
            for change in changes {
                entries += 1;
                if let Some(d) = change.device_id.and_then(|d| d.parse().ok()) {
                    touched.insert(d);
                }
                if let Some(text) = &change.entry {
                    touched.extend(self.read_entry(state, change.seq, text).await?);
                }
                products_changed |= change.action.starts_with("product.");
                // A declaration or a published release changes what is current for every
                // device of the product.
                declared |= matches!(
                    change.action.as_str(),
                    "product.declared" | "release.created" | "update.metadata_signed"
                );
            }
            self.cursor = next;
        }
        if declared {
            // What a product declares changes every one of its devices' results: rare enough
            // to evaluate the whole fleet again.
            self.rebuild(state).await?;
            return Ok(RefreshStats {
                entries,
                devices: self.results.len(),
                rebuilt: true,
                elapsed: started.elapsed(),
            });
        }
        if products_changed {
            self.load_products(state).await?;
        }
        while self
            .unknown_devices
            .front()
            .is_some_and(|(_, t, _)| *t <= now - AUTHENTICATION_WINDOW)
        {
            self.unknown_devices.pop_front();
        }
        touched.extend(self.results.due(now));
        let devices = self.reevaluate(state, touched, now).await?;
        Ok(RefreshStats {
            entries,
            devices,
            rebuilt: false,
            elapsed: started.elapsed(),
        })
    }

    /// Forget everything and evaluate the whole fleet from the database.
    async fn rebuild(&mut self, state: &Authority) -> Result<(), ComplianceError> {
        let now = state.now().unix_timestamp();
        // Entries from here on are applied by the next refresh; the scans below stop before it.
        let cursor = state.store.audit_size().await?;
        *self = Live {
            cursor,
            ..Live::default()
        };
        self.load_products(state).await?;
        for id in state.store.retired_devices().await? {
            Arc::make_mut(&mut self.ctx).fleet.set_retired(id, true);
        }
        let window_start = sigil_audit::entry::format_time(
            state.now() - time::Duration::seconds(AUTHENTICATION_WINDOW),
        );
        for action in READ_ACTIONS {
            // Manufacturer keys count however old; authentications only within the window.
            let since = (action != "est.bootstrap_authenticated").then(|| window_start.clone());
            let mut after = None;
            loop {
                let q = AuditQuery {
                    action: Some(action.to_owned()),
                    since: since.clone(),
                    after,
                    before: Some(cursor),
                    limit: sigil_store::MAX_PAGE,
                    ..AuditQuery::default()
                };
                let page = state.store.audit_entries(&q).await?;
                for e in &page {
                    self.read_entry(state, e.seq, &e.entry).await?;
                }
                match page.last() {
                    Some(last) if page.len() == sigil_store::MAX_PAGE as usize => {
                        after = Some(last.seq)
                    }
                    _ => break,
                }
            }
        }
        // Disjoint ranges of the inventory are read side by side (the database and the
        // driver do most of the work) while this task evaluates the pages as they arrive.
        let splits = state.store.device_splits(READERS).await?;
        let mut bounds: Vec<(Option<DeviceId>, Option<DeviceId>)> = Vec::new();
        let mut after = None;
        for split in splits {
            bounds.push((after, Some(split)));
            after = Some(split);
        }
        bounds.push((after, None));
        let (pages, mut arriving) = tokio::sync::mpsc::channel(2 * bounds.len());
        for (mut after, until) in bounds {
            let store = state.store.clone();
            let pages = pages.clone();
            let ctx = self.ctx.clone();
            tokio::spawn(async move {
                loop {
                    let page = store.compliance_range(after, until, PAGE).await;
                    let next = match &page {
                        Ok(p) if p.len() == PAGE as usize => p.last().map(|s| s.device.id),
                        _ => None,
                    };
                    // The reader evaluates what it read (on the context as it was before the
                    // scan: manufacturer keys, products, authentications).
                    let judged = page.map(|page| {
                        page.iter()
                            .map(|s| {
                                let (statuses, due) = ctx.judge(s, now);
                                let keys: Vec<String> = s
                                    .certificates
                                    .iter()
                                    .map(|c| c.spki_sha256.clone())
                                    .collect();
                                (s.device.id, statuses, due, keys)
                            })
                            .collect::<Vec<_>>()
                    });
                    // A closed channel means the evaluation gave up: stop reading.
                    if pages.send(judged).await.is_err() || next.is_none() {
                        return;
                    }
                    after = next;
                }
            });
        }
        drop(pages);
        // Sigil keys are indexed as the results arrive: a device whose key another device
        // also holds was judged without knowing it, so those few are evaluated again at the
        // end, on the complete index.
        while let Some(page) = arriving.recv().await {
            let ctx = Arc::make_mut(&mut self.ctx);
            for (id, statuses, due, keys) in page? {
                for key in &keys {
                    ctx.fleet.add_key(key, id, KeyOrigin::Sigil);
                }
                self.results.set(id, statuses, due);
            }
        }
        let sharing: Vec<DeviceId> = self.ctx.fleet.sharing_devices().into_iter().collect();
        for s in state.store.device_snapshots(&sharing).await? {
            self.evaluate(&s, now);
        }
        self.built = true;
        Ok(())
    }

    /// Counts of a device check over the fleet.
    pub(crate) fn counts(&self, check: &str) -> Option<sigil_compliance::StatusCounts> {
        self.results.counts(check)
    }

    /// Devices whose results over `checks` roll up to `status`, in id order from `after`
    /// (see [`FleetResults::devices_by_status`]).
    pub fn devices_by_status(
        &self,
        checks: &[&str],
        status: Status,
        after: Option<DeviceId>,
        limit: usize,
        budget: usize,
    ) -> sigil_compliance::StatusScan {
        self.results
            .devices_by_status(checks, status, after, limit, budget)
    }

    /// `device`'s results over `checks`, rolled up; `None` if it has not been evaluated.
    pub fn status_over(&self, device: DeviceId, checks: &[&str]) -> Option<Status> {
        let statuses = self.results.statuses(device)?;
        Some(sigil_compliance::roll_up(checks.iter().filter_map(|c| {
            sigil_compliance::device::DEVICE_CHECKS
                .iter()
                .position(|d| d == c)
                .map(|i| statuses[i])
        })))
    }

    /// The first `limit` devices failing, or undecided on, `check`.
    pub(crate) fn failing(&self, check: &str, limit: usize) -> Vec<DeviceId> {
        self.results
            .devices_with(check, &[Status::Fail, Status::Unknown], limit)
    }
}
