//! Whether an installed package version is affected by an OSV record, with OSV's semantics
//! (the schema's `IsVulnerable`): a version is affected if the `versions` list names it, or
//! if, in one of the ranges and below one of its limits, the last event at or below it
//! (events sorted in the range's order, `introduced: "0"` first) introduced the
//! vulnerability and no `fixed` at or below it, nor `last_affected` below it, came after.
//!
//! No kept crate does this (osv-scanner is Go): written here. A record's ranges are compiled
//! once (event versions parsed in the ecosystem's order) and then matched against many
//! installed versions.

use std::cmp::Ordering;

use crate::ecosystem::{Ecosystem, Version, semver_version};
use crate::osv::{Affected, EventKind, OsvRecord, RangeKind};

/// The answer for one installed version and one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    NotAffected,
    /// Affected; `fixed` is the first version that fixes it above the installed one, if the
    /// record names one.
    Affected {
        fixed: Option<String>,
    },
    /// The record's data does not let Sigil decide (a GIT range, an order Sigil does not
    /// know, a version that does not parse): said, never guessed.
    CannotDecide {
        reason: String,
    },
}

/// A bound of a range: below everything (`introduced: "0"`), a version, or above
/// everything (`limit: "*"`).
#[derive(Debug, Clone)]
enum Bound {
    Zero,
    At(Version, String),
    Infinity,
}

impl Bound {
    fn compare(&self, v: &Version) -> Ordering {
        match self {
            Bound::Zero => Ordering::Less,
            Bound::Infinity => Ordering::Greater,
            Bound::At(b, _) => b.compare(v).unwrap_or(Ordering::Equal),
        }
    }

    fn cmp_bound(&self, other: &Bound) -> Ordering {
        match (self, other) {
            (Bound::Zero, Bound::Zero) | (Bound::Infinity, Bound::Infinity) => Ordering::Equal,
            (Bound::Zero, _) | (_, Bound::Infinity) => Ordering::Less,
            (_, Bound::Zero) | (Bound::Infinity, _) => Ordering::Greater,
            (Bound::At(a, _), Bound::At(b, _)) => a.compare(b).unwrap_or(Ordering::Equal),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Introduced,
    Fixed,
    LastAffected,
}

/// How the versions of a range are ordered.
#[derive(Debug, Clone, Copy)]
enum Order {
    Semver,
    Ecosystem,
}

#[derive(Debug, Clone)]
enum CompiledRange {
    Ordered {
        order: Order,
        /// Sorted in the range's order (stable: equal versions keep the record's order).
        events: Vec<(Step, Bound)>,
        /// Empty: no limit (an implicit `*`).
        limits: Vec<Bound>,
    },
    Undecidable(String),
}

/// One `affected` entry of a record, ready to match.
#[derive(Debug, Clone)]
pub struct CompiledAffected {
    pub record_id: String,
    pub ecosystem: Ecosystem,
    /// As the ecosystem compares names.
    pub name: String,
    versions: Vec<String>,
    ranges: Vec<CompiledRange>,
}

fn parse_bound(order: Order, ecosystem: &Ecosystem, text: &str) -> Result<Version, String> {
    let parsed = match order {
        Order::Semver => Some(semver_version(text, "SEMVER")),
        Order::Ecosystem => ecosystem.version(text),
    };
    match parsed {
        Some(Ok(v)) => Ok(v),
        Some(Err(e)) => Err(e.to_string()),
        None => Err(format!(
            "Sigil does not know the version order of {ecosystem}"
        )),
    }
}

fn compile_range(
    ecosystem: &Ecosystem,
    kind: RangeKind,
    range: &crate::osv::Range,
) -> CompiledRange {
    let order = match kind {
        RangeKind::Git => {
            return CompiledRange::Undecidable(
                "a GIT range needs the repository's commit graph".into(),
            );
        }
        RangeKind::Semver => Order::Semver,
        RangeKind::Ecosystem => Order::Ecosystem,
    };
    let bound = |text: &str| -> Result<Bound, String> {
        parse_bound(order, ecosystem, text).map(|v| Bound::At(v, text.to_owned()))
    };
    let mut events = Vec::new();
    let mut limits = Vec::new();
    for event in &range.events {
        let compiled = match event.kind() {
            Some(EventKind::Introduced("0")) => Ok((Step::Introduced, Bound::Zero)),
            Some(EventKind::Introduced(v)) => bound(v).map(|b| (Step::Introduced, b)),
            Some(EventKind::Fixed(v)) => bound(v).map(|b| (Step::Fixed, b)),
            Some(EventKind::LastAffected(v)) => bound(v).map(|b| (Step::LastAffected, b)),
            Some(EventKind::Limit(v)) => {
                match if v.contains('*') {
                    Ok(Bound::Infinity)
                } else {
                    bound(v)
                } {
                    Ok(b) => {
                        limits.push(b);
                        continue;
                    }
                    Err(e) => Err(e),
                }
            }
            None => Err("an event without exactly one field".into()),
        };
        match compiled {
            Ok(e) => events.push(e),
            Err(reason) => {
                return CompiledRange::Undecidable(format!("the record's range: {reason}"));
            }
        }
    }
    sort_events(&mut events);
    CompiledRange::Ordered {
        order,
        events,
        limits,
    }
}

/// Sort events in the range's order, stably. By insertion, not `sort_by`: some orders are
/// not transitive on contrived versions (Maven's, as Maven has it), and the standard sort may
/// panic on such a comparator; a record must never crash the matcher. Ranges are short
/// (`osv::MAX_EVENTS`), so the quadratic worst case is bounded.
fn sort_events(events: &mut [(Step, Bound)]) {
    for i in 1..events.len() {
        let mut j = i;
        while j > 0 && events[j - 1].1.cmp_bound(&events[j].1).is_gt() {
            events.swap(j - 1, j);
            j -= 1;
        }
    }
}

impl CompiledAffected {
    pub fn compile(record: &OsvRecord, affected: &Affected) -> Option<Self> {
        let package = affected.package.as_ref()?;
        let ecosystem = Ecosystem::parse(&package.ecosystem);
        Some(Self {
            record_id: record.id.clone(),
            name: ecosystem.normalize_name(&package.name),
            versions: affected.versions.clone(),
            ranges: affected
                .ranges
                .iter()
                .map(|r| compile_range(&ecosystem, r.kind, r))
                .collect(),
            ecosystem,
        })
    }

    /// Whether `version` of the package this entry names is affected.
    pub fn evaluate(&self, version: &str) -> Verdict {
        let mut undecided = None;
        let mut listed = self.versions.iter().any(|v| v == version);
        let mut affected_fix = None;
        for range in &self.ranges {
            let (order, events, limits) = match range {
                CompiledRange::Undecidable(reason) => {
                    undecided.get_or_insert_with(|| reason.clone());
                    continue;
                }
                CompiledRange::Ordered {
                    order,
                    events,
                    limits,
                } => (*order, events, limits),
            };
            let installed = match parse_bound(order, &self.ecosystem, version) {
                Ok(v) => v,
                Err(e) => {
                    undecided.get_or_insert(format!("installed version: {e}"));
                    continue;
                }
            };
            if !listed {
                // A listed version is one the ranges name too, however it is spelled.
                listed = self.versions.iter().any(|l| {
                    parse_bound(order, &self.ecosystem, l)
                        .ok()
                        .and_then(|l| l.compare(&installed))
                        == Some(Ordering::Equal)
                });
            }
            if let Some(fix) = in_range(events, limits, &installed) {
                affected_fix = Some(fix);
                break;
            }
        }
        match (affected_fix, listed, undecided) {
            (Some(fixed), _, _) => Verdict::Affected { fixed },
            (None, true, _) => Verdict::Affected { fixed: None },
            (None, false, Some(reason)) => Verdict::CannotDecide { reason },
            (None, false, None) => Verdict::NotAffected,
        }
    }
}

/// `Some(first fix above v)` if `v` is in the range (below a limit, and the events leave it
/// vulnerable); `None` if not.
fn in_range(events: &[(Step, Bound)], limits: &[Bound], v: &Version) -> Option<Option<String>> {
    let below_a_limit = limits.is_empty() || limits.iter().any(|l| l.compare(v).is_gt());
    if !below_a_limit {
        return None;
    }
    let mut vulnerable = false;
    for (step, bound) in events {
        let at = bound.compare(v);
        match step {
            Step::Introduced if at.is_le() => vulnerable = true,
            Step::Fixed if at.is_le() => vulnerable = false,
            Step::LastAffected if at.is_lt() => vulnerable = false,
            _ => {}
        }
    }
    if !vulnerable {
        return None;
    }
    let fix = events.iter().find_map(|(step, bound)| match (step, bound) {
        (Step::Fixed, Bound::At(_, text)) if bound.compare(v).is_gt() => Some(text.clone()),
        _ => None,
    });
    Some(fix)
}

/// Every affected entry of `record` ready to match; none if it was withdrawn.
pub fn compile(record: &OsvRecord) -> Vec<CompiledAffected> {
    if record.withdrawn.is_some() {
        return Vec::new();
    }
    record
        .affected
        .iter()
        .filter_map(|a| CompiledAffected::compile(record, a))
        .collect()
}

/// The verdict of `record` on `version` of the package `name` in `ecosystem`: affected if
/// any entry for the package says so; undecided if none does and one could not decide.
pub fn evaluate(record: &OsvRecord, ecosystem: &Ecosystem, name: &str, version: &str) -> Verdict {
    let name = ecosystem.normalize_name(name);
    let mut verdict = Verdict::NotAffected;
    for entry in compile(record) {
        if entry.name != name || !entry.ecosystem.covers(ecosystem) {
            continue;
        }
        match entry.evaluate(version) {
            affected @ Verdict::Affected { .. } => return affected,
            undecided @ Verdict::CannotDecide { .. } => verdict = undecided,
            Verdict::NotAffected => {}
        }
    }
    verdict
}
