//! The detector: datapoints in, explained alarm transitions out.
//!
//! Each behaviour aggregates a device's datapoints over fixed windows (aligned to multiples of
//! the window length). A closed window is judged against the behaviour's criterion; so is the
//! open one whenever its value can only grow (sums, counts, maxima and distinct names against
//! an upper bound), which raises a flood's alarm within the window rather than at its end.
//! `datapoints_to_alarm` abnormal windows in a row raise the alarm; `datapoints_to_clear`
//! normal ones clear it. Only normal windows teach the baselines, so an attack does not become
//! the norm while it lasts.

use std::collections::HashMap;

use serde::Serialize;

use crate::metric::{Datapoint, Metric, MetricKind};
use crate::profile::{Aggregate, Behaviour, CohortBy, Criterion, Mitigation, ProfileSet, Severity};
use crate::stats::Robust;

mod judge;
mod state;

use state::{BehaviourState, CohortState};

/// An alarm raised or cleared.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlarmEvent {
    pub device: String,
    pub profile: String,
    pub behaviour: String,
    pub metric: Metric,
    pub transition: Transition,
    pub severity: Severity,
    pub mitigation: Mitigation,
    /// The behaviour is suppressed: record the alarm, act on nothing.
    pub suppressed: bool,
    pub at_ms: i64,
    pub explanation: Explanation,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Transition {
    Raised,
    Cleared,
}

/// Why: the window's value and what it was held against.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Explanation {
    pub aggregate: Aggregate,
    pub window_seconds: u32,
    pub window_start_ms: i64,
    pub value: f64,
    /// `static`, `cohort`, `baseline` or `new_value`.
    pub criterion: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline: Option<Robust>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cohort: Option<CohortExplanation>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub new_values: Vec<String>,
    /// How many names the device showed while learning (new_value only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub known_values: Option<usize>,
    /// One sentence for people.
    pub summary: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CohortExplanation {
    pub cohort: String,
    pub percentile: f64,
    pub percentile_value: f64,
    pub factor: f64,
    pub samples: usize,
}

/// Counters for what the detector saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DetectorStats {
    pub datapoints: u64,
    /// Arrived after their window had closed: not counted.
    pub late: u64,
    pub raised: u64,
    pub cleared: u64,
    pub devices: usize,
}

struct DeviceState {
    profile: Option<u16>,
    product: Box<str>,
    site: Box<str>,
    behaviours: Vec<Option<BehaviourState>>,
}

/// Behaviour monitoring for a fleet, in memory.
pub struct Detector {
    set: ProfileSet,
    devices: HashMap<Box<str>, DeviceState>,
    cohorts: HashMap<(u16, u16, Box<str>), CohortState>,
    stats: DetectorStats,
}

/// Windows that close with no datapoint (a silent device) are judged as zero counts, at most
/// this many in a row: enough to clear any alarm, never a long walk after a long silence.
const MAX_EMPTY_WINDOWS: u32 = 101;

impl Detector {
    pub fn new(set: ProfileSet) -> Self {
        Self {
            set,
            devices: HashMap::new(),
            cohorts: HashMap::new(),
            stats: DetectorStats::default(),
        }
    }

    pub fn profiles(&self) -> &ProfileSet {
        &self.set
    }

    /// Use other profiles from now on; what was learnt under the old ones is dropped.
    pub fn replace_profiles(&mut self, set: ProfileSet) {
        self.set = set;
        self.devices.clear();
        self.cohorts.clear();
    }

    pub fn stats(&self) -> DetectorStats {
        DetectorStats {
            devices: self.devices.len(),
            ..self.stats
        }
    }

    /// Stop watching a device (retired, deleted).
    pub fn forget(&mut self, device: &str) {
        self.devices.remove(device);
    }

    /// `names` of the device's `behaviour` become known: an operator judged the alarm that
    /// showed them a false positive. Only those names: not others that appeared since.
    pub fn accept(&mut self, device: &str, behaviour: &str, names: &[String]) {
        let Some(state) = self.devices.get_mut(device) else {
            return;
        };
        let Some(profile) = state
            .profile
            .and_then(|p| self.set.profiles.get(usize::from(p)))
        else {
            return;
        };
        if let Some(i) = profile.behaviours.iter().position(|b| b.name == behaviour)
            && let Some(Some(s)) = state.behaviours.get_mut(i)
        {
            s.accept(names);
        }
    }

    /// One datapoint of a device of `product` at `site` (the cohort the fleet statistics
    /// compare it with). Returns the alarms it raised or cleared.
    pub fn ingest(&mut self, point: &Datapoint, product: &str, site: &str) -> Vec<AlarmEvent> {
        self.stats.datapoints += 1;
        let mut events = Vec::new();
        let mut late = 0;
        let device = device_state(&mut self.devices, &self.set, &point.device, product, site);
        let Some(profile_index) = device.profile else {
            return events;
        };
        let profile = &self.set.profiles[usize::from(profile_index)];
        for (i, behaviour) in profile.behaviours.iter().enumerate() {
            if behaviour.metric != point.metric {
                continue;
            }
            let key = cohort_key(behaviour, &device.product, &device.site);
            let slot = &mut device.behaviours[i];
            let state = slot.get_or_insert_with(|| BehaviourState::new(behaviour, point.at_ms));
            let cohort = self
                .cohorts
                .entry((profile_index, i as u16, key.as_str().into()))
                .or_default();
            let mut ctx = judge::Context {
                device: &point.device,
                profile: &profile.name,
                behaviour,
                cohort,
                cohort_key: &key,
                now_ms: point.at_ms,
                events: &mut events,
            };
            if !state.advance(point.at_ms, &mut ctx) {
                late += 1;
                continue;
            }
            state.add(point, behaviour, &mut ctx);
        }
        self.stats.late += late;
        self.count(&events);
        events
    }

    /// Close every window that ended at or before `now_ms`. Returns the alarms that changed.
    pub fn tick(&mut self, now_ms: i64) -> Vec<AlarmEvent> {
        let mut events = Vec::new();
        for (device, state) in &mut self.devices {
            let Some(profile_index) = state.profile else {
                continue;
            };
            let profile = &self.set.profiles[usize::from(profile_index)];
            for (i, behaviour) in profile.behaviours.iter().enumerate() {
                let Some(s) = state.behaviours[i].as_mut() else {
                    continue;
                };
                if s.window_end() > now_ms {
                    continue;
                }
                let key = cohort_key(behaviour, &state.product, &state.site);
                let cohort = self
                    .cohorts
                    .entry((profile_index, i as u16, key.as_str().into()))
                    .or_default();
                let mut ctx = judge::Context {
                    device,
                    profile: &profile.name,
                    behaviour,
                    cohort,
                    cohort_key: &key,
                    now_ms,
                    events: &mut events,
                };
                s.advance(now_ms, &mut ctx);
            }
        }
        self.count(&events);
        events
    }

    fn count(&mut self, events: &[AlarmEvent]) {
        for e in events {
            match e.transition {
                Transition::Raised => self.stats.raised += 1,
                Transition::Cleared => self.stats.cleared += 1,
            }
        }
    }
}

fn device_state<'a>(
    devices: &'a mut HashMap<Box<str>, DeviceState>,
    set: &ProfileSet,
    device: &str,
    product: &str,
    site: &str,
) -> &'a mut DeviceState {
    let stale = devices
        .get(device)
        .is_some_and(|d| &*d.product != product || &*d.site != site);
    if stale {
        // A device moved to another product or site: another profile and cohort.
        devices.remove(device);
    }
    devices.entry(device.into()).or_insert_with(|| {
        let profile = set.profile_for(product).map(|p| p as u16);
        let behaviours = profile
            .map(|p| set.profiles[usize::from(p)].behaviours.len())
            .unwrap_or(0);
        DeviceState {
            profile,
            product: product.into(),
            site: site.into(),
            behaviours: (0..behaviours).map(|_| None).collect(),
        }
    })
}

fn cohort_key(behaviour: &Behaviour, product: &str, site: &str) -> String {
    match &behaviour.criterion {
        Criterion::Cohort {
            by: CohortBy::ProductAndSite,
            ..
        } => format!("{product}/{site}"),
        Criterion::Cohort { .. } => product.to_owned(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests;
