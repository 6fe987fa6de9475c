use super::*;
use crate::metric::Datapoint;
use proptest::prelude::*;

const S: i64 = 1000;

fn detector(behaviours: &str) -> Detector {
    let text = format!(r#"{{"profiles": [{{"name": "p", "behaviours": [{behaviours}]}}]}}"#);
    Detector::new(ProfileSet::parse(&text).unwrap())
}

fn n(device: &str, metric: Metric, at_ms: i64, v: f64) -> Datapoint {
    Datapoint::number(device, metric, at_ms, v)
}

fn names(device: &str, metric: Metric, at_ms: i64, v: &[&str]) -> Datapoint {
    Datapoint::set(
        device,
        metric,
        at_ms,
        v.iter().map(|s| (*s).to_owned()).collect(),
    )
}

const FLOOD: &str = r#"{"name": "flood", "metric": "messages_sent", "window_seconds": 10,
    "criterion": {"static": {"above": 200}}, "datapoints_to_clear": 3, "mitigation": "quarantine"}"#;

#[test]
fn a_flood_raises_within_its_window_and_clears_after_quiet_windows() {
    let mut d = detector(FLOOD);
    let mut raised = None;
    // 100 messages a second from t = 1 s: the sum passes 200 on the third datapoint.
    for i in 0..5 {
        let events = d.ingest(
            &n("dev", Metric::MessagesSent, S + i * S, 100.0),
            "prod",
            "site",
        );
        if let Some(e) = events.first() {
            assert_eq!(e.transition, Transition::Raised);
            raised = Some(e.clone());
        }
    }
    let e = raised.expect("raised");
    assert_eq!(
        e.at_ms,
        3 * S,
        "raised on the datapoint that crossed the bound"
    );
    assert_eq!(e.explanation.value, 300.0);
    assert_eq!(e.explanation.threshold, Some(200.0));
    assert_eq!(e.mitigation, Mitigation::Quarantine);
    assert!(
        e.explanation
            .summary
            .contains("messages_sent sum over 10 s is 300, above the bound 200"),
        "{}",
        e.explanation.summary
    );
    // Silence: windows [10, 20), [20, 30) and [30, 40) count zero; the third clears.
    assert!(d.tick(29 * S).is_empty());
    assert!(d.tick(35 * S).is_empty());
    let cleared = d.tick(40 * S);
    assert_eq!(cleared.len(), 1);
    assert_eq!(cleared[0].transition, Transition::Cleared);
    assert_eq!(cleared[0].at_ms, 40 * S);
    assert_eq!(d.stats().raised, 1);
}

#[test]
fn datapoints_to_alarm_counts_consecutive_abnormal_windows() {
    let mut d = detector(
        r#"{"name": "b", "metric": "authorization_failures", "window_seconds": 10,
        "criterion": {"static": {"above": 5}}, "datapoints_to_alarm": 2}"#,
    );
    let dev =
        |d: &mut Detector, at, v| d.ingest(&n("x", Metric::AuthorizationFailures, at, v), "p", "s");
    assert!(
        dev(&mut d, 0, 6.0).is_empty(),
        "one abnormal window is not yet an alarm"
    );
    assert!(
        dev(&mut d, 10 * S, 1.0).is_empty(),
        "a normal window breaks the streak"
    );
    assert!(dev(&mut d, 20 * S, 6.0).is_empty());
    let raised = dev(&mut d, 30 * S, 6.0);
    assert_eq!(raised.len(), 1, "the second abnormal window in a row");
}

#[test]
fn a_baseline_is_learnt_from_normal_windows_only() {
    let mut d = detector(
        r#"{"name": "b", "metric": "bytes_out", "window_seconds": 60,
        "criterion": {"baseline": {"mads": 6, "samples": 30, "min_samples": 10, "min_deviation": 10}}}"#,
    );
    for w in 0..20 {
        let v = 1000.0 + f64::from((w % 5) as u8) * 10.0;
        assert!(
            d.ingest(&n("x", Metric::BytesOut, w * 60 * S, v), "p", "s")
                .is_empty()
        );
    }
    let events = d.ingest(&n("x", Metric::BytesOut, 20 * 60 * S, 5000.0), "p", "s");
    assert_eq!(events.len(), 1);
    let e = &events[0].explanation;
    let baseline = e.baseline.expect("baseline explained");
    assert_eq!(baseline.median, 1020.0);
    assert_eq!(baseline.samples, 20);
    assert!(
        e.summary.contains("the device's median 1020"),
        "{}",
        e.summary
    );
    // The anomaly stays anomalous: it was not learnt.
    for w in 21..30 {
        d.ingest(&n("x", Metric::BytesOut, w * 60 * S, 5000.0), "p", "s");
    }
    assert_eq!(d.stats().cleared, 0);
}

#[test]
fn the_cohort_threshold_singles_out_the_odd_device() {
    let mut d = detector(
        r#"{"name": "c", "metric": "bytes_out", "window_seconds": 60,
        "criterion": {"cohort": {"percentile": 90, "factor": 3, "min_samples": 20}}}"#,
    );
    let mut events = Vec::new();
    for w in 0..4 {
        for dev in 0..30 {
            let v = 100.0 + f64::from(dev) * 2.0;
            events.extend(d.ingest(
                &n(&format!("d{dev}"), Metric::BytesOut, w * 60 * S, v),
                "p",
                "s",
            ));
        }
        events.extend(d.ingest(
            &n("odd", Metric::BytesOut, w * 60 * S + 1, 5000.0),
            "p",
            "s",
        ));
    }
    assert!(!events.is_empty());
    assert!(events.iter().all(|e| e.device == "odd"), "{events:?}");
    let cohort = events[0]
        .explanation
        .cohort
        .clone()
        .expect("cohort explained");
    assert_eq!(cohort.cohort, "p");
    assert!(cohort.samples >= 20);
    // Another product is another cohort, with its own (not yet sufficient) history.
    assert!(
        d.ingest(&n("other", Metric::BytesOut, 5 * 60 * S, 5000.0), "q", "s")
            .is_empty()
    );
}

#[test]
fn new_listening_ports_after_learning_raise_until_accepted() {
    let mut d = detector(
        r#"{"name": "ports", "metric": "listening_tcp_ports", "window_seconds": 10,
        "criterion": {"new_value": {"learn_datapoints": 3}}, "datapoints_to_clear": 2}"#,
    );
    for i in 0..3 {
        assert!(
            d.ingest(
                &names("x", Metric::ListeningTcpPorts, i * 10 * S, &["22", "443"]),
                "p",
                "s"
            )
            .is_empty()
        );
    }
    assert!(
        d.ingest(
            &names("x", Metric::ListeningTcpPorts, 30 * S, &["22"]),
            "p",
            "s"
        )
        .is_empty()
    );
    let events = d.ingest(
        &names("x", Metric::ListeningTcpPorts, 40 * S, &["22", "4444"]),
        "p",
        "s",
    );
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].explanation.new_values, vec!["4444".to_owned()]);
    assert_eq!(events[0].explanation.known_values, Some(2));
    assert!(
        events[0]
            .explanation
            .summary
            .contains("4444 never seen while learning")
    );
    // Still open: the alarm stays, the window keeps counting abnormal.
    assert!(
        d.ingest(
            &names("x", Metric::ListeningTcpPorts, 50 * S, &["22", "4444"]),
            "p",
            "s"
        )
        .is_empty()
    );
    d.accept("x", "ports", &["4444".to_owned()]);
    let mut later = Vec::new();
    for i in 6..9 {
        later.extend(d.ingest(
            &names("x", Metric::ListeningTcpPorts, i * 10 * S, &["22", "4444"]),
            "p",
            "s",
        ));
    }
    assert_eq!(later.len(), 1, "{later:?}");
    assert_eq!(later[0].transition, Transition::Cleared);
}

#[test]
fn source_addresses_compare_by_region() {
    let mut d = detector(
        r#"{"name": "region", "metric": "source_ip", "window_seconds": 10,
        "criterion": {"new_value": {"learn_datapoints": 2, "prefix_v4": 16, "prefix_v6": 48}}}"#,
    );
    d.ingest(&names("x", Metric::SourceIp, 0, &["10.1.2.3"]), "p", "s");
    d.ingest(
        &names("x", Metric::SourceIp, 10 * S, &["2001:db8:1::5"]),
        "p",
        "s",
    );
    assert!(
        d.ingest(
            &names("x", Metric::SourceIp, 20 * S, &["10.1.200.9"]),
            "p",
            "s"
        )
        .is_empty()
    );
    assert!(
        d.ingest(
            &names("x", Metric::SourceIp, 30 * S, &["2001:db8:1:ff::1"]),
            "p",
            "s"
        )
        .is_empty()
    );
    let events = d.ingest(
        &names("x", Metric::SourceIp, 40 * S, &["192.168.7.7"]),
        "p",
        "s",
    );
    assert_eq!(
        events[0].explanation.new_values,
        vec!["192.168.0.0/16".to_owned()]
    );
}

#[test]
fn late_datapoints_are_counted_and_not_applied() {
    let mut d = detector(FLOOD);
    d.ingest(&n("x", Metric::MessagesSent, 25 * S, 1.0), "p", "s");
    assert!(
        d.ingest(&n("x", Metric::MessagesSent, 5 * S, 1000.0), "p", "s")
            .is_empty()
    );
    assert_eq!(d.stats().late, 1);
}

#[test]
fn suppressed_behaviours_raise_marked_alarms() {
    let mut d = detector(
        r#"{"name": "b", "metric": "disconnects", "window_seconds": 10,
        "criterion": {"static": {"above": 1}}, "suppress": true, "mitigation": "revoke"}"#,
    );
    let events = d.ingest(&n("x", Metric::Disconnects, 0, 5.0), "p", "s");
    assert!(events[0].suppressed);
}

#[test]
fn a_device_that_changes_product_starts_over_under_the_new_profile() {
    let text = r#"{"profiles": [
        {"name": "strict", "products": ["cam"], "behaviours": [{"name": "b", "metric": "disconnects", "window_seconds": 10, "criterion": {"static": {"above": 1}}}]},
        {"name": "lax", "behaviours": [{"name": "b", "metric": "disconnects", "window_seconds": 10, "criterion": {"static": {"above": 100}}}]}
    ]}"#;
    let mut d = Detector::new(ProfileSet::parse(text).unwrap());
    assert!(
        d.ingest(&n("x", Metric::Disconnects, 0, 5.0), "lamp", "s")
            .is_empty()
    );
    let events = d.ingest(&n("x", Metric::Disconnects, 0, 5.0), "cam", "s");
    assert_eq!(events[0].profile, "strict");
}

/// A device within normal ranges: a few messages a second, a steady address, ports and traffic.
fn well_behaved(seed: u64, device: &str, seconds: i64) -> Vec<Datapoint> {
    let mut x = seed | 1;
    let mut next = move |m: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % m
    };
    let mut out = Vec::new();
    for t in 0..seconds {
        let at = t * S + i64::try_from(next(1000)).unwrap_or(0);
        out.push(n(device, Metric::MessagesSent, at, (1 + next(4)) as f64));
        out.push(n(
            device,
            Metric::MessageBytes,
            at,
            (100 + next(400)) as f64,
        ));
        if t % 10 == 0 {
            let r = crate::MetricsReport {
                bytes_out: 20_000 + next(5000),
                bytes_in: 5_000 + next(1000),
                packets_out: 40 + next(10),
                packets_in: 30 + next(10),
                listening_tcp_ports: vec![22, 8443],
                listening_udp_ports: vec![5353],
                established_tcp_connections: 2,
                destination_ips: vec!["10.0.0.5".parse().unwrap()],
                destination_endpoints: vec!["10.0.0.5:8883".parse().unwrap()],
            };
            out.extend(r.datapoints(device, at));
            out.push(names(device, Metric::SourceIp, at, &["10.20.3.4"]));
        }
        if t % 60 == 0 {
            out.push(n(device, Metric::ConnectionAttempts, at, 1.0));
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    /// Sigil's default profiles raise nothing on a fleet that behaves.
    #[test]
    fn the_default_profiles_are_quiet_on_a_well_behaved_fleet(seed in any::<u64>()) {
        let mut d = Detector::new(ProfileSet::default_set().unwrap());
        let mut points: Vec<Datapoint> = (0..25)
            .flat_map(|i| well_behaved(seed.wrapping_add(i), &format!("dev{i}"), 900))
            .collect();
        points.sort_by_key(|p| p.at_ms);
        let mut events = Vec::new();
        for (i, p) in points.iter().enumerate() {
            events.extend(d.ingest(p, "prod", "site"));
            if i % 500 == 0 {
                events.extend(d.tick(p.at_ms));
            }
        }
        prop_assert!(events.is_empty(), "{:?}", events.first());
    }

    /// Per device and behaviour, alarms alternate: raised, cleared, raised...
    #[test]
    fn transitions_alternate(values in prop::collection::vec((0u8..40, 0.0f64..500.0), 1..200)) {
        let mut d = detector(FLOOD);
        let mut last = None;
        let mut t = 0i64;
        for (gap, v) in values {
            t += i64::from(gap) * S;
            for e in d.ingest(&n("x", Metric::MessagesSent, t, v), "p", "s").into_iter().chain(d.tick(t)) {
                prop_assert_ne!(Some(e.transition), last);
                last = Some(e.transition);
            }
        }
    }
}
