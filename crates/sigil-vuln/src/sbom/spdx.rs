//! SPDX 2.3 (and 2.2) JSON: the packages, their purl and CPE external references, and the
//! package the document describes.

use serde::Deserialize;
use serde_json::{Value, json};

use super::{Component, Sbom, SbomFormat, checked_text, malformed};
use crate::VulnError;

const VERSIONS: [&str; 2] = ["SPDX-2.2", "SPDX-2.3"];

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Document {
    spdx_version: String,
    #[serde(default)]
    packages: Vec<Package>,
    #[serde(default)]
    document_describes: Vec<String>,
    #[serde(default)]
    relationships: Vec<Relationship>,
}

#[derive(Deserialize)]
#[serde(try_from = "RawPackage")]
struct Package {
    spdx_id: String,
    name: String,
    version: Option<String>,
    purl: Option<String>,
    cpe: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawPackage {
    #[serde(rename = "SPDXID")]
    spdx_id: String,
    name: String,
    #[serde(default)]
    version_info: Option<String>,
    #[serde(default)]
    external_refs: Vec<ExternalRef>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExternalRef {
    reference_category: String,
    reference_type: String,
    reference_locator: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Relationship {
    spdx_element_id: String,
    relationship_type: String,
    related_spdx_element: String,
}

impl TryFrom<RawPackage> for Package {
    type Error = String;

    fn try_from(mut raw: RawPackage) -> Result<Self, String> {
        checked_text("SPDXID", &raw.spdx_id)?;
        checked_text("name", &raw.name)?;
        if raw.version_info.as_deref() == Some("") {
            raw.version_info = None;
        }
        if let Some(v) = &raw.version_info {
            checked_text("versionInfo", v)?;
        }
        let mut purl = None;
        let mut cpe = None;
        for r in &raw.external_refs {
            let category = r.reference_category.replace('_', "-");
            match (category.as_str(), r.reference_type.as_str()) {
                ("PACKAGE-MANAGER", "purl") if purl.is_none() => {
                    if r.reference_locator
                        .parse::<packageurl::PackageUrl<'_>>()
                        .is_err()
                    {
                        return Err(format!(
                            "`{}` is not a package URL",
                            r.reference_locator.chars().take(120).collect::<String>()
                        ));
                    }
                    purl = Some(r.reference_locator.clone());
                }
                ("SECURITY", "cpe23Type" | "cpe22Type") if cpe.is_none() => {
                    checked_text("referenceLocator", &r.reference_locator)?;
                    cpe = Some(r.reference_locator.clone());
                }
                _ => {}
            }
        }
        Ok(Self {
            spdx_id: raw.spdx_id,
            name: raw.name,
            version: raw.version_info,
            purl,
            cpe,
        })
    }
}

pub(super) fn parse(bytes: &[u8]) -> Result<Sbom, VulnError> {
    let doc: Document = serde_json::from_slice(bytes).map_err(|e| malformed(&e))?;
    if !VERSIONS.contains(&doc.spdx_version.as_str()) {
        return Err(VulnError::UnsupportedSbom(format!(
            "spdxVersion `{}` (Sigil reads {})",
            doc.spdx_version.chars().take(16).collect::<String>(),
            VERSIONS.join(", ")
        )));
    }
    // What the document describes: `documentDescribes`, or its DESCRIBES relationships.
    let described: Vec<&str> = doc
        .document_describes
        .iter()
        .map(String::as_str)
        .chain(
            doc.relationships
                .iter()
                .filter(|r| {
                    r.spdx_element_id == "SPDXRef-DOCUMENT" && r.relationship_type == "DESCRIBES"
                })
                .map(|r| r.related_spdx_element.as_str()),
        )
        .collect::<std::collections::BTreeSet<&str>>()
        .into_iter()
        .collect();
    // One described package is the subject; with several (a document of many packages),
    // every package is a component.
    let subject_id = match described.as_slice() {
        [one] => Some(*one),
        _ => None,
    };
    let flat = |p: &Package| Component {
        name: p.name.clone(),
        version: p.version.clone(),
        purl: p.purl.clone(),
        cpe: p.cpe.clone(),
        reference: Some(p.spdx_id.clone()),
    };
    Ok(Sbom {
        format: SbomFormat::Spdx,
        spec_version: doc.spdx_version.clone(),
        subject: doc
            .packages
            .iter()
            .find(|p| Some(p.spdx_id.as_str()) == subject_id)
            .map(flat),
        components: doc
            .packages
            .iter()
            .filter(|p| Some(p.spdx_id.as_str()) != subject_id)
            .map(flat)
            .collect(),
    })
}

/// An SPDX id from any text: letters, digits, `.` and `-` only.
fn spdx_id(prefix: &str, i: usize) -> String {
    format!("SPDXRef-{prefix}-{i}")
}

fn package_json(c: &Component, id: &str) -> Value {
    let mut refs = Vec::new();
    if let Some(p) = &c.purl {
        refs.push(json!({"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl", "referenceLocator": p}));
    }
    if let Some(cpe) = &c.cpe {
        refs.push(json!({"referenceCategory": "SECURITY", "referenceType": "cpe23Type", "referenceLocator": cpe}));
    }
    let mut out = json!({
        "SPDXID": id,
        "name": c.name,
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "externalRefs": refs,
    });
    if let Some(v) = &c.version {
        out["versionInfo"] = json!(v);
    }
    out
}

/// `sbom` as an SPDX 2.3 JSON document named `name`; `namespace` is the document's unique
/// URI, `created` RFC 3339 (the caller's: nothing here reads the clock).
pub fn to_spdx(sbom: &Sbom, name: &str, namespace: &str, created: &str) -> Value {
    let mut packages = Vec::new();
    let mut relationships = Vec::new();
    let subject_id = "SPDXRef-subject".to_owned();
    if let Some(subject) = &sbom.subject {
        packages.push(package_json(subject, &subject_id));
        relationships.push(json!({"spdxElementId": "SPDXRef-DOCUMENT",
            "relationshipType": "DESCRIBES", "relatedSpdxElement": subject_id}));
    }
    for (i, c) in sbom.components.iter().enumerate() {
        let id = spdx_id("component", i);
        packages.push(package_json(c, &id));
        let (from, kind) = if sbom.subject.is_some() {
            (subject_id.as_str(), "CONTAINS")
        } else {
            ("SPDXRef-DOCUMENT", "DESCRIBES")
        };
        relationships.push(json!({"spdxElementId": from, "relationshipType": kind,
            "relatedSpdxElement": id}));
    }
    json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": name,
        "documentNamespace": namespace,
        "creationInfo": {"created": created, "creators": ["Tool: sigil"]},
        "packages": packages,
        "relationships": relationships,
    })
}
