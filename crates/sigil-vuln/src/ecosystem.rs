//! Package ecosystems as OSV names them, each with its own version order.

use std::cmp::Ordering;
use std::fmt;

use crate::VulnError;
use crate::versions::{ApkVersion, DpkgVersion, MavenVersion};

/// An OSV ecosystem. The release suffix some carry (`Debian:12`, `Alpine:v3.19`,
/// `Maven:https://...`) is kept: a record for Debian 12 does not speak of Debian 11.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Ecosystem {
    PyPi,
    Npm,
    CratesIo,
    Go,
    Maven(Option<String>),
    Debian(Option<String>),
    Ubuntu(Option<String>),
    Alpine(Option<String>),
    /// Any other ecosystem: its names are matched, its `ECOSYSTEM` ranges cannot be decided.
    Other(String),
}

impl Ecosystem {
    /// From OSV's `affected[].package.ecosystem`.
    pub fn parse(name: &str) -> Self {
        let (base, release) = match name.split_once(':') {
            Some((b, r)) => (b, Some(r.to_owned())),
            None => (name, None),
        };
        match (base, release) {
            ("PyPI", None) => Self::PyPi,
            ("npm", None) => Self::Npm,
            ("crates.io", None) => Self::CratesIo,
            ("Go", None) => Self::Go,
            ("Maven", r) => Self::Maven(r),
            ("Debian", r) => Self::Debian(r),
            ("Ubuntu", r) => Self::Ubuntu(r),
            ("Alpine", r) => Self::Alpine(r),
            _ => Self::Other(name.to_owned()),
        }
    }

    /// The ecosystem without its release (`Debian:12` -> `Debian`).
    pub fn base(&self) -> Self {
        match self {
            Self::Maven(_) => Self::Maven(None),
            Self::Debian(_) => Self::Debian(None),
            Self::Ubuntu(_) => Self::Ubuntu(None),
            Self::Alpine(_) => Self::Alpine(None),
            other => other.clone(),
        }
    }

    /// Whether a record for `self` speaks of packages of `installed`: the same ecosystem,
    /// and the same release where the record names one.
    pub fn covers(&self, installed: &Ecosystem) -> bool {
        if self.base() != installed.base() {
            return false;
        }
        // OSV qualifies some releases further (`Ubuntu:22.04:LTS`, `Ubuntu:Pro:18.04:LTS`): a
        // record's release covers the installed one when it names it among its parts.
        match (self.release(), installed.release()) {
            (None, _) => true,
            (Some(a), Some(b)) => a == b || a.split(':').any(|part| part == b),
            (Some(_), None) => false,
        }
    }

    /// A distribution whose records are per release: a package of it with no release named
    /// cannot be matched.
    pub fn needs_release(&self) -> bool {
        matches!(
            self,
            Self::Debian(None) | Self::Ubuntu(None) | Self::Alpine(None)
        )
    }

    fn release(&self) -> Option<&str> {
        match self {
            Self::Maven(r) | Self::Debian(r) | Self::Ubuntu(r) | Self::Alpine(r) => r.as_deref(),
            _ => None,
        }
    }

    /// A package name as the ecosystem compares names: PyPI's normalised form (PEP 503), the
    /// name itself elsewhere.
    pub fn normalize_name(&self, name: &str) -> String {
        match self {
            Self::PyPi => {
                let mut out = String::with_capacity(name.len());
                let mut separator = false;
                for c in name.chars() {
                    if matches!(c, '-' | '_' | '.') {
                        separator = true;
                    } else {
                        if separator && !out.is_empty() {
                            out.push('-');
                        }
                        separator = false;
                        out.push(c.to_ascii_lowercase());
                    }
                }
                out
            }
            _ => name.to_owned(),
        }
    }

    /// Parse `version` in this ecosystem's order; `None`: the order is not one Sigil knows.
    pub fn version(&self, version: &str) -> Option<Result<Version, VulnError>> {
        let invalid = |ecosystem: &'static str, e: String| VulnError::InvalidVersion {
            ecosystem,
            version: version.chars().take(64).collect(),
            reason: e,
        };
        Some(match self {
            Self::PyPi => version
                .parse::<pep440_rs::Version>()
                .map(Version::Pep440)
                .map_err(|e| invalid("PyPI", e.to_string())),
            Self::Npm | Self::CratesIo => semver_version(version, "semver"),
            Self::Go => semver_version(version, "Go"),
            Self::Maven(_) => Ok(Version::Maven(MavenVersion::parse(version))),
            Self::Debian(_) | Self::Ubuntu(_) => DpkgVersion::parse(version).map(Version::Dpkg),
            Self::Alpine(_) => ApkVersion::parse(version).map(Version::Apk),
            Self::Other(_) => return None,
        })
    }
}

/// SemVer 2.0.0, as npm, crates.io and Go (with its `v` prefix) write it.
pub(crate) fn semver_version(version: &str, ecosystem: &'static str) -> Result<Version, VulnError> {
    let trimmed = version.trim().trim_start_matches('=');
    let trimmed = trimmed.strip_prefix('v').unwrap_or(trimmed);
    semver::Version::parse(trimmed)
        .map(Version::Semver)
        .map_err(|e| VulnError::InvalidVersion {
            ecosystem,
            version: version.chars().take(64).collect(),
            reason: e.to_string(),
        })
}

impl fmt::Display for Ecosystem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (base, release) = match self {
            Self::PyPi => ("PyPI", None),
            Self::Npm => ("npm", None),
            Self::CratesIo => ("crates.io", None),
            Self::Go => ("Go", None),
            Self::Maven(r) => ("Maven", r.as_deref()),
            Self::Debian(r) => ("Debian", r.as_deref()),
            Self::Ubuntu(r) => ("Ubuntu", r.as_deref()),
            Self::Alpine(r) => ("Alpine", r.as_deref()),
            Self::Other(name) => return f.write_str(name),
        };
        match release {
            Some(r) => write!(f, "{base}:{r}"),
            None => f.write_str(base),
        }
    }
}

/// A version parsed in its ecosystem's order. Versions of different orders never meet (a
/// range's versions and the installed one are parsed by one ecosystem).
#[derive(Debug, Clone)]
pub enum Version {
    Pep440(pep440_rs::Version),
    Semver(semver::Version),
    Maven(MavenVersion),
    Dpkg(DpkgVersion),
    Apk(ApkVersion),
}

impl Version {
    /// The order between two versions of one ecosystem; `None` across orders.
    pub fn compare(&self, other: &Self) -> Option<Ordering> {
        Some(match (self, other) {
            (Self::Pep440(a), Self::Pep440(b)) => a.cmp(b),
            (Self::Semver(a), Self::Semver(b)) => a.cmp_precedence(b),
            (Self::Maven(a), Self::Maven(b)) => a.cmp(b),
            (Self::Dpkg(a), Self::Dpkg(b)) => a.cmp(b),
            (Self::Apk(a), Self::Apk(b)) => a.cmp(b),
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_releases() {
        assert_eq!(
            Ecosystem::parse("Debian:12"),
            Ecosystem::Debian(Some("12".into()))
        );
        assert_eq!(Ecosystem::parse("Debian:12").to_string(), "Debian:12");
        assert!(Ecosystem::parse("Debian").covers(&Ecosystem::parse("Debian:12")));
        assert!(!Ecosystem::parse("Debian:11").covers(&Ecosystem::parse("Debian:12")));
        assert!(!Ecosystem::parse("Debian:11").covers(&Ecosystem::parse("Debian")));
        assert!(Ecosystem::parse("Ubuntu:22.04:LTS").covers(&Ecosystem::parse("Ubuntu:22.04")));
        assert!(Ecosystem::parse("Ubuntu:Pro:18.04:LTS").covers(&Ecosystem::parse("Ubuntu:18.04")));
        assert!(!Ecosystem::parse("Ubuntu:20.04:LTS").covers(&Ecosystem::parse("Ubuntu:22.04")));
        assert!(!Ecosystem::parse("PyPI").covers(&Ecosystem::parse("npm")));
        assert_eq!(Ecosystem::parse("Hex"), Ecosystem::Other("Hex".into()));
        assert!(Ecosystem::parse("Hex").version("1.0.0").is_none());
        assert_eq!(
            Ecosystem::PyPi.normalize_name("Zope.Interface__x"),
            "zope-interface-x"
        );
    }

    fn order(e: &Ecosystem, a: &str, b: &str) -> Ordering {
        let a = e.version(a).unwrap().unwrap();
        let b = e.version(b).unwrap().unwrap();
        a.compare(&b).unwrap()
    }

    /// Each ecosystem's own order where they differ: PEP 440's pre, post and dev releases;
    /// SemVer's pre-releases and build metadata; Go's `v` prefix and pseudo-versions.
    #[test]
    fn each_ecosystem_orders_in_its_own_way() {
        let py = Ecosystem::PyPi;
        for (a, b) in [
            ("1.0.dev1", "1.0a1"),
            ("1.0a1", "1.0b2"),
            ("1.0rc1", "1.0"),
            ("1.0", "1.0.post1"),
            ("1.0.post1", "1.1"),
            ("2.0", "1!0.1"),
            ("2.0", "2.0+local"),
        ] {
            assert_eq!(order(&py, a, b), Ordering::Less, "PyPI {a} < {b}");
        }
        assert_eq!(order(&py, "1.0", "1.0.0"), Ordering::Equal);
        let npm = Ecosystem::Npm;
        assert_eq!(order(&npm, "1.0.0-alpha", "1.0.0-alpha.1"), Ordering::Less);
        assert_eq!(order(&npm, "1.0.0-rc.1", "1.0.0"), Ordering::Less);
        assert_eq!(order(&npm, "1.0.0+a", "1.0.0+b"), Ordering::Equal);
        let go = Ecosystem::Go;
        assert_eq!(
            order(&go, "v0.0.0-20210101000000-abcdef012345", "v0.1.0"),
            Ordering::Less
        );
        assert_eq!(order(&go, "v1.2.3", "1.2.3"), Ordering::Equal);
        assert!(go.version("latest").unwrap().is_err());
    }
}
