//! The OCSP responder (RFC 6960) on the public PKI listener, at the URL in every certificate's
//! AIA: `POST /ocsp` with a DER body, or `GET /ocsp/<url-encoded base64 DER>` (Appendix A.1).
//! Every answer is an `application/ocsp-response`; a request that cannot be parsed gets a
//! `malformedRequest` response, never an HTTP error page.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;

use sigil_ca::ocsp::{self, OcspResponder, ParsedRequest, ResponseStatus, SerialStatus};
use sigil_store::Store;

use crate::Clock;

/// nextUpdate - thisUpdate of every response. Responses are signed from the live database on
/// each request, so a relying party that caches for this long is the only source of delay.
pub const OCSP_VALIDITY: time::Duration = time::Duration::minutes(15);

#[derive(Clone)]
pub struct OcspState {
    pub responder: Arc<OcspResponder>,
    pub store: Store,
    pub clock: Clock,
}

fn ocsp_response(body: Vec<u8>) -> Response {
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

pub async fn post(State(state): State<OcspState>, headers: HeaderMap, body: Bytes) -> Response {
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
    answer(&state, &body).await
}

pub async fn get(State(state): State<OcspState>, Path(encoded): Path<String>) -> Response {
    // axum has percent-decoded the path; clients differ on padding, so accept either.
    let trimmed = encoded.trim_end_matches('=');
    match base64::engine::general_purpose::STANDARD_NO_PAD.decode(trimmed) {
        Ok(der) => answer(&state, &der).await,
        Err(_) => refuse(ResponseStatus::MalformedRequest, "GET path is not base64"),
    }
}

async fn answer(state: &OcspState, der: &[u8]) -> Response {
    let request = match ocsp::parse_request(der) {
        Ok(r) => r,
        Err(e) => return refuse(e.status(), &e.to_string()),
    };
    match statuses(state, &request).await {
        Ok(statuses) => {
            match state
                .responder
                .respond(&request, &statuses, (state.clock)(), OCSP_VALIDITY)
            {
                Ok(der) => ocsp_response(der),
                Err(e) => {
                    tracing::error!(error = %e, "signing an OCSP response failed");
                    refuse(ResponseStatus::InternalError, "signing failed")
                }
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "OCSP status lookup failed");
            // RFC 6960: tryLater when the responder cannot answer for now.
            refuse(ResponseStatus::TryLater, "database unavailable")
        }
    }
}

async fn statuses(
    state: &OcspState,
    request: &ParsedRequest,
) -> Result<Vec<SerialStatus>, sigil_store::StoreError> {
    let mut out = Vec::with_capacity(request.certs.len());
    for id in &request.certs {
        let status = match id.serial() {
            Some(serial) if state.responder.is_issuer_of(id) => {
                match state.store.certificate_revocation(&serial).await? {
                    None => SerialStatus::Unknown,
                    Some(None) => SerialStatus::Good,
                    Some(Some(r)) => SerialStatus::Revoked {
                        at: r.revoked_at,
                        reason: r.reason,
                    },
                }
            }
            _ => SerialStatus::Unknown,
        };
        out.push(status);
    }
    Ok(out)
}
