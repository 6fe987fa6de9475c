//! `sigil rollout`, exactly as the README runs it: a rollout over the devices of one site,
//! shown, paused, resumed, retried, stopped and listed with the real binary; every change in
//! the audit log; bad arguments refused before anything is sent.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use serde_json::{Value, json};

use common::{Db, TestServer, json as json_out, ok, p256_csr, sigil};

/// A device of `product` at `site`, holding an identity (provisioned).
async fn provisioned(s: &TestServer, product: &str, serial: &str, site: &str) -> String {
    let (st, d) = s
        .post(
            "/api/v1/devices",
            json!({"product_id": product, "serial_number": serial, "site": site}),
        )
        .await;
    assert!(st.is_success(), "{d}");
    let id = d["id"].as_str().unwrap().to_owned();
    let csr = p256_csr(s.dir.path(), serial);
    let (st, c) = s
        .post(
            &format!("/api/v1/devices/{id}/certificates"),
            json!({"csr": csr}),
        )
        .await;
    assert!(st.is_success(), "{c}");
    id
}

async fn release(s: &TestServer, product: &str, version: &str) {
    let file = s.dir.path().join(format!("fw-{version}.bin"));
    std::fs::write(&file, format!("firmware {version}")).unwrap();
    ok(sigil(
        s,
        &[
            "release",
            "upload",
            "--product",
            product,
            "--version",
            version,
            "--file",
            file.to_str().unwrap(),
            "--name",
            "firmware.bin",
        ],
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_rollout_commands() {
    let s = TestServer::start_with(Db::Sqlite, |c| {
        c.rollout_tick = std::time::Duration::from_millis(100);
    })
    .await
    .unwrap();
    let product = s.admin().create_product("Meter").await.unwrap();
    release(&s, &product, "1.1.0").await;
    let mut at_plant = Vec::new();
    for i in 0..4 {
        at_plant.push(provisioned(&s, &product, &format!("P1-{i}"), "plant-1").await);
    }
    let elsewhere = provisioned(&s, &product, "P2-0", "plant-2").await;

    // The README's command, word for word (the product is the test's).
    let created = json_out(sigil(
        &s,
        &[
            "rollout",
            "create",
            "--product",
            &product,
            "--release",
            "1.1.0",
            "--devices",
            "site=plant-1",
            "--groups",
            "1%,10%,50%,100%",
            "--success-threshold",
            "95%",
            "--error-threshold",
            "5%",
            "--rate",
            "100/min",
            "--json",
        ],
    ));
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["devices"], 4, "only plant-1: {created}");
    // A device's side: its part in the rollout (the README's `sigil device updates`).
    let mine = json_out(sigil(&s, &["device", "updates", &at_plant[0], "--json"]));
    assert_eq!(mine["items"][0]["release_version"], "1.1.0", "{mine}");
    assert_eq!(mine["items"][0]["rollout_id"], created["id"], "{mine}");
    let none = json_out(sigil(&s, &["device", "updates", &elsewhere, "--json"]));
    assert_eq!(none["items"], json!([]), "{none}");
    assert_eq!(created["rate_per_minute"], 100);
    assert_eq!(
        created["groups"][0]["assigned"], 1,
        "1% of 4 is one device: {created}"
    );
    assert_eq!(
        created["selector"],
        json!({"site": "plant-1", "states": ["provisioned", "active"]})
    );
    let (_, members) = s
        .get("/api/v1/audit/entries?action=update.assigned&limit=10")
        .await;
    let subjects: Vec<&str> = members["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["subject"].as_str().unwrap())
        .collect();
    assert_eq!(subjects.len(), 1);
    assert!(
        at_plant
            .iter()
            .any(|d| subjects[0] == format!("device:{d}"))
    );
    assert!(!subjects.contains(&format!("device:{elsewhere}").as_str()));

    // The human view names state, group and progress per group.
    let shown = ok(sigil(&s, &["rollout", "show", &id]));
    for word in ["running", "IN FLIGHT", "1%", "100%"] {
        assert!(shown.contains(word), "{word} missing:\n{shown}");
    }
    let paused = json_out(sigil(
        &s,
        &[
            "rollout",
            "pause",
            &id,
            "--reason",
            "change freeze",
            "--json",
        ],
    ));
    assert_eq!(paused["state"], "paused");
    assert!(
        paused["reason"]
            .as_str()
            .unwrap()
            .ends_with(": change freeze"),
        "{paused}"
    );
    let resumed = json_out(sigil(&s, &["rollout", "resume", &id, "--json"]));
    assert_eq!(resumed["state"], "running");
    ok(sigil(&s, &["rollout", "retry-failed", &id]));
    let stopped = json_out(sigil(
        &s,
        &["rollout", "stop", &id, "--reason", "superseded", "--json"],
    ));
    assert_eq!(stopped["state"], "stopped");
    let list = json_out(sigil(
        &s,
        &["rollout", "list", "--product", &product, "--json"],
    ));
    assert_eq!(list["items"][0]["id"], id.as_str());
    // Approving a stopped rollout is refused, with the reason.
    let out = sigil(&s, &["rollout", "approve", &id]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("stopped"),
        "{out:?}"
    );

    let actions: Vec<Value> = {
        let (_, e) = s
            .get("/api/v1/audit/entries?action=rollout.&limit=50")
            .await;
        e["items"].as_array().unwrap().clone()
    };
    let names: Vec<&str> = actions
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for a in [
        "rollout.created",
        "rollout.paused",
        "rollout.resumed",
        "rollout.retried",
        "rollout.stopped",
    ] {
        assert!(names.contains(&a), "{a} missing: {names:?}");
    }

    // Arguments that cannot work are refused (by the CLI, or by the server), nothing stored.
    let before = s.count("rollouts").await;
    for (args, says) in [
        (vec!["--devices", "colour=red"], "unknown key"),
        (vec!["--rate", "fast"], "--rate"),
        (vec!["--groups", "10%,5%"], "groups must grow"),
    ] {
        let mut full = vec![
            "rollout",
            "create",
            "--product",
            &product,
            "--release",
            "1.1.0",
        ];
        full.extend(args);
        let out = sigil(&s, &full);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{says}: {err}");
    }
    assert_eq!(s.count("rollouts").await, before);
}
