//! SBOMs: CycloneDX 1.4 to 1.6 and SPDX 2.3 read into components; bad documents refused with
//! the line and the reason; each format written back and read again to the same components.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use serde_json::json;

use sigil_vuln::sbom::{to_cyclonedx, to_spdx};
use sigil_vuln::{Component, Ecosystem, Sbom, SbomFormat};

fn cyclonedx(spec: &str) -> serde_json::Value {
    json!({
        "bomFormat": "CycloneDX", "specVersion": spec, "version": 1,
        "metadata": {"component": {"type": "firmware", "name": "meter-fw", "version": "2.0.0"}},
        "components": [
            {"type": "library", "bom-ref": "pkg:pypi/jinja2@3.1.2", "name": "Jinja2", "version": "3.1.2",
             "purl": "pkg:pypi/jinja2@3.1.2",
             "components": [{"type": "library", "name": "markupsafe", "version": "2.1.3",
                             "purl": "pkg:pypi/markupsafe@2.1.3"}]},
            {"type": "library", "name": "openssl", "version": "3.0.11",
             "cpe": "cpe:2.3:a:openssl:openssl:3.0.11:*:*:*:*:*:*:*"}
        ]
    })
}

#[test]
fn cyclonedx_versions_are_read_with_nested_components() {
    for spec in ["1.4", "1.5", "1.6"] {
        let sbom = Sbom::parse(cyclonedx(spec).to_string().as_bytes()).unwrap();
        assert_eq!(sbom.format, SbomFormat::CycloneDx);
        assert_eq!(sbom.spec_version, spec);
        assert_eq!(sbom.subject.as_ref().unwrap().name, "meter-fw");
        let names: Vec<&str> = sbom.components.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["Jinja2", "markupsafe", "openssl"]);
        let jinja = sbom.components[0].package().unwrap();
        assert_eq!(jinja.ecosystem, Ecosystem::PyPi);
        assert_eq!(jinja.version.as_deref(), Some("3.1.2"));
        assert_eq!(sbom.components[2].package(), None);
        assert!(
            sbom.components[2]
                .cpe
                .as_deref()
                .unwrap()
                .starts_with("cpe:2.3:a:openssl")
        );
    }
}

#[test]
fn spdx_packages_are_read_with_their_references() {
    let doc = json!({
        "spdxVersion": "SPDX-2.3", "dataLicense": "CC0-1.0", "SPDXID": "SPDXRef-DOCUMENT",
        "name": "meter", "documentNamespace": "https://example.org/spdx/meter-2.0.0",
        "creationInfo": {"created": "2026-12-01T00:00:00Z", "creators": ["Tool: test"]},
        "documentDescribes": ["SPDXRef-fw"],
        "packages": [
            {"SPDXID": "SPDXRef-fw", "name": "meter-fw", "versionInfo": "2.0.0", "downloadLocation": "NOASSERTION"},
            {"SPDXID": "SPDXRef-curl", "name": "curl", "versionInfo": "7.88.1-10+deb12u4",
             "downloadLocation": "NOASSERTION",
             "externalRefs": [
                {"referenceCategory": "PACKAGE_MANAGER", "referenceType": "purl",
                 "referenceLocator": "pkg:deb/debian/curl@7.88.1-10%2Bdeb12u4?distro=debian-12"},
                {"referenceCategory": "SECURITY", "referenceType": "cpe23Type",
                 "referenceLocator": "cpe:2.3:a:haxx:curl:7.88.1:*:*:*:*:*:*:*"}]}
        ]
    });
    let sbom = Sbom::parse(doc.to_string().as_bytes()).unwrap();
    assert_eq!(sbom.format, SbomFormat::Spdx);
    assert_eq!(sbom.subject.as_ref().unwrap().name, "meter-fw");
    assert_eq!(sbom.components.len(), 1);
    let curl = sbom.components[0].package().unwrap();
    assert_eq!(curl.ecosystem.to_string(), "Debian:12");
    assert_eq!(curl.version.as_deref(), Some("7.88.1-10+deb12u4"));
}

#[test]
fn bad_documents_are_refused_with_the_line_and_reason() {
    let mut no_name = cyclonedx("1.6");
    no_name["components"][1]
        .as_object_mut()
        .unwrap()
        .remove("name");
    let pretty = serde_json::to_string_pretty(&no_name).unwrap();
    let cases: Vec<(String, &str)> = vec![
        (pretty, "missing field `name` at line"),
        (
            cyclonedx("1.6")
                .to_string()
                .replace("pkg:pypi/markupsafe@2.1.3", "markupsafe"),
            "is not a package URL",
        ),
        (cyclonedx("1.3").to_string(), "specVersion `1.3`"),
        (
            cyclonedx("1.6").to_string().replace("\"openssl\"", "\"\""),
            "`name` must be 1 to 1024",
        ),
        (r#"{"bomFormat": "SWID"}"#.into(), "not CycloneDX"),
        (
            r#"{"spdxVersion": "SPDX-3.0"}"#.into(),
            "spdxVersion `SPDX-3.0`",
        ),
        (r#"{"hello": 1}"#.into(), "neither a CycloneDX"),
        (
            "{\n\"bomFormat\": \"CycloneDX\",\n\"specVersion\": 16".into(),
            "line 3",
        ),
        ("\u{feff}garbage".into(), "line 1"),
    ];
    for (doc, words) in cases {
        let e = Sbom::parse(doc.as_bytes()).unwrap_err().to_string();
        assert!(e.contains(words), "{words}: {e}");
    }
    let big = vec![b' '; sigil_vuln::sbom::MAX_SBOM_BYTES + 1];
    assert!(
        Sbom::parse(&big)
            .unwrap_err()
            .to_string()
            .contains("larger than")
    );
}

/// What survives a round trip: name, version, purl, CPE.
type Fields = (String, Option<String>, Option<String>, Option<String>);

fn component() -> impl Strategy<Value = Component> {
    (
        "[a-zA-Z][a-zA-Z0-9._-]{0,20}",
        proptest::option::of("[0-9]{1,2}\\.[0-9]{1,2}\\.[0-9]{1,2}"),
        any::<bool>(),
        proptest::option::of("cpe:2\\.3:a:[a-z]{1,8}:[a-z]{1,8}:[0-9.]{1,6}"),
    )
        .prop_map(|(name, version, with_purl, cpe)| Component {
            purl: with_purl.then(|| {
                format!(
                    "pkg:npm/{}@{}",
                    name.to_ascii_lowercase(),
                    version.clone().unwrap_or_else(|| "1.0.0".into())
                )
            }),
            name,
            version,
            cpe,
            reference: None,
        })
}

proptest! {
    /// Written as CycloneDX 1.6 or SPDX 2.3 and read again: the same components.
    #[test]
    fn exports_read_back_the_same(components in proptest::collection::vec(component(), 0..20)) {
        let sbom = Sbom {
            format: SbomFormat::CycloneDx,
            spec_version: "1.6".into(),
            subject: Some(Component { name: "fw".into(), version: Some("1.0.0".into()),
                                      purl: None, cpe: None, reference: None }),
            components,
        };
        let strip = |s: &Sbom| -> Vec<Fields> {
            s.components.iter().map(|c| (c.name.clone(), c.version.clone(), c.purl.clone(), c.cpe.clone())).collect()
        };
        let cdx = to_cyclonedx(&sbom, "3e671687-395b-41f5-a30f-a58921a69b79", "2026-12-04T00:00:00Z");
        let back = Sbom::parse(cdx.to_string().as_bytes()).unwrap();
        prop_assert_eq!(strip(&back), strip(&sbom));
        prop_assert_eq!(back.subject.map(|s| s.name), Some("fw".to_owned()));
        let spdx = to_spdx(&sbom, "fw", "https://sigil.invalid/spdx/1", "2026-12-04T00:00:00Z");
        let back = Sbom::parse(spdx.to_string().as_bytes()).unwrap();
        prop_assert_eq!(strip(&back), strip(&sbom));
    }

    #[test]
    fn any_bytes_parse_or_are_refused(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = Sbom::parse(&bytes);
    }
}

/// SPDX 3.0 JSON-LD: packages in the graph (or in place in an element list), purls and CPEs
/// from external identifiers, the SBOM's root as the subject; bad ones refused with the line.
#[test]
fn spdx3_packages_are_read_and_bad_ones_refused() {
    let doc = json!({
        "@context": "https://spdx.org/rdf/3.0.1/spdx-context.jsonld",
        "@graph": [
            {"type": "CreationInfo", "@id": "_:ci", "specVersion": "3.0.1", "created": "2026-12-01T00:00:00Z", "createdBy": ["urn:x"]},
            {"type": "software_Sbom", "spdxId": "urn:sbom", "creationInfo": "_:ci", "rootElement": ["urn:fw"],
             "element": [
                {"type": "software_Package", "spdxId": "urn:curl", "creationInfo": "_:ci", "name": "curl",
                 "software_packageVersion": "7.88.1-10+deb12u4",
                 "externalIdentifier": [
                    {"type": "ExternalIdentifier", "externalIdentifierType": "packageUrl",
                     "identifier": "pkg:deb/debian/curl@7.88.1-10%2Bdeb12u4?distro=debian-12"},
                    {"type": "ExternalIdentifier", "externalIdentifierType": "cpe23",
                     "identifier": "cpe:2.3:a:haxx:curl:7.88.1:*:*:*:*:*:*:*"}]}]},
            {"type": "software_Package", "spdxId": "urn:fw", "creationInfo": "_:ci", "name": "meter-fw", "software_packageVersion": "2.0.0"},
            {"type": "software_Package", "spdxId": "urn:jinja", "creationInfo": "_:ci", "name": "jinja2",
             "software_packageVersion": "3.1.2", "software_packageUrl": "pkg:pypi/jinja2@3.1.2"}
        ]
    });
    let sbom = Sbom::parse(doc.to_string().as_bytes()).unwrap();
    assert_eq!(sbom.format, SbomFormat::Spdx);
    assert_eq!(sbom.spec_version, "SPDX-3.0.1");
    assert_eq!(sbom.subject.as_ref().unwrap().name, "meter-fw");
    let names: Vec<&str> = sbom.components.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["curl", "jinja2"]);
    assert_eq!(
        sbom.components[0].package().unwrap().ecosystem.to_string(),
        "Debian:12"
    );
    assert!(
        sbom.components[0]
            .cpe
            .as_deref()
            .unwrap()
            .starts_with("cpe:2.3:a:haxx")
    );

    let pretty = serde_json::to_string_pretty(&doc).unwrap();
    let cases: Vec<(String, &str)> = vec![
        (
            pretty.replace("\"pkg:pypi/jinja2@3.1.2\"", "\"jinja2\""),
            "is not a package URL",
        ),
        (
            pretty.replace("\"name\": \"jinja2\",", ""),
            "needs a `name`",
        ),
        (pretty.replace("\"3.0.1\"", "\"3.1\""), "specVersion `3.1`"),
        (
            pretty.replace("\"name\": \"curl\"", "\"name\": \"\\u0007\""),
            "`name` must be",
        ),
        (
            r#"{"@context": "https://spdx.org/rdf/3.0.1/spdx-context.jsonld"}"#.into(),
            "without a `@graph`",
        ),
        (
            pretty.replace("\"urn:jinja\"", "\"urn:fw\""),
            "`urn:fw` names two elements",
        ),
        (
            pretty.replace("\"spdxId\": \"urn:jinja\",", ""),
            "without an `spdxId`",
        ),
    ];
    for (text, words) in cases {
        let e = Sbom::parse(text.as_bytes()).unwrap_err().to_string();
        assert!(e.contains(words), "{words}: {e}");
    }
    // The line points at the element refused.
    let bad = pretty.replace("\"pkg:pypi/jinja2@3.1.2\"", "\"jinja2\"");
    let line = 1 + bad[..bad.find("\"urn:jinja\"").unwrap()]
        .matches('\n')
        .count();
    let e = Sbom::parse(bad.as_bytes()).unwrap_err().to_string();
    assert!(e.contains(&format!("line {line}")), "{e}");
}
