//! From a package URL (purl, parsed by `packageurl`) to the OSV ecosystem and package name
//! records are matched on: the purl types and the OSV ecosystems do not name packages alike
//! (Maven's `group:artifact`, npm's `@scope/name`, Go's module path, a Debian or Alpine
//! release from the `distro` qualifier).

use packageurl::PackageUrl;

use crate::Ecosystem;

/// A package as OSV names it, and the version the purl gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageRef {
    pub ecosystem: Ecosystem,
    pub name: String,
    pub version: Option<String>,
    /// Whether OSV has an ecosystem for the purl's type (`false`: `pkg:rpm`, say, whose
    /// records are per distribution and not mapped yet).
    pub osv_ecosystem: bool,
}

/// The release of a `distro` qualifier: `debian-12` or `12.4` -> `12` (OSV's Debian releases
/// are numeric; codenames are translated), `ubuntu-22.04` -> `22.04`, `alpine-3.19.1` or `3.19` -> `v3.19`.
fn debian_release(distro: &str) -> Option<String> {
    let release = distro.strip_prefix("debian-").unwrap_or(distro);
    let codename = match release {
        "stretch" => Some("9"),
        "buster" => Some("10"),
        "bullseye" => Some("11"),
        "bookworm" => Some("12"),
        "trixie" => Some("13"),
        "forky" => Some("14"),
        _ => None,
    };
    if let Some(number) = codename {
        return Some(number.to_owned());
    }
    let major = release.split('.').next()?;
    major
        .chars()
        .all(|c| c.is_ascii_digit())
        .then(|| major.to_owned())
        .filter(|m| !m.is_empty())
}

fn ubuntu_release(distro: &str) -> Option<String> {
    let release = distro.strip_prefix("ubuntu-").unwrap_or(distro);
    let mut parts = release.split('.');
    let (major, minor) = (parts.next()?, parts.next()?);
    let numeric = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
    (numeric(major) && numeric(minor)).then(|| format!("{major}.{minor}"))
}

fn alpine_release(distro: &str) -> Option<String> {
    let release = distro.strip_prefix("alpine-").unwrap_or(distro);
    let release = release.strip_prefix('v').unwrap_or(release);
    let mut parts = release.split('.');
    let (major, minor) = (parts.next()?, parts.next()?);
    let numeric = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
    (numeric(major) && numeric(minor)).then(|| format!("v{major}.{minor}"))
}

/// The OSV package a purl names; `None` if the text is not a purl.
pub fn package_ref(purl: &str) -> Option<PackageRef> {
    let parsed: PackageUrl<'_> = purl.parse().ok()?;
    let namespace = parsed.namespace().filter(|n| !n.is_empty());
    let name = parsed.name();
    let distro = parsed
        .qualifiers()
        .get("distro")
        .map(|d| d.to_ascii_lowercase());
    // OSV's Debian and Ubuntu records name source packages; a binary package's purl names
    // its source in `upstream` (`upstream=openssl` or `upstream=openssl@3.0.2-0ubuntu1`).
    let upstream = parsed.qualifiers().get("upstream").map(|u| u.to_string());
    let source_package = upstream
        .as_deref()
        .and_then(|u| u.split('@').next())
        .filter(|u| !u.is_empty());
    let (ecosystem, osv_name) = match parsed.ty() {
        "pypi" => (Ecosystem::PyPi, name.to_owned()),
        "npm" => (
            Ecosystem::Npm,
            match namespace {
                Some(scope) => format!("{scope}/{name}"),
                None => name.to_owned(),
            },
        ),
        "cargo" => (Ecosystem::CratesIo, name.to_owned()),
        "golang" => (
            Ecosystem::Go,
            match namespace {
                Some(ns) => format!("{ns}/{name}"),
                None => name.to_owned(),
            },
        ),
        "maven" => (
            Ecosystem::Maven(None),
            match namespace {
                Some(group) => format!("{group}:{name}"),
                None => name.to_owned(),
            },
        ),
        "deb" if namespace.is_some_and(|n| n.eq_ignore_ascii_case("ubuntu")) => (
            Ecosystem::Ubuntu(distro.as_deref().and_then(ubuntu_release)),
            source_package.unwrap_or(name).to_owned(),
        ),
        "deb" => (
            Ecosystem::Debian(distro.as_deref().and_then(debian_release)),
            source_package.unwrap_or(name).to_owned(),
        ),
        "apk" => (
            Ecosystem::Alpine(distro.as_deref().and_then(alpine_release)),
            name.to_owned(),
        ),
        // OSV ecosystems whose version order Sigil does not know yet: their SEMVER ranges
        // still decide, their ECOSYSTEM ranges are reported undecided.
        "gem" => (Ecosystem::Other("RubyGems".into()), name.to_owned()),
        "nuget" => (Ecosystem::Other("NuGet".into()), name.to_owned()),
        "hex" => (Ecosystem::Other("Hex".into()), name.to_owned()),
        "pub" => (Ecosystem::Other("Pub".into()), name.to_owned()),
        "cran" => (Ecosystem::Other("CRAN".into()), name.to_owned()),
        "hackage" => (Ecosystem::Other("Hackage".into()), name.to_owned()),
        "conan" => (Ecosystem::Other("ConanCenter".into()), name.to_owned()),
        "composer" => (
            Ecosystem::Other("Packagist".into()),
            match namespace {
                Some(vendor) => format!("{vendor}/{name}"),
                None => name.to_owned(),
            },
        ),
        other => {
            return Some(PackageRef {
                ecosystem: Ecosystem::Other(other.to_owned()),
                name: name.to_owned(),
                version: parsed.version().map(str::to_owned),
                osv_ecosystem: false,
            });
        }
    };
    Some(PackageRef {
        ecosystem,
        name: osv_name,
        version: parsed.version().map(str::to_owned),
        osv_ecosystem: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purls_name_osv_packages() {
        for (purl, ecosystem, name, version) in [
            ("pkg:pypi/jinja2@3.1.2", "PyPI", "jinja2", Some("3.1.2")),
            (
                "pkg:npm/%40babel/core@7.0.0",
                "npm",
                "@babel/core",
                Some("7.0.0"),
            ),
            (
                "pkg:cargo/smallvec@1.6.0",
                "crates.io",
                "smallvec",
                Some("1.6.0"),
            ),
            (
                "pkg:golang/golang.org/x/net@v0.17.0",
                "Go",
                "golang.org/x/net",
                Some("v0.17.0"),
            ),
            (
                "pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1?type=jar",
                "Maven",
                "org.apache.logging.log4j:log4j-core",
                Some("2.14.1"),
            ),
            (
                "pkg:deb/debian/curl@7.88.1-10%2Bdeb12u4?arch=amd64&distro=debian-12",
                "Debian:12",
                "curl",
                Some("7.88.1-10+deb12u4"),
            ),
            (
                "pkg:deb/debian/curl@7.88.1-10?distro=bookworm",
                "Debian:12",
                "curl",
                Some("7.88.1-10"),
            ),
            (
                "pkg:deb/debian/curl@7.88.1-10",
                "Debian",
                "curl",
                Some("7.88.1-10"),
            ),
            (
                "pkg:deb/ubuntu/openssl@3.0.2-0ubuntu1.10?distro=ubuntu-22.04",
                "Ubuntu:22.04",
                "openssl",
                Some("3.0.2-0ubuntu1.10"),
            ),
            (
                "pkg:apk/alpine/openssl@3.1.4-r0?distro=3.19.1",
                "Alpine:v3.19",
                "openssl",
                Some("3.1.4-r0"),
            ),
            ("pkg:gem/rails@7.0.0", "RubyGems", "rails", Some("7.0.0")),
            (
                "pkg:deb/debian/libssl3@3.0.11-1?upstream=openssl&distro=debian-12",
                "Debian:12",
                "openssl",
                Some("3.0.11-1"),
            ),
            (
                "pkg:rpm/redhat/openssl@3.0.7?arch=x86_64",
                "rpm",
                "openssl",
                Some("3.0.7"),
            ),
        ] {
            let p = package_ref(purl).unwrap_or_else(|| panic!("{purl}"));
            assert_eq!(p.ecosystem.to_string(), ecosystem, "{purl}");
            assert_eq!(p.name, name, "{purl}");
            assert_eq!(p.version.as_deref(), version, "{purl}");
        }
        assert_eq!(package_ref("not a purl"), None);
        assert_eq!(package_ref("pkg:"), None);
    }
}
