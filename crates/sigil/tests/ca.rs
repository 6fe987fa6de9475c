//! `sigil init` and `sigil serve` on each CA algorithm, key protection at rest, and refusals.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use serde_json::{Value, json};

use common::{SpawnedServer, openssl, p256_csr, root_client};

const PASSPHRASE: &str = "a-long-test-passphrase-0123";

fn sigil(args: &[&str], dir: &Path, passphrase: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sigil"));
    cmd.args(args)
        .arg("--data-dir")
        .arg(dir)
        .env_remove("SIGIL_CA_PASSPHRASE");
    if let Some(p) = passphrase {
        cmd.env("SIGIL_CA_PASSPHRASE", p);
    }
    cmd.output().unwrap()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_ca_algorithm_issues_verifiable_device_certificates() {
    for (algorithm, expect_in_root) in [
        ("ecdsa-p256", "NIST CURVE: P-256"),
        ("ecdsa-p384", "NIST CURVE: P-384"),
        ("ed25519", "ED25519"),
        ("rsa-3072", "Public-Key: (3072 bit)"),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let out = sigil(&["init", "--algorithm", algorithm], &data, Some(PASSPHRASE));
        assert!(
            out.status.success(),
            "{algorithm}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !data.join("ca-passphrase").exists(),
            "passphrase from the environment is not written down"
        );

        let root = data.join("ca/root.crt");
        let issuing = data.join("ca/issuing.crt");
        let text = openssl(
            tmp.path(),
            &["x509", "-in", root.to_str().unwrap(), "-noout", "-text"],
        );
        assert!(text.contains(expect_in_root), "{algorithm}: {text}");
        assert!(text.contains("CA:TRUE, pathlen:1"), "{text}");
        let text = openssl(
            tmp.path(),
            &["x509", "-in", issuing.to_str().unwrap(), "-noout", "-text"],
        );
        assert!(
            text.contains("CA:TRUE, pathlen:0") && text.contains("Certificate Sign, CRL Sign"),
            "{text}"
        );
        assert!(
            text.contains("X509v3 Authority Key Identifier")
                && text.contains("X509v3 Subject Key Identifier")
        );
        let v = openssl(
            tmp.path(),
            &[
                "verify",
                "-CAfile",
                root.to_str().unwrap(),
                issuing.to_str().unwrap(),
            ],
        );
        assert!(v.trim().ends_with(": OK"), "{v}");

        // Keys at rest: encrypted PKCS#8, owner-only, readable by openssl with the passphrase only.
        for key in ["ca/root.key", "ca/issuing.key"] {
            let path = data.join(key);
            assert_eq!(mode(&path), 0o600, "{key}");
            assert!(
                std::fs::read_to_string(&path)
                    .unwrap()
                    .starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----")
            );
            openssl(
                tmp.path(),
                &[
                    "pkey",
                    "-in",
                    path.to_str().unwrap(),
                    "-passin",
                    &format!("pass:{PASSPHRASE}"),
                    "-noout",
                ],
            );
            let wrong = Command::new("openssl")
                .args([
                    "pkey",
                    "-in",
                    path.to_str().unwrap(),
                    "-passin",
                    "pass:wrong",
                    "-noout",
                ])
                .output()
                .unwrap();
            assert!(!wrong.status.success());
        }
        assert_eq!(mode(&data), 0o700);

        // The real server on this CA issues a device certificate that chains to it.
        let server =
            SpawnedServer::spawn(&data, None, &[("SIGIL_CA_PASSPHRASE", PASSPHRASE)]).unwrap();
        assert_eq!(mode(&data.join("admin.token")), 0o600);
        assert_eq!(mode(&data.join("sigil.db")), 0o600);
        let token = std::fs::read_to_string(data.join("admin.token"))
            .unwrap()
            .trim()
            .to_owned();
        let http = root_client(&data);
        let api = server.api();
        let post = |path: &str, body: Value| {
            http.post(format!("{api}{path}"))
                .bearer_auth(&token)
                .json(&body)
                .send()
        };
        let p: Value = post(
            "/api/v1/products",
            json!({"name": "P", "manufacturer": "M", "support_end": "2030-01-01"}),
        )
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        let d: Value = post(
            "/api/v1/devices",
            json!({"product_id": p["id"], "serial_number": "1"}),
        )
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        let csr = p256_csr(tmp.path(), "dev");
        let r = post(
            &format!("/api/v1/devices/{}/certificates", d["id"].as_str().unwrap()),
            json!({"csr": csr}),
        )
        .await
        .unwrap();
        assert_eq!(r.status().as_u16(), 201, "{algorithm}");
        let issued: Value = r.json().await.unwrap();
        std::fs::write(
            tmp.path().join("dev.crt"),
            issued["certificate"].as_str().unwrap(),
        )
        .unwrap();
        let v = openssl(
            tmp.path(),
            &[
                "verify",
                "-CAfile",
                root.to_str().unwrap(),
                "-untrusted",
                issuing.to_str().unwrap(),
                "dev.crt",
            ],
        );
        assert_eq!(v.trim(), "dev.crt: OK", "{algorithm}");
    }
}

#[test]
fn key_protection_refusals_are_clear() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let out = sigil(&["init"], &data, Some(PASSPHRASE));
    assert!(out.status.success());

    // init never overwrites an existing CA.
    let out = sigil(&["init"], &data, Some(PASSPHRASE));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already holds a Sigil CA"));

    // serve: wrong passphrase, none at all, too short.
    let e = SpawnedServer::spawn(
        &data,
        None,
        &[("SIGIL_CA_PASSPHRASE", "the-wrong-passphrase-xx")],
    )
    .err()
    .expect("refused");
    assert!(e.contains("wrong passphrase"), "{e}");
    let e = SpawnedServer::spawn(&data, None, &[])
        .err()
        .expect("refused");
    assert!(e.contains("set SIGIL_CA_PASSPHRASE"), "{e}");
    let e = SpawnedServer::spawn(&data, None, &[("SIGIL_CA_PASSPHRASE", "short")])
        .err()
        .expect("refused");
    assert!(e.contains("too short"), "{e}");
    assert!(
        !data.join("admin.token").exists(),
        "nothing started, nothing written"
    );
}

#[test]
fn development_default_generates_a_private_passphrase_file_and_warns() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let out = sigil(&["init"], &data, None);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("development setting"), "{err}");
    let file = data.join("ca-passphrase");
    assert_eq!(mode(&file), 0o600);
    let passphrase = std::fs::read_to_string(&file).unwrap();
    assert!(passphrase.trim().len() >= 40, "256 random bits");
    openssl(
        tmp.path(),
        &[
            "pkey",
            "-in",
            data.join("ca/issuing.key").to_str().unwrap(),
            "-passin",
            &format!("file:{}", file.display()),
            "-noout",
        ],
    );

    // A passphrase file others can read is refused (fail closed).
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = SpawnedServer::spawn(&data, None, &[])
        .err()
        .expect("refused");
    assert!(e.contains("readable by group or others"), "{e}");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let server =
        SpawnedServer::spawn(&data, None, &[]).expect("starts with the generated passphrase");
    drop(server);
}

#[test]
fn unknown_algorithm_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let out = sigil(
        &["init", "--algorithm", "dsa-1024"],
        &tmp.path().join("d"),
        None,
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown key algorithm `dsa-1024`"));
    assert!(!tmp.path().join("d").exists());
}
