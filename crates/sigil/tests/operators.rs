//! People and automation on the API: Argon2id passwords, TOTP second factor with replay
//! protection, lockout, session cookies, scoped expiring tokens, every route authorised by the
//! Cedar policies, policy versions with rollback, and every refusal in the audit log.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use reqwest::StatusCode;
use serde_json::json;

use common::operators::*;
use common::{Db, TestServer};

async fn operators_are_authenticated_and_authorised(db: Db) {
    let Some(s) = TestServer::start(db).await else {
        return;
    };
    let product = s.create_product("Meter").await;
    let device = s.create_device(&product, "M-1").await;
    let csr = common::p256_csr(s.dir.path(), "m1");
    let (st, _) = s
        .post(
            &format!("/api/v1/devices/{device}/certificates"),
            json!({"csr": csr}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);

    // Accounts: trust-changing roles always get a TOTP seed; an auditor does not need one.
    let officer = create_operator(&s, "olga", "security-officer").await;
    let seed = officer["totp_secret"].as_str().unwrap().to_owned();
    assert!(
        officer["totp_uri"]
            .as_str()
            .unwrap()
            .starts_with("otpauth://totp/Sigil:olga?")
    );
    let auditor = create_operator(&s, "audrey", "auditor").await;
    assert!(auditor["totp_secret"].is_null());
    create_operator(&s, "pete", "provisioner").await;
    let (st, e) = s
        .post(
            "/api/v1/operators",
            json!({"username": "weak", "role": "operator", "password": "short"}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    let (st, e) = s
        .post(
            "/api/v1/operators",
            json!({"username": "olga", "role": "auditor", "password": password("x")}),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{e}");
    // The database holds an Argon2id hash and a sealed seed, never the secrets.
    let stored: (String, Vec<u8>) = {
        use sqlx::Row;
        let row =
            sqlx::query("SELECT password_hash, totp_secret FROM operators WHERE username = 'olga'")
                .fetch_one(s.store().pool())
                .await
                .unwrap();
        (row.get("password_hash"), row.get("totp_secret"))
    };
    assert!(stored.0.starts_with("$argon2id$v=19$"), "{}", stored.0);
    assert!(!stored.0.contains(&password("olga")));
    assert!(!String::from_utf8_lossy(&stored.1).contains(&seed));

    // Wrong password, unknown user: the same answer, and both audited.
    let (st, e) = login(
        &s,
        json!({"username": "olga", "password": "nope-nope-nope", "totp": totp_code(&seed, 0)}),
    )
    .await
    .err()
    .unwrap();
    assert_eq!(
        (st, e["detail"].as_str()),
        (
            StatusCode::UNAUTHORIZED,
            Some(
                "invalid username or password (after 5 failed logins an account is locked for 15 minutes)"
            )
        )
    );
    let (st, e2) = login(
        &s,
        json!({"username": "nobody", "password": "nope-nope-nope"}),
    )
    .await
    .err()
    .unwrap();
    assert_eq!(
        (st, &e2["detail"]),
        (StatusCode::UNAUTHORIZED, &e["detail"])
    );
    let denied = audit(&s, "auth.login").await;
    assert!(
        denied
            .iter()
            .any(|e| e["details"]["reason"] == "wrong password" && e["outcome"] == "denied"),
        "{denied:?}"
    );

    // Password right, no code: a second factor is required.
    let (st, e) = login(
        &s,
        json!({"username": "olga", "password": password("olga")}),
    )
    .await
    .err()
    .unwrap();
    assert_eq!(
        (st, e["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("totp-required")),
        "{e}"
    );
    // Wrong code.
    let wrong = if totp_code(&seed, 0) == "000000" {
        "111111"
    } else {
        "000000"
    };
    let (st, e) = login(
        &s,
        json!({"username": "olga", "password": password("olga"), "totp": wrong}),
    )
    .await
    .err()
    .unwrap();
    assert_eq!(
        (st, e["detail"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid TOTP code"))
    );
    // Right code: a session with MFA, in a secure cookie.
    let code = totp_code(&seed, 0);
    let olga = login(
        &s,
        json!({"username": "olga", "password": password("olga"), "totp": code}),
    )
    .await
    .unwrap();
    assert_eq!(olga.body["mfa"], true);
    for attribute in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(olga.cookie.contains(attribute), "{}", olga.cookie);
    }
    // The same code again is a replay.
    let (st, e) = login(
        &s,
        json!({"username": "olga", "password": password("olga"), "totp": code}),
    )
    .await
    .err()
    .unwrap();
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert!(
        e["detail"].as_str().unwrap().contains("already been used"),
        "{e}"
    );
    let replays = audit(&s, "auth.login").await;
    assert!(
        replays
            .iter()
            .any(|e| e["details"]["reason"] == "replayed TOTP code")
    );

    // The session works; changes need the CSRF header.
    let (st, me) = olga.call(&s, "GET", "/api/v1/auth/me", None).await;
    assert_eq!(
        (st, me["role"].as_str()),
        (StatusCode::OK, Some("security-officer"))
    );
    let no_csrf = s
        .http
        .post(format!("{}/api/v1/devices/{device}/suspend", s.api))
        .header("cookie", olga.cookie_pair())
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(no_csrf.status(), StatusCode::FORBIDDEN);

    // The auditor reads everything and changes nothing; the refusal is explained and audited.
    let audrey = login(
        &s,
        json!({"username": "audrey", "password": password("audrey")}),
    )
    .await
    .unwrap();
    assert_eq!(audrey.body["mfa"], false);
    let (st, _) = audrey
        .call(&s, "GET", &format!("/api/v1/devices/{device}"), None)
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = audrey.call(&s, "GET", "/api/v1/evidence", None).await;
    assert_eq!(st, StatusCode::OK);
    let (st, e) = audrey
        .call(
            &s,
            "POST",
            &format!("/api/v1/devices/{device}/revoke"),
            Some(json!({"reason": "keyCompromise"})),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{e}");
    assert_eq!(
        e["detail"],
        "role `auditor` may not certificate.revoke: no policy permits it"
    );
    let denials = audit(&s, "access.denied").await;
    let denial = &denials[0];
    assert_eq!(denial["actor"]["id"], auditor["id"]);
    assert_eq!(denial["details"]["action"], "certificate.revoke");
    assert_eq!(denial["subject"], "api:POST /api/v1/devices/{id}/revoke");
    // The security officer may revoke (MFA session).
    let (st, e) = olga
        .call(
            &s,
            "POST",
            &format!("/api/v1/devices/{device}/revoke"),
            Some(json!({"reason": "keyCompromise"})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{e}");

    // Lockout: five wrong passwords lock the account; then even the right one is refused.
    for _ in 1..=5 {
        let (st, e) = login(
            &s,
            json!({"username": "pete", "password": "wrong-password!"}),
        )
        .await
        .err()
        .unwrap();
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{e}");
    }
    // Locked, the right password is refused, with the very answer a wrong password or an
    // unknown account gets: nothing tells an attacker which accounts exist, are locked, or
    // which password was right.
    let (st, locked) = login(
        &s,
        json!({"username": "pete", "password": password("pete")}),
    )
    .await
    .err()
    .unwrap();
    let (_, unknown) = login(
        &s,
        json!({"username": "nobody-here", "password": "wrong-password!"}),
    )
    .await
    .err()
    .unwrap();
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{locked}");
    assert_eq!(locked, unknown);
    let refused = audit(&s, "auth.login").await;
    assert!(
        refused.iter().any(|e| e["details"]["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("account locked until"))),
        "{refused:#?}"
    );
    assert!(!audit(&s, "operator.locked").await.is_empty());
    let (_, operators) = s.get("/api/v1/operators").await;
    let pete = operators
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["username"] == "pete")
        .unwrap();
    assert!(pete["locked_until"].is_string(), "{pete}");

    // Tokens: scoped, expiring, hashed. An audit-scoped admin token reads but cannot create.
    let (st, t) = s
        .post("/api/v1/tokens", json!({"name": "reporting", "role": "admin", "scopes": ["audit"], "expires_in_seconds": 3600}))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{t}");
    let reporting = t["token"].as_str().unwrap().to_owned();
    let (st, _) = bearer(&s, &reporting, "GET", "/api/v1/devices", json!(null)).await;
    assert_eq!(st, StatusCode::OK);
    let (st, e) = bearer(
        &s,
        &reporting,
        "POST",
        "/api/v1/devices",
        json!({"product_id": product, "serial_number": "X"}),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert_eq!(
        e["detail"],
        "this token's scopes do not cover device.create"
    );
    assert_eq!(audit(&s, "access.denied").await[0]["actor"]["id"], t["id"]);
    // Tokens must expire, and scopes must be known.
    for bad in [
        json!({"name": "forever", "role": "admin", "scopes": ["*"], "expires_in_seconds": 400 * 86400}),
        json!({"name": "odd", "role": "admin", "scopes": ["everything"], "expires_in_seconds": 60}),
    ] {
        let (st, e) = s.post("/api/v1/tokens", bad).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    }
    // A security officer cannot mint an admin token.
    let (st, e) = olga
        .call(
            &s,
            "POST",
            "/api/v1/tokens",
            Some(json!({"name": "x", "role": "admin", "scopes": ["*"], "expires_in_seconds": 60})),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{e}");
    // An expired token is refused and the refusal audited.
    let now = time::OffsetDateTime::now_utc();
    let expired = sigil_authority::generate_token().unwrap();
    let expired_id = s
        .store()
        .insert_api_token(
            &sigil_audit::Actor::system("test"),
            &sigil_store::NewApiToken {
                name: "old",
                role: "admin",
                scopes: &["*".to_owned()],
                expires_at: Some(now - time::Duration::minutes(1)),
            },
            &sigil_authority::token_hash(&expired),
            now - time::Duration::hours(1),
        )
        .await
        .unwrap();
    let (st, e) = bearer(&s, &expired, "GET", "/api/v1/devices", json!(null)).await;
    assert_eq!(
        (st, e["detail"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("API token has expired"))
    );
    assert_eq!(
        audit(&s, "auth.failed").await[0]["actor"]["id"],
        expired_id.as_str()
    );
    // Revoked at once.
    let (st, _) = s
        .post(
            &format!("/api/v1/tokens/{}/revoke", t["id"].as_str().unwrap()),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, _) = bearer(&s, &reporting, "GET", "/api/v1/devices", json!(null)).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);

    // Logout ends the session.
    let (st, _) = audrey.call(&s, "POST", "/api/v1/auth/logout", None).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    let (st, e) = audrey.call(&s, "GET", "/api/v1/devices", None).await;
    assert_eq!(
        (st, e["detail"].as_str()),
        (
            StatusCode::UNAUTHORIZED,
            Some("session has ended; log in again")
        )
    );
    s.shutdown().await;
}
both_backends!(operators_are_authenticated_and_authorised);

async fn policies_are_versioned_audited_and_rolled_back(db: Db) {
    let Some(s) = TestServer::start(db).await else {
        return;
    };
    let officer = create_operator(&s, "olga", "security-officer").await;
    create_operator(&s, "audrey", "auditor").await;
    let olga = login(
        &s,
        json!({"username": "olga", "password": password("olga"), "totp": totp_code(officer["totp_secret"].as_str().unwrap(), 0)}),
    )
    .await
    .unwrap();
    let audrey = login(
        &s,
        json!({"username": "audrey", "password": password("audrey")}),
    )
    .await
    .unwrap();
    let (_, current) = s.get("/api/v1/policy").await;
    assert_eq!(current["version"], 0);
    let defaults = current["text"].as_str().unwrap().to_owned();

    // The auditor cannot apply policies.
    let (st, _) = audrey
        .call(
            &s,
            "POST",
            "/api/v1/policy",
            Some(json!({"text": defaults, "comment": "mine"})),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    // Invalid text changes nothing.
    let (st, e) = olga
        .call(&s, "POST", "/api/v1/policy", Some(json!({"text": "permit(principal, action, resource) when { resource.nope };", "comment": "bad"})))
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    // A policy that would lock the applier out is refused.
    let lockout = defaults.replace("@id(\"role-security-officer\")", "@id(\"role-security-officer-off\")\n@disabled(\"\")")
        .replace("Sigil::Action::\"policy.apply\", Sigil::Action::\"ca.manage\",\n    Sigil::Action::\"manufacturer_ca.manage\", Sigil::Action::\"audit.checkpoint\",", "Sigil::Action::\"ca.manage\",\n    Sigil::Action::\"manufacturer_ca.manage\", Sigil::Action::\"audit.checkpoint\",");
    assert_ne!(lockout, defaults);
    let (st, e) = olga
        .call(
            &s,
            "POST",
            "/api/v1/policy",
            Some(json!({"text": lockout, "comment": "oops"})),
        )
        .await;
    assert_eq!(
        (st, e["code"].as_str()),
        (StatusCode::CONFLICT, Some("policy-lockout")),
        "{e}"
    );

    // Version 1: auditors may no longer export evidence.
    let stricter = format!(
        "{defaults}\n@id(\"no-evidence-export\")\nforbid (principal in Sigil::Role::\"auditor\", action == Sigil::Action::\"evidence.export\", resource);\n"
    );
    let (st, v1) = olga
        .call(
            &s,
            "POST",
            "/api/v1/policy",
            Some(json!({"text": stricter, "comment": "evidence by request only"})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v1}");
    assert_eq!(v1["version"], 1);
    let (st, e) = audrey.call(&s, "GET", "/api/v1/evidence", None).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert_eq!(
        e["detail"],
        "evidence.export is forbidden by policy no-evidence-export"
    );

    // Roll back to the defaults (as version 2): allowed again.
    let (st, v2) = olga
        .call(
            &s,
            "POST",
            "/api/v1/policy/rollback",
            Some(json!({"version": 0})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v2}");
    assert_eq!(v2["version"], 2);
    let (st, _) = audrey.call(&s, "GET", "/api/v1/evidence", None).await;
    assert_eq!(st, StatusCode::OK);
    let (_, versions) = s.get("/api/v1/policy/versions").await;
    assert_eq!(versions.as_array().unwrap().len(), 2);
    assert_eq!(versions[0]["comment"], "rollback to version 0");
    let applied = audit(&s, "policy.applied").await;
    assert_eq!(applied.len(), 2);
    assert_eq!(applied[0]["details"]["rollback_to"], 0);
    assert_eq!(applied[1]["details"]["sha256"], v1["sha256"]);
    assert_eq!(applied[1]["actor"]["id"], officer["id"]);

    // The version in force survives a restart.
    let (st, _) = olga
        .call(
            &s,
            "POST",
            "/api/v1/policy/rollback",
            Some(json!({"version": 1})),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let data = s.data_dir();
    let url = s.database_url.clone();
    let mut s = s;
    if let Some(h) = s.handle.take() {
        h.shutdown().await;
    }
    let mut config = sigil_server::ServerConfig::new(&data);
    config.database_url = Some(url);
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.pki_listen = "127.0.0.1:0".parse().unwrap();
    let handle = sigil_server::start(config, sigil_server::system_clock())
        .await
        .unwrap();
    s.api = format!("https://localhost:{}", handle.api_addr.port());
    s.handle = Some(handle);
    let (_, current) = s.get("/api/v1/policy").await;
    assert_eq!(
        (current["version"].as_i64(), &current["sha256"]),
        (Some(3), &v1["sha256"])
    );
    s.shutdown().await;
}
both_backends!(policies_are_versioned_audited_and_rolled_back);

/// `sigil policy apply FILE`, `versions` and `rollback` against a running server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigil_policy_apply_and_rollback_from_the_cli() {
    let s = TestServer::start(Db::Sqlite).await.unwrap();
    let dir = s.dir.path();
    let stricter = format!(
        "{}\n@id(\"no-posture-for-operators\")\nforbid (principal in Sigil::Role::\"operator\", action == Sigil::Action::\"posture.read\", resource);\n",
        sigil_policy::DEFAULT_POLICIES
    );
    std::fs::write(dir.join("stricter.cedar"), &stricter).unwrap();
    std::fs::write(
        dir.join("broken.cedar"),
        "permit(principal, action, resource) when { 1 };",
    )
    .unwrap();

    let out = tokio::task::block_in_place(|| {
        common::sigil(
            &s,
            &["policy", "apply", "broken.cedar", "--comment", "typo"],
        )
    });
    assert!(!out.status.success());
    let (_, current) = s.get("/api/v1/policy").await;
    assert_eq!(current["version"], 0, "a refused policy changes nothing");

    let applied = common::ok(tokio::task::block_in_place(|| {
        common::sigil(
            &s,
            &[
                "policy",
                "apply",
                "stricter.cedar",
                "--comment",
                "tighten posture",
            ],
        )
    }));
    assert!(applied.contains("as version 1"), "{applied}");
    let (_, current) = s.get("/api/v1/policy").await;
    assert!(
        current["policies"]
            .as_array()
            .unwrap()
            .contains(&json!("no-posture-for-operators"))
    );

    common::ok(tokio::task::block_in_place(|| {
        common::sigil(&s, &["policy", "rollback", "0"])
    }));
    let versions = common::json(tokio::task::block_in_place(|| {
        common::sigil(&s, &["policy", "versions", "--json"])
    }));
    let comments: Vec<&str> = versions
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["comment"].as_str().unwrap())
        .collect();
    assert_eq!(comments, ["rollback to version 0", "tighten posture"]);
    let (_, current) = s.get("/api/v1/policy").await;
    assert_eq!(current["version"], 2);
    assert!(
        !current["policies"]
            .as_array()
            .unwrap()
            .contains(&json!("no-posture-for-operators"))
    );
    s.shutdown().await;
}
