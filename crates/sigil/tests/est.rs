//! EST (RFC 7030) with an independent client made of `openssl` and `curl`: enrolment with a
//! one-time token, re-enrolment over mTLS with the current certificate, and the refusals.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use reqwest::StatusCode;
use serde_json::json;

use common::est::*;
use common::{Db, TestServer, ok, openssl, sigil};

async fn est_enrolment_with_curl_and_openssl(db: Db) {
    let Some(s) = TestServer::start(db).await else {
        return;
    };
    let dir = s.dir.path();
    let product = s.create_product("P").await;
    let device = s.create_device(&product, "SN-1").await;
    let other = s.create_device(&product, "SN-2").await;

    // cacerts: the chain as certs-only PKCS#7, base64.
    let ca = curl(&s, "cacerts", &[]);
    assert_eq!(ca.status, 200, "{}", ca.body);
    assert!(
        ca.headers
            .to_ascii_lowercase()
            .contains("content-type: application/pkcs7-mime")
    );
    assert!(
        ca.headers
            .to_ascii_lowercase()
            .contains("content-transfer-encoding: base64")
    );
    let chain = save_certs(dir, &ca.body, "cacerts");
    assert_eq!(chain.matches("BEGIN CERTIFICATE").count(), 2);
    assert!(
        chain.contains(
            std::fs::read_to_string(s.data_dir().join("ca/root.crt"))
                .unwrap()
                .trim()
        )
    );

    // csrattrs: P-256 and ecdsa-with-SHA256.
    let attrs = curl(&s, "csrattrs", &[]);
    assert_eq!(attrs.status, 200);
    std::fs::write(dir.join("attrs.b64"), &attrs.body).unwrap();
    openssl(
        dir,
        &["base64", "-d", "-in", "attrs.b64", "-out", "attrs.der"],
    );
    let parsed = openssl(dir, &["asn1parse", "-inform", "DER", "-in", "attrs.der"]);
    assert!(
        parsed.contains("ecdsa-with-SHA256") && parsed.contains("prime256v1"),
        "{parsed}"
    );

    // simpleenroll with the device's one-time token (HTTP Basic, RFC 7030 3.2.3).
    let secret = token(&s, &device).await;
    let other_secret = token(&s, &other).await;
    csr_b64(dir, "dev");
    let user = format!("{device}:{secret}");
    let enrol = enroll(&s, Some(&user), PKCS10, "dev.b64");
    assert_eq!(enrol.status, 200, "{}", enrol.body);
    assert!(
        enrol.headers.contains("smime-type=certs-only"),
        "{}",
        enrol.headers
    );
    save_certs(dir, &enrol.body, "dev");
    let subject = openssl(
        dir,
        &[
            "x509",
            "-in",
            "dev.crt",
            "-noout",
            "-subject",
            "-ext",
            "subjectAltName",
        ],
    );
    assert!(subject.contains(&device), "{subject}");
    // The key in the certificate is the one openssl generated.
    let cert_key = openssl(dir, &["x509", "-in", "dev.crt", "-noout", "-pubkey"]);
    let own_key = openssl(dir, &["pkey", "-in", "dev.key", "-pubout"]);
    assert_eq!(cert_key, own_key);
    let (_, d) = s.get(&format!("/api/v1/devices/{device}")).await;
    assert_eq!(d["state"], "provisioned");

    // Refusals, each with no new certificate.
    let certs_before = s.count("certificates").await;
    csr_b64(dir, "again");
    let reused = enroll(&s, Some(&user), PKCS10, "again.b64");
    assert_eq!(reused.status, 401, "{}", reused.body);
    assert!(reused.body.contains("already been used"), "{}", reused.body);
    assert!(
        reused.headers.contains("www-authenticate: Basic"),
        "{}",
        reused.headers
    );
    // The same CSR again with the spent token (a device whose answer was lost retrying): the
    // certificate already issued for that key, not a new one.
    let repeated = enroll(&s, Some(&user), PKCS10, "dev.b64");
    assert_eq!(repeated.status, 200, "{}", repeated.body);
    assert_eq!(
        save_certs(dir, &repeated.body, "repeated"),
        std::fs::read_to_string(dir.join("dev.crt")).unwrap()
    );
    assert_eq!(s.count("certificates").await, certs_before);
    let foreign = format!("{device}:{other_secret}");
    let wrong_device = enroll(&s, Some(&foreign), PKCS10, "again.b64");
    assert_eq!(wrong_device.status, 401);
    assert!(
        wrong_device.body.contains("another device"),
        "{}",
        wrong_device.body
    );
    let no_auth = enroll(&s, None, PKCS10, "again.b64");
    assert_eq!(no_auth.status, 401);
    let other_user = format!("{other}:{other_secret}");
    let wrong_type = enroll(
        &s,
        Some(&other_user),
        "Content-Type: text/plain",
        "again.b64",
    );
    assert_eq!(wrong_type.status, 415, "{}", wrong_type.body);
    std::fs::write(dir.join("garbage.b64"), "!!!not base64!!!").unwrap();
    let garbage = enroll(&s, Some(&other_user), PKCS10, "garbage.b64");
    assert_eq!(garbage.status, 422, "{}", garbage.body);
    // Another device's key: refused, and the token survives for a correct attempt.
    let stolen = enroll(&s, Some(&other_user), PKCS10, "dev.b64");
    assert_eq!(stolen.status, 409, "{}", stolen.body);
    std::fs::write(dir.join("huge.b64"), "A".repeat(100_000)).unwrap();
    let huge = enroll(&s, Some(&other_user), PKCS10, "huge.b64");
    assert_eq!(huge.status, 413, "{}", huge.body);
    assert_eq!(s.count("certificates").await, certs_before);
    let fine = enroll(&s, Some(&other_user), PKCS10, "again.b64");
    assert_eq!(
        fine.status, 200,
        "the token was not spent by the refused attempts: {}",
        fine.body
    );

    // An expired token (its expiry moved into the past directly in the database).
    let third = s.create_device(&product, "SN-3").await;
    let third_secret = token(&s, &third).await;
    sqlx::query("UPDATE enrollment_tokens SET expires_at = 0 WHERE device_id = $1")
        .bind(&third)
        .execute(s.store().pool())
        .await
        .unwrap();
    csr_b64(dir, "third");
    let third_user = format!("{third}:{third_secret}");
    let expired = enroll(&s, Some(&third_user), PKCS10, "third.b64");
    assert_eq!(expired.status, 401, "{}", expired.body);
    assert!(expired.body.contains("expired"), "{}", expired.body);
    let (_, d) = s.get(&format!("/api/v1/devices/{third}")).await;
    assert_eq!(d["state"], "registered");

    // simplereenroll over mTLS with the current certificate, new key.
    let (st, _) = s
        .post(&format!("/api/v1/devices/{device}/activate"), json!({}))
        .await;
    assert_eq!(st, StatusCode::OK);
    csr_b64(dir, "renew");
    let renew = reenroll(&s, Some(("dev.crt", "dev.key")), "renew.b64");
    assert_eq!(renew.status, 200, "{}", renew.body);
    save_certs(dir, &renew.body, "renewed");
    let renewed_subject = openssl(dir, &["x509", "-in", "renewed.crt", "-noout", "-subject"]);
    assert!(
        renewed_subject.contains(&device),
        "same identity: {renewed_subject}"
    );
    let (_, certs) = s
        .get(&format!("/api/v1/certificates?device={device}"))
        .await;
    let mut statuses: Vec<&str> = certs["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["status"].as_str().unwrap())
        .collect();
    statuses.sort();
    assert_eq!(statuses, ["active", "superseded"]);

    // A suspended device cannot renew; resumed, it can again.
    let (st, _) = s
        .post(&format!("/api/v1/devices/{device}/suspend"), json!({}))
        .await;
    assert_eq!(st, StatusCode::OK);
    let certs_before = s.count("certificates").await;
    csr_b64(dir, "while-suspended");
    let suspended = reenroll(
        &s,
        Some(("renewed.crt", "renew.key")),
        "while-suspended.b64",
    );
    assert_eq!(suspended.status, 409, "{}", suspended.body);
    assert!(suspended.body.contains("suspended"), "{}", suspended.body);
    assert_eq!(s.count("certificates").await, certs_before);
    let (st, _) = s
        .post(&format!("/api/v1/devices/{device}/resume"), json!({}))
        .await;
    assert_eq!(st, StatusCode::OK);

    // Without a client certificate, or with a revoked one, re-enrolment is refused.
    let anonymous = reenroll(&s, None, "renew.b64");
    assert_eq!(anonymous.status, 401, "{}", anonymous.body);
    let (st, _) = s
        .post(
            &format!("/api/v1/devices/{device}/revoke"),
            json!({"reason": "superseded"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    csr_b64(dir, "late");
    let revoked = reenroll(&s, Some(("renewed.crt", "renew.key")), "late.b64");
    assert_ne!(revoked.status, 200, "a revoked certificate cannot renew");

    // Every step is in the audit log under the device as actor.
    let (_, log) = s
        .get(&format!("/api/v1/audit/entries?actor={device}&limit=500"))
        .await;
    let actions: Vec<String> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{}:{}",
                e["action"].as_str().unwrap(),
                e["outcome"].as_str().unwrap()
            )
        })
        .collect();
    for expected in [
        "enrollment_token.used:success",
        "certificate.issued:success",
        "est.simpleenroll:failure",
        "est.simplereenroll:denied",
    ] {
        assert!(
            actions.iter().any(|a| a == expected),
            "{expected} missing from {actions:?}"
        );
    }
    // The anonymous re-enrolment is logged too (the revoked one never got past the handshake).
    let (_, log) = s
        .get("/api/v1/audit/entries?action=est.simplereenroll&limit=500")
        .await;
    let refusals: Vec<(&str, &str)> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["actor"]["id"].as_str().unwrap(),
                e["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        refusals,
        [(device.as_str(), "denied"), ("unknown", "failure")]
    );
    s.shutdown().await;
}
both_backends!(est_enrolment_with_curl_and_openssl);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_creates_enrolment_tokens() {
    let s = TestServer::start(Db::Sqlite).await.unwrap();
    let product = s.create_product("P").await;
    let device = s.create_device(&product, "SN-1").await;
    let out = ok(sigil(&s, &["device", "token", &device, "--ttl", "120"]));
    assert!(out.trim().starts_with("sigil_"), "{out}");
    let bad = sigil(&s, &["device", "token", &device, "--ttl", "5"]);
    assert!(!bad.status.success());
    s.shutdown().await;
}

async fn est_enrolment_with_a_bootstrap_certificate(db: Db) {
    let Some(s) = TestServer::start(db).await else {
        return;
    };
    let dir = s.dir.path();
    let product = s.create_product("P").await;
    let device = s.create_device(&product, "SN-100").await;
    manufacturer_ca(dir, "acme");
    manufacturer_ca(dir, "rogue");
    bootstrap_cert(dir, "acme", "SN-100", "boot");
    bootstrap_cert(dir, "rogue", "SN-100", "rogueboot");
    bootstrap_cert(dir, "acme", "SN-999", "nodevice");
    csr_b64(dir, "dev");
    let certs_before = s.count("certificates").await;

    // Before the operator trusts Acme for this product, its certificate fails the handshake,
    // and the refusal is in the audit log.
    let refused = reenroll_as(&s, "simpleenroll", ("boot.crt", "boot.key"), "dev.b64");
    assert_eq!(refused.status, 0, "the TLS handshake must fail");
    assert!(tls_refusal(&s, "SN-100").await.contains("UnknownIssuer"));

    // Registering: a leaf is not a CA; Acme's CA is trusted once.
    let pem = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
    let path = format!("/api/v1/products/{product}/manufacturer-cas");
    let (st, e) = s.post(&path, json!({"certificate": pem("boot.crt")})).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert_eq!(e["code"], "manufacturer-ca-invalid");
    assert!(e["detail"].as_str().unwrap().contains("not a CA"), "{e}");
    let (st, ca) = s.post(&path, json!({"certificate": pem("acme.crt")})).await;
    assert_eq!(st, StatusCode::CREATED, "{ca}");
    assert!(ca["subject"].as_str().unwrap().contains("acme IDevID CA"));
    let (st, _) = s.post(&path, json!({"certificate": pem("acme.crt")})).await;
    assert_eq!(st, StatusCode::CONFLICT);
    let (_, list) = s.get(&path).await;
    assert_eq!(list.as_array().unwrap().len(), 1);

    // Now the bootstrap certificate enrols the device whose serial number it carries.
    let enrol = reenroll_as(&s, "simpleenroll", ("boot.crt", "boot.key"), "dev.b64");
    assert_eq!(enrol.status, 200, "{}", enrol.body);
    save_certs(dir, &enrol.body, "dev");
    let subject = openssl(dir, &["x509", "-in", "dev.crt", "-noout", "-subject"]);
    assert!(subject.contains(&device), "{subject}");
    let (_, d) = s.get(&format!("/api/v1/devices/{device}")).await;
    assert_eq!(d["state"], "provisioned");
    let (_, auth) = s
        .get("/api/v1/audit/entries?action=est.bootstrap_authenticated")
        .await;
    assert_eq!(
        auth["items"][0]["details"]["bootstrap_subject"],
        "serialNumber=SN-100, CN=sensor"
    );
    assert_eq!(s.count("certificates").await, certs_before + 1);

    // Refusals, none of which issues anything.
    csr_b64(dir, "other");
    // A CA nobody registered: refused in the handshake.
    let rogue = reenroll_as(
        &s,
        "simpleenroll",
        ("rogueboot.crt", "rogueboot.key"),
        "other.b64",
    );
    assert_eq!(rogue.status, 0);
    // A registered CA, but no device of the product has that serial.
    let unknown = reenroll_as(
        &s,
        "simpleenroll",
        ("nodevice.crt", "nodevice.key"),
        "other.b64",
    );
    assert_eq!(unknown.status, 403, "{}", unknown.body);
    assert!(
        unknown.body.contains("bootstrap-no-device"),
        "{}",
        unknown.body
    );
    assert!(unknown.body.contains("SN-999"), "{}", unknown.body);
    // An expired bootstrap certificate from the registered CA: refused in the handshake.
    let ca_key = rcgen::KeyPair::from_pem(&pem("acme.key")).unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_pem(&pem("acme.crt"), ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name.push(
        rcgen::DnType::CustomDnType(vec![2, 5, 4, 5]),
        "SN-100-expired",
    );
    params.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(30);
    params.not_after = time::OffsetDateTime::now_utc() - time::Duration::days(1);
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    std::fs::write(
        dir.join("expired.crt"),
        params.signed_by(&key, &issuer).unwrap().pem(),
    )
    .unwrap();
    std::fs::write(dir.join("expired.key"), key.serialize_pem()).unwrap();
    let expired = reenroll_as(
        &s,
        "simpleenroll",
        ("expired.crt", "expired.key"),
        "other.b64",
    );
    assert_eq!(expired.status, 0);
    assert!(tls_refusal(&s, "SN-100-expired").await.contains("Expired"));
    // A Sigil device certificate is not a bootstrap certificate.
    let own = reenroll_as(&s, "simpleenroll", ("dev.crt", "dev.key"), "other.b64");
    assert_eq!(own.status, 403, "{}", own.body);
    assert!(own.body.contains("simplereenroll"), "{}", own.body);
    assert_eq!(s.count("certificates").await, certs_before + 1);
    s.shutdown().await;
}
both_backends!(est_enrolment_with_a_bootstrap_certificate);
