//! EST (RFC 7030) under `/.well-known/est/`: `cacerts`, `csrattrs`, `simpleenroll` (HTTP Basic
//! with a one-time enrolment token: user = device id, password = token; or a manufacturer
//! bootstrap certificate as the TLS client certificate) and `simplereenroll`
//! (mTLS with the device's current certificate). Bodies are base64 DER as the RFC prescribes;
//! errors are problem+json with a status from RFC 7030 4.2.3, and every refusal is in the
//! audit log.
//!
//! The protocol is all this crate does: who may enrol, what is issued and what is recorded is
//! the authority's, reached through [`EstAuthority`].

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use base64::Engine;

use sigil_audit::Actor;
use sigil_authority::enrolment::BootstrapMatch;
use sigil_authority::{Authority, RefusalRecord, RequestError};
use sigil_ca::{KeyAlgorithm, ValidatedCsr, est};
use sigil_domain::DeviceId;
use sigil_http::{ApiError, PeerAddr, PeerCertificate};
use sigil_store::CertificateRecord;

/// EST requests carry one CSR: a few KiB of base64 at most.
const MAX_EST_BODY: usize = 32 * 1024;

/// What EST asks of the authority.
pub trait EstAuthority: Send + Sync + 'static {
    /// The issuing CA then the root, DER.
    fn ca_chain(&self) -> [&[u8]; 2];
    /// First enrolment with a one-time token (a retry for the same key gets the same answer).
    fn enrol_with_token(
        &self,
        device: DeviceId,
        token: &str,
        csr: ValidatedCsr,
    ) -> impl Future<Output = Result<CertificateRecord, RequestError>> + Send;
    /// The registered device a (TLS-verified) manufacturer bootstrap certificate stands for.
    fn bootstrap_device(
        &self,
        der: &[u8],
    ) -> impl Future<Output = Result<BootstrapMatch, RequestError>> + Send;
    /// First enrolment of that device.
    fn enrol_bootstrapped(
        &self,
        found: BootstrapMatch,
        csr: ValidatedCsr,
    ) -> impl Future<Output = Result<CertificateRecord, RequestError>> + Send;
    /// Sigil's unrevoked record of the presented client certificate.
    fn presented_certificate(
        &self,
        der: Option<&[u8]>,
    ) -> impl Future<Output = Result<CertificateRecord, RequestError>> + Send;
    /// Renewal with the device's current certificate.
    fn re_enrol(
        &self,
        presented: CertificateRecord,
        csr: ValidatedCsr,
    ) -> impl Future<Output = Result<CertificateRecord, RequestError>> + Send;
    /// A refused enrolment (every refusal counts as a failed authentication of the address).
    /// `Some(seconds)`: the address is past its limit and is to be told to retry later.
    fn refused(
        &self,
        ip: Option<IpAddr>,
        actor: &Actor,
        action: &str,
        subject: String,
        refusal: RefusalRecord<'_>,
    ) -> impl Future<Output = Option<u64>> + Send;
}

impl EstAuthority for Authority {
    fn ca_chain(&self) -> [&[u8]; 2] {
        [self.ca().issuing_cert_der(), self.ca().root_cert_der()]
    }

    async fn enrol_with_token(
        &self,
        device: DeviceId,
        token: &str,
        csr: ValidatedCsr,
    ) -> Result<CertificateRecord, RequestError> {
        Authority::enrol_with_token(self, device, token, csr).await
    }

    async fn bootstrap_device(&self, der: &[u8]) -> Result<BootstrapMatch, RequestError> {
        Authority::bootstrap_device(self, der).await
    }

    async fn enrol_bootstrapped(
        &self,
        found: BootstrapMatch,
        csr: ValidatedCsr,
    ) -> Result<CertificateRecord, RequestError> {
        Authority::enrol_bootstrapped(self, found, csr).await
    }

    async fn presented_certificate(
        &self,
        der: Option<&[u8]>,
    ) -> Result<CertificateRecord, RequestError> {
        Authority::presented_certificate(self, der).await
    }

    async fn re_enrol(
        &self,
        presented: CertificateRecord,
        csr: ValidatedCsr,
    ) -> Result<CertificateRecord, RequestError> {
        Authority::re_enrol(self, presented, csr).await
    }

    async fn refused(
        &self,
        ip: Option<IpAddr>,
        actor: &Actor,
        action: &str,
        subject: String,
        refusal: RefusalRecord<'_>,
    ) -> Option<u64> {
        self.authentication_failed(ip, "est", actor, action, subject, refusal)
            .await
    }
}

pub fn router<A: EstAuthority>() -> Router<Arc<A>> {
    Router::new()
        .route("/.well-known/est/cacerts", get(cacerts::<A>))
        .route("/.well-known/est/csrattrs", get(csrattrs))
        .route("/.well-known/est/simpleenroll", post(simpleenroll::<A>))
        .route("/.well-known/est/simplereenroll", post(simplereenroll::<A>))
}

/// base64 with line breaks every 64 characters, as RFC 7030 shows its bodies.
fn base64_body(der: &[u8], content_type: &'static str) -> Response {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut body = String::with_capacity(b64.len() + b64.len() / 64 + 2);
    for chunk in b64.as_bytes().chunks(64) {
        body.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        body.push_str("\r\n");
    }
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        "content-transfer-encoding",
        HeaderValue::from_static("base64"),
    );
    r
}

const PKCS7_CERTS_ONLY: &str = "application/pkcs7-mime; smime-type=certs-only";

async fn cacerts<A: EstAuthority>(State(authority): State<Arc<A>>) -> Result<Response, ApiError> {
    let p7 = est::certs_only(&authority.ca_chain())?;
    Ok(base64_body(&p7, PKCS7_CERTS_ONLY))
}

async fn csrattrs() -> Result<Response, ApiError> {
    // Device keys: P-256 (the default profile's policy); see `ValidatedCsr` for what is accepted.
    Ok(base64_body(
        &est::csr_attributes(KeyAlgorithm::EcdsaP256)?,
        "application/csrattrs",
    ))
}

/// The CSR in an EST request: `application/pkcs10`, base64 DER (line breaks allowed).
fn read_csr(headers: &HeaderMap, body: &[u8]) -> Result<ValidatedCsr, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let media = content_type.split(';').next().unwrap_or_default().trim();
    if !media.eq_ignore_ascii_case("application/pkcs10") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported media type",
            format!("EST enrolment takes application/pkcs10, not `{content_type}`"),
        ));
    }
    if body.len() > MAX_EST_BODY {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body-too-large",
            "Request body too large",
            format!("{} bytes; at most {MAX_EST_BODY}", body.len()),
        ));
    }
    let compact: Vec<u8> = body
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(&compact)
        .map_err(|e| ApiError::invalid(format!("body is not base64: {e}")))?;
    Ok(ValidatedCsr::from_der(&der)?)
}

/// (device id, token) from `Authorization: Basic`.
fn basic_credentials(headers: &HeaderMap) -> Result<(DeviceId, String), ApiError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .ok_or_else(|| {
            ApiError::unauthenticated(
                "EST enrolment needs HTTP Basic credentials: the device id and its enrolment token",
            )
        })?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| ApiError::unauthenticated("malformed Basic credentials"))?;
    let (user, password) = decoded
        .split_once(':')
        .ok_or_else(|| ApiError::unauthenticated("malformed Basic credentials"))?;
    let device: DeviceId = user
        .parse()
        .map_err(|_| ApiError::unauthenticated("the Basic user name must be the device id"))?;
    Ok((device, password.to_owned()))
}

/// Who an enrolment is recorded as, and about what: the device when it is known.
fn actor_and_subject(device: Option<DeviceId>, fallback_subject: &str) -> (Actor, String) {
    match device {
        Some(device) => (
            Actor::device(&device.to_string()),
            format!("device:{device}"),
        ),
        None => (Actor::device("unknown"), fallback_subject.to_owned()),
    }
}

/// The answer to an enrolment: the certificate as certs-only PKCS#7, or the refusal (recorded
/// in the audit log first).
async fn answer<A: EstAuthority>(
    authority: &A,
    peer: Option<PeerAddr>,
    actor: &Actor,
    action: &str,
    subject: String,
    result: Result<CertificateRecord, ApiError>,
) -> Response {
    let record = match result {
        Ok(record) => record,
        // Every refusal: EST callers are not authenticated until issuance succeeds (a token
        // is checked after the CSR is parsed), so each refusal counts against the address.
        Err(e) => {
            let ip = peer.map(|p| p.0.ip());
            if let Some(retry_after) = authority
                .refused(ip, actor, action, subject, e.record())
                .await
            {
                return with_challenge(ApiError::too_many_failures(ip, retry_after));
            }
            return with_challenge(e);
        }
    };
    tracing::info!(device = %record.device_id, serial = %record.serial, action, "EST enrolment");
    est::certs_only(&[&record.der])
        .map(|p7| base64_body(&p7, PKCS7_CERTS_ONLY))
        .unwrap_or_else(|e| with_challenge(e.into()))
}

/// 401 answers carry the Basic challenge (RFC 7030 3.2.3, RFC 7617).
fn with_challenge(e: ApiError) -> Response {
    let unauthorized = e.status == StatusCode::UNAUTHORIZED;
    let mut r = e.into_response();
    if unauthorized {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"sigil-est\""),
        );
    }
    r
}

/// First enrolment: with a one-time token (HTTP Basic), or, without one, with a manufacturer
/// bootstrap certificate presented as the TLS client certificate.
async fn simpleenroll<A: EstAuthority>(
    State(authority): State<Arc<A>>,
    addr: Option<Extension<PeerAddr>>,
    peer: Option<Extension<PeerCertificate>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let addr = addr.map(|a| a.0);
    if !headers.contains_key(header::AUTHORIZATION)
        && let Some(der) = peer.as_ref().and_then(|p| p.0.der())
    {
        return bootstrap_enroll(&*authority, addr, der, &headers, &body).await;
    }
    let credentials = basic_credentials(&headers);
    let (actor, subject) = actor_and_subject(
        credentials.as_ref().ok().map(|(d, _)| *d),
        "est:simpleenroll",
    );
    let result = async {
        let (device, token) = credentials?;
        // Parse before spending the token: a bad CSR must not burn it.
        let csr = read_csr(&headers, &body)?;
        Ok(authority.enrol_with_token(device, &token, csr).await?)
    }
    .await;
    answer(
        &*authority,
        addr,
        &actor,
        "est.simpleenroll",
        subject,
        result,
    )
    .await
}

async fn bootstrap_enroll<A: EstAuthority>(
    authority: &A,
    addr: Option<PeerAddr>,
    der: &[u8],
    headers: &HeaderMap,
    body: &Bytes,
) -> Response {
    let found = authority.bootstrap_device(der).await;
    let (actor, subject) =
        actor_and_subject(found.as_ref().ok().map(|f| f.device), "est:simpleenroll");
    let result = async {
        let found = found?;
        let csr = read_csr(headers, body)?;
        Ok(authority.enrol_bootstrapped(found, csr).await?)
    }
    .await;
    answer(authority, addr, &actor, "est.simpleenroll", subject, result).await
}

async fn simplereenroll<A: EstAuthority>(
    State(authority): State<Arc<A>>,
    addr: Option<Extension<PeerAddr>>,
    Extension(peer): Extension<PeerCertificate>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let presented = authority.presented_certificate(peer.der()).await;
    let (actor, subject) = actor_and_subject(
        presented.as_ref().ok().map(|r| r.device_id),
        "est:simplereenroll",
    );
    let result = async {
        let presented = presented?;
        let csr = read_csr(&headers, &body)?;
        Ok(authority.re_enrol(presented, csr).await?)
    }
    .await;
    answer(
        &*authority,
        addr.map(|a| a.0),
        &actor,
        "est.simplereenroll",
        subject,
        result,
    )
    .await
}
