//! Compliance posture from the live fleet: device checks roll up to framework requirements,
//! with the failing devices, their reasons and evidence; fixing a device turns it green.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use reqwest::StatusCode;
use serde_json::{Value, json};

use common::{Db, TestServer, check, failing, p256_csr, requirement};

/// Validate `doc` against one of NIST's OSCAL JSON schemas vendored in `tests/data/oscal`;
/// the errors, if any.
fn oscal_errors(schema: &str, doc: &Value) -> Vec<String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/oscal")
        .join(schema);
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let validator = jsonschema::draft7::new(&schema).unwrap();
    validator
        .iter_errors(doc)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect()
}

async fn posture(s: &TestServer, device: &str, default_password: bool, now: time::OffsetDateTime) {
    let report: sigil_domain::Posture = serde_json::from_value(json!({
        "firmware_version": "1.0.0", "secure_boot": true, "default_password": default_password,
        "debug_interfaces": [], "sbom_ref": "sha256:0011"
    }))
    .unwrap();
    s.store()
        .record_posture(
            &sigil_audit::Actor::device(device),
            device.parse().unwrap(),
            &report,
            now,
        )
        .await
        .unwrap();
}

async fn fleet_posture_names_the_failing_devices_and_follows_fixes(db: Db) {
    let offset = Arc::new(AtomicI64::new(0));
    let clock: sigil_server::Clock = {
        let offset = offset.clone();
        Arc::new(move || {
            time::OffsetDateTime::now_utc() + time::Duration::seconds(offset.load(Ordering::SeqCst))
        })
    };
    // A webhook receiver for compliance alerts.
    let (alerts_tx, mut alerts) = tokio::sync::mpsc::unbounded_channel::<Value>();
    let receiver = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", receiver.local_addr().unwrap());
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
            let tx = alerts_tx.clone();
            async move {
                let _ = tx.send(body);
                "ok"
            }
        }),
    );
    tokio::spawn(async move { axum::serve(receiver, app).await });
    // Checkpoints (which verify the log) every 100 ms, so the server's moved clock sees a
    // recent verification.
    let Some(s) = TestServer::start_with_clock(
        db,
        |c| {
            c.checkpoint_interval = std::time::Duration::from_millis(100);
            c.compliance_webhook = Some(hook);
        },
        clock.clone(),
    )
    .await
    else {
        return;
    };
    let product = s.create_product("Camera").await;
    let good = s.create_device(&product, "GOOD").await;
    let short = s.create_device(&product, "SHORT").await;
    let weak = s.create_device(&product, "PASSWORD").await;
    for (device, profile) in [
        (&good, "device"),
        (&short, "device-short"),
        (&weak, "device"),
    ] {
        let csr = p256_csr(s.dir.path(), device);
        let (st, body) = s
            .post(
                &format!("/api/v1/devices/{device}/certificates"),
                json!({"csr": csr, "profile": profile}),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{body}");
        let (st, _) = s
            .post(&format!("/api/v1/devices/{device}/activate"), json!({}))
            .await;
        assert_eq!(st, StatusCode::OK);
    }
    // Two days on: the 24-hour certificate has expired.
    offset.store(2 * 86_400, Ordering::SeqCst);
    let now = clock();
    posture(&s, &good, false, now).await;
    posture(&s, &weak, true, now).await;

    let (st, list) = s.get("/api/v1/compliance").await;
    assert_eq!(st, StatusCode::OK, "{list}");
    assert_eq!(list["frameworks"].as_array().unwrap().len(), 5);
    let (st, report) = s.get("/api/v1/compliance/etsi-en-303-645").await;
    assert_eq!(st, StatusCode::OK, "{report}");
    assert_eq!(report["devices_evaluated"], 3);
    assert!(
        report["catalogue_version"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );

    // 5.1-1 (no universal default passwords): the device with a default password fails, and
    // the one whose certificate expired fails on its identity.
    let r511 = requirement(&report, "5.1-1");
    assert_eq!(r511["status"], "fail");
    let passwords = failing(check(r511, "device.no-default-password"));
    assert_eq!(
        passwords,
        [(
            weak.clone(),
            "a default or universal password is still set".to_owned()
        )]
    );
    let identity = failing(check(r511, "device.unique-identity"));
    assert_eq!(
        identity,
        [(short.clone(), "no valid, unrevoked certificate".to_owned())]
    );
    // 5.5-8: the expired certificate, with its serial as evidence.
    let current = check(requirement(&report, "5.5-8"), "device.certificate-current");
    let f = &current["failures"].as_array().unwrap()[0];
    assert_eq!(f["device"], short.as_str());
    assert!(f["reason"].as_str().unwrap().ends_with("expired"), "{f}");
    assert_eq!(f["evidence"][0]["type"], "certificate");
    assert_eq!(current["counts"]["fail"], 1);
    assert_eq!(current["counts"]["pass"], 2);
    // Attestation-only provisions stay unknown until someone attests.
    assert_eq!(requirement(&report, "5.2-1")["status"], "unknown");
    // The Device Defender equivalent is reported with the check.
    let shared = check(requirement(&report, "5.4-4"), "device.key-not-shared");
    assert_eq!(
        shared["aws_device_defender"],
        json!(["DEVICE_CERTIFICATE_SHARED_CHECK"])
    );
    assert_eq!(shared["status"], "pass");

    // One device's view.
    let (st, mine) = s
        .get(&format!(
            "/api/v1/compliance/etsi-en-303-645/devices/{good}"
        ))
        .await;
    assert_eq!(st, StatusCode::OK, "{mine}");
    assert_eq!(mine["devices_evaluated"], 1);
    assert_eq!(requirement(&mine, "5.1-1")["status"], "pass");
    // Certificates recorded before the key algorithm was (migration 0010) are classified from
    // their DER.
    let strength = |report: &Value| {
        check(requirement(report, "5.1-3"), "device.key-strength")["reason"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let recorded = strength(&mine);
    assert_eq!(recorded, "keys meet the crypto policy (ECDSA P-256)");
    sqlx::query("UPDATE certificates SET key_algorithm = NULL")
        .execute(s.store().pool())
        .await
        .unwrap();
    let (_, mine) = s
        .get(&format!(
            "/api/v1/compliance/etsi-en-303-645/devices/{good}"
        ))
        .await;
    assert_eq!(strength(&mine), recorded);

    // Fix the password: the device drops out of the failures.
    posture(&s, &weak, false, clock()).await;
    let (_, report) = s.get("/api/v1/compliance/etsi-en-303-645").await;
    assert!(
        failing(check(
            requirement(&report, "5.1-1"),
            "device.no-default-password"
        ))
        .is_empty()
    );

    // Organisation checks from the server's own state, here in the CRA report. The clock
    // jumped two days and nothing was revoked since: the CRL is stale.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (_, cra) = s.get("/api/v1/compliance/eu-cra").await;
    let crl = check(requirement(&cra, "I.2.k"), "org.revocation-service");
    assert_eq!(crl["status"], "fail", "{crl}");
    assert!(
        crl["reason"]
            .as_str()
            .unwrap()
            .ends_with("is past its nextUpdate"),
        "{crl}"
    );
    // A revocation re-signs it at once.
    let (st, _) = s
        .post(
            &format!("/api/v1/devices/{weak}/revoke"),
            json!({"reason": "cessationOfOperation"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (_, cra) = s.get("/api/v1/compliance/eu-cra").await;
    for (requirement_id, check_id) in [
        ("I.2.f", "org.audit-log-integrity"),
        ("I.2.e", "org.ca-key-protection"),
        ("I.2.e", "org.encryption-in-transit"),
        ("I.2.k", "org.revocation-service"),
        ("I.2.d", "org.ca-certificate-validity"),
        ("I.2.d", "org.access-policy"),
        ("I.2.d", "org.asset-visibility"),
    ] {
        let c = check(requirement(&cra, requirement_id), check_id);
        assert_eq!(c["status"], "pass", "{c}");
    }
    // A device Sigil does not know tries to connect through the broker hook: asset
    // visibility fails, pointing at the audit entry.
    let (st, _) = s
        .post(
            "/api/v1/broker/emqx/authn",
            json!({"username": "rogue-camera-7"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (_, cra) = s.get("/api/v1/compliance/eu-cra").await;
    let c = check(requirement(&cra, "I.2.d"), "org.asset-visibility");
    assert_eq!(c["status"], "fail", "{c}");
    assert!(
        c["reason"].as_str().unwrap().contains("rogue-camera-7"),
        "{c}"
    );
    assert_eq!(c["failures"][0]["evidence"][0]["type"], "audit-entry");

    // An attestation with its evidence document turns 5.2-1 green until it expires.
    use base64::Engine;
    let document = b"Our vulnerability disclosure policy: security@example.com, 90 days.";
    let expires = (clock() + time::Duration::days(1))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let (st, e) = s
        .post(
            "/api/v1/compliance/attestations",
            json!({"check": "device.secure-boot", "attested_by": "x", "statement": "x", "document_name": "x",
                   "document_base64": "eA==", "expires_at": expires}),
        )
        .await;
    assert_eq!(
        st,
        StatusCode::UNPROCESSABLE_ENTITY,
        "automated checks are not attested: {e}"
    );
    let (st, attestation) = s
        .post(
            "/api/v1/compliance/attestations",
            json!({"check": "attest.vulnerability-disclosure", "attested_by": "Dana Smith, CISO",
                   "statement": "The policy is published at https://example.com/security & in <the manual>.",
                   "document_name": "vdp.txt",
                   "document_base64": base64::engine::general_purpose::STANDARD.encode(document),
                   "expires_at": expires}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{attestation}");
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, document);
    assert_eq!(attestation["document_sha256"], hex::encode(digest.as_ref()));
    let (_, logged) = s
        .get("/api/v1/audit/entries?action=compliance.attested&order=desc&limit=1")
        .await;
    assert_eq!(
        logged["items"][0]["details"]["document_sha256"],
        attestation["document_sha256"]
    );
    let (_, report) = s.get("/api/v1/compliance/etsi-en-303-645").await;
    let r521 = requirement(&report, "5.2-1");
    assert_eq!(r521["status"], "pass", "{r521}");
    let vdp = check(r521, "attest.vulnerability-disclosure");
    assert!(
        vdp["reason"]
            .as_str()
            .unwrap()
            .starts_with("attested by Dana Smith, CISO"),
        "{vdp}"
    );
    // The reports an auditor takes away.
    let dir = s.dir.path();
    let run = |format: &str| {
        let out = format!("report.{format}");
        let printed = common::ok(tokio::task::block_in_place(|| {
            common::sigil(
                &s,
                &[
                    "compliance",
                    "report",
                    "--framework",
                    "etsi-en-303-645",
                    "--format",
                    format,
                    "--out",
                    &out,
                ],
            )
        }));
        assert!(printed.contains("67 requirements"), "{printed}");
        std::fs::read_to_string(dir.join(out)).unwrap()
    };
    let page = run("html");
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert!(
        !page.contains("<script") && !page.contains("src=\"http"),
        "self-contained"
    );
    assert!(page.contains(report["catalogue_version"].as_str().unwrap()));
    assert!(page.contains("id=\"req-5.1-1\""));
    assert!(page.contains(&short), "the failing device is named");
    assert!(page.contains("Dana Smith, CISO"));
    assert!(
        page.contains("https://example.com/security &amp; in &lt;the manual&gt;."),
        "escaped"
    );
    let table = run("csv");
    let rows: Vec<&str> = table.lines().collect();
    let checks: usize = report["requirements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["checks"].as_array().unwrap().len())
        .sum();
    assert_eq!(rows.len(), checks + 1);
    assert!(
        rows.iter().any(|r| r
            .starts_with("etsi-en-303-645,5.5-8,5.5,fail,device.certificate-current,device,fail")
            && r.contains(&short)),
        "{table}"
    );
    let json_report: Value = serde_json::from_str(&run("json")).unwrap();
    assert_eq!(json_report["report"]["framework"], "etsi-en-303-645");
    assert_eq!(
        json_report["attestations"][0]["attested_by"],
        "Dana Smith, CISO"
    );
    // OSCAL: assessment-results, and the catalogue as a component-definition beside it, both
    // valid against NIST's schemas.
    let results: Value = serde_json::from_str(&run("oscal")).unwrap();
    let definition: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("report.component-definition.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        oscal_errors("oscal_assessment-results_schema.json", &results),
        Vec::<String>::new()
    );
    assert_eq!(
        oscal_errors("oscal_component_schema.json", &definition),
        Vec::<String>::new()
    );
    let ar = &results["assessment-results"];
    assert_eq!(ar["metadata"]["oscal-version"], "1.2.3");
    assert_eq!(ar["metadata"]["version"], report["catalogue_version"]);
    assert_eq!(
        ar["back-matter"]["resources"][0]["rlinks"][0]["href"],
        "report.component-definition.json"
    );
    let findings = ar["results"][0]["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 67);
    let f558 = findings
        .iter()
        .find(|f| f["target"]["target-id"] == "etsi-en-303-645_5.5-8")
        .unwrap();
    assert_eq!(f558["target"]["status"]["state"], "not-satisfied");
    let observations = ar["results"][0]["observations"].as_array().unwrap();
    let named = observations.iter().any(|o| {
        o["relevant-evidence"].as_array().is_some_and(|e| {
            e.iter()
                .any(|e| e["description"].as_str().unwrap().starts_with(&short))
        })
    });
    assert!(named, "the failing device is in the evidence");
    let implementations =
        definition["component-definition"]["components"][0]["control-implementations"]
            .as_array()
            .unwrap();
    assert_eq!(implementations.len(), 5);
    // The validation is real: a control id that is not an OSCAL token, or a missing uuid,
    // is refused.
    let mut broken = results.clone();
    broken["assessment-results"]["results"][0]["findings"][0]["target"]["target-id"] =
        json!("5.1-1");
    broken["assessment-results"]["results"][0]["observations"][0]
        .as_object_mut()
        .unwrap()
        .remove("uuid");
    assert_eq!(
        oscal_errors("oscal_assessment-results_schema.json", &broken).len(),
        2
    );

    // Two days later it has expired: unknown again, saying why.
    offset.store(4 * 86_400, Ordering::SeqCst);
    let (_, report) = s.get("/api/v1/compliance/etsi-en-303-645").await;
    let vdp = check(
        requirement(&report, "5.2-1"),
        "attest.vulnerability-disclosure",
    );
    assert_eq!(vdp["status"], "unknown");
    assert!(vdp["reason"].as_str().unwrap().contains("expired"), "{vdp}");

    // History and alerts: a run is kept per evaluation; a requirement that gets worse is an
    // alert (an audit entry naming it).
    let (st, _) = s
        .post(&format!("/api/v1/devices/{short}/retire"), json!({}))
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, first) = s
        .post("/api/v1/compliance/eo-14028/evaluate", json!({}))
        .await;
    assert_eq!(st, StatusCode::OK, "{first}");
    assert_eq!(requirement(&first["report"], "EO-4e-vii")["status"], "pass");
    let no_sbom: sigil_domain::Posture =
        serde_json::from_value(json!({"firmware_version": "1.0.1"})).unwrap();
    s.store()
        .record_posture(
            &sigil_audit::Actor::device(&good),
            good.parse().unwrap(),
            &no_sbom,
            clock(),
        )
        .await
        .unwrap();
    let (_, second) = s
        .post("/api/v1/compliance/eo-14028/evaluate", json!({}))
        .await;
    assert_eq!(
        second["regressions"],
        json!([{"requirement": "EO-4e-vii", "before": "pass", "after": "fail"}])
    );
    let alert = &s
        .get("/api/v1/audit/entries?action=compliance.degraded&order=desc&limit=1")
        .await
        .1["items"][0];
    assert_eq!(alert["subject"], "framework:eo-14028");
    assert_eq!(
        alert["details"]["regressions"][0]["requirement"],
        "EO-4e-vii"
    );
    // ... and the webhook hears of it. (Earlier evaluations may have alerted too: find ours.)
    let delivered = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        loop {
            let body = alerts.recv().await.unwrap();
            if body["run"] == alert["details"]["run"] {
                return body;
            }
        }
    })
    .await
    .expect("the webhook received the alert within 5 s");
    assert_eq!(delivered["event"], "compliance.degraded");
    assert_eq!(delivered["framework"], "eo-14028");
    assert_eq!(delivered["regressions"][0]["after"], "fail");
    let (_, history) = s.get("/api/v1/compliance/eo-14028/history").await;
    let runs = history.as_array().unwrap();
    assert!(runs.len() >= 2, "{history}");
    assert_eq!(runs[0]["requirements"]["EO-4e-vii"], "fail");
    assert_eq!(runs[1]["requirements"]["EO-4e-vii"], "pass");
    // Evaluating again without a change raises nothing.
    let (_, third) = s
        .post("/api/v1/compliance/eo-14028/evaluate", json!({}))
        .await;
    assert_eq!(third["regressions"], json!([]));

    // Unknown framework: 404 naming the ones there are; auditors may read, provisioners not.
    let (st, e) = s.get("/api/v1/compliance/iso-27001").await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert!(e["detail"].as_str().unwrap().contains("eu-cra"), "{e}");
    s.shutdown().await;
}
both_backends!(fleet_posture_names_the_failing_devices_and_follows_fixes);

/// A device's posture report, healthy unless `default_password`.
fn healthy_posture(default_password: bool) -> sigil_domain::Posture {
    serde_json::from_value(json!({
        "firmware_version": "2.0.0", "secure_boot": true, "default_password": default_password,
        "listening_services": [{"protocol": "tcp", "port": 8883}], "debug_interfaces": [],
        "sbom_ref": "sha256:00112233"
    }))
    .unwrap()
}

/// Every requirement's status in a report.
fn statuses(report: &Value) -> std::collections::BTreeMap<String, String> {
    report["requirements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap().to_owned(),
                r["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// What each requirement of `framework` must be when exactly `failing` checks fail and
/// `unknown` checks are undecided, the rest passing.
fn expected(
    catalogue: &sigil_compliance::Catalogue,
    framework: &str,
    failing: &[&str],
    unknown: &[&str],
) -> std::collections::BTreeMap<String, String> {
    catalogue
        .framework(framework)
        .unwrap()
        .requirements
        .iter()
        .map(|r| {
            let has = |set: &[&str]| r.checks.iter().any(|c| set.contains(&c.as_str()));
            let status = if has(failing) {
                "fail"
            } else if has(unknown) {
                "unknown"
            } else {
                "pass"
            };
            (r.id.clone(), status.to_owned())
        })
        .collect()
}

/// A manufacturer CA (rcgen) and IDevID certificates from it.
struct Manufacturer {
    ca_pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl Manufacturer {
    fn new() -> Self {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::default();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Acme IDevID CA");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let ca_pem = params.self_signed(&key).unwrap().pem();
        let issuer = rcgen::Issuer::from_ca_cert_pem(&ca_pem, key).unwrap();
        Self { ca_pem, issuer }
    }

    /// An IDevID certificate for device serial `serial` on `key` (PEM).
    fn idevid(&self, serial: &str, key: &rcgen::KeyPair) -> String {
        let mut params = rcgen::CertificateParams::default();
        params
            .distinguished_name
            .push(rcgen::DnType::CustomDnType(vec![2, 5, 4, 5]), serial);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        params.signed_by(key, &self.issuer).unwrap().pem()
    }
}

/// EST simpleenroll authenticated by an IDevID client certificate, as a device would.
async fn bootstrap_enrol(s: &TestServer, idevid_pem: &str, idevid_key: &rcgen::KeyPair) {
    use base64::Engine;
    let root = std::fs::read(s.data_dir().join("ca/root.crt")).unwrap();
    let identity = reqwest::Identity::from_pem(
        format!("{idevid_pem}{}", idevid_key.serialize_pem()).as_bytes(),
    )
    .unwrap();
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&root).unwrap()])
        .identity(identity)
        .build()
        .unwrap();
    let device_key = rcgen::KeyPair::generate().unwrap();
    let csr = rcgen::CertificateParams::new(Vec::<String>::new())
        .unwrap()
        .serialize_request(&device_key)
        .unwrap();
    let port = s.handle.as_ref().unwrap().api_addr.port();
    let r = client
        .post(format!(
            "https://localhost:{port}/.well-known/est/simpleenroll"
        ))
        .header("content-type", "application/pkcs10")
        .body(base64::engine::general_purpose::STANDARD.encode(csr.der()))
        .send()
        .await
        .unwrap();
    let status = r.status();
    assert_eq!(status, StatusCode::OK, "{}", r.text().await.unwrap());
}

/// The scenario: a fleet with a shared (manufacturer) key, an expired certificate, a default
/// password and an overdue attestation fails exactly the requirements those checks map to in
/// every framework; fixing each turns everything green; the history shows both.
async fn scenario_failures_per_framework_and_fixes(db: Db) {
    let offset = Arc::new(AtomicI64::new(0));
    let clock: sigil_server::Clock = {
        let offset = offset.clone();
        Arc::new(move || {
            time::OffsetDateTime::now_utc() + time::Duration::seconds(offset.load(Ordering::SeqCst))
        })
    };
    let Some(s) = TestServer::start_with_clock(
        db,
        |c| c.checkpoint_interval = std::time::Duration::from_millis(100),
        clock.clone(),
    )
    .await
    else {
        return;
    };
    let catalogue = sigil_compliance::Catalogue::shipped().unwrap();
    let product = s.create_product("Gateway").await;

    // The maker declares current firmware and the services a gateway exposes; bad
    // declarations are refused and change nothing.
    let path = format!("/api/v1/products/{product}/declaration");
    let put = |body: Value| {
        let url = format!("{}{path}", s.api);
        let request = s
            .http
            .put(url)
            .bearer_auth(&s.token)
            .header("x-sigil-csrf", "1")
            .json(&body);
        async move { common::split(request.send().await.unwrap()).await }
    };
    let (st, e) =
        put(json!({"current_firmware": ["2.0.0"], "allowed_services": ["tcp/99999"]})).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert!(e["detail"].as_str().unwrap().contains("tcp/99999"), "{e}");
    let (st, _) = s.get(&path).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, d) =
        put(json!({"current_firmware": ["2.0.0"], "allowed_services": ["TCP/8883"]})).await;
    assert_eq!(st, StatusCode::OK, "{d}");
    assert_eq!(
        s.get(&path).await.1["allowed_services"],
        json!(["tcp/8883"])
    );

    // Five devices. B and C are enrolled by their IDevID certificates, which the maker issued
    // on one key (a cloned key).
    let healthy = s.create_device(&product, "SN-A").await;
    let b = s.create_device(&product, "SN-B").await;
    let c = s.create_device(&product, "SN-C").await;
    let expiring = s.create_device(&product, "SN-D").await;
    let password = s.create_device(&product, "SN-E").await;
    let maker = Manufacturer::new();
    let (st, e) = s
        .post(
            &format!("/api/v1/products/{product}/manufacturer-cas"),
            json!({"certificate": maker.ca_pem}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{e}");
    let cloned = rcgen::KeyPair::generate().unwrap();
    bootstrap_enrol(&s, &maker.idevid("SN-B", &cloned), &cloned).await;
    bootstrap_enrol(&s, &maker.idevid("SN-C", &cloned), &cloned).await;
    for (device, profile) in [
        (&healthy, "device"),
        (&expiring, "device-minutes"),
        (&password, "device"),
    ] {
        let (st, body) = s
            .post(
                &format!("/api/v1/devices/{device}/certificates"),
                json!({"csr": common::fresh_csr_pem(), "profile": profile}),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{body}");
    }
    for device in [&healthy, &b, &c, &expiring, &password] {
        let (st, body) = s
            .post(&format!("/api/v1/devices/{device}/activate"), json!({}))
            .await;
        assert_eq!(st, StatusCode::OK, "{body}");
    }
    // Every organisational control is attested; one attestation runs out in 5 minutes.
    let attest = |check: String, minutes: i64| {
        let expires = (clock() + time::Duration::minutes(minutes))
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap();
        let s = &s;
        async move {
            let (st, e) = s
                .post(
                    "/api/v1/compliance/attestations",
                    json!({"check": check, "attested_by": "Dana Smith, CISO", "statement": "In place.",
                           "document_name": "evidence.pdf", "document_base64": "JVBERi0=",
                           "expires_at": expires}),
                )
                .await;
            assert_eq!(st, StatusCode::CREATED, "{e}");
        }
    };
    let overdue = "attest.incident-response";
    let attestation_checks: Vec<String> = catalogue
        .checks()
        .filter(|c| c.kind == sigil_compliance::CheckKind::Attestation)
        .map(|c| c.id.clone())
        .collect();
    assert!(attestation_checks.iter().any(|c| c == overdue));
    for check in &attestation_checks {
        attest(check.clone(), if check == overdue { 5 } else { 24 * 60 }).await;
    }
    // Ten minutes on: D's 5-minute certificate has expired, the attestation is overdue.
    offset.store(600, Ordering::SeqCst);
    for device in [&healthy, &b, &c, &expiring] {
        s.store()
            .record_posture(
                &sigil_audit::Actor::device(device),
                device.parse().unwrap(),
                &healthy_posture(false),
                clock(),
            )
            .await
            .unwrap();
    }
    s.store()
        .record_posture(
            &sigil_audit::Actor::device(&password),
            password.parse().unwrap(),
            &healthy_posture(true),
            clock(),
        )
        .await
        .unwrap();
    // Every device's agent reports its behaviour metrics too (as the detector records them).
    let reports: Vec<(sigil_domain::DeviceId, i64)> = [&healthy, &b, &c, &expiring, &password]
        .iter()
        .map(|d| (d.parse().unwrap(), clock().unix_timestamp()))
        .collect();
    s.store()
        .record_metrics_reports(
            &sigil_audit::Actor::system("detector"),
            &reports,
            0,
            clock(),
        )
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    // The detector closes windows twice a second: once after the jump, it is running now.
    let jumped_ms = (clock().unix_timestamp_nanos() / 1_000_000) as i64;
    let started = std::time::Instant::now();
    while s.get("/api/v1/monitoring/status").await.1["last_tick_ms"]
        .as_i64()
        .unwrap()
        < jumped_ms
    {
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // The declaration names no SBOM for the current firmware, and Sigil holds none.
    let failing_checks = [
        "device.key-not-shared",
        "device.unique-identity",
        "device.certificate-current",
        "device.no-default-password",
        "product.sbom-current",
    ];
    // D has no valid certificate left to inspect; the overdue attestation no longer counts.
    let unknown = ["device.key-strength", overdue];
    for framework in catalogue.frameworks() {
        let id = &framework.info.id;
        let (st, run) = s
            .post(&format!("/api/v1/compliance/{id}/evaluate"), json!({}))
            .await;
        assert_eq!(st, StatusCode::OK, "{run}");
        assert_eq!(
            statuses(&run["report"]),
            expected(&catalogue, id, &failing_checks, &unknown),
            "{id}"
        );
    }
    // The reasons name the devices.
    let (_, etsi) = s.get("/api/v1/compliance/etsi-en-303-645").await;
    let shared = check(requirement(&etsi, "5.4-4"), "device.key-not-shared");
    let shared_failures = failing(shared);
    assert_eq!(shared_failures.len(), 2, "{shared}");
    for (device, reason) in &shared_failures {
        let other = if device == &b { &c } else { &b };
        assert_eq!(
            reason,
            &format!("manufacturer (IDevID) key shared with device(s) {other}")
        );
    }
    assert_eq!(shared["failures"][0]["evidence"][0]["type"], "audit-entry");
    let (_, eo) = s.get("/api/v1/compliance/eo-14028").await;
    let overdue_result = check(requirement(&eo, "EO-6-ir"), overdue);
    assert!(
        overdue_result["reason"]
            .as_str()
            .unwrap()
            .contains("expired"),
        "{overdue_result}"
    );

    // Fix each: retire the clone, renew D, clear the password, renew the attestation.
    let (st, _) = s
        .post(&format!("/api/v1/devices/{c}/retire"), json!({}))
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, body) = s
        .post(
            &format!("/api/v1/devices/{expiring}/certificates"),
            json!({"csr": common::fresh_csr_pem(), "profile": "device"}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{body}");
    s.store()
        .record_posture(
            &sigil_audit::Actor::device(&password),
            password.parse().unwrap(),
            &healthy_posture(false),
            clock(),
        )
        .await
        .unwrap();
    attest(overdue.to_owned(), 24 * 60).await;
    let (st, d) = put(json!({"current_firmware": ["2.0.0"], "allowed_services": ["tcp/8883"],
                             "sboms": {"2.0.0": "https://example.org/sbom/gateway-2.0.0.cdx.json"}}))
        .await;
    assert_eq!(st, StatusCode::OK, "{d}");
    for framework in catalogue.frameworks() {
        let id = &framework.info.id;
        let (_, run) = s
            .post(&format!("/api/v1/compliance/{id}/evaluate"), json!({}))
            .await;
        assert_eq!(
            statuses(&run["report"]),
            expected(&catalogue, id, &[], &[]),
            "{id}"
        );
        assert_eq!(run["report"]["score"], 100.0, "{id}");
        // The history: this run all green, the one before with the failures (and, before
        // them, the periodic run at start-up).
        let (_, history) = s.get(&format!("/api/v1/compliance/{id}/history")).await;
        let runs = history.as_array().unwrap();
        assert_eq!(runs.len(), 3, "{id}");
        let after: std::collections::BTreeMap<String, String> =
            serde_json::from_value(runs[0]["requirements"].clone()).unwrap();
        assert_eq!(after, expected(&catalogue, id, &[], &[]), "{id}");
        let before: std::collections::BTreeMap<String, String> =
            serde_json::from_value(runs[1]["requirements"].clone()).unwrap();
        assert_eq!(
            before,
            expected(&catalogue, id, &failing_checks, &unknown),
            "{id}"
        );
        assert!(runs[0]["score"].as_f64().unwrap() > runs[1]["score"].as_f64().unwrap());
    }
    s.shutdown().await;
}
both_backends!(scenario_failures_per_framework_and_fixes);

/// The engine follows events by itself: after an enrolment, a posture report and a revocation,
/// the device's results change without any read asking for them.
async fn results_follow_events_without_a_read(db: Db) {
    let Some(s) = TestServer::start(db).await else {
        return;
    };
    let product = s.create_product("Meter").await;
    let device = s.create_device(&product, "M-1").await;
    let id: sigil_domain::DeviceId = device.parse().unwrap();
    let handle = s.handle.as_ref().unwrap();
    let index = |check: &str| {
        sigil_compliance::device::DEVICE_CHECKS
            .iter()
            .position(|c| *c == check)
            .unwrap()
    };
    // Wait (at most 5 s) until the engine holds `status` for `check` on the device.
    let until = |check: &'static str, status: sigil_compliance::Status| async move {
        let started = std::time::Instant::now();
        loop {
            if handle
                .compliance_statuses(id)
                .await
                .map(|s| s[index(check)])
                == Some(status)
            {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(5),
                "{check} never became {status:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    };
    use sigil_compliance::Status;
    // Registered: outside the fleet's posture.
    until("device.unique-identity", Status::NotApplicable).await;
    let (st, body) = s
        .post(
            &format!("/api/v1/devices/{device}/certificates"),
            json!({"csr": common::fresh_csr_pem()}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{body}");
    until("device.unique-identity", Status::Pass).await;
    until("device.no-default-password", Status::Unknown).await;
    s.store()
        .record_posture(
            &sigil_audit::Actor::device(&device),
            id,
            &healthy_posture(true),
            time::OffsetDateTime::now_utc(),
        )
        .await
        .unwrap();
    until("device.no-default-password", Status::Fail).await;
    let (st, _) = s
        .post(
            &format!("/api/v1/devices/{device}/revoke"),
            json!({"reason": "keyCompromise"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    until("device.unique-identity", Status::Fail).await;
    s.shutdown().await;
}
both_backends!(results_follow_events_without_a_read);
