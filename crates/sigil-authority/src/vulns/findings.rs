//! A product's findings: every component of its SBOMs matched against the records naming its
//! package. Each record is parsed and compiled once per request, each distinct (package,
//! version) judged once, and the matching runs on a blocking thread; the lists are capped, so
//! a hostile SBOM (200,000 copies of one package) costs one judgement, not 200,000.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use sigil_store::{ComponentRow, SbomRecord};
use sigil_vuln::kev::is_cve;
use sigil_vuln::{
    CompiledAffected, Ecosystem, OsvRecord, RecordSeverity, Verdict, package_ref, record_severity,
};

use super::{Finding, ProductFindings, Undecided, VexView};
use crate::{Authority, AuthorityError, RequestError};

/// Most findings, and undecided matches, one answer lists.
pub const MAX_FINDINGS: usize = 10_000;
pub const MAX_UNDECIDED: usize = 1_000;

/// A record, compiled once: its ids, summary, and its entries ready to match.
pub(crate) struct Compiled {
    ids: BTreeSet<String>,
    summary: Option<String>,
    severity: RecordSeverity,
    entries: Vec<CompiledAffected>,
}

/// What one distinct package version gets: `(record id, verdict)` per record naming it.
type Judgement = Vec<(String, Verdict)>;

/// Records compiled by earlier requests, by id, with the `modified` they were compiled from:
/// a request reads only ids and `modified` from the database and compiles what changed.
#[derive(Default)]
pub(crate) struct CompiledCache(Mutex<HashMap<String, (String, Arc<Compiled>)>>);

/// Most records the cache holds (it starts again empty past this).
const CACHED_RECORDS: usize = 1_000_000;

fn compile_record(json: &str) -> Option<Compiled> {
    // Stored records were checked when imported; one that no longer parses is skipped.
    let record = OsvRecord::parse(json.as_bytes()).ok()?;
    Some(Compiled {
        ids: record.identifiers().map(str::to_owned).collect(),
        summary: record.summary.clone(),
        severity: record_severity(&record),
        entries: sigil_vuln::compile(&record),
    })
}

struct Matcher {
    records: HashMap<String, Arc<Compiled>>,
    /// Record ids per `(ecosystem without release, package)`.
    by_package: HashMap<(String, String), Vec<String>>,
    memo: HashMap<(Ecosystem, String, String), Judgement>,
}

impl Matcher {
    /// `keys`: `(id, ecosystem without release, package)` of each record naming a package.
    fn new(keys: Vec<(String, String, String)>, records: HashMap<String, Arc<Compiled>>) -> Self {
        let mut by_package: HashMap<(String, String), Vec<String>> = HashMap::new();
        for (id, ecosystem, package) in keys {
            let ids = by_package.entry((ecosystem, package)).or_default();
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        Self {
            records,
            by_package,
            memo: HashMap::new(),
        }
    }

    fn judge(&mut self, ecosystem: &Ecosystem, package: &str, version: &str) -> &Judgement {
        let key = (ecosystem.clone(), package.to_owned(), version.to_owned());
        if !self.memo.contains_key(&key) {
            let base = ecosystem.base().to_string();
            let mut out = Vec::new();
            for id in self
                .by_package
                .get(&(base, package.to_owned()))
                .into_iter()
                .flatten()
            {
                let Some(record) = self.records.get(id) else {
                    continue;
                };
                let mut verdict = Verdict::NotAffected;
                for entry in &record.entries {
                    if entry.name != package || !entry.ecosystem.covers(ecosystem) {
                        continue;
                    }
                    match entry.evaluate(version) {
                        affected @ Verdict::Affected { .. } => {
                            verdict = affected;
                            break;
                        }
                        undecided @ Verdict::CannotDecide { .. } => verdict = undecided,
                        Verdict::NotAffected => {}
                    }
                }
                out.push((id.clone(), verdict));
            }
            self.memo.insert(key.clone(), out);
        }
        &self.memo[&key]
    }
}

/// Records of one component that share an id or alias: one vulnerability.
struct Group {
    ids: BTreeSet<String>,
    summary: Option<String>,
    severity: RecordSeverity,
    fixed: Option<String>,
}

fn merge_aliases(hits: Vec<(&Compiled, Option<String>)>) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    for (record, fixed) in hits {
        let mut merged = Group {
            ids: record.ids.clone(),
            summary: record.summary.clone(),
            severity: record.severity,
            fixed,
        };
        // Fold in every group this record shares an id with (it may join two).
        let mut i = 0;
        while i < groups.len() {
            if groups[i].ids.iter().any(|id| merged.ids.contains(id)) {
                let g = groups.remove(i);
                merged.ids.extend(g.ids);
                merged.summary = merged.summary.or(g.summary);
                merged.severity = more_severe(merged.severity, g.severity);
                merged.fixed = merged.fixed.or(g.fixed);
            } else {
                i += 1;
            }
        }
        groups.push(merged);
    }
    groups
}

/// Of two records' severities for one vulnerability, the graver (a scored one over a rated
/// one of the same level).
fn more_severe(a: RecordSeverity, b: RecordSeverity) -> RecordSeverity {
    let key = |s: &RecordSeverity| (s.level, s.score.map(|x| (x * 10.0) as i64));
    if key(&b) > key(&a) { b } else { a }
}

/// A CVE id if the vulnerability has one, else the smallest id.
fn preferred_id(ids: &BTreeSet<String>) -> String {
    ids.iter()
        .find(|i| is_cve(i))
        .or_else(|| ids.iter().next())
        .cloned()
        .unwrap_or_default()
}

/// What a component can be matched as.
enum Target {
    /// No purl: nothing names its package.
    Unnamed,
    /// It names a package Sigil cannot match, and why.
    Undecidable(String),
    Package {
        ecosystem: Ecosystem,
        name: String,
        version: String,
    },
}

fn target(c: &ComponentRow) -> Target {
    let Some(purl) = &c.purl else {
        return Target::Unnamed;
    };
    let Some(p) = package_ref(purl) else {
        return Target::Undecidable("its purl does not parse".into());
    };
    if !p.osv_ecosystem {
        return Target::Undecidable(format!(
            "OSV has no ecosystem for pkg:{} packages",
            p.ecosystem
        ));
    }
    if p.ecosystem.needs_release() {
        return Target::Undecidable(
            "its purl names no distribution release (`distro`), and records are per release".into(),
        );
    }
    match c.version.clone().or(p.version.clone()) {
        None => Target::Undecidable("it has no version".into()),
        Some(version) => Target::Package {
            name: p.ecosystem.normalize_name(&p.name),
            ecosystem: p.ecosystem,
            version,
        },
    }
}

fn match_all(
    sboms: Vec<(SbomRecord, Vec<ComponentRow>)>,
    keys: Vec<(String, String, String)>,
    records: HashMap<String, Arc<Compiled>>,
    devices: BTreeMap<String, u64>,
) -> ProductFindings {
    let mut matcher = Matcher::new(keys, records);
    let mut out = ProductFindings {
        findings: Vec::new(),
        undecided: Vec::new(),
        truncated: false,
    };
    let mut seen_undecided = BTreeSet::new();
    // An SBOM listing one component twice gets one finding for it.
    let mut seen_findings = BTreeSet::new();
    for (sbom, components) in &sboms {
        let running = devices.get(&sbom.firmware_version).copied().unwrap_or(0);
        for c in components {
            let mut undecided = |record: &str, reason: String| {
                if seen_undecided.insert((record.to_owned(), sbom.id.clone(), c.name.clone())) {
                    if out.undecided.len() < MAX_UNDECIDED {
                        out.undecided.push(Undecided {
                            record: record.to_owned(),
                            firmware_version: sbom.firmware_version.clone(),
                            component: c.name.clone(),
                            reason,
                        });
                    } else {
                        out.truncated = true;
                    }
                }
            };
            let (ecosystem, package, version) = match target(c) {
                Target::Unnamed => continue,
                Target::Undecidable(reason) => {
                    undecided("-", reason);
                    continue;
                }
                Target::Package {
                    ecosystem,
                    name,
                    version,
                } => (ecosystem, name, version),
            };
            let judgement = matcher.judge(&ecosystem, &package, &version).clone();
            let mut hits = Vec::new();
            for (id, verdict) in judgement {
                match verdict {
                    Verdict::Affected { fixed } => {
                        if let Some(r) = matcher.records.get(&id) {
                            hits.push((r.as_ref(), fixed));
                        }
                    }
                    Verdict::CannotDecide { reason } => undecided(&id, reason),
                    Verdict::NotAffected => {}
                }
            }
            for group in merge_aliases(hits) {
                let key = (
                    sbom.id.clone(),
                    c.name.clone(),
                    version.clone(),
                    preferred_id(&group.ids),
                );
                if !seen_findings.insert(key) {
                    continue;
                }
                if out.findings.len() >= MAX_FINDINGS {
                    out.truncated = true;
                    break;
                }
                out.findings.push(Finding {
                    vulnerability: preferred_id(&group.ids),
                    ids: group.ids.into_iter().collect(),
                    summary: group.summary,
                    severity: group.severity.level,
                    cvss_score: group.severity.score,
                    first_seen: None,
                    remediation_due: None,
                    overdue: false,
                    firmware_version: sbom.firmware_version.clone(),
                    component: c.name.clone(),
                    component_version: version.clone(),
                    purl: c.purl.clone(),
                    fixed: group.fixed,
                    known_exploited: None,
                    epss: None,
                    devices: running,
                    vex: None,
                });
            }
        }
    }
    out
}

impl Authority {
    /// The records naming `packages`, compiled: from the cache where their `modified` is
    /// unchanged, read, parsed and compiled (on a blocking thread) where not.
    async fn compiled_records(
        &self,
        packages: &[String],
    ) -> Result<
        (
            Vec<(String, String, String)>,
            HashMap<String, Arc<Compiled>>,
        ),
        RequestError,
    > {
        let keys = self.store.vuln_record_keys_for(packages).await?;
        let mut records = HashMap::new();
        let mut missing = Vec::new();
        {
            let cache = self.compiled.0.lock().unwrap_or_else(|e| e.into_inner());
            for (id, _, _, modified) in &keys {
                match cache.get(id) {
                    Some((m, c)) if m == modified => {
                        records.insert(id.clone(), c.clone());
                    }
                    _ => missing.push(id.clone()),
                }
            }
        }
        missing.sort_unstable();
        missing.dedup();
        if !missing.is_empty() {
            let rows = self.store.vuln_records_by_id(&missing).await?;
            let compiled = tokio::task::spawn_blocking(move || {
                rows.into_iter()
                    .filter_map(|(id, json)| Some((id, Arc::new(compile_record(&json)?))))
                    .collect::<Vec<_>>()
            })
            .await
            .map_err(|e| AuthorityError::Internal(format!("compiling records: {e}")))?;
            let modified: HashMap<&String, &String> =
                keys.iter().map(|(id, _, _, m)| (id, m)).collect();
            let mut cache = self.compiled.0.lock().unwrap_or_else(|e| e.into_inner());
            if cache.len() + compiled.len() > CACHED_RECORDS {
                cache.clear();
            }
            for (id, c) in compiled {
                if let Some(m) = modified.get(&id) {
                    cache.insert(id.clone(), ((*m).clone(), c.clone()));
                }
                records.insert(id, c);
            }
        }
        let keys = keys.into_iter().map(|(id, e, p, _)| (id, e, p)).collect();
        Ok((keys, records))
    }

    /// Every vulnerability affecting a component of one of the product's SBOMs.
    pub async fn product_findings(&self, product: &str) -> Result<ProductFindings, RequestError> {
        let product_id: sigil_domain::ProductId = product.parse()?;
        self.store.get_product(product_id).await?;
        let devices = self.store.devices_by_firmware(product).await?;
        let mut sboms = Vec::new();
        let mut packages = BTreeSet::new();
        for sbom in self.store.sboms(product).await? {
            let components = self.store.sbom_components(&sbom.id).await?;
            packages.extend(components.iter().filter_map(|c| c.package.clone()));
            sboms.push((sbom, components));
        }
        let packages: Vec<String> = packages.into_iter().collect();
        let (keys, records) = self.compiled_records(&packages).await?;
        let mut found =
            tokio::task::spawn_blocking(move || match_all(sboms, keys, records, devices))
                .await
                .map_err(|e| AuthorityError::Internal(format!("matching: {e}")))?;
        let cves: Vec<String> = found
            .findings
            .iter()
            .flat_map(|f| f.ids.iter().filter(|i| is_cve(i)).cloned())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let (kev, epss) = self.store.exploitation(&cves).await?;
        for f in &mut found.findings {
            for id in &f.ids {
                if let Some(k) = kev.get(id) {
                    f.known_exploited = Some(k.date_added.clone());
                }
                if let Some(score) = epss.get(id) {
                    f.epss = Some(*score);
                }
            }
        }
        let statements = self.store.vex_statements(product).await?;
        for f in &mut found.findings {
            f.vex = vex_for(&statements, f);
        }
        self.add_deadlines(product, &mut found).await?;
        found.findings.sort_by(|a, b| {
            (&a.firmware_version, &a.component, &a.vulnerability).cmp(&(
                &b.firmware_version,
                &b.component,
                &b.vulnerability,
            ))
        });
        Ok(found)
    }
}

/// The statement that speaks of `finding`: one naming its vulnerability (by any of its ids)
/// and its component (by purl), else one naming the vulnerability for the whole product. A
/// statement about the CVE in another component says nothing of this one.
fn vex_for(statements: &[sigil_store::VexRow], finding: &Finding) -> Option<VexView> {
    let about = |s: &&sigil_store::VexRow| finding.ids.contains(&s.vulnerability);
    let for_component = statements.iter().filter(about).find(|s| {
        !s.component.is_empty()
            && finding
                .purl
                .as_deref()
                .is_some_and(|p| sigil_vuln::vex::component_matches(&s.component, p))
    });
    let chosen = for_component.or_else(|| {
        statements
            .iter()
            .filter(about)
            .find(|s| s.component.is_empty())
    })?;
    Some(VexView {
        status: chosen.status.clone(),
        justification: chosen.justification.clone(),
        statement: chosen.statement.clone(),
    })
}
