//! Severity (CVSS scores from published advisories, database ratings), remediation deadlines,
//! and CRA Article 14's clock: every deadline an exact instant after the moment it follows.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use serde_json::json;
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

use sigil_vuln::reporting::{
    CaseClock, DeviceLine, Exposure, Stage, Urgency, is_country_code, is_member_state, urgency,
};
use sigil_vuln::{OsvRecord, RemediationPolicy, SeverityLevel, record_severity};

fn record(extra: serde_json::Value) -> OsvRecord {
    let mut r = json!({"id": "GHSA-test", "modified": "2026-01-01T00:00:00Z", "affected": []});
    for (k, v) in extra.as_object().unwrap() {
        r[k] = v.clone();
    }
    OsvRecord::parse(r.to_string().as_bytes()).unwrap()
}

#[test]
fn cvss_vectors_are_scored_with_firsts_formulas() {
    // CVE-2021-44228 (Log4Shell): NVD's 10.0.
    let log4shell = record(json!({"severity": [
        {"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H"}]}));
    let s = record_severity(&log4shell);
    assert_eq!(s.level, SeverityLevel::Critical);
    assert_eq!(s.score, Some(10.0));
    // CVE-2021-33503 (urllib3 ReDoS): 7.5, high.
    let urllib3 = record(json!({"severity": [
        {"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H"}]}));
    assert_eq!(record_severity(&urllib3).score, Some(7.5));
    assert_eq!(record_severity(&urllib3).level, SeverityLevel::High);
    // CVE-2024-22195 (jinja2 xmlattr): 5.4, medium.
    let jinja = record(json!({"severity": [
        {"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:U/C:L/I:L/A:N"}]}));
    assert_eq!(record_severity(&jinja).score, Some(5.4));
    assert_eq!(record_severity(&jinja).level, SeverityLevel::Medium);
    // A CVSS 4.0 vector (the specification's example, 9.3) is scored too.
    let v4 = record(json!({"severity": [
        {"type": "CVSS_V4", "score": "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N"}]}));
    assert_eq!(record_severity(&v4).score, Some(9.3));
    // The highest of several vectors counts, including an affected package's own.
    let both = record(json!({
        "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:U/C:L/I:L/A:N"}],
        "affected": [{"package": {"ecosystem": "PyPI", "name": "p"}, "versions": ["1"],
                      "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H"}]}]}));
    assert_eq!(record_severity(&both).score, Some(7.5));
}

#[test]
fn without_a_vector_the_databases_rating_counts_and_else_it_is_unknown() {
    let ghsa = record(json!({"database_specific": {"severity": "MODERATE"}}));
    assert_eq!(record_severity(&ghsa).level, SeverityLevel::Medium);
    assert_eq!(record_severity(&ghsa).score, None);
    let debian = record(
        json!({"affected": [{"package": {"ecosystem": "Debian:12", "name": "openssl"},
        "versions": ["3.0.11-1"], "ecosystem_specific": {"urgency": "high"}}]}),
    );
    assert_eq!(record_severity(&debian).level, SeverityLevel::High);
    // A malformed vector is no score, not a panic and not a zero.
    let broken = record(json!({"severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:Q"}]}));
    assert_eq!(record_severity(&broken).level, SeverityLevel::Unknown);
    assert_eq!(
        record_severity(&record(json!({}))).level,
        SeverityLevel::Unknown
    );
}

#[test]
fn remediation_deadlines_follow_the_policy_and_kev_shortens_them() {
    let policy = RemediationPolicy::default();
    policy.check().unwrap();
    let seen = datetime!(2026-12-01 10:17:00 UTC);
    assert_eq!(
        policy.deadline(seen, SeverityLevel::Critical, false),
        datetime!(2026-12-08 10:17:00 UTC)
    );
    assert_eq!(
        policy.deadline(seen, SeverityLevel::Medium, false),
        seen + Duration::days(90)
    );
    // Known exploited: the KEV deadline when it is shorter, the severity's when that is.
    assert_eq!(policy.days_for(SeverityLevel::Medium, true), 14);
    assert_eq!(policy.days_for(SeverityLevel::Critical, true), 7);
    // An unknown severity waits no longer than a high one.
    assert_eq!(policy.days_for(SeverityLevel::Unknown, false), 30);
    let mut bad = policy.clone();
    bad.days.remove(&SeverityLevel::Low);
    assert!(bad.check().unwrap_err().contains("low"));
    let mut zero = policy;
    zero.known_exploited_days = 0;
    assert!(zero.check().is_err());
    assert_eq!(
        "critical".parse::<SeverityLevel>(),
        Ok(SeverityLevel::Critical)
    );
    assert!("severe".parse::<SeverityLevel>().is_err());
}

#[test]
fn article_14_deadlines_are_exact_instants() {
    let aware = datetime!(2026-12-05 10:17:42 UTC);
    let clock = CaseClock {
        aware_at: aware,
        fix_available_at: None,
    };
    assert_eq!(
        clock.due(Stage::EarlyWarning),
        Some(datetime!(2026-12-06 10:17:42 UTC))
    );
    assert_eq!(
        clock.due(Stage::Notification),
        Some(datetime!(2026-12-08 10:17:42 UTC))
    );
    // No final report is due before a corrective measure exists.
    assert_eq!(clock.due(Stage::FinalReport), None);
    let fixed = CaseClock {
        fix_available_at: Some(datetime!(2026-12-10 08:00:00 UTC)),
        ..clock
    };
    assert_eq!(
        fixed.due(Stage::FinalReport),
        Some(datetime!(2026-12-24 08:00:00 UTC))
    );
}

#[test]
fn alerts_go_out_as_a_deadline_nears_and_once_it_passes() {
    let aware = datetime!(2026-12-05 00:00:00 UTC);
    let clock = CaseClock {
        aware_at: aware,
        fix_available_at: None,
    };
    let at = |h: i64| aware + Duration::hours(h);
    assert_eq!(urgency(&clock, Stage::EarlyWarning, false, at(17)), None);
    assert_eq!(
        urgency(&clock, Stage::EarlyWarning, false, at(18)),
        Some(Urgency::Nearing)
    );
    assert_eq!(
        urgency(&clock, Stage::EarlyWarning, false, at(24)),
        Some(Urgency::Overdue)
    );
    // A submitted report silences its stage.
    assert_eq!(urgency(&clock, Stage::EarlyWarning, true, at(30)), None);
    assert_eq!(urgency(&clock, Stage::Notification, false, at(47)), None);
    assert_eq!(
        urgency(&clock, Stage::Notification, false, at(48)),
        Some(Urgency::Nearing)
    );
    assert_eq!(urgency(&clock, Stage::FinalReport, false, at(10_000)), None);
}

#[test]
fn countries_and_member_states() {
    assert!(is_country_code("DE") && is_country_code("US") && is_country_code("GR"));
    assert!(!is_country_code("XX") && !is_country_code("de") && !is_country_code("DEU"));
    assert!(!is_country_code("EL"), "EU usage, not ISO 3166-1");
    assert!(is_member_state("FR") && !is_member_state("CH") && !is_member_state("GB"));
    let line = |id: &str, country: Option<&str>| DeviceLine {
        id: id.into(),
        serial_number: format!("SN-{id}"),
        firmware_version: "1.0.0".into(),
        site: Some("plant".into()),
        country: country.map(str::to_owned),
    };
    let countries = [
        (Some("FR".to_owned()), 2),
        (Some("DE".to_owned()), 1),
        (Some("CH".to_owned()), 1),
        (None, 1),
    ];
    let e = Exposure::of(
        5,
        vec!["1.0.0".into()],
        &countries,
        vec![
            line("a", Some("FR")),
            line("b", Some("DE")),
            line("c", Some("FR")),
            line("d", Some("CH")),
            line("e", None),
        ],
    );
    assert_eq!(e.member_states, ["DE", "FR"]);
    assert_eq!(e.other_countries, ["CH"]);
    assert_eq!(e.location_unknown, 1);
}

proptest! {
    #[test]
    fn deadlines_are_the_regulations_durations_after_awareness(
        secs in 0i64..4_000_000_000, fix_after in proptest::option::of(0i64..100_000_000),
    ) {
        let aware = OffsetDateTime::from_unix_timestamp(secs).unwrap();
        let clock = CaseClock {
            aware_at: aware,
            fix_available_at: fix_after.map(|f| aware + Duration::seconds(f)),
        };
        prop_assert_eq!(clock.due(Stage::EarlyWarning).unwrap() - aware, Duration::hours(24));
        prop_assert_eq!(clock.due(Stage::Notification).unwrap() - aware, Duration::hours(72));
        match clock.fix_available_at {
            Some(f) => prop_assert_eq!(clock.due(Stage::FinalReport).unwrap() - f, Duration::days(14)),
            None => prop_assert!(clock.due(Stage::FinalReport).is_none()),
        }
        // Urgency never goes backwards as time passes.
        let mut last = None;
        for h in 0..100 {
            let u = urgency(&clock, Stage::Notification, false, aware + Duration::hours(h));
            prop_assert!(u >= last);
            last = u;
        }
    }

    #[test]
    fn any_vector_string_is_scored_or_refused_without_panicking(s in "CVSS:[34]\\.[01]/[A-Z:/]{0,80}") {
        let r = record(json!({"severity": [{"type": "CVSS_V3", "score": s}]}));
        let sev = record_severity(&r);
        prop_assert!(sev.score.is_none_or(|x| (0.0..=10.0).contains(&x)));
    }
}
