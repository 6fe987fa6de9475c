//! The agent against a real Sigil server (in-process, real TLS, SQLite): enrolment with a token
//! and with a bootstrap certificate, renewal, an outage, a wrong CA, revocation, a crash.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use sigil_agent::{EnrollCredential, EnrollOptions, RunOptions, StateDir};
use sigil_testkit::{Db, TestServer};

/// The agent's view of a test server: where it is, what to pin, and a device to enrol.
async fn start_server() -> TestServer {
    TestServer::start(Db::Sqlite).await.unwrap()
}

/// A product, a device with `serial`, and a one-time token for it.
async fn new_device(s: &TestServer, serial: &str) -> (String, String, String) {
    let admin = s.admin();
    let product = admin.create_product(&format!("P-{serial}")).await.unwrap();
    let device = admin.create_device(&product, serial).await.unwrap();
    let token = admin.enrollment_token(&device).await.unwrap();
    (product, device, token)
}

async fn certificates(s: &TestServer, device: &str) -> Vec<Value> {
    let v = s
        .admin()
        .try_get(&format!("/api/v1/certificates?device={device}"))
        .await
        .unwrap();
    v["items"].as_array().cloned().unwrap_or_default()
}

fn agent(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sigil-agent"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn enroll_with_binary(
    s: &TestServer,
    state: &Path,
    device: &str,
    token: &str,
    fingerprint: &str,
) -> (i32, String) {
    agent(&[
        "enroll",
        "--server",
        &s.api,
        "--ca-fingerprint",
        fingerprint,
        "--device-id",
        device,
        "--token",
        token,
        "--state-dir",
        state.to_str().unwrap(),
    ])
}

/// A clock `ahead` of the real one: the agent believes its certificate is older than it is.
fn clock_ahead(ahead: time::Duration) -> sigil_agent::Clock {
    Arc::new(move || time::OffsetDateTime::now_utc() + ahead)
}

fn fast(clock: sigil_agent::Clock) -> RunOptions {
    RunOptions {
        clock,
        min_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(400),
        poll: Duration::from_millis(200),
        renewals: Some(1),
        ..RunOptions::default()
    }
}

fn state_path(s: &TestServer, name: &str) -> PathBuf {
    s.dir.path().join(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrols_with_a_token_and_renews_before_expiry() {
    let s = start_server().await;
    let (_, device, token) = new_device(&s, "SN-1").await;
    let path = state_path(&s, "agent");
    let (code, out) = enroll_with_binary(&s, &path, &device, &token, &s.root_fingerprint());
    assert_eq!(code, 0, "{out}");
    let state = StateDir::open(&path).unwrap();
    let first = state.current().unwrap().unwrap();
    let key_mode = std::fs::metadata(path.join("generations/1/key.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(key_mode & 0o777, 0o600, "the private key is owner-only");
    assert_eq!(certificates(&s, &device).await.len(), 1);

    // Not due yet: run with the real clock would just wait. With the clock 250 days on (past two
    // thirds of a 365-day certificate), it renews over mTLS with a new key.
    let report = sigil_agent::run(&state, &fast(clock_ahead(time::Duration::days(250))))
        .await
        .unwrap();
    assert_eq!(report.renewals, 1);
    let second = state.current().unwrap().unwrap();
    assert_eq!(second.generation, 2);
    assert_ne!(second.key_pem, first.key_pem, "a renewal uses a new key");
    let certs = certificates(&s, &device).await;
    let statuses: Vec<&str> = certs
        .iter()
        .map(|c| c["status"].as_str().unwrap())
        .collect();
    assert_eq!(certs.len(), 2);
    assert!(
        statuses.contains(&"superseded") && statuses.contains(&"active"),
        "{statuses:?}"
    );
    assert!(
        !path.join("generations/1").exists(),
        "the old generation is removed after the switch"
    );
    // The token was single use: enrolling again with it is refused, clearly.
    let (code, out) = enroll_with_binary(
        &s,
        &state_path(&s, "again"),
        &device,
        &token,
        &s.root_fingerprint(),
    );
    assert_eq!(code, 77, "{out}");
    assert!(out.contains("already been used"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_a_server_whose_ca_is_not_the_pinned_one() {
    let s = start_server().await;
    let (_, device, token) = new_device(&s, "SN-2").await;
    let path = state_path(&s, "agent");
    let wrong = format!("sha256:{}", "0".repeat(64));
    let (code, out) = enroll_with_binary(&s, &path, &device, &token, &wrong);
    assert_eq!(code, 76, "{out}");
    assert!(
        out.contains("does not match the pinned fingerprint"),
        "{out}"
    );
    assert!(StateDir::open(&path).unwrap().current().unwrap().is_none());
    assert!(certificates(&s, &device).await.is_empty());
    // The token was not spent: the right fingerprint still enrols.
    let (code, out) = enroll_with_binary(&s, &path, &device, &token, &s.root_fingerprint());
    assert_eq!(code, 0, "{out}");
    // A malformed fingerprint is a usage error.
    let (code, _) = enroll_with_binary(&s, &state_path(&s, "x"), &device, &token, "sha256:xyz");
    assert_eq!(code, 64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keeps_its_identity_through_a_server_outage_and_resumes() {
    let mut s = start_server().await;
    let (_, device, token) = new_device(&s, "SN-3").await;
    let path = state_path(&s, "agent");
    let (code, out) = enroll_with_binary(&s, &path, &device, &token, &s.root_fingerprint());
    assert_eq!(code, 0, "{out}");
    s.stop().await;
    let state = StateDir::open(&path).unwrap();
    let runner = {
        let state = state.clone();
        tokio::spawn(async move {
            sigil_agent::run(&state, &fast(clock_ahead(time::Duration::days(250)))).await
        })
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Down: attempts fail, the working identity is untouched.
    assert_eq!(state.current().unwrap().unwrap().generation, 1);
    assert!(!runner.is_finished());
    s.restart().await;
    let report = tokio::time::timeout(Duration::from_secs(20), runner)
        .await
        .expect("renews once the server is back")
        .unwrap()
        .unwrap();
    assert_eq!(report.renewals, 1);
    assert!(report.failed_attempts >= 2, "{report:?}");
    assert_eq!(state.current().unwrap().unwrap().generation, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stops_and_says_so_when_its_certificate_is_revoked() {
    let s = start_server().await;
    let (_, device, token) = new_device(&s, "SN-4").await;
    let path = state_path(&s, "agent");
    let (code, out) = enroll_with_binary(&s, &path, &device, &token, &s.root_fingerprint());
    assert_eq!(code, 0, "{out}");
    s.admin()
        .try_post(
            &format!("/api/v1/devices/{device}/revoke"),
            json!({"reason": "keyCompromise"}),
        )
        .await
        .unwrap();
    let (code, out) = agent(&["renew", "--state-dir", path.to_str().unwrap()]);
    assert_eq!(code, 78, "{out}");
    assert!(out.contains("revoked"), "{out}");
    // And the run loop stops rather than retrying forever.
    let state = StateDir::open(&path).unwrap();
    let e = sigil_agent::run(&state, &fast(clock_ahead(time::Duration::days(250))))
        .await
        .unwrap_err();
    assert_eq!(e.exit_code(), 78, "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_between_the_new_key_and_the_new_certificate_leaves_a_usable_identity() {
    let s = start_server().await;
    let (_, device, token) = new_device(&s, "SN-5").await;
    let path = state_path(&s, "agent");
    let (code, out) = enroll_with_binary(&s, &path, &device, &token, &s.root_fingerprint());
    assert_eq!(code, 0, "{out}");
    // The process died right after writing generation 2's key.
    let state = StateDir::open(&path).unwrap();
    state
        .stage_key(2, "-----BEGIN PRIVATE KEY-----\ntruncated")
        .unwrap();
    let (code, out) = agent(&["status", "--state-dir", path.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("generation 1"), "{out}");
    // The identity still works (renewal authenticates with it) and replaces the debris.
    let (code, out) = agent(&["renew", "--state-dir", path.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("generation 2"), "{out}");
    let key = std::fs::read_to_string(path.join("generations/2/key.pem")).unwrap();
    assert!(key.contains("END PRIVATE KEY"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrols_with_a_manufacturer_bootstrap_certificate() {
    let s = start_server().await;
    let (product, device, _) = new_device(&s, "SN-6").await;
    // The maker's CA and the certificate it put on the device at the factory.
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::default();
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "Maker IDevID CA");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::from_params(&ca, &ca_key);
    let boot_key = rcgen::KeyPair::generate().unwrap();
    let mut boot = rcgen::CertificateParams::default();
    boot.distinguished_name
        .push(rcgen::DnType::CustomDnType(vec![2, 5, 4, 5]), "SN-6");
    boot.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let boot_cert = boot.signed_by(&boot_key, &issuer).unwrap();
    s.admin()
        .try_post(
            &format!("/api/v1/products/{product}/manufacturer-cas"),
            json!({"certificate": ca_cert.pem()}),
        )
        .await
        .unwrap();

    let state = StateDir::open(state_path(&s, "agent")).unwrap();
    let id = sigil_agent::enroll(
        &state,
        &EnrollOptions {
            server: s.api.clone(),
            ca_fingerprint: s.root_fingerprint(),
            device_id: device.clone(),
            credential: EnrollCredential::Bootstrap {
                cert_pem: boot_cert.pem(),
                key_pem: boot_key.serialize_pem(),
            },
        },
    )
    .await
    .unwrap();
    assert_eq!(id.generation, 1);
    let certs = certificates(&s, &device).await;
    assert_eq!(certs.len(), 1);
    assert_eq!(
        certs[0]["sha256"],
        hex::encode(sigil_ca::sha256(&id.cert_der().unwrap()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_posture_on_schedule_and_on_change() {
    let s = start_server().await;
    let (_, device, token) = new_device(&s, "SN-7").await;
    let path = state_path(&s, "agent");
    let (code, out) = enroll_with_binary(&s, &path, &device, &token, &s.root_fingerprint());
    assert_eq!(code, 0, "{out}");
    let posture_file = state_path(&s, "posture.json");
    std::fs::write(
        &posture_file,
        r#"{"firmware_version":"1.0.0","secure_boot":true,"default_password":true,
            "listening_services":[{"protocol":"tcp","port":23,"process":"telnetd"}],
            "debug_interfaces":["uart-console"],"sbom_ref":"sha256:0011"}"#,
    )
    .unwrap();
    // One-shot, through the binary.
    let (code, out) = agent(&[
        "report",
        "--state-dir",
        path.to_str().unwrap(),
        "--posture-file",
        posture_file.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}");
    let (_, d) = s.get(&format!("/api/v1/devices/{device}")).await;
    assert_eq!(
        d["firmware_version"], "1.0.0",
        "the inventory follows the report"
    );

    // The run loop reports again when the posture changes (an update to 1.1.0).
    std::fs::write(
        &posture_file,
        r#"{"firmware_version":"1.1.0","secure_boot":true,"default_password":false}"#,
    )
    .unwrap();
    let state = StateDir::open(&path).unwrap();
    let options = RunOptions {
        posture: Some(Arc::new(sigil_agent::FileProvider(posture_file.clone()))),
        ..fast(clock_ahead(time::Duration::days(250)))
    };
    let report = sigil_agent::run(&state, &options).await.unwrap();
    assert_eq!(report.posture_reports, 1);
    let (st, p) = s.get(&format!("/api/v1/devices/{device}/posture")).await;
    assert_eq!(st.as_u16(), 200, "{p}");
    assert_eq!(p["latest"]["posture"]["firmware_version"], "1.1.0");
    assert_eq!(p["latest"]["posture"]["default_password"], false);
    let history = p["history"].as_array().unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[1]["posture"]["listening_services"][0]["port"], 23);

    // Without a client certificate, or with a malformed report: refused, nothing stored.
    let anonymous = s
        .http
        .post(format!("{}/api/v1/device/posture", s.api))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);
    std::fs::write(
        &posture_file,
        r#"{"listening_services":[{"protocol":"icmp","port":1}]}"#,
    )
    .unwrap();
    let (code, out) = agent(&[
        "report",
        "--state-dir",
        path.to_str().unwrap(),
        "--posture-file",
        posture_file.to_str().unwrap(),
    ]);
    assert_eq!(
        code, 64,
        "a bad local report is caught before sending: {out}"
    );
    let id = state.current().unwrap().unwrap();
    let identity =
        reqwest::Identity::from_pem(format!("{}\n{}", id.key_pem, id.cert_pem).as_bytes()).unwrap();
    let root = std::fs::read(s.dir.path().join("data/ca/root.crt")).unwrap();
    let device_http = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&root).unwrap()])
        .identity(identity)
        .build()
        .unwrap();
    let bad = device_http
        .post(format!("{}/api/v1/device/posture", s.api))
        .header("content-type", "application/json")
        .body(r#"{"listening_services":[{"protocol":"icmp","port":1}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 422);
    assert!(bad.text().await.unwrap().contains("tcp or udp"));
    let (_, p) = s.get(&format!("/api/v1/devices/{device}/posture")).await;
    assert_eq!(p["history"].as_array().unwrap().len(), 2);
}
