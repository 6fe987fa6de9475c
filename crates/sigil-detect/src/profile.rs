//! Security profiles as data: per product, the behaviours that are normal and what to do when a
//! device leaves them. A profile document is versioned and validated like an access policy.

use serde::{Deserialize, Serialize};

use crate::DetectError;
use crate::metric::{Metric, MetricKind};

/// The profiles Sigil ships, applied until an operator applies others.
pub const DEFAULT_PROFILES: &str = include_str!("../profiles/default.json");

/// A profile document: at most one profile without products (the default for every product no
/// other profile names) and each product in at most one profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileSet {
    pub profiles: Vec<Profile>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Product ids this profile watches; empty: every product no other profile names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub products: Vec<String>,
    pub behaviours: Vec<Behaviour>,
}

/// One behaviour: a metric aggregated over a window, a criterion for "abnormal", how many
/// windows in a row make an alarm and how many clear it, and the response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Behaviour {
    pub name: String,
    pub metric: Metric,
    #[serde(default = "default_window")]
    pub window_seconds: u32,
    /// How the window's datapoints combine; by default `sum` for counts, `max` for
    /// measurements and `distinct` for sets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregate: Option<Aggregate>,
    pub criterion: Criterion,
    #[serde(default = "one")]
    pub datapoints_to_alarm: u32,
    #[serde(default = "one")]
    pub datapoints_to_clear: u32,
    #[serde(default)]
    pub severity: Severity,
    #[serde(default)]
    pub mitigation: Mitigation,
    /// Alarms are recorded but neither notify nor mitigate (a behaviour being tuned).
    #[serde(default)]
    pub suppress: bool,
}

fn default_window() -> u32 {
    60
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregate {
    Sum,
    /// How many datapoints arrived.
    Count,
    Max,
    Min,
    Avg,
    /// How many different names a set metric showed.
    Distinct,
}

/// When a window's value is abnormal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Criterion {
    /// A fixed bound: above it (or below it).
    Static {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        above: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        below: Option<f64>,
    },
    /// Above `factor` × the `percentile` of the cohort's recent windows (devices of the same
    /// product, or product and site), once `min_samples` windows are known.
    Cohort {
        #[serde(default)]
        by: CohortBy,
        percentile: f64,
        #[serde(default = "one_f64")]
        factor: f64,
        #[serde(default = "twenty")]
        min_samples: u32,
        /// A value at or below this is never abnormal (a quiet cohort makes tiny thresholds).
        #[serde(default)]
        floor: f64,
    },
    /// Above the device's own median + `mads` × MAD over its last `samples` normal windows,
    /// once `min_samples` are known; the MAD counts as at least `min_deviation`.
    Baseline {
        mads: f64,
        #[serde(default = "sixty")]
        samples: u32,
        #[serde(default = "ten")]
        min_samples: u32,
        #[serde(default = "one_f64")]
        min_deviation: f64,
    },
    /// A name (port, address, address region) the device never showed while learning: its
    /// first `learn_datapoints` datapoints and at least `learn_seconds`. Addresses are
    /// compared by network prefix when `prefix_v4`/`prefix_v6` are set.
    NewValue {
        #[serde(default = "three")]
        learn_datapoints: u32,
        #[serde(default)]
        learn_seconds: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        prefix_v4: Option<u8>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        prefix_v6: Option<u8>,
    },
}

fn one_f64() -> f64 {
    1.0
}
fn twenty() -> u32 {
    20
}
fn sixty() -> u32 {
    60
}
fn ten() -> u32 {
    10
}
fn three() -> u32 {
    3
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CohortBy {
    #[default]
    Product,
    ProductAndSite,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Low,
    #[default]
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// What an alarm does by itself (an operator can always do the others).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mitigation {
    /// Record the alarm only.
    None,
    /// Record it and send the webhook.
    #[default]
    Notify,
    /// Notify, and put the device in quarantine: the access policy leaves it only its
    /// quarantine commands topic.
    Quarantine,
    /// Notify, and suspend the device (it loses all access until an operator reactivates it).
    Suspend,
    /// Notify, and revoke the device's certificates.
    Revoke,
}

impl Mitigation {
    pub fn as_str(self) -> &'static str {
        match self {
            Mitigation::None => "none",
            Mitigation::Notify => "notify",
            Mitigation::Quarantine => "quarantine",
            Mitigation::Suspend => "suspend",
            Mitigation::Revoke => "revoke",
        }
    }
}

impl Behaviour {
    /// The aggregate in force (the default for the metric's kind when none is given).
    pub fn aggregate(&self) -> Aggregate {
        self.aggregate.unwrap_or(match self.metric.kind() {
            MetricKind::Count => Aggregate::Sum,
            MetricKind::Gauge => Aggregate::Max,
            MetricKind::Set => Aggregate::Distinct,
        })
    }

    fn validate(&self) -> Result<(), String> {
        check_name(&self.name)?;
        if !(1..=86_400).contains(&self.window_seconds) {
            return Err("window_seconds: 1 to 86400".into());
        }
        for (field, n) in [
            ("datapoints_to_alarm", self.datapoints_to_alarm),
            ("datapoints_to_clear", self.datapoints_to_clear),
        ] {
            if !(1..=100).contains(&n) {
                return Err(format!("{field}: 1 to 100"));
            }
        }
        let unproven = matches!(
            self.metric,
            Metric::TlsRefusals | Metric::EstFailures | Metric::ApiAuthenticationFailures
        );
        if unproven && !matches!(self.mitigation, Mitigation::None | Mitigation::Notify) {
            return Err(format!(
                "{} counts refusals of clients that proved no identity (anyone can present a \
                 device's serial or id): its mitigation is notify at most",
                self.metric
            ));
        }
        let set = self.metric.kind() == MetricKind::Set;
        match (self.aggregate(), set) {
            (Aggregate::Distinct, false) => {
                return Err(format!(
                    "aggregate distinct needs a set metric; {} is a number",
                    self.metric
                ));
            }
            (a, true) if a != Aggregate::Distinct => {
                return Err(format!(
                    "{} is a set: its only aggregate is distinct",
                    self.metric
                ));
            }
            _ => {}
        }
        self.criterion.validate(set)
    }
}

impl Criterion {
    fn validate(&self, set_metric: bool) -> Result<(), String> {
        let finite = |name: &str, v: f64| {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                Err(format!("{name}: a finite, non-negative number"))
            }
        };
        match self {
            Criterion::Static { above, below } => match (above, below) {
                (Some(v), None) => finite("above", *v),
                (None, Some(v)) => finite("below", *v),
                _ => Err("static: exactly one of above and below".into()),
            },
            Criterion::Cohort {
                percentile,
                factor,
                min_samples,
                floor,
                ..
            } => {
                if !(50.0..=100.0).contains(percentile) {
                    return Err("cohort percentile: 50 to 100".into());
                }
                if !(factor.is_finite() && *factor >= 1.0) {
                    return Err("cohort factor: at least 1".into());
                }
                if !(5..=10_000).contains(min_samples) {
                    return Err("cohort min_samples: 5 to 10000".into());
                }
                finite("cohort floor", *floor)
            }
            Criterion::Baseline {
                mads,
                samples,
                min_samples,
                min_deviation,
            } => {
                if !(mads.is_finite() && *mads >= 1.0) {
                    return Err("baseline mads: at least 1".into());
                }
                if !(3..=1000).contains(samples) || !(3..=*samples.max(&3)).contains(min_samples) {
                    return Err("baseline samples: 3 to 1000, min_samples: 3 to samples".into());
                }
                if !(min_deviation.is_finite() && *min_deviation > 0.0) {
                    return Err("baseline min_deviation: above 0".into());
                }
                Ok(())
            }
            Criterion::NewValue {
                learn_datapoints,
                prefix_v4,
                prefix_v6,
                ..
            } => {
                if !set_metric {
                    return Err("new_value watches a set metric (ports, addresses)".into());
                }
                if !(1..=10_000).contains(learn_datapoints) {
                    return Err("new_value learn_datapoints: 1 to 10000".into());
                }
                if prefix_v4.is_some_and(|p| !(1..=32).contains(&p))
                    || prefix_v6.is_some_and(|p| !(1..=128).contains(&p))
                {
                    return Err("new_value prefix_v4: 1 to 32, prefix_v6: 1 to 128".into());
                }
                Ok(())
            }
        }
    }
}

fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!("name {name:?}: 1 to 64 of a-z, 0-9 and -"))
    }
}

/// Largest profile document accepted.
pub const MAX_PROFILE_DOCUMENT: usize = 256 * 1024;

impl ProfileSet {
    /// Parse and validate a profile document; the error names the profile and behaviour.
    pub fn parse(text: &str) -> Result<Self, DetectError> {
        if text.len() > MAX_PROFILE_DOCUMENT {
            return Err(DetectError::Profile(format!(
                "{} bytes; at most {MAX_PROFILE_DOCUMENT}",
                text.len()
            )));
        }
        let set: ProfileSet =
            serde_json::from_str(text).map_err(|e| DetectError::Profile(e.to_string()))?;
        set.validate()?;
        Ok(set)
    }

    pub fn default_set() -> Result<Self, DetectError> {
        Self::parse(DEFAULT_PROFILES)
    }

    fn validate(&self) -> Result<(), DetectError> {
        let bad = |s: String| Err(DetectError::Profile(s));
        if self.profiles.is_empty() || self.profiles.len() > 100 {
            return bad("profiles: 1 to 100".into());
        }
        let mut names = std::collections::BTreeSet::new();
        let mut products = std::collections::BTreeSet::new();
        let mut defaults = 0;
        for profile in &self.profiles {
            let at = |s: String| DetectError::Profile(format!("profile {:?}: {s}", profile.name));
            check_name(&profile.name).map_err(at)?;
            if !names.insert(profile.name.as_str()) {
                return bad(format!("profile {:?} appears twice", profile.name));
            }
            if profile.products.is_empty() {
                defaults += 1;
            }
            for product in &profile.products {
                if !products.insert(product.as_str()) {
                    return bad(format!("product {product:?} is in two profiles"));
                }
            }
            if profile.behaviours.is_empty() || profile.behaviours.len() > 64 {
                return Err(at("behaviours: 1 to 64".into()));
            }
            let mut behaviour_names = std::collections::BTreeSet::new();
            for b in &profile.behaviours {
                b.validate()
                    .map_err(|e| at(format!("behaviour {:?}: {e}", b.name)))?;
                if !behaviour_names.insert(b.name.as_str()) {
                    return Err(at(format!("behaviour {:?} appears twice", b.name)));
                }
            }
        }
        if defaults > 1 {
            return bad("at most one profile without products (the default)".into());
        }
        Ok(())
    }

    /// The profile watching devices of `product`: the one naming it, else the default.
    pub fn profile_for(&self, product: &str) -> Option<usize> {
        self.profiles
            .iter()
            .position(|p| p.products.iter().any(|x| x == product))
            .or_else(|| self.profiles.iter().position(|p| p.products.is_empty()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_profiles_validate() {
        let set = ProfileSet::default_set().unwrap();
        assert_eq!(set.profile_for("anything"), Some(0));
    }

    #[test]
    fn mistakes_are_refused_with_their_place() {
        let cases = [
            (r#"{"profiles": []}"#, "profiles: 1 to 100"),
            (
                r#"{"profiles": [{"name": "p", "behaviours": [{"name": "b", "metric": "bytes_in", "criterion": {"static": {}}}]}]}"#,
                r#"profile "p": behaviour "b": static: exactly one of above and below"#,
            ),
            (
                r#"{"profiles": [{"name": "p", "behaviours": [{"name": "b", "metric": "bytes_in", "criterion": {"new_value": {}}}]}]}"#,
                "new_value watches a set metric",
            ),
            (
                r#"{"profiles": [{"name": "p", "behaviours": [{"name": "b", "metric": "source_ip", "aggregate": "sum", "criterion": {"new_value": {}}}]}]}"#,
                "its only aggregate is distinct",
            ),
            (
                r#"{"profiles": [{"name": "p", "behaviours": [{"name": "b", "metric": "bytez", "criterion": {"static": {"above": 1}}}]}]}"#,
                "unknown variant `bytez`",
            ),
            (
                r#"{"profiles": [{"name": "p", "behaviours": [{"name": "b", "metric": "bytes_in", "criterion": {"static": {"above": 1}}, "window_seconds": 0}]}]}"#,
                "window_seconds: 1 to 86400",
            ),
            (
                r#"{"profiles": [{"name": "a", "behaviours": [{"name": "b", "metric": "bytes_in", "criterion": {"static": {"above": 1}}}]}, {"name": "c", "behaviours": [{"name": "b", "metric": "bytes_in", "criterion": {"static": {"above": 1}}}]}]}"#,
                "at most one profile without products",
            ),
            (
                r#"{"profiles": [{"name": "p", "behaviours": [{"name": "b", "metric": "bytes_in", "criterion": {"baseline": {"mads": 0.5}}}]}]}"#,
                "baseline mads: at least 1",
            ),
            (
                r#"{"profiles": [{"name": "p", "extra": 1, "behaviours": []}]}"#,
                "unknown field `extra`",
            ),
            (
                r#"{"profiles": [{"name": "p", "behaviours": [{"name": "b", "metric": "tls_refusals", "criterion": {"static": {"above": 1}}, "mitigation": "revoke"}]}]}"#,
                "its mitigation is notify at most",
            ),
        ];
        for (text, expected) in cases {
            let err = ProfileSet::parse(text).unwrap_err().to_string();
            assert!(
                err.contains(expected),
                "{text}\n -> {err}\n expected {expected}"
            );
        }
    }
}
