//! Vulnerabilities against a real server, with the README's commands: an SBOM written by a
//! real generator (cyclonedx-py) uploaded for a firmware version; OSV records imported as an
//! archive, with the KEV catalogue and EPSS scores; the findings equal the table checked by
//! hand, with the devices running that firmware; exports read by independent validators;
//! bad input (a malformed SBOM, a zip bomb, an unknown feed) refused, nothing changed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use common::{Db, TestServer, json as json_out, ok, sigil, upload_python_sbom};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../sigil-vuln/tests/fixtures")
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A zip of `files` (name, path) written by Python's zipfile (an independent writer).
fn zip(out: &Path, files: &[(String, PathBuf)]) {
    let list: Vec<Value> = files
        .iter()
        .map(|(n, p)| json!([n, p.display().to_string()]))
        .collect();
    run(Command::new("python3").args([
        "-c",
        "import json, sys, zipfile\n\
         with zipfile.ZipFile(sys.argv[1], 'w', zipfile.ZIP_DEFLATED) as z:\n\
         \x20   for name, path in json.loads(sys.argv[2]):\n\
         \x20       z.write(path, name)",
        &out.display().to_string(),
        &Value::Array(list).to_string(),
    ]));
}

async fn device_with_firmware(s: &TestServer, product: &str, serial: &str, firmware: &str) {
    let (st, d) = s
        .post(
            "/api/v1/devices",
            json!({"product_id": product, "serial_number": serial, "firmware_version": firmware}),
        )
        .await;
    assert_eq!(st, 201, "{d}");
}

/// The findings of firmware 2.0.0 (the version the devices run).
fn findings_table(list: &Value) -> Vec<(String, String, String, String, u64)> {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["firmware_version"] == "2.0.0")
        .map(|f| {
            (
                f["vulnerability"].as_str().unwrap().to_owned(),
                f["component"].as_str().unwrap().to_owned(),
                f["component_version"].as_str().unwrap().to_owned(),
                f["fixed"].as_str().unwrap_or("-").to_owned(),
                f["devices"].as_u64().unwrap(),
            )
        })
        .collect()
}

async fn vuln_rows(s: &TestServer) -> (i64, i64) {
    (s.count("vuln_records").await, s.count("sboms").await)
}

async fn findings_follow_the_feeds_and_the_sbom(db: Db) {
    let Some(s) = TestServer::start(db).await else {
        return;
    };
    let work = s.dir.path();
    let product = s.create_product("Gateway").await;
    for (serial, firmware) in [("GW-1", "2.0.0"), ("GW-2", "2.0.0"), ("GW-3", "1.0.0")] {
        device_with_firmware(&s, &product, serial, firmware).await;
    }

    // The README's commands: an SBOM from a real generator, then the feeds.
    let sbom_file = work.join("gateway-2.0.0.cdx.json");
    run(Command::new("cyclonedx-py")
        .args(["requirements", "--of", "JSON", "--sv", "1.6", "-o"])
        .arg(&sbom_file)
        .arg(fixtures().join("python-env/requirements.txt")));
    let sbom = json_out(sigil(
        &s,
        &[
            "sbom",
            "upload",
            "--product",
            &product,
            "--version",
            "2.0.0",
            sbom_file.to_str().unwrap(),
            "--json",
        ],
    ));
    assert_eq!(sbom["components"], 4);
    assert_eq!(sbom["format"], "cyclonedx");
    // CycloneDX XML as well (for a version no device runs): kept as uploaded, and written
    // back as JSON on request.
    let (xml_file, xml_sbom) = upload_python_sbom(&s, &product, "1.9.0", ("XML", "1.5"));
    assert_eq!(xml_sbom["components"], 4, "{xml_sbom}");
    assert_eq!(xml_sbom["spec_version"], "1.5", "{xml_sbom}");
    let xml_id = xml_sbom["id"].as_str().unwrap();
    // Served back as a file, never as a page: an XHTML element in an uploaded document does
    // not run in a browser on the console's origin.
    let original = s
        .http
        .get(format!("{}/api/v1/sboms/{xml_id}", s.api))
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap();
    let header = |name: &str| {
        original
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    assert_eq!(header("content-type"), "application/xml; charset=utf-8");
    assert!(header("content-disposition").starts_with("attachment;"));
    assert_eq!(header("x-content-type-options"), "nosniff");
    assert!(header("content-security-policy").contains("sandbox"));
    for (format, check) in [("original", "xml"), ("cyclonedx", "json")] {
        let out = work.join(format!("back.{format}"));
        ok(sigil(
            &s,
            &[
                "sbom",
                "export",
                xml_id,
                "--format",
                format,
                "--out",
                out.to_str().unwrap(),
            ],
        ));
        let bytes = std::fs::read(&out).unwrap();
        match check {
            "xml" => assert_eq!(bytes, std::fs::read(&xml_file).unwrap()),
            _ => assert_eq!(sigil_vuln::Sbom::parse(&bytes).unwrap().components.len(), 4),
        }
    }
    // A release's SBOM (`sigil release upload --sbom`) becomes the SBOM of its version; a
    // malformed one refuses the release, and nothing is stored.
    let image = work.join("fw-2.1.0.bin");
    std::fs::write(&image, b"firmware 2.1.0").unwrap();
    let released = json_out(sigil(
        &s,
        &[
            "release",
            "upload",
            "--product",
            &product,
            "--version",
            "2.1.0",
            "--file",
            image.to_str().unwrap(),
            "--sbom",
            sbom_file.to_str().unwrap(),
            "--json",
        ],
    ));
    let sboms = json_out(sigil(
        &s,
        &["sbom", "list", "--product", &product, "--json"],
    ));
    let of_release = sboms["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["firmware_version"] == "2.1.0")
        .unwrap_or_else(|| panic!("{sboms}"));
    assert_eq!(of_release["release_id"], released["id"]);
    let not_sbom = work.join("not-an-sbom.json");
    std::fs::write(&not_sbom, r#"{"hello": "world"}"#).unwrap();
    let releases_before = s.count("releases").await;
    let out = sigil(
        &s,
        &[
            "release",
            "upload",
            "--product",
            &product,
            "--version",
            "2.2.0",
            "--file",
            image.to_str().unwrap(),
            "--sbom",
            not_sbom.to_str().unwrap(),
        ],
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("neither a CycloneDX"),
        "{out:?}"
    );
    assert_eq!(s.count("releases").await, releases_before);

    let archive = work.join("PyPI-all.zip");
    let records: Vec<(String, PathBuf)> = std::fs::read_dir(fixtures().join("osv"))
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            (p.file_name().unwrap().to_string_lossy().into_owned(), p)
        })
        .collect();
    zip(&archive, &records);
    let imported = json_out(sigil(
        &s,
        &["vulndb", "import", archive.to_str().unwrap(), "--json"],
    ));
    assert_eq!(imported["kind"], "osv-archive");
    assert_eq!(imported["added"], 6);
    let kev = work.join("known_exploited_vulnerabilities.json");
    std::fs::write(
        &kev,
        json!({"title": "CISA Catalog of Known Exploited Vulnerabilities", "catalogVersion": "2026.12.04",
               "dateReleased": "2026-12-04T12:00:00.000Z", "count": 1,
               "vulnerabilities": [{"cveID": "CVE-2023-32681", "vendorProject": "Python Software Foundation",
                   "product": "requests", "vulnerabilityName": "requests Proxy-Authorization leak",
                   "dateAdded": "2026-12-01", "shortDescription": "-", "requiredAction": "Update",
                   "dueDate": "2026-12-22", "knownRansomwareCampaignUse": "Unknown", "notes": ""}]})
        .to_string(),
    )
    .unwrap();
    ok(sigil(&s, &["vulndb", "import", kev.to_str().unwrap()]));
    let epss = work.join("epss_scores-2026-12-04.csv");
    std::fs::write(
        &epss,
        "#model_version:v2025.03.14,score_date:2026-12-04T00:00:00Z\ncve,epss,percentile\nCVE-2024-22195,0.00191,0.55\n",
    )
    .unwrap();
    // FIRST publishes it gzip'd, and the README imports it as downloaded (gzip: the real tool).
    let gz = std::process::Command::new("gzip")
        .arg("-k")
        .arg(&epss)
        .status()
        .unwrap();
    assert!(gz.success());
    ok(sigil(
        &s,
        &[
            "vulndb",
            "import",
            work.join("epss_scores-2026-12-04.csv.gz").to_str().unwrap(),
        ],
    ));

    // The findings: the generator test's table, with the devices that run 2.0.0.
    let list = json_out(sigil(
        &s,
        &["vuln", "list", "--product", &product, "--json"],
    ));
    let want: Vec<(String, String, String, String, u64)> = [
        ("PYSEC-TEST-LAST-AFFECTED", "markupsafe", "2.1.3", "-"),
        ("CVE-2024-22195", "jinja2", "3.1.2", "3.1.3"),
        ("CVE-2023-32681", "requests", "2.25.0", "2.31.0"),
        ("CVE-2023-43804", "urllib3", "1.26.5", "1.26.17"),
    ]
    .into_iter()
    .map(|(v, c, ver, fix)| {
        (
            v.to_owned(),
            c.to_owned(),
            ver.to_owned(),
            fix.to_owned(),
            2,
        )
    })
    .collect();
    let mut got = findings_table(&list);
    got.sort_by(|a, b| a.1.cmp(&b.1));
    let mut want = want;
    want.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(got, want, "{list}");
    let by = |component: &str| {
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["component"] == component)
            .unwrap()
            .clone()
    };
    assert_eq!(by("requests")["known_exploited"], "2026-12-01");
    assert!(
        by("requests")["ids"]
            .as_array()
            .unwrap()
            .contains(&json!("PYSEC-2023-74"))
    );
    assert_eq!(by("jinja2")["epss"], 0.00191);
    assert_eq!(by("urllib3")["known_exploited"], Value::Null);
    let table = ok(sigil(&s, &["vuln", "list", "--product", &product]));
    assert!(
        table.contains("CVE-2023-32681") && table.contains("2026-12-01"),
        "{table}"
    );

    // VEX: a not_affected statement for jinja2 silences that finding and no other; one for
    // the same CVE in another component says nothing of jinja2's.
    let vex = work.join("gateway.openvex.json");
    std::fs::write(
        &vex,
        json!({
            "@context": "https://openvex.dev/ns/v0.2.0", "@id": "https://example.org/vex/1",
            "author": "Acme PSIRT", "timestamp": "2026-12-04T00:00:00Z", "version": 1,
            "statements": [
                {"vulnerability": {"name": "CVE-2024-22195"},
                 "products": [{"@id": "pkg:generic/acme/gateway", "subcomponents": [{"@id": "pkg:pypi/jinja2@3.1.2"}]}],
                 "status": "not_affected", "justification": "vulnerable_code_not_in_execute_path"},
                {"vulnerability": {"name": "CVE-2023-32681"},
                 "products": [{"@id": "pkg:generic/acme/gateway", "subcomponents": [{"@id": "pkg:pypi/urllib3"}]}],
                 "status": "not_affected", "justification": "component_not_present"}
            ]
        })
        .to_string(),
    )
    .unwrap();
    let recorded = json_out(sigil(
        &s,
        &[
            "vex",
            "import",
            "--product",
            &product,
            vex.to_str().unwrap(),
            "--json",
        ],
    ));
    assert_eq!(recorded["statements"], 2);
    let list = json_out(sigil(
        &s,
        &["vuln", "list", "--product", &product, "--json"],
    ));
    for f in list["items"].as_array().unwrap() {
        let silenced = f["vulnerability"] == "CVE-2024-22195" && f["component"] == "jinja2";
        let want = if silenced {
            json!("not_affected")
        } else {
            Value::Null
        };
        assert_eq!(f["vex_status"], want, "{f}");
    }
    let out = sigil(
        &s,
        &[
            "vex",
            "import",
            "--product",
            "00000000-0000-7000-8000-000000000000",
            vex.to_str().unwrap(),
        ],
    );
    assert!(!out.status.success(), "{out:?}");
    assert_eq!(
        s.count("vex_statements").await,
        2,
        "a VEX for an unknown product stores nothing"
    );
    // A body past its limit is refused while it is read (16 MiB for a VEX document).
    let (st, body) = s
        .admin()
        .call(
            reqwest::Method::POST,
            &format!("/api/v1/products/{product}/vex"),
            &json!({"padding": " ".repeat(17 * 1024 * 1024)}),
        )
        .await
        .unwrap();
    assert_eq!(st, 413, "{body}");

    // The product's VEX, published: the jinja2 statement as made, every other finding
    // affected with what to do, and read back by the same reader as any VEX.
    let published = work.join("published.openvex.json");
    ok(sigil(
        &s,
        &[
            "vex",
            "export",
            "--product",
            &product,
            "--out",
            published.to_str().unwrap(),
        ],
    ));
    let doc: Value = serde_json::from_slice(&std::fs::read(&published).unwrap()).unwrap();
    let statements = doc["statements"].as_array().unwrap();
    let of = |vuln: &str, component: &str| {
        statements
            .iter()
            .find(|st| {
                st["vulnerability"]["name"] == vuln
                    && st["products"][0]["subcomponents"][0]["@id"]
                        .as_str()
                        .is_some_and(|p| p.starts_with(component))
            })
            .unwrap_or_else(|| panic!("{vuln} in {component}: {doc}"))
            .clone()
    };
    let jinja = of("CVE-2024-22195", "pkg:pypi/jinja2");
    assert_eq!(jinja["status"], "not_affected");
    assert_eq!(
        jinja["justification"],
        "vulnerable_code_not_in_execute_path"
    );
    let requests = of("CVE-2023-32681", "pkg:pypi/requests");
    assert_eq!(requests["status"], "affected");
    assert_eq!(
        requests["action_statement"],
        "update requests to 2.31.0 or later"
    );
    assert!(
        requests["products"][0]["@id"]
            .as_str()
            .unwrap()
            .starts_with("pkg:generic/Gateway@")
    );
    let back = sigil_vuln::vex::VexDocument::parse(&std::fs::read(&published).unwrap()).unwrap();
    assert_eq!(back.statements.len(), statements.len());

    // The same VEX as CSAF 2.0, checked by BSI's validator (schema, mandatory tests, the VEX
    // profile's impact and action statements), and read back by Sigil's own CSAF reader.
    let csaf = work.join("published.csaf.json");
    ok(sigil(
        &s,
        &[
            "vex",
            "export",
            "--product",
            &product,
            "--format",
            "csaf",
            "--out",
            csaf.to_str().unwrap(),
        ],
    ));
    let validator = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tools/csaf/validate.mjs");
    let verdict = Command::new("node")
        .arg(&validator)
        .arg(&csaf)
        .output()
        .unwrap();
    assert!(
        verdict.status.success(),
        "CSAF validation: {}",
        String::from_utf8_lossy(&verdict.stdout)
    );
    let doc: Value = serde_json::from_slice(&std::fs::read(&csaf).unwrap()).unwrap();
    assert_eq!(doc["document"]["category"], "csaf_vex");
    let vuln = |cve: &str| {
        doc["vulnerabilities"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["cve"] == cve)
            .unwrap_or_else(|| panic!("{cve}: {doc}"))
            .clone()
    };
    let jinja = vuln("CVE-2024-22195");
    assert_eq!(
        jinja["flags"][0]["label"], "vulnerable_code_not_in_execute_path",
        "{jinja}"
    );
    assert_eq!(
        jinja["flags"][0]["product_ids"],
        jinja["product_status"]["known_not_affected"]
    );
    let requests = vuln("CVE-2023-32681");
    assert_eq!(
        requests["remediations"][0]["category"], "vendor_fix",
        "{requests}"
    );
    assert_eq!(
        requests["remediations"][0]["details"],
        "update requests to 2.31.0 or later"
    );
    assert!(
        requests["ids"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["text"] == "PYSEC-2023-74"),
        "{requests}"
    );
    let back = sigil_vuln::vex::VexDocument::parse(&std::fs::read(&csaf).unwrap()).unwrap();
    assert!(
        back.statements
            .iter()
            .any(|st| st.vulnerability == "CVE-2024-22195"
                && st.status == sigil_vuln::vex::VexStatus::NotAffected
                && st
                    .component
                    .as_deref()
                    .is_some_and(|c| c.starts_with("pkg:pypi/jinja2"))),
        "{:?}",
        back.statements
    );

    // The same archive again changes nothing.
    let again = json_out(sigil(
        &s,
        &["vulndb", "import", archive.to_str().unwrap(), "--json"],
    ));
    assert_eq!(
        (again["added"].as_u64(), again["unchanged"].as_u64()),
        (Some(0), Some(6))
    );

    // Exports, read by independent validators: CycloneDX's schema (cyclonedx-python-lib) and
    // SPDX's (spdx-tools).
    let id = sbom["id"].as_str().unwrap();
    let cdx = work.join("export.cdx.json");
    ok(sigil(
        &s,
        &[
            "sbom",
            "export",
            id,
            "--format",
            "cyclonedx",
            "--out",
            cdx.to_str().unwrap(),
        ],
    ));
    let verdict = run(Command::new("python3").args([
        "-c",
        "import sys\n\
         from cyclonedx.validation.json import JsonStrictValidator\n\
         from cyclonedx.schema import SchemaVersion\n\
         print(JsonStrictValidator(SchemaVersion.V1_6).validate_str(open(sys.argv[1]).read()))",
        cdx.to_str().unwrap(),
    ]));
    assert_eq!(verdict.trim(), "None", "CycloneDX schema errors: {verdict}");
    let spdx = work.join("export.spdx.json");
    ok(sigil(
        &s,
        &[
            "sbom",
            "export",
            id,
            "--format",
            "spdx",
            "--out",
            spdx.to_str().unwrap(),
        ],
    ));
    run(Command::new("pyspdxtools").arg("-i").arg(&spdx));
    let original = work.join("export.original.json");
    ok(sigil(
        &s,
        &["sbom", "export", id, "--out", original.to_str().unwrap()],
    ));
    assert_eq!(
        std::fs::read(&original).unwrap(),
        std::fs::read(&sbom_file).unwrap()
    );

    // Bad input is refused with the reason, and changes nothing.
    let before = vuln_rows(&s).await;
    let broken = work.join("broken.cdx.json");
    let text = std::fs::read_to_string(&sbom_file).unwrap();
    std::fs::write(&broken, text.replacen("\"name\"", "\"nom\"", 1)).unwrap();
    let out = sigil(
        &s,
        &[
            "sbom",
            "upload",
            "--product",
            &product,
            "--version",
            "2.0.0",
            broken.to_str().unwrap(),
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("missing field `name` at line"),
        "{err}"
    );
    let bomb = work.join("bomb.zip");
    let spaces = work.join("BOMB.json");
    std::fs::write(&spaces, vec![b' '; 64 * 1024 * 1024]).unwrap();
    zip(&bomb, &[("BOMB.json".into(), spaces.clone())]);
    let out = sigil(&s, &["vulndb", "import", bomb.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("BOMB.json inflates past"),
        "{err}"
    );
    let gz = work.join("epss_scores-2026-12-04.csv.gz");
    std::fs::write(&gz, [0x1f, 0x8b, 0x08, 0x00, 0x00]).unwrap();
    let out = sigil(&s, &["vulndb", "import", gz.to_str().unwrap()]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("gzip file refused: not a gzip file"),
        "{out:?}"
    );
    let again = json_out(sigil(
        &s,
        &["vulndb", "import", kev.to_str().unwrap(), "--json"],
    ));
    assert_eq!(
        (again["kind"].as_str(), again["added"].as_u64()),
        (Some("kev"), Some(1))
    );
    let unknown = work.join("notes.txt");
    std::fs::write(&unknown, "hello").unwrap();
    let out = sigil(&s, &["vulndb", "import", unknown.to_str().unwrap()]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not an OSV record"),
        "{out:?}"
    );
    let out = sigil(
        &s,
        &[
            "sbom",
            "upload",
            "--product",
            "00000000-0000-7000-8000-000000000000",
            "--version",
            "1",
            sbom_file.to_str().unwrap(),
        ],
    );
    assert!(!out.status.success());
    assert_eq!(vuln_rows(&s).await, before);
    let (_, entries) = s
        .get("/api/v1/audit/entries?action=vulndb.import&limit=20")
        .await;
    let refusals = entries["items"].as_array().unwrap().len();
    assert!(refusals >= 2, "refused imports are audited: {entries}");
    let (_, entries) = s
        .get("/api/v1/audit/entries?action=sbom.uploaded&limit=20")
        .await;
    assert_eq!(entries["items"][0]["details"]["sha256"], sbom["sha256"]);
    let (_, entries) = s
        .get("/api/v1/audit/entries?action=vulndb.imported&limit=20")
        .await;
    assert_eq!(entries["items"].as_array().unwrap().len(), 5, "{entries}");
    assert_eq!(
        entries["items"][0]["details"]["sha256"]
            .as_str()
            .unwrap()
            .len(),
        64
    );

    // What cannot be matched is said, per component; duplicates are one finding.
    let firmware_1 = json!({
        "bomFormat": "CycloneDX", "specVersion": "1.5", "version": 1,
        "components": [
            {"type": "library", "name": "openssl", "version": "3.0.7", "purl": "pkg:rpm/redhat/openssl@3.0.7"},
            {"type": "library", "name": "curl", "version": "7.88.1-10", "purl": "pkg:deb/debian/curl@7.88.1-10"},
            {"type": "library", "name": "jinja2", "version": "", "purl": "pkg:pypi/jinja2@3.1.2"},
            {"type": "library", "name": "jinja2", "version": "3.1.2", "purl": "pkg:pypi/jinja2@3.1.2"}
        ]
    });
    let path = work.join("fw-1.0.0.cdx.json");
    std::fs::write(&path, firmware_1.to_string()).unwrap();
    ok(sigil(
        &s,
        &[
            "sbom",
            "upload",
            "--product",
            &product,
            "--version",
            "1.0.0",
            path.to_str().unwrap(),
        ],
    ));
    let list = json_out(sigil(
        &s,
        &["vuln", "list", "--product", &product, "--json"],
    ));
    let old: Vec<&Value> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["firmware_version"] == "1.0.0")
        .collect();
    assert_eq!(
        old.len(),
        1,
        "one jinja2 finding, the version taken from the purl: {list}"
    );
    assert_eq!(
        (old[0]["component"].as_str(), old[0]["devices"].as_u64()),
        (Some("jinja2"), Some(1))
    );
    let reasons: Vec<String> = list["undecided"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            format!(
                "{}: {}",
                u["component"].as_str().unwrap(),
                u["reason"].as_str().unwrap()
            )
        })
        .collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.starts_with("openssl: OSV has no ecosystem for pkg:rpm")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.starts_with("curl: its purl names no distribution release")),
        "{reasons:?}"
    );

    // Importing vulnerability data is a trust change: an operator's token uploads SBOMs but
    // cannot import feeds.
    let (st, t) = s
        .post(
            "/api/v1/tokens",
            json!({"name": "ops", "role": "operator", "scopes": ["inventory"], "expires_in_seconds": 600}),
        )
        .await;
    assert_eq!(st, 201, "{t}");
    let token = t["token"].as_str().unwrap();
    let r = s
        .http
        .post(format!("{}/api/v1/vulndb/imports", s.api))
        .bearer_auth(token)
        .body(std::fs::read(&kev).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = s
        .http
        .post(format!(
            "{}/api/v1/products/{product}/sboms?version=1.0.0",
            s.api
        ))
        .bearer_auth(token)
        .body(firmware_1.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    // An empty KEV catalogue would clear every flag: refused.
    let empty = work.join("empty-kev.json");
    std::fs::write(
        &empty,
        json!({"catalogVersion": "x", "vulnerabilities": []}).to_string(),
    )
    .unwrap();
    let out = sigil(&s, &["vulndb", "import", empty.to_str().unwrap()]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("refusing to clear"),
        "{out:?}"
    );
}
sigil_testkit::both_backends!(findings_follow_the_feeds_and_the_sbom);
