//! Coordinated disclosure: the `security.txt` a policy renders (RFC 9116), what it refuses
//! (a value that would inject a field, an expired or decade-long file), reports, their clock,
//! and the advisory an accepted report becomes, matched like any OSV record.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use time::Duration;
use time::macros::datetime;

use sigil_vuln::disclosure::{AdvisorySpec, DisclosurePolicy, ReportClock, Submission};
use sigil_vuln::{Ecosystem, Verdict, evaluate, record_severity};

fn policy() -> DisclosurePolicy {
    DisclosurePolicy {
        contacts: vec![
            "mailto:psirt@example.com".into(),
            "https://example.com/report".into(),
        ],
        expires: datetime!(2027-06-01 00:00 UTC),
        policy: Some("https://example.com/cvd".into()),
        encryption: Some("https://example.com/pgp.asc".into()),
        acknowledgments: None,
        preferred_languages: vec!["en".into(), "de-AT".into()],
        csaf: Some("https://example.com/.well-known/csaf/provider-metadata.json".into()),
        acknowledge_days: 5,
        triage_days: 30,
    }
}

/// A field expected in the refusal, and the change that should cause it.
type Change<T> = (&'static str, Box<dyn Fn(&mut T)>);

const NOW: time::OffsetDateTime = datetime!(2026-12-05 12:00 UTC);

#[test]
fn a_policy_renders_rfc_9116_fields_one_per_line() {
    let p = policy();
    p.check(NOW).unwrap();
    let text = p.security_txt(
        "Acme Sensor",
        &["https://sigil.example/.well-known/security.txt".into()],
    );
    assert_eq!(
        text,
        "# Vulnerability disclosure: Acme Sensor\n\
         Canonical: https://sigil.example/.well-known/security.txt\n\
         Contact: mailto:psirt@example.com\n\
         Contact: https://example.com/report\n\
         Expires: 2027-06-01T00:00:00Z\n\
         Encryption: https://example.com/pgp.asc\n\
         Policy: https://example.com/cvd\n\
         Preferred-Languages: en, de-AT\n\
         CSAF: https://example.com/.well-known/csaf/provider-metadata.json\n"
    );
}

#[test]
fn bad_policies_are_refused_by_field() {
    let cases: Vec<Change<DisclosurePolicy>> = vec![
        ("contacts", Box::new(|p| p.contacts.clear())),
        (
            "contacts",
            Box::new(|p| p.contacts = vec!["mailto:a@b\nPolicy: https://evil".into()]),
        ),
        (
            "contacts",
            Box::new(|p| p.contacts = vec!["http://example.com/report".into()]),
        ),
        (
            "contacts",
            Box::new(|p| p.contacts = vec!["javascript:alert(1)".into()]),
        ),
        (
            "expires",
            Box::new(|p| p.expires = NOW - Duration::seconds(1)),
        ),
        (
            "expires",
            Box::new(|p| p.expires = NOW + Duration::days(400)),
        ),
        (
            "policy",
            Box::new(|p| p.policy = Some("http://example.com/cvd".into())),
        ),
        (
            "csaf",
            Box::new(|p| p.csaf = Some("https://example.com/csaf.json".into())),
        ),
        (
            "preferred_languages",
            Box::new(|p| p.preferred_languages = vec!["english please".into()]),
        ),
        ("acknowledge_days", Box::new(|p| p.acknowledge_days = 0)),
        ("triage_days", Box::new(|p| p.triage_days = 2)),
    ];
    for (field, change) in cases {
        let mut p = policy();
        change(&mut p);
        let e = p.check(NOW).unwrap_err();
        assert_eq!(e.field, field, "{e}");
    }
}

/// Strings around a valid value: clean ones (so the check passes often) and ones carrying
/// line breaks, separators and bidi controls where a parser might split.
fn dirty(clean: &'static str) -> impl Strategy<Value = String> {
    prop_oneof![
        clean.prop_map(|s| s),
        (
            clean,
            "[\\n\\r\\u{85}\\u{2028}\\u{2029}\\u{202e} :]{1,3}",
            clean
        )
            .prop_map(|(a, b, c)| format!("{a}{b}{c}")),
        "\\PC{0,30}".prop_map(|s| s),
    ]
}

proptest! {
    /// Whatever an operator types, a policy that passes its check renders one line per field,
    /// each a known field: no value can add a field of its own, for Rust's `lines` or for a
    /// parser that also breaks at Unicode separators.
    #[test]
    fn no_value_injects_a_field(contact in dirty("mailto:[a-z]{1,8}@[a-z]{1,8}\\.com"),
                                lang in dirty("[a-z]{2}(-[A-Z]{2})?"),
                                title in "\\PC{0,20}|[a-z\\n\\u{2028}\\u{202e}]{0,10}") {
        let mut p = policy();
        p.contacts = vec![contact];
        p.preferred_languages = vec![lang];
        if p.check(NOW).is_ok() {
            let text = p.security_txt(&title, &[]);
            let breaks = ['\r', '\u{85}', '\u{2028}', '\u{2029}', '\u{202e}'];
            let no_breaks = !text.contains(breaks);
            prop_assert!(no_breaks);
            let lines: Vec<&str> = text.lines().collect();
            // The comment, one contact, Expires, Encryption, Policy, Preferred-Languages, CSAF.
            prop_assert_eq!(lines.len(), 7, "{}", text);
            prop_assert_eq!(text.matches('\n').count(), 7);
            prop_assert!(lines[0].starts_with("# "));
            let names: Vec<&str> = lines[1..].iter().map(|l| l.split(": ").next().unwrap()).collect();
            prop_assert_eq!(names, ["Contact", "Expires", "Encryption", "Policy", "Preferred-Languages", "CSAF"]);
        }
    }
}

/// The strategies reach valid policies: the property above is not vacuous.
#[test]
fn clean_values_pass_the_check() {
    let mut p = policy();
    p.contacts = vec!["mailto:ab@cd.com".into()];
    p.preferred_languages = vec!["de-AT".into()];
    p.check(NOW).unwrap();
}

fn submission() -> Submission {
    Submission {
        product: "acme-sensor".into(),
        summary: "MQTT client overflows on a long topic".into(),
        details: "Send a PUBLISH with a 70k topic.\n\tThe agent crashes.".into(),
        affected: Some("firmware 1.4.x".into()),
        reporter: Some("mailto:finder@example.org".into()),
        cvss: Some("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H".into()),
        exploited: false,
    }
}

#[test]
fn reports_are_checked() {
    submission().check().unwrap();
    let bad: Vec<Change<Submission>> = vec![
        ("summary", Box::new(|s| s.summary = " ".into())),
        ("summary", Box::new(|s| s.summary = "two\nlines".into())),
        ("summary", Box::new(|s| s.summary = "x".repeat(201))),
        ("details", Box::new(|s| s.details = "x".repeat(16_001))),
        ("details", Box::new(|s| s.details = "bell\u{7}".into())),
        ("details", Box::new(|s| s.details = "\u{1b}[31mred".into())),
        ("reporter", Box::new(|s| s.reporter = Some("a\rb".into()))),
        (
            "summary",
            Box::new(|s| s.summary = "a\u{2028}Contact: mailto:x".into()),
        ),
        (
            "summary",
            Box::new(|s| s.summary = "gnp.exe\u{202e}".into()),
        ),
        ("cvss", Box::new(|s| s.cvss = Some("CVSS:3.1/AV:X".into()))),
    ];
    for (field, change) in bad {
        let mut s = submission();
        change(&mut s);
        assert_eq!(s.check().unwrap_err().field, field);
    }
}

#[test]
fn the_report_clock_counts_from_receipt() {
    let received = datetime!(2026-12-05 09:30:15 UTC);
    let c = ReportClock::new(received, 5, 30);
    assert_eq!(c.acknowledge_by, datetime!(2026-12-10 09:30:15 UTC));
    assert_eq!(c.decide_by, datetime!(2027-01-04 09:30:15 UTC));
}

fn spec(component: &str) -> AdvisorySpec {
    AdvisorySpec {
        component: component.into(),
        introduced: Some("0".into()),
        fixed: Some("1.4.3".into()),
        last_affected: None,
        versions: vec![],
        cvss: Some("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H".into()),
        aliases: vec!["CVE-2026-40001".into()],
    }
}

#[test]
fn an_accepted_report_is_an_osv_record_matched_like_any_other() {
    let (record, json) = spec("pkg:cargo/acme-mqtt@1.4.1")
        .record(
            "SIGIL-2026-0001",
            "MQTT overflow",
            "details",
            datetime!(2026-12-05 12:00 UTC),
        )
        .unwrap();
    assert!(json.contains("\"schema_version\":\"1.6.0\""));
    assert_eq!(record.aliases, vec!["CVE-2026-40001"]);
    assert_eq!(record_severity(&record).score, Some(7.5));
    let crates = Ecosystem::parse("crates.io");
    assert!(matches!(
        evaluate(&record, &crates, "acme-mqtt", "1.4.2"),
        Verdict::Affected { fixed: Some(f) } if f == "1.4.3"
    ));
    assert_eq!(
        evaluate(&record, &crates, "acme-mqtt", "1.4.3"),
        Verdict::NotAffected
    );
    assert_eq!(
        evaluate(&record, &crates, "other", "1.0.0"),
        Verdict::NotAffected
    );

    // Exact versions of a Debian package, in Debian 12 only.
    let mut s = spec("pkg:deb/debian/openssl?distro=debian-12");
    s.introduced = None;
    s.fixed = None;
    s.versions = vec!["3.0.11-1~deb12u1".into()];
    let (record, _) = s.record("SIGIL-2026-0002", "s", "d", NOW).unwrap();
    assert!(matches!(
        evaluate(
            &record,
            &Ecosystem::parse("Debian:12"),
            "openssl",
            "3.0.11-1~deb12u1"
        ),
        Verdict::Affected { .. }
    ));
    assert_eq!(
        evaluate(
            &record,
            &Ecosystem::parse("Debian:11"),
            "openssl",
            "3.0.11-1~deb12u1"
        ),
        Verdict::NotAffected
    );
}

#[test]
fn advisories_that_cannot_be_matched_are_refused() {
    let bad: Vec<Change<AdvisorySpec>> = vec![
        ("component", Box::new(|s| s.component = "acme-mqtt".into())),
        (
            "component",
            Box::new(|s| s.component = "pkg:generic/firmware".into()),
        ),
        (
            "component",
            Box::new(|s| s.component = "pkg:deb/debian/openssl".into()),
        ),
        (
            "versions",
            Box::new(|s| {
                s.introduced = None;
                s.fixed = None;
            }),
        ),
        (
            "fixed",
            Box::new(|s| s.last_affected = Some("1.4.2".into())),
        ),
        (
            "versions",
            Box::new(|s| s.fixed = Some("not a version".into())),
        ),
        ("aliases", Box::new(|s| s.aliases = vec!["CVE 1".into()])),
        ("cvss", Box::new(|s| s.cvss = Some("CVSS:9/X".into()))),
    ];
    for (field, change) in bad {
        let mut s = spec("pkg:cargo/acme-mqtt");
        change(&mut s);
        let e = s.record("SIGIL-1", "s", "d", NOW).unwrap_err();
        assert_eq!(e.field, field, "{e}");
    }
    // PyPI orders by PEP 440: `1.0-beta` is not a version there.
    let mut s = spec("pkg:pypi/acme");
    s.fixed = Some("1.0-beta!".into());
    assert_eq!(
        s.record("SIGIL-1", "s", "d", NOW).unwrap_err().field,
        "versions"
    );
}
