//! SBOMs in and out: CycloneDX JSON (1.4, 1.5, 1.6) and SPDX 2.3 JSON, read into one list of
//! components (name, version, purl, CPE) and written back in either format.
//!
//! Own serde structs for the fields Sigil reads: `cyclonedx-bom` stops at CycloneDX 1.5 and
//! `spdx-rs` is unmaintained. Reading is strict where matching depends on it (a component
//! without a name, a purl that does not parse, an unknown format or version is refused, with
//! the line) and lenient elsewhere (fields Sigil does not read are ignored).

mod cyclonedx;
mod spdx;

use serde::Serialize;

use crate::VulnError;
use crate::purl::{PackageRef, package_ref};

pub use cyclonedx::to_cyclonedx;
pub use spdx::to_spdx;

/// Largest SBOM accepted (a full Linux distribution image's is a few MiB).
pub const MAX_SBOM_BYTES: usize = 32 * 1024 * 1024;
/// Most components in one SBOM.
pub const MAX_COMPONENTS: usize = 200_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SbomFormat {
    #[serde(rename = "cyclonedx")]
    CycloneDx,
    Spdx,
}

/// One component of an SBOM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Component {
    pub name: String,
    pub version: Option<String>,
    pub purl: Option<String>,
    pub cpe: Option<String>,
    /// Its id in the document (CycloneDX `bom-ref`, SPDX `SPDXID`).
    pub reference: Option<String>,
}

impl Component {
    /// The OSV package its purl names, if it has one.
    pub fn package(&self) -> Option<PackageRef> {
        let mut p = package_ref(self.purl.as_deref()?)?;
        if p.version.is_none() {
            p.version.clone_from(&self.version);
        }
        Some(p)
    }
}

/// An SBOM as Sigil keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Sbom {
    pub format: SbomFormat,
    /// `1.6`, `SPDX-2.3`, ...
    pub spec_version: String,
    /// What the SBOM describes (CycloneDX `metadata.component`, SPDX `documentDescribes`).
    pub subject: Option<Component>,
    pub components: Vec<Component>,
}

impl Sbom {
    /// Parse a CycloneDX or SPDX JSON document, whichever it is.
    pub fn parse(bytes: &[u8]) -> Result<Self, VulnError> {
        if bytes.len() > MAX_SBOM_BYTES {
            return Err(VulnError::TooLarge {
                what: "SBOM",
                limit: MAX_SBOM_BYTES,
            });
        }
        #[derive(serde::Deserialize)]
        struct Probe {
            #[serde(rename = "bomFormat")]
            bom_format: Option<String>,
            #[serde(rename = "spdxVersion")]
            spdx_version: Option<String>,
        }
        let probe: Probe = serde_json::from_slice(bytes).map_err(|e| malformed(&e))?;
        let sbom = match (probe.bom_format.as_deref(), probe.spdx_version) {
            (Some("CycloneDX"), _) => cyclonedx::parse(bytes)?,
            (None, Some(_)) => spdx::parse(bytes)?,
            (Some(other), _) => {
                return Err(VulnError::UnsupportedSbom(format!(
                    "bomFormat `{}` is not CycloneDX",
                    other.chars().take(32).collect::<String>()
                )));
            }
            (None, None) => {
                return Err(VulnError::UnsupportedSbom(
                    "neither a CycloneDX (`bomFormat`) nor an SPDX (`spdxVersion`) JSON document"
                        .into(),
                ));
            }
        };
        if sbom.components.len() > MAX_COMPONENTS {
            return Err(VulnError::TooLarge {
                what: "SBOM component list",
                limit: MAX_COMPONENTS,
            });
        }
        Ok(sbom)
    }
}

pub(crate) fn malformed(e: &serde_json::Error) -> VulnError {
    VulnError::Malformed {
        what: "SBOM",
        line: e.line(),
        reason: e.to_string(),
    }
}

/// A purl field, checked as it is read (so a bad one is refused with its line).
pub(crate) fn checked_purl<'de, D>(d: D) -> Result<Option<String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let value: Option<String> = serde::Deserialize::deserialize(d)?;
    if let Some(p) = &value
        && p.parse::<packageurl::PackageUrl<'_>>().is_err()
    {
        return Err(serde::de::Error::custom(format!(
            "`{}` is not a package URL",
            p.chars().take(120).collect::<String>()
        )));
    }
    Ok(value)
}

/// Text fields Sigil keeps: bounded, no control characters.
pub(crate) fn checked_text(field: &str, value: &str) -> Result<(), String> {
    if value.is_empty() || value.chars().count() > 1024 || value.chars().any(char::is_control) {
        return Err(format!("`{field}` must be 1 to 1024 printable characters"));
    }
    Ok(())
}
