//! `sigil login`: a person's session for the CLI (password and TOTP code), kept in a file only
//! they can read, used instead of any token, and ended by `sigil logout`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};

use reqwest::StatusCode;
use serde_json::json;

use common::operators::{audit, create_operator, password, totp_code};
use common::{Db, TestServer, p256_csr};

/// The CLI as a person on their laptop runs it: the server's URL and CA, no token at all.
fn person(s: &TestServer, config: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sigil"))
        .args(args)
        .env("SIGIL_SERVER", &s.api)
        .env("SIGIL_CA_FILE", s.data_dir().join("ca/root.crt"))
        .env("SIGIL_DATA_DIR", "/nonexistent")
        .env("SIGIL_CONFIG_DIR", config)
        .env("SIGIL_OPERATOR_PASSWORD", password("olga"))
        .env_remove("SIGIL_TOKEN")
        .env_remove("SIGIL_TOTP")
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_logs_in_from_the_cli_and_needs_no_token() {
    let Some(s) = TestServer::start(Db::Sqlite).await else {
        return;
    };
    let officer = create_operator(&s, "olga", "security-officer").await;
    let seed = officer["totp_secret"].as_str().unwrap().to_owned();
    let product = s.create_product("Gateway").await;
    let device = s.create_device(&product, "gw-1").await;
    let csr = p256_csr(s.dir.path(), "gw-1");
    let (st, _) = s
        .post(
            &format!("/api/v1/devices/{device}/certificates"),
            json!({"csr": csr}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let config = tempfile::tempdir().unwrap();
    let config = config.path();

    // Without a session or a token, the CLI says how to get one.
    let out = person(&s, config, &["device", "list"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("run `sigil login`"), "{}", text(&out));

    // A wrong code: refused, and nothing kept.
    let wrong = if totp_code(&seed, 0) == "000000" {
        "111111"
    } else {
        "000000"
    };
    let out = person(
        &s,
        config,
        &["login", "--username", "olga", "--totp", wrong],
    );
    assert!(!out.status.success());
    assert!(text(&out).contains("invalid TOTP code"), "{}", text(&out));
    assert!(
        !config.join("sessions").exists()
            || std::fs::read_dir(config.join("sessions"))
                .unwrap()
                .next()
                .is_none()
    );

    let code = totp_code(&seed, 0);
    let out = person(
        &s,
        config,
        &["login", "--username", "olga", "--totp", &code],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("as olga (security-officer, with a second factor)"),
        "{}",
        text(&out)
    );
    let sessions = config.join("sessions");
    assert_eq!(
        std::fs::metadata(&sessions).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let file = std::fs::read_dir(&sessions)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let kept = std::fs::read_to_string(&file).unwrap();
    assert!(
        !kept.contains(&password("olga")),
        "the password is never kept"
    );

    // The same code again is a replay: refused by the server.
    let out = person(
        &s,
        config,
        &["login", "--username", "olga", "--totp", &code],
    );
    assert!(!out.status.success());

    // The session does what the person may: read, and revoke (a trust change: it needs the
    // second factor the session was opened with), recorded under the person's account.
    let out = person(&s, config, &["device", "list", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("gw-1"));
    let out = person(
        &s,
        config,
        &["device", "revoke", &device, "--reason", "key-compromise"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let revoked = audit(&s, "certificate.revoked").await;
    assert_eq!(revoked[0]["actor"]["id"], officer["id"], "{revoked:#?}");
    // And not what the person may not: creating devices is not a security officer's.
    let out = person(
        &s,
        config,
        &[
            "device",
            "create",
            "--product",
            &product,
            "--serial",
            "gw-2",
        ],
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains("may not device.create"),
        "{}",
        text(&out)
    );

    let out = person(&s, config, &["logout"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!file.exists(), "the session file is gone");
    let out = person(&s, config, &["device", "list"]);
    assert!(!out.status.success());
    // The server ended it too: the old cookie no longer works.
    let r = s
        .http
        .get(format!("{}/api/v1/auth/me", s.api))
        .header(
            "cookie",
            format!(
                "sigil_session={}",
                serde_json::from_str::<serde_json::Value>(&kept).unwrap()["cookie"]
                    .as_str()
                    .unwrap()
            ),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    s.shutdown().await;
}
