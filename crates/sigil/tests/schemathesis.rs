//! Schemathesis (PyPI) over the whole API of the real `sigil serve`: every operation, every
//! phase (examples, coverage, fuzzing, stateful sequences) and every check, configured by
//! `tests/data/schemathesis.toml` (which says where and why one check is off). The document
//! must describe every answer the server gives, and the server must accept what the document
//! calls valid and refuse what it calls invalid.
//!
//! Two runs: token revocation and logout would end the run's own credential, so they run on
//! their own, as an administrator logged in with password and TOTP (logout ends a session).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use serde_json::{Value, json};

use common::SpawnedServer;

const CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/schemathesis.toml");
const SESSION_CONFIG: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/schemathesis-session.toml"
);
const CREDENTIAL_ENDING: [&str; 2] = ["/api/v1/tokens/{id}/revoke", "/api/v1/auth/logout"];

/// One Schemathesis run.
struct Run<'a> {
    config: &'a str,
    /// Extra arguments: the credential header, operation filters.
    args: Vec<String>,
    /// The session cookie, read by the session config from the environment.
    session: Option<&'a str>,
    seconds: u32,
    /// Each of the four phases must have run and passed.
    every_phase: bool,
}

fn schemathesis(server: &SpawnedServer, root_ca: &str, run: &Run) {
    // Schemathesis keeps a cache where it runs: not in the source tree.
    let scratch = tempfile::tempdir().unwrap();
    let mut command = Command::new("st");
    command
        .current_dir(scratch.path())
        .args(["--config-file", run.config, "run"])
        .arg(format!("{}/api/v1/openapi.json", server.api()))
        .args(["--tls-verify", root_ca])
        .args(["-H", "X-Sigil-CSRF: 1"])
        .args([
            "--max-time",
            &run.seconds.to_string(),
            // One worker: Hypothesis' lambda-source cache is not thread-safe (a run with two
            // once failed with "AST constructor recursion depth mismatch", no API request
            // involved).
            "--workers",
            "1",
            "--no-color",
        ])
        .args(&run.args);
    if let Some(cookie) = run.session {
        command.env("SIGIL_ST_SESSION", cookie);
    }
    let out = command
        .output()
        .expect("schemathesis (`st`, PyPI package schemathesis) on PATH; .ci/run installs it");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found failures:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for phase in ["Examples", "Coverage", "Fuzzing", "Stateful"] {
        assert!(
            !run.every_phase || stdout.contains(&format!("✅ {phase}")),
            "{phase} did not run and pass:\n{stdout}"
        );
    }
}

#[test]
fn schemathesis_finds_the_api_as_documented() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    // Schemathesis sends thousands of unauthenticated requests on purpose: the per-address
    // limit of failed authentications would answer them 429.
    let server =
        SpawnedServer::spawn_with(&data, None, &[], &["--failed-auth-limit", "100000"]).unwrap();
    let root_ca = data.join("ca/root.crt");
    let root_ca = root_ca.to_str().unwrap();
    let token = std::fs::read_to_string(data.join("admin.token")).unwrap();
    let token = token.trim();

    let mut args = vec!["-H".to_owned(), format!("Authorization: Bearer {token}")];
    for path in CREDENTIAL_ENDING {
        args.extend(["--exclude-path".to_owned(), path.to_owned()]);
    }
    let main = Run {
        config: CONFIG,
        args,
        session: None,
        seconds: 150,
        every_phase: true,
    };
    schemathesis(&server, root_ca, &main);

    // The credential-ending operations, as an administrator's session.
    let http = common::root_client(&data);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let cookie = runtime.block_on(async {
        let password = "schemathesis-admin-password";
        let created: Value = http
            .post(format!("{}/api/v1/operators", server.api()))
            .bearer_auth(token)
            .json(&json!({"username": "st", "role": "admin", "password": password}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let seed = created["totp_secret"].as_str().unwrap();
        // Schemathesis has just sent logins of its own: past the per-address limit the server
        // answers 429 with Retry-After, and a client waits as it is told.
        let mut attempts = 0;
        let login = loop {
            let totp = common::operators::totp_code(seed, 0);
            let login = http
                .post(format!("{}/api/v1/auth/login", server.api()))
                .json(&json!({"username": "st", "password": password, "totp": totp}))
                .send()
                .await
                .unwrap();
            let wait = login
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            match wait {
                Some(seconds) if login.status() == 429 && attempts < 3 => {
                    attempts += 1;
                    tokio::time::sleep(std::time::Duration::from_secs(seconds + 1)).await;
                }
                _ => break login,
            }
        };
        let status = login.status();
        let Some(set_cookie) = login.headers().get("set-cookie") else {
            panic!(
                "login refused: {status} {}",
                login.text().await.unwrap_or_default()
            );
        };
        let set_cookie = set_cookie.to_str().unwrap().to_owned();
        set_cookie.split(';').next().unwrap().to_owned()
    });
    let mut args = Vec::new();
    for path in CREDENTIAL_ENDING {
        args.extend(["--include-path".to_owned(), path.to_owned()]);
    }
    let value = cookie.split_once('=').unwrap().1;
    let ending = Run {
        config: SESSION_CONFIG,
        args,
        session: Some(value),
        seconds: 20,
        every_phase: false,
    };
    schemathesis(&server, root_ca, &ending);
}
