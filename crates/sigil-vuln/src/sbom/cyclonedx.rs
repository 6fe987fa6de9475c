//! CycloneDX JSON, spec versions 1.4 to 1.6: the components (nested ones too) and the
//! subject (`metadata.component`).

use serde::Deserialize;
use serde_json::{Value, json};

use super::{Component, Sbom, SbomFormat, checked_purl, checked_text, malformed};
use crate::VulnError;

const VERSIONS: [&str; 3] = ["1.4", "1.5", "1.6"];

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Bom {
    spec_version: String,
    #[serde(default)]
    metadata: Option<Metadata>,
    #[serde(default)]
    components: Vec<CdxComponent>,
}

#[derive(Deserialize)]
struct Metadata {
    #[serde(default)]
    component: Option<CdxComponent>,
}

#[derive(Deserialize)]
#[serde(try_from = "RawComponent")]
struct CdxComponent {
    name: String,
    version: Option<String>,
    purl: Option<String>,
    cpe: Option<String>,
    bom_ref: Option<String>,
    components: Vec<CdxComponent>,
}

#[derive(Deserialize)]
struct RawComponent {
    name: String,
    #[serde(default)]
    version: Option<String>,
    #[serde(default, deserialize_with = "checked_purl")]
    purl: Option<String>,
    #[serde(default)]
    cpe: Option<String>,
    #[serde(rename = "bom-ref", default)]
    bom_ref: Option<String>,
    #[serde(default)]
    components: Vec<CdxComponent>,
}

impl TryFrom<RawComponent> for CdxComponent {
    type Error = String;

    fn try_from(mut raw: RawComponent) -> Result<Self, String> {
        checked_text("name", &raw.name)?;
        // Generators write `""` for what they do not know: absent, not invalid.
        for field in [&mut raw.version, &mut raw.cpe, &mut raw.bom_ref] {
            if field.as_deref() == Some("") {
                *field = None;
            }
        }
        for (field, value) in [
            ("version", &raw.version),
            ("cpe", &raw.cpe),
            ("bom-ref", &raw.bom_ref),
        ] {
            if let Some(v) = value {
                checked_text(field, v)?;
            }
        }
        Ok(Self {
            name: raw.name,
            version: raw.version,
            purl: raw.purl,
            cpe: raw.cpe,
            bom_ref: raw.bom_ref,
            components: raw.components,
        })
    }
}

impl CdxComponent {
    fn flat(&self) -> Component {
        Component {
            name: self.name.clone(),
            version: self.version.clone(),
            purl: self.purl.clone(),
            cpe: self.cpe.clone(),
            reference: self.bom_ref.clone(),
        }
    }
}

pub(super) fn parse(bytes: &[u8]) -> Result<Sbom, VulnError> {
    let bom: Bom = serde_json::from_slice(bytes).map_err(|e| malformed(&e))?;
    if !VERSIONS.contains(&bom.spec_version.as_str()) {
        return Err(VulnError::UnsupportedSbom(format!(
            "CycloneDX specVersion `{}` (Sigil reads {})",
            bom.spec_version.chars().take(16).collect::<String>(),
            VERSIONS.join(", ")
        )));
    }
    // Nested components, depth first, without recursion (the parser bounds the nesting).
    let mut components = Vec::new();
    let mut stack: Vec<&CdxComponent> = bom.components.iter().rev().collect();
    while let Some(c) = stack.pop() {
        components.push(c.flat());
        stack.extend(c.components.iter().rev());
    }
    Ok(Sbom {
        format: SbomFormat::CycloneDx,
        spec_version: bom.spec_version,
        subject: bom.metadata.and_then(|m| m.component).map(|c| c.flat()),
        components,
    })
}

fn component_json(c: &Component, bom_ref: String) -> Value {
    let mut out = json!({"type": "library", "bom-ref": bom_ref, "name": c.name});
    for (field, value) in [("version", &c.version), ("purl", &c.purl), ("cpe", &c.cpe)] {
        if let Some(v) = value {
            out[field] = json!(v);
        }
    }
    out
}

/// `sbom` as a CycloneDX 1.6 JSON document; `serial` is a UUID (the caller's: nothing here
/// draws randomness or reads the clock), `timestamp` RFC 3339.
pub fn to_cyclonedx(sbom: &Sbom, serial: &str, timestamp: &str) -> Value {
    let mut doc = json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "serialNumber": format!("urn:uuid:{serial}"),
        "version": 1,
        "metadata": {
            "timestamp": timestamp,
            "tools": {"components": [{"type": "application", "name": "sigil"}]},
        },
        "components": sbom
            .components
            .iter()
            .enumerate()
            .map(|(i, c)| component_json(c, c.reference.clone().unwrap_or_else(|| format!("component-{i}"))))
            .collect::<Vec<_>>(),
    });
    if let Some(subject) = &sbom.subject {
        let mut s = component_json(subject, "subject".into());
        s["type"] = json!("firmware");
        doc["metadata"]["component"] = s;
    }
    doc
}
