//! Why a device certificate was revoked: the RFC 5280 section 5.3.1 reason codes that make sense
//! for an end-entity certificate Sigil issued.

use std::fmt;
use std::str::FromStr;

/// A CRLReason an operator may give. `cACompromise` and `aACompromise` concern CAs, not device
/// certificates; `certificateHold` would make revocation reversible, which Sigil does not
/// offer (suspend the device instead); `removeFromCRL` only exists in delta CRLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RevocationReason {
    Unspecified,
    KeyCompromise,
    AffiliationChanged,
    Superseded,
    CessationOfOperation,
    PrivilegeWithdrawn,
}

impl RevocationReason {
    pub const ALL: [RevocationReason; 6] = [
        Self::Unspecified,
        Self::KeyCompromise,
        Self::AffiliationChanged,
        Self::Superseded,
        Self::CessationOfOperation,
        Self::PrivilegeWithdrawn,
    ];

    /// The RFC 5280 CRLReason code.
    pub fn code(self) -> u8 {
        match self {
            Self::Unspecified => 0,
            Self::KeyCompromise => 1,
            Self::AffiliationChanged => 3,
            Self::Superseded => 4,
            Self::CessationOfOperation => 5,
            Self::PrivilegeWithdrawn => 9,
        }
    }

    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.code() == code)
    }

    /// The RFC 5280 ASN.1 name, as `openssl crl -text` prints it in its own words.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unspecified => "unspecified",
            Self::KeyCompromise => "keyCompromise",
            Self::AffiliationChanged => "affiliationChanged",
            Self::Superseded => "superseded",
            Self::CessationOfOperation => "cessationOfOperation",
            Self::PrivilegeWithdrawn => "privilegeWithdrawn",
        }
    }
}

impl fmt::Display for RevocationReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown revocation reason `{given}`; use one of: {}", RevocationReason::ALL.map(|r| r.as_str()).join(", "))]
pub struct UnknownReason {
    pub given: String,
}

impl FromStr for RevocationReason {
    type Err = UnknownReason;

    /// Accepts the RFC name (`keyCompromise`) or its kebab form (`key-compromise`), any case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let folded: String = s
            .chars()
            .filter(|c| *c != '-' && *c != '_')
            .collect::<String>()
            .to_ascii_lowercase();
        Self::ALL
            .into_iter()
            .find(|r| r.as_str().to_ascii_lowercase() == folded)
            .ok_or_else(|| UnknownReason {
                given: s.to_owned(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn codes_are_rfc_5280() {
        let codes: Vec<u8> = RevocationReason::ALL.iter().map(|r| r.code()).collect();
        assert_eq!(codes, [0, 1, 3, 4, 5, 9]);
        for r in RevocationReason::ALL {
            assert_eq!(RevocationReason::from_code(r.code()), Some(r));
            assert_eq!(r.as_str().parse::<RevocationReason>(), Ok(r));
        }
        for code in [2, 6, 7, 8, 10, 11, 255] {
            assert_eq!(RevocationReason::from_code(code), None);
        }
    }

    #[test]
    fn names_parse_in_either_spelling() {
        assert_eq!(
            "key-compromise".parse::<RevocationReason>(),
            Ok(RevocationReason::KeyCompromise)
        );
        assert_eq!(
            "CESSATION_OF_OPERATION".parse::<RevocationReason>(),
            Ok(RevocationReason::CessationOfOperation)
        );
        for refused in ["certificateHold", "cACompromise", "removeFromCRL", "", "1"] {
            let e = refused.parse::<RevocationReason>().unwrap_err();
            assert!(e.to_string().contains("keyCompromise"), "{e}");
        }
    }

    proptest! {
        #[test]
        fn parsing_never_panics(s in ".{0,40}") {
            let _ = s.parse::<RevocationReason>();
        }
    }
}
