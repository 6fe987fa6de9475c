//! Revocation as independent verifiers see it: `openssl crl -verify` accepts Sigil's CRL and
//! lists the serial with its reason, and `openssl verify -crl_check` then fails the certificate.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use reqwest::StatusCode;
use serde_json::{Value, json};
use sigil_server::OcspSigning;

use common::{
    Db, TestServer, enrolled_device, ok, openssl, openssl_ocsp, p256_csr, s_client, sigil,
};

/// Fetch the CRL from the URL the certificate names, as DER and as PEM files.
async fn fetch_crl(s: &TestServer, cert: &str) -> String {
    let text = openssl(
        s.dir.path(),
        &[
            "x509",
            "-in",
            cert,
            "-noout",
            "-ext",
            "crlDistributionPoints",
        ],
    );
    let url = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("URI:"))
        .expect("certificate has a CRL distribution point")
        .to_owned();
    let r = reqwest::get(&url).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "application/pkix-crl");
    std::fs::write(s.dir.path().join("crl.der"), r.bytes().await.unwrap()).unwrap();
    openssl(
        s.dir.path(),
        &["crl", "-inform", "DER", "-in", "crl.der", "-out", "crl.pem"],
    );
    // Signature checked by openssl against the issuing CA.
    let out = std::process::Command::new("openssl")
        .args([
            "crl",
            "-in",
            "crl.pem",
            "-CAfile",
            "chain.pem",
            "-verify",
            "-noout",
            "-text",
        ])
        .current_dir(s.dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("verify OK"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn crl_number(text: &str) -> u64 {
    let mut lines = text.lines();
    lines.find(|l| l.contains("X509v3 CRL Number")).unwrap();
    lines.next().unwrap().trim().parse().unwrap()
}

/// `openssl verify -crl_check` of `cert` against the chain and the fetched CRL.
fn verify_with_crl(s: &TestServer, cert: &str) -> (bool, String) {
    let root = s.data_dir().join("ca/root.crt");
    let issuing = s.data_dir().join("ca/issuing.crt");
    let out = std::process::Command::new("openssl")
        .args([
            "verify",
            "-crl_check",
            "-CRLfile",
            "crl.pem",
            "-CAfile",
            root.to_str().unwrap(),
            "-untrusted",
            issuing.to_str().unwrap(),
            cert,
        ])
        .current_dir(s.dir.path())
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// openssl prints serials as upper-case hex without a leading sign byte.
fn openssl_serial(serial: &str) -> String {
    serial.trim_start_matches("00").to_ascii_uppercase()
}

async fn revoked_certificate_fails_openssl_verification(db: Db) {
    let Some(s) = TestServer::start(db).await else {
        return;
    };
    let product = s.create_product("P").await;
    let (device, serial) = enrolled_device(&s, &product, "dev1").await;

    let before = fetch_crl(&s, "dev1.crt").await;
    assert!(before.contains("No Revoked Certificates"), "{before}");
    assert!(before.contains("Version 2"), "{before}");
    assert!(before.contains("Issuing Distribution Point"), "{before}");
    assert!(before.contains("Only User Certificates"), "{before}");
    let (good, out) = verify_with_crl(&s, "dev1.crt");
    assert!(good, "{out}");

    // Bad reasons change nothing.
    let (st, e) = s
        .post(
            &format!("/api/v1/devices/{device}/revoke"),
            json!({"reason": "certificateHold"}),
        )
        .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert!(
        e["detail"].as_str().unwrap().contains("keyCompromise"),
        "{e}"
    );
    let (_, c) = s.get(&format!("/api/v1/certificates/{serial}")).await;
    assert_eq!(c["status"], "active");

    let (st, r) = s
        .post(
            &format!("/api/v1/devices/{device}/revoke"),
            json!({"reason": "keyCompromise"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{r}");
    assert_eq!(r["revoked"], json!([serial]));
    assert_eq!(r["reason"], "keyCompromise");
    let published = r["crl_number"].as_u64().unwrap();
    assert!(published > crl_number(&before));

    // The CRL at the distribution point lists it at once, with its reason.
    let after = fetch_crl(&s, "dev1.crt").await;
    assert_eq!(crl_number(&after), published);
    assert!(
        after.contains(&format!("Serial Number: {}", openssl_serial(&serial))),
        "{after}"
    );
    assert!(after.contains("Key Compromise"), "{after}");
    let (good, out) = verify_with_crl(&s, "dev1.crt");
    assert!(!good, "a revoked certificate must not verify: {out}");
    assert!(out.contains("certificate revoked"), "{out}");

    let (_, c) = s.get(&format!("/api/v1/certificates/{serial}")).await;
    assert_eq!(c["status"], "revoked");
    assert_eq!(c["revocation_reason"], "keyCompromise");
    assert!(c["revoked_at"].is_string());

    // Nothing left to revoke: a refusal, recorded.
    let (st, e) = s
        .post(&format!("/api/v1/devices/{device}/revoke"), json!({}))
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{e}");

    // Retiring revokes with cessationOfOperation, and the CRL follows.
    let (other, other_serial) = enrolled_device(&s, &product, "dev2").await;
    let (st, d) = s
        .post(&format!("/api/v1/devices/{other}/retire"), json!({}))
        .await;
    assert_eq!(st, StatusCode::OK, "{d}");
    let crl = fetch_crl(&s, "dev2.crt").await;
    assert!(
        crl.contains(&format!("Serial Number: {}", openssl_serial(&other_serial))),
        "{crl}"
    );
    assert!(crl.contains("Cessation Of Operation"), "{crl}");
    assert!(
        crl.contains(&format!("Serial Number: {}", openssl_serial(&serial))),
        "{crl}"
    );
    let (good, out) = verify_with_crl(&s, "dev2.crt");
    assert!(!good && out.contains("certificate revoked"), "{out}");

    // All of it is in the audit log.
    let (_, log) = s
        .get("/api/v1/audit/entries?action=certificate.&limit=500")
        .await;
    let actions: Vec<(&str, &str)> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap(),
                e["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            ("certificate.issued", "success"),
            ("certificate.revoke", "failure"),
            ("certificate.revoked", "success"),
            ("certificate.revoke", "denied"),
            ("certificate.issued", "success"),
            ("certificate.revoked", "success"),
        ]
    );
    let (_, crls) = s
        .get("/api/v1/audit/entries?action=crl.published&limit=500")
        .await;
    let numbers: Vec<u64> = crls["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["details"]["number"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers.len(), 3, "at start, after revoke, after retire");
    assert!(numbers.windows(2).all(|w| w[0] < w[1]), "{numbers:?}");
    s.shutdown().await;
}
both_backends!(revoked_certificate_fails_openssl_verification);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_revokes() {
    let s = TestServer::start(Db::Sqlite).await.unwrap();
    let product = s.create_product("P").await;
    let (device, serial) = enrolled_device(&s, &product, "dev1").await;
    let out = ok(sigil(
        &s,
        &["device", "revoke", &device, "--reason", "key-compromise"],
    ));
    assert!(
        out.contains(&serial) && out.contains("keyCompromise"),
        "{out}"
    );
    assert!(out.contains("published CRL number"), "{out}");
    let out = sigil(&s, &["device", "revoke", &device, "--reason", "hold"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown revocation reason"), "{err}");
    let (_, c): (StatusCode, Value) = s.get(&format!("/api/v1/certificates/{serial}")).await;
    assert_eq!(c["revocation_reason"], "keyCompromise");
    s.shutdown().await;
}

async fn ocsp_with_openssl(db: Db) {
    ocsp_scenario(db, OcspSigning::Delegated).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ocsp_signed_by_the_issuing_ca() {
    ocsp_scenario(Db::Sqlite, OcspSigning::IssuingCa).await
}

async fn ocsp_scenario(db: Db, signing: OcspSigning) {
    let Some(s) = TestServer::start_with(db, |c| c.ocsp_signing = signing).await else {
        return;
    };
    let product = s.create_product("P").await;
    let (device, _) = enrolled_device(&s, &product, "dev1").await;
    // The AIA in the certificate names the responder openssl is about to ask.
    let aia = openssl(
        s.dir.path(),
        &["x509", "-in", "dev1.crt", "-noout", "-ocsp_uri"],
    );
    assert_eq!(aia.trim(), format!("{}/ocsp", s.pki));

    let good = openssl_ocsp(&s, &["-cert", "dev1.crt", "-resp_text"]);
    assert!(good.contains("Response verify OK"), "{good}");
    assert!(good.contains("dev1.crt: good"), "{good}");
    assert!(
        good.contains("This Update:") && good.contains("Next Update:"),
        "{good}"
    );
    assert!(good.contains("OCSP Nonce"), "the nonce is echoed: {good}");
    assert!(!good.contains("WARNING"), "{good}");
    match signing {
        // The delegated responder's certificate travels in the response, certified by the
        // issuing CA for OCSP signing only, and exempt from status checks.
        OcspSigning::Delegated => {
            assert!(good.contains("Subject: CN=Sigil OCSP Responder"), "{good}");
            assert!(good.contains("OCSP Signing"), "{good}");
            assert!(good.contains("OCSP No Check"), "{good}");
        }
        OcspSigning::IssuingCa => {
            assert!(
                !good.contains("Certificate:"),
                "no certificate sent: {good}"
            );
        }
    }
    // Without a nonce the signed answer is cached; asking twice gives the same bytes.
    let no_nonce =
        |name: &str| openssl_ocsp(&s, &["-cert", "dev1.crt", "-no_nonce", "-respout", name]);
    let first = no_nonce("cached1.der");
    assert!(first.contains("dev1.crt: good"), "{first}");
    no_nonce("cached2.der");
    let read = |name: &str| std::fs::read(s.dir.path().join(name)).unwrap();
    assert_eq!(read("cached1.der"), read("cached2.der"));

    let (st, _) = s
        .post(
            &format!("/api/v1/devices/{device}/revoke"),
            json!({"reason": "keyCompromise"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let revoked = openssl_ocsp(&s, &["-cert", "dev1.crt"]);
    assert!(revoked.contains("Response verify OK"), "{revoked}");
    assert!(revoked.contains("dev1.crt: revoked"), "{revoked}");
    assert!(revoked.contains("Reason: keyCompromise"), "{revoked}");
    assert!(revoked.contains("Revocation Time:"), "{revoked}");
    // The cached `good` did not survive the revocation.
    let after = no_nonce("cached3.der");
    assert!(after.contains("dev1.crt: revoked"), "{after}");

    // A serial this CA never issued: unknown.
    let unknown = openssl_ocsp(&s, &["-serial", "0x1234"]);
    assert!(unknown.contains("0x1234: unknown"), "{unknown}");

    // RFC 6960 Appendix A.1 GET, without a nonce.
    openssl(
        s.dir.path(),
        &[
            "ocsp",
            "-issuer",
            s.data_dir().join("ca/issuing.crt").to_str().unwrap(),
            "-cert",
            "dev1.crt",
            "-no_nonce",
            "-reqout",
            "req.der",
        ],
    );
    let req = std::fs::read(s.dir.path().join("req.der")).unwrap();
    let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &req);
    let encoded: String = b64
        .bytes()
        .map(|b| match b {
            b'+' => "%2B".to_owned(),
            b'/' => "%2F".to_owned(),
            b'=' => "%3D".to_owned(),
            _ => (b as char).to_string(),
        })
        .collect();
    let r = reqwest::get(format!("{}/ocsp/{encoded}", s.pki))
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "application/ocsp-response");
    std::fs::write(s.dir.path().join("get.der"), r.bytes().await.unwrap()).unwrap();
    let from_get = openssl(
        s.dir.path(),
        &[
            "ocsp",
            "-respin",
            "get.der",
            "-issuer",
            s.data_dir().join("ca/issuing.crt").to_str().unwrap(),
            "-CAfile",
            s.data_dir().join("ca/root.crt").to_str().unwrap(),
            "-cert",
            "dev1.crt",
        ],
    );
    assert!(from_get.contains("dev1.crt: revoked"), "{from_get}");

    // Garbage, wrong content type, bad base64: malformedRequest, as openssl reads it.
    let http = reqwest::Client::new();
    for (i, response) in [
        http.post(format!("{}/ocsp", s.pki))
            .header("content-type", "application/ocsp-request")
            .body(vec![0x30, 0x82, 0xff])
            .send()
            .await
            .unwrap(),
        http.post(format!("{}/ocsp", s.pki))
            .header("content-type", "text/plain")
            .body(req.clone())
            .send()
            .await
            .unwrap(),
        http.get(format!("{}/ocsp/not*base64", s.pki))
            .send()
            .await
            .unwrap(),
    ]
    .into_iter()
    .enumerate()
    {
        assert_eq!(response.status(), StatusCode::OK);
        let name = format!("bad{i}.der");
        std::fs::write(s.dir.path().join(&name), response.bytes().await.unwrap()).unwrap();
        // openssl reports the error status and exits non-zero.
        let out = std::process::Command::new("openssl")
            .args(["ocsp", "-respin", &name, "-resp_text", "-noverify"])
            .current_dir(s.dir.path())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(
            text.contains("Responder Error: malformedrequest (1)"),
            "{text}"
        );
    }
    s.shutdown().await;
}
both_backends!(ocsp_with_openssl);

async fn mtls_refuses_revoked_and_expired_client_certificates(db: Db) {
    let Some(s) = TestServer::start(db).await else {
        return;
    };
    let product = s.create_product("P").await;
    let (device, _) = enrolled_device(&s, &product, "dev1").await;

    let ok_out = s_client(&s, "dev1.crt", "dev1.key");
    assert!(ok_out.contains("HTTP/1.1 200"), "{ok_out}");

    let (st, _) = s
        .post(
            &format!("/api/v1/devices/{device}/revoke"),
            json!({"reason": "keyCompromise"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    // The very next handshake is refused: no CRL download involved.
    let refused = s_client(&s, "dev1.crt", "dev1.key");
    assert!(!refused.contains("HTTP/1.1 200"), "{refused}");
    assert!(refused.contains("certificate revoked"), "{refused}");

    // An expired certificate from the same CA.
    let dir = sigil_server::DataDir::new(s.data_dir());
    let ca = dir.load_issuing_ca().unwrap();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    std::fs::write(s.dir.path().join("old.key"), key.serialize_pem()).unwrap();
    let csr = rcgen::CertificateParams::new(Vec::<String>::new())
        .unwrap()
        .serialize_request(&key)
        .unwrap();
    let csr = sigil_ca::ValidatedCsr::from_der(csr.der()).unwrap();
    let issued = ca
        .issue_device_certificate(
            &csr,
            device.parse().unwrap(),
            sigil_ca::Profile::by_name("device-ephemeral").unwrap(),
            &sigil_ca::IdentityScheme::Urn,
            &sigil_ca::PublicUrls::new(&s.pki).unwrap(),
            time::OffsetDateTime::now_utc() - time::Duration::days(2),
        )
        .unwrap();
    let pem = pem::encode(&pem::Pem::new("CERTIFICATE", issued.der));
    std::fs::write(s.dir.path().join("old.crt"), pem).unwrap();
    let expired = s_client(&s, "old.crt", "old.key");
    assert!(!expired.contains("HTTP/1.1 200"), "{expired}");
    assert!(expired.contains("certificate expired"), "{expired}");

    // A certificate from a CA that is not Sigil's.
    let stranger = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let self_signed = rcgen::CertificateParams::new(vec!["stranger".to_owned()])
        .unwrap()
        .self_signed(&stranger)
        .unwrap();
    std::fs::write(s.dir.path().join("stranger.key"), stranger.serialize_pem()).unwrap();
    std::fs::write(s.dir.path().join("stranger.crt"), self_signed.pem()).unwrap();
    let unknown = s_client(&s, "stranger.crt", "stranger.key");
    assert!(!unknown.contains("HTTP/1.1 200"), "{unknown}");
    assert!(unknown.contains("unknown ca"), "{unknown}");

    // Operators without a client certificate are unaffected.
    let (st, _) = s.get("/api/v1/devices").await;
    assert_eq!(st, StatusCode::OK);
    s.shutdown().await;
}
both_backends!(mtls_refuses_revoked_and_expired_client_certificates);

async fn a_new_certificate_supersedes_the_old_one(db: Db) {
    let Some(s) = TestServer::start(db).await else {
        return;
    };
    let product = s.create_product("P").await;
    let (device, first) = enrolled_device(&s, &product, "dev1").await;
    let csr = p256_csr(s.dir.path(), "dev1-new");
    let (st, c) = s
        .post(
            &format!("/api/v1/devices/{device}/certificates"),
            json!({"csr": csr}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{c}");
    let second = c["serial"].as_str().unwrap().to_owned();
    let (_, old) = s.get(&format!("/api/v1/certificates/{first}")).await;
    let (_, new) = s.get(&format!("/api/v1/certificates/{second}")).await;
    assert_eq!(
        (old["status"].as_str(), new["status"].as_str()),
        (Some("superseded"), Some("active"))
    );
    let (_, log) = s
        .get(&format!(
            "/api/v1/audit/entries?action=certificate.issued&device={device}"
        ))
        .await;
    let items = log["items"].as_array().unwrap();
    assert_eq!(items[0]["details"]["supersedes"], json!([]));
    assert_eq!(items[1]["details"]["supersedes"], json!([first]));
    // A superseded certificate is still valid until it expires, so revocation covers it too.
    let (_, r) = s
        .post(&format!("/api/v1/devices/{device}/revoke"), json!({}))
        .await;
    let mut revoked: Vec<String> = serde_json::from_value(r["revoked"].clone()).unwrap();
    revoked.sort();
    let mut both = vec![first, second];
    both.sort();
    assert_eq!(revoked, both);
    s.shutdown().await;
}
both_backends!(a_new_certificate_supersedes_the_old_one);

/// With an overlap configured, a superseded certificate is revoked (reason superseded) once the
/// overlap has passed, and the CRL lists it; the new certificate is untouched.
async fn superseded_certificates_are_revoked_after_the_overlap(db: Db) {
    let Some(s) = TestServer::start_with(db, |c| {
        c.superseded_overlap = Some(time::Duration::seconds(2));
    })
    .await
    else {
        return;
    };
    let product = s.create_product("P").await;
    let (device, first) = enrolled_device(&s, &product, "dev1").await;
    let csr = p256_csr(s.dir.path(), "dev1-new");
    let (st, c) = s
        .post(
            &format!("/api/v1/devices/{device}/certificates"),
            json!({"csr": csr}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{c}");
    let second = c["serial"].as_str().unwrap().to_owned();
    // Within the overlap the old certificate still works.
    let (_, old) = s.get(&format!("/api/v1/certificates/{first}")).await;
    assert_eq!(old["status"], "superseded");
    let mut revoked = None;
    for _ in 0..100 {
        let (_, old) = s.get(&format!("/api/v1/certificates/{first}")).await;
        if old["status"] == "revoked" {
            revoked = Some(old);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let old = revoked.expect("the superseded certificate was revoked after the overlap");
    assert_eq!(old["revocation_reason"], "superseded");
    let (_, new) = s.get(&format!("/api/v1/certificates/{second}")).await;
    assert_eq!(new["status"], "active");
    let crl = fetch_crl(&s, "dev1.crt").await;
    assert!(crl.contains(&openssl_serial(&first)), "{crl}");
    assert!(crl.contains("Superseded"), "{crl}");
    assert!(!crl.contains(&openssl_serial(&second)), "{crl}");
    s.shutdown().await;
}
both_backends!(superseded_certificates_are_revoked_after_the_overlap);

/// A Mosquitto broker on a free port: TLS with client certificates required, trusting Sigil's
/// chain, checking Sigil's CRL (`crl.pem` in the test directory, read at start).
struct Broker {
    child: std::process::Child,
    port: u16,
}

impl Broker {
    fn start(s: &TestServer) -> Broker {
        let dir = s.dir.path();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let conf = format!(
            "user root\nallow_anonymous true\nlistener {port} 127.0.0.1\n\
             cafile {dir}/chain.pem\ncertfile {dir}/broker.crt\nkeyfile {dir}/broker.key\n\
             require_certificate true\nuse_identity_as_username true\ncrlfile {dir}/crl.pem\n",
            dir = dir.display()
        );
        std::fs::write(dir.join("mosquitto.conf"), conf).unwrap();
        let child = std::process::Command::new("mosquitto")
            .args(["-c", "mosquitto.conf"])
            .current_dir(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("mosquitto on PATH");
        // Owned by `Broker` from here on, so it is killed and reaped on every path.
        let broker = Broker { child, port };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return broker;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        drop(broker);
        panic!("mosquitto did not start");
    }

    /// Publish one message as the device holding `cert`/`key`; whether the broker accepted.
    fn publish(&self, s: &TestServer, cert: &str, key: &str) -> (bool, String) {
        let out = std::process::Command::new("mosquitto_pub")
            .args([
                "-h",
                "localhost",
                "-p",
                &self.port.to_string(),
                "--cafile",
                "chain.pem",
                "--cert",
                cert,
                "--key",
                key,
                "-t",
                "devices/telemetry",
                "-m",
                "21.5",
                "-q",
                "1",
            ])
            .current_dir(s.dir.path())
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn mosquitto_refuses_a_device_after_revocation(db: Db) {
    let Some(s) = TestServer::start(db).await else {
        return;
    };
    let dir = s.dir.path();
    let product = s.create_product("P").await;
    let (device, _) = enrolled_device(&s, &product, "dev1").await;
    // chain.pem (issuing + root) is the broker's cafile.
    let chain = format!(
        "{}{}",
        std::fs::read_to_string(s.data_dir().join("ca/issuing.crt")).unwrap(),
        std::fs::read_to_string(s.data_dir().join("ca/root.crt")).unwrap()
    );
    std::fs::write(dir.join("chain.pem"), chain).unwrap();
    // The broker's own certificate, from Sigil's CA.
    let ca = sigil_server::DataDir::new(s.data_dir())
        .load_issuing_ca()
        .unwrap();
    let server = ca
        .issue_server_certificate(
            &["localhost".to_owned()],
            &[],
            time::Duration::days(1),
            time::OffsetDateTime::now_utc(),
        )
        .unwrap();
    let pem_chain: String = server
        .chain_der
        .iter()
        .map(|d| pem::encode(&pem::Pem::new("CERTIFICATE", d.clone())))
        .collect();
    std::fs::write(dir.join("broker.crt"), pem_chain).unwrap();
    std::fs::write(
        dir.join("broker.key"),
        pem::encode(&pem::Pem::new("PRIVATE KEY", server.key_pkcs8_der.clone())),
    )
    .unwrap();

    fetch_crl(&s, "dev1.crt").await;
    let broker = Broker::start(&s);
    let (accepted, err) = broker.publish(&s, "dev1.crt", "dev1.key");
    assert!(accepted, "an enrolled device connects: {err}");

    let (st, _) = s
        .post(
            &format!("/api/v1/devices/{device}/revoke"),
            json!({"reason": "keyCompromise"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    // CRL refresh: fetch the new CRL from the distribution point and restart the broker on it.
    fetch_crl(&s, "dev1.crt").await;
    drop(broker);
    let broker = Broker::start(&s);
    let (accepted, err) = broker.publish(&s, "dev1.crt", "dev1.key");
    assert!(!accepted, "a revoked device is refused by the broker");
    // Another, valid device still gets in.
    let (_, _) = enrolled_device(&s, &product, "dev2").await;
    let (accepted, err2) = broker.publish(&s, "dev2.crt", "dev2.key");
    assert!(accepted, "{err2} (revoked device's error was: {err})");
    s.shutdown().await;
}
both_backends!(mosquitto_refuses_a_device_after_revocation);
