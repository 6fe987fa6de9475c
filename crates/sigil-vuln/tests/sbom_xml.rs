//! CycloneDX XML (1.4 to 1.6): read into the same components as the JSON form; DTDs, entity
//! tricks, foreign roots and bad fields refused with the line and the reason.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;

use sigil_vuln::{Ecosystem, Sbom, SbomFormat};

fn cyclonedx_xml(spec: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<bom xmlns="http://cyclonedx.org/schema/bom/{spec}" serialNumber="urn:uuid:3e671687-395b-41f5-a30f-a58921a69b79" version="1">
  <metadata>
    <timestamp>2026-12-01T00:00:00Z</timestamp>
    <component type="firmware"><name>meter-fw</name><version>2.0.0</version></component>
  </metadata>
  <components>
    <component type="library" bom-ref="pkg:pypi/jinja2@3.1.2">
      <name>Jinja2</name>
      <version>3.1.2</version>
      <hashes><hash alg="SHA-256">0000</hash></hashes>
      <purl>pkg:pypi/jinja2@3.1.2</purl>
      <components>
        <component type="library"><name>markupsafe</name><version>2.1.3</version>
          <purl>pkg:pypi/markupsafe@2.1.3</purl></component>
      </components>
    </component>
    <component type="library">
      <name> openssl </name>
      <version>3.0.11</version>
      <cpe>cpe:2.3:a:openssl:openssl:3.0.11:*:*:*:*:*:*:*</cpe>
      <ext:name xmlns:ext="https://example.org/ext">ignored</ext:name>
    </component>
  </components>
</bom>
"#
    )
}

#[test]
fn cyclonedx_xml_versions_are_read_like_json() {
    for spec in ["1.4", "1.5", "1.6"] {
        let sbom = Sbom::parse(cyclonedx_xml(spec).as_bytes()).unwrap();
        assert_eq!(sbom.format, SbomFormat::CycloneDx);
        assert_eq!(sbom.spec_version, spec);
        assert_eq!(sbom.subject.as_ref().unwrap().name, "meter-fw");
        let names: Vec<&str> = sbom.components.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["Jinja2", "markupsafe", "openssl"]);
        assert_eq!(
            sbom.components[0].reference.as_deref(),
            Some("pkg:pypi/jinja2@3.1.2")
        );
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
    // A byte-order mark does not hide the XML.
    let with_bom = format!("\u{feff}{}", cyclonedx_xml("1.5"));
    assert_eq!(
        Sbom::parse(with_bom.as_bytes()).unwrap().components.len(),
        3
    );
    assert_eq!(
        sigil_vuln::sbom::media_type(with_bom.as_bytes()),
        "application/xml; charset=utf-8"
    );
    assert_eq!(sigil_vuln::sbom::media_type(b"{}"), "application/json");
}

#[test]
fn bad_xml_is_refused_with_the_line_and_reason() {
    let base = cyclonedx_xml("1.6");
    let laughs = r#"<?xml version="1.0"?>
<!DOCTYPE bom [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>
<bom xmlns="http://cyclonedx.org/schema/bom/1.6"><components><component><name>&lol2;</name></component></components></bom>"#;
    let external = r#"<?xml version="1.0"?>
<!DOCTYPE bom [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<bom xmlns="http://cyclonedx.org/schema/bom/1.6"><components><component><name>&xxe;</name></component></components></bom>"#;
    let cases: Vec<(String, &str)> = vec![
        (laughs.into(), "DTD"),
        (external.into(), "DTD"),
        (
            base.replace("<name>markupsafe</name>", ""),
            "a component needs a `name`",
        ),
        (base.replace("<name>markupsafe</name>", ""), "line 14"),
        (
            base.replace("pkg:pypi/markupsafe@2.1.3", "markupsafe"),
            "is not a package URL",
        ),
        (
            base.replace("</purl></component>", "</purl></compnent>"),
            "line 15",
        ),
        (
            base.replace("bom/1.6", "bom/1.3"),
            "CycloneDX XML version `1.3`",
        ),
        (
            base.replace("http://cyclonedx.org/schema/bom/1.6", "urn:other"),
            "not a CycloneDX `bom`",
        ),
        (
            "<svg xmlns=\"http://www.w3.org/2000/svg\"/>".into(),
            "not a CycloneDX `bom`",
        ),
        (
            base.replace("3.0.11</version>", "3.0.11\u{9f}</version>"),
            "`version` must be",
        ),
        (
            base.replace("3.1.2</version>", "&unknown;</version>"),
            "line 10",
        ),
    ];
    for (doc, words) in cases {
        let e = Sbom::parse(doc.as_bytes()).unwrap_err().to_string();
        assert!(e.contains(words), "{words}: {e}");
    }
    // Another reader must not see another value: no second field, no split text, no
    // second list, no other declared encoding.
    let evasions: Vec<(String, &str)> = vec![
        (
            base.replace(
                "<name>Jinja2</name>",
                "<name>Jinja2</name><name>Other</name>",
            ),
            "a second `name`",
        ),
        (
            base.replace(
                "<version>3.1.2</version>",
                "<version>3.1<!---->.2</version>",
            ),
            "`version` must hold text only",
        ),
        (
            base.replace("</components>\n</bom>", "</components><components/></bom>"),
            "a second `components`",
        ),
        (
            base.replace("encoding=\"UTF-8\"", "encoding=\"ISO-8859-1\""),
            "declares encoding `ISO-8859-1`",
        ),
    ];
    for (doc, words) in evasions {
        let e = Sbom::parse(doc.as_bytes()).unwrap_err().to_string();
        assert!(e.contains(words), "{words}: {e}");
    }
    let mut utf16 = vec![0xFF, 0xFE];
    utf16.extend("<bom/>".encode_utf16().flat_map(u16::to_le_bytes));
    let e = Sbom::parse(&utf16).unwrap_err().to_string();
    assert!(e.contains("UTF-16"), "{e}");
    // What the tree builder does not bound is bounded before it runs.
    let attributes: String = (0..100).map(|i| format!(" a{i}=\"x\"")).collect();
    let namespaces: String = (0..100).map(|i| format!(" xmlns:p{i}=\"u{i}\"")).collect();
    let deep = format!("{}{}", "<x>".repeat(200), "</x>".repeat(200));
    for (doc, words) in [
        (
            format!("<bom xmlns=\"http://cyclonedx.org/schema/bom/1.6\"{attributes}/>"),
            "attributes",
        ),
        (
            format!("<bom xmlns=\"http://cyclonedx.org/schema/bom/1.6\"{namespaces}/>"),
            "namespace declarations",
        ),
        (
            format!("<bom xmlns=\"http://cyclonedx.org/schema/bom/1.6\">{deep}</bom>"),
            "nested deeper",
        ),
    ] {
        let e = Sbom::parse(doc.as_bytes()).unwrap_err().to_string();
        assert!(e.contains(words), "{words}: {e}");
    }
    let mut latin1 = b"<bom>\n<name>".to_vec();
    latin1.extend_from_slice(&[0xE9, b'<']);
    let e = Sbom::parse(&latin1).unwrap_err().to_string();
    assert!(e.contains("line 2") && e.contains("not UTF-8"), "{e}");
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Any names and versions, escaped as an XML writer would, read back as written.
    #[test]
    fn escaped_text_reads_back(
        fields in proptest::collection::vec(("[ -~éü]{1,40}", proptest::option::of("[0-9a-z.+~-]{1,12}")), 0..20)
    ) {
        let mut doc = String::from(r#"<bom xmlns="http://cyclonedx.org/schema/bom/1.5"><components>"#);
        for (name, version) in &fields {
            doc.push_str(&format!("<component type=\"library\"><name>{}</name>", escape(name)));
            if let Some(v) = version {
                doc.push_str(&format!("<version>{}</version>", escape(v)));
            }
            doc.push_str("</component>");
        }
        doc.push_str("</components></bom>");
        match Sbom::parse(doc.as_bytes()) {
            Ok(sbom) => {
                let read: Vec<(String, Option<String>)> = sbom.components.into_iter().map(|c| (c.name, c.version)).collect();
                let expected: Vec<(String, Option<String>)> = fields.iter().map(|(n, v)| (n.trim().to_owned(), v.clone())).collect();
                prop_assert_eq!(read, expected);
            }
            // Only a name of blanks alone is refused.
            Err(e) => prop_assert!(fields.iter().any(|(n, _)| n.trim().is_empty()), "{e}"),
        }
    }

    #[test]
    fn any_xml_like_bytes_parse_or_are_refused(tail in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut bytes = b"<bom xmlns=\"http://cyclonedx.org/schema/bom/1.6\">".to_vec();
        bytes.extend(tail);
        let _ = Sbom::parse(&bytes);
    }
}
