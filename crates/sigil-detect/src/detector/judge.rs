//! Judging a window against its behaviour's criterion, and saying why.

use super::state::{BehaviourState, CohortState};
use super::{AlarmEvent, CohortExplanation, Explanation, Transition};
use crate::profile::{Behaviour, Criterion};

pub(super) enum Verdict {
    Normal(Explanation),
    Abnormal(Explanation),
}

/// What judging needs besides the device's own state.
pub(super) struct Context<'a> {
    pub(super) device: &'a str,
    pub(super) profile: &'a str,
    pub(super) behaviour: &'a Behaviour,
    pub(super) cohort: &'a mut CohortState,
    pub(super) cohort_key: &'a str,
    /// The time now: the datapoint's, or the tick's.
    pub(super) now_ms: i64,
    pub(super) events: &'a mut Vec<AlarmEvent>,
}

impl Context<'_> {
    fn explanation(
        &self,
        state: &BehaviourState,
        value: f64,
        criterion: &'static str,
    ) -> Explanation {
        Explanation {
            aggregate: self.behaviour.aggregate(),
            window_seconds: self.behaviour.window_seconds,
            window_start_ms: state.start,
            value,
            criterion,
            threshold: None,
            baseline: None,
            cohort: None,
            new_values: Vec::new(),
            known_values: None,
            summary: String::new(),
        }
    }

    /// The open window's value against the criterion (not `new_value`, judged per datapoint).
    pub(super) fn judge(&mut self, state: &mut BehaviourState) -> Verdict {
        let b = self.behaviour;
        let value = state.window.value(b.aggregate());
        let what = format!(
            "{} {} over {} s is {}",
            b.metric,
            aggregate_name(b),
            b.window_seconds,
            number(value)
        );
        match &b.criterion {
            Criterion::Static { above, below } => {
                let mut e = self.explanation(state, value, "static");
                let (abnormal, bound, word) = match (above, below) {
                    (Some(a), _) => (value > *a, *a, "above"),
                    (None, Some(l)) => (value < *l, *l, "below"),
                    (None, None) => (false, 0.0, "above"),
                };
                e.threshold = Some(bound);
                e.summary = format!(
                    "{what}, {}{word} the bound {}",
                    if abnormal { "" } else { "not " },
                    number(bound)
                );
                verdict(abnormal, e)
            }
            Criterion::Baseline {
                mads,
                min_samples,
                min_deviation,
                ..
            } => {
                let mut e = self.explanation(state, value, "baseline");
                let Some(r) = state
                    .baseline()
                    .filter(|r| r.samples >= *min_samples as usize)
                else {
                    e.summary = format!("{what}; the device's baseline is still being learnt");
                    return Verdict::Normal(e);
                };
                let threshold = r.median + mads * r.mad.max(*min_deviation);
                e.threshold = Some(threshold);
                e.baseline = Some(r);
                let abnormal = value > threshold;
                e.summary = format!(
                    "{what}, {}above {} = the device's median {} + {} × MAD {} over its last {} normal windows",
                    if abnormal { "" } else { "not " },
                    number(threshold),
                    number(r.median),
                    number(*mads),
                    number(r.mad.max(*min_deviation)),
                    r.samples
                );
                verdict(abnormal, e)
            }
            Criterion::Cohort {
                percentile: p,
                factor,
                min_samples,
                floor,
                ..
            } => {
                let mut e = self.explanation(state, value, "cohort");
                let samples = self.cohort.samples();
                let cohort_value = self.cohort.percentile(*p, state.start);
                let Some(pv) = cohort_value.filter(|_| samples >= *min_samples as usize) else {
                    e.summary =
                        format!("{what}; the cohort has {samples} windows, too few to compare");
                    return Verdict::Normal(e);
                };
                let threshold = (pv * factor).max(*floor);
                e.threshold = Some(threshold);
                e.cohort = Some(CohortExplanation {
                    cohort: self.cohort_key.to_owned(),
                    percentile: *p,
                    percentile_value: pv,
                    factor: *factor,
                    samples,
                });
                let abnormal = value > threshold;
                e.summary = format!(
                    "{what}, {}above {} = max({} × p{} of the latest normal window of the cohort's {} devices ({}), floor {})",
                    if abnormal { "" } else { "not " },
                    number(threshold),
                    number(*factor),
                    number(*p),
                    samples,
                    number(pv),
                    number(*floor)
                );
                verdict(abnormal, e)
            }
            Criterion::NewValue { .. } => Verdict::Normal(self.new_value_explanation(state, &[])),
        }
    }

    pub(super) fn new_value_explanation(
        &self,
        state: &BehaviourState,
        unknown: &[String],
    ) -> Explanation {
        let mut e = self.explanation(state, unknown.len() as f64, "new_value");
        // Bounded: an alarm's explanation goes into the database, the audit log and webhooks.
        e.new_values = unknown.iter().take(32).cloned().collect();
        e.known_values = Some(state.known.len());
        e.summary = if unknown.is_empty() {
            format!(
                "{} shows only names learnt ({} known)",
                self.behaviour.metric,
                state.known.len()
            )
        } else {
            format!(
                "{} shows {}{} never seen while learning ({} known)",
                self.behaviour.metric,
                unknown
                    .iter()
                    .take(8)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", "),
                if unknown.len() > 8 {
                    format!(" and {} more", unknown.len() - 8)
                } else {
                    String::new()
                },
                state.known.len()
            )
        };
        e
    }

    pub(super) fn emit(&mut self, transition: Transition, explanation: Explanation) {
        let b = self.behaviour;
        // Raised as soon as it is known; cleared when the window that cleared it ended.
        let window_end = explanation.window_start_ms + i64::from(b.window_seconds) * 1000;
        let at_ms = self.now_ms.min(window_end);
        self.events.push(AlarmEvent {
            device: self.device.to_owned(),
            profile: self.profile.to_owned(),
            behaviour: b.name.clone(),
            metric: b.metric,
            transition,
            severity: b.severity,
            mitigation: b.mitigation,
            suppressed: b.suppress,
            at_ms,
            explanation,
        });
    }
}

fn verdict(abnormal: bool, e: Explanation) -> Verdict {
    if abnormal {
        Verdict::Abnormal(e)
    } else {
        Verdict::Normal(e)
    }
}

fn aggregate_name(b: &Behaviour) -> &'static str {
    match b.aggregate() {
        crate::profile::Aggregate::Sum => "sum",
        crate::profile::Aggregate::Count => "count",
        crate::profile::Aggregate::Max => "max",
        crate::profile::Aggregate::Min => "min",
        crate::profile::Aggregate::Avg => "average",
        crate::profile::Aggregate::Distinct => "distinct",
    }
}

/// Numbers for people: integers without a fraction, others to two places.
fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v:.2}")
    }
}
