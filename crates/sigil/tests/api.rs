//! The REST API against the real server (real TLS), on SQLite and on PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use reqwest::StatusCode;
use serde_json::{Value, json};

use common::{Db, TestServer, openssl, openssl_csr, p256_csr};

async fn inventory_and_lifecycle(db: Db) {
    let Some(s) = TestServer::start(db).await else {
        return;
    };

    // Products
    let product = s.create_product("Thermostat").await;
    let (st, p) = s
        .post(
            "/api/v1/products",
            json!({"name": "Thermostat", "manufacturer": "Acme", "support_end": "2031-12-31"}),
        )
        .await;
    assert_eq!(
        (st, p["code"].as_str()),
        (StatusCode::CONFLICT, Some("conflict")),
        "{p}"
    );
    let (st, p) = s
        .post(
            "/api/v1/products",
            json!({"name": "X", "manufacturer": "Acme", "support_end": "2031-02-30"}),
        )
        .await;
    assert_eq!(
        (st, p["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid-field")),
        "{p}"
    );
    assert!(p["detail"].as_str().unwrap().contains("support_end"), "{p}");
    let (st, p) = s.post("/api/v1/products", json!({"name": "X", "manufacturer": "Acme", "support_end": "2031-01-01", "colour": "red"})).await;
    assert_eq!(
        (st, p["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid-body")),
        "{p}"
    );
    let (st, list) = s.get("/api/v1/products").await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(list["items"][0]["support_end"], "2031-12-31");
    let (st, one) = s.get(&format!("/api/v1/products/{product}")).await;
    assert_eq!(
        (st, one["name"].as_str()),
        (StatusCode::OK, Some("Thermostat"))
    );
    assert_eq!(s.count("products").await, 1);

    // Devices
    let (st, d) = s
        .post(
            "/api/v1/devices",
            json!({"product_id": product, "serial_number": "SN-0", "hardware_id": "hw-0", "owner": "ops", "site": "plant-1",
                   "tags": ["line-3", "floor=2", "line-3"], "firmware_version": "1.2.3"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{d}");
    assert_eq!(d["state"], "registered");
    assert_eq!(d["tags"], json!(["floor=2", "line-3"]));
    let first = d["id"].as_str().unwrap().to_owned();
    assert_eq!(d["identity"], format!("urn:sigil:device:{first}"));
    let (st, e) = s
        .post(
            "/api/v1/devices",
            json!({"product_id": product, "serial_number": "SN-0"}),
        )
        .await;
    assert_eq!(
        (st, e["code"].as_str()),
        (StatusCode::CONFLICT, Some("conflict")),
        "{e}"
    );
    let (st, e) = s
        .post(
            "/api/v1/devices",
            json!({"product_id": product, "serial_number": "SN-X", "hardware_id": "hw-0"}),
        )
        .await;
    assert_eq!(
        (st, e["code"].as_str()),
        (StatusCode::CONFLICT, Some("conflict")),
        "{e}"
    );
    let missing = uuid::Uuid::now_v7().to_string();
    let (st, e) = s
        .post(
            "/api/v1/devices",
            json!({"product_id": missing, "serial_number": "SN-1"}),
        )
        .await;
    assert_eq!(
        (st, e["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not-found")),
        "{e}"
    );
    let (st, e) = s
        .post(
            "/api/v1/devices",
            json!({"product_id": "nope", "serial_number": "SN-1"}),
        )
        .await;
    assert_eq!(
        (st, e["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid-id")),
        "{e}"
    );
    let (st, e) = s
        .post(
            "/api/v1/devices",
            json!({"product_id": product, "serial_number": "SN-1", "tags": ["bad tag"]}),
        )
        .await;
    assert_eq!(
        (st, e["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid-field")),
        "{e}"
    );
    assert_eq!(
        s.count("devices").await,
        1,
        "refused creations wrote nothing"
    );

    let other_product = s.create_product("Gateway").await;
    let mut ids = vec![first.clone()];
    for i in 1..=5 {
        ids.push(
            s.create_device(
                if i % 2 == 0 { &other_product } else { &product },
                &format!("SN-{i}"),
            )
            .await,
        );
    }

    // Pagination walks every device exactly once, in creation order.
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let path = match &after {
            Some(a) => format!("/api/v1/devices?limit=2&after={a}"),
            None => "/api/v1/devices?limit=2".to_owned(),
        };
        let (st, page) = s.get(&path).await;
        assert_eq!(st, StatusCode::OK, "{page}");
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["id"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => after = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, ids);

    // Filters
    let (_, by_tag) = s.get("/api/v1/devices?tag=line-3").await;
    assert_eq!(by_tag["items"].as_array().unwrap().len(), 1);
    let (_, by_product) = s
        .get(&format!("/api/v1/devices?product={other_product}"))
        .await;
    assert_eq!(by_product["items"].as_array().unwrap().len(), 2);
    let (_, by_state) = s.get("/api/v1/devices?state=registered").await;
    assert_eq!(by_state["items"].as_array().unwrap().len(), 6);
    let (st, e) = s.get("/api/v1/devices?state=sleeping").await;
    assert_eq!(
        (st, e["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid-field")),
        "{e}"
    );
    let (st, e) = s.get("/api/v1/devices?limit=0").await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    let (st, e) = s.get("/api/v1/devices?limit=abc").await;
    assert_eq!(
        (st, e["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid-query")),
        "{e}"
    );

    // Lifecycle
    let dev = &first;
    let (st, e) = s
        .post(&format!("/api/v1/devices/{dev}/activate"), json!({}))
        .await;
    assert_eq!(
        (st, e["code"].as_str()),
        (StatusCode::CONFLICT, Some("illegal-transition")),
        "{e}"
    );
    assert_eq!(
        e["detail"],
        "device is registered: cannot activate (issue it an identity first)"
    );
    let (st, e) = s
        .post(&format!("/api/v1/devices/{dev}/suspend"), json!({}))
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{e}");

    let csr = p256_csr(s.dir.path(), "life");
    let (st, c) = s
        .post(
            &format!("/api/v1/devices/{dev}/certificates"),
            json!({"csr": csr}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{c}");
    let (_, d) = s.get(&format!("/api/v1/devices/{dev}")).await;
    assert_eq!(d["state"], "provisioned");
    for (action, expected) in [("activate", "active"), ("suspend", "suspended")] {
        let (st, d) = s
            .post(&format!("/api/v1/devices/{dev}/{action}"), json!({}))
            .await;
        assert_eq!(
            (st, d["state"].as_str()),
            (StatusCode::OK, Some(expected)),
            "{d}"
        );
    }
    // Suspended: no new identity.
    let csr2 = p256_csr(s.dir.path(), "life2");
    let before = s.count("certificates").await;
    let (st, e) = s
        .post(
            &format!("/api/v1/devices/{dev}/certificates"),
            json!({"csr": csr2}),
        )
        .await;
    assert_eq!(
        (st, e["code"].as_str()),
        (StatusCode::CONFLICT, Some("illegal-transition")),
        "{e}"
    );
    assert!(e["detail"].as_str().unwrap().contains("suspended"), "{e}");
    assert_eq!(s.count("certificates").await, before);
    for (action, expected) in [("resume", "active"), ("retire", "retired")] {
        let (st, d) = s
            .post(&format!("/api/v1/devices/{dev}/{action}"), json!({}))
            .await;
        assert_eq!(
            (st, d["state"].as_str()),
            (StatusCode::OK, Some(expected)),
            "{d}"
        );
    }
    for action in ["resume", "activate", "suspend", "retire"] {
        let (st, e) = s
            .post(&format!("/api/v1/devices/{dev}/{action}"), json!({}))
            .await;
        assert_eq!(
            st,
            StatusCode::CONFLICT,
            "retired is terminal: {action} {e}"
        );
        assert!(
            e["detail"]
                .as_str()
                .unwrap()
                .contains("retired is terminal"),
            "{e}"
        );
    }
    let (st, e) = s.get(&format!("/api/v1/devices/{missing}")).await;
    assert_eq!(
        (st, e["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not-found")),
        "{e}"
    );
    let (st, e) = s
        .post(&format!("/api/v1/devices/{missing}/suspend"), json!({}))
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{e}");
    s.shutdown().await;
}
both_backends!(inventory_and_lifecycle);

async fn issuance_interoperates_with_openssl(db: Db) {
    let Some(s) = TestServer::start(db).await else {
        return;
    };
    let work = s.dir.path();
    let data = s.data_dir();
    let product = s.create_product("Meter").await;

    for (name, keyargs, algo_text) in [
        (
            "p256",
            vec!["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
            "id-ecPublicKey",
        ),
        (
            "p384",
            vec!["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384"],
            "id-ecPublicKey",
        ),
        ("ed25519", vec!["-newkey", "ed25519"], "ED25519"),
        ("rsa2048", vec!["-newkey", "rsa:2048"], "rsaEncryption"),
    ] {
        let device = s.create_device(&product, &format!("SN-{name}")).await;
        let csr = openssl_csr(work, name, &keyargs);
        let (st, issued) = s
            .post(
                &format!("/api/v1/devices/{device}/certificates"),
                json!({"csr": csr}),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{name}: {issued}");
        let cert_file = format!("{name}.crt");
        std::fs::write(
            work.join(&cert_file),
            issued["certificate"].as_str().unwrap(),
        )
        .unwrap();
        std::fs::write(work.join("chain.pem"), issued["chain"].as_str().unwrap()).unwrap();

        let root = data.join("ca/root.crt");
        let issuing = data.join("ca/issuing.crt");
        let out = openssl(
            work,
            &[
                "verify",
                "-CAfile",
                root.to_str().unwrap(),
                "-untrusted",
                issuing.to_str().unwrap(),
                &cert_file,
            ],
        );
        assert_eq!(out.trim(), format!("{cert_file}: OK"));
        // The chain in the response is the same chain.
        let out = openssl(
            work,
            &[
                "verify",
                "-CAfile",
                root.to_str().unwrap(),
                "-untrusted",
                "chain.pem",
                &cert_file,
            ],
        );
        assert!(out.contains("OK"));

        let text = openssl(work, &["x509", "-in", &cert_file, "-noout", "-text"]);
        let pki = &s.pki;
        for needle in [
            format!("Subject: CN = {device}"),
            format!("URI:urn:sigil:device:{device}"),
            "X509v3 Key Usage: critical\n                Digital Signature\n".to_owned(),
            "TLS Web Client Authentication".to_owned(),
            "CA:FALSE".to_owned(),
            "X509v3 Authority Key Identifier".to_owned(),
            "X509v3 Subject Key Identifier".to_owned(),
            format!("OCSP - URI:{pki}/ocsp"),
            format!("CA Issuers - URI:{pki}/ca/issuing.der"),
            format!("URI:{pki}/crl/issuing.crl"),
            algo_text.to_owned(),
        ] {
            assert!(
                text.contains(&needle),
                "{name}: `{needle}` missing from\n{text}"
            );
        }
        // Nothing the device asked for leaks in.
        assert!(
            !text.contains("chosen-by-the-device") && !text.contains("Evil"),
            "{text}"
        );
        assert!(!text.contains("TLS Web Server Authentication"));

        // 160-bit serial field (20 octets), recorded with the SHA-256 fingerprint openssl computes.
        let serial = issued["serial"].as_str().unwrap();
        assert_eq!(serial.len(), 40, "{serial}");
        let fp = openssl(
            work,
            &[
                "x509",
                "-in",
                &cert_file,
                "-noout",
                "-fingerprint",
                "-sha256",
            ],
        );
        let fp = fp
            .trim()
            .rsplit('=')
            .next()
            .unwrap()
            .replace(':', "")
            .to_lowercase();
        assert_eq!(issued["sha256"].as_str().unwrap(), fp);
        let (st, rec) = s.get(&format!("/api/v1/certificates/{serial}")).await;
        assert_eq!(st, StatusCode::OK, "{rec}");
        assert_eq!(
            (
                rec["sha256"].as_str(),
                rec["status"].as_str(),
                rec["device_id"].as_str()
            ),
            (Some(fp.as_str()), Some("active"), Some(device.as_str()))
        );
        assert_eq!(rec["certificate"], issued["certificate"]);
        let (_, list) = s
            .get(&format!("/api/v1/certificates?device={device}"))
            .await;
        assert_eq!(list["items"].as_array().unwrap().len(), 1);
        // openssl's serial spelling is accepted too.
        let (st, _) = s
            .get(&format!("/api/v1/certificates/{}", serial.to_uppercase()))
            .await;
        assert_eq!(st, StatusCode::OK);
    }
    assert_eq!(s.count("certificates").await, 4);

    // The caIssuers URL serves the issuing CA certificate in DER.
    let der = reqwest::get(format!("{}/ca/issuing.der", s.pki))
        .await
        .unwrap();
    assert_eq!(der.headers()["content-type"], "application/pkix-cert");
    let der = der.bytes().await.unwrap();
    std::fs::write(work.join("issuing.der"), &der).unwrap();
    let from_url = openssl(
        work,
        &[
            "x509",
            "-inform",
            "DER",
            "-in",
            "issuing.der",
            "-noout",
            "-fingerprint",
            "-sha256",
        ],
    );
    let from_file = openssl(
        work,
        &[
            "x509",
            "-in",
            data.join("ca/issuing.crt").to_str().unwrap(),
            "-noout",
            "-fingerprint",
            "-sha256",
        ],
    );
    assert_eq!(from_url, from_file);
    let root = reqwest::get(format!("{}/ca/root.crt", s.pki))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        root,
        std::fs::read_to_string(data.join("ca/root.crt")).unwrap()
    );

    // Profiles choose the validity.
    let device = s.create_device(&product, "SN-short").await;
    let csr = p256_csr(work, "short");
    let (st, issued) = s
        .post(
            &format!("/api/v1/devices/{device}/certificates"),
            json!({"csr": csr, "profile": "device-ephemeral"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{issued}");
    let nb = time::OffsetDateTime::parse(
        issued["not_before"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let na = time::OffsetDateTime::parse(
        issued["not_after"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert_eq!(
        na - nb,
        time::Duration::minutes(61),
        "1 h validity plus 1 min backdating"
    );
    // The renewal window opens 20 minutes before expiry.
    let renew = |v: &Value| {
        time::OffsetDateTime::parse(
            v["renew_after"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap()
    };
    assert_eq!(na - renew(&issued), time::Duration::minutes(20));
    let (_, record) = s
        .get(&format!(
            "/api/v1/certificates/{}",
            issued["serial"].as_str().unwrap()
        ))
        .await;
    assert_eq!(renew(&record), renew(&issued));

    // Minutes-long identities for passive revocation, renewed 100 s before expiry.
    let (_, profiles) = s.get("/api/v1/profiles").await;
    let minutes = profiles
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "device-minutes")
        .unwrap();
    assert_eq!(minutes["validity_seconds"], 300);
    assert_eq!(minutes["renew_before_seconds"], 100);
    let device = s.create_device(&product, "SN-minutes").await;
    let csr = p256_csr(work, "minutes");
    let (st, issued) = s
        .post(
            &format!("/api/v1/devices/{device}/certificates"),
            json!({"csr": csr, "profile": "device-minutes"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{issued}");
    std::fs::write(
        work.join("minutes.crt"),
        issued["certificate"].as_str().unwrap(),
    )
    .unwrap();
    let dates = openssl(
        work,
        &[
            "x509",
            "-in",
            "minutes.crt",
            "-noout",
            "-startdate",
            "-enddate",
        ],
    );
    assert!(dates.contains("notAfter="), "{dates}");
    let na = time::OffsetDateTime::parse(
        issued["not_after"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let nb = time::OffsetDateTime::parse(
        issued["not_before"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert_eq!(na - nb, time::Duration::minutes(6));
    assert_eq!(na - renew(&issued), time::Duration::seconds(100));
    s.shutdown().await;
}
both_backends!(issuance_interoperates_with_openssl);

/// Every kind of bad input gets its own error code and leaves the database exactly as it was.
async fn bad_input_changes_nothing(db: Db) {
    let Some(s) = TestServer::start(db).await else {
        return;
    };
    let work = s.dir.path();
    let product = s.create_product("Sensor").await;
    let device = s.create_device(&product, "SN-A").await;
    let other = s.create_device(&product, "SN-B").await;
    let retired = s.create_device(&product, "SN-R").await;
    let (st, _) = s
        .post(&format!("/api/v1/devices/{retired}/retire"), json!({}))
        .await;
    assert_eq!(st, StatusCode::OK);

    // `other` holds a key: reusing it for `device` must fail.
    let used_csr = p256_csr(work, "used");
    let (st, e) = s
        .post(
            &format!("/api/v1/devices/{other}/certificates"),
            json!({"csr": used_csr}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{e}");

    let good = p256_csr(work, "good");
    let broken_sig = {
        let block = pem::parse(&good).unwrap().into_contents();
        let mut der = block.clone();
        let last = der.len() - 2;
        der[last] ^= 0xff;
        sigil_testkit::csr::csr_pem(&der)
    };
    let rsa1024 = openssl_csr(work, "rsa1024", &["-newkey", "rsa:1024"]);
    let k1 = openssl_csr(
        work,
        "k1",
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:secp256k1"],
    );
    let sha1 = openssl_csr(work, "sha1", &["-newkey", "rsa:2048", "-sha1"]);
    let garbage_b64 =
        "-----BEGIN CERTIFICATE REQUEST-----\n!!!notbase64!!!\n-----END CERTIFICATE REQUEST-----\n";
    let missing = uuid::Uuid::now_v7().to_string();

    let cases: Vec<(&str, String, Value, StatusCode, &str)> = vec![
        (
            "malformed PEM",
            device.clone(),
            json!({"csr": "hello"}),
            StatusCode::BAD_REQUEST,
            "csr-malformed",
        ),
        (
            "garbage base64",
            device.clone(),
            json!({"csr": garbage_b64}),
            StatusCode::BAD_REQUEST,
            "csr-malformed",
        ),
        (
            "truncated DER",
            device.clone(),
            json!({"csr": sigil_testkit::csr::csr_pem(&pem::parse(&good).unwrap().into_contents()[..40])}),
            StatusCode::BAD_REQUEST,
            "csr-malformed",
        ),
        (
            "broken signature",
            device.clone(),
            json!({"csr": broken_sig}),
            StatusCode::BAD_REQUEST,
            "csr-signature-invalid",
        ),
        (
            "RSA-1024",
            device.clone(),
            json!({"csr": rsa1024}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "key-too-weak",
        ),
        (
            "secp256k1",
            device.clone(),
            json!({"csr": k1}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "key-unsupported",
        ),
        (
            "SHA-1 signature",
            device.clone(),
            json!({"csr": sha1}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "csr-signature-algorithm",
        ),
        (
            "key of another device",
            device.clone(),
            json!({"csr": used_csr}),
            StatusCode::CONFLICT,
            "key-already-bound",
        ),
        (
            "unknown device",
            missing.clone(),
            json!({"csr": good}),
            StatusCode::NOT_FOUND,
            "not-found",
        ),
        (
            "retired device",
            retired.clone(),
            json!({"csr": good}),
            StatusCode::CONFLICT,
            "illegal-transition",
        ),
        (
            "unknown profile",
            device.clone(),
            json!({"csr": good, "profile": "forever"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown-profile",
        ),
        (
            "unknown field",
            device.clone(),
            json!({"csr": good, "subject": "CN=admin"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-body",
        ),
        (
            "bad device id",
            "..%2F..".to_owned(),
            json!({"csr": good}),
            StatusCode::BAD_REQUEST,
            "invalid-id",
        ),
    ];
    let before = counts(&s).await;
    for (what, dev, body, status, code) in cases {
        let (st, e) = s
            .post(&format!("/api/v1/devices/{dev}/certificates"), body)
            .await;
        assert_eq!(
            (st, e["code"].as_str()),
            (status, Some(code)),
            "{what}: {e}"
        );
        assert!(
            !e["detail"].as_str().unwrap_or("").is_empty(),
            "{what}: specific detail"
        );
        assert_eq!(counts(&s).await, before, "{what}: no row written");
    }

    // Transport-level refusals.
    let url = format!("{}/api/v1/devices/{device}/certificates", s.api);
    let huge = json!({"csr": "A".repeat(100 * 1024)});
    let r = s
        .http
        .post(&url)
        .bearer_auth(&s.token)
        .json(&huge)
        .send()
        .await
        .unwrap();
    let (st, e) = common::split(r).await;
    assert_eq!(
        (st, e["code"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("body-too-large")),
        "{e}"
    );
    let r = s
        .http
        .post(&url)
        .bearer_auth(&s.token)
        .header("content-type", "text/plain")
        .body(good.clone())
        .send()
        .await
        .unwrap();
    let (st, e) = common::split(r).await;
    assert_eq!(
        (st, e["code"].as_str()),
        (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Some("unsupported-media-type")
        ),
        "{e}"
    );
    let r = s
        .http
        .post(&url)
        .bearer_auth(&s.token)
        .header("content-type", "application/json")
        .body("{\"csr\": ")
        .send()
        .await
        .unwrap();
    let (st, e) = common::split(r).await;
    assert_eq!(
        (st, e["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("malformed-json")),
        "{e}"
    );

    for (what, auth) in [
        ("missing token", None),
        (
            "wrong token",
            Some("Bearer sigil_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_owned()),
        ),
        ("basic scheme", Some(format!("Basic {}", s.token))),
        ("empty bearer", Some("Bearer ".to_owned())),
    ] {
        let mut req = s.http.post(&url).json(&json!({"csr": good}));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let r = req.send().await.unwrap();
        assert_eq!(
            r.headers()["www-authenticate"],
            "Bearer realm=\"sigil\"",
            "{what}"
        );
        let (st, e) = common::split(r).await;
        assert_eq!(
            (st, e["code"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("unauthenticated")),
            "{what}: {e}"
        );
        let r = s
            .http
            .get(format!("{}/api/v1/devices", s.api))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(counts(&s).await, before);

    // And the device is untouched: still registered, and a good CSR still works afterwards.
    let (_, d) = s.get(&format!("/api/v1/devices/{device}")).await;
    assert_eq!(d["state"], "registered");
    let (st, e) = s
        .post(
            &format!("/api/v1/devices/{device}/certificates"),
            json!({"csr": good}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{e}");
    s.shutdown().await;
}
both_backends!(bad_input_changes_nothing);

async fn counts(s: &TestServer) -> (i64, i64, i64) {
    (
        s.count("certificates").await,
        s.count("device_keys").await,
        s.count("devices").await,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_describes_every_route() {
    let s = TestServer::start(Db::Sqlite).await.unwrap();
    let r = s
        .http
        .get(format!("{}/api/v1/openapi.json", s.api))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let doc: Value = r.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/api/v1/products", "post"),
        ("/api/v1/products", "get"),
        ("/api/v1/products/{id}", "get"),
        ("/api/v1/products/{id}/manufacturer-cas", "post"),
        ("/api/v1/products/{id}/manufacturer-cas", "get"),
        ("/api/v1/devices", "post"),
        ("/api/v1/devices", "get"),
        ("/api/v1/devices/{id}", "get"),
        ("/api/v1/devices/{id}/posture", "get"),
        ("/api/v1/devices/{id}/activate", "post"),
        ("/api/v1/devices/{id}/suspend", "post"),
        ("/api/v1/devices/{id}/resume", "post"),
        ("/api/v1/devices/{id}/retire", "post"),
        ("/api/v1/devices/{id}/revoke", "post"),
        ("/api/v1/devices/{id}/enrollment-tokens", "post"),
        ("/api/v1/devices/{id}/certificates", "post"),
        ("/api/v1/devices/{id}/foreign-certificates", "post"),
        ("/api/v1/devices/{id}/foreign-certificates", "get"),
        ("/api/v1/devices/{id}/updates", "get"),
        (
            "/api/v1/devices/{id}/foreign-certificates/{sha256}",
            "delete",
        ),
        ("/api/v1/broker/emqx/authn", "post"),
        ("/api/v1/broker/emqx/authz", "post"),
        ("/api/v1/policy/explain", "post"),
        ("/api/v1/certificates", "get"),
        ("/api/v1/certificates/{serial}", "get"),
        ("/api/v1/profiles", "get"),
        ("/api/v1/audit/entries", "get"),
        ("/api/v1/audit/checkpoint", "get"),
        ("/api/v1/audit/checkpoint", "post"),
        ("/api/v1/audit/proof/inclusion", "get"),
        ("/api/v1/audit/proof/consistency", "get"),
        ("/api/v1/audit/export", "get"),
        ("/api/v1/evidence", "get"),
        ("/api/v1/policy", "get"),
        ("/api/v1/policy", "post"),
        ("/api/v1/policy/versions", "get"),
        ("/api/v1/policy/rollback", "post"),
        ("/api/v1/operators", "post"),
        ("/api/v1/operators", "get"),
        ("/api/v1/tokens", "post"),
        ("/api/v1/tokens", "get"),
        ("/api/v1/tokens/{id}/revoke", "post"),
        ("/api/v1/auth/login", "post"),
        ("/api/v1/auth/logout", "post"),
        ("/api/v1/auth/me", "get"),
        ("/api/v1/compliance", "get"),
        ("/api/v1/compliance/attestations", "get"),
        ("/api/v1/compliance/attestations", "post"),
        ("/api/v1/compliance/{framework}/evaluate", "post"),
        ("/api/v1/compliance/{framework}/history", "get"),
        ("/api/v1/compliance/{framework}", "get"),
        ("/api/v1/compliance/{framework}/devices/{id}", "get"),
        ("/api/v1/products/{id}/declaration", "put"),
        ("/api/v1/products/{id}/declaration", "get"),
        ("/api/v1/services/certificates", "post"),
        ("/api/v1/artefacts", "post"),
        ("/api/v1/products/{id}/releases", "post"),
        ("/api/v1/products/{id}/releases", "get"),
        ("/api/v1/products/{id}/update-channel", "post"),
        ("/api/v1/products/{id}/update-channel", "get"),
        ("/api/v1/products/{id}/update-channel/signatures", "post"),
        ("/api/v1/device/update-channel", "get"),
        ("/api/v1/products/{id}/update-channel/rotations", "post"),
        ("/api/v1/products/{id}/rollouts", "post"),
        ("/api/v1/products/{id}/rollouts", "get"),
        ("/api/v1/rollouts/{id}", "get"),
        ("/api/v1/rollouts/{id}/actions", "post"),
        ("/api/v1/device/assignment", "get"),
        ("/api/v1/device/update-reports", "post"),
        ("/api/v1/vulndb/imports", "post"),
        ("/api/v1/products/{id}/sboms", "post"),
        ("/api/v1/products/{id}/sboms", "get"),
        ("/api/v1/sboms/{id}", "get"),
        ("/api/v1/products/{id}/findings", "get"),
        ("/api/v1/products/{id}/vex", "post"),
        ("/api/v1/products/{id}/vex", "get"),
        ("/api/v1/devices/{id}/findings", "get"),
        ("/api/v1/vuln-policy", "get"),
        ("/api/v1/vuln-policy", "put"),
        ("/api/v1/sites", "get"),
        ("/api/v1/sites/{name}", "put"),
        ("/api/v1/cases", "get"),
        ("/api/v1/cases", "post"),
        ("/api/v1/cases/{id}", "get"),
        ("/api/v1/cases/{id}/drafts/{stage}", "get"),
        ("/api/v1/cases/{id}/reports", "post"),
        ("/api/v1/disclosure-policy", "get"),
        ("/api/v1/disclosure-policy", "put"),
        ("/api/v1/products/{id}/disclosure-policy", "get"),
        ("/api/v1/products/{id}/disclosure-policy", "put"),
        ("/api/v1/disclosure-reports", "get"),
        ("/api/v1/disclosure-reports", "post"),
        ("/api/v1/disclosure-reports/{id}", "get"),
        ("/api/v1/disclosure-reports/{id}/acknowledge", "post"),
        ("/api/v1/disclosure-reports/{id}/accept", "post"),
        ("/api/v1/disclosure-reports/{id}/reject", "post"),
        ("/api/v1/inventory/summary", "get"),
        ("/api/v1/audit/status", "get"),
        ("/api/v1/devices/{id}", "patch"),
        ("/api/v1/devices/import", "post"),
        ("/api/v1/devices/export", "get"),
        ("/api/v1/compliance/{framework}/report", "get"),
        ("/api/v1/policy/versions/{version}", "get"),
        ("/api/v1/device/metrics", "post"),
        ("/api/v1/monitoring/status", "get"),
        ("/api/v1/monitoring/profiles", "get"),
        ("/api/v1/monitoring/profiles", "put"),
        ("/api/v1/alarms", "get"),
        ("/api/v1/alarms/{id}", "get"),
        ("/api/v1/alarms/{id}/decision", "post"),
        ("/api/v1/devices/{id}/quarantine", "post"),
        ("/api/v1/devices/{id}/release", "post"),
        ("/api/v1/devices/{id}/monitoring", "get"),
    ] {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} missing from OpenAPI"
        );
    }
    assert_eq!(
        paths.len(),
        91,
        "every documented path is listed above: {:?}",
        paths.keys().collect::<Vec<_>>()
    );
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    assert_eq!(
        doc["components"]["securitySchemes"]["session"]["in"],
        "cookie"
    );
    // Unknown routes and methods are problem+json too.
    let (st, e) = s.get("/api/v1/nope").await;
    assert_eq!(
        (st, e["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not-found"))
    );
    let r = s
        .http
        .delete(format!("{}/api/v1/devices", s.api))
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap();
    let (st, e) = common::split(r).await;
    assert_eq!(
        (st, e["code"].as_str()),
        (StatusCode::METHOD_NOT_ALLOWED, Some("method-not-allowed"))
    );
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_speaks_tls_only_with_a_certificate_from_sigils_ca() {
    let s = TestServer::start(Db::Sqlite).await.unwrap();
    let port = s.handle.as_ref().unwrap().api_addr.port();
    let root = s.data_dir().join("ca/root.crt");
    let out = std::process::Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-servername",
            "localhost",
            "-verify_return_error",
            "-CAfile",
        ])
        .arg(&root)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Verify return code: 0 (ok)"), "{text}");
    // curl over HTTP/2 (negotiated by ALPN) and over HTTP/1.1, trusting only Sigil's root.
    for (flag, expect) in [("--http2", "HTTP/2 200"), ("--http1.1", "HTTP/1.1 200")] {
        let out = std::process::Command::new("curl")
            .args(["-sS", "-i", flag, "--cacert"])
            .arg(&root)
            .args([
                "-H",
                &format!("Authorization: Bearer {}", s.token),
                &format!("https://localhost:{port}/api/v1/products"),
            ])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.starts_with(expect),
            "{flag}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("{\"items\":[]}"), "{text}");
    }
    // Plain HTTP to the API port is not served.
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/api/v1/devices"))
        .send()
        .await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
    s.shutdown().await;
}

/// Many issuances at once (so they share group-commit batches), where pairs of devices race for
/// the same key: each key ends up bound to exactly one device, the loser gets a clean refusal,
/// and every other issuance in the same batches commits.
async fn concurrent_issuance_binds_each_key_once(db: Db) {
    let Some(s) = TestServer::start(db).await else {
        return;
    };
    let product = s.create_product("Racer").await;
    const KEYS: usize = 24;
    let mut jobs = Vec::new();
    for k in 0..KEYS {
        let csr = common::fresh_csr_pem();
        for side in 0..2 {
            jobs.push((
                s.create_device(&product, &format!("K{k}-{side}")).await,
                csr.clone(),
                k,
            ));
        }
    }
    let s = std::sync::Arc::new(s);
    let mut tasks = Vec::new();
    for (device, csr, k) in jobs {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let (st, body) = s
                .post(
                    &format!("/api/v1/devices/{device}/certificates"),
                    json!({"csr": csr}),
                )
                .await;
            (k, st, body)
        }));
    }
    let mut wins = vec![0; KEYS];
    for t in tasks {
        let (k, st, body) = t.await.unwrap();
        match st {
            StatusCode::CREATED => wins[k] += 1,
            StatusCode::CONFLICT => assert!(
                matches!(
                    body["code"].as_str(),
                    Some("key-already-bound" | "conflict")
                ),
                "{body}"
            ),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(wins, vec![1; KEYS], "each key bound exactly once");
    assert_eq!(s.count("certificates").await, KEYS as i64);
    assert_eq!(s.count("device_keys").await, KEYS as i64);
    let (_, provisioned) = s.get("/api/v1/devices?state=provisioned&limit=500").await;
    assert_eq!(provisioned["items"].as_array().unwrap().len(), KEYS);
    if let Ok(s) = std::sync::Arc::try_unwrap(s) {
        s.shutdown().await;
    }
}
both_backends!(concurrent_issuance_binds_each_key_once);

/// Tokens past their expiry, and tokens replaced (revoked), are refused with a reason.
async fn expired_and_revoked_tokens_are_refused(db: Db) {
    let Some(s) = TestServer::start(db).await else {
        return;
    };
    let now = time::OffsetDateTime::now_utc();
    let call = |token: String| {
        let (http, api) = (s.http.clone(), s.api.clone());
        async move {
            common::split(
                http.get(format!("{api}/api/v1/products"))
                    .bearer_auth(token)
                    .send()
                    .await
                    .unwrap(),
            )
            .await
        }
    };

    let expired = sigil_authority::generate_token().unwrap();
    s.store()
        .insert_api_token(
            &sigil_audit::Actor::system("test"),
            &sigil_store::NewApiToken {
                name: "ci",
                role: "admin",
                scopes: &["*".to_owned()],
                expires_at: Some(now - time::Duration::hours(1)),
            },
            &sigil_authority::token_hash(&expired),
            now - time::Duration::hours(2),
        )
        .await
        .unwrap();
    let (st, e) = call(expired).await;
    assert_eq!(
        (st, e["detail"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("API token has expired")),
        "{e}"
    );

    let live = sigil_authority::generate_token().unwrap();
    s.store()
        .insert_api_token(
            &sigil_audit::Actor::system("test"),
            &sigil_store::NewApiToken {
                name: "ci2",
                role: "admin",
                scopes: &["*".to_owned()],
                expires_at: Some(now + time::Duration::hours(1)),
            },
            &sigil_authority::token_hash(&live),
            now,
        )
        .await
        .unwrap();
    let (st, _) = call(live.clone()).await;
    assert_eq!(st, StatusCode::OK);

    // Replacing the bootstrap token revokes the old one.
    let fresh = sigil_authority::generate_token().unwrap();
    s.store()
        .replace_api_token(
            &sigil_audit::Actor::system("test"),
            sigil_server::ADMIN_TOKEN_NAME,
            "admin",
            &sigil_authority::token_hash(&fresh),
            now,
        )
        .await
        .unwrap();
    let (st, e) = call(s.token.clone()).await;
    assert_eq!(
        (st, e["detail"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("API token has been revoked")),
        "{e}"
    );
    let (st, _) = call(fresh).await;
    assert_eq!(st, StatusCode::OK);
    s.shutdown().await;
}
both_backends!(expired_and_revoked_tokens_are_refused);

/// A client that completes the TLS handshake and then sends nothing is disconnected once the
/// header-read timeout passes, instead of holding a connection forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed() {
    let s = TestServer::start(Db::Sqlite).await.unwrap();
    let port = s.handle.as_ref().unwrap().api_addr.port();
    let mut child = std::process::Command::new("openssl")
        .args([
            "s_client",
            "-quiet",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-servername",
            "localhost",
            "-alpn",
            "http/1.1",
        ])
        .stdin(std::process::Stdio::piped()) // held open, never written
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let limit = sigil_server::tls::HEADER_READ_TIMEOUT + std::time::Duration::from_secs(10);
    let started = std::time::Instant::now();
    let closed = loop {
        if child.try_wait().unwrap().is_some() {
            break true;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            break false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert!(closed, "an idle connection was still open after {limit:?}");
    assert!(
        started.elapsed()
            >= sigil_server::tls::HEADER_READ_TIMEOUT - std::time::Duration::from_secs(1)
    );
    s.shutdown().await;
}

/// A body must be a JSON object: an array would otherwise pass as "every field defaulted"
/// (found by Schemathesis on the update-channel route).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_array_is_not_a_request_body() {
    let s = TestServer::start(Db::Sqlite).await.unwrap();
    let product = s.create_product("Meter").await;
    let before = s.count("update_channels").await;
    for path in [
        format!("/api/v1/products/{product}/update-channel"),
        "/api/v1/products".to_owned(),
    ] {
        let (st, body) = s.post(&path, json!([])).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{path}: {body}");
        assert_eq!(body["detail"], "the JSON body must be an object");
    }
    assert_eq!(s.count("update_channels").await, before);
}
