//! The version orders no kept crate implements (PEP 440 is `pep440_rs`'s, SemVer is
//! `semver`'s): Maven, dpkg and apk.

mod apk;
mod dpkg;
mod maven;

pub use apk::ApkVersion;
pub use dpkg::DpkgVersion;
pub use maven::MavenVersion;
