//! One behaviour's state for one device: the open window, the streaks towards raising or
//! clearing, the baseline, and the names learnt.

use std::collections::{BTreeSet, VecDeque};

use super::judge::{Context, Verdict};
use super::{MAX_EMPTY_WINDOWS, MetricKind};
use crate::metric::{Datapoint, Value};
use crate::profile::{Aggregate, Behaviour, Criterion};
use crate::stats::{Robust, median_mad, percentile};

/// Most names a window or a learnt set keeps (a set metric's distinct count saturates here).
const MAX_NAMES: usize = 4096;
/// Most devices a cohort's percentile is taken over.
const COHORT_SAMPLES: usize = 4096;

#[derive(Default)]
pub(super) struct Window {
    pub(super) sum: f64,
    pub(super) count: u32,
    pub(super) max: f64,
    pub(super) min: f64,
    pub(super) names: BTreeSet<Box<str>>,
}

impl Window {
    pub(super) fn value(&self, aggregate: Aggregate) -> f64 {
        match aggregate {
            Aggregate::Sum => self.sum,
            Aggregate::Count => f64::from(self.count),
            Aggregate::Max => self.max,
            Aggregate::Min => self.min,
            Aggregate::Avg if self.count > 0 => self.sum / f64::from(self.count),
            Aggregate::Avg => 0.0,
            Aggregate::Distinct => self.names.len() as f64,
        }
    }
}

pub(super) struct BehaviourState {
    window_ms: i64,
    /// Start of the open window (ms).
    pub(super) start: i64,
    pub(super) window: Window,
    /// The open window already counted as abnormal (judged early).
    counted: bool,
    breaches: u32,
    clears: u32,
    pub(super) active: bool,
    history: VecDeque<f32>,
    baseline: Option<Robust>,
    pub(super) known: BTreeSet<Box<str>>,
    /// New names behind the active alarm: learnt if an operator accepts them.
    pending: BTreeSet<Box<str>>,
    learned_points: u32,
    first_ms: i64,
}

impl BehaviourState {
    pub(super) fn new(behaviour: &Behaviour, at_ms: i64) -> Self {
        let window_ms = i64::from(behaviour.window_seconds) * 1000;
        Self {
            window_ms,
            start: at_ms.div_euclid(window_ms) * window_ms,
            window: Window::default(),
            counted: false,
            breaches: 0,
            clears: 0,
            active: false,
            history: VecDeque::new(),
            baseline: None,
            known: BTreeSet::new(),
            pending: BTreeSet::new(),
            learned_points: 0,
            first_ms: at_ms,
        }
    }

    pub(super) fn window_end(&self) -> i64 {
        self.start + self.window_ms
    }

    /// Move the open window to the one holding `at_ms`, judging the windows that close.
    /// `false` if `at_ms` is before the open window (a late datapoint).
    pub(super) fn advance(&mut self, at_ms: i64, ctx: &mut Context<'_>) -> bool {
        let start = at_ms.div_euclid(self.window_ms) * self.window_ms;
        if start < self.start {
            return false;
        }
        if start == self.start {
            return true;
        }
        self.close(ctx);
        if ctx.behaviour.metric.kind() == MetricKind::Count {
            // Windows with no datapoint in between: zero counts, judged (they clear alarms).
            let empty =
                ((start - self.start) / self.window_ms - 1).min(i64::from(MAX_EMPTY_WINDOWS));
            for _ in 0..empty {
                self.reset(self.start + self.window_ms);
                self.close(ctx);
            }
        }
        self.reset(start);
        true
    }

    fn reset(&mut self, start: i64) {
        self.start = start;
        self.window = Window::default();
        self.counted = false;
    }

    /// Judge the open window as closed.
    fn close(&mut self, ctx: &mut Context<'_>) {
        let b = ctx.behaviour;
        if self.window.count == 0 && b.metric.kind() != MetricKind::Count {
            return; // No datapoint: nothing to say about a measurement or a set.
        }
        if self.counted {
            return; // Already counted abnormal while open; never learnt from.
        }
        let verdict = match &b.criterion {
            Criterion::NewValue { .. } => Verdict::Normal(ctx.new_value_explanation(self, &[])),
            _ => ctx.judge(self),
        };
        match verdict {
            Verdict::Abnormal(e) => self.abnormal(e, ctx),
            Verdict::Normal(e) => {
                self.learn(ctx);
                self.normal(e, ctx);
            }
        }
    }

    /// Add a datapoint to the open window and judge it early where its value can only grow.
    pub(super) fn add(&mut self, point: &Datapoint, b: &Behaviour, ctx: &mut Context<'_>) {
        match &point.value {
            Value::Number(n) => {
                let first = self.window.count == 0;
                self.window.sum += n;
                self.window.max = if first { *n } else { self.window.max.max(*n) };
                self.window.min = if first { *n } else { self.window.min.min(*n) };
            }
            Value::Set(names) => {
                let names = normalise(names, &b.criterion);
                if let Criterion::NewValue { .. } = b.criterion {
                    self.see_names(&names, point.at_ms, ctx);
                }
                for name in names {
                    if self.window.names.len() >= MAX_NAMES {
                        break;
                    }
                    self.window.names.insert(name.into());
                }
            }
        }
        self.window.count = self.window.count.saturating_add(1);
        if !self.counted
            && grows_only(b)
            && let Verdict::Abnormal(e) = ctx.judge(self)
        {
            self.abnormal(e, ctx);
        }
    }

    /// Learning, or alarming on names never learnt.
    fn see_names(&mut self, names: &[String], at_ms: i64, ctx: &mut Context<'_>) {
        let Criterion::NewValue {
            learn_datapoints,
            learn_seconds,
            ..
        } = ctx.behaviour.criterion
        else {
            return;
        };
        let learning = self.learned_points < learn_datapoints
            || at_ms - self.first_ms < i64::from(learn_seconds) * 1000;
        if learning {
            self.learned_points = self.learned_points.saturating_add(1);
            for name in names {
                if self.known.len() < MAX_NAMES {
                    self.known.insert(name.as_str().into());
                }
            }
            return;
        }
        let unknown: Vec<String> = names
            .iter()
            .filter(|n| !self.known.contains(n.as_str()))
            .cloned()
            .collect();
        if unknown.is_empty() || self.counted {
            return;
        }
        for name in &unknown {
            if self.pending.len() < MAX_NAMES {
                self.pending.insert(name.as_str().into());
            }
        }
        let e = ctx.new_value_explanation(self, &unknown);
        self.abnormal(e, ctx);
    }

    fn abnormal(&mut self, explanation: super::Explanation, ctx: &mut Context<'_>) {
        self.counted = true;
        self.breaches = self.breaches.saturating_add(1);
        self.clears = 0;
        if !self.active && self.breaches >= ctx.behaviour.datapoints_to_alarm {
            self.active = true;
            ctx.emit(super::Transition::Raised, explanation);
        }
    }

    fn normal(&mut self, explanation: super::Explanation, ctx: &mut Context<'_>) {
        self.clears = self.clears.saturating_add(1);
        self.breaches = 0;
        if self.active && self.clears >= ctx.behaviour.datapoints_to_clear {
            self.active = false;
            self.pending.clear();
            ctx.emit(super::Transition::Cleared, explanation);
        }
    }

    /// A normal window teaches the device's baseline and its cohort.
    fn learn(&mut self, ctx: &mut Context<'_>) {
        let value = self.window.value(ctx.behaviour.aggregate());
        match ctx.behaviour.criterion {
            Criterion::Baseline { samples, .. } => {
                if self.history.len() >= samples as usize {
                    self.history.pop_front();
                }
                self.history.push_back(value as f32);
                self.baseline = None;
            }
            Criterion::Cohort { .. } => ctx.cohort.push(ctx.device, value),
            _ => {}
        }
    }

    /// The device's baseline now (computed once per change of its history).
    pub(super) fn baseline(&mut self) -> Option<Robust> {
        if self.baseline.is_none() && !self.history.is_empty() {
            let values: Vec<f64> = self.history.iter().map(|v| f64::from(*v)).collect();
            self.baseline = median_mad(&values);
        }
        self.baseline
    }

    pub(super) fn accept(&mut self, names: &[String]) {
        for name in names {
            self.pending.remove(name.as_str());
            if self.known.len() < MAX_NAMES {
                self.known.insert(name.as_str().into());
            }
        }
    }
}

/// Judged while open only when the window's value can only grow and the bound is an upper one.
fn grows_only(b: &Behaviour) -> bool {
    let upper = match &b.criterion {
        Criterion::Static { above, .. } => above.is_some(),
        Criterion::Cohort { .. } | Criterion::Baseline { .. } => true,
        Criterion::NewValue { .. } => false,
    };
    upper
        && matches!(
            b.aggregate(),
            Aggregate::Sum | Aggregate::Count | Aggregate::Max | Aggregate::Distinct
        )
}

/// Addresses reduced to their network when the behaviour compares regions.
fn normalise(names: &[String], criterion: &Criterion) -> Vec<String> {
    let Criterion::NewValue {
        prefix_v4,
        prefix_v6,
        ..
    } = criterion
    else {
        return names.to_vec();
    };
    names
        .iter()
        .map(
            |name| match name.parse::<std::net::IpAddr>().map(|ip| ip.to_canonical()) {
                Ok(std::net::IpAddr::V4(ip)) if let Some(p) = prefix_v4 => {
                    let mask = u32::MAX.checked_shl(32 - u32::from(*p)).unwrap_or(0);
                    format!("{}/{p}", std::net::Ipv4Addr::from(u32::from(ip) & mask))
                }
                Ok(std::net::IpAddr::V6(ip)) if let Some(p) = prefix_v6 => {
                    let mask = u128::MAX.checked_shl(128 - u32::from(*p)).unwrap_or(0);
                    format!("{}/{p}", std::net::Ipv6Addr::from(u128::from(ip) & mask))
                }
                _ => name.clone(),
            },
        )
        .collect()
}

/// A cohort's devices, each with the value of its latest normal window (one vote each, so no
/// device can move the cohort's percentile by reporting often), and the percentile,
/// recomputed at most once per window.
#[derive(Default)]
pub(super) struct CohortState {
    recent: std::collections::HashMap<Box<str>, f32>,
    cached: Option<(i64, f64, f64)>,
    changed: bool,
}

impl CohortState {
    fn push(&mut self, device: &str, value: f64) {
        if let Some(v) = self.recent.get_mut(device) {
            *v = value as f32;
        } else if self.recent.len() < COHORT_SAMPLES {
            self.recent.insert(device.into(), value as f32);
        }
        self.changed = true;
    }

    pub(super) fn samples(&self) -> usize {
        self.recent.len()
    }

    /// The `p`th percentile for the window starting at `start`.
    pub(super) fn percentile(&mut self, p: f64, start: i64) -> Option<f64> {
        if let Some((at, cached_p, value)) = self.cached
            && (at == start || !self.changed)
            && cached_p == p
        {
            return Some(value);
        }
        let values: Vec<f64> = self.recent.values().map(|v| f64::from(*v)).collect();
        let value = percentile(&values, p)?;
        self.cached = Some((start, p, value));
        self.changed = false;
        Some(value)
    }
}
