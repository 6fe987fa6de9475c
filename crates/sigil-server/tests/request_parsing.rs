//! Property tests for the request-parsing path: whatever bytes arrive, the API answers with a
//! 4xx problem+json (never a 5xx, never a panic) and writes nothing unless it answers 201.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use proptest::prelude::*;
use sqlx::Row;
use tower::ServiceExt;

use sigil_ca::{CaHierarchy, CaNames, IdentityScheme, IssuingCa, KeyAlgorithm, PublicUrls};
use sigil_server::api::{self, AppState};

struct Harness {
    rt: tokio::runtime::Runtime,
    /// HTTP Basic credentials (device id, one-time enrolment token) for EST.
    est_basic: String,
    app: axum::Router,
    state: AppState,
    token: String,
    device: String,
    valid_csr_der: Vec<u8>,
    _dir: tempfile::TempDir,
}

fn harness() -> Harness {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let now = time::OffsetDateTime::now_utc();
    let h = CaHierarchy::generate(KeyAlgorithm::EcdsaP256, &CaNames::default(), now).unwrap();
    let ca = IssuingCa::load(&h.issuing_cert_pem, h.issuing_key, &h.root_cert_pem).unwrap();
    let store = rt
        .block_on(sigil_store::Store::open(&format!(
            "sqlite://{}",
            dir.path().join("t.db").display()
        )))
        .unwrap();
    let actor = sigil_audit::Actor::system("test");
    let token = api::generate_token().unwrap();
    rt.block_on(store.insert_api_token(
        &actor,
        &sigil_store::NewApiToken {
            name: "t",
            role: "admin",
            scopes: &["*".to_owned()],
            expires_at: None,
        },
        &api::token_hash(&token),
        now,
    ))
    .unwrap();
    let product = rt
        .block_on(store.create_product(
            &actor,
            sigil_domain::NewProduct::parse("P", "M", "2030-01-01").unwrap(),
            now,
        ))
        .unwrap();
    let fields = sigil_domain::DeviceFields {
        serial_number: "SN",
        ..Default::default()
    };
    let device = rt
        .block_on(store.create_device(
            &actor,
            sigil_domain::NewDevice::parse(product.id, fields).unwrap(),
            now,
        ))
        .unwrap();
    let log_key = sigil_audit::LogKey::generate_pkcs8()
        .and_then(|der| sigil_audit::LogKey::from_pkcs8("test/audit", &der))
        .unwrap();
    let audit = rt
        .block_on(sigil_server::auditlog::AuditLog::open(
            store.clone(),
            log_key,
            sigil_server::DataDir::new(dir.path()),
        ))
        .unwrap();
    let ca = Arc::new(ca);
    let urls = PublicUrls::new("http://127.0.0.1:8080").unwrap();
    let crl = rt
        .block_on(sigil_server::crl::CrlPublisher::open(
            store.clone(),
            ca.clone(),
            urls.clone(),
            sigil_server::mtls::RevokedSerials::default(),
            Default::default(),
            sigil_server::crl::CRL_VALIDITY,
            now,
        ))
        .unwrap();
    let ca_for_tls = ca.clone();
    let state = AppState {
        store,
        ca,
        urls,
        crl,
        scheme: IdentityScheme::Urn,
        enrollment_profile: sigil_ca::Profile::by_name(sigil_ca::DEFAULT_PROFILE).unwrap(),
        clock: sigil_server::system_clock(),
        audit,
        policy: Arc::new(sigil_server::policy::ActivePolicy::new(
            sigil_policy::PolicyEngine::with_defaults().unwrap(),
            0,
        )),
        secrets: Arc::new(sigil_server::secrets::SecretBox::new(&[1; 32]).unwrap()),
        login_limiter: Arc::default(),
        failures: Arc::new(sigil_server::failures::FailureLedger::new(
            time::Duration::minutes(1),
            10,
        )),
        catalogue: Arc::new(sigil_compliance::Catalogue::shipped().unwrap()),
        compliance: Arc::default(),
        compliance_webhook: None,
        client_verifier: sigil_server::mtls::SigilClientVerifier::new(
            &[ca_for_tls.root_cert_der()],
            Default::default(),
            Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
            None,
        )
        .unwrap(),
    };
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let valid_csr_der = rcgen::CertificateParams::new(Vec::<String>::new())
        .unwrap()
        .serialize_request(&key)
        .unwrap()
        .der()
        .to_vec();
    let est_token = api::generate_token().unwrap();
    rt.block_on(state.store.create_enrollment_token(
        &actor,
        device.id,
        &api::token_hash(&est_token),
        now,
        now + time::Duration::days(1),
    ))
    .unwrap();
    let est_basic = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{est_token}", device.id))
    };
    Harness {
        est_basic,
        app: api::router(state.clone()),
        state,
        token,
        device: device.id.to_string(),
        valid_csr_der,
        rt,
        _dir: dir,
    }
}

impl Harness {
    fn rows(&self) -> (i64, i64, i64) {
        self.rt.block_on(async {
            let pool = self.state.store.pool();
            let mut out = [0i64; 3];
            for (i, t) in ["certificates", "devices", "products"].iter().enumerate() {
                let row = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT COUNT(*) AS n FROM {t}"
                )))
                .fetch_one(pool)
                .await
                .unwrap();
                out[i] = row.try_get("n").unwrap();
            }
            (out[0], out[1], out[2])
        })
    }

    /// POST `body`; check the invariants; return the status.
    fn post(&self, path: &str, content_type: &str, body: Vec<u8>) -> StatusCode {
        let before = self.rows();
        let request = Request::post(path)
            .header("authorization", format!("Bearer {}", self.token))
            .header("content-type", content_type)
            .body(Body::from(body))
            .unwrap();
        let response = self.rt.block_on(self.app.clone().oneshot(request)).unwrap();
        let status = response.status();
        assert!(!status.is_server_error(), "{path}: server error {status}");
        if !status.is_success() {
            let ct = response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            assert_eq!(ct, "application/problem+json", "{path}: {status}");
            let body = self
                .rt
                .block_on(axum::body::to_bytes(response.into_body(), 1 << 20))
                .unwrap();
            let problem: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(problem["status"].as_u64(), Some(u64::from(status.as_u16())));
            assert!(problem["code"].as_str().is_some_and(|c| !c.is_empty()));
            assert_eq!(self.rows(), before, "{path}: a refused request wrote a row");
        }
        status
    }
}

impl Harness {
    /// POST `body` to EST simpleenroll with the device's token. Anything but a valid CSR is a
    /// 4xx problem, writes nothing, and does not spend the token.
    fn est_enroll(&self, body: Vec<u8>) -> StatusCode {
        let before = self.rows();
        let request = Request::post("/.well-known/est/simpleenroll")
            .header("authorization", format!("Basic {}", self.est_basic))
            .header("content-type", "application/pkcs10")
            .body(Body::from(body))
            .unwrap();
        let response = self.rt.block_on(self.app.clone().oneshot(request)).unwrap();
        let status = response.status();
        assert!(!status.is_server_error(), "EST: server error {status}");
        if !status.is_success() {
            assert_eq!(self.rows(), before, "a refused enrolment wrote a row");
            let unused: i64 = self.rt.block_on(async {
                sqlx::query("SELECT COUNT(*) AS n FROM enrollment_tokens WHERE used_at IS NULL")
                    .fetch_one(self.state.store.pool())
                    .await
                    .unwrap()
                    .try_get("n")
                    .unwrap()
            });
            assert_eq!(unused, 1, "a refused enrolment spent the token");
        }
        status
    }
}

fn pem(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    format!("-----BEGIN CERTIFICATE REQUEST-----\n{b64}\n-----END CERTIFICATE REQUEST-----\n")
}

thread_local! {
    static H: Harness = harness();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn arbitrary_bytes_to_every_post_endpoint(body in proptest::collection::vec(any::<u8>(), 0..2048), which in 0usize..4) {
        H.with(|h| {
            let path = match which {
                0 => format!("/api/v1/devices/{}/certificates", h.device),
                1 => "/api/v1/devices".to_owned(),
                2 => "/api/v1/products".to_owned(),
                _ => format!("/api/v1/devices/{}/suspend", h.device),
            };
            h.post(&path, "application/json", body);
        });
    }

    #[test]
    fn arbitrary_est_bodies(body in proptest::collection::vec(any::<u8>(), 0..2048), encode in any::<bool>()) {
        H.with(|h| {
            let body = if encode {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD.encode(&body).into_bytes()
            } else {
                body
            };
            let status = h.est_enroll(body);
            prop_assert!(status.is_client_error(), "{status}");
            Ok(())
        })?;
    }

    #[test]
    fn json_shaped_issue_requests(csr in ".{0,300}", profile in proptest::option::of("[a-z-]{0,20}"), extra in proptest::option::of("[a-z]{1,8}")) {
        H.with(|h| {
            let mut body = serde_json::json!({"csr": csr});
            if let Some(p) = profile { body["profile"] = serde_json::json!(p); }
            if let Some(k) = extra { body[k] = serde_json::json!(1); }
            let status = h.post(&format!("/api/v1/devices/{}/certificates", h.device), "application/json", serde_json::to_vec(&body).unwrap());
            prop_assert!(status.is_client_error());
            Ok(())
        })?;
    }

    /// A real CSR with one byte changed: refused, or (if the change missed everything that
    /// matters) accepted for the same key only once — never a 5xx, never a partial write.
    #[test]
    fn mutated_csrs(index in any::<prop::sample::Index>(), byte in any::<u8>()) {
        H.with(|h| {
            let mut der = h.valid_csr_der.clone();
            let i = index.index(der.len());
            der[i] = byte;
            let body = serde_json::to_vec(&serde_json::json!({"csr": pem(&der)})).unwrap();
            h.post(&format!("/api/v1/devices/{}/certificates", h.device), "application/json", body);
        });
    }

    #[test]
    fn device_fields(serial in ".{0,300}", tags in proptest::collection::vec(".{0,70}", 0..40), hw in proptest::option::of(".{0,300}")) {
        H.with(|h| {
            let body = serde_json::json!({"product_id": "00000000-0000-7000-8000-000000000000", "serial_number": serial, "tags": tags, "hardware_id": hw});
            let status = h.post("/api/v1/devices", "application/json", serde_json::to_vec(&body).unwrap());
            // The product does not exist: nothing may be created whatever the fields are.
            prop_assert!(status.is_client_error());
            Ok(())
        })?;
    }
}
