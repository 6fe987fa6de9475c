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

    // The README's declarations: what the compliance checks compare devices with.
    let first = json(sigil(
        &s,
        &[
            "product",
            "declare",
            product,
            "--current-firmware",
            "1.0.0",
            "--remediation-days",
            "30",
            "--json",
        ],
    ));
    assert_eq!(first["current_firmware"][0], "1.0.0");
    let declared = json(sigil(
        &s,
        &[
            "product",
            "declare",
            product,
            "--current-firmware",
            "2.0.0",
            "--service",
            "tcp/8883",
            "--sbom",
            "2.0.0=https://example.com/sbom-2.0.0.cdx.json",
            "--remediation-days",
            "30",
            "--json",
        ],
    ));
    assert_eq!(declared["remediation_days"], 30);
    assert_eq!(declared["allowed_services"][0], "tcp/8883");
    let shown = json(sigil(&s, &["product", "declaration", product, "--json"]));
    assert_eq!(shown, declared);
    let out = sigil(
        &s,
        &[
            "product",
            "declare",
            product,
            "--current-firmware",
            "2.0.0",
            "--remediation-days",
            "0",
        ],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("remediation_days 0 is out of range"),
        "{out:?}"
    );
    let out = sigil(
        &s,
        &[
            "product",
            "declare",
            product,
            "--current-firmware",
            "2.0.0",
            "--sbom",
            "2.0.0",
        ],
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("expected VERSION=REFERENCE"),
        "{out:?}"
    );
    assert_eq!(
        json(sigil(&s, &["product", "declaration", product, "--json"])),
        declared,
        "a refused declaration changes nothing"
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

/// Output to a pipe whose reader has gone (`sigil ... | head`) ends the command quietly,
/// with no panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_pipe_is_not_a_crash() {
    let s = TestServer::start(Db::Sqlite).await.unwrap();
    s.create_product("Thermostat").await;
    let sigil = common::sigil_command(&s, &["product", "list"]);
    let program = sigil.get_program().to_owned();
    let mut command = Command::new("bash");
    command
        .arg("-c")
        // `true` exits at once, before sigil has its answer to write.
        .arg("set -o pipefail; \"$0\" product list | true")
        .arg(program);
    for (k, v) in sigil.get_envs() {
        if let Some(v) = v {
            command.env(k, v);
        }
    }
    if let Some(dir) = sigil.get_current_dir() {
        command.current_dir(dir);
    }
    let out = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(out.status.success(), "{out:?}");
}
