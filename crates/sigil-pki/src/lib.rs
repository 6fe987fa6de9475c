//! The public PKI listener (plain HTTP, as RFC 5280 relying parties expect for AIA and CRL
//! fetches). It serves only signed public artefacts: the CA certificates, the CRL, OCSP
//! answers, the audit log's checkpoints and verifier key. Nothing here needs or reveals a
//! secret.
//!
//! It sees the authority only through [`PkiAuthority`]: five questions, all read-only.

mod ocsp;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use sigil_authority::Authority;
use sigil_ca::CRL_PATH;
use sigil_http::text;

/// What the PKI listener asks of the authority.
pub trait PkiAuthority: Send + Sync + 'static {
    /// The root and issuing CA certificates.
    fn ca(&self) -> &sigil_ca::IssuingCa;
    /// The current CRL's DER, if one was signed.
    fn crl_der(&self) -> impl Future<Output = Option<Bytes>> + Send;
    /// The DER OCSP response to a DER OCSP request (an error response if it is malformed).
    fn ocsp(&self, request: &[u8]) -> impl Future<Output = Bytes> + Send;
    /// The newest signed checkpoint, as a C2SP signed note.
    fn latest_checkpoint(&self) -> impl Future<Output = Option<String>> + Send;
    /// The audit log's verifier key, `<origin>+<key id>+<base64 key>`.
    fn log_verifier_key(&self) -> String;
    /// Why the audit log failed its integrity check, if it did.
    fn integrity_failure(&self) -> Option<String>;
}

impl PkiAuthority for Authority {
    fn ca(&self) -> &sigil_ca::IssuingCa {
        Authority::ca(self)
    }

    async fn crl_der(&self) -> Option<Bytes> {
        self.crl()
            .current()
            .await
            .map(|c| Bytes::from(c.der.clone()))
    }

    async fn ocsp(&self, request: &[u8]) -> Bytes {
        Authority::ocsp(self).answer(request, self.now()).await
    }

    async fn latest_checkpoint(&self) -> Option<String> {
        self.audit().latest().await.map(|cp| cp.note)
    }

    fn log_verifier_key(&self) -> String {
        self.audit().key().verifier_key()
    }

    fn integrity_failure(&self) -> Option<String> {
        self.audit().integrity_failure()
    }
}

/// The newest signed checkpoint (a C2SP signed note), for monitors and for users to keep.
async fn latest_checkpoint<A: PkiAuthority>(State(authority): State<Arc<A>>) -> Response {
    match authority.latest_checkpoint().await {
        Some(note) => text(note),
        None => (StatusCode::NOT_FOUND, "no checkpoint signed yet\n").into_response(),
    }
}

/// The audit log's verifier key. Pin it out of band: a key fetched from the server it
/// verifies only proves what the server says.
async fn log_pub<A: PkiAuthority>(State(authority): State<Arc<A>>) -> Response {
    text(format!("{}\n", authority.log_verifier_key()))
}

async fn health<A: PkiAuthority>(State(authority): State<Arc<A>>) -> Response {
    sigil_http::health(authority.integrity_failure())
}

/// The issuing CA's current CRL, DER (`application/pkix-crl`, RFC 2585), at the URL every
/// device certificate names as its CRL distribution point.
async fn crl<A: PkiAuthority>(State(authority): State<Arc<A>>) -> Response {
    match authority.crl_der().await {
        Some(der) => (
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
            der,
        )
            .into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, "no CRL signed yet\n").into_response(),
    }
}

#[derive(Clone)]
struct PkiArtefacts {
    root_pem: String,
    issuing_pem: String,
    root_der: Vec<u8>,
    issuing_der: Vec<u8>,
}

pub fn router<A: PkiAuthority>(authority: Arc<A>) -> Router {
    let ca = authority.ca();
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
        .route("/audit/checkpoint", get(latest_checkpoint::<A>))
        .route("/audit/log.pub", get(log_pub::<A>))
        .route(CRL_PATH, get(crl::<A>))
        .route("/ocsp", axum::routing::post(ocsp::post::<A>))
        .route("/ocsp/{*request}", get(ocsp::get::<A>))
        .layer(axum::extract::DefaultBodyLimit::max(64 * 1024))
        .route("/healthz", get(health::<A>))
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
        .with_state(authority)
        .layer(axum::middleware::from_fn(
            sigil_http::body::deliver_refusals,
        ))
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
