//! Property tests for the request-parsing path: whatever bytes arrive, the API answers with a
//! 4xx problem+json (never a 5xx, never a panic) and writes nothing unless it answers 201.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::body::Body;
use axum::http::{Request, StatusCode};
use proptest::prelude::*;
use sqlx::Row;
use tower::ServiceExt;

use sigil_authority::{generate_token, token_hash};
use sigil_testkit::csr::{csr_pem, fresh_csr_der};

struct Harness {
    rt: tokio::runtime::Runtime,
    /// HTTP Basic credentials (device id, one-time enrolment token) for EST.
    est_basic: String,
    app: axum::Router,
    server: sigil_server::InProcess,
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
    let server = rt
        .block_on(sigil_server::open_in_process(
            &sigil_server::ServerConfig::new(dir.path()),
            sigil_server::system_clock(),
        ))
        .unwrap();
    let token = server.new_admin_token.clone().unwrap();
    let store = server.authority.store().clone();
    let actor = sigil_audit::Actor::system("test");
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
    let valid_csr_der = fresh_csr_der();
    let est_token = generate_token().unwrap();
    rt.block_on(store.create_enrollment_token(
        &actor,
        device.id,
        &token_hash(&est_token),
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
        app: server.app.clone(),
        server,
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
            let pool = self.server.authority.store().pool();
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
                    .fetch_one(self.server.authority.store().pool())
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
            let body = serde_json::to_vec(&serde_json::json!({"csr": csr_pem(&der)})).unwrap();
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
