//! OSV matching on the schema's own examples and on records shaped like published advisories
//! (their ranges as the advisory databases publish them), in every ecosystem order Sigil
//! knows; and, property-tested, against a model of ranges as intervals.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use serde_json::json;

use sigil_vuln::{Ecosystem, OsvRecord, Verdict, evaluate};

fn record(value: serde_json::Value) -> OsvRecord {
    OsvRecord::parse(value.to_string().as_bytes()).unwrap()
}

fn range_record(ecosystem: &str, name: &str, kind: &str, events: serde_json::Value) -> OsvRecord {
    record(json!({
        "id": "TEST-1", "modified": "2026-01-01T00:00:00Z",
        "affected": [{"package": {"ecosystem": ecosystem, "name": name},
                      "ranges": [{"type": kind, "events": events}]}]
    }))
}

fn verdict(r: &OsvRecord, ecosystem: &str, name: &str, version: &str) -> Verdict {
    evaluate(r, &Ecosystem::parse(ecosystem), name, version)
}

fn affected(fixed: Option<&str>) -> Verdict {
    Verdict::Affected {
        fixed: fixed.map(str::to_owned),
    }
}

/// The schema's examples: unfixed, fixed, multiple ranges, `last_affected` against `fixed`.
#[test]
fn the_schema_examples() {
    let unfixed = range_record("npm", "p", "SEMVER", json!([{"introduced": "0"}]));
    assert_eq!(verdict(&unfixed, "npm", "p", "0.0.1"), affected(None));
    assert_eq!(verdict(&unfixed, "npm", "p", "99.0.0"), affected(None));

    let fixed = range_record(
        "npm",
        "p",
        "SEMVER",
        json!([{"introduced": "0"}, {"fixed": "1.0.2"}]),
    );
    assert_eq!(
        verdict(&fixed, "npm", "p", "1.0.1"),
        affected(Some("1.0.2"))
    );
    assert_eq!(verdict(&fixed, "npm", "p", "1.0.2"), Verdict::NotAffected);
    assert_eq!(
        verdict(&fixed, "npm", "p", "1.0.2-rc.1"),
        affected(Some("1.0.2"))
    );

    let multiple = range_record(
        "npm",
        "p",
        "SEMVER",
        json!([{"introduced": "1.0.0"}, {"fixed": "1.0.2"}, {"introduced": "3.0.0"}, {"fixed": "3.2.5"}]),
    );
    for (v, want) in [
        ("0.9.0", Verdict::NotAffected),
        ("1.0.0", affected(Some("1.0.2"))),
        ("1.0.2", Verdict::NotAffected),
        ("2.5.0", Verdict::NotAffected),
        ("3.1.0", affected(Some("3.2.5"))),
        ("3.2.5", Verdict::NotAffected),
    ] {
        assert_eq!(verdict(&multiple, "npm", "p", v), want, "{v}");
    }

    let last = range_record(
        "PyPI",
        "p",
        "ECOSYSTEM",
        json!([{"introduced": "0"}, {"last_affected": "2.1.214"}]),
    );
    assert_eq!(verdict(&last, "PyPI", "p", "2.1.214"), affected(None));
    assert_eq!(verdict(&last, "PyPI", "p", "2.1.215"), Verdict::NotAffected);
}

/// Events out of order in the record are sorted in the ecosystem's order first.
#[test]
fn unsorted_events_and_limits() {
    let r = range_record(
        "crates.io",
        "smallvec",
        "SEMVER",
        json!([{"fixed": "1.6.1"}, {"introduced": "1.6.0"}]),
    );
    assert_eq!(
        verdict(&r, "crates.io", "smallvec", "1.6.0"),
        affected(Some("1.6.1"))
    );
    assert_eq!(
        verdict(&r, "crates.io", "smallvec", "1.5.9"),
        Verdict::NotAffected
    );
    assert_eq!(
        verdict(&r, "crates.io", "smallvec", "1.6.1"),
        Verdict::NotAffected
    );

    let limited = range_record(
        "npm",
        "p",
        "SEMVER",
        json!([{"introduced": "0"}, {"limit": "2.0.0"}]),
    );
    assert_eq!(verdict(&limited, "npm", "p", "1.9.9"), affected(None));
    assert_eq!(verdict(&limited, "npm", "p", "2.0.0"), Verdict::NotAffected);
    let star = range_record(
        "npm",
        "p",
        "SEMVER",
        json!([{"introduced": "0"}, {"limit": "*"}]),
    );
    assert_eq!(verdict(&star, "npm", "p", "9.0.0"), affected(None));
}

/// Ranges as the advisory databases publish them, each in its ecosystem's order.
#[test]
fn published_advisories_in_each_ecosystem() {
    // Log4Shell (GHSA-jfh8-c2jp-5v3q): three ranges in Maven's order.
    let log4j = range_record(
        "Maven",
        "org.apache.logging.log4j:log4j-core",
        "ECOSYSTEM",
        json!([{"introduced": "2.13.0"}, {"fixed": "2.15.0"}, {"introduced": "2.4"},
               {"fixed": "2.12.2"}, {"introduced": "2.0-beta9"}, {"fixed": "2.3.1"}]),
    );
    let name = "org.apache.logging.log4j:log4j-core";
    for (v, want) in [
        ("2.0-beta8", Verdict::NotAffected),
        ("2.0-beta9", affected(Some("2.3.1"))),
        ("2.0-rc1", affected(Some("2.3.1"))),
        ("2.3", affected(Some("2.3.1"))),
        ("2.3.1", Verdict::NotAffected),
        ("2.4.1", affected(Some("2.12.2"))),
        ("2.12.1", affected(Some("2.12.2"))),
        ("2.12.2", Verdict::NotAffected),
        ("2.14.1", affected(Some("2.15.0"))),
        ("2.15.0", Verdict::NotAffected),
        ("2.17.1", Verdict::NotAffected),
    ] {
        assert_eq!(verdict(&log4j, "Maven", name, v), want, "log4j {v}");
    }

    // PyPI, PEP 440: a pre-release of the fix is still affected; a post release of it is not.
    let jinja = range_record(
        "PyPI",
        "Jinja2",
        "ECOSYSTEM",
        json!([{"introduced": "0"}, {"fixed": "3.1.3"}]),
    );
    assert_eq!(
        verdict(&jinja, "PyPI", "jinja2", "3.1.3rc1"),
        affected(Some("3.1.3"))
    );
    assert_eq!(
        verdict(&jinja, "PyPI", "jinja2", "3.1.2"),
        affected(Some("3.1.3"))
    );
    assert_eq!(
        verdict(&jinja, "PyPI", "JINJA2", "3.1.3.post1"),
        Verdict::NotAffected
    );
    assert_eq!(
        verdict(&jinja, "PyPI", "jinja2", "3.1.10"),
        Verdict::NotAffected
    );

    // Go: the standard library, two branches fixed apart, versions with their `v`.
    let go = range_record(
        "Go",
        "stdlib",
        "SEMVER",
        json!([{"introduced": "0"}, {"fixed": "1.18.6"}, {"introduced": "1.19.0"}, {"fixed": "1.19.1"}]),
    );
    assert_eq!(
        verdict(&go, "Go", "stdlib", "v1.18.5"),
        affected(Some("1.18.6"))
    );
    assert_eq!(
        verdict(&go, "Go", "stdlib", "v1.18.6"),
        Verdict::NotAffected
    );
    assert_eq!(
        verdict(&go, "Go", "stdlib", "v1.19.0"),
        affected(Some("1.19.1"))
    );

    // Debian: a record for bookworm, in dpkg's order (revisions, `+debNuM`, epochs).
    let debian = range_record(
        "Debian:12",
        "curl",
        "ECOSYSTEM",
        json!([{"introduced": "0"}, {"fixed": "7.88.1-10+deb12u5"}]),
    );
    assert_eq!(
        verdict(&debian, "Debian:12", "curl", "7.88.1-10+deb12u4"),
        affected(Some("7.88.1-10+deb12u5"))
    );
    assert_eq!(
        verdict(&debian, "Debian:12", "curl", "7.88.1-10+deb12u5"),
        Verdict::NotAffected
    );
    assert_eq!(
        verdict(&debian, "Debian:12", "curl", "1:7.0"),
        Verdict::NotAffected
    );
    // Not a record for Debian 11.
    assert_eq!(
        verdict(&debian, "Debian:11", "curl", "7.74.0-1.3"),
        Verdict::NotAffected
    );

    // Alpine: apk's order, revisions and `_p` patch levels.
    let alpine = range_record(
        "Alpine:v3.19",
        "openssl",
        "ECOSYSTEM",
        json!([{"introduced": "0"}, {"fixed": "3.1.4-r1"}]),
    );
    assert_eq!(
        verdict(&alpine, "Alpine:v3.19", "openssl", "3.1.4-r0"),
        affected(Some("3.1.4-r1"))
    );
    assert_eq!(
        verdict(&alpine, "Alpine:v3.19", "openssl", "3.1.4_p1-r0"),
        Verdict::NotAffected
    );

    // npm: lodash before 4.17.21.
    let lodash = range_record(
        "npm",
        "lodash",
        "SEMVER",
        json!([{"introduced": "0"}, {"fixed": "4.17.21"}]),
    );
    assert_eq!(
        verdict(&lodash, "npm", "lodash", "4.17.20"),
        affected(Some("4.17.21"))
    );
    assert_eq!(
        verdict(&lodash, "npm", "lodash", "4.17.21"),
        Verdict::NotAffected
    );
    assert_eq!(
        verdict(&lodash, "npm", "underscore", "1.0.0"),
        Verdict::NotAffected
    );
}

/// The edge cases: withdrawn records, `versions` lists, GIT ranges, orders Sigil does not know,
/// versions that do not parse.
#[test]
fn undecidable_and_ignored() {
    let mut withdrawn = range_record("npm", "p", "SEMVER", json!([{"introduced": "0"}]));
    withdrawn.withdrawn = Some("2026-01-02T00:00:00Z".into());
    assert_eq!(
        verdict(&withdrawn, "npm", "p", "1.0.0"),
        Verdict::NotAffected
    );

    let git = record(json!({
        "id": "OSV-2020-1", "affected": [{
            "package": {"ecosystem": "OSS-Fuzz", "name": "libfoo"},
            "ranges": [{"type": "GIT", "repo": "https://example.org/libfoo.git",
                        "events": [{"introduced": "0"}, {"fixed": "a1b2c3d4e5f6a1b2c3d4e5f6a1b2c3d4e5f6a1b2"}]}],
            "versions": ["1.2.0", "1.2.1"]}]
    }));
    assert_eq!(verdict(&git, "OSS-Fuzz", "libfoo", "1.2.1"), affected(None));
    match verdict(&git, "OSS-Fuzz", "libfoo", "1.3.0") {
        Verdict::CannotDecide { reason } => assert!(reason.contains("GIT"), "{reason}"),
        other => panic!("{other:?}"),
    }

    // An ecosystem whose order Sigil does not know: its SEMVER ranges still decide.
    let hex = range_record(
        "Hex",
        "plug",
        "ECOSYSTEM",
        json!([{"introduced": "0"}, {"fixed": "1.0.0"}]),
    );
    assert!(matches!(
        verdict(&hex, "Hex", "plug", "0.5.0"),
        Verdict::CannotDecide { .. }
    ));
    let hex = range_record(
        "Hex",
        "plug",
        "SEMVER",
        json!([{"introduced": "0"}, {"fixed": "1.0.0"}]),
    );
    assert_eq!(
        verdict(&hex, "Hex", "plug", "0.5.0"),
        affected(Some("1.0.0"))
    );

    // An installed version the order cannot read.
    let semver = range_record(
        "crates.io",
        "c",
        "SEMVER",
        json!([{"introduced": "0"}, {"fixed": "1.0.0"}]),
    );
    match verdict(&semver, "crates.io", "c", "not-a-version") {
        Verdict::CannotDecide { reason } => {
            assert!(reason.contains("installed version"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
}

fn semver_of(n: u8) -> String {
    format!("{}.{}.0", n / 10, n % 10)
}

proptest! {
    /// Against a model: ranges as half-open intervals [introduced, fixed), or closed ones
    /// [introduced, last_affected], whatever order the record lists its events in.
    #[test]
    fn ranges_are_the_intervals_they_describe(
        mut cuts in proptest::collection::btree_set(1u8..100, 0..8),
        last_affected in any::<bool>(),
        shuffle in any::<u64>(),
        v in 0u8..110,
    ) {
        if cuts.len() % 2 == 1 {
            let first = *cuts.iter().next().unwrap();
            cuts.remove(&first);
        }
        let cuts: Vec<u8> = cuts.into_iter().collect();
        let close = if last_affected { "last_affected" } else { "fixed" };
        let mut events: Vec<serde_json::Value> = cuts
            .chunks(2)
            .flat_map(|p| [json!({"introduced": semver_of(p[0])}), json!({close: semver_of(p[1])})])
            .collect();
        if events.is_empty() {
            events.push(json!({"introduced": "0"}));
        }
        // A deterministic shuffle: the record's order must not matter.
        let n = events.len();
        for i in 0..n {
            let j = (shuffle.rotate_left(i as u32) as usize) % n;
            events.swap(i, j);
        }
        let r = range_record("npm", "p", "SEMVER", serde_json::Value::Array(events));
        let inside = if cuts.is_empty() {
            true
        } else {
            cuts.chunks(2).any(|p| {
                if last_affected { p[0] <= v && v <= p[1] } else { p[0] <= v && v < p[1] }
            })
        };
        let got = verdict(&r, "npm", "p", &semver_of(v));
        prop_assert_eq!(matches!(got, Verdict::Affected { .. }), inside, "{:?} at {}", cuts, v);
        if let (Verdict::Affected { fixed: Some(f) }, false) = (&got, last_affected) {
            let upper = cuts.chunks(2).find(|p| p[0] <= v && v < p[1]).map(|p| semver_of(p[1]));
            prop_assert_eq!(Some(f.clone()), upper);
        }
    }

    /// Versions of any shape in a record's events, in an order that is not transitive on
    /// them (Maven's): an answer, never a panic.
    #[test]
    fn contrived_versions_never_crash_the_matcher(
        events in proptest::collection::vec(("(introduced|fixed)", "[a-z0-9.-]{0,12}"), 1..12),
        installed in "[a-z0-9.-]{0,12}",
    ) {
        let mut list: Vec<serde_json::Value> = events.iter().map(|(k, v)| json!({k.as_str(): v})).collect();
        list.push(json!({"introduced": "0"}));
        for ecosystem in ["Maven", "Debian", "Alpine", "PyPI", "npm"] {
            let r = range_record(ecosystem, "p", "ECOSYSTEM", serde_json::Value::Array(list.clone()));
            let _ = verdict(&r, ecosystem, "p", &installed);
        }
    }

    /// Any bytes: a record or a clear refusal, never a panic.
    #[test]
    fn any_bytes_parse_or_are_refused(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = OsvRecord::parse(&bytes);
    }
}
