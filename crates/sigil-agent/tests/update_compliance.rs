//! The update checks read real evidence: a device whose agent installed a release through a
//! rollout and reports its slot (`sigil-agent report --install-dir`) passes
//! `device.update-verified`; a factory image cannot; a slot holding something no release
//! published fails. `device.update-timely` counts a missing security release against the
//! product's declared remediation deadline, on the server's clock, and passes again once the
//! fix is installed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use sigil_agent::update::{Followed, follow_assignment};
use sigil_testkit::{Db, TestServer};

mod support;

use support::{Device, enrol, report};

const DAY: i64 = 86_400;

/// The device's outcome of `check` in the CRA report, as (status, reason).
async fn outcome(s: &TestServer, device: &Device, check: &str) -> (String, String) {
    let (st, r) = s
        .get(&format!("/api/v1/compliance/eu-cra/devices/{}", device.id))
        .await;
    assert_eq!(st, 200, "{r}");
    let found = r["requirements"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|q| q["checks"].as_array().unwrap())
        .find(|c| c["check"] == check)
        .unwrap_or_else(|| panic!("no {check} in {r}"));
    let status = found["status"].as_str().unwrap().to_owned();
    let reason = match found["reason"].as_str() {
        Some(r) => r.to_owned(),
        None => found.to_string(),
    };
    (status, reason)
}

async fn expect(s: &TestServer, d: &Device, check: &str, status: &str, words: &str) {
    let (got, reason) = outcome(s, d, check).await;
    assert_eq!(got, status, "{check} of {}: {reason}", d.id);
    assert!(reason.contains(words), "{check}: {reason}");
}

/// Roll `version` out to every device of `product` and have `d` install it.
async fn roll_out(s: &TestServer, product: &str, version: &str, d: &Device) {
    let (st, r) = s
        .post(
            &format!("/api/v1/products/{product}/rollouts"),
            json!({"release": version, "groups": ["100%"], "success_threshold": "50%",
                   "error_threshold": "50%"}),
        )
        .await;
    assert_eq!(st, 201, "{r}");
    for _ in 0..100 {
        if let Followed::Installed(i) = follow_assignment(&d.state, &d.install).await.unwrap() {
            assert_eq!(i.version.as_deref(), Some(version));
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{version} was never assigned to {}", d.id);
}

fn slot_sha256(dir: &Path) -> String {
    let record = std::fs::read(dir.join("current/release.json")).unwrap();
    serde_json::from_slice::<Value>(&record).unwrap()["sha256"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_checks_read_installs_and_the_remediation_deadline() {
    let offset = Arc::new(AtomicI64::new(0));
    let clock: sigil_server::Clock = {
        let offset = offset.clone();
        Arc::new(move || {
            time::OffsetDateTime::now_utc() + time::Duration::seconds(offset.load(Ordering::SeqCst))
        })
    };
    let s = TestServer::start_with_clock(
        Db::Sqlite,
        |c| c.rollout_tick = Duration::from_millis(100),
        clock,
    )
    .await
    .unwrap();
    let product = s.admin().create_product("Meter").await.unwrap();
    support::release(&s, &product, "1.0.0", b"firmware 1.0.0").await;
    let (st, d) = s
        .admin()
        .call(
            reqwest::Method::PUT,
            &format!("/api/v1/products/{product}/declaration"),
            &json!({"current_firmware": ["1.0.0"], "remediation_days": 30}),
        )
        .await
        .unwrap();
    assert_eq!(st, 200, "{d}");
    assert_eq!(d["remediation_days"], 30);
    let updated = enrol(&s, &product, "SN-1").await;
    let factory = enrol(&s, &product, "SN-2").await;
    let base = json!({"firmware_version": "0.9.0", "secure_boot": true});

    // Before any install both run the factory image: nothing verified it; the release they
    // lack is a feature release, so they are on time.
    report(&factory, &base, false);
    expect(
        &s,
        &factory,
        "device.update-verified",
        "unknown",
        "factory image",
    )
    .await;
    expect(
        &s,
        &factory,
        "device.update-timely",
        "pass",
        "feature releases",
    )
    .await;

    // Installed through a rollout and reported from the slot: verified, and current.
    roll_out(&s, &product, "1.0.0", &updated).await;
    report(&updated, &base, true);
    expect(
        &s,
        &updated,
        "device.update-verified",
        "pass",
        "runs release 1.0.0",
    )
    .await;
    expect(
        &s,
        &updated,
        "device.update-timely",
        "pass",
        "runs 1.0.0, the current release",
    )
    .await;

    // A slot holding something no release published, under a released version's name.
    let mut forged = base.clone();
    forged["installed_release"] =
        json!({"target": "1.0.0/fw.bin", "version": "1.0.0", "sha256": "ee".repeat(32)});
    report(&factory, &forged, false);
    expect(
        &s,
        &factory,
        "device.update-verified",
        "fail",
        "no published release",
    )
    .await;
    report(&factory, &base, false);

    // A security release: the clock starts at its publication.
    let (sha, release) = support::release_with(
        &s,
        &product,
        "1.0.1",
        b"firmware 1.0.1",
        json!({"security": true}),
    )
    .await;
    assert!(release["published_at"].is_string(), "{release}");
    expect(&s, &updated, "device.update-timely", "pass", "30 days left").await;
    expect(
        &s,
        &factory,
        "device.update-timely",
        "pass",
        "security release 1.0.1",
    )
    .await;

    // Thirty days on, both still lack it: the deadline has passed.
    offset.store(31 * DAY, Ordering::SeqCst);
    expect(
        &s,
        &updated,
        "device.update-timely",
        "fail",
        "deadline passed",
    )
    .await;
    expect(
        &s,
        &factory,
        "device.update-timely",
        "fail",
        "deadline passed",
    )
    .await;

    // The fix installed and reported: on time and verified again.
    roll_out(&s, &product, "1.0.1", &updated).await;
    report(&updated, &base, true);
    expect(
        &s,
        &updated,
        "device.update-timely",
        "pass",
        "the current release",
    )
    .await;
    expect(
        &s,
        &updated,
        "device.update-verified",
        "pass",
        "runs release 1.0.1",
    )
    .await;
    assert_eq!(slot_sha256(&updated.install.dir), sha);
    expect(
        &s,
        &factory,
        "device.update-timely",
        "fail",
        "without security release 1.0.1",
    )
    .await;
}
