//! OSV records (the Open Source Vulnerability format, schema 1.x): the fields matching reads,
//! parsed and checked. Unknown fields are ignored, as the schema asks of readers (it grows
//! by minor versions); what is read must be well formed.

use serde::{Deserialize, Serialize};

use crate::VulnError;

/// Largest OSV record accepted (the biggest published ones, Linux kernel records with
/// hundreds of commits, are under 1 MiB).
pub const MAX_RECORD_BYTES: usize = 4 * 1024 * 1024;
/// Most events in one range (published records have a few dozen at most).
pub const MAX_EVENTS: usize = 1024;
/// Longest version string in a record (real ones are under 100 characters; Maven's parser
/// nests a list per `-`, so an unbounded one could nest deep enough to exhaust the stack).
pub const MAX_VERSION_LEN: usize = 256;
/// Most entries in one `versions` list.
pub const MAX_LISTED_VERSIONS: usize = 100_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OsvRecord {
    pub id: String,
    #[serde(default)]
    pub modified: String,
    #[serde(default)]
    pub published: Option<String>,
    /// Set when the record was withdrawn: matching ignores it.
    #[serde(default)]
    pub withdrawn: Option<String>,
    #[serde(default)]
    pub aliases: Vec<String>,
    #[serde(default)]
    pub upstream: Vec<String>,
    #[serde(default)]
    pub related: Vec<String>,
    #[serde(default)]
    pub summary: Option<String>,
    #[serde(default)]
    pub details: Option<String>,
    #[serde(default)]
    pub severity: Vec<Severity>,
    #[serde(default)]
    pub affected: Vec<Affected>,
    #[serde(default)]
    pub references: Vec<Reference>,
    /// The database's own fields; GitHub's advisories put their severity here.
    #[serde(default)]
    pub database_specific: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Severity {
    #[serde(rename = "type")]
    pub kind: String,
    pub score: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reference {
    #[serde(rename = "type")]
    pub kind: String,
    pub url: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Affected {
    #[serde(default)]
    pub package: Option<Package>,
    #[serde(default)]
    pub severity: Vec<Severity>,
    #[serde(default)]
    pub ranges: Vec<Range>,
    #[serde(default)]
    pub versions: Vec<String>,
    /// Distributions (Debian, Ubuntu, Alpine) put their urgency here.
    #[serde(default)]
    pub ecosystem_specific: Option<serde_json::Value>,
    #[serde(default)]
    pub database_specific: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Package {
    pub ecosystem: String,
    pub name: String,
    #[serde(default)]
    pub purl: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RangeKind {
    #[serde(rename = "SEMVER")]
    Semver,
    #[serde(rename = "ECOSYSTEM")]
    Ecosystem,
    #[serde(rename = "GIT")]
    Git,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Range {
    #[serde(rename = "type")]
    pub kind: RangeKind,
    #[serde(default)]
    pub repo: Option<String>,
    pub events: Vec<Event>,
}

/// One event of a range: exactly one of the four fields is set (checked when parsed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub introduced: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_affected: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<String>,
}

/// What an event says, once checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind<'a> {
    Introduced(&'a str),
    Fixed(&'a str),
    LastAffected(&'a str),
    Limit(&'a str),
}

impl Event {
    pub fn kind(&self) -> Option<EventKind<'_>> {
        match (
            self.introduced.as_deref(),
            self.fixed.as_deref(),
            self.last_affected.as_deref(),
            self.limit.as_deref(),
        ) {
            (Some(v), None, None, None) => Some(EventKind::Introduced(v)),
            (None, Some(v), None, None) => Some(EventKind::Fixed(v)),
            (None, None, Some(v), None) => Some(EventKind::LastAffected(v)),
            (None, None, None, Some(v)) => Some(EventKind::Limit(v)),
            _ => None,
        }
    }
}

impl OsvRecord {
    /// Parse and check one record.
    pub fn parse(bytes: &[u8]) -> Result<Self, VulnError> {
        if bytes.len() > MAX_RECORD_BYTES {
            return Err(VulnError::TooLarge {
                what: "OSV record",
                limit: MAX_RECORD_BYTES,
            });
        }
        let record: OsvRecord =
            serde_json::from_slice(bytes).map_err(|e| VulnError::Malformed {
                what: "OSV record",
                line: e.line(),
                reason: e.to_string(),
            })?;
        record.check()?;
        Ok(record)
    }

    fn check(&self) -> Result<(), VulnError> {
        let bad = |reason: String| VulnError::InvalidRecord {
            id: self.id.chars().take(128).collect(),
            reason,
        };
        if self.id.is_empty() || self.id.len() > 128 || self.id.chars().any(char::is_control) {
            return Err(bad("`id` must be 1 to 128 printable characters".into()));
        }
        // Stored fields: bounded, and no control characters (PostgreSQL refuses NUL in text).
        let plain = |text: &str, max: usize| {
            !text.is_empty() && text.len() <= max && !text.chars().any(char::is_control)
        };
        if !self.modified.is_empty() && !plain(&self.modified, 64) {
            return Err(bad("`modified` must be a timestamp".into()));
        }
        if let Some(summary) = &self.summary
            && !summary.is_empty()
            && !plain(summary, 4096)
        {
            return Err(bad(
                "`summary` must be one line of at most 4096 bytes".into()
            ));
        }
        if let Some(alias) = self.aliases.iter().find(|a| !plain(a, 128)) {
            return Err(bad(format!(
                "alias `{}` must be 1 to 128 printable characters",
                alias
                    .chars()
                    .filter(|c| !c.is_control())
                    .take(40)
                    .collect::<String>()
            )));
        }
        for (i, affected) in self.affected.iter().enumerate() {
            if let Some(p) = &affected.package
                && (!plain(&p.ecosystem, 256) || !plain(&p.name, 1024))
            {
                return Err(bad(format!(
                    "affected[{i}].package needs an ecosystem and a name, printable and bounded"
                )));
            }
            if affected.versions.len() > MAX_LISTED_VERSIONS
                || affected.versions.iter().any(|v| v.len() > MAX_VERSION_LEN)
            {
                return Err(bad(format!(
                    "affected[{i}].versions: at most {MAX_LISTED_VERSIONS} versions of at most {MAX_VERSION_LEN} bytes"
                )));
            }
            for (j, range) in affected.ranges.iter().enumerate() {
                if range.events.len() > MAX_EVENTS {
                    return Err(bad(format!(
                        "affected[{i}].ranges[{j}] has {} events (at most {MAX_EVENTS})",
                        range.events.len()
                    )));
                }
                let kinds: Vec<_> = range.events.iter().map(Event::kind).collect();
                let long = |k: &Option<EventKind<'_>>| match k {
                    Some(
                        EventKind::Introduced(v)
                        | EventKind::Fixed(v)
                        | EventKind::LastAffected(v)
                        | EventKind::Limit(v),
                    ) => v.len() > MAX_VERSION_LEN,
                    None => false,
                };
                if kinds.iter().any(long) {
                    return Err(bad(format!(
                        "affected[{i}].ranges[{j}]: versions are at most {MAX_VERSION_LEN} bytes"
                    )));
                }
                if let Some(k) = kinds.iter().position(Option::is_none) {
                    return Err(bad(format!(
                        "affected[{i}].ranges[{j}].events[{k}] must hold exactly one of introduced, fixed, last_affected, limit"
                    )));
                }
                if !kinds
                    .iter()
                    .any(|k| matches!(k, Some(EventKind::Introduced(_))))
                {
                    return Err(bad(format!(
                        "affected[{i}].ranges[{j}] has no `introduced` event"
                    )));
                }
                let fixed = kinds.iter().any(|k| matches!(k, Some(EventKind::Fixed(_))));
                let last = kinds
                    .iter()
                    .any(|k| matches!(k, Some(EventKind::LastAffected(_))));
                if fixed && last {
                    return Err(bad(format!(
                        "affected[{i}].ranges[{j}] has both `fixed` and `last_affected` events"
                    )));
                }
                if range.kind == RangeKind::Git && range.repo.is_none() {
                    return Err(bad(format!(
                        "affected[{i}].ranges[{j}] is GIT without a `repo`"
                    )));
                }
            }
        }
        Ok(())
    }

    /// Every identifier this record is known by: its id and its aliases.
    pub fn identifiers(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.id.as_str()).chain(self.aliases.iter().map(String::as_str))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_records_are_refused_with_the_reason() {
        let cases = [
            (
                r#"{"id": "X-1", "affected": [{"ranges": [{"type": "SEMVER", "events": [{"introduced": "0", "fixed": "1.0.0"}]}]}]}"#,
                "exactly one",
            ),
            (
                r#"{"id": "X-1", "affected": [{"ranges": [{"type": "SEMVER", "events": [{"fixed": "1.0.0"}]}]}]}"#,
                "no `introduced`",
            ),
            (
                r#"{"id": "X-1", "affected": [{"ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "1"}, {"last_affected": "2"}]}]}]}"#,
                "both",
            ),
            (
                r#"{"id": "X-1", "affected": [{"ranges": [{"type": "GIT", "events": [{"introduced": "0"}]}]}]}"#,
                "without a `repo`",
            ),
            (
                r#"{"id": "X-1", "affected": [{"ranges": [{"type": "RANGE", "events": []}]}]}"#,
                "unknown variant",
            ),
            (r#"{"id": ""}"#, "`id`"),
            ("{\"id\": \"X-1\",\n \"affected\": 7}", "line 2"),
            (r#"{"id": "X-1", "summary": "a\u0000b"}"#, "`summary`"),
            (r#"{"id": "X-1", "aliases": [""]}"#, "alias"),
        ];
        for (json, words) in cases {
            let e = OsvRecord::parse(json.as_bytes()).unwrap_err().to_string();
            assert!(e.contains(words), "{json}: {e}");
        }
        let long = format!(
            r#"{{"id": "X-1", "affected": [{{"package": {{"ecosystem": "Maven", "name": "a:b"}}, "ranges": [{{"type": "ECOSYSTEM", "events": [{{"introduced": "{}"}}]}}]}}]}}"#,
            "1-".repeat(200)
        );
        let e = OsvRecord::parse(long.as_bytes()).unwrap_err().to_string();
        assert!(e.contains("at most 256 bytes"), "{e}");
        let big = vec![b' '; MAX_RECORD_BYTES + 1];
        assert!(matches!(
            OsvRecord::parse(&big),
            Err(VulnError::TooLarge { .. })
        ));
    }
}
