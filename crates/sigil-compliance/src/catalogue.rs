//! The control catalogue: checks and frameworks, loaded from TOML and cross-checked.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum CatalogueError {
    #[error("{file}: {message}")]
    Parse { file: String, message: String },
    #[error("{0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Device,
    Product,
    Organisation,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckKind {
    /// Evaluated from Sigil's live state.
    Automated,
    /// Recorded by an operator: who attests, an evidence document, an expiry.
    Attestation,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Check {
    pub id: String,
    pub scope: Scope,
    pub kind: CheckKind,
    pub title: String,
    pub description: String,
    /// AWS IoT Device Defender audit checks this check covers.
    #[serde(default)]
    pub aws_device_defender: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrameworkInfo {
    pub id: String,
    pub title: String,
    pub version: String,
    pub publisher: String,
    pub source: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Requirement {
    /// The official identifier (e.g. `5.1-1`, `I.2.d`, `DI`).
    pub id: String,
    pub group: String,
    pub group_title: String,
    /// `M` (shall) or `R` (should), where the framework distinguishes them.
    #[serde(default)]
    pub level: Option<String>,
    /// Sigil's paraphrase; the framework's own text is authoritative.
    pub summary: String,
    pub checks: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Framework {
    #[serde(rename = "framework")]
    pub info: FrameworkInfo,
    #[serde(rename = "requirement")]
    pub requirements: Vec<Requirement>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChecksFile {
    check: Vec<Check>,
}

/// The files shipped in `catalogue/`, embedded at build time.
const CHECKS: &str = include_str!("../catalogue/checks.toml");
const FRAMEWORKS: [(&str, &str); 5] = [
    (
        "etsi-en-303-645.toml",
        include_str!("../catalogue/frameworks/etsi-en-303-645.toml"),
    ),
    (
        "nistir-8259.toml",
        include_str!("../catalogue/frameworks/nistir-8259.toml"),
    ),
    (
        "nist-sp-800-213a.toml",
        include_str!("../catalogue/frameworks/nist-sp-800-213a.toml"),
    ),
    (
        "eu-cra.toml",
        include_str!("../catalogue/frameworks/eu-cra.toml"),
    ),
    (
        "eo-14028.toml",
        include_str!("../catalogue/frameworks/eo-14028.toml"),
    ),
];

/// A validated catalogue.
#[derive(Debug, Clone)]
pub struct Catalogue {
    checks: BTreeMap<String, Check>,
    frameworks: Vec<Framework>,
    version: String,
}

impl Catalogue {
    /// The catalogue shipped with this build.
    pub fn shipped() -> Result<Self, CatalogueError> {
        Self::from_files(CHECKS, &FRAMEWORKS)
    }

    /// Parse and cross-check a checks file and framework files (name, text).
    pub fn from_files(checks: &str, frameworks: &[(&str, &str)]) -> Result<Self, CatalogueError> {
        let parse_err = |file: &str, e: toml::de::Error| CatalogueError::Parse {
            file: file.to_owned(),
            message: e.to_string(),
        };
        let checks_file: ChecksFile =
            toml::from_str(checks).map_err(|e| parse_err("checks.toml", e))?;
        let mut by_id = BTreeMap::new();
        for check in checks_file.check {
            if !valid_id(&check.id) {
                return Err(CatalogueError::Invalid(format!(
                    "check id `{}`: lowercase letters, digits, `.` and `-` only",
                    check.id
                )));
            }
            let prefix_ok = match (check.kind, check.scope) {
                (CheckKind::Attestation, _) => check.id.starts_with("attest."),
                (CheckKind::Automated, Scope::Device) => check.id.starts_with("device."),
                (CheckKind::Automated, Scope::Product) => check.id.starts_with("product."),
                (CheckKind::Automated, Scope::Organisation) => check.id.starts_with("org."),
            };
            if !prefix_ok {
                return Err(CatalogueError::Invalid(format!(
                    "check `{}`: its id must start with its scope (device., product., org.) or attest.",
                    check.id
                )));
            }
            if let Some(dup) = by_id.insert(check.id.clone(), check) {
                return Err(CatalogueError::Invalid(format!(
                    "check `{}` is defined twice",
                    dup.id
                )));
            }
        }
        let mut used = BTreeSet::new();
        let mut parsed = Vec::new();
        let mut framework_ids = BTreeSet::new();
        for (file, text) in frameworks {
            let fw: Framework = toml::from_str(text).map_err(|e| parse_err(file, e))?;
            if !framework_ids.insert(fw.info.id.clone()) {
                return Err(CatalogueError::Invalid(format!(
                    "framework `{}` appears twice",
                    fw.info.id
                )));
            }
            if fw.requirements.is_empty() {
                return Err(CatalogueError::Invalid(format!("{file}: no requirements")));
            }
            let mut ids = BTreeSet::new();
            for r in &fw.requirements {
                if !ids.insert(r.id.as_str()) {
                    return Err(CatalogueError::Invalid(format!(
                        "{file}: requirement `{}` appears twice",
                        r.id
                    )));
                }
                if r.checks.is_empty() {
                    return Err(CatalogueError::Invalid(format!(
                        "{file}: requirement `{}` maps to no check",
                        r.id
                    )));
                }
                for c in &r.checks {
                    if !by_id.contains_key(c) {
                        return Err(CatalogueError::Invalid(format!(
                            "{file}: requirement `{}` names unknown check `{c}`",
                            r.id
                        )));
                    }
                    used.insert(c.clone());
                }
            }
            parsed.push(fw);
        }
        if let Some(unused) = by_id.keys().find(|k| !used.contains(*k)) {
            return Err(CatalogueError::Invalid(format!(
                "check `{unused}` is mapped to no requirement"
            )));
        }
        // The version is the content: any edit to any file gives a new one.
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        ctx.update(checks.as_bytes());
        for (file, text) in frameworks {
            ctx.update(file.as_bytes());
            ctx.update(&[0]);
            ctx.update(text.as_bytes());
        }
        let version = format!("sha256:{}", &hex::encode(ctx.finish().as_ref())[..16]);
        Ok(Self {
            checks: by_id,
            frameworks: parsed,
            version,
        })
    }

    /// The shipped catalogue's files (path under `catalogue/`, text), in the order the
    /// version hashes them: an auditor can recompute the version from them.
    pub fn shipped_files() -> Vec<(String, &'static str)> {
        std::iter::once(("checks.toml".to_owned(), CHECKS))
            .chain(
                FRAMEWORKS
                    .iter()
                    .map(|(name, text)| (format!("frameworks/{name}"), *text)),
            )
            .collect()
    }

    /// A content hash naming this catalogue (reports and evidence carry it).
    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn checks(&self) -> impl Iterator<Item = &Check> {
        self.checks.values()
    }

    pub fn check(&self, id: &str) -> Option<&Check> {
        self.checks.get(id)
    }

    pub fn frameworks(&self) -> &[Framework] {
        &self.frameworks
    }

    pub fn framework(&self, id: &str) -> Option<&Framework> {
        self.frameworks.iter().find(|f| f.info.id == id)
    }

    /// Requirements (framework id, requirement) that a check feeds.
    pub fn requirements_of(&self, check: &str) -> Vec<(&str, &Requirement)> {
        self.frameworks
            .iter()
            .flat_map(|f| {
                f.requirements
                    .iter()
                    .filter(|r| r.checks.iter().any(|c| c == check))
                    .map(move |r| (f.info.id.as_str(), r))
            })
            .collect()
    }
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_shipped_catalogue_is_consistent_and_covers_every_framework_the_issue_names() {
        let c = Catalogue::shipped().unwrap();
        let count = |id: &str| c.framework(id).unwrap().requirements.len();
        // ETSI EN 303 645 provisions 5.1-1 .. 6-5, every clause present.
        let etsi = c.framework("etsi-en-303-645").unwrap();
        for clause in [
            "5.1", "5.2", "5.3", "5.4", "5.5", "5.6", "5.7", "5.8", "5.9", "5.10", "5.11", "5.12",
            "5.13", "6",
        ] {
            assert!(
                etsi.requirements.iter().any(|r| r.group == clause),
                "{clause}"
            );
        }
        assert_eq!(count("etsi-en-303-645"), 67);
        assert!(
            etsi.requirements
                .iter()
                .all(|r| matches!(r.level.as_deref(), Some("M" | "R")))
        );
        assert_eq!(count("nistir-8259"), 10);
        let families: Vec<&str> = c
            .framework("nist-sp-800-213a")
            .unwrap()
            .requirements
            .iter()
            .map(|r| r.id.as_str())
            .collect();
        assert_eq!(
            families,
            [
                "DI", "DC", "DP", "LA", "SU", "CS", "DS", "DO", "IQ", "ID", "EA"
            ]
        );
        // CRA Annex I: Part I (1) and (2)(a)-(m), Part II (1)-(8); and Article 14.
        assert_eq!(count("eu-cra"), 1 + 13 + 8 + 1);
        // Every vulnerability-handling check is mapped in all five frameworks.
        for check in crate::vulnerabilities::CHECKS
            .iter()
            .chain(crate::disclosure::CHECKS.iter())
        {
            for framework in [
                "eu-cra",
                "etsi-en-303-645",
                "nistir-8259",
                "nist-sp-800-213a",
                "eo-14028",
            ] {
                assert!(
                    c.framework(framework)
                        .unwrap()
                        .requirements
                        .iter()
                        .any(|r| r.checks.iter().any(|k| k == check)),
                    "{check} is not mapped in {framework}"
                );
            }
        }
        // Six from the first wave, and 4(e)(iii) (the signed update channel).
        assert_eq!(count("eo-14028"), 7);
        // The Device Defender mappings the issue names exist.
        let aws: BTreeSet<&str> = c
            .checks()
            .flat_map(|k| k.aws_device_defender.iter().map(String::as_str))
            .collect();
        for name in [
            "DEVICE_CERTIFICATE_SHARED_CHECK",
            "DEVICE_CERTIFICATE_EXPIRING_CHECK",
            "REVOKED_DEVICE_CERTIFICATE_STILL_ACTIVE_CHECK",
            "CA_CERTIFICATE_KEY_QUALITY_CHECK",
            "LOGGING_DISABLED_CHECK",
        ] {
            assert!(aws.contains(name), "{name}");
        }
        assert!(c.version().starts_with("sha256:"));
        assert!(!c.requirements_of("device.key-not-shared").is_empty());
    }

    /// The files an evidence bundle carries give back the version reports name.
    #[test]
    fn the_shipped_files_hash_to_the_version() {
        let files = Catalogue::shipped_files();
        let (checks, frameworks) = files.split_first().unwrap();
        assert_eq!(checks.0, "checks.toml");
        let frameworks: Vec<(&str, &str)> = frameworks
            .iter()
            .map(|(name, text)| (name.strip_prefix("frameworks/").unwrap(), *text))
            .collect();
        let rebuilt = Catalogue::from_files(checks.1, &frameworks).unwrap();
        assert_eq!(rebuilt.version(), Catalogue::shipped().unwrap().version());
    }

    fn fw(checks: &str) -> String {
        format!(
            "[framework]\nid = \"f\"\ntitle = \"F\"\nversion = \"1\"\npublisher = \"P\"\nsource = \"s\"\n\
             [[requirement]]\nid = \"1\"\ngroup = \"g\"\ngroup_title = \"G\"\nsummary = \"s\"\nchecks = [{checks}]\n"
        )
    }

    const ONE_CHECK: &str = "[[check]]\nid = \"device.x\"\nscope = \"device\"\nkind = \"automated\"\ntitle = \"t\"\ndescription = \"d\"\n";

    #[test]
    fn inconsistent_catalogues_are_refused_with_the_reason() {
        assert!(Catalogue::from_files(ONE_CHECK, &[("f.toml", &fw("\"device.x\""))]).is_ok());
        let err = |checks: &str, f: &str| {
            Catalogue::from_files(checks, &[("f.toml", f)])
                .unwrap_err()
                .to_string()
        };
        assert!(err(ONE_CHECK, &fw("\"device.y\"")).contains("unknown check `device.y`"));
        assert!(err(ONE_CHECK, &fw("")).contains("maps to no check"));
        let two = format!("{ONE_CHECK}{}", ONE_CHECK.replace("device.x", "device.z"));
        assert!(err(&two, &fw("\"device.x\"")).contains("`device.z` is mapped to no requirement"));
        let dup = format!("{ONE_CHECK}{ONE_CHECK}");
        assert!(err(&dup, &fw("\"device.x\"")).contains("defined twice"));
        let wrong_scope = ONE_CHECK.replace("scope = \"device\"", "scope = \"product\"");
        assert!(err(&wrong_scope, &fw("\"device.x\"")).contains("must start with its scope"));
        assert!(err("nonsense", &fw("")).contains("checks.toml"));
        let unknown_field = ONE_CHECK.replace("title", "titel");
        assert!(err(&unknown_field, &fw("\"device.x\"")).contains("checks.toml"));
    }
}
