//! What Sigil's HTTP front-ends share: one error type rendered as problem+json, extractors
//! whose rejections are problem+json, request bodies read in time and drained before a
//! refusal, and what the listener tells a handler about the connection (peer address, client
//! certificate). No routes: each front-end owns its own.

pub mod body;
mod error;
mod extract;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rustls_pki_types::CertificateDer;

pub use error::{ApiError, Problem};
pub use extract::{ApiJson, ApiPath, ApiQuery};

/// The TCP peer of a connection (set by the listener).
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

/// The end-entity certificate a client presented in the TLS handshake (already verified).
#[derive(Debug, Clone)]
pub struct PeerCertificate(pub Option<Arc<CertificateDer<'static>>>);

impl PeerCertificate {
    pub fn der(&self) -> Option<&[u8]> {
        self.0.as_deref().map(AsRef::as_ref)
    }
}

/// The peer's address as the listener saw it, if it was set.
pub fn peer_ip<B>(request: &axum::http::Request<B>) -> Option<IpAddr> {
    request.extensions().get::<PeerAddr>().map(|p| p.0.ip())
}

/// A `text/plain; charset=utf-8` answer (signed notes, verifier keys).
pub fn text(body: String) -> Response {
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// `/healthz`: 503 once the audit log has failed an integrity check, so monitoring notices.
pub fn health(integrity_failure: Option<String>) -> Response {
    match integrity_failure {
        None => "ok".into_response(),
        Some(reason) => (StatusCode::SERVICE_UNAVAILABLE, reason).into_response(),
    }
}
