//! Sigil's vulnerability logic, pure: SBOMs (CycloneDX, SPDX) in and out, package URLs, OSV
//! records, each package ecosystem's version order, and
//! whether an installed version is affected, with OSV's semantics (`introduced`, `fixed`,
//! `last_affected`, `limit`, `versions` lists; GIT ranges undecided rather than guessed).
//! The store, the importers and the API sit elsewhere; nothing here does I/O.

pub mod archive;
pub mod csaf;
pub mod disclosure;
mod ecosystem;
pub mod epss;
mod error;
pub mod kev;
pub mod matching;
pub mod osv;
pub mod purl;
pub mod reporting;
pub mod sbom;
pub mod severity;
pub mod versions;
pub mod vex;

pub use ecosystem::{Ecosystem, Version};
pub use error::VulnError;
pub use matching::{CompiledAffected, Verdict, compile, evaluate};
pub use osv::OsvRecord;
pub use purl::{PackageRef, package_ref};
pub use sbom::{Component, Sbom, SbomFormat};
pub use severity::{RecordSeverity, RemediationPolicy, SeverityLevel, record_severity};
