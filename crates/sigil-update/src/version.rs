//! Release versions. A product declares one scheme; every version of it parses under that
//! scheme and versions compare totally, so the server and the agent agree on what a
//! downgrade is.

use std::cmp::Ordering;
use std::fmt;

use crate::UpdateError;

/// How a product numbers its releases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VersionScheme {
    /// Semantic Versioning 2.0.0 precedence (build metadata ignored, so `1.0.0+a` and
    /// `1.0.0+b` are the same version and cannot both be released).
    #[default]
    Semver,
    /// A build number: a decimal integer without sign or leading zeros.
    Integer,
}

impl VersionScheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Semver => "semver",
            Self::Integer => "integer",
        }
    }

    pub fn parse(name: &str) -> Result<Self, UpdateError> {
        match name {
            "semver" => Ok(Self::Semver),
            "integer" => Ok(Self::Integer),
            other => Err(UpdateError::UnknownScheme(other.chars().take(64).collect())),
        }
    }
}

impl fmt::Display for VersionScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A version parsed under its product's scheme.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReleaseVersion {
    Semver(semver::Version),
    Integer(u64),
}

/// Longest version string accepted: enough for any real scheme, short enough for a log line.
pub const MAX_VERSION_LEN: usize = 64;

impl ReleaseVersion {
    pub fn parse(scheme: VersionScheme, value: &str) -> Result<Self, UpdateError> {
        let invalid = |reason: String| UpdateError::InvalidVersion {
            scheme: scheme.as_str(),
            value: value.chars().take(MAX_VERSION_LEN).collect(),
            reason,
        };
        if value.is_empty() || value.len() > MAX_VERSION_LEN {
            return Err(invalid(format!(
                "must be 1 to {MAX_VERSION_LEN} characters"
            )));
        }
        match scheme {
            VersionScheme::Semver => semver::Version::parse(value)
                .map(Self::Semver)
                .map_err(|e| invalid(e.to_string())),
            VersionScheme::Integer => {
                if !value.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(invalid("only the digits 0-9".into()));
                }
                if value.len() > 1 && value.starts_with('0') {
                    return Err(invalid("no leading zeros".into()));
                }
                value
                    .parse::<u64>()
                    .map(Self::Integer)
                    .map_err(|e| invalid(e.to_string()))
            }
        }
    }

    /// The total order of the scheme. Versions of different schemes never meet: a product
    /// has one scheme, fixed at its first release.
    pub fn precedence(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Self::Semver(a), Self::Semver(b)) => a.cmp_precedence(b),
            (Self::Integer(a), Self::Integer(b)) => a.cmp(b),
            (Self::Semver(_), Self::Integer(_)) => Ordering::Greater,
            (Self::Integer(_), Self::Semver(_)) => Ordering::Less,
        }
    }

    /// Whether installing `self` over `installed` would go backwards (or sideways).
    pub fn is_downgrade_from(&self, installed: &Self) -> bool {
        self.precedence(installed) != Ordering::Greater
    }
}

impl fmt::Display for ReleaseVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Semver(v) => write!(f, "{v}"),
            Self::Integer(n) => write!(f, "{n}"),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    fn v(s: &str) -> ReleaseVersion {
        ReleaseVersion::parse(VersionScheme::Semver, s).unwrap()
    }

    #[test]
    fn semver_precedence_follows_the_specification() {
        let ordered = [
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
            "1.0.1",
            "1.10.0",
            "2.0.0",
        ];
        for pair in ordered.windows(2) {
            assert_eq!(
                v(pair[0]).precedence(&v(pair[1])),
                Ordering::Less,
                "{pair:?}"
            );
            assert!(v(pair[0]).is_downgrade_from(&v(pair[1])));
            assert!(!v(pair[1]).is_downgrade_from(&v(pair[0])));
        }
        assert_eq!(v("1.0.0+a").precedence(&v("1.0.0+b")), Ordering::Equal);
        assert!(
            v("1.0.0+b").is_downgrade_from(&v("1.0.0+a")),
            "same version is not an upgrade"
        );
    }

    #[test]
    fn malformed_versions_are_refused_with_the_rule() {
        for bad in [
            "",
            "1",
            "1.0",
            "v1.0.0",
            "01.0.0",
            "1.0.0-",
            " 1.0.0",
            &"9".repeat(65),
        ] {
            let e = ReleaseVersion::parse(VersionScheme::Semver, bad).unwrap_err();
            assert!(
                matches!(e, UpdateError::InvalidVersion { .. }),
                "{bad}: {e}"
            );
        }
        for bad in ["", "-1", "+1", "01", "1.0", "18446744073709551616", "１"] {
            assert!(
                ReleaseVersion::parse(VersionScheme::Integer, bad).is_err(),
                "{bad}"
            );
        }
        assert_eq!(
            ReleaseVersion::parse(VersionScheme::Integer, "0").unwrap(),
            ReleaseVersion::Integer(0)
        );
        assert!(VersionScheme::parse("calver").is_err());
    }

    proptest! {
        #[test]
        fn parsing_never_panics_and_round_trips(s in "\\PC{0,80}") {
            for scheme in [VersionScheme::Semver, VersionScheme::Integer] {
                if let Ok(parsed) = ReleaseVersion::parse(scheme, &s) {
                    let again = ReleaseVersion::parse(scheme, &parsed.to_string()).unwrap();
                    prop_assert_eq!(again.precedence(&parsed), Ordering::Equal);
                }
            }
        }

        #[test]
        fn integer_order_is_numeric(a in any::<u64>(), b in any::<u64>()) {
            let pa = ReleaseVersion::parse(VersionScheme::Integer, &a.to_string()).unwrap();
            let pb = ReleaseVersion::parse(VersionScheme::Integer, &b.to_string()).unwrap();
            prop_assert_eq!(pa.precedence(&pb), a.cmp(&b));
        }
    }
}
