//! One audit entry and its canonical form.
//!
//! The leaf hashed into the tree is the entry's RFC 8785 (JCS) serialisation: keys sorted,
//! no insignificant whitespace, one spelling per number and string. Anyone can re-derive those
//! bytes from the JSON, so a verifier needs no Sigil code to check a leaf, and two honest
//! serialisers can never disagree about what was logged.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::macros::format_description;

use crate::AuditError;

/// Format version written into every entry.
pub const ENTRY_VERSION: u32 = 1;

/// Who did it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActorKind {
    /// A person or program holding an API token.
    Operator,
    /// A device authenticated by its certificate (or failing to).
    Device,
    /// Sigil itself: start-up, key creation, scheduled work.
    System,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Actor {
    pub kind: ActorKind,
    /// Token id for operators, device id for devices, a component name for the system.
    /// `unknown` when authentication itself failed.
    pub id: String,
}

impl Actor {
    pub fn system(component: &str) -> Self {
        Self {
            kind: ActorKind::System,
            id: component.to_owned(),
        }
    }
    pub fn operator(token_id: &str) -> Self {
        Self {
            kind: ActorKind::Operator,
            id: token_id.to_owned(),
        }
    }
    pub fn device(device_id: &str) -> Self {
        Self {
            kind: ActorKind::Device,
            id: device_id.to_owned(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The change or decision took effect.
    Success,
    /// Refused by a rule (lifecycle, key binding, policy).
    Denied,
    /// Refused because the request or credential was bad.
    Failure,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Denied => "denied",
            Outcome::Failure => "failure",
        }
    }
}

/// An event before the log has given it a sequence number.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    pub time: OffsetDateTime,
    pub actor: Actor,
    /// Dotted verb, e.g. `device.created`, `certificate.issued`, `auth.failed`.
    pub action: String,
    /// What it happened to, as `kind:id`, e.g. `device:0192…`, `certificate:3fa1…`.
    pub subject: String,
    pub outcome: Outcome,
    /// Action-specific facts. Never secrets. Large integers go in strings (JCS numbers are
    /// IEEE doubles).
    pub details: serde_json::Value,
}

impl AuditEvent {
    pub fn new(
        time: OffsetDateTime,
        actor: Actor,
        action: &str,
        subject: String,
        outcome: Outcome,
        details: serde_json::Value,
    ) -> Self {
        Self {
            time,
            actor,
            action: action.to_owned(),
            subject,
            outcome,
            details,
        }
    }

    /// The entry this event becomes at position `seq`.
    pub fn into_entry(self, seq: u64) -> AuditEntry {
        AuditEntry {
            v: ENTRY_VERSION,
            seq,
            time: format_time(self.time),
            actor: self.actor,
            action: self.action,
            subject: self.subject,
            outcome: self.outcome,
            details: self.details,
        }
    }
}

/// One logged event at its position in the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEntry {
    pub v: u32,
    /// Position in the log, from 0. Part of the hashed bytes, so moving an entry is detected
    /// even where the tree would not show it.
    pub seq: u64,
    /// UTC, RFC 3339 with exactly six fractional digits (sorts as text).
    pub time: String,
    pub actor: Actor,
    pub action: String,
    pub subject: String,
    pub outcome: Outcome,
    pub details: serde_json::Value,
}

impl AuditEntry {
    /// The canonical (RFC 8785) bytes: the leaf of the Merkle tree.
    pub fn to_canonical(&self) -> Result<String, AuditError> {
        serde_json_canonicalizer::to_string(self).map_err(|e| AuditError::Entry(e.to_string()))
    }

    /// Parse an entry, insisting the text is already canonical: a leaf has exactly one
    /// spelling, so an export cannot carry a re-formatted (and differently hashed) copy.
    pub fn from_canonical(text: &str) -> Result<Self, AuditError> {
        let entry: AuditEntry =
            serde_json::from_str(text).map_err(|e| AuditError::Entry(e.to_string()))?;
        if entry.v != ENTRY_VERSION {
            return Err(AuditError::Entry(format!(
                "unsupported entry version {}",
                entry.v
            )));
        }
        if entry.to_canonical()? != text {
            return Err(AuditError::NotCanonical);
        }
        Ok(entry)
    }

    /// The device this entry concerns: its subject, or `details.device`.
    pub fn device(&self) -> Option<&str> {
        self.subject
            .strip_prefix("device:")
            .or_else(|| self.details.get("device").and_then(|d| d.as_str()))
    }
}

/// The fixed-width UTC form used in entries, e.g. `2026-11-25T06:01:02.123456Z`.
pub fn format_time(t: OffsetDateTime) -> String {
    let utc = t.to_offset(time::UtcOffset::UTC);
    utc.format(format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
    ))
    // Formatting a valid UTC time with this description cannot fail; keep a readable fallback
    // rather than panic.
    .unwrap_or_else(|_| utc.unix_timestamp().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;
    use time::macros::datetime;

    fn sample() -> AuditEntry {
        AuditEvent::new(
            datetime!(2026-11-25 06:01:02.1234567 UTC),
            Actor::operator("tok-1"),
            "device.created",
            "device:abc".into(),
            Outcome::Success,
            json!({"serial_number": "SN-1", "z": 1.5, "a": [3, "é\n"]}),
        )
        .into_entry(7)
    }

    #[test]
    fn canonical_form_is_sorted_compact_and_stable() {
        let text = sample().to_canonical().unwrap();
        assert_eq!(
            text,
            r#"{"action":"device.created","actor":{"id":"tok-1","kind":"operator"},"details":{"a":[3,"é\n"],"serial_number":"SN-1","z":1.5},"outcome":"success","seq":7,"subject":"device:abc","time":"2026-11-25T06:01:02.123456Z","v":1}"#
        );
        assert_eq!(AuditEntry::from_canonical(&text).unwrap(), sample());
        assert_eq!(sample().device(), Some("abc"));
    }

    #[test]
    fn non_canonical_spellings_are_refused() {
        let text = sample().to_canonical().unwrap();
        let spaced = text.replacen(':', ": ", 1);
        assert!(matches!(
            AuditEntry::from_canonical(&spaced),
            Err(AuditError::NotCanonical)
        ));
        let escaped = text.replace("SN-1", "SN\\u002d1");
        assert!(matches!(
            AuditEntry::from_canonical(&escaped),
            Err(AuditError::NotCanonical)
        ));
        let extra = text.replacen('{', r#"{"extra":1,"#, 1);
        assert!(matches!(
            AuditEntry::from_canonical(&extra),
            Err(AuditError::Entry(_))
        ));
    }

    /// RFC 8785 section 3.2.2 and appendix B: the canonicaliser writes numbers as ECMAScript does.
    #[test]
    fn rfc8785_number_vectors() {
        let cases = [
            ("1e+30", "1e+30"),
            ("4.50", "4.5"),
            ("2e-3", "0.002"),
            ("0.000001", "0.000001"),
            ("1e-7", "1e-7"),
            ("-0", "0"),
            ("333333333.33333329", "333333333.3333333"),
            ("9007199254740991", "9007199254740991"),
            ("1E+21", "1e+21"),
        ];
        for (input, want) in cases {
            assert_eq!(
                serde_json_canonicalizer::pipe(input).unwrap(),
                want,
                "input {input}"
            );
        }
        // The RFC's worked example (section 3.2.2).
        let input = r#"{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
            "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/", "literals": [null, true, false]}"#;
        let want = "{\"literals\":[null,true,false],\"numbers\":[333333333.3333333,1e+30,4.5,0.002,1e-27],\"string\":\"€$\\u000f\\nA'B\\\"\\\\\\\\\\\"/\"}";
        assert_eq!(serde_json_canonicalizer::pipe(input).unwrap(), want);
    }

    proptest! {
        /// Any entry round-trips through its canonical form, and the canonical form is a fixed
        /// point.
        #[test]
        fn canonical_round_trip(seq in 0u64..(1 << 53), action in "[a-z]{1,12}\\.[a-z]{1,12}",
                                subject in "\\PC{0,40}", detail in "\\PC{0,40}", n in any::<i32>()) {
            let entry = AuditEvent::new(OffsetDateTime::UNIX_EPOCH, Actor::system("x"), &action,
                subject, Outcome::Denied, json!({"d": detail, "n": n})).into_entry(seq);
            let text = entry.to_canonical().unwrap();
            prop_assert_eq!(AuditEntry::from_canonical(&text).unwrap(), entry);
        }

        /// Arbitrary text never panics the parser.
        #[test]
        fn parser_never_panics(text in "\\PC{0,200}") {
            let _ = AuditEntry::from_canonical(&text);
        }
    }
}
