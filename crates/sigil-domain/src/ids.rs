//! Identifier newtypes. Each is parsed once and is valid by construction.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdError {
    #[error("`{0}` is not a valid {1} id (expected a UUID)")]
    NotUuid(String, &'static str),
    #[error("`{0}` is not a valid certificate serial (expected 1 to 20 bytes as hex)")]
    BadSerial(String),
    #[error("`{0}` is not a valid SHA-256 fingerprint (expected 64 hex digits)")]
    BadFingerprint(String),
}

macro_rules! uuid_id {
    ($name:ident, $what:literal) => {
        #[doc = concat!("Identifier of a ", $what, ": a UUIDv7, so ids sort by creation time.")]
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A fresh id. Time-ordered (UUIDv7) so that listing by id is listing by age.
            pub fn generate() -> Self {
                Self(Uuid::now_v7())
            }
            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
            /// The greatest id (all bits set): an upper bound for ranges.
            pub const fn max() -> Self {
                Self(Uuid::max())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.as_hyphenated().fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                // Only the canonical hyphenated form: one spelling per id keeps URLs and logs greppable.
                if s.len() != 36 {
                    return Err(IdError::NotUuid(truncate(s), $what));
                }
                Uuid::parse_str(s)
                    .map(Self)
                    .map_err(|_| IdError::NotUuid(truncate(s), $what))
            }
        }
    };
}

uuid_id!(DeviceId, "device");
uuid_id!(ProductId, "product");

/// An X.509 certificate serial number as lowercase hex (no separators).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Serial(String);

impl Serial {
    /// From the serial's big-endian bytes (as encoded in the certificate, sign byte included).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, IdError> {
        if bytes.is_empty() || bytes.len() > 21 {
            return Err(IdError::BadSerial(format!("{} bytes", bytes.len())));
        }
        Ok(Self(bytes.iter().map(|b| format!("{b:02x}")).collect()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Serial {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // Accept the forms people paste: `0A:1B:..` from openssl, upper or lower case.
        let cleaned: String = s
            .chars()
            .filter(|c| *c != ':')
            .collect::<String>()
            .to_ascii_lowercase();
        let ok = !cleaned.is_empty()
            && cleaned.len() <= 42
            && cleaned.len().is_multiple_of(2)
            && cleaned.bytes().all(|b| b.is_ascii_hexdigit());
        if ok {
            Ok(Self(cleaned))
        } else {
            Err(IdError::BadSerial(truncate(s)))
        }
    }
}

impl TryFrom<String> for Serial {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Serial> for String {
    fn from(s: Serial) -> Self {
        s.0
    }
}

impl fmt::Display for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A SHA-256 digest as 64 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Fingerprint(String);

impl Fingerprint {
    pub fn from_digest(digest: &[u8; 32]) -> Self {
        Self(digest.iter().map(|b| format!("{b:02x}")).collect())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Fingerprint {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s2 = s.strip_prefix("sha256:").unwrap_or(s);
        let cleaned: String = s2
            .chars()
            .filter(|c| *c != ':')
            .collect::<String>()
            .to_ascii_lowercase();
        if cleaned.len() == 64 && cleaned.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(Self(cleaned))
        } else {
            Err(IdError::BadFingerprint(truncate(s)))
        }
    }
}

impl TryFrom<String> for Fingerprint {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Fingerprint> for String {
    fn from(f: Fingerprint) -> Self {
        f.0
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Error messages quote the rejected input, but never more than a short prefix of it.
fn truncate(s: &str) -> String {
    const MAX: usize = 64;
    if s.chars().count() <= MAX {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(MAX).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn device_id_round_trips() {
        let id = DeviceId::generate();
        assert_eq!(id.to_string().parse::<DeviceId>(), Ok(id));
    }

    #[test]
    fn device_id_rejects_non_canonical_forms() {
        assert!("not-a-uuid".parse::<DeviceId>().is_err());
        // Simple (unhyphenated) form is a valid UUID but not our canonical spelling.
        assert!(
            "0192d8a2c3b47c3e8f1a2b3c4d5e6f70"
                .parse::<DeviceId>()
                .is_err()
        );
    }

    #[test]
    fn serial_accepts_openssl_colon_form() {
        let s: Serial = "0A:1B:FF".parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.as_str(), "0a1bff");
        assert!("0g".parse::<Serial>().is_err());
        assert!("abc".parse::<Serial>().is_err());
        assert!("".parse::<Serial>().is_err());
    }

    #[test]
    fn fingerprint_accepts_prefixed_form() {
        let hex64 = "ab".repeat(32);
        let f: Fingerprint = format!("sha256:{hex64}")
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(f.as_str(), hex64);
        assert!("sha256:abcd".parse::<Fingerprint>().is_err());
    }

    proptest! {
        #[test]
        fn parsers_never_panic(s in ".{0,200}") {
            let _ = s.parse::<DeviceId>();
            let _ = s.parse::<ProductId>();
            let _ = s.parse::<Serial>();
            let _ = s.parse::<Fingerprint>();
        }

        #[test]
        fn serial_from_bytes_round_trips(bytes in proptest::collection::vec(any::<u8>(), 1..=20)) {
            let s = Serial::from_bytes(&bytes).unwrap_or_else(|e| panic!("{e}"));
            prop_assert_eq!(s.as_str().parse::<Serial>(), Ok(s.clone()));
        }
    }
}
