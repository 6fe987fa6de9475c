//! SBOMs written by real generators from PyPI over one pinned Python environment
//! (`fixtures/python-env/requirements.txt`): `cyclonedx-py` (CycloneDX 1.4, 1.5, 1.6, JSON and
//! XML), `sbom4python` (SPDX 2.3 JSON) and the SPDX project's own Python bindings (SPDX 3.0.1
//! JSON-LD). Each is read, and its components matched against OSV records
//! written from the public advisories (`fixtures/osv/`); the findings must equal the table
//! checked by hand below, whichever generator and format.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use sigil_vuln::{OsvRecord, Sbom, Verdict, evaluate};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn run(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (scripts/test.sh says how to install it)"));
    assert!(out.status.success(), "{cmd:?}: {out:?}");
}

fn records() -> Vec<OsvRecord> {
    let mut out: Vec<OsvRecord> = std::fs::read_dir(fixtures().join("osv"))
        .unwrap()
        .map(|e| OsvRecord::parse(&std::fs::read(e.unwrap().path()).unwrap()).unwrap())
        .collect();
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}

/// Every (record, package, version, fixed) the SBOM's components are affected by, and every
/// component no record could decide on.
fn findings(sbom: &Sbom) -> BTreeSet<(String, String, String, String)> {
    let mut out = BTreeSet::new();
    for component in &sbom.components {
        let package = component.package().expect("the generators write purls");
        let version = package.version.clone().expect("and versions");
        for record in records() {
            match evaluate(&record, &package.ecosystem, &package.name, &version) {
                Verdict::Affected { fixed } => {
                    out.insert((
                        record.id.clone(),
                        package.name.clone(),
                        version.clone(),
                        fixed.unwrap_or_else(|| "-".into()),
                    ));
                }
                Verdict::CannotDecide { reason } => panic!("{}: {reason}", record.id),
                Verdict::NotAffected => {}
            }
        }
    }
    out
}

/// Checked by hand against the advisories: jinja2 3.1.2 is before 3.1.3; requests 2.25.0 is
/// in [2.3.0, 2.31.0); urllib3 1.26.5 is before 1.26.17 but *is* the fix of CVE-2021-33503;
/// MarkupSafe 2.1.3 is the last affected version of the last_affected record (its name
/// spelled differently in record and SBOM), and the withdrawn record counts for nothing.
fn expected() -> BTreeSet<(String, String, String, String)> {
    [
        ("GHSA-h5c8-rqwp-cp95", "jinja2", "3.1.2", "3.1.3"),
        ("GHSA-j8r2-6x86-q33q", "requests", "2.25.0", "2.31.0"),
        ("GHSA-v845-jxx5-vc9f", "urllib3", "1.26.5", "1.26.17"),
        ("PYSEC-TEST-LAST-AFFECTED", "markupsafe", "2.1.3", "-"),
    ]
    .into_iter()
    .map(|(a, b, c, d)| (a.into(), b.into(), c.into(), d.into()))
    .collect()
}

#[test]
fn cyclonedx_py_sboms_of_every_spec_version() {
    let dir = tempfile::tempdir().unwrap();
    for spec in ["1.4", "1.5", "1.6"] {
        for format in ["JSON", "XML"] {
            let out = dir.path().join(format!("cdx-{spec}.{format}"));
            run(Command::new("cyclonedx-py")
                .args(["requirements", "--of", format, "--sv", spec, "-o"])
                .arg(&out)
                .arg(fixtures().join("python-env/requirements.txt")));
            let bytes = std::fs::read(&out).unwrap();
            assert_eq!(sigil_vuln::sbom::is_xml(&bytes), format == "XML");
            let sbom = Sbom::parse(&bytes).unwrap();
            assert_eq!(sbom.spec_version, spec);
            assert_eq!(sbom.components.len(), 4, "{sbom:?}");
            assert_eq!(findings(&sbom), expected(), "CycloneDX {spec} {format}");
        }
    }
}

/// SPDX 3.0.1 JSON-LD written with the SPDX project's own bindings (spdx-python-model).
#[test]
fn spdx3_from_the_spdx_python_model() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sbom.spdx3.json");
    run(Command::new("python3")
        .arg(fixtures().join("spdx3/write_sbom.py"))
        .arg(fixtures().join("python-env/requirements.txt"))
        .arg(&out));
    let sbom = Sbom::parse(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(sbom.spec_version, "SPDX-3.0.1");
    assert_eq!(sbom.subject.as_ref().unwrap().name, "gateway-firmware");
    assert_eq!(sbom.components.len(), 4, "{sbom:?}");
    assert_eq!(findings(&sbom), expected());
}

#[test]
fn sbom4python_spdx() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("spdx.json");
    run(Command::new("sbom4python")
        .arg("-r")
        .arg(fixtures().join("python-env/requirements.txt"))
        .args(["--sbom", "spdx", "--format", "json", "-o"])
        .arg(&out));
    let sbom = Sbom::parse(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(sbom.spec_version, "SPDX-2.3");
    assert_eq!(findings(&sbom), expected());
}
