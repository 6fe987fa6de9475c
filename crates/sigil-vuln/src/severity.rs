//! How severe a vulnerability is, and how long an organisation gives itself to remediate it.
//!
//! Severity comes from the record: the highest CVSS base score among its vectors (v4.0 or
//! v3.x, scored by RustSec's `cvss`, the FIRST formulas), else the qualitative rating its
//! database gives (GitHub's `database_specific.severity`, a distribution's urgency). A record
//! with neither is `Unknown`, and an unknown severity gets the deadline of a high one: a
//! missing score is no reason to wait longer.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::OsvRecord;
use crate::osv::Severity as Vector;

/// CVSS's qualitative rating scale (v3.1 section 5, v4.0 section 6), plus `Unknown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SeverityLevel {
    Unknown,
    None,
    Low,
    Medium,
    High,
    Critical,
}

impl SeverityLevel {
    pub const ALL: [SeverityLevel; 6] = [
        Self::Critical,
        Self::High,
        Self::Medium,
        Self::Low,
        Self::None,
        Self::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::None => "none",
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }

    /// The rating of a base score.
    pub fn of_score(score: f64) -> Self {
        match score {
            s if s >= 9.0 => Self::Critical,
            s if s >= 7.0 => Self::High,
            s if s >= 4.0 => Self::Medium,
            s if s > 0.0 => Self::Low,
            _ => Self::None,
        }
    }

    /// A database's word for it: GitHub says `MODERATE`, Debian `medium`, Ubuntu `negligible`.
    pub fn of_rating(word: &str) -> Option<Self> {
        Some(match word.trim().to_ascii_lowercase().as_str() {
            "critical" => Self::Critical,
            "high" | "important" => Self::High,
            "medium" | "moderate" => Self::Medium,
            "low" | "negligible" | "unimportant" => Self::Low,
            "none" => Self::None,
            _ => return None,
        })
    }
}

impl fmt::Display for SeverityLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SeverityLevel {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|l| l.as_str() == s)
            .ok_or_else(|| {
                format!("unknown severity `{s}` (critical, high, medium, low, none, unknown)")
            })
    }
}

/// A record's severity: its rating and, when a CVSS vector gave it, the base score.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RecordSeverity {
    pub level: SeverityLevel,
    pub score: Option<f64>,
}

fn vector_score(v: &Vector) -> Option<f64> {
    match v.kind.as_str() {
        "CVSS_V3" | "CVSS_V4" => cvss::Cvss::from_str(&v.score).ok().map(|c| c.score()),
        _ => None,
    }
}

fn rating_in(value: Option<&serde_json::Value>) -> Option<SeverityLevel> {
    let value = value?;
    value
        .get("severity")
        .or_else(|| value.get("urgency"))
        .and_then(serde_json::Value::as_str)
        .and_then(SeverityLevel::of_rating)
}

/// The severity of `record`: the highest scored vector (the record's or an affected
/// package's), else the highest rating its database gives, else `Unknown`.
pub fn record_severity(record: &OsvRecord) -> RecordSeverity {
    let vectors = record
        .severity
        .iter()
        .chain(record.affected.iter().flat_map(|a| a.severity.iter()));
    let best = vectors
        .filter_map(vector_score)
        .fold(None, |best: Option<f64>, s| {
            Some(best.map_or(s, |b| b.max(s)))
        });
    if let Some(score) = best {
        return RecordSeverity {
            level: SeverityLevel::of_score(score),
            score: Some(score),
        };
    }
    let rated = std::iter::once(rating_in(record.database_specific.as_ref()))
        .chain(record.affected.iter().flat_map(|a| {
            [
                rating_in(a.ecosystem_specific.as_ref()),
                rating_in(a.database_specific.as_ref()),
            ]
        }))
        .flatten()
        .max();
    RecordSeverity {
        level: rated.unwrap_or(SeverityLevel::Unknown),
        score: None,
    }
}

/// Days to remediate, per severity, and for a known exploited vulnerability whatever its
/// severity (CISA's BOD 22-01 gives federal agencies 14 days for a KEV entry).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemediationPolicy {
    pub days: BTreeMap<SeverityLevel, u32>,
    pub known_exploited_days: u32,
}

/// Longest deadline a policy may set (ten years).
pub const MAX_REMEDIATION_DAYS: u32 = 3650;

impl Default for RemediationPolicy {
    fn default() -> Self {
        Self {
            days: BTreeMap::from([
                (SeverityLevel::Critical, 7),
                (SeverityLevel::High, 30),
                (SeverityLevel::Medium, 90),
                (SeverityLevel::Low, 180),
                (SeverityLevel::None, 365),
                (SeverityLevel::Unknown, 30),
            ]),
            known_exploited_days: 14,
        }
    }
}

impl RemediationPolicy {
    /// Every severity has a deadline of 1 to `MAX_REMEDIATION_DAYS` days.
    pub fn check(&self) -> Result<(), String> {
        let in_range = |d: u32| (1..=MAX_REMEDIATION_DAYS).contains(&d);
        for level in SeverityLevel::ALL {
            match self.days.get(&level) {
                None => return Err(format!("no deadline for `{level}` vulnerabilities")),
                Some(d) if !in_range(*d) => {
                    return Err(format!(
                        "`{level}`: {d} days is outside 1..={MAX_REMEDIATION_DAYS}"
                    ));
                }
                Some(_) => {}
            }
        }
        if !in_range(self.known_exploited_days) {
            return Err(format!(
                "known exploited: {} days is outside 1..={MAX_REMEDIATION_DAYS}",
                self.known_exploited_days
            ));
        }
        Ok(())
    }

    /// Days allowed for a vulnerability of `level`, the shorter KEV deadline if it is known
    /// to be exploited.
    pub fn days_for(&self, level: SeverityLevel, known_exploited: bool) -> u32 {
        let days = self.days.get(&level).copied().unwrap_or(30);
        if known_exploited {
            days.min(self.known_exploited_days)
        } else {
            days
        }
    }

    /// When a vulnerability first seen at `first_seen` must be remediated.
    pub fn deadline(
        &self,
        first_seen: OffsetDateTime,
        level: SeverityLevel,
        known_exploited: bool,
    ) -> OffsetDateTime {
        first_seen + Duration::days(i64::from(self.days_for(level, known_exploited)))
    }
}
