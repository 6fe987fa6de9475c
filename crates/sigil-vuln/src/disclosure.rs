//! Coordinated vulnerability disclosure (CRA Annex I Part II (5) and (6), ETSI EN 303 645
//! 5.2): the policy and contact a product publishes as an RFC 9116 `security.txt`, the reports
//! reporters send, their deadlines, and the advisory (an OSV record) an accepted report
//! becomes so that the ordinary matching finds the devices it affects.
//!
//! Written here: no kept crate writes `security.txt`, and what goes into one comes from an
//! operator, so every value is checked to be one line of the kind its field takes (a newline in
//! a contact would add a field of the attacker's choosing).

use serde::{Deserialize, Serialize};
use serde_json::json;
use time::{Duration, OffsetDateTime};

use crate::osv::OsvRecord;
use crate::purl::package_ref;

/// The id prefix of Sigil's own advisories (accepted reports): no imported record may take
/// one, or a feed could rewrite an advisory.
pub const ADVISORY_PREFIX: &str = "SIGIL-";

/// Refuse an imported record that claims an id of Sigil's own advisories.
pub fn not_an_advisory_id(record: &OsvRecord) -> Result<(), crate::VulnError> {
    if record.id.starts_with(ADVISORY_PREFIX) {
        return Err(crate::VulnError::InvalidRecord {
            id: record.id.clone(),
            reason: format!("the {ADVISORY_PREFIX} prefix is reserved for Sigil's own advisories"),
        });
    }
    Ok(())
}

/// Longest value of one `security.txt` field, and most values of a repeatable one.
pub const MAX_FIELD_CHARS: usize = 500;
pub const MAX_CONTACTS: usize = 8;
/// RFC 9116 2.5.5: an `Expires` less than a year ahead is recommended; Sigil refuses more, so
/// a published file is reviewed at least yearly.
pub const MAX_EXPIRY_DAYS: i64 = 366;
/// Limits of a report, in characters.
pub const MAX_SUMMARY_CHARS: usize = 200;
pub const MAX_DETAILS_CHARS: usize = 16_000;
pub const MAX_SHORT_CHARS: usize = 300;

/// Days to acknowledge a report and to decide it, unless a policy says otherwise (ISO/IEC
/// 29147 asks for a prompt acknowledgement; these are common CVD policy values).
pub const DEFAULT_ACKNOWLEDGE_DAYS: u32 = 5;
pub const DEFAULT_TRIAGE_DAYS: u32 = 30;

fn default_acknowledge_days() -> u32 {
    DEFAULT_ACKNOWLEDGE_DAYS
}
fn default_triage_days() -> u32 {
    DEFAULT_TRIAGE_DAYS
}

/// A product's (or the organisation's) disclosure policy: what its `security.txt` says, and
/// the days it promises reporters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DisclosurePolicy {
    /// Where to report: `mailto:`, `https:` or `tel:` URIs, in order of preference.
    pub contacts: Vec<String>,
    /// When the file stops being valid (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    pub expires: OffsetDateTime,
    /// The disclosure policy document (`https:`).
    #[serde(default)]
    pub policy: Option<String>,
    /// A key to encrypt reports with (`https:`, `dns:` or `openpgp4fpr:`).
    #[serde(default)]
    pub encryption: Option<String>,
    #[serde(default)]
    pub acknowledgments: Option<String>,
    /// RFC 5646 language tags (`en`, `de-AT`).
    #[serde(default)]
    pub preferred_languages: Vec<String>,
    /// The CSAF provider metadata (`https:`, ending `provider-metadata.json`).
    #[serde(default)]
    pub csaf: Option<String>,
    /// Days to acknowledge a report, and to decide it (accept or reject), from its receipt.
    #[serde(default = "default_acknowledge_days")]
    pub acknowledge_days: u32,
    #[serde(default = "default_triage_days")]
    pub triage_days: u32,
}

/// Why a policy, a report or an advisory is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct DisclosureError {
    pub field: &'static str,
    pub reason: String,
}

fn refuse(field: &'static str, reason: impl Into<String>) -> DisclosureError {
    DisclosureError {
        field,
        reason: reason.into(),
    }
}

/// Characters that end a line or reorder text for some reader though Rust does not call them
/// control characters: Unicode's line and paragraph separators (Python's `splitlines` and many
/// viewers break there) and the bidirectional overrides and isolates.
fn breaks_or_reorders(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}')
}

/// One line of printable text: no control characters (a newline would start a new field).
fn one_line(field: &'static str, value: &str, max: usize) -> Result<(), DisclosureError> {
    if value.trim().is_empty() {
        return Err(refuse(field, "must not be empty"));
    }
    if value.chars().count() > max {
        return Err(refuse(field, format!("longer than {max} characters")));
    }
    if value.chars().any(breaks_or_reorders) {
        return Err(refuse(field, "must be one line without control characters"));
    }
    Ok(())
}

/// A URI of one of `schemes`, with no whitespace (RFC 3986 has none).
fn uri(field: &'static str, value: &str, schemes: &[&str]) -> Result<(), DisclosureError> {
    one_line(field, value, MAX_FIELD_CHARS)?;
    if value.chars().any(char::is_whitespace) {
        return Err(refuse(field, "a URI has no spaces"));
    }
    let ok = schemes.iter().any(|s| {
        value
            .get(..s.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(s))
            && value.len() > s.len()
    });
    if !ok {
        return Err(refuse(
            field,
            format!("`{value}` must begin with {}", schemes.join(" or ")),
        ));
    }
    if value.to_ascii_lowercase().starts_with("https://") && value.len() <= "https://".len() + 1 {
        return Err(refuse(field, "an https URI needs a host"));
    }
    Ok(())
}

/// An RFC 5646 language tag, as far as its shape goes: letters, digits and hyphens, a
/// primary language of 2 to 8 letters.
fn language_tag(tag: &str) -> bool {
    let mut parts = tag.split('-');
    let primary = parts.next().unwrap_or_default();
    (2..=8).contains(&primary.len())
        && primary.chars().all(|c| c.is_ascii_alphabetic())
        && parts.all(|p| (1..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphanumeric()))
}

impl DisclosurePolicy {
    /// Whether the policy can be published at `now`.
    pub fn check(&self, now: OffsetDateTime) -> Result<(), DisclosureError> {
        if self.contacts.is_empty() {
            return Err(refuse("contacts", "at least one contact is required"));
        }
        if self.contacts.len() > MAX_CONTACTS {
            return Err(refuse(
                "contacts",
                format!("at most {MAX_CONTACTS} contacts"),
            ));
        }
        for c in &self.contacts {
            uri("contacts", c, &["mailto:", "https://", "tel:"])?;
        }
        if self.expires <= now {
            return Err(refuse("expires", "must be in the future"));
        }
        if self.expires > now + Duration::days(MAX_EXPIRY_DAYS) {
            return Err(refuse(
                "expires",
                "must be less than a year ahead (RFC 9116 2.5.5): review the policy yearly",
            ));
        }
        for (field, value) in [
            ("policy", &self.policy),
            ("acknowledgments", &self.acknowledgments),
            ("csaf", &self.csaf),
        ] {
            if let Some(v) = value {
                uri(field, v, &["https://"])?;
            }
        }
        if let Some(v) = &self.encryption {
            uri("encryption", v, &["https://", "dns:", "openpgp4fpr:"])?;
        }
        if let Some(v) = &self.csaf
            && !v.ends_with("/provider-metadata.json")
        {
            return Err(refuse(
                "csaf",
                "must point to a provider-metadata.json file (CSAF 2.0 7.1.8)",
            ));
        }
        if self.preferred_languages.len() > MAX_CONTACTS {
            return Err(refuse("preferred_languages", "at most 8 languages"));
        }
        if let Some(bad) = self.preferred_languages.iter().find(|t| !language_tag(t)) {
            return Err(refuse(
                "preferred_languages",
                format!("`{bad}` is not an RFC 5646 language tag"),
            ));
        }
        for (field, days) in [
            ("acknowledge_days", self.acknowledge_days),
            ("triage_days", self.triage_days),
        ] {
            if !(1..=365).contains(&days) {
                return Err(refuse(field, "from 1 to 365 days"));
            }
        }
        if self.triage_days < self.acknowledge_days {
            return Err(refuse(
                "triage_days",
                "a report cannot be decided before it is acknowledged",
            ));
        }
        Ok(())
    }

    /// The RFC 9116 file: one field per line, each line ending in LF, `Canonical` first when
    /// the public URLs are known. Call on a checked policy.
    pub fn security_txt(&self, title: &str, canonical: &[String]) -> String {
        let mut out = String::new();
        // A comment names what the file covers; `#` lines are ignored by parsers (2.3).
        let title: String = title.chars().filter(|c| !breaks_or_reorders(*c)).collect();
        out.push_str(&format!("# Vulnerability disclosure: {title}\n"));
        let mut field = |name: &str, value: &str| {
            out.push_str(name);
            out.push_str(": ");
            out.push_str(value);
            out.push('\n');
        };
        for c in canonical {
            field("Canonical", c);
        }
        for c in &self.contacts {
            field("Contact", c);
        }
        field("Expires", &rfc3339_seconds(self.expires));
        if let Some(v) = &self.encryption {
            field("Encryption", v);
        }
        if let Some(v) = &self.policy {
            field("Policy", v);
        }
        if let Some(v) = &self.acknowledgments {
            field("Acknowledgments", v);
        }
        if !self.preferred_languages.is_empty() {
            field("Preferred-Languages", &self.preferred_languages.join(", "));
        }
        if let Some(v) = &self.csaf {
            field("CSAF", v);
        }
        out
    }
}

/// `2027-06-01T00:00:00Z`: RFC 3339 in UTC, whole seconds (what RFC 9116 parsers expect).
pub fn rfc3339_seconds(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// A vulnerability report, as a reporter sends it or an operator enters it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Submission {
    pub product: String,
    /// One line.
    pub summary: String,
    /// What is wrong and how to reproduce it (lines and tabs allowed).
    pub details: String,
    /// The firmware versions or component the reporter saw it in, as they say it.
    #[serde(default)]
    pub affected: Option<String>,
    /// How to reach the reporter (optional: reports may be anonymous).
    #[serde(default)]
    pub reporter: Option<String>,
    /// A CVSS v3.x or v4.0 vector, if the reporter scored it.
    #[serde(default)]
    pub cvss: Option<String>,
    /// The reporter knows it to be actively exploited.
    #[serde(default)]
    pub exploited: bool,
}

impl Submission {
    pub fn check(&self) -> Result<(), DisclosureError> {
        one_line("summary", &self.summary, MAX_SUMMARY_CHARS)?;
        if self.details.trim().is_empty() {
            return Err(refuse("details", "must not be empty"));
        }
        if self.details.chars().count() > MAX_DETAILS_CHARS {
            return Err(refuse(
                "details",
                format!("longer than {MAX_DETAILS_CHARS} characters"),
            ));
        }
        if self
            .details
            .chars()
            .any(|c| breaks_or_reorders(c) && c != '\n' && c != '\t' && c != '\r')
        {
            return Err(refuse(
                "details",
                "control characters other than line breaks and tabs",
            ));
        }
        for (field, value) in [("affected", &self.affected), ("reporter", &self.reporter)] {
            if let Some(v) = value {
                one_line(field, v, MAX_SHORT_CHARS)?;
            }
        }
        if let Some(v) = &self.cvss {
            check_vector(v)?;
        }
        Ok(())
    }
}

fn check_vector(v: &str) -> Result<(), DisclosureError> {
    one_line("cvss", v, MAX_SHORT_CHARS)?;
    v.parse::<cvss::Cvss>()
        .map(|_| ())
        .map_err(|e| refuse("cvss", format!("not a CVSS v3.x or v4.0 vector: {e}")))
}

/// When a report must be acknowledged and decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportClock {
    pub acknowledge_by: OffsetDateTime,
    pub decide_by: OffsetDateTime,
}

impl ReportClock {
    pub fn new(received: OffsetDateTime, acknowledge_days: u32, triage_days: u32) -> Self {
        Self {
            acknowledge_by: received + Duration::days(i64::from(acknowledge_days)),
            decide_by: received + Duration::days(i64::from(triage_days)),
        }
    }
}

/// What an operator decides an accepted report affects: a component (by package URL, any
/// version in it ignored) and its affected versions, in that package ecosystem's order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdvisorySpec {
    /// `pkg:cargo/mqtt-client`, `pkg:deb/debian/openssl?distro=debian-12`.
    pub component: String,
    /// First affected version (`0`: every version before `fixed`).
    #[serde(default)]
    pub introduced: Option<String>,
    #[serde(default)]
    pub fixed: Option<String>,
    #[serde(default)]
    pub last_affected: Option<String>,
    /// Exactly these versions (with or without a range).
    #[serde(default)]
    pub versions: Vec<String>,
    #[serde(default)]
    pub cvss: Option<String>,
    /// CVE or other ids assigned to it.
    #[serde(default)]
    pub aliases: Vec<String>,
}

fn short_id(field: &'static str, v: &str) -> Result<(), DisclosureError> {
    one_line(field, v, 100)?;
    if v.chars().any(|c| c.is_whitespace()) {
        return Err(refuse(field, "no spaces"));
    }
    Ok(())
}

impl AdvisorySpec {
    /// The OSV record of the advisory `id`, checked as an imported one would be, and every
    /// version it names parsed in the component's ecosystem.
    pub fn record(
        &self,
        id: &str,
        summary: &str,
        details: &str,
        published: OffsetDateTime,
    ) -> Result<(OsvRecord, String), DisclosureError> {
        let package = package_ref(&self.component)
            .ok_or_else(|| refuse("component", "not a package URL (pkg:type/name)"))?;
        if !package.osv_ecosystem {
            return Err(refuse(
                "component",
                "OSV has no ecosystem for this package type, so no version order to match on",
            ));
        }
        if package.ecosystem.needs_release() {
            return Err(refuse(
                "component",
                "name the distribution release with the `distro` qualifier",
            ));
        }
        if self.introduced.is_none()
            && self.fixed.is_none()
            && self.last_affected.is_none()
            && self.versions.is_empty()
        {
            return Err(refuse(
                "versions",
                "name the affected versions: introduced, fixed, last_affected or versions",
            ));
        }
        if self.fixed.is_some() && self.last_affected.is_some() {
            return Err(refuse(
                "fixed",
                "give fixed or last_affected, not both (OSV 1.6)",
            ));
        }
        if self.versions.len() > 1000 {
            return Err(refuse("versions", "at most 1000 versions"));
        }
        if self.aliases.len() > 20 {
            return Err(refuse("aliases", "at most 20 aliases"));
        }
        for a in &self.aliases {
            short_id("aliases", a)?;
        }
        let ecosystem = package.ecosystem.clone();
        let named = self
            .introduced
            .iter()
            .filter(|v| v.as_str() != "0")
            .chain(self.fixed.iter())
            .chain(self.last_affected.iter())
            .chain(self.versions.iter());
        for v in named {
            short_id("versions", v)?;
            if let Some(Err(e)) = ecosystem.version(v) {
                return Err(refuse("versions", e.to_string()));
            }
        }
        let ranged =
            self.introduced.is_some() || self.fixed.is_some() || self.last_affected.is_some();
        if ranged && ecosystem.version("1").is_none() {
            return Err(refuse(
                "versions",
                format!("Sigil cannot order {ecosystem} versions: list them in `versions`"),
            ));
        }
        let mut events = Vec::new();
        if self.introduced.is_some() || self.fixed.is_some() || self.last_affected.is_some() {
            events.push(json!({"introduced": self.introduced.as_deref().unwrap_or("0")}));
            if let Some(f) = &self.fixed {
                events.push(json!({"fixed": f}));
            }
            if let Some(l) = &self.last_affected {
                events.push(json!({"last_affected": l}));
            }
        }
        let mut affected = json!({
            "package": {"ecosystem": ecosystem.to_string(), "name": package.name},
            "versions": self.versions,
        });
        if !events.is_empty() {
            affected["ranges"] = json!([{"type": "ECOSYSTEM", "events": events}]);
        }
        let stamp = rfc3339_seconds(published);
        let mut record = json!({
            "schema_version": "1.6.0",
            "id": id,
            "modified": stamp,
            "published": stamp,
            "aliases": self.aliases,
            "summary": summary,
            "details": details,
            "affected": [affected],
            "database_specific": {"source": "sigil-disclosure"},
        });
        if let Some(v) = &self.cvss {
            check_vector(v)?;
            let kind = if v.starts_with("CVSS:4") {
                "CVSS_V4"
            } else {
                "CVSS_V3"
            };
            record["severity"] = json!([{"type": kind, "score": v}]);
        }
        let text = record.to_string();
        let parsed =
            OsvRecord::parse(text.as_bytes()).map_err(|e| refuse("advisory", e.to_string()))?;
        Ok((parsed, text))
    }
}
