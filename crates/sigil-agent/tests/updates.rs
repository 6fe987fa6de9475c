//! Verified updates on the device against a real Sigil server: releases install into A/B
//! slots; each attack TUF names is refused with its own exit code and nothing installed
//! (fixtures named after the attack); a crash at every step of an install leaves a complete
//! slot; an unhealthy slot rolls back.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use serde_json::json;
use sqlx::Row;

use sigil_agent::update::{InstallOptions, UpdateOptions, install};
use sigil_agent::{EnrollCredential, EnrollOptions, StateDir};
use sigil_testkit::{Db, TestServer};
use sigil_update::tuf::{Ed25519Signer, Envelope, Timestamp, repository};

mod support;
use support::release;

struct Device {
    state: StateDir,
    install: PathBuf,
    product: String,
}

/// A product with release `1.0.0` published, and an enrolled device of it.
async fn enrolled(s: &TestServer) -> Device {
    let admin = s.admin();
    let product = admin.create_product("Meter").await.unwrap();
    release(s, &product, "1.0.0", b"version one").await;
    let device = admin.create_device(&product, "SN-1").await.unwrap();
    let token = admin.enrollment_token(&device).await.unwrap();
    let state = StateDir::open(s.dir.path().join("agent")).unwrap();
    sigil_agent::enroll(
        &state,
        &EnrollOptions {
            server: s.api.clone(),
            ca_fingerprint: s.root_fingerprint(),
            device_id: device,
            credential: EnrollCredential::Token(token),
        },
    )
    .await
    .unwrap();
    // Enrolment pinned the product's update root.
    assert!(state.root().join("tuf/root.json").exists());
    Device {
        state,
        install: s.dir.path().join("slots"),
        product,
    }
}

fn options(d: &Device, version: &str) -> UpdateOptions {
    UpdateOptions {
        target: format!("{version}/fw.bin"),
        install: InstallOptions {
            dir: d.install.clone(),
            command: None,
            health_command: None,
            health_deadline: std::time::Duration::from_secs(5),
        },
        allow_downgrade: false,
    }
}

async fn installed(d: &Device) -> Option<String> {
    install::installed(&options(d, "x").install)
        .await
        .unwrap()
        .and_then(|i| i.version)
}

/// The slot `current` names holds a complete release whose file has the recorded hash.
fn current_is_complete(dir: &Path) -> Option<String> {
    let slot = std::fs::read_link(dir.join("current")).ok()?;
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join(&slot).join("release.json")).unwrap())
            .unwrap();
    let content = std::fs::read(dir.join(&slot).join("files/fw.bin")).unwrap();
    assert_eq!(
        hex::encode(aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            &content
        )),
        record["sha256"]
    );
    assert_eq!(content.len() as u64, record["length"].as_u64().unwrap());
    record["version"].as_str().map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn releases_install_into_ab_slots_and_downgrades_are_refused() {
    let s = TestServer::start(Db::Sqlite).await.unwrap();
    let d = enrolled(&s).await;
    let got = sigil_agent::update::update(&d.state, &options(&d, "1.0.0"))
        .await
        .unwrap();
    assert_eq!(got.version.as_deref(), Some("1.0.0"));
    assert_eq!(
        std::fs::read_link(d.install.join("current")).unwrap(),
        Path::new("slot-a")
    );
    assert_eq!(
        std::fs::read(d.install.join("slot-a/files/fw.bin")).unwrap(),
        b"version one"
    );

    release(&s, &d.product, "1.1.0", b"version two").await;
    sigil_agent::update::update(&d.state, &options(&d, "1.1.0"))
        .await
        .unwrap();
    assert_eq!(
        std::fs::read_link(d.install.join("current")).unwrap(),
        Path::new("slot-b")
    );
    assert_eq!(current_is_complete(&d.install).as_deref(), Some("1.1.0"));

    // The agent's own rule: 1.0.0 over 1.1.0 is refused unless asked for explicitly.
    let e = sigil_agent::update::update(&d.state, &options(&d, "1.0.0"))
        .await
        .unwrap_err();
    assert_eq!(e.exit_code(), 97, "{e}");
    assert_eq!(installed(&d).await.as_deref(), Some("1.1.0"));
    let e = sigil_agent::update::update(&d.state, &options(&d, "9.9.9"))
        .await
        .unwrap_err();
    assert_eq!(e.exit_code(), 96, "{e}");
    // A target named like the slot's own record cannot overwrite it.
    let sha = release(&s, &d.product, "1.2.0", b"named release.json").await;
    let mut named = options(&d, "1.2.1");
    let (st, body) = s
        .post(
            &format!("/api/v1/products/{}/releases", d.product),
            json!({"version": "1.2.1", "artefact_sha256": sha, "file_name": "release.json"}),
        )
        .await;
    assert_eq!(st, 201, "{body}");
    named.target = "1.2.1/release.json".into();
    sigil_agent::update::update(&d.state, &named).await.unwrap();
    let slot = std::fs::read_link(d.install.join("current")).unwrap();
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.install.join(&slot).join("release.json")).unwrap())
            .unwrap();
    assert_eq!(record["version"], "1.2.1");
    assert_eq!(
        std::fs::read(d.install.join(&slot).join("files/release.json")).unwrap(),
        b"named release.json"
    );
    let mut rollback = options(&d, "1.0.0");
    rollback.allow_downgrade = true;
    sigil_agent::update::update(&d.state, &rollback)
        .await
        .unwrap();
    assert_eq!(current_is_complete(&d.install).as_deref(), Some("1.0.0"));
    s.shutdown().await;
}

/// Replace the newest stored document of `role` with `bytes` (what a compromised mirror or
/// database would serve).
async fn serve_instead(s: &TestServer, product: &str, role: &str, bytes: Vec<u8>) {
    sqlx::query("UPDATE tuf_metadata SET document = $1 WHERE product_id = $2 AND role = $3 AND version = (SELECT MAX(version) FROM tuf_metadata WHERE product_id = $2 AND role = $3)")
        .bind(bytes).bind(product).bind(role).execute(s.store().pool()).await.unwrap();
}

async fn newest(s: &TestServer, product: &str, role: &str, back: i64) -> Vec<u8> {
    let row = sqlx::query("SELECT document FROM tuf_metadata WHERE product_id = $1 AND role = $2 ORDER BY version DESC LIMIT 1 OFFSET $3")
        .bind(product).bind(role).bind(back).fetch_one(s.store().pool()).await.unwrap();
    row.try_get("document").unwrap()
}

/// Run an update that must be refused with `code`, leaving the installed release as it was.
async fn refused(d: &Device, version: &str, code: i32, attack: &str) {
    let before = installed(d).await;
    let e = sigil_agent::update::update(&d.state, &options(d, version))
        .await
        .unwrap_err();
    assert_eq!((e.exit_code(), e.kind()), (code, attack), "{e}");
    assert_eq!(installed(d).await, before, "{attack}: nothing installed");
    assert!(!d.install.join("slot-b").exists() || before.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_target() {
    let s = TestServer::start(Db::Sqlite).await.unwrap();
    let d = enrolled(&s).await;
    let sha = release(&s, &d.product, "2.0.0", b"genuine firmware").await;
    // Same length, other content: only the hash can tell.
    std::fs::write(
        s.data_dir().join("artefacts/sha256").join(&sha),
        b"evil!!! firmware",
    )
    .unwrap();
    refused(&d, "2.0.0", 90, "arbitrary-software").await;
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_data_target() {
    let s = TestServer::start(Db::Sqlite).await.unwrap();
    let d = enrolled(&s).await;
    let sha = release(&s, &d.product, "2.0.0", b"small firmware").await;
    std::fs::write(
        s.data_dir().join("artefacts/sha256").join(&sha),
        vec![0u8; 8 << 20],
    )
    .unwrap();
    refused(&d, "2.0.0", 93, "endless-data").await;
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_of_timestamp() {
    let s = TestServer::start(Db::Sqlite).await.unwrap();
    let d = enrolled(&s).await;
    sigil_agent::update::update(&d.state, &options(&d, "1.0.0"))
        .await
        .unwrap();
    release(&s, &d.product, "2.0.0", b"two").await;
    // The device saw the new timestamp; then the repository serves the one before it.
    let seen = sigil_agent::update::update(&d.state, &options(&d, "1.0.0"))
        .await
        .unwrap_err();
    assert_eq!(
        seen.exit_code(),
        97,
        "the device refreshed to the newest timestamp: {seen}"
    );
    let older = newest(&s, &d.product, "timestamp", 1).await;
    serve_instead(&s, &d.product, "timestamp", older).await;
    refused(&d, "2.0.0", 91, "rollback").await;
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_metadata() {
    // A repository whose clock stopped two days ago: its timestamp expired yesterday.
    let past = Arc::new(|| time::OffsetDateTime::now_utc() - time::Duration::days(2));
    let s = TestServer::start_with_clock(Db::Sqlite, |_| {}, past)
        .await
        .unwrap();
    let admin = s.admin();
    let product = admin.create_product("Meter").await.unwrap();
    release(&s, &product, "1.0.0", b"one").await;
    let device = admin.create_device(&product, "SN-1").await.unwrap();
    let token = admin.enrollment_token(&device).await.unwrap();
    let state = StateDir::open(s.dir.path().join("agent")).unwrap();
    let opts = EnrollOptions {
        server: s.api.clone(),
        ca_fingerprint: s.root_fingerprint(),
        device_id: device,
        credential: EnrollCredential::Token(token),
    };
    sigil_agent::enroll(&state, &opts).await.unwrap();
    let d = Device {
        state,
        install: s.dir.path().join("slots"),
        product,
    };
    refused(&d, "1.0.0", 92, "freeze").await;
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_signed_by_an_untrusted_key() {
    let s = TestServer::start(Db::Sqlite).await.unwrap();
    let d = enrolled(&s).await;
    // A newer timestamp, well formed, signed by a key the root does not trust.
    let mut forged = Envelope::<Timestamp>::parse(&newest(&s, &d.product, "timestamp", 0).await)
        .unwrap()
        .signed;
    forged.version += 1;
    let (key, _) = Ed25519Signer::generate().unwrap();
    let envelope = repository::sign(&forged, &[&key]).unwrap();
    serve_instead(&s, &d.product, "timestamp", envelope.to_bytes()).await;
    refused(&d, "1.0.0", 95, "untrusted-signature").await;
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mix_and_match() {
    let s = TestServer::start(Db::Sqlite).await.unwrap();
    let d = enrolled(&s).await;
    release(&s, &d.product, "2.0.0", b"two").await;
    // The newest targets file swapped for the previous one (genuinely signed, but not the
    // file the snapshot names).
    let previous = newest(&s, &d.product, "targets", 1).await;
    serve_instead(&s, &d.product, "targets", previous).await;
    refused(&d, "2.0.0", 94, "mix-and-match").await;
    s.shutdown().await;
}

fn agent_update(d: &Device, version: &str, crash_at: Option<&str>, health: Option<&Path>) -> i32 {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sigil-agent"));
    cmd.args([
        "update",
        "--state-dir",
        d.state.root().to_str().unwrap(),
        "--target",
        &format!("{version}/fw.bin"),
        "--install-dir",
        d.install.to_str().unwrap(),
        "--health-deadline-seconds",
        "3",
    ]);
    if let Some(h) = health {
        cmd.arg("--health-command").arg(h);
    }
    if let Some(step) = crash_at {
        cmd.env("SIGIL_AGENT_CRASH_AT", step);
    }
    cmd.output().unwrap().status.code().unwrap_or(-1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_at_every_step_of_an_install_leaves_a_complete_slot() {
    let s = TestServer::start(Db::Sqlite).await.unwrap();
    let d = enrolled(&s).await;
    assert_eq!(agent_update(&d, "1.0.0", None, None), 0);
    let mut version = 1;
    for step in [
        "downloading",
        "downloaded",
        "staged",
        "switched",
        "committed",
    ] {
        version += 1;
        let next = format!("{version}.0.0");
        release(
            &s,
            &d.product,
            &next,
            format!("firmware {next}").repeat(5000).as_bytes(),
        )
        .await;
        assert_ne!(
            agent_update(&d, &next, Some(step), None),
            0,
            "{step}: the agent died"
        );
        let now = current_is_complete(&d.install).expect("a complete slot");
        let expected_new = matches!(step, "switched" | "committed");
        let previous = format!("{}.0.0", version - 1);
        assert_eq!(
            now,
            if expected_new { next.clone() } else { previous },
            "after a crash at {step}"
        );
        // The next run finishes or repeats the install.
        let code = agent_update(&d, &next, None, None);
        assert!(code == 0 || (expected_new && code == 97), "{step}: {code}");
        assert_eq!(current_is_complete(&d.install).unwrap(), next, "{step}");
        assert!(!d.install.join("pending.json").exists(), "{step}");
    }
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unhealthy_slot_rolls_back() {
    let s = TestServer::start(Db::Sqlite).await.unwrap();
    let d = enrolled(&s).await;
    assert_eq!(agent_update(&d, "1.0.0", None, None), 0);
    release(&s, &d.product, "2.0.0", b"broken firmware").await;
    let unhealthy = s.dir.path().join("unhealthy.sh");
    std::fs::write(&unhealthy, "#!/bin/sh\nexit 1\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&unhealthy, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(agent_update(&d, "2.0.0", None, Some(&unhealthy)), 98);
    assert_eq!(current_is_complete(&d.install).as_deref(), Some("1.0.0"));
    // A crash right after the switch, then an unhealthy start: rolled back at recovery.
    assert_ne!(
        agent_update(&d, "2.0.0", Some("switched"), Some(&unhealthy)),
        0
    );
    assert_eq!(current_is_complete(&d.install).as_deref(), Some("2.0.0"));
    assert_eq!(agent_update(&d, "2.0.0", None, Some(&unhealthy)), 98);
    assert_eq!(current_is_complete(&d.install).as_deref(), Some("1.0.0"));
    s.shutdown().await;
}

/// The online timestamp key as the server holds it (sealed in the database): what an attacker
/// who stole it would have.
async fn stolen_timestamp_key(s: &TestServer, product: &str) -> Ed25519Signer {
    let row = sqlx::query(
        "SELECT key_id, sealed_private FROM tuf_keys WHERE product_id = $1 AND role = 'timestamp'",
    )
    .bind(product)
    .fetch_one(s.store().pool())
    .await
    .unwrap();
    let key_id: String = row.try_get("key_id").unwrap();
    let sealed: Vec<u8> = row.try_get("sealed_private").unwrap();
    let dir = sigil_authority::DataDir::new(s.data_dir());
    let sealer = sigil_authority::secrets::SecretBox::new(&dir.update_keys_key().unwrap()).unwrap();
    let der = sealer
        .open(&sealed, &format!("tuf:{product}:timestamp:{key_id}"))
        .unwrap();
    Ed25519Signer::from_pkcs8(&der).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_signed_by_a_revoked_key() {
    let s = TestServer::start(Db::Sqlite).await.unwrap();
    let d = enrolled(&s).await;
    sigil_agent::update::update(&d.state, &options(&d, "1.0.0"))
        .await
        .unwrap();
    let stolen = stolen_timestamp_key(&s, &d.product).await;
    // The operator rotates the compromised key: root v2 assigns a new one.
    let (st, channel) = s
        .post(
            &format!("/api/v1/products/{}/update-channel/rotations", d.product),
            json!({"rotations": [{"role": "timestamp"}]}),
        )
        .await;
    assert_eq!(st, 200, "{channel}");
    assert!(
        channel["pending"].as_array().unwrap().is_empty(),
        "{channel}"
    );
    let root = channel["metadata"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "root")
        .unwrap()
        .clone();
    assert_eq!(root["version"], 2, "{channel}");
    let ts: serde_json::Value =
        serde_json::from_slice(&newest(&s, &d.product, "timestamp", 0).await).unwrap();
    let timestamp_role = channel["roles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["role"] == "timestamp")
        .unwrap()
        .clone();
    assert_eq!(
        ts["signatures"][0]["keyid"], timestamp_role["keyids"][0],
        "the timestamp is signed by the new key: {ts} {channel}"
    );
    // The device follows the rotation (the new timestamp verifies under root v2)...
    let e = sigil_agent::update::update(&d.state, &options(&d, "1.0.0"))
        .await
        .unwrap_err();
    assert_eq!(
        e.exit_code(),
        97,
        "metadata accepted, only the downgrade refused: {e}"
    );
    let pinned: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.state.root().join("tuf/root.json")).unwrap())
            .unwrap();
    assert_eq!(
        pinned["signed"]["version"], 2,
        "the device now starts from root v2"
    );
    // ...and refuses a newer timestamp signed with the revoked key.
    let mut forged = Envelope::<Timestamp>::parse(&newest(&s, &d.product, "timestamp", 0).await)
        .unwrap()
        .signed;
    forged.version += 1;
    let envelope = repository::sign(&forged, &[&stolen]).unwrap();
    serve_instead(&s, &d.product, "timestamp", envelope.to_bytes()).await;
    refused(&d, "1.0.0", 95, "untrusted-signature").await;
    s.shutdown().await;
}
