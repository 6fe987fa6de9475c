//! Behaviour monitoring: collectors put device metrics on the bus, the detector applies them
//! to the security profiles, and alarms are recorded, mitigated and announced.
//!
//! Three kinds of collector feed it: the agent's reports (`POST /api/v1/device/metrics`), the
//! broker observer (`sigil-broker`: Mosquitto's log and the devices' telemetry) and Sigil's own
//! refusals, read from the audit log (own.rs). The detector (detect.rs) holds every device's
//! windows and baselines in memory (`sigil_detect::Detector`); alarms and quarantine are in the
//! database (`sigil_store::monitoring`).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

use sigil_audit::Actor;
use sigil_compliance::organisation::{DetectionFacts, UndecidedAlarm};
use sigil_detect::{Datapoint, Detector, MetricsReport, ProfileSet};
use sigil_domain::DeviceId;
use sigil_store::{AlarmRecord, PolicyVersion, StoreError};

use crate::Authority;

pub mod bus;
mod detect;
mod own;

pub use bus::{
    Batch, Delivery, Envelope, EnvelopeRefusal, InProcess, MetricsTransport, Sealer, SeenBatches,
};
pub use detect::spawn_detector;
pub use own::spawn_own_metrics;

#[derive(Debug, thiserror::Error)]
pub enum MonitoringError {
    #[error("{0}")]
    Detect(#[from] sigil_detect::DetectError),
    #[error("metrics bus: {0}")]
    Transport(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Conflict(String),
}

/// How the monitoring service is assembled.
pub struct MonitoringSettings {
    pub transport: Arc<dyn MetricsTransport>,
}

impl Default for MonitoringSettings {
    fn default() -> Self {
        Self {
            transport: Arc::new(InProcess::default()),
        }
    }
}

/// Critical alarms without a decision named in the compliance evidence (the count is what
/// fails the check; these are where to start).
const UNDECIDED_ALARMS_LISTED: u32 = 100;

#[derive(Default)]
struct Counters {
    envelopes: AtomicU64,
    datapoints: AtomicU64,
    forged: AtomicU64,
    replayed: AtomicU64,
    malformed: AtomicU64,
    unknown_device: AtomicU64,
}

/// A device's cohort (product and site), cached for a minute.
#[derive(Clone)]
struct Cohort {
    product: String,
    site: String,
    fetched_ms: i64,
}

pub struct Monitoring {
    transport: Arc<dyn MetricsTransport>,
    sealer: Sealer,
    detector: std::sync::Mutex<Detector>,
    profiles_version: AtomicI64,
    cohorts: std::sync::Mutex<HashMap<String, Cohort>>,
    /// When each device's last datapoint was applied (ms), from any source.
    last_seen: std::sync::Mutex<HashMap<Box<str>, i64>>,
    /// Devices whose own reports were applied since the last flush to the database, and when
    /// (unix seconds): the freshness the compliance engine reads.
    reports: std::sync::Mutex<HashMap<DeviceId, i64>>,
    counters: Counters,
    seen: std::sync::Mutex<SeenBatches>,
    running: AtomicBool,
    last_tick_ms: AtomicI64,
}

/// What the monitoring service has done since it started.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MonitoringStatus {
    /// `in-process` or `jetstream`.
    pub transport: &'static str,
    /// The security profiles' version in force (0: Sigil's default profiles).
    pub profiles_version: i64,
    /// Whether the detector runs, and when it last closed windows.
    pub detector_running: bool,
    pub last_tick_ms: i64,
    pub envelopes: u64,
    pub datapoints: u64,
    /// Datapoints that arrived after their window closed.
    pub late: u64,
    /// Envelopes whose tag did not verify (not from a Sigil collector): never applied.
    pub refused_forged: u64,
    /// Envelopes applied before (replayed or redelivered) or too old: never applied again.
    pub refused_replayed: u64,
    /// Envelopes or datapoints that did not parse or check: never applied.
    pub refused_malformed: u64,
    /// Datapoints naming no device of the inventory.
    pub refused_unknown_device: u64,
    pub alarms_raised: u64,
    pub alarms_cleared: u64,
    pub devices_watched: usize,
}

impl Monitoring {
    pub(crate) async fn open(
        settings: MonitoringSettings,
        key: &[u8; 32],
        store: &sigil_store::Store,
    ) -> Result<Self, MonitoringError> {
        let (set, version) = match store.current_security_profiles().await? {
            Some(v) => (ProfileSet::parse(&v.text)?, v.version),
            None => (ProfileSet::default_set()?, 0),
        };
        Ok(Self {
            transport: settings.transport,
            sealer: Sealer::new(key),
            detector: std::sync::Mutex::new(Detector::new(set)),
            profiles_version: AtomicI64::new(version),
            cohorts: Default::default(),
            last_seen: Default::default(),
            reports: Default::default(),
            counters: Counters::default(),
            seen: Default::default(),
            running: AtomicBool::new(false),
            last_tick_ms: AtomicI64::new(0),
        })
    }

    pub fn sealer(&self) -> &Sealer {
        &self.sealer
    }

    /// When the device's last datapoint was applied (ms since the epoch).
    pub fn last_seen_ms(&self, device: &str) -> Option<i64> {
        self.last_seen.lock().ok()?.get(device).copied()
    }

    fn with_detector<T>(&self, f: impl FnOnce(&mut Detector) -> T) -> T {
        // A panic while holding the lock leaves state that is still usable: take it back.
        let mut guard = self.detector.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard)
    }
}

impl Authority {
    pub fn monitoring(&self) -> &Monitoring {
        &self.monitoring
    }

    /// Put datapoints on the bus, sealed (a collector's side).
    pub async fn submit_metrics(
        &self,
        source: &str,
        points: Vec<Datapoint>,
    ) -> Result<(), MonitoringError> {
        if points.is_empty() {
            return Ok(());
        }
        let key = points[0].device.clone();
        for chunk in points.chunks(bus::MAX_BATCH_POINTS) {
            let batch = Batch::new(source, self.now_ms(), chunk.to_vec());
            let envelope = self.monitoring.sealer.seal(&batch);
            self.monitoring
                .transport
                .publish(&key, envelope)
                .await
                .map_err(MonitoringError::Transport)?;
        }
        Ok(())
    }

    /// A device's own report (its identity from mTLS), parsed, checked and sent on.
    pub async fn device_metrics(
        &self,
        device: DeviceId,
        body: &[u8],
    ) -> Result<usize, MonitoringError> {
        let report = MetricsReport::parse(body).inspect_err(|_| {
            self.monitoring
                .counters
                .malformed
                .fetch_add(1, Ordering::Relaxed);
        })?;
        let points = report.datapoints(&device.to_string(), self.now_ms());
        let count = points.len();
        self.submit_metrics(bus::DEVICE_SOURCE, points).await?;
        Ok(count)
    }

    pub fn now_ms(&self) -> i64 {
        (self.now().unix_timestamp_nanos() / 1_000_000) as i64
    }

    /// What the organisation checks of monitoring read: this instance's detector, and the
    /// critical alarms no operator decided on.
    pub(crate) async fn detection_facts(
        &self,
    ) -> Result<(DetectionFacts, u64, Vec<UndecidedAlarm>), StoreError> {
        let status = self.monitoring_status();
        let behaviours = self.monitoring.with_detector(|d| {
            d.profiles()
                .profiles
                .iter()
                .flat_map(|p| &p.behaviours)
                .filter(|b| !b.suppress)
                .count()
        });
        let detection = DetectionFacts {
            running: status.detector_running,
            last_tick: (status.last_tick_ms > 0).then(|| status.last_tick_ms.div_euclid(1000)),
            transport: status.transport.to_owned(),
            profiles_version: status.profiles_version,
            behaviours,
        };
        let (count, oldest) = self
            .store()
            .undecided_critical_alarms(UNDECIDED_ALARMS_LISTED)
            .await?;
        let alarms = oldest
            .into_iter()
            .map(|(id, device, behaviour, raised_at_ms)| UndecidedAlarm {
                id,
                device,
                behaviour,
                raised_at: raised_at_ms.div_euclid(1000),
            })
            .collect();
        Ok((detection, count, alarms))
    }

    pub fn monitoring_status(&self) -> MonitoringStatus {
        let m = &self.monitoring;
        let stats = m.with_detector(|d| d.stats());
        let c = &m.counters;
        MonitoringStatus {
            transport: m.transport.name(),
            profiles_version: m.profiles_version.load(Ordering::Relaxed),
            detector_running: m.running.load(Ordering::Relaxed),
            last_tick_ms: m.last_tick_ms.load(Ordering::Relaxed),
            envelopes: c.envelopes.load(Ordering::Relaxed),
            datapoints: c.datapoints.load(Ordering::Relaxed),
            late: stats.late,
            refused_forged: c.forged.load(Ordering::Relaxed),
            refused_replayed: c.replayed.load(Ordering::Relaxed),
            refused_malformed: c.malformed.load(Ordering::Relaxed),
            refused_unknown_device: c.unknown_device.load(Ordering::Relaxed),
            alarms_raised: stats.raised,
            alarms_cleared: stats.cleared,
            devices_watched: stats.devices,
        }
    }

    /// The security profiles in force: the last version applied, or Sigil's default (version 0).
    pub async fn security_profiles(&self) -> Result<(i64, String), MonitoringError> {
        Ok(match self.store().current_security_profiles().await? {
            Some(v) => (v.version, v.text),
            None => (0, sigil_detect::DEFAULT_PROFILES.to_owned()),
        })
    }

    /// Validate and apply a profile document; the detector starts over under it.
    pub async fn apply_security_profiles(
        &self,
        actor: &Actor,
        text: &str,
        comment: &str,
    ) -> Result<PolicyVersion, MonitoringError> {
        let set = ProfileSet::parse(text)?;
        let version = self
            .store()
            .apply_security_profiles(actor, text, comment, self.now())
            .await?;
        self.monitoring.with_detector(|d| d.replace_profiles(set));
        self.monitoring
            .profiles_version
            .store(version.version, Ordering::Relaxed);
        Ok(version)
    }

    /// An operator's decision on an alarm. A false positive teaches the detector the names
    /// behind it (a new port or address becomes known).
    pub async fn decide_alarm(
        &self,
        actor: &Actor,
        id: &str,
        decision: &str,
        note: &str,
    ) -> Result<AlarmRecord, MonitoringError> {
        let record = self
            .store()
            .decide_alarm(actor, id, decision, note, self.now())
            .await?;
        if decision == "false_positive" && record.active {
            // Exactly the names this alarm showed become known, not others seen since.
            let names: Vec<String> = record.explanation["new_values"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            self.monitoring
                .with_detector(|d| d.accept(&record.device_id, &record.behaviour, &names));
        }
        Ok(record)
    }

    /// Quarantine a device (the access policy leaves it only its quarantine topic; the broker
    /// sync applies that within its poll interval). `false` if it already was.
    pub async fn quarantine(
        &self,
        actor: &Actor,
        device: DeviceId,
        reason: &str,
        alarm: Option<&str>,
    ) -> Result<bool, MonitoringError> {
        Ok(self
            .store()
            .set_quarantine(
                actor,
                device,
                true,
                json!({"reason": reason, "alarm": alarm}),
                self.now(),
            )
            .await?)
    }

    /// Take a device out of quarantine. The caller checks the operator's second factor (the
    /// access policy's `device.release` rule requires it).
    pub async fn release(
        &self,
        actor: &Actor,
        device: DeviceId,
        reason: &str,
    ) -> Result<(), MonitoringError> {
        let changed = self
            .store()
            .set_quarantine(actor, device, false, json!({"reason": reason}), self.now())
            .await?;
        if changed {
            Ok(())
        } else {
            Err(MonitoringError::Conflict(format!(
                "device {device} is not quarantined"
            )))
        }
    }
}
