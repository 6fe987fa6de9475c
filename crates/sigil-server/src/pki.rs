//! The public PKI listener (plain HTTP, as RFC 5280 relying parties expect for AIA and CRL
//! fetches). It serves only signed public artefacts: nothing here needs or reveals a secret.

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

#[derive(Clone)]
struct PkiArtefacts {
    root_pem: String,
    issuing_pem: String,
    root_der: Vec<u8>,
    issuing_der: Vec<u8>,
}

pub fn router(ca: &sigil_ca::IssuingCa) -> Router {
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
        .route("/healthz", get(|| async { "ok" }))
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
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
