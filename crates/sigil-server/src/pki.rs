//! The public PKI listener (plain HTTP, as RFC 5280 relying parties expect for AIA and CRL
//! fetches). It serves only signed public artefacts: nothing here needs or reveals a secret.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::sync::Arc;

use crate::auditlog::AuditLog;
use crate::crl::CrlPublisher;
use sigil_ca::CRL_PATH;

/// The newest signed checkpoint (a C2SP signed note), for monitors and for users to keep.
async fn latest_checkpoint(State(audit): State<Arc<AuditLog>>) -> Response {
    match audit.latest().await {
        Some(cp) => text(cp.note),
        None => (StatusCode::NOT_FOUND, "no checkpoint signed yet\n").into_response(),
    }
}

/// The audit log's verifier key, `<origin>+<key id>+<base64 key>`. Pin it out of band: a key
/// fetched from the server it verifies only proves what the server says.
async fn log_pub(State(audit): State<Arc<AuditLog>>) -> Response {
    text(format!("{}\n", audit.key().verifier_key()))
}

/// 503 once the audit log has failed an integrity check, so monitoring notices.
pub(crate) async fn health(State(audit): State<Arc<AuditLog>>) -> Response {
    match audit.integrity_failure() {
        None => "ok".into_response(),
        Some(reason) => (StatusCode::SERVICE_UNAVAILABLE, reason).into_response(),
    }
}

/// A `text/plain; charset=utf-8` answer (signed notes, verifier keys).
pub(crate) fn text(body: String) -> Response {
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[derive(Clone)]
struct PkiArtefacts {
    root_pem: String,
    issuing_pem: String,
    root_der: Vec<u8>,
    issuing_der: Vec<u8>,
}

/// The issuing CA's current CRL, DER (`application/pkix-crl`, RFC 2585), at the URL every
/// device certificate names as its CRL distribution point.
async fn crl(State(crl): State<Arc<CrlPublisher>>) -> Response {
    match crl.current().await {
        Some(c) => (
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/pkix-crl"),
                ),
                // Relying parties may cache it, but not past a refresh.
                (
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("max-age=60"),
                ),
            ],
            c.der.clone(),
        )
            .into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, "no CRL signed yet\n").into_response(),
    }
}

pub fn router(
    ca: &sigil_ca::IssuingCa,
    audit: Arc<AuditLog>,
    crls: Arc<CrlPublisher>,
    ocsp: crate::ocsp::OcspState,
) -> Router {
    let a = PkiArtefacts {
        root_pem: ca.root_cert_pem().to_owned(),
        issuing_pem: ca.issuing_cert_pem().to_owned(),
        root_der: ca.root_cert_der().to_vec(),
        issuing_der: ca.issuing_cert_der().to_vec(),
    };
    let (a1, a2, a3, a4, a5) = (a.clone(), a.clone(), a.clone(), a.clone(), a);
    Router::new()
        .route("/ca/root.crt", get(move || async move { pem(a1.root_pem) }))
        .route(
            "/ca/issuing.crt",
            get(move || async move { pem(a2.issuing_pem) }),
        )
        .route(
            "/ca/chain.pem",
            get(move || async move { pem(format!("{}{}", a3.issuing_pem, a3.root_pem)) }),
        )
        .route("/ca/root.der", get(move || async move { der(a4.root_der) }))
        .route(
            "/ca/issuing.der",
            get(move || async move { der(a5.issuing_der) }),
        )
        .route(
            "/audit/checkpoint",
            get(latest_checkpoint).with_state(audit.clone()),
        )
        .route("/audit/log.pub", get(log_pub).with_state(audit.clone()))
        .route(CRL_PATH, get(crl).with_state(crls))
        .route(
            "/ocsp",
            axum::routing::post(crate::ocsp::post).with_state(ocsp.clone()),
        )
        .route("/ocsp/{*request}", get(crate::ocsp::get).with_state(ocsp))
        .layer(axum::extract::DefaultBodyLimit::max(64 * 1024))
        .route("/healthz", get(health).with_state(audit))
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
        .layer(axum::middleware::from_fn(crate::body::deliver_refusals))
}

fn pem(body: String) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-pem-file"),
        )],
        body,
    )
        .into_response()
}

/// RFC 2585: DER certificates over HTTP are `application/pkix-cert`.
fn der(body: Vec<u8>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/pkix-cert"),
        )],
        body,
    )
        .into_response()
}
