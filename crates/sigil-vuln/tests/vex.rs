//! VEX in: OpenVEX, CycloneDX VEX and CSAF 2.0 VEX read into statements scoped to a
//! vulnerability and a component; documents that do not say enough are refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;

use sigil_vuln::vex::{VexDocument, VexFormat, VexStatus, component_matches};

fn parse(v: serde_json::Value) -> Result<VexDocument, String> {
    VexDocument::parse(v.to_string().as_bytes()).map_err(|e| e.to_string())
}

pub fn openvex() -> serde_json::Value {
    json!({
        "@context": "https://openvex.dev/ns/v0.2.0",
        "@id": "https://example.org/vex/gateway-2.0.0",
        "author": "Acme PSIRT", "timestamp": "2026-12-04T00:00:00Z", "version": 1,
        "statements": [{
            "vulnerability": {"name": "CVE-2024-22195"},
            "products": [{"@id": "pkg:generic/acme/gateway@2.0.0",
                          "subcomponents": [{"@id": "pkg:pypi/jinja2@3.1.2"}]}],
            "status": "not_affected",
            "justification": "vulnerable_code_not_in_execute_path",
            "impact_statement": "the firmware never renders templates with xmlattr"
        }]
    })
}

#[test]
fn the_three_formats() {
    let doc = parse(openvex()).unwrap();
    assert_eq!(doc.format, VexFormat::OpenVex);
    let s = &doc.statements[0];
    assert_eq!(s.vulnerability, "CVE-2024-22195");
    assert_eq!(s.component.as_deref(), Some("pkg:pypi/jinja2@3.1.2"));
    assert_eq!(s.status, VexStatus::NotAffected);

    let cdx = json!({
        "bomFormat": "CycloneDX", "specVersion": "1.6", "version": 1,
        "components": [{"type": "library", "bom-ref": "urllib3", "name": "urllib3", "version": "1.26.5",
                        "purl": "pkg:pypi/urllib3@1.26.5"}],
        "vulnerabilities": [{"id": "CVE-2023-43804",
            "analysis": {"state": "not_affected", "justification": "code_not_reachable", "detail": "no redirects followed"},
            "affects": [{"ref": "urllib3"}]}]
    });
    let doc = parse(cdx).unwrap();
    assert_eq!(doc.format, VexFormat::CycloneDx);
    assert_eq!(
        doc.statements[0].component.as_deref(),
        Some("pkg:pypi/urllib3@1.26.5")
    );
    assert_eq!(
        doc.statements[0].justification.as_deref(),
        Some("code_not_reachable")
    );

    let csaf = json!({
        "document": {"category": "csaf_vex", "csaf_version": "2.0", "title": "Gateway 2.0.0",
                     "publisher": {"category": "vendor", "name": "Acme", "namespace": "https://acme.example"},
                     "tracking": {"id": "ACME-2026-1", "status": "final", "version": "1",
                                  "initial_release_date": "2026-12-04T00:00:00Z", "current_release_date": "2026-12-04T00:00:00Z",
                                  "revision_history": [{"date": "2026-12-04T00:00:00Z", "number": "1", "summary": "first"}]}},
        "product_tree": {"branches": [{"category": "vendor", "name": "Pallets", "branches": [
            {"category": "product_version", "name": "3.1.2",
             "product": {"product_id": "JINJA-312", "name": "jinja2 3.1.2",
                         "product_identification_helper": {"purl": "pkg:pypi/jinja2@3.1.2"}}}]}]},
        "vulnerabilities": [{"cve": "CVE-2024-22195",
            "product_status": {"known_not_affected": ["JINJA-312"]},
            "flags": [{"label": "vulnerable_code_not_in_execute_path", "product_ids": ["JINJA-312"]}]}]
    });
    let doc = parse(csaf).unwrap();
    assert_eq!(doc.format, VexFormat::Csaf);
    assert_eq!(
        doc.statements[0].component.as_deref(),
        Some("pkg:pypi/jinja2@3.1.2")
    );
    assert_eq!(
        doc.statements[0].justification.as_deref(),
        Some("vulnerable_code_not_in_execute_path")
    );
}

#[test]
fn documents_that_do_not_say_enough_are_refused() {
    let mut no_why = openvex();
    no_why["statements"][0]
        .as_object_mut()
        .unwrap()
        .remove("justification");
    no_why["statements"][0]
        .as_object_mut()
        .unwrap()
        .remove("impact_statement");
    assert!(parse(no_why).unwrap_err().contains("needs a justification"));
    let mut bad_status = openvex();
    bad_status["statements"][0]["status"] = json!("maybe");
    assert!(parse(bad_status).unwrap_err().contains("not a VEX status"));
    let mut bad_purl = openvex();
    bad_purl["statements"][0]["products"][0]["subcomponents"][0]["@id"] = json!("jinja2");
    assert!(parse(bad_purl).unwrap_err().contains("not a package URL"));
    let mut none = openvex();
    none["statements"] = json!([]);
    assert!(parse(none).unwrap_err().contains("no statement"));
    assert!(
        parse(json!({"hello": 1}))
            .unwrap_err()
            .contains("neither OpenVEX")
    );
    let dangling = json!({"bomFormat": "CycloneDX", "specVersion": "1.6",
        "vulnerabilities": [{"id": "CVE-1", "analysis": {"state": "exploitable"}, "affects": [{"ref": "nowhere"}]}]});
    assert!(
        parse(dangling)
            .unwrap_err()
            .contains("no component of the document")
    );
    let e = VexDocument::parse(b"{\n  \"statements\": [,]\n}")
        .unwrap_err()
        .to_string();
    assert!(e.contains("line 2"), "{e}");
}

#[test]
fn a_statement_names_its_component_and_version() {
    assert!(component_matches(
        "pkg:pypi/jinja2@3.1.2",
        "pkg:pypi/jinja2@3.1.2"
    ));
    assert!(component_matches(
        "pkg:pypi/jinja2",
        "pkg:pypi/jinja2@3.1.2"
    ));
    assert!(!component_matches(
        "pkg:pypi/jinja2@3.1.3",
        "pkg:pypi/jinja2@3.1.2"
    ));
    assert!(!component_matches(
        "pkg:pypi/markupsafe@2.1.3",
        "pkg:pypi/jinja2@2.1.3"
    ));
    assert!(!component_matches(
        "pkg:npm/jinja2@3.1.2",
        "pkg:pypi/jinja2@3.1.2"
    ));
    assert!(component_matches(
        "pkg:deb/debian/curl@7.88.1-10",
        "pkg:deb/debian/curl@7.88.1-10?arch=amd64&distro=debian-12"
    ));
}

/// What Sigil writes, read back by its own reader: the same statements.
#[test]
fn openvex_out_reads_back() {
    use sigil_vuln::vex::{OutStatement, product_purl, to_openvex};
    let product = product_purl("Gateway GW-1", "2.0.0");
    assert_eq!(product, "pkg:generic/Gateway%20GW-1@2.0.0");
    let out = vec![
        OutStatement {
            vulnerability: "CVE-2024-22195".into(),
            aliases: vec!["GHSA-h5c8-rqwp-cp95".into()],
            product: product.clone(),
            component: Some("pkg:pypi/jinja2@3.1.2".into()),
            status: VexStatus::NotAffected,
            justification: Some("vulnerable_code_not_in_execute_path".into()),
            statement: None,
        },
        OutStatement {
            vulnerability: "CVE-2023-32681".into(),
            aliases: vec![],
            product: product.clone(),
            component: Some("pkg:pypi/requests@2.25.0".into()),
            status: VexStatus::Affected,
            justification: None,
            statement: Some("update requests to 2.31.0".into()),
        },
    ];
    let doc = to_openvex(
        "Acme",
        "https://sigil.invalid/vex/1",
        "2026-12-04T00:00:00Z",
        &out,
    );
    assert_eq!(
        doc["statements"][1]["action_statement"],
        "update requests to 2.31.0"
    );
    let back = VexDocument::parse(doc.to_string().as_bytes()).unwrap();
    assert_eq!(back.statements.len(), 2);
    assert_eq!(back.statements[0].status, VexStatus::NotAffected);
    assert_eq!(
        back.statements[1].component.as_deref(),
        Some("pkg:pypi/requests@2.25.0")
    );
}
