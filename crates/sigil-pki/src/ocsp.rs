//! The OCSP responder's HTTP binding (RFC 6960 Appendix A.1): `POST /ocsp` with a DER body, or
//! `GET /ocsp/<url-encoded base64 DER>`. Every answer is an `application/ocsp-response`; a
//! request that cannot be parsed gets a `malformedRequest` response, never an HTTP error page.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use sigil_ca::ocsp::{self, ResponseStatus};

use crate::PkiAuthority;

fn ocsp_response(body: impl Into<Bytes>) -> Response {
    let body: Bytes = body.into();
    let mut r = body.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/ocsp-response"),
    );
    r
}

fn refuse(status: ResponseStatus, why: &str) -> Response {
    tracing::debug!(?status, why, "OCSP request refused");
    ocsp_response(ocsp::error_response(status))
}

pub async fn post<A: PkiAuthority>(
    State(authority): State<Arc<A>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !content_type.eq_ignore_ascii_case("application/ocsp-request") {
        return refuse(
            ResponseStatus::MalformedRequest,
            "content type is not application/ocsp-request",
        );
    }
    ocsp_response(authority.ocsp(&body).await)
}

pub async fn get<A: PkiAuthority>(
    State(authority): State<Arc<A>>,
    Path(encoded): Path<String>,
) -> Response {
    // axum has percent-decoded the path; clients differ on padding, so accept either.
    let trimmed = encoded.trim_end_matches('=');
    match base64::engine::general_purpose::STANDARD_NO_PAD.decode(trimmed) {
        Ok(der) => ocsp_response(authority.ocsp(&der).await),
        Err(_) => refuse(ResponseStatus::MalformedRequest, "GET path is not base64"),
    }
}
