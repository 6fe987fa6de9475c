//! A product's VEX written as CSAF 2.0 (profile `csaf_vex`, OASIS CSAF 2.0 section 4.5), the
//! format BSI and CISA ask for: a product tree (vendor, product, each version, each component
//! as part of a version), and per vulnerability its product status with what the profile
//! requires of each: an impact statement (a flag or a threat) for every product not affected,
//! an action statement (a remediation) for every product affected.
//!
//! No kept crate writes CSAF; the document is plain JSON built here from the same statements
//! as the OpenVEX export, and the suite checks it with BSI's validator (secvisogram's
//! csaf-validator-lib: schema, mandatory tests and the VEX profile's).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::vex::{OutStatement, VexStatus};

/// The justifications CSAF has flags for (section 3.2.3.5); OpenVEX uses the same words.
const CSAF_FLAGS: [&str; 5] = [
    "component_not_present",
    "inline_mitigations_already_exist",
    "vulnerable_code_cannot_be_controlled_by_adversary",
    "vulnerable_code_not_in_execute_path",
    "vulnerable_code_not_present",
];

/// Who publishes the document, and under which identifiers.
#[derive(Debug, Clone)]
pub struct CsafHeader<'a> {
    pub manufacturer: &'a str,
    pub product: &'a str,
    /// A URL naming the publisher (CSAF `publisher.namespace`).
    pub namespace: &'a str,
    /// The document's tracking id, unique for the publisher.
    pub tracking_id: &'a str,
    /// RFC 3339.
    pub now: &'a str,
}

/// `(name, version)` of a purl, if it parses.
fn name_version(purl: &str) -> Option<(String, Option<String>)> {
    let p: packageurl::PackageUrl<'_> = purl.parse().ok()?;
    Some((p.name().to_owned(), p.version().map(str::to_owned)))
}

/// The product ids of a document: one per product version, one per component in a version.
#[derive(Default)]
struct Tree {
    versions: BTreeMap<String, (String, String)>,
    parts: BTreeMap<(String, String), String>,
    components: BTreeMap<String, String>,
}

impl Tree {
    fn version(&mut self, purl: &str) -> String {
        let n = self.versions.len();
        self.versions
            .entry(purl.to_owned())
            .or_insert_with(|| {
                let version = name_version(purl)
                    .and_then(|(_, v)| v)
                    .unwrap_or_else(|| "unknown".into());
                (format!("CSAFPID-{:04}", n + 1), version)
            })
            .0
            .clone()
    }

    fn component(&mut self, purl: &str) -> String {
        let n = self.components.len();
        self.components
            .entry(purl.to_owned())
            .or_insert_with(|| format!("CSAFPID-C{:04}", n + 1))
            .clone()
    }

    /// The id of `component` as part of `product` (a relationship).
    fn part(&mut self, product: &str, component: &str) -> String {
        let version = self.version(product);
        self.component(component);
        let n = self.parts.len();
        self.parts
            .entry((product.to_owned(), component.to_owned()))
            .or_insert_with(|| format!("{version}-P{:04}", n + 1))
            .clone()
    }

    fn to_json(&self, header: &CsafHeader<'_>) -> Value {
        let versions: Vec<Value> = self
            .versions
            .iter()
            .map(|(purl, (id, version))| {
                json!({"category": "product_version", "name": version,
                       "product": {"product_id": id, "name": format!("{} {version}", header.product),
                                   "product_identification_helper": {"purl": purl}}})
            })
            .collect();
        let components: Vec<Value> = self
            .components
            .iter()
            .map(|(purl, id)| {
                let (name, version) =
                    name_version(purl).unwrap_or_else(|| (purl.clone(), None));
                let label = match version {
                    Some(v) => format!("{name} {v}"),
                    None => name,
                };
                json!({"product_id": id, "name": label, "product_identification_helper": {"purl": purl}})
            })
            .collect();
        let relationships: Vec<Value> = self
            .parts
            .iter()
            .map(|((product, component), id)| {
                let (pid, version) = &self.versions[product];
                json!({"category": "default_component_of",
                       "product_reference": self.components[component],
                       "relates_to_product_reference": pid,
                       "full_product_name": {"product_id": id,
                           "name": format!("{} as part of {} {version}", name_version(component).map_or(component.clone(), |(n, _)| n), header.product)}})
            })
            .collect();
        let mut tree = json!({"branches": [{"category": "vendor", "name": header.manufacturer,
            "branches": [{"category": "product_name", "name": header.product, "branches": versions}]}]});
        if !components.is_empty() {
            tree["full_product_names"] = json!(components);
            tree["relationships"] = json!(relationships);
        }
        tree
    }
}

/// Per vulnerability: its statements' product ids by status, with their statements.
#[derive(Default)]
struct Entry {
    aliases: Vec<String>,
    status: BTreeMap<&'static str, Vec<String>>,
    /// `(justification label, product ids)`.
    flags: BTreeMap<String, Vec<String>>,
    /// `(category, details) -> product ids`, for threats (impact) and remediations.
    threats: BTreeMap<String, Vec<String>>,
    remediations: BTreeMap<(String, String), Vec<String>>,
}

fn status_key(s: VexStatus) -> &'static str {
    match s {
        VexStatus::Affected => "known_affected",
        VexStatus::NotAffected => "known_not_affected",
        VexStatus::Fixed => "fixed",
        VexStatus::UnderInvestigation => "under_investigation",
    }
}

/// A CVE id goes in `cve`; others in `ids` under the system their prefix names.
fn ids(vulnerability: &str, aliases: &[String]) -> (Option<String>, Vec<Value>) {
    let all = std::iter::once(vulnerability).chain(aliases.iter().map(String::as_str));
    let mut cve = None;
    let mut others = Vec::new();
    for id in all {
        if cve.is_none() && crate::kev::is_cve(id) {
            cve = Some(id.to_owned());
        } else if !others.iter().any(|o: &Value| o["text"] == id) {
            let system = id.split('-').next().unwrap_or("OSV");
            others.push(json!({"system_name": system, "text": id}));
        }
    }
    (cve, others)
}

/// The CSAF 2.0 VEX document of `statements`.
pub fn to_csaf(header: &CsafHeader<'_>, statements: &[OutStatement]) -> Value {
    let mut tree = Tree::default();
    let mut entries: BTreeMap<String, Entry> = BTreeMap::new();
    for s in statements {
        let id = match &s.component {
            Some(c) => tree.part(&s.product, c),
            None => tree.version(&s.product),
        };
        let e = entries.entry(s.vulnerability.clone()).or_default();
        for a in &s.aliases {
            if !e.aliases.contains(a) {
                e.aliases.push(a.clone());
            }
        }
        // One status per product id (CSAF 6.1.6): the first statement about it stands (the
        // product's findings come before the `fixed` ones derived from later versions).
        if e.status.values().any(|ids| ids.contains(&id)) {
            continue;
        }
        e.status
            .entry(status_key(s.status))
            .or_default()
            .push(id.clone());
        match s.status {
            VexStatus::NotAffected => match (&s.justification, &s.statement) {
                (Some(j), _) if CSAF_FLAGS.contains(&j.as_str()) => {
                    e.flags.entry(j.clone()).or_default().push(id);
                }
                (Some(j), _) => e
                    .threats
                    .entry(format!("Not affected: {}.", j.replace('_', " ")))
                    .or_default()
                    .push(id),
                (None, Some(text)) => e.threats.entry(text.clone()).or_default().push(id),
                (None, None) => e
                    .threats
                    .entry("The product is not affected.".into())
                    .or_default()
                    .push(id),
            },
            VexStatus::Affected => {
                let details = s
                    .statement
                    .clone()
                    .unwrap_or_else(|| "No remediation is known yet.".into());
                let category = if details.starts_with("no fixed version") || s.statement.is_none() {
                    "none_available"
                } else {
                    "vendor_fix"
                };
                e.remediations
                    .entry((category.to_owned(), details))
                    .or_default()
                    .push(id);
            }
            VexStatus::Fixed | VexStatus::UnderInvestigation => {}
        }
    }
    let vulnerabilities: Vec<Value> = entries
        .into_iter()
        .map(|(vulnerability, e)| {
            let (cve, other_ids) = ids(&vulnerability, &e.aliases);
            let mut v = json!({
                "notes": [{"category": "description", "title": "Vulnerability",
                           "text": format!("{vulnerability} in components of {}.", header.product)}],
                "product_status": e.status,
            });
            if let Some(cve) = cve {
                v["cve"] = json!(cve);
            }
            if !other_ids.is_empty() {
                v["ids"] = json!(other_ids);
            }
            if !e.flags.is_empty() {
                v["flags"] = e
                    .flags
                    .into_iter()
                    .map(|(label, ids)| json!({"label": label, "product_ids": ids}))
                    .collect();
            }
            if !e.threats.is_empty() {
                v["threats"] = e
                    .threats
                    .into_iter()
                    .map(|(details, ids)| json!({"category": "impact", "details": details, "product_ids": ids}))
                    .collect();
            }
            if !e.remediations.is_empty() {
                v["remediations"] = e
                    .remediations
                    .into_iter()
                    .map(|((category, details), ids)| json!({"category": category, "details": details, "product_ids": ids}))
                    .collect();
            }
            v
        })
        .collect();
    json!({
        "document": {
            "category": "csaf_vex",
            "csaf_version": "2.0",
            "title": format!("{} VEX", header.product),
            "publisher": {"category": "vendor", "name": header.manufacturer, "namespace": header.namespace},
            "notes": [{"category": "summary", "title": "About this document",
                       "text": format!("The status of known vulnerabilities in each version of {} and its components, as {} assesses it.", header.product, header.manufacturer)}],
            "tracking": {
                "id": header.tracking_id,
                "status": "final",
                "version": "1",
                "initial_release_date": header.now,
                "current_release_date": header.now,
                "revision_history": [{"date": header.now, "number": "1", "summary": "Initial version."}],
                "generator": {"engine": {"name": "Sigil", "version": env!("CARGO_PKG_VERSION")}, "date": header.now}
            }
        },
        "product_tree": tree.to_json(header),
        "vulnerabilities": vulnerabilities,
    })
}
