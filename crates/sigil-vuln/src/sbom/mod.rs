//! SBOMs in and out: CycloneDX JSON and XML (1.4, 1.5, 1.6), SPDX 2.2/2.3 JSON and SPDX 3.0
//! JSON-LD, read into one list of components (name, version, purl, CPE) and written back as
//! CycloneDX or SPDX JSON.
//!
//! Own serde structs for the fields Sigil reads: `cyclonedx-bom` stops at CycloneDX 1.5 and
//! `spdx-rs` is unmaintained. Reading is strict where matching depends on it (a component
//! without a name, a purl that does not parse, an unknown format or version is refused, with
//! the line) and lenient elsewhere (fields Sigil does not read are ignored).

mod cyclonedx;
mod cyclonedx_xml;
mod spdx;
mod spdx3;

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
    /// Parse a CycloneDX (JSON or XML) or SPDX JSON document, whichever it is.
    pub fn parse(bytes: &[u8]) -> Result<Self, VulnError> {
        if bytes.len() > MAX_SBOM_BYTES {
            return Err(VulnError::TooLarge {
                what: "SBOM",
                limit: MAX_SBOM_BYTES,
            });
        }
        let sbom = if is_xml(bytes) {
            cyclonedx_xml::parse(utf8(bytes)?)?
        } else {
            Self::parse_json(bytes)?
        };
        if sbom.components.len() > MAX_COMPONENTS {
            return Err(VulnError::TooLarge {
                what: "SBOM component list",
                limit: MAX_COMPONENTS,
            });
        }
        Ok(sbom)
    }

    fn parse_json(bytes: &[u8]) -> Result<Self, VulnError> {
        #[derive(serde::Deserialize)]
        struct Probe {
            #[serde(rename = "bomFormat")]
            bom_format: Option<String>,
            #[serde(rename = "spdxVersion")]
            spdx_version: Option<String>,
            #[serde(rename = "@context")]
            context: Option<serde_json::Value>,
        }
        let probe: Probe = serde_json::from_slice(bytes).map_err(|e| malformed(&e))?;
        if probe.context.as_ref().is_some_and(spdx3::is_spdx3) {
            return spdx3::parse(bytes);
        }
        match (probe.bom_format.as_deref(), probe.spdx_version) {
            (Some("CycloneDX"), _) => cyclonedx::parse(bytes),
            (None, Some(_)) => spdx::parse(bytes),
            (Some(other), _) => Err(VulnError::UnsupportedSbom(format!(
                "bomFormat `{}` is not CycloneDX",
                other.chars().take(32).collect::<String>()
            ))),
            (None, None) => Err(VulnError::UnsupportedSbom(
                "neither a CycloneDX (`bomFormat`) nor an SPDX (`spdxVersion`) JSON document"
                    .into(),
            )),
        }
    }
}

/// Whether an uploaded SBOM is XML (its first character past a byte-order mark and blanks is
/// `<`); JSON otherwise.
pub fn is_xml(bytes: &[u8]) -> bool {
    if bytes.starts_with(b"\xFF\xFE") || bytes.starts_with(b"\xFE\xFF") {
        // UTF-16 (XML's other required encoding): refused as XML with a clear reason.
        return true;
    }
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'<')
}

/// The media type an uploaded SBOM is served back with.
pub fn media_type(bytes: &[u8]) -> &'static str {
    if is_xml(bytes) {
        "application/xml; charset=utf-8"
    } else {
        "application/json"
    }
}

fn utf8(bytes: &[u8]) -> Result<&str, VulnError> {
    if bytes.starts_with(b"\xFF\xFE") || bytes.starts_with(b"\xFE\xFF") {
        return Err(VulnError::Malformed {
            what: "SBOM",
            line: 1,
            reason: "the XML document is UTF-16; Sigil reads UTF-8 (save it as UTF-8)".into(),
        });
    }
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    std::str::from_utf8(bytes).map_err(|e| VulnError::Malformed {
        what: "SBOM",
        line: 1 + bytes[..e.valid_up_to()]
            .iter()
            .filter(|b| **b == b'\n')
            .count(),
        reason: "the XML document is not UTF-8".into(),
    })
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
    if let Some(problem) = value.as_deref().and_then(purl_problem) {
        return Err(serde::de::Error::custom(problem));
    }
    Ok(value)
}

/// Why `purl` is not a package URL, if it is not.
pub(crate) fn purl_problem(purl: &str) -> Option<String> {
    purl.parse::<packageurl::PackageUrl<'_>>()
        .is_err()
        .then(|| {
            format!(
                "`{}` is not a package URL",
                purl.chars().take(120).collect::<String>()
            )
        })
}

/// Text fields Sigil keeps: bounded, no control characters.
pub(crate) fn checked_text(field: &str, value: &str) -> Result<(), String> {
    if value.is_empty() || value.chars().count() > 1024 || value.chars().any(char::is_control) {
        return Err(format!("`{field}` must be 1 to 1024 printable characters"));
    }
    Ok(())
}
