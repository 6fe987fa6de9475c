//! Regression tests for the access defects of the hardening issue (#14), each named after the
//! attack it stops: self-promotion, audit flooding, a resurrected bootstrap token, a second
//! server on one data directory, and the smaller authorisation slips.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use reqwest::StatusCode;
use serde_json::{Value, json};

use common::operators::*;
use common::{Db, TestServer};

/// `defaults` with one more policy, `@id(id)`.
fn with_policy(defaults: &Value, id: &str, policy: &str) -> String {
    format!(
        "{}\n@id(\"{id}\")\n{policy}\n",
        defaults["text"].as_str().unwrap()
    )
}

/// Apply `text` as `who`: the answer.
async fn apply_policy(
    s: &TestServer,
    who: &Session,
    text: &str,
    comment: &str,
) -> (StatusCode, Value) {
    who.call(
        s,
        "POST",
        "/api/v1/policy",
        Some(json!({"text": text, "comment": comment})),
    )
    .await
}

fn officer_login_body(officer: &Value, username: &str) -> Value {
    json!({"username": username, "password": password(username),
           "totp": totp_code(officer["totp_secret"].as_str().unwrap(), 0)})
}

/// Attack: a security officer (password + TOTP) applies a policy granting its role everything,
/// then creates itself an admin account. Neither may pass: nobody grants more than they hold,
/// and a policy that widens its applier's own rights needs another administrator.
async fn security_officer_cannot_make_itself_admin(db: Db) {
    let Some(s) = TestServer::start(db).await else {
        return;
    };
    let officer = create_operator(&s, "olga", "security-officer").await;
    let olga = login(&s, officer_login_body(&officer, "olga"))
        .await
        .unwrap();
    let (_, current) = s.get("/api/v1/policy").await;
    let widened = with_policy(
        &current,
        "officer-everything",
        "permit (principal in Sigil::Role::\"security-officer\", action, resource);",
    );
    let (st, e) = apply_policy(&s, &olga, &widened, "me").await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{e}");
    assert_eq!(e["code"], "policy-widens-own-rights");
    assert!(
        e["detail"].as_str().unwrap().contains("operator.manage"),
        "{e}"
    );
    let (_, now) = s.get("/api/v1/policy").await;
    assert_eq!(now["version"], 0, "nothing was applied");
    assert_eq!(s.count("policy_versions").await, 0);

    // An administrator lets officers manage accounts. They still may not create an account,
    // or a token, of a role stronger than their own.
    let accounts = with_policy(
        &current,
        "officers-manage-accounts",
        "permit (principal in Sigil::Role::\"security-officer\", action == Sigil::Action::\"operator.manage\", resource);",
    );
    let (st, v) = s
        .post(
            "/api/v1/policy",
            json!({"text": accounts, "comment": "officers manage accounts"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let operators = s.count("operators").await;
    let (st, e) = olga
        .call(
            &s,
            "POST",
            "/api/v1/operators",
            Some(json!({"username": "mallory", "role": "admin", "password": password("mallory")})),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{e}");
    assert_eq!(e["code"], "grant-exceeds-own-rights");
    assert_eq!(s.count("operators").await, operators);
    let (st, e) = olga
        .call(
            &s,
            "POST",
            "/api/v1/tokens",
            Some(json!({"name": "x", "role": "admin", "scopes": ["*"], "expires_in_seconds": 600})),
        )
        .await;
    assert_eq!(
        (st, e["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("grant-exceeds-own-rights")),
        "{e}"
    );
    // What it holds it may hand on.
    let (st, e) = olga
        .call(
            &s,
            "POST",
            "/api/v1/operators",
            Some(json!({"username": "audrey", "role": "auditor", "password": password("audrey")})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{e}");
    let (st, e) = olga
        .call(
            &s,
            "POST",
            "/api/v1/tokens",
            Some(json!({"name": "ci", "role": "security-officer", "scopes": ["audit"], "expires_in_seconds": 600})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{e}");

    // Nor may it widen others it controls: its own tokens become admins under this policy.
    let tokens_everything = with_policy(
        &current,
        "tokens-everything",
        "permit (principal is Sigil::ApiToken, action, resource);",
    );
    let (st, e) = apply_policy(&s, &olga, &tokens_everything, "tokens").await;
    assert_eq!(
        (st, e["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("grant-exceeds-own-rights")),
        "{e}"
    );

    // Both refusals are access decisions in the audit log, under the officer.
    let denied = audit(&s, "access.denied").await;
    let olga_id = olga.body["operator"]["id"].as_str().map(str::to_owned);
    let codes: Vec<&str> = denied
        .iter()
        .filter(|e| olga_id.is_none() || e["actor"]["id"].as_str() == olga_id.as_deref())
        .filter_map(|e| e["details"]["code"].as_str())
        .collect();
    assert!(codes.contains(&"policy-widens-own-rights"), "{denied:?}");
    assert!(codes.contains(&"grant-exceeds-own-rights"), "{denied:?}");

    // A second administrator, whom the policy does not widen, may apply it.
    let (st, v) = s
        .post(
            "/api/v1/policy",
            json!({"text": widened, "comment": "approved by the second admin"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    s.shutdown().await;
}
both_backends!(security_officer_cannot_make_itself_admin);

/// An auditor reads compliance but does not write history; a missing CSRF header is an access
/// denial of a known caller, not a failed authentication.
async fn auditor_cannot_run_evaluations_and_csrf_is_an_access_denial(db: Db) {
    let Some(s) = TestServer::start(db).await else {
        return;
    };
    create_operator(&s, "audrey", "auditor").await;
    let audrey = login(
        &s,
        json!({"username": "audrey", "password": password("audrey")}),
    )
    .await
    .unwrap();
    let runs = s.count("compliance_runs").await;
    let (st, e) = audrey
        .call(&s, "POST", "/api/v1/compliance/eu-cra/evaluate", None)
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{e}");
    assert_eq!(s.count("compliance_runs").await, runs);
    let (st, _) = audrey
        .call(&s, "GET", "/api/v1/compliance/eu-cra", None)
        .await;
    assert_eq!(st, StatusCode::OK);

    let failed_before = audit(&s, "auth.failed").await.len();
    let r = s
        .http
        .post(format!("{}/api/v1/compliance/eu-cra/evaluate", s.api))
        .header("cookie", audrey.cookie_pair())
        .send()
        .await
        .unwrap();
    let (st, e) = common::split(r).await;
    assert_eq!(
        (st, e["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("csrf")),
        "{e}"
    );
    assert_eq!(audit(&s, "auth.failed").await.len(), failed_before);
    let denied = audit(&s, "access.denied").await;
    assert_eq!(denied[0]["details"]["code"], "csrf", "{:?}", denied[0]);
    s.shutdown().await;
}
both_backends!(auditor_cannot_run_evaluations_and_csrf_is_an_access_denial);

/// A sequence bound beyond i64 (the database's sequence numbers) is refused as a bad
/// parameter (422, saying why), not a 500 with a false corruption alarm.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_audit_sequence_bounds_are_not_a_server_error() {
    let s = TestServer::start(Db::Sqlite).await.unwrap();
    for query in ["after=9223372036854775808", "before=18446744073709551615"] {
        let (st, e) = s.get(&format!("/api/v1/audit/entries?{query}")).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{query}: {e}");
        assert!(
            e["detail"]
                .as_str()
                .unwrap()
                .contains("at most 9223372036854775807"),
            "{e}"
        );
    }
    let (st, page) = s
        .get("/api/v1/audit/entries?before=9223372036854775807&limit=5")
        .await;
    assert_eq!(st, StatusCode::OK, "{page}");
    assert_eq!(page["items"].as_array().unwrap().len(), 5);
    let (st, _) = s
        .get("/api/v1/audit/entries?after=18446744073709551616")
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    s.shutdown().await;
}

/// Attack: flood the API and EST with bad credentials to grow the append-only log without
/// bound, and hide among the entries. Past the limit, failures are answered 429 and counted;
/// one summary entry per address and window names the address and the count.
async fn failed_authentication_flood_is_limited_and_summarised(db: Db) {
    let Some(s) = TestServer::start_with(db, |c| {
        c.failures_per_window = 5;
        c.failure_window = std::time::Duration::from_secs(3);
    })
    .await
    else {
        return;
    };
    // The admin token's first use is an entry of its own: make it before counting.
    let (st, _) = s.get("/api/v1/devices").await;
    assert_eq!(st, StatusCode::OK);
    let entries_before = s.count("audit_entries").await;
    let mut statuses = Vec::new();
    for i in 0..60 {
        let r = s
            .http
            .get(format!("{}/api/v1/devices", s.api))
            .bearer_auth(format!("sigil_wrong_{i}"))
            .send()
            .await
            .unwrap();
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            assert!(r.headers().get("retry-after").is_some());
        }
        statuses.push(r.status());
    }
    assert!(
        statuses[..5]
            .iter()
            .all(|st| *st == StatusCode::UNAUTHORIZED),
        "{statuses:?}"
    );
    assert!(
        statuses[5..]
            .iter()
            .all(|st| *st == StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    // The valid token still works from the same address.
    let (st, _) = s.get("/api/v1/devices").await;
    assert_eq!(st, StatusCode::OK);
    let failed = audit(&s, "auth.failed").await;
    assert_eq!(
        failed.len(),
        5,
        "only the first failures are entries of their own"
    );
    assert!(
        failed
            .iter()
            .all(|e| e["details"]["source_ip"] == "127.0.0.1"),
        "{failed:?}"
    );

    // Wait for the window to end and its summary to be written.
    let mut summary = None;
    for _ in 0..100 {
        if let Some(e) = audit(&s, "auth.failures_summarised").await.first() {
            summary = Some(e.clone());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let summary = summary.expect("a summary entry");
    assert_eq!(summary["details"]["source_ip"], "127.0.0.1");
    assert_eq!(summary["details"]["suppressed"], 55);
    assert_eq!(summary["details"]["channels"]["api"], 55);
    // 60 refusals cost 5 entries and 1 summary (and the reads of this test nothing).
    assert_eq!(s.count("audit_entries").await, entries_before + 6);

    // EST with wrong tokens: the same ledger, channel `est`.
    let product = s.create_product("P").await;
    let device = s.create_device(&product, "SN-1").await;
    common::est::csr_b64(s.dir.path(), "x");
    let mut est = Vec::new();
    for _ in 0..8 {
        let r = common::est::enroll(
            &s,
            Some(&format!("{device}:sigil_wrong")),
            common::est::PKCS10,
            "x.b64",
        );
        est.push(r.status);
    }
    assert_eq!(est.iter().filter(|st| **st == 429).count(), 3, "{est:?}");
    s.shutdown().await;
}
both_backends!(failed_authentication_flood_is_limited_and_summarised);

fn sigil_admin_recover(s: &TestServer) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sigil"))
        .args(["admin", "recover", "--reason", "lost the admin account"])
        .arg("--data-dir")
        .arg(s.data_dir())
        .args(["--database-url", &s.database_url])
        .output()
        .unwrap()
}

/// Attack: revoke the bootstrap token as the README says, then restart the service (or restore
/// a backup of the data directory): the next start must not mint a new admin token. Recovery
/// is an explicit, audited command, and it cannot run beside a live server.
async fn revoked_bootstrap_token_stays_revoked_after_restart(db: Db) {
    let Some(mut s) = TestServer::start(db).await else {
        return;
    };
    let (_, tokens) = s.get("/api/v1/tokens").await;
    let bootstrap = tokens
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == sigil_server::ADMIN_TOKEN_NAME)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Recovery beside a running server is refused by the single-process lock.
    let busy = sigil_admin_recover(&s);
    assert!(!busy.status.success());
    assert!(
        String::from_utf8_lossy(&busy.stderr).contains("another Sigil process"),
        "{}",
        String::from_utf8_lossy(&busy.stderr)
    );
    let (st, e) = s
        .post(&format!("/api/v1/tokens/{bootstrap}/revoke"), json!({}))
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT, "{e}");

    s.handle.take().unwrap().shutdown().await;
    let mut config = sigil_server::ServerConfig::new(s.data_dir());
    config.database_url = Some(s.database_url.clone());
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.pki_listen = "127.0.0.1:0".parse().unwrap();
    let handle = sigil_server::start(config.clone(), sigil_server::system_clock())
        .await
        .unwrap();
    assert_eq!(
        handle.new_admin_token, None,
        "no new admin token on restart"
    );
    let on_disk = std::fs::read_to_string(s.data_dir().join("admin.token")).unwrap();
    assert_eq!(on_disk.trim(), s.token, "admin.token was not rewritten");
    s.api = format!("https://localhost:{}", handle.api_addr.port());
    let (st, e) = s.get("/api/v1/devices").await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{e}");
    handle.shutdown().await;

    // With the server stopped, recovery writes a new token and says so in the log.
    let out = sigil_admin_recover(&s);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let handle = sigil_server::start(config, sigil_server::system_clock())
        .await
        .unwrap();
    s.api = format!("https://localhost:{}", handle.api_addr.port());
    s.token = std::fs::read_to_string(s.data_dir().join("admin.token"))
        .unwrap()
        .trim()
        .to_owned();
    let (st, _) = s.get("/api/v1/devices").await;
    assert_eq!(st, StatusCode::OK);
    let recovered = audit(&s, "admin.recovered").await;
    assert_eq!(recovered.len(), 1);
    assert_eq!(recovered[0]["details"]["reason"], "lost the admin account");
    handle.shutdown().await;
}
both_backends!(revoked_bootstrap_token_stays_revoked_after_restart);

/// Attack (by accident as often as not): a second `sigil serve` on the same data directory, or
/// on the same database from another directory. It would keep its own revoked set and answer
/// OCSP `good` for what the first revoked; it must refuse to start, saying why.
async fn a_second_server_on_one_data_directory_or_database_is_refused(db: Db) {
    let Some(s) = TestServer::start(db).await else {
        return;
    };
    let fresh = |dir: std::path::PathBuf| {
        let mut c = sigil_server::ServerConfig::new(dir);
        c.database_url = Some(s.database_url.clone());
        c.listen = "127.0.0.1:0".parse().unwrap();
        c.pki_listen = "127.0.0.1:0".parse().unwrap();
        c
    };
    // The same data directory (and database).
    let Err(e) = sigil_server::start(fresh(s.data_dir()), sigil_server::system_clock()).await
    else {
        panic!("a second server on the same data directory started");
    };
    assert!(e.to_string().contains("another Sigil process"), "{e}");
    // Another data directory, the same database.
    let other = tempfile::tempdir().unwrap();
    let Err(e) = sigil_server::start(
        fresh(other.path().join("data")),
        sigil_server::system_clock(),
    )
    .await
    else {
        panic!("a second server on the same database started");
    };
    assert!(e.to_string().contains("another Sigil process"), "{e}");
    // The real binary says so and exits.
    let spawned = common::SpawnedServer::spawn(&s.data_dir(), Some(&s.database_url), &[]);
    let Err(stderr) = spawned else {
        panic!("sigil serve started beside a running server");
    };
    assert!(stderr.contains("another Sigil process"), "{stderr}");
    s.shutdown().await;
}
both_backends!(a_second_server_on_one_data_directory_or_database_is_refused);
