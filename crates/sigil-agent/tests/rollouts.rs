//! Staged rollouts against a real server, with real agents following their assignments:
//! groups and approval, pause, resume and stop; rollbacks that must be declared and need the
//! right (and MFA for people); devices that stay silent time out and halt the rollout;
//! maintenance windows; devices that enrol while a rollout runs join it; a device that falls
//! out of compliance after installing halts it; reports that do not follow are refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use sigil_agent::update::{Followed, follow_assignment};
use sigil_testkit::{Db, TestServer};

mod support;

use support::{Device, enrol};

fn fast(c: &mut sigil_server::ServerConfig) {
    c.rollout_tick = Duration::from_millis(100);
}

/// Release `version` with content of its own.
async fn release(s: &TestServer, product: &str, version: &str) {
    support::release(
        s,
        product,
        version,
        format!("firmware {version}").as_bytes(),
    )
    .await;
}

async fn fleet(s: &TestServer, n: usize) -> (String, Vec<Device>) {
    let product = s.admin().create_product("Meter").await.unwrap();
    release(s, &product, "1.0.0").await;
    let mut devices = Vec::new();
    for i in 0..n {
        devices.push(enrol(s, &product, &format!("SN-{i}")).await);
    }
    (product, devices)
}

async fn follow(d: &Device) -> Followed {
    follow_assignment(&d.state, &d.install).await.unwrap()
}

fn installed(f: &Followed) -> Option<&str> {
    match f {
        Followed::Installed(i) => i.version.as_deref(),
        _ => None,
    }
}

/// Poll the rollout until `done` holds (10 s at most).
async fn wait_for(s: &TestServer, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    for _ in 0..100 {
        let (_, r) = s.get(&format!("/api/v1/rollouts/{id}")).await;
        if done(&r) {
            return r;
        }
        last = r;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("rollout {id} never got there: {last}");
}

fn assigned(r: &Value) -> u64 {
    r["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["assigned"].as_u64().unwrap())
        .sum()
}

async fn act(s: &TestServer, id: &str, action: &str) -> (reqwest::StatusCode, Value) {
    s.post(
        &format!("/api/v1/rollouts/{id}/actions"),
        json!({"action": action, "reason": "test"}),
    )
    .await
}

async fn audit_actions(s: &TestServer, prefix: &str) -> Vec<Value> {
    let (_, e) = s
        .get(&format!("/api/v1/audit/entries?action={prefix}&limit=200"))
        .await;
    e["items"].as_array().unwrap().clone()
}

async fn groups_wait_for_approval_and_operators_pause_resume_and_stop(db: Db) {
    let Some(s) = TestServer::start_with(db, fast).await else {
        return;
    };
    let (product, devices) = fleet(&s, 4).await;
    // Nothing is assigned yet.
    assert!(matches!(follow(&devices[0]).await, Followed::Nothing));

    let (st, r) = s
        .post(
            &format!("/api/v1/products/{product}/rollouts"),
            json!({"release": "1.0.0", "groups": ["50%", "100%"], "success_threshold": "100%",
                   "error_threshold": "50%", "min_sample": 1, "approval": true}),
        )
        .await;
    assert_eq!(st, 201, "{r}");
    let id = r["id"].as_str().unwrap().to_owned();
    assert_eq!(
        (r["state"].as_str(), r["devices"].as_u64()),
        (Some("running"), Some(4))
    );
    assert_eq!(assigned(&r), 2, "group 1 is half the devices: {r}");

    let mut outcomes = Vec::new();
    for d in &devices {
        outcomes.push(installed(&follow(d).await).map(str::to_owned));
    }
    assert_eq!(outcomes.iter().flatten().count(), 2, "{outcomes:?}");
    let r = wait_for(&s, &id, |r| r["state"] == "awaiting-approval").await;
    assert!(
        r["reason"]
            .as_str()
            .unwrap()
            .starts_with("success threshold: 2 of 2 devices installed"),
        "{r}"
    );
    // Waiting for approval assigns no one else.
    let waiting: Vec<&Device> = devices
        .iter()
        .zip(&outcomes)
        .filter(|(_, o)| o.is_none())
        .map(|(d, _)| d)
        .collect();
    assert!(matches!(follow(waiting[0]).await, Followed::Nothing));

    let (st, r) = act(&s, &id, "approve").await;
    assert_eq!(
        (st.as_u16(), r["current_group"].as_u64()),
        (200, Some(2)),
        "{r}"
    );
    assert_eq!(assigned(&r), 4);
    // Paused: assigned devices are not told to start.
    let (st, r) = act(&s, &id, "pause").await;
    assert_eq!(
        (st.as_u16(), r["state"].as_str()),
        (200, Some("paused")),
        "{r}"
    );
    assert!(r["reason"].as_str().unwrap().starts_with("paused by "));
    assert!(matches!(follow(waiting[0]).await, Followed::Nothing));
    let (st, _) = act(&s, &id, "pause").await;
    assert_eq!(st, 409);
    let (st, _) = act(&s, &id, "resume").await;
    assert_eq!(st, 200);
    for d in &waiting {
        assert_eq!(installed(&follow(d).await), Some("1.0.0"));
    }
    let r = wait_for(&s, &id, |r| r["state"] == "completed").await;
    assert!(
        r["reason"]
            .as_str()
            .unwrap()
            .contains("4 of 4 devices installed"),
        "{r}"
    );
    let (st, e) = act(&s, &id, "stop").await;
    assert_eq!(st, 409, "a completed rollout cannot be stopped: {e}");

    // Every transition is in the audit log, with its reason; every device's report too, and
    // the inventory records the version each device now runs.
    let transitions: Vec<String> = audit_actions(&s, "rollout.")
        .await
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect();
    for a in [
        "rollout.created",
        "rollout.awaiting_approval",
        "rollout.approved",
        "rollout.paused",
        "rollout.resumed",
        "rollout.completed",
    ] {
        assert!(
            transitions.iter().any(|t| t == a),
            "{a} missing: {transitions:?}"
        );
    }
    let reports = audit_actions(&s, "update.reported").await;
    let installed_reports = reports
        .iter()
        .filter(|e| e["details"]["status"] == "installed")
        .count();
    assert_eq!(installed_reports, 4);
    for d in &devices {
        let (_, dev) = s.get(&format!("/api/v1/devices/{}", d.id)).await;
        assert_eq!(dev["firmware_version"], "1.0.0");
    }

    // A second rollout may start once the first is over; two at once may not.
    release(&s, &product, "1.1.0").await;
    let body = json!({"release": "1.1.0", "groups": ["100%"], "success_threshold": "100%",
                      "error_threshold": "50%"});
    let (st, r) = s
        .post(
            &format!("/api/v1/products/{product}/rollouts"),
            body.clone(),
        )
        .await;
    assert_eq!(st, 201, "{r}");
    let (st, e) = s
        .post(&format!("/api/v1/products/{product}/rollouts"), body)
        .await;
    assert_eq!(
        (st.as_u16(), e["code"].as_str()),
        (409, Some("conflict")),
        "{e}"
    );
    let (st, r) = act(&s, r["id"].as_str().unwrap(), "stop").await;
    assert_eq!((st.as_u16(), r["state"].as_str()), (200, Some("stopped")));
    assert!(matches!(follow(&devices[0]).await, Followed::Nothing));

    // A rollout completes at its success threshold; devices it assigned still get the update.
    release(&s, &product, "1.2.0").await;
    let (st, r) = s
        .post(
            &format!("/api/v1/products/{product}/rollouts"),
            json!({"release": "1.2.0", "groups": ["100%"], "success_threshold": "50%",
                   "error_threshold": "50%"}),
        )
        .await;
    assert_eq!(st, 201, "{r}");
    let id = r["id"].as_str().unwrap().to_owned();
    for d in &devices[..2] {
        assert_eq!(installed(&follow(d).await), Some("1.2.0"));
    }
    wait_for(&s, &id, |r| r["state"] == "completed").await;
    for d in &devices[2..] {
        assert_eq!(installed(&follow(d).await), Some("1.2.0"));
    }
    let (_, r) = s.get(&format!("/api/v1/rollouts/{id}")).await;
    assert_eq!(r["groups"][0]["installed"], 4, "{r}");
}
sigil_testkit::both_backends!(groups_wait_for_approval_and_operators_pause_resume_and_stop);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollbacks_must_be_declared_and_need_their_own_right() {
    let s = TestServer::start_with(Db::Sqlite, fast).await.unwrap();
    let (product, devices) = fleet(&s, 1).await;
    release(&s, &product, "1.1.0").await;
    let d = &devices[0];
    let rollout = |release: &str, rollback: bool| {
        json!({"release": release, "groups": ["100%"], "success_threshold": "100%",
               "error_threshold": "50%", "rollback": rollback})
    };
    let path = format!("/api/v1/products/{product}/rollouts");
    let (st, r) = s.post(&path, rollout("1.1.0", false)).await;
    assert_eq!(st, 201, "{r}");
    assert_eq!(installed(&follow(d).await), Some("1.1.0"));
    wait_for(&s, r["id"].as_str().unwrap(), |r| r["state"] == "completed").await;

    // Shipping 1.0.0 now is a downgrade: refused unless declared a rollback, and a rollback
    // of the newest release is no rollback.
    let (st, e) = s.post(&path, rollout("1.0.0", false)).await;
    assert_eq!(
        (st.as_u16(), e["code"].as_str()),
        (409, Some("downgrade")),
        "{e}"
    );
    let (st, e) = s.post(&path, rollout("1.1.0", true)).await;
    assert_eq!(
        (st.as_u16(), e["code"].as_str()),
        (422, Some("not-a-rollback")),
        "{e}"
    );

    // A token that may manage rollouts may not roll back; a person needs a second factor.
    let (_, t) = s
        .post(
            "/api/v1/tokens",
            json!({"name": "ci", "role": "operator", "scopes": ["inventory"], "expires_in_seconds": 3600}),
        )
        .await;
    let r = s
        .http
        .post(format!("{}{path}", s.api))
        .bearer_auth(t["token"].as_str().unwrap())
        .json(&rollout("1.0.0", true))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["code"], "rollback-needs-right", "{e}");
    for (mfa, decision) in [(false, "deny"), (true, "allow")] {
        let (_, d) = s
            .post(
                "/api/v1/policy/explain",
                json!({"principal": {"operator": {"id": "bob", "roles": ["security-officer"]}},
                       "action": "rollout.rollback", "resource": {"kind": "rollout"},
                       "context": {"mfa": mfa, "source_ip": "127.0.0.1"}}),
            )
            .await;
        assert_eq!(d["decision"], decision, "{d}");
    }

    // Declared, by the administrator: the device installs the older release.
    let (st, r) = s.post(&path, rollout("1.0.0", true)).await;
    assert_eq!(st, 201, "{r}");
    assert_eq!(r["rollback"], true);
    // The token may pause the rollback, not take it further.
    let act_as = |action: &str| {
        s.http
            .post(format!(
                "{}/api/v1/rollouts/{}/actions",
                s.api,
                r["id"].as_str().unwrap()
            ))
            .bearer_auth(t["token"].as_str().unwrap())
            .json(&json!({"action": action}))
            .send()
    };
    assert_eq!(act_as("pause").await.unwrap().status(), 200);
    let refused = act_as("resume").await.unwrap();
    assert_eq!(refused.status(), 403);
    assert_eq!(
        refused.json::<Value>().await.unwrap()["code"],
        "rollback-needs-right"
    );
    assert_eq!(act(&s, r["id"].as_str().unwrap(), "resume").await.0, 200);
    assert_eq!(installed(&follow(d).await), Some("1.0.0"));

    // Plans that cannot work are refused, and change nothing.
    for (body, code) in [
        (
            json!({"release": "1.0.0", "groups": ["50%", "40%"], "success_threshold": "95%", "error_threshold": "5%"}),
            "invalid-plan",
        ),
        (
            json!({"release": "1.0.0", "groups": ["50%"], "success_threshold": "95%", "error_threshold": "5%"}),
            "invalid-plan",
        ),
        (
            json!({"release": "1.0.0", "groups": ["100%"], "success_threshold": "101%", "error_threshold": "5%"}),
            "invalid-field",
        ),
        (
            json!({"release": "9.9.9", "groups": ["100%"], "success_threshold": "95%", "error_threshold": "5%"}),
            "unknown-release",
        ),
        (
            json!({"release": "1.0.0", "groups": ["100%"], "success_threshold": "95%", "error_threshold": "5%", "window": "25:00-01:00"}),
            "invalid-window",
        ),
        (
            json!({"release": "1.0.0", "groups": ["100%"], "success_threshold": "95%", "error_threshold": "5%", "timeout_seconds": 5}),
            "invalid-timeout",
        ),
        (
            json!({"release": "1.1.0", "groups": ["100%"], "success_threshold": "95%", "error_threshold": "5%", "devices": {"site": "nowhere"}}),
            "no-devices",
        ),
        (
            json!({"release": "1.0.0", "groups": ["100%"], "success_threshold": "95%", "error_threshold": "5%", "devices": {"states": ["retired"]}}),
            "invalid-selector",
        ),
    ] {
        let before = s.count("rollouts").await;
        let (st, e) = s.post(&path, body.clone()).await;
        assert!(st.is_client_error(), "{body}: {e}");
        assert_eq!(e["code"], code, "{body}: {e}");
        assert_eq!(s.count("rollouts").await, before);
    }
}

/// A device's own mTLS client, for reports the agent would never send.
fn device_http(d: &Device) -> reqwest::Client {
    let id = d.state.current().unwrap().unwrap();
    reqwest::Client::builder()
        .tls_certs_only([
            reqwest::Certificate::from_pem(d.state.ca_pem().unwrap().as_bytes()).unwrap(),
        ])
        .identity(
            reqwest::Identity::from_pem(format!("{}\n{}", id.key_pem, id.cert_pem).as_bytes())
                .unwrap(),
        )
        .build()
        .unwrap()
}

async fn silent_devices_time_out_halt_the_rollout_and_windows_hold_assignments_back(db: Db) {
    let offset = Arc::new(AtomicI64::new(0));
    let clock: sigil_server::Clock = {
        let offset = offset.clone();
        Arc::new(move || {
            time::OffsetDateTime::now_utc() + time::Duration::seconds(offset.load(Ordering::SeqCst))
        })
    };
    let Some(s) = TestServer::start_with_clock(db, fast, clock.clone()).await else {
        return;
    };
    let (product, devices) = fleet(&s, 3).await;
    let path = format!("/api/v1/products/{product}/rollouts");
    let (st, r) = s
        .post(
            &path,
            json!({"release": "1.0.0", "groups": ["100%"], "success_threshold": "100%",
                   "error_threshold": "50%", "min_sample": 2, "timeout_seconds": 60}),
        )
        .await;
    assert_eq!(st, 201, "{r}");
    let id = r["id"].as_str().unwrap().to_owned();

    // Reports that do not follow are refused: unknown rollout, unknown status, backwards,
    // and no client certificate at all.
    let http = device_http(&devices[0]);
    let report = |body: Value| {
        let http = http.clone();
        let url = format!("{}/api/v1/device/update-reports", s.api);
        async move { http.post(url).json(&body).send().await.unwrap() }
    };
    let other = "01900000-0000-7000-8000-000000000000";
    let r = report(json!({"rollout_id": other, "status": "downloading"})).await;
    assert_eq!(r.status(), 404);
    let r = report(json!({"rollout_id": id, "status": "exploded"})).await;
    assert_eq!(r.status(), 422);
    let r = report(json!({"rollout_id": id, "status": "installed"})).await;
    assert_eq!(r.status(), 422, "installed names its version");
    let r = report(json!({"rollout_id": id, "status": "installing"})).await;
    assert_eq!(r.status(), 204);
    // A repeated or late progress step is taken and changes nothing (a retry after a lost
    // answer must not wedge the device).
    let r = report(json!({"rollout_id": id, "status": "downloading"})).await;
    assert_eq!(r.status(), 204);
    let (_, now) = s.get(&format!("/api/v1/rollouts/{id}")).await;
    assert_eq!(now["groups"][0]["in_flight"], 3);
    // A device cannot write a version of its choosing into the inventory.
    let r = report(json!({"rollout_id": id, "status": "installed", "version": "9.9.9"})).await;
    assert_eq!(r.status(), 409);
    let (_, dev) = s.get(&format!("/api/v1/devices/{}", devices[0].id)).await;
    assert_eq!(dev["firmware_version"], Value::Null);
    let r = s
        .http
        .post(format!("{}/api/v1/device/update-reports", s.api))
        .json(&json!({"rollout_id": id, "status": "downloading"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // Nobody reports an outcome: past the timeout, all three time out and the rollout halts.
    offset.store(120, Ordering::SeqCst);
    let r = wait_for(&s, &id, |r| r["state"] == "halted").await;
    assert!(
        r["reason"]
            .as_str()
            .unwrap()
            .starts_with("timeout threshold: 3 of 3 devices"),
        "{r}"
    );
    assert_eq!(r["groups"][0]["timed_out"], 3);
    assert_eq!(audit_actions(&s, "update.timed_out").await.len(), 3);
    // Retried and resumed, the devices are assigned again, install, and the rollout completes.
    assert_eq!(act(&s, &id, "retry-failed").await.0, 200);
    assert_eq!(act(&s, &id, "resume").await.0, 200);
    wait_for(&s, &id, |r| assigned(r) == 3).await;
    for d in &devices {
        assert_eq!(installed(&follow(d).await), Some("1.0.0"));
    }
    wait_for(&s, &id, |r| r["state"] == "completed").await;

    // A window that opens in two hours: nothing is assigned until the clock gets there.
    release(&s, &product, "1.1.0").await;
    let now = clock();
    let minute = |t: time::OffsetDateTime| format!("{:02}:{:02}", t.hour(), t.minute());
    let window = format!(
        "{}-{}",
        minute(now + time::Duration::hours(2)),
        minute(now + time::Duration::hours(3))
    );
    let (st, r) = s
        .post(
            &path,
            json!({"release": "1.1.0", "groups": ["100%"], "success_threshold": "100%",
                   "error_threshold": "50%", "window": window}),
        )
        .await;
    assert_eq!(st, 201, "{r}");
    let id = r["id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, r) = s.get(&format!("/api/v1/rollouts/{id}")).await;
    assert_eq!(assigned(&r), 0, "outside the window: {r}");
    offset.store(120 + 2 * 3600 + 60, Ordering::SeqCst);
    let r = wait_for(&s, &id, |r| assigned(r) == 3).await;
    assert_eq!(r["state"], "running");
}
sigil_testkit::both_backends!(
    silent_devices_time_out_halt_the_rollout_and_windows_hold_assignments_back
);

/// `--rate N/min` holds assignments back, first ones and retries alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limits_assignments_and_retries() {
    let offset = Arc::new(AtomicI64::new(0));
    let clock: sigil_server::Clock = {
        let offset = offset.clone();
        Arc::new(move || {
            time::OffsetDateTime::now_utc() + time::Duration::seconds(offset.load(Ordering::SeqCst))
        })
    };
    let s = TestServer::start_with_clock(Db::Sqlite, fast, clock)
        .await
        .unwrap();
    let (product, devices) = fleet(&s, 3).await;
    let (st, r) = s
        .post(
            &format!("/api/v1/products/{product}/rollouts"),
            json!({"release": "1.0.0", "groups": ["100%"], "success_threshold": "100%",
                   "error_threshold": "50%", "min_sample": 1, "timeout_seconds": 3600,
                   "rate_per_minute": 2}),
        )
        .await;
    assert_eq!(st, 201, "{r}");
    let id = r["id"].as_str().unwrap().to_owned();
    wait_for(&s, &id, |r| assigned(r) == 2).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, r) = s.get(&format!("/api/v1/rollouts/{id}")).await;
    assert_eq!(assigned(&r), 2, "two a minute: {r}");
    offset.store(61, Ordering::SeqCst);
    wait_for(&s, &id, |r| assigned(r) == 3).await;

    // Nobody installs: all three time out and the rollout halts; retried, they come back two
    // a minute.
    offset.store(61 + 3700, Ordering::SeqCst);
    wait_for(&s, &id, |r| r["state"] == "halted").await;
    let (st, r) = act(&s, &id, "retry-failed").await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(act(&s, &id, "resume").await.0, 200);
    wait_for(&s, &id, |r| assigned(r) == 2).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, r) = s.get(&format!("/api/v1/rollouts/{id}")).await;
    assert_eq!(assigned(&r), 2, "retries keep to the rate: {r}");
    offset.store(61 + 3700 + 61, Ordering::SeqCst);
    wait_for(&s, &id, |r| assigned(r) == 3).await;
    for d in &devices {
        assert_eq!(installed(&follow(d).await), Some("1.0.0"));
    }
    wait_for(&s, &id, |r| r["state"] == "completed").await;
    let retried = audit_actions(&s, "rollout.retried").await;
    assert_eq!(retried[0]["details"]["devices"], 3);
    assert_eq!(audit_actions(&s, "update.assigned").await.len(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_enrolling_mid_rollout_join_and_a_device_out_of_compliance_halts_it() {
    let s = TestServer::start_with(Db::Sqlite, fast).await.unwrap();
    let (product, devices) = fleet(&s, 2).await;
    let (st, r) = s
        .post(
            &format!("/api/v1/products/{product}/rollouts"),
            json!({"release": "1.0.0", "groups": ["50%", "100%"], "success_threshold": "100%",
                   "error_threshold": "50%", "approval": true}),
        )
        .await;
    assert_eq!(st, 201, "{r}");
    let id = r["id"].as_str().unwrap().to_owned();
    // A device that enrols now joins the running rollout.
    let late = enrol(&s, &product, "SN-late").await;
    let r = wait_for(&s, &id, |r| r["devices"] == 3).await;
    assert_eq!(r["state"], "running");
    let joined = audit_actions(&s, "rollout.device_joined").await;
    assert_eq!(joined.len(), 1);
    assert_eq!(joined[0]["subject"], format!("device:{}", late.id));

    // Whoever got group 1 installs; then its certificate is revoked: a device that installed
    // the release no longer passes a check it passed before, and the rollout halts.
    let mut first = None;
    for d in devices.iter().chain([&late]) {
        if installed(&follow(d).await).is_some() {
            first = Some(d);
        }
    }
    let first = first.expect("one device was in group 1");
    let (st, e) = s
        .post(
            &format!("/api/v1/devices/{}/revoke", first.id),
            json!({"reason": "keyCompromise"}),
        )
        .await;
    assert!(st.is_success(), "{e}");
    let r = wait_for(&s, &id, |r| r["state"] == "halted").await;
    let reason = r["reason"].as_str().unwrap();
    assert!(
        reason.starts_with(&format!(
            "security signal: device {} (now failing ",
            first.id
        )),
        "{reason}"
    );
    let halts = audit_actions(&s, "rollout.halted").await;
    assert_eq!(halts[0]["details"]["reason"], reason);
}

/// A device that installed the release raises a critical alarm (its own report shows a port
/// scan): the rollout halts, naming the device and the behaviour.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alarm_on_a_device_that_installed_halts_the_rollout() {
    let s = TestServer::start_with(Db::Sqlite, fast).await.unwrap();
    let (product, devices) = fleet(&s, 2).await;
    let (st, r) = s
        .post(
            &format!("/api/v1/products/{product}/rollouts"),
            json!({"release": "1.0.0", "groups": ["50%", "100%"], "success_threshold": "100%",
                   "error_threshold": "50%", "approval": true}),
        )
        .await;
    assert_eq!(st, 201, "{r}");
    let id = r["id"].as_str().unwrap().to_owned();
    let mut first = None;
    for d in &devices {
        if installed(&follow(d).await).is_some() {
            first = Some(d);
        }
    }
    let first = first.expect("one device was in group 1");
    let sweep = (1..=60u16)
        .map(|p| std::net::SocketAddr::from(([10, 0, 0, 9], p)))
        .collect();
    let report = sigil_detect::MetricsReport {
        destination_endpoints: sweep,
        ..Default::default()
    };
    sigil_agent::report_metrics(&first.state, &report)
        .await
        .unwrap();
    let r = wait_for(&s, &id, |r| r["state"] == "halted").await;
    let reason = r["reason"].as_str().unwrap();
    assert_eq!(
        reason,
        format!(
            "security signal: device {} (raised the critical alarm port-scan) after installing the release",
            first.id
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_agent_commands_follow_the_assignment() {
    let s = TestServer::start_with(Db::Sqlite, fast).await.unwrap();
    let (product, devices) = fleet(&s, 2).await;
    let (st, r) = s
        .post(
            &format!("/api/v1/products/{product}/rollouts"),
            json!({"release": "1.0.0", "groups": ["100%"], "success_threshold": "100%", "error_threshold": "50%"}),
        )
        .await;
    assert_eq!(st, 201, "{r}");
    let agent = |args: &[&str], d: &Device| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_sigil-agent"));
        cmd.args(args)
            .arg("--state-dir")
            .arg(d.state.root())
            .arg("--install-dir")
            .arg(&d.install.dir);
        cmd
    };
    // Once: `sigil-agent update` without --target installs what is assigned, and reports it.
    let out = agent(&["update"], &devices[0]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("installed 1.0.0/fw.bin (version 1.0.0"),
        "{out:?}"
    );
    let out = agent(&["update"], &devices[0]).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "no update is assigned to this device\n"
    );
    // Continuously: `sigil-agent run --install-dir` follows rollouts as it renews.
    let mut run = agent(&["run"], &devices[1]).spawn().unwrap();
    let r = wait_for(&s, r["id"].as_str().unwrap(), |r| r["state"] == "completed").await;
    run.kill().unwrap();
    run.wait().unwrap();
    assert_eq!(r["groups"][0]["installed"], 2);
    assert!(devices[1].install.dir.join("current").exists());
}
