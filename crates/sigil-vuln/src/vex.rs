//! VEX (Vulnerability Exploitability eXchange) in: OpenVEX (v0.2), CycloneDX VEX (a BOM's
//! `vulnerabilities` with `analysis` and `affects`) and CSAF 2.0 VEX (`csaf_vex` documents),
//! read into one kind of statement. A statement names a vulnerability and, where the format
//! says, the component it speaks of (by purl): it applies to that vulnerability *in that
//! component*, never to the CVE wherever it appears.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::Value;

use crate::VulnError;

/// Largest VEX document accepted.
pub const MAX_VEX_BYTES: usize = 16 * 1024 * 1024;
/// Most statements in one document.
pub const MAX_STATEMENTS: usize = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VexStatus {
    NotAffected,
    Affected,
    Fixed,
    UnderInvestigation,
}

impl VexStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotAffected => "not_affected",
            Self::Affected => "affected",
            Self::Fixed => "fixed",
            Self::UnderInvestigation => "under_investigation",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "not_affected" => Self::NotAffected,
            "affected" => Self::Affected,
            "fixed" => Self::Fixed,
            "under_investigation" => Self::UnderInvestigation,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum VexFormat {
    #[serde(rename = "openvex")]
    OpenVex,
    #[serde(rename = "cyclonedx")]
    CycloneDx,
    Csaf,
}

/// One statement: a vulnerability, the component it concerns (`None`: the whole product the
/// document is for), its status and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VexStatement {
    pub vulnerability: String,
    /// The component's purl; with a version it names that version only.
    pub component: Option<String>,
    pub status: VexStatus,
    /// Why it is not affected (OpenVEX and CSAF justifications, CycloneDX's).
    pub justification: Option<String>,
    pub statement: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VexDocument {
    pub format: VexFormat,
    pub statements: Vec<VexStatement>,
}

fn bad(format: &str, why: impl Into<String>) -> VulnError {
    VulnError::InvalidVex(format!("{format}: {}", why.into()))
}

fn text(v: &Value) -> Option<String> {
    v.as_str()
        .filter(|s| !s.is_empty() && s.len() <= 1024 && !s.chars().any(char::is_control))
        .map(str::to_owned)
}

fn checked_purl(format: &str, p: &str) -> Result<String, VulnError> {
    p.parse::<packageurl::PackageUrl<'_>>()
        .map(|_| p.to_owned())
        .map_err(|_| {
            bad(
                format,
                format!(
                    "`{}` is not a package URL",
                    p.chars().take(120).collect::<String>()
                ),
            )
        })
}

impl VexDocument {
    /// Parse an OpenVEX, CycloneDX VEX or CSAF VEX JSON document, whichever it is.
    pub fn parse(bytes: &[u8]) -> Result<Self, VulnError> {
        if bytes.len() > MAX_VEX_BYTES {
            return Err(VulnError::TooLarge {
                what: "VEX document",
                limit: MAX_VEX_BYTES,
            });
        }
        let doc: Value = serde_json::from_slice(bytes).map_err(|e| VulnError::Malformed {
            what: "VEX document",
            line: e.line(),
            reason: e.to_string(),
        })?;
        let parsed = if doc["@context"]
            .as_str()
            .is_some_and(|c| c.starts_with("https://openvex.dev/ns"))
        {
            openvex(&doc)?
        } else if doc["bomFormat"] == "CycloneDX" {
            cyclonedx(&doc)?
        } else if doc["document"]["category"] == "csaf_vex" {
            csaf(&doc)?
        } else {
            return Err(VulnError::InvalidVex(
                "neither OpenVEX (`@context`), CycloneDX (`bomFormat`) nor CSAF VEX (`document.category` csaf_vex)"
                    .into(),
            ));
        };
        if parsed.statements.is_empty() {
            return Err(VulnError::InvalidVex(
                "the document makes no statement".into(),
            ));
        }
        if parsed.statements.len() > MAX_STATEMENTS {
            return Err(VulnError::TooLarge {
                what: "VEX statement list",
                limit: MAX_STATEMENTS,
            });
        }
        Ok(parsed)
    }
}

fn openvex(doc: &Value) -> Result<VexDocument, VulnError> {
    const F: &str = "OpenVEX";
    let mut out = Vec::new();
    let statements = doc["statements"]
        .as_array()
        .ok_or_else(|| bad(F, "no `statements` list"))?;
    for (i, s) in statements.iter().enumerate() {
        let vulnerability = text(&s["vulnerability"]["name"])
            .or_else(|| text(&s["vulnerability"]["@id"]))
            .or_else(|| text(&s["vulnerability"]))
            .ok_or_else(|| bad(F, format!("statements[{i}] names no vulnerability")))?;
        let status = s["status"]
            .as_str()
            .and_then(VexStatus::parse)
            .ok_or_else(|| bad(F, format!("statements[{i}].status is not a VEX status")))?;
        let justification = text(&s["justification"]);
        if status == VexStatus::NotAffected
            && justification.is_none()
            && text(&s["impact_statement"]).is_none()
        {
            return Err(bad(
                F,
                format!(
                    "statements[{i}]: not_affected needs a justification or an impact statement"
                ),
            ));
        }
        let statement = text(&s["impact_statement"]).or_else(|| text(&s["action_statement"]));
        // Components: the products' subcomponents (their purls); a product without
        // subcomponents is the whole product.
        let mut components = Vec::new();
        for p in s["products"].as_array().into_iter().flatten() {
            let subs: Vec<&Value> = p["subcomponents"]
                .as_array()
                .into_iter()
                .flatten()
                .collect();
            if subs.is_empty() {
                components.push(None);
            }
            for sub in subs {
                let purl = text(&sub["identifiers"]["purl"])
                    .or_else(|| text(&sub["@id"]))
                    .ok_or_else(|| {
                        bad(F, format!("statements[{i}]: a subcomponent without a purl"))
                    })?;
                components.push(Some(checked_purl(F, &purl)?));
            }
        }
        if components.is_empty() {
            components.push(None);
        }
        for component in components {
            out.push(VexStatement {
                vulnerability: vulnerability.clone(),
                component,
                status,
                justification: justification.clone(),
                statement: statement.clone(),
            });
        }
    }
    Ok(VexDocument {
        format: VexFormat::OpenVex,
        statements: out,
    })
}

fn cyclonedx(doc: &Value) -> Result<VexDocument, VulnError> {
    const F: &str = "CycloneDX VEX";
    // `affects[].ref` names a component by its bom-ref (or directly by purl).
    let mut purl_of: HashMap<String, String> = HashMap::new();
    let mut stack: Vec<&Value> = doc["components"].as_array().into_iter().flatten().collect();
    while let Some(c) = stack.pop() {
        if let (Some(r), Some(p)) = (text(&c["bom-ref"]), text(&c["purl"])) {
            purl_of.insert(r, p);
        }
        stack.extend(c["components"].as_array().into_iter().flatten());
    }
    let mut out = Vec::new();
    let vulns = doc["vulnerabilities"]
        .as_array()
        .ok_or_else(|| bad(F, "no `vulnerabilities` list"))?;
    for (i, v) in vulns.iter().enumerate() {
        let vulnerability =
            text(&v["id"]).ok_or_else(|| bad(F, format!("vulnerabilities[{i}] has no id")))?;
        let state = v["analysis"]["state"].as_str().unwrap_or_default();
        let status = match state {
            "not_affected" | "false_positive" => VexStatus::NotAffected,
            "exploitable" => VexStatus::Affected,
            "resolved" | "resolved_with_pedigree" => VexStatus::Fixed,
            "in_triage" => VexStatus::UnderInvestigation,
            _ => {
                return Err(bad(
                    F,
                    format!(
                        "vulnerabilities[{i}].analysis.state is not a CycloneDX analysis state"
                    ),
                ));
            }
        };
        let justification = text(&v["analysis"]["justification"]);
        let statement = text(&v["analysis"]["detail"]);
        let affects: Vec<&Value> = v["affects"].as_array().into_iter().flatten().collect();
        if affects.is_empty() {
            return Err(bad(F, format!("vulnerabilities[{i}] affects nothing")));
        }
        for a in affects {
            let reference = text(&a["ref"])
                .ok_or_else(|| bad(F, format!("vulnerabilities[{i}].affects without a ref")))?;
            let purl = match purl_of.get(&reference) {
                Some(p) => p.clone(),
                None if reference.starts_with("pkg:") => reference.clone(),
                None => {
                    return Err(bad(
                        F,
                        format!(
                            "vulnerabilities[{i}]: `{reference}` is no component of the document"
                        ),
                    ));
                }
            };
            out.push(VexStatement {
                vulnerability: vulnerability.clone(),
                component: Some(checked_purl(F, &purl)?),
                status,
                justification: justification.clone(),
                statement: statement.clone(),
            });
        }
    }
    Ok(VexDocument {
        format: VexFormat::CycloneDx,
        statements: out,
    })
}

/// Every `product_id` of a CSAF product tree, with the purl its identification helper gives.
fn csaf_products(tree: &Value) -> HashMap<String, Option<String>> {
    let mut out = HashMap::new();
    let mut stack: Vec<&Value> = vec![tree];
    while let Some(node) = stack.pop() {
        let names = node["full_product_names"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(node.get("product"));
        for p in names {
            if let Some(id) = text(&p["product_id"]) {
                out.insert(id, text(&p["product_identification_helper"]["purl"]));
            }
        }
        stack.extend(node["branches"].as_array().into_iter().flatten());
    }
    // A relationship names a component as part of a product version under an id of its own;
    // a statement about that id is about the component (the referenced product's purl).
    for r in tree["relationships"].as_array().into_iter().flatten() {
        if let (Some(id), Some(component)) = (
            text(&r["full_product_name"]["product_id"]),
            text(&r["product_reference"]),
        ) {
            let purl = r["full_product_name"]["product_identification_helper"]["purl"]
                .as_str()
                .map(str::to_owned)
                .or_else(|| out.get(&component).cloned().flatten());
            out.insert(id, purl);
        }
    }
    out
}

fn csaf(doc: &Value) -> Result<VexDocument, VulnError> {
    const F: &str = "CSAF VEX";
    let products = csaf_products(&doc["product_tree"]);
    let mut out = Vec::new();
    let vulns = doc["vulnerabilities"]
        .as_array()
        .ok_or_else(|| bad(F, "no `vulnerabilities` list"))?;
    for (i, v) in vulns.iter().enumerate() {
        let vulnerability = text(&v["cve"])
            .or_else(|| {
                v["ids"]
                    .as_array()
                    .and_then(|ids| ids.first())
                    .and_then(|id| text(&id["text"]))
            })
            .ok_or_else(|| bad(F, format!("vulnerabilities[{i}] has no cve or id")))?;
        // Why a product is not affected: its flag, or the threat of category impact.
        let mut why: HashMap<String, String> = HashMap::new();
        for flag in v["flags"].as_array().into_iter().flatten() {
            if let Some(label) = text(&flag["label"]) {
                for id in flag["product_ids"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(text)
                {
                    why.insert(id, label.clone());
                }
            }
        }
        for threat in v["threats"].as_array().into_iter().flatten() {
            if threat["category"] == "impact"
                && let Some(details) = text(&threat["details"])
            {
                for id in threat["product_ids"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(text)
                {
                    why.entry(id).or_insert_with(|| details.clone());
                }
            }
        }
        for (field, status) in [
            ("known_not_affected", VexStatus::NotAffected),
            ("known_affected", VexStatus::Affected),
            ("fixed", VexStatus::Fixed),
            ("under_investigation", VexStatus::UnderInvestigation),
        ] {
            for id in v["product_status"][field]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(text)
            {
                let purl = products.get(&id).ok_or_else(|| {
                    bad(
                        F,
                        format!("vulnerabilities[{i}]: product `{id}` is not in the product tree"),
                    )
                })?;
                let justification = why.get(&id).cloned();
                if status == VexStatus::NotAffected && justification.is_none() {
                    return Err(bad(
                        F,
                        format!(
                            "vulnerabilities[{i}]: `{id}` is known_not_affected without a flag or an impact statement"
                        ),
                    ));
                }
                out.push(VexStatement {
                    vulnerability: vulnerability.clone(),
                    component: match purl {
                        Some(p) => Some(checked_purl(F, p)?),
                        None => None,
                    },
                    status,
                    justification,
                    statement: None,
                });
            }
        }
    }
    Ok(VexDocument {
        format: VexFormat::Csaf,
        statements: out,
    })
}

/// Whether a statement about `component` (a purl, maybe without version) speaks of the
/// component whose purl is `installed`: same type, namespace and name, and the same version
/// if the statement names one. Qualifiers are not compared (`arch`, `distro` describe a build).
pub fn component_matches(statement: &str, installed: &str) -> bool {
    let (Ok(s), Ok(i)) = (
        statement.parse::<packageurl::PackageUrl<'_>>(),
        installed.parse::<packageurl::PackageUrl<'_>>(),
    ) else {
        return false;
    };
    s.ty() == i.ty()
        && s.namespace() == i.namespace()
        && s.name() == i.name()
        && s.version().is_none_or(|v| Some(v) == i.version())
}

/// A statement Sigil publishes: a vulnerability (and its other ids) in a component of one
/// version of a product.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutStatement {
    pub vulnerability: String,
    pub aliases: Vec<String>,
    /// The product version's purl (`pkg:generic/NAME@VERSION`).
    pub product: String,
    /// The component's purl.
    pub component: Option<String>,
    pub status: VexStatus,
    pub justification: Option<String>,
    /// Why not affected (OpenVEX's `impact_statement`), or what to do (`action_statement`,
    /// which OpenVEX requires of `affected`).
    pub statement: Option<String>,
}

/// `pkg:generic/NAME@VERSION`, the purl of a product version (names percent-encoded).
pub fn product_purl(name: &str, version: &str) -> String {
    let mut p = match packageurl::PackageUrl::new("generic", name) {
        Ok(p) => p,
        Err(_) => return format!("pkg:generic/product@{version}"),
    };
    if p.with_version(version).is_err() {
        return format!("pkg:generic/{}", p);
    }
    p.to_string()
}

/// An OpenVEX v0.2 document; `id` is its IRI, `timestamp` RFC 3339 (the caller's: nothing
/// here reads the clock).
pub fn to_openvex(author: &str, id: &str, timestamp: &str, statements: &[OutStatement]) -> Value {
    let statements: Vec<Value> = statements
        .iter()
        .map(|s| {
            let mut product = serde_json::json!({"@id": s.product});
            if let Some(c) = &s.component {
                product["subcomponents"] = serde_json::json!([{"@id": c}]);
            }
            let mut out = serde_json::json!({
                "vulnerability": {"name": s.vulnerability},
                "products": [product],
                "status": s.status.as_str(),
            });
            if !s.aliases.is_empty() {
                out["vulnerability"]["aliases"] = serde_json::json!(s.aliases);
            }
            if let Some(j) = &s.justification {
                out["justification"] = serde_json::json!(j);
            }
            if let Some(text) = &s.statement {
                let field = match s.status {
                    VexStatus::NotAffected => "impact_statement",
                    _ => "action_statement",
                };
                out[field] = serde_json::json!(text);
            }
            out
        })
        .collect();
    serde_json::json!({
        "@context": "https://openvex.dev/ns/v0.2.0",
        "@id": id,
        "author": author,
        "timestamp": timestamp,
        "version": 1,
        "statements": statements,
    })
}
