//! The `sigil` binary as an operator uses it, against a running server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Command;

use common::{Db, TestServer, json, ok, openssl, p256_csr, sigil};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_walkthrough_with_the_cli() {
    let s = TestServer::start(Db::Sqlite).await.unwrap();
    let p = json(sigil(
        &s,
        &[
            "product",
            "create",
            "--name",
            "Thermostat T1",
            "--manufacturer",
            "Acme",
            "--support-end",
            "2031-12-31",
            "--json",
        ],
    ));
    let product = p["id"].as_str().unwrap();
    let table = ok(sigil(&s, &["product", "list"]));
    assert!(
        table.contains("Thermostat T1") && table.contains("2031-12-31"),
        "{table}"
    );

    let d = json(sigil(
        &s,
        &[
            "device",
            "create",
            "--product",
            product,
            "--serial",
            "SN-0001",
            "--site",
            "plant-1",
            "--tag",
            "line-3",
            "--json",
        ],
    ));
    let device = d["id"].as_str().unwrap();
    assert_eq!(d["state"], "registered");

    p256_csr(s.dir.path(), "device");
    let out = ok(sigil(
        &s,
        &[
            "cert",
            "issue",
            "--device",
            device,
            "--csr",
            "device.csr",
            "--out",
            "device.crt",
            "--chain-out",
            "chain.pem",
        ],
    ));
    assert!(out.starts_with("issued certificate "), "{out}");
    let verify = openssl(
        s.dir.path(),
        &[
            "verify",
            "-CAfile",
            s.data_dir().join("ca/root.crt").to_str().unwrap(),
            "-untrusted",
            "chain.pem",
            "device.crt",
        ],
    );
    assert_eq!(verify.trim(), "device.crt: OK");

    let table = ok(sigil(&s, &["device", "list", "--tag", "line-3"]));
    assert!(
        table.contains(device) && table.contains("provisioned"),
        "{table}"
    );
    assert_eq!(
        json(sigil(&s, &["device", "activate", device, "--json"]))["state"],
        "active"
    );
    let shown = ok(sigil(&s, &["device", "show", device]));
    assert!(
        shown.contains("plant-1") && shown.contains("active"),
        "{shown}"
    );

    let certs = json(sigil(&s, &["cert", "list", "--device", device, "--json"]));
    let serial = certs["items"][0]["serial"].as_str().unwrap();
    let pem = ok(sigil(&s, &["cert", "show", serial, "--pem"]));
    assert_eq!(
        pem,
        std::fs::read_to_string(s.dir.path().join("device.crt")).unwrap()
    );

    // Refusals exit non-zero with the server's specific message.
    let out = sigil(&s, &["device", "resume", device]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("device is active: cannot resume") && err.contains("illegal-transition"),
        "{err}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_sigil"))
        .args([
            "device",
            "list",
            "--server",
            &s.api,
            "--token",
            "sigil_wrong",
            "--ca-file",
        ])
        .arg(s.data_dir().join("ca/root.crt"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid API token"));
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_finds_token_and_ca_in_a_local_data_dir() {
    let s = TestServer::start(Db::Sqlite).await.unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sigil"))
        .args([
            "product",
            "list",
            "--json",
            "--server",
            &s.api,
            "--data-dir",
        ])
        .arg(s.data_dir())
        .env_remove("SIGIL_TOKEN")
        .env_remove("SIGIL_CA_FILE")
        .output()
        .unwrap();
    assert_eq!(json(out)["items"], serde_json::json!([]));
    // Trusting the wrong CA fails the TLS handshake: the client does not fall back to anything.
    let other = tempfile::tempdir().unwrap();
    let init = Command::new(env!("CARGO_BIN_EXE_sigil"))
        .args(["init", "--data-dir"])
        .arg(other.path().join("d"))
        .output()
        .unwrap();
    assert!(init.status.success());
    let out = Command::new(env!("CARGO_BIN_EXE_sigil"))
        .args([
            "product",
            "list",
            "--server",
            &s.api,
            "--token",
            &s.token,
            "--ca-file",
        ])
        .arg(Path::new(other.path()).join("d/ca/root.crt"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach the Sigil API"));
    s.shutdown().await;
}
