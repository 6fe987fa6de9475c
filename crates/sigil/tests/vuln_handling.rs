//! Handling vulnerabilities with the README's commands against a real server: sites and their
//! countries, a device's findings with severity and remediation deadline, one vulnerability
//! shown across the product, the remediation policy, and the Article 14 case a KEV entry opens
//! (listed, drafted as text for the CSIRT, its early warning recorded as submitted). Who may do
//! what (an operator records no report and sets no policy), and bad input refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use common::{Db, TestServer, json as json_out, ok, sigil, upload_python_sbom};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../sigil-vuln/tests/fixtures")
}

fn at(v: &Value) -> OffsetDateTime {
    OffsetDateTime::parse(v.as_str().unwrap_or_else(|| panic!("{v}")), &Rfc3339).unwrap()
}

fn refused(out: std::process::Output, words: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains(words),
        "{words:?} not in: {err}"
    );
}

/// The first case of `sigil case list --json`, once the review has opened it.
async fn first_case(s: &TestServer) -> Value {
    for _ in 0..100 {
        let list = json_out(sigil(s, &["case", "list", "--json"]));
        if let Some(c) = list["items"].as_array().and_then(|a| a.first()) {
            return c.clone();
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("no case opened");
}

async fn handling_follows_the_readme(db: Db) {
    let Some(s) = TestServer::start(db).await else {
        return;
    };
    let work = s.dir.path();
    let product = s.create_product("Gateway").await;
    // Sites first: devices name them, reports name their countries.
    let site = json_out(sigil(
        &s,
        &["site", "set", "plant-lyon", "--country", "FR", "--json"],
    ));
    assert_eq!(
        (site["country"].as_str(), site["member_state"].as_bool()),
        (Some("FR"), Some(true))
    );
    ok(sigil(
        &s,
        &["site", "set", "plant-berlin", "--country", "DE"],
    ));
    refused(
        sigil(&s, &["site", "set", "plant-x", "--country", "XX"]),
        "not an ISO 3166-1",
    );
    refused(
        sigil(&s, &["site", "set", "plant-x", "--country", "fr"]),
        "not an ISO 3166-1",
    );
    let sites = ok(sigil(&s, &["site", "list"]));
    assert!(
        sites.contains("plant-berlin") && !sites.contains("plant-x"),
        "{sites}"
    );
    let mut devices = Vec::new();
    for (serial, site, firmware) in [
        ("GW-1", "plant-lyon", "2.0.0"),
        ("GW-2", "plant-berlin", "2.0.0"),
        ("GW-3", "plant-berlin", "1.0.0"),
    ] {
        let (st, d) = s
            .post(
                "/api/v1/devices",
                json!({"product_id": product, "serial_number": serial, "site": site, "firmware_version": firmware}),
            )
            .await;
        assert_eq!(st, 201, "{d}");
        devices.push(d["id"].as_str().unwrap().to_owned());
    }
    upload_python_sbom(&s, &product, "2.0.0", ("JSON", "1.6"));
    for record in ["GHSA-j8r2-6x86-q33q.json", "GHSA-h5c8-rqwp-cp95.json"] {
        ok(sigil(
            &s,
            &[
                "vulndb",
                "import",
                fixtures().join("osv").join(record).to_str().unwrap(),
            ],
        ));
    }

    // Published for the product (its own disclosure policy), its VEX tells the world what is
    // fixed or does not affect it, never what is open: jinja2 and requests are open here.
    ok(sigil(
        &s,
        &[
            "disclosure",
            "set-policy",
            "--product",
            &product,
            "--contact",
            "mailto:psirt@example.com",
            "--expires",
            "2027-06-30T00:00:00Z",
        ],
    ));
    let public: Value = s
        .http
        .get(format!("{}/disclosure/{product}/vex.json", s.api))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (_, open) = s.get(&format!("/api/v1/products/{product}/findings")).await;
    assert!(open["items"].as_array().unwrap().len() >= 2, "{open}");
    assert_eq!(public["statements"], json!([]), "{public}");

    // A device's findings: its firmware's, each with severity and deadline.
    let mine = json_out(sigil(
        &s,
        &["vuln", "list", "--device", &devices[0], "--json"],
    ));
    assert_eq!(mine["firmware_version"], "2.0.0");
    let jinja = mine["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["component"] == "jinja2")
        .unwrap_or_else(|| panic!("{mine}"))
        .clone();
    // CVE-2024-22195's vector scores 5.4: medium, 90 days from the first sighting.
    assert_eq!(
        (jinja["severity"].as_str(), jinja["cvss_score"].as_f64()),
        (Some("medium"), Some(5.4))
    );
    assert_eq!(
        at(&jinja["remediation_due"]) - at(&jinja["first_seen"]),
        time::Duration::days(90)
    );
    assert_eq!(jinja["overdue"], false);
    let older = json_out(sigil(
        &s,
        &["vuln", "list", "--device", &devices[2], "--json"],
    ));
    assert_eq!(
        older["items"],
        json!([]),
        "no SBOM for 1.0.0, no findings: {older}"
    );
    let table = ok(sigil(&s, &["vuln", "list", "--device", &devices[0]]));
    assert!(
        table.contains("SEVERITY") && table.contains("medium"),
        "{table}"
    );

    // The policy: shorter deadlines apply to every finding at once.
    let policy = json_out(sigil(&s, &["vuln", "policy", "--medium", "45", "--json"]));
    assert_eq!(
        (policy["medium"].as_u64(), policy["critical"].as_u64()),
        (Some(45), Some(7))
    );
    let mine = json_out(sigil(
        &s,
        &["vuln", "list", "--device", &devices[0], "--json"],
    ));
    let jinja = mine["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["component"] == "jinja2")
        .unwrap();
    assert_eq!(
        at(&jinja["remediation_due"]) - at(&jinja["first_seen"]),
        time::Duration::days(45)
    );
    refused(
        sigil(&s, &["vuln", "policy", "--high", "0"]),
        "outside 1..=3650",
    );
    assert_eq!(
        json_out(sigil(&s, &["vuln", "policy", "--json"]))["high"],
        30,
        "a refused change changes nothing"
    );

    // CISA lists the requests vulnerability: a case opens on its own.
    let kev = work.join("known_exploited_vulnerabilities.json");
    std::fs::write(
        &kev,
        json!({"catalogVersion": "2026.12.05", "count": 1,
               "vulnerabilities": [{"cveID": "CVE-2023-32681", "vendorProject": "PSF", "product": "requests",
                   "vulnerabilityName": "requests Proxy-Authorization leak", "dateAdded": "2026-12-05",
                   "shortDescription": "-", "requiredAction": "Update", "dueDate": "2026-12-26",
                   "knownRansomwareCampaignUse": "Unknown", "notes": ""}]})
        .to_string(),
    )
    .unwrap();
    ok(sigil(&s, &["vulndb", "import", kev.to_str().unwrap()]));
    let case = first_case(&s).await;
    let id = case["id"].as_str().unwrap().to_owned();
    assert_eq!(case["vulnerability"], "CVE-2023-32681");
    // Compliance reads the same facts: the exploited vulnerability fails CRA I.2.a; the case
    // is on time so far.
    let (st, cra) = s.get("/api/v1/compliance/eu-cra").await;
    assert_eq!(st, 200, "{cra}");
    let check = |requirement: &str, check: &str| {
        cra["requirements"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == requirement)
            .and_then(|r| {
                r["checks"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|c| c["check"] == check)
            })
            .unwrap_or_else(|| panic!("{requirement} {check}: {cra}"))
            .clone()
    };
    let exploited = check("I.2.a", "product.exploited-remediated");
    assert_eq!(exploited["status"], "fail", "{exploited}");
    assert!(
        exploited["failures"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("CVE-2023-32681"),
        "{exploited}"
    );
    assert_eq!(
        check("Art.14", "product.article14-deadlines")["status"],
        "pass"
    );
    assert_eq!(
        check("II.2", "product.remediation-timely")["status"],
        "pass"
    );
    let listed = ok(sigil(&s, &["case", "list"]));
    assert!(
        listed.contains(&id) && listed.contains("(pending)"),
        "{listed}"
    );
    let shown = ok(sigil(
        &s,
        &["vuln", "show", "CVE-2023-32681", "--product", &product],
    ));
    assert!(
        shown.contains("2026-12-05") && shown.contains("requests"),
        "{shown}"
    );
    // Known exploited: 14 days, not medium's 45.
    let requests = json_out(sigil(
        &s,
        &[
            "vuln",
            "show",
            "GHSA-j8r2-6x86-q33q",
            "--product",
            &product,
            "--json",
        ],
    ));
    let f = &requests["items"][0];
    assert_eq!(
        at(&f["remediation_due"]) - at(&f["first_seen"]),
        time::Duration::days(14)
    );

    let draft = ok(sigil(
        &s,
        &["case", "draft", &id, "--stage", "early-warning"],
    ));
    for words in [
        "Early warning",
        "Article 14(2)(a)",
        "CVE-2023-32681",
        "GW-1",
        "GW-2",
        "DE, FR",
        "Affected devices: 2",
    ] {
        assert!(draft.contains(words), "{words:?} missing from:\n{draft}");
    }
    assert!(!draft.contains("GW-3"), "GW-3 runs 1.0.0: {draft}");
    let json_draft = work.join("early-warning.json");
    ok(sigil(
        &s,
        &[
            "case",
            "draft",
            &id,
            "--stage",
            "early-warning",
            "--format",
            "json",
            "--out",
            json_draft.to_str().unwrap(),
        ],
    ));
    let d: Value = serde_json::from_slice(&std::fs::read(&json_draft).unwrap()).unwrap();
    assert_eq!(d["affected"]["member_states"], json!(["DE", "FR"]));
    refused(
        sigil(&s, &["case", "draft", &id, "--stage", "final"]),
        "unknown stage",
    );

    // Reports to regulators are governance: an operator's token reads cases but records none.
    let (st, t) = s
        .post(
            "/api/v1/tokens",
            json!({"name": "ops", "role": "operator", "scopes": ["inventory"], "expires_in_seconds": 600}),
        )
        .await;
    assert_eq!(st, 201, "{t}");
    let token = t["token"].as_str().unwrap();
    let as_operator = |args: &[&str]| {
        common::sigil_command(&s, args)
            .env("SIGIL_TOKEN", token)
            .output()
            .unwrap()
    };
    ok(as_operator(&["case", "show", &id]));
    refused(
        as_operator(&["case", "submitted", &id, "--stage", "early-warning"]),
        "403",
    );
    refused(as_operator(&["vuln", "policy", "--critical", "90"]), "403");
    let submitted = json_out(sigil(
        &s,
        &[
            "case",
            "submitted",
            &id,
            "--stage",
            "early-warning",
            "--reference",
            "CSIRT-FR-2026-0042",
            "--json",
        ],
    ));
    let early = submitted["deadlines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["stage"] == "early-warning")
        .unwrap();
    assert_eq!(
        (early["status"].as_str(), early["reference"].as_str()),
        (Some("submitted"), Some("CSIRT-FR-2026-0042"))
    );
    refused(
        sigil(&s, &["case", "submitted", &id, "--stage", "early-warning"]),
        "already recorded",
    );

    // By hand: an operator knows jinja2's is exploited too; a vulnerability the product does
    // not have opens nothing.
    let opened = json_out(sigil(
        &s,
        &[
            "case",
            "open",
            "--product",
            &product,
            "--vulnerability",
            "GHSA-h5c8-rqwp-cp95",
            "--reason",
            "exploited in the wild (vendor report)",
            "--json",
        ],
    ));
    assert_eq!(
        (opened["vulnerability"].as_str(), opened["cause"].as_str()),
        (Some("CVE-2024-22195"), Some("operator"))
    );
    let before = s.count("vuln_cases").await;
    refused(
        sigil(
            &s,
            &[
                "case",
                "open",
                "--product",
                &product,
                "--vulnerability",
                "CVE-2099-0001",
                "--reason",
                "x",
            ],
        ),
        "runs firmware affected by",
    );
    assert_eq!(s.count("vuln_cases").await, before);

    // A newer version of a record replaces the one findings were computed from (compiled
    // records are kept between requests: the change must show): jinja2 3.1.2 is now fixed.
    let mut record: Value = serde_json::from_slice(
        &std::fs::read(fixtures().join("osv/GHSA-h5c8-rqwp-cp95.json")).unwrap(),
    )
    .unwrap();
    record["modified"] = json!("2099-01-01T00:00:00Z");
    for range in record["affected"][0]["ranges"].as_array_mut().unwrap() {
        range["events"] = json!([{"introduced": "0"}, {"fixed": "3.1.2"}]);
    }
    let newer = work.join("GHSA-h5c8-rqwp-cp95.json");
    std::fs::write(&newer, record.to_string()).unwrap();
    let before = json_out(sigil(
        &s,
        &["vuln", "list", "--device", &devices[0], "--json"],
    ));
    assert!(
        before["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["component"] == "jinja2")
    );
    ok(sigil(&s, &["vulndb", "import", newer.to_str().unwrap()]));
    let after = json_out(sigil(
        &s,
        &["vuln", "list", "--device", &devices[0], "--json"],
    ));
    assert!(
        !after["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["component"] == "jinja2"),
        "{after}"
    );
}
sigil_testkit::both_backends!(handling_follows_the_readme);
