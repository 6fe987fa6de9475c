//! The README's monitoring commands against the real server (SQLite and PostgreSQL): security
//! profiles read, edited and applied (a bad document refused whole, naming its mistake), a
//! device's own report of a port scan raising an explained alarm that quarantines it, the
//! quarantine read by the access policy (the EMQX hooks give it its quarantine topic only),
//! decisions on the alarm, release, and every change in the audit log.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::{
    Db, TestServer, check, enrolled_device, failing, json as json_out, metrics_report as report,
    ok, requirement, sigil,
};

fn refused(out: std::process::Output, words: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains(words),
        "{words:?} not in: {err}"
    );
}

async fn decide(s: &TestServer, device: &str, action: &str, topic: &str) -> String {
    let (st, d) = s
        .post(
            "/api/v1/broker/emqx/authz",
            json!({"username": device, "action": action, "topic": topic}),
        )
        .await;
    assert_eq!(st, 200, "{d}");
    d["result"].as_str().unwrap().to_owned()
}

/// How many times `action` succeeded, by the audit log (refusals are logged too).
async fn audited(s: &TestServer, action: &str) -> usize {
    let (_, page) = s
        .get(&format!("/api/v1/audit/entries?action={action}&limit=50"))
        .await;
    let items = page["items"].as_array().cloned().unwrap_or_default();
    items.iter().filter(|e| e["outcome"] == "success").count()
}

/// A check of the CRA report's requirement I.2.l (monitoring relevant internal activity).
async fn cra_check(s: &TestServer, id: &str) -> Value {
    let (_, cra) = s.get("/api/v1/compliance/eu-cra").await;
    check(requirement(&cra, "I.2.l"), id).clone()
}

async fn monitoring_commands_from_the_readme(db: Db) {
    let Some(s) = TestServer::start(db).await else {
        return;
    };
    let product = s.create_product("Camera").await;
    let (device, _) = enrolled_device(&s, &product, "cam-1").await;
    let (silent, _) = enrolled_device(&s, &product, "cam-2").await;
    let status = json_out(sigil(&s, &["monitor", "status", "--json"]));
    assert_eq!(
        (
            status["transport"].as_str(),
            status["profiles_version"].as_i64()
        ),
        (Some("in-process"), Some(0))
    );

    // Profiles: out to a file, edited, applied; a bad one is refused whole.
    ok(sigil(
        &s,
        &["monitor", "profiles", "--out", "profiles.json"],
    ));
    let path = s.dir.path().join("profiles.json");
    let mut document: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let flood = document["profiles"][0]["behaviours"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|b| b["name"] == "publish-flood")
        .unwrap();
    flood["criterion"]["static"]["above"] = json!(50);
    std::fs::write(&path, document.to_string()).unwrap();
    let applied = ok(sigil(
        &s,
        &[
            "monitor",
            "apply",
            "profiles.json",
            "--comment",
            "tighter flood bound for meters",
        ],
    ));
    assert!(applied.contains("version 1 in force"), "{applied}");
    flood_window_zero(&s);
    let status = json_out(sigil(&s, &["monitor", "status", "--json"]));
    assert_eq!(
        status["profiles_version"], 1,
        "a refused document changes nothing"
    );

    // The device reports connections opening to 60 ports of one neighbour.
    let endpoints: Vec<String> = (1..=60).map(|p| format!("10.0.0.9:{p}")).collect();
    let answer = report(
        &s,
        "cam-1",
        &json!({"listening_tcp_ports": [22], "destination_endpoints": endpoints}),
    );
    assert!(answer.ends_with(" 202"), "{answer}");
    let deadline = Instant::now() + Duration::from_secs(15);
    let alarm = loop {
        let list = json_out(sigil(&s, &["alarm", "list", "--active", "--json"]));
        if let Some(a) = list["items"].as_array().and_then(|a| a.first()) {
            break a.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no alarm: {}",
            ok(sigil(&s, &["monitor", "status", "--json"]))
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        (alarm["device_id"].as_str(), alarm["behaviour"].as_str()),
        (Some(device.as_str()), Some("port-scan"))
    );
    let id = alarm["id"].as_str().unwrap();
    // Compliance: detection runs; the critical alarm is open without a decision; the device's
    // metrics are fresh (recorded within seconds), cam-2's never came.
    assert_eq!(
        cra_check(&s, "org.detection-running").await["status"],
        "pass"
    );
    let open = cra_check(&s, "org.alarms-decided").await;
    assert_eq!(open["status"], "fail", "{open}");
    assert!(
        open["reason"].as_str().unwrap().starts_with(&format!(
            "1 critical alarm(s) open without a decision; the oldest: port-scan on device {device}"
        )),
        "{open}"
    );
    assert_eq!(
        open["failures"][0]["evidence"][0],
        json!({"type": "alarm", "ref": id})
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    while json_out(sigil(&s, &["monitor", "device", &device, "--json"]))["last_report_at"].is_null()
    {
        assert!(
            Instant::now() < deadline,
            "the report time was never recorded"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let fresh = cra_check(&s, "device.metrics-fresh").await;
    assert_eq!(
        failing(&fresh),
        vec![(
            silent.clone(),
            "the device has never reported behaviour metrics".to_owned()
        )],
        "{fresh}"
    );
    let (_, mine) = s
        .get(&format!("/api/v1/compliance/eu-cra/devices/{device}"))
        .await;
    let mine = check(requirement(&mine, "I.2.l"), "device.metrics-fresh");
    assert_eq!(mine["status"], "pass", "{mine}");
    assert_eq!(audited(&s, "monitoring.metrics_resumed").await, 1);

    let shown = ok(sigil(&s, &["alarm", "show", id]));
    assert!(
        shown.contains("destination_endpoints distinct over 60 s is 60, above the bound 50"),
        "{shown}"
    );

    // Quarantined: the policy leaves it its connection and quarantine topic only.
    let state = json_out(sigil(&s, &["monitor", "device", &device, "--json"]));
    assert!(state["quarantined_since"].is_string(), "{state}");
    assert_eq!(
        decide(
            &s,
            &device,
            "subscribe",
            &format!("devices/{device}/commands/#")
        )
        .await,
        "deny"
    );
    assert_eq!(
        decide(
            &s,
            &device,
            "publish",
            &format!("devices/{device}/telemetry/t")
        )
        .await,
        "deny"
    );
    assert_eq!(
        decide(
            &s,
            &device,
            "subscribe",
            &format!("devices/{device}/quarantine/#")
        )
        .await,
        "allow"
    );
    let again = json_out(sigil(
        &s,
        &[
            "monitor",
            "quarantine",
            &device,
            "--reason",
            "investigating",
            "--json",
        ],
    ));
    assert_eq!(again["changed"], false);

    // Decisions: acknowledged once.
    let decided = json_out(sigil(
        &s,
        &[
            "alarm",
            "decide",
            id,
            "--decision",
            "acknowledged",
            "--note",
            "looking",
            "--json",
        ],
    ));
    assert_eq!(decided["state"], "acknowledged");
    assert_eq!(cra_check(&s, "org.alarms-decided").await["status"], "pass");
    refused(
        sigil(&s, &["alarm", "decide", id, "--decision", "acknowledged"]),
        "already acknowledged",
    );
    refused(
        sigil(&s, &["alarm", "decide", id, "--decision", "maybe"]),
        "acknowledged or false-positive",
    );
    // A false positive teaches the detector: operators may not judge one (and people who may,
    // only with the second factor: the policy suite's cases).
    for (user, role) in [("oscar", "operator")] {
        common::operators::create_operator(&s, user, role).await;
        let session = common::operators::login(
            &s,
            json!({"username": user, "password": common::operators::password(user)}),
        )
        .await
        .unwrap();
        let (st, refused) = session
            .call(
                &s,
                "POST",
                &format!("/api/v1/alarms/{id}/decision"),
                Some(json!({"decision": "false_positive"})),
            )
            .await;
        assert_eq!(
            (st.as_u16(), refused["code"].as_str()),
            (403, Some("false-positive-needs-right")),
            "{user} ({role}): {refused}"
        );
    }
    // Judged a false positive after all (the README's command); then final.
    let judged = json_out(sigil(
        &s,
        &[
            "alarm",
            "decide",
            id,
            "--decision",
            "false-positive",
            "--note",
            "new UI port in 1.4",
            "--json",
        ],
    ));
    assert_eq!(judged["state"], "false_positive", "{judged}");
    refused(
        sigil(&s, &["alarm", "decide", id, "--decision", "acknowledged"]),
        "judged a false positive",
    );

    // Released: its grants come back; a second release is refused.
    ok(sigil(
        &s,
        &["monitor", "release", &device, "--reason", "reflashed"],
    ));
    assert_eq!(
        decide(
            &s,
            &device,
            "publish",
            &format!("devices/{device}/telemetry/t")
        )
        .await,
        "allow"
    );
    refused(
        sigil(&s, &["monitor", "release", &device, "--reason", "again"]),
        "is not quarantined",
    );

    for action in [
        "monitoring.profiles_applied",
        "alarm.raised",
        "device.quarantined",
        "alarm.acknowledged",
        "alarm.false_positive",
        "device.released",
    ] {
        assert_eq!(audited(&s, action).await, 1, "{action}");
    }
    s.shutdown().await;
}

/// A document with a window of 0 seconds: refused, naming the profile, behaviour and field.
fn flood_window_zero(s: &TestServer) {
    let bad = json!({"profiles": [{"name": "p", "behaviours": [
        {"name": "flood", "metric": "messages_sent", "window_seconds": 0, "criterion": {"static": {"above": 1}}}
    ]}]});
    std::fs::write(s.dir.path().join("bad.json"), bad.to_string()).unwrap();
    refused(
        sigil(s, &["monitor", "apply", "bad.json"]),
        r#"profile "p": behaviour "flood": window_seconds: 1 to 86400"#,
    );
}

/// The detector's record of report times, in the store: across statement chunks (1200
/// devices), never back, written only when it moves on a minute, a resume audited only after a
/// gap the compliance engine may have judged stale, unknown devices ignored, and two detectors
/// flushing the same devices at once neither deadlock nor lose the later time.
async fn report_times_are_recorded_once_and_forward(db: Db) {
    let Some(s) = TestServer::start(db).await else {
        return;
    };
    let product: sigil_domain::ProductId = s.create_product("Meter").await.parse().unwrap();
    let actor = sigil_audit::Actor::system("detector");
    let now = time::OffsetDateTime::now_utc();
    let new = (0..1200)
        .map(|i| sigil_domain::NewDevice {
            product_id: product,
            serial_number: format!("m-{i:04}"),
            hardware_id: None,
            owner: None,
            site: None,
            tags: vec![],
            firmware_version: None,
        })
        .collect();
    let devices: Vec<sigil_domain::DeviceId> = s
        .store()
        .create_devices(&actor, new, now)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    let store = s.store();
    let t0 = now.unix_timestamp();
    let at = |t: i64| -> Vec<(sigil_domain::DeviceId, i64)> {
        devices.iter().map(|d| (*d, t)).collect()
    };
    let recorded = |d: sigil_domain::DeviceId| async move {
        store
            .metrics_reported_at(d)
            .await
            .unwrap()
            .map(|t| t.unix_timestamp())
    };
    const GAP: i64 = 780;
    // First reports: every device announced once, whatever the chunking.
    let mut first = at(t0);
    first.push((sigil_domain::DeviceId::generate(), t0));
    let resumed = store
        .record_metrics_reports(&actor, &first, GAP, now)
        .await
        .unwrap();
    assert_eq!(resumed.len(), 1200);
    // Less than a minute on: not written. Ten minutes on: written, nothing announced.
    for (t, announced, expected) in [
        (t0 + 30, 0, t0),
        (t0 + 600, 0, t0 + 600),
        (t0 + 100, 0, t0 + 600),
        (t0 + 600 + GAP + 1, 1200, t0 + 600 + GAP + 1),
    ] {
        let resumed = store
            .record_metrics_reports(&actor, &at(t), GAP, now)
            .await
            .unwrap();
        assert_eq!(resumed.len(), announced, "at t0 + {}", t - t0);
        assert_eq!(recorded(devices[1100]).await, Some(expected));
    }
    // Two flushes of the same devices at once, in opposite orders.
    let later = t0 + 5000;
    let mut reversed = at(later);
    reversed.reverse();
    let earlier = at(later - 100);
    let (a, b) = tokio::join!(
        store.record_metrics_reports(&actor, &earlier, GAP, now),
        store.record_metrics_reports(&actor, &reversed, GAP, now),
    );
    a.unwrap();
    b.unwrap();
    assert_eq!(recorded(devices[0]).await, Some(later));
    assert_eq!(recorded(devices[1199]).await, Some(later));
    s.shutdown().await;
}

sigil_testkit::both_backends!(monitoring_commands_from_the_readme);
sigil_testkit::both_backends!(report_times_are_recorded_once_and_forward);
