//! The EMQX-compatible broker hooks: decisions by the Cedar policies on the device's current
//! facts, with the deciding policies named, and denials in the audit log.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use reqwest::StatusCode;
use serde_json::{Value, json};

use common::{Db, TestServer, p256_csr};

async fn authz(s: &TestServer, device: &str, action: &str, topic: &str) -> Value {
    let (st, d) = s
        .post(
            "/api/v1/broker/emqx/authz",
            json!({"username": device, "clientid": "c1", "topic": topic, "action": action}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{d}");
    d
}

async fn broker_hooks_follow_the_device_trust_state(db: Db) {
    let Some(s) = TestServer::start(db).await else {
        return;
    };
    let product = s.create_product("P").await;
    let a = s.create_device(&product, "A").await;
    let b = s.create_device(&product, "B").await;
    let csr = p256_csr(s.dir.path(), "a");
    let (st, _) = s
        .post(
            &format!("/api/v1/devices/{a}/certificates"),
            json!({"csr": csr}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);

    let (_, connect) = s
        .post("/api/v1/broker/emqx/authn", json!({"username": a}))
        .await;
    assert_eq!(connect["result"], "allow", "{connect}");
    assert_eq!(connect["reasons"], json!(["device-connect"]));
    // B has no certificate: it may not connect.
    let (_, no_cert) = s
        .post("/api/v1/broker/emqx/authn", json!({"username": b}))
        .await;
    assert_eq!(no_cert["result"], "deny");

    let own = authz(&s, &a, "publish", &format!("devices/{a}/telemetry/temp")).await;
    assert_eq!(own["result"], "allow", "{own}");
    assert_eq!(own["reasons"], json!(["device-publish-own-telemetry"]));
    let other = authz(&s, &a, "publish", &format!("devices/{b}/telemetry/temp")).await;
    assert_eq!(other["result"], "deny");
    let commands = authz(&s, &a, "subscribe", &format!("devices/{a}/commands/#")).await;
    assert_eq!(commands["result"], "allow");
    let everything = authz(&s, &a, "subscribe", "#").await;
    assert_eq!(everything["result"], "deny");

    // Suspended: denied at once, by the trust-state policy; resumed: allowed again.
    let (st, _) = s
        .post(&format!("/api/v1/devices/{a}/activate"), json!({}))
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = s
        .post(&format!("/api/v1/devices/{a}/suspend"), json!({}))
        .await;
    assert_eq!(st, StatusCode::OK);
    let suspended = authz(&s, &a, "publish", &format!("devices/{a}/telemetry/temp")).await;
    assert_eq!(suspended["result"], "deny");
    assert_eq!(suspended["reasons"], json!(["device-untrusted-state"]));
    let (st, _) = s
        .post(&format!("/api/v1/devices/{a}/resume"), json!({}))
        .await;
    assert_eq!(st, StatusCode::OK);
    let resumed = authz(&s, &a, "publish", &format!("devices/{a}/telemetry/temp")).await;
    assert_eq!(resumed["result"], "allow");

    // Revoked: may not even connect.
    let (st, _) = s
        .post(
            &format!("/api/v1/devices/{a}/revoke"),
            json!({"reason": "keyCompromise"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (_, revoked) = s
        .post("/api/v1/broker/emqx/authn", json!({"username": a}))
        .await;
    assert_eq!(revoked["result"], "deny");
    assert_eq!(revoked["reasons"], json!(["device-untrusted-state"]));

    // Denials are in the audit log with their reasons; bad requests are 422.
    let (_, log) = s
        .get("/api/v1/audit/entries?action=broker.&limit=100")
        .await;
    let items = log["items"].as_array().unwrap();
    assert!(
        items.iter().any(|e| e["action"] == "broker.publish"
            && e["outcome"] == "denied"
            && e["details"]["reasons"] == json!(["device-untrusted-state"])),
        "{log}"
    );
    let (st, e) = s
        .post(
            "/api/v1/broker/emqx/authz",
            json!({"username": a, "topic": "x", "action": "delete"}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    // Without a token the hook itself is closed.
    let anonymous = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(
            &std::fs::read(s.data_dir().join("ca/root.crt")).unwrap(),
        )
        .unwrap()])
        .build()
        .unwrap()
        .post(format!("{}/api/v1/broker/emqx/authz", s.api))
        .json(&json!({"username": a, "topic": "t", "action": "publish"}))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    s.shutdown().await;
}
both_backends!(broker_hooks_follow_the_device_trust_state);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_explains_what_it_would_decide() {
    let Some(s) = TestServer::start(Db::Sqlite).await else {
        return;
    };
    let ask = |principal: Value, action: &str, resource: Value, mfa: bool| {
        json!({"principal": principal, "action": action, "resource": resource,
               "context": {"mfa": mfa, "source_ip": "10.1.2.3"}})
    };
    let auditor = json!({"operator": {"id": "alice", "roles": ["auditor"]}});
    let (st, d) = s
        .post(
            "/api/v1/policy/explain",
            ask(
                auditor.clone(),
                "certificate.revoke",
                json!({"kind": "certificate"}),
                true,
            ),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{d}");
    assert_eq!(d["decision"], "deny");
    assert_eq!(d["reasons"], json!([]));
    let (_, d) = s
        .post(
            "/api/v1/policy/explain",
            ask(
                auditor,
                "evidence.export",
                json!({"kind": "evidence"}),
                false,
            ),
        )
        .await;
    assert_eq!(
        (d["decision"].as_str(), d["reasons"].clone()),
        (Some("allow"), json!(["role-auditor"]))
    );
    let officer = json!({"operator": {"id": "bob", "roles": ["security-officer"]}});
    let (_, d) = s
        .post(
            "/api/v1/policy/explain",
            ask(
                officer,
                "certificate.revoke",
                json!({"kind": "certificate"}),
                false,
            ),
        )
        .await;
    assert_eq!(d["decision"], "deny");
    assert_eq!(d["reasons"], json!(["trust-changes-need-mfa"]));
    // A misspelt action is an error, not a silent deny.
    let (st, e) = s
        .post(
            "/api/v1/policy/explain",
            ask(
                json!({"operator": {"id": "x", "roles": []}}),
                "certificate.revok",
                json!({"kind": "c"}),
                true,
            ),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    s.shutdown().await;
}
