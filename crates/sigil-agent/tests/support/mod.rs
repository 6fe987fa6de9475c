//! What the agent's update tests share: releases made through the real API, and devices
//! enrolled over EST with A/B slots of their own.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use serde_json::json;

use std::time::Duration;

use sigil_agent::update::InstallOptions;
use sigil_agent::{EnrollCredential, EnrollOptions, StateDir};
use sigil_testkit::TestServer;

/// An enrolled device: its id, its agent's state, and its A/B slots.
pub struct Device {
    pub id: String,
    pub state: StateDir,
    pub install: InstallOptions,
}

/// A device of `product` with serial `serial`, enrolled with a token; slots under its state.
pub async fn enrol(s: &TestServer, product: &str, serial: &str) -> Device {
    let id = s.admin().create_device(product, serial).await.unwrap();
    enrol_device(s, id, serial).await
}

/// [`enrol`], for a device registered at `site` running `firmware`.
pub async fn enrol_at(
    s: &TestServer,
    product: &str,
    serial: &str,
    site: &str,
    firmware: &str,
) -> Device {
    let (st, d) = s
        .post(
            "/api/v1/devices",
            json!({"product_id": product, "serial_number": serial, "site": site,
                   "firmware_version": firmware}),
        )
        .await;
    assert_eq!(st, 201, "{d}");
    enrol_device(s, d["id"].as_str().unwrap().to_owned(), serial).await
}

async fn enrol_device(s: &TestServer, id: String, serial: &str) -> Device {
    let admin = s.admin();
    let token = admin.enrollment_token(&id).await.unwrap();
    let state = StateDir::open(s.dir.path().join(format!("agents/{serial}"))).unwrap();
    sigil_agent::enroll(
        &state,
        &EnrollOptions {
            server: s.api.clone(),
            ca_fingerprint: s.root_fingerprint(),
            device_id: id.clone(),
            credential: EnrollCredential::Token(token),
        },
    )
    .await
    .unwrap();
    let install = InstallOptions {
        dir: state.root().join("slots"),
        command: None,
        health_command: None,
        health_deadline: Duration::from_secs(5),
    };
    Device { id, state, install }
}

/// Upload `content` and release it as `version` of `product` (target `VERSION/fw.bin`); the
/// artefact's SHA-256.
pub async fn release(s: &TestServer, product: &str, version: &str, content: &[u8]) -> String {
    release_with(s, product, version, content, json!({}))
        .await
        .0
}

/// [`release`], with more fields of the release request (`security`, `notes`); the artefact's
/// SHA-256 and the release as the API returns it.
pub async fn release_with(
    s: &TestServer,
    product: &str,
    version: &str,
    content: &[u8],
    more: serde_json::Value,
) -> (String, serde_json::Value) {
    let r = s
        .http
        .post(format!("{}/api/v1/artefacts", s.api))
        .bearer_auth(&s.token)
        .header("content-type", "application/octet-stream")
        .body(content.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let sha = r.json::<serde_json::Value>().await.unwrap()["sha256"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut request = json!({"version": version, "artefact_sha256": sha, "file_name": "fw.bin"});
    if let (Some(r), Some(more)) = (request.as_object_mut(), more.as_object()) {
        r.extend(more.clone());
    }
    let (st, body) = s
        .post(&format!("/api/v1/products/{product}/releases"), request)
        .await;
    assert_eq!(st, 201, "{body}");
    (sha, body)
}

/// `sigil-agent report` (the README's command) with `posture` as the posture file, and the
/// device's slots when `slots`.
pub fn report(d: &Device, posture: &serde_json::Value, slots: bool) {
    let file = d.state.root().join("posture.json");
    std::fs::write(&file, posture.to_string()).unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_sigil-agent"));
    cmd.arg("report")
        .arg("--state-dir")
        .arg(d.state.root())
        .arg("--posture-file")
        .arg(&file);
    if slots {
        cmd.arg("--install-dir").arg(&d.install.dir);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{out:?}");
}
