//! SPDX 3.0 JSON-LD (3.0.0 and 3.0.1) in the compact form the SPDX context defines, as the SPDX
//! project's own bindings write it: the `software_Package` elements of the `@graph` (name,
//! `software_packageVersion`, `software_packageUrl`, and purl or CPE external identifiers), the
//! SBOM's root element as the subject. Read with serde_json's tree: JSON-LD's shape (typed
//! nodes in a graph) suits no fixed struct, and no maintained crate reads SPDX 3.

use serde_json::Value;

use super::{Component, Sbom, SbomFormat, checked_text, malformed, purl_problem};
use crate::VulnError;

/// The context every SPDX 3.0 document names.
const CONTEXT: &str = "spdx.org/rdf/3.0";
const VERSIONS: [&str; 2] = ["3.0.0", "3.0.1"];
/// Largest SPDX 3 document: read as a tree, a JSON-LD document costs several times its size
/// in memory (a 10,000-package SBOM is about 4 MiB).
pub const MAX_SPDX3_BYTES: usize = 16 * 1024 * 1024;

/// Whether a JSON document's `@context` is SPDX 3's.
pub(super) fn is_spdx3(context: &Value) -> bool {
    match context {
        Value::String(s) => s.contains(CONTEXT),
        Value::Array(items) => items.iter().any(is_spdx3),
        _ => false,
    }
}

fn refuse_at(text: &[u8], id: &str, reason: String) -> VulnError {
    // The line of the element's id, for a person to find it.
    let needle = format!("\"{id}\"");
    let line = String::from_utf8_lossy(text).find(&needle).map_or(1, |at| {
        1 + text[..at].iter().filter(|b| **b == b'\n').count()
    });
    VulnError::Malformed {
        what: "SBOM",
        line,
        reason,
    }
}

/// An element's id: `spdxId` (or JSON-LD's `@id`).
fn id_of(element: &Value) -> Option<&str> {
    element
        .get("spdxId")
        .or_else(|| element.get("@id"))
        .and_then(Value::as_str)
}

/// A reference to an element: its id, or the element itself written in place.
fn reference(value: &Value) -> Option<&str> {
    value.as_str().or_else(|| id_of(value))
}

fn text_field(text: &[u8], element: &Value, field: &str) -> Result<Option<String>, VulnError> {
    let Some(value) = element.get(field) else {
        return Ok(None);
    };
    let id = id_of(element).unwrap_or("?");
    let value = value
        .as_str()
        .ok_or_else(|| refuse_at(text, id, format!("`{field}` is not a string")))?;
    if value.is_empty() {
        return Ok(None);
    }
    checked_text(field, value).map_err(|reason| refuse_at(text, id, reason))?;
    Ok(Some(value.to_owned()))
}

fn package(text: &[u8], element: &Value) -> Result<Component, VulnError> {
    let Some(id) = id_of(element) else {
        return Err(refuse_at(
            text,
            "software_Package",
            "a software_Package without an `spdxId`".into(),
        ));
    };
    checked_text("spdxId", id).map_err(|reason| refuse_at(text, id, reason))?;
    let name = text_field(text, element, "name")?
        .ok_or_else(|| refuse_at(text, id, "a software_Package needs a `name`".into()))?;
    let mut purl = text_field(text, element, "software_packageUrl")?;
    let mut cpe = None;
    for identifier in element
        .get("externalIdentifier")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let value = identifier.get("identifier").and_then(Value::as_str);
        match (
            identifier
                .get("externalIdentifierType")
                .and_then(Value::as_str),
            value,
        ) {
            (Some("packageUrl"), Some(v)) if purl.is_none() => purl = Some(v.to_owned()),
            (Some("cpe23" | "cpe22"), Some(v)) if cpe.is_none() => cpe = Some(v.to_owned()),
            _ => {}
        }
    }
    if let Some(p) = &purl {
        checked_text("purl", p).map_err(|reason| refuse_at(text, id, reason))?;
    }
    if let Some(problem) = purl.as_deref().and_then(purl_problem) {
        return Err(refuse_at(text, id, problem));
    }
    if let Some(c) = &cpe {
        checked_text("cpe", c).map_err(|reason| refuse_at(text, id, reason))?;
    }
    Ok(Component {
        name,
        version: text_field(text, element, "software_packageVersion")?,
        purl,
        cpe,
        reference: Some(id.to_owned()),
    })
}

pub(super) fn parse(text: &[u8]) -> Result<Sbom, VulnError> {
    if text.len() > MAX_SPDX3_BYTES {
        return Err(VulnError::TooLarge {
            what: "SPDX 3 document",
            limit: MAX_SPDX3_BYTES,
        });
    }
    let doc: Value = serde_json::from_slice(text).map_err(|e| malformed(&e))?;
    let graph = doc.get("@graph").and_then(Value::as_array).ok_or_else(|| {
        VulnError::UnsupportedSbom("an SPDX 3 document without a `@graph`".into())
    })?;
    let kind = |e: &Value| e.get("type").and_then(Value::as_str).map(str::to_owned);
    let mut spec_version = None;
    let mut root = None;
    let mut packages = Vec::new();
    let mut seen = std::collections::HashSet::new();
    // Elements may also be written in place inside another's `element` list.
    let mut stack: Vec<&Value> = graph.iter().rev().collect();
    while let Some(element) = stack.pop() {
        if let Some(inner) = element.get("element").and_then(Value::as_array) {
            stack.extend(inner.iter().filter(|e| e.is_object()).rev());
        }
        match kind(element).as_deref() {
            Some("CreationInfo") => {
                let v = element
                    .get("specVersion")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                if !VERSIONS.contains(&v) {
                    return Err(VulnError::UnsupportedSbom(format!(
                        "SPDX specVersion `{}` (Sigil reads {})",
                        v.chars().take(16).collect::<String>(),
                        VERSIONS.join(", ")
                    )));
                }
                spec_version.get_or_insert_with(|| v.to_owned());
            }
            Some("software_Sbom") if root.is_none() => {
                root = element
                    .get("rootElement")
                    .and_then(Value::as_array)
                    .and_then(|r| r.first())
                    .and_then(reference)
                    .map(str::to_owned);
            }
            Some("software_Package") => {
                let p = package(text, element)?;
                // One package, one id: a repeat would be matched (and exported) twice.
                if !seen.insert(p.reference.clone()) {
                    let id = p.reference.unwrap_or_default();
                    return Err(refuse_at(text, &id, format!("`{id}` names two elements")));
                }
                packages.push(p);
            }
            _ => {}
        }
    }
    let spec_version = spec_version.ok_or_else(|| {
        VulnError::UnsupportedSbom("an SPDX 3 document without a CreationInfo's specVersion".into())
    })?;
    let subject = root.as_deref().and_then(|r| {
        packages
            .iter()
            .position(|p| p.reference.as_deref() == Some(r))
            .map(|at| packages.remove(at))
    });
    Ok(Sbom {
        format: SbomFormat::Spdx,
        spec_version: format!("SPDX-{spec_version}"),
        subject,
        components: packages,
    })
}
