//! EST (RFC 7030) under `/.well-known/est/`: `cacerts`, `csrattrs`, `simpleenroll` (HTTP Basic
//! with a one-time enrolment token: user = device id, password = token; or a manufacturer
//! bootstrap certificate as the TLS client certificate) and `simplereenroll`
//! (mTLS with the device's current certificate). Bodies are base64 DER as the RFC prescribes;
//! errors are problem+json with a status from RFC 7030 4.2.3, and every refusal is in the
//! audit log.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use base64::Engine;
use x509_parser::prelude::{FromDer, X509Certificate};

use sigil_audit::Actor;
use sigil_ca::{BootstrapCertificate, KeyAlgorithm, Profile, ValidatedCsr, est};
use sigil_domain::{DeviceId, Serial};
use sigil_store::{CertificateRecord, CertificateStatus, IssuanceBasis, TokenRefusal};

use super::auth::PeerAddr;
use super::certificates::issue_to_device;
use super::{ApiError, AppState, token_hash};
use crate::mtls::PeerCertificate;

/// EST requests carry one CSR: a few KiB of base64 at most.
const MAX_EST_BODY: usize = 32 * 1024;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/.well-known/est/cacerts", get(cacerts))
        .route("/.well-known/est/csrattrs", get(csrattrs))
        .route("/.well-known/est/simpleenroll", post(simpleenroll))
        .route("/.well-known/est/simplereenroll", post(simplereenroll))
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

async fn cacerts(State(state): State<AppState>) -> Result<Response, ApiError> {
    let p7 = est::certs_only(&[state.ca.issuing_cert_der(), state.ca.root_cert_der()])?;
    Ok(base64_body(&p7, PKCS7_CERTS_ONLY))
}

async fn csrattrs(State(_state): State<AppState>) -> Result<Response, ApiError> {
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

/// The answer to an enrolment: the certificate as certs-only PKCS#7, or the refusal (recorded
/// in the audit log first).
async fn answer(
    state: &AppState,
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
            let e = state
                .authentication_failed(ip, "est", actor, action, subject, e)
                .await;
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
async fn simpleenroll(
    State(state): State<AppState>,
    addr: Option<Extension<PeerAddr>>,
    peer: Option<Extension<PeerCertificate>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !headers.contains_key(header::AUTHORIZATION)
        && let Some(Extension(PeerCertificate(Some(der)))) = &peer
    {
        return bootstrap_enroll(&state, addr.map(|a| a.0), der, &headers, &body).await;
    }
    let (actor, subject) = match basic_credentials(&headers) {
        Ok((device, _)) => (
            Actor::device(&device.to_string()),
            format!("device:{device}"),
        ),
        Err(_) => (Actor::device("unknown"), "est:simpleenroll".to_owned()),
    };
    let result = async {
        let (device, token) = basic_credentials(&headers)?;
        // Parse before spending the token: a bad CSR must not burn it.
        let csr = read_csr(&headers, &body)?;
        let now = state.now();
        let token_id = match state
            .store
            .consume_enrollment_token(device, &token_hash(&token), now)
            .await?
        {
            Ok(id) => id,
            Err(TokenRefusal::Used) => {
                // A retry after a lost answer: the token was spent on a certificate for this
                // very key (the CSR proves possession of it), so hand that certificate back.
                return match retried_enrolment(&state, device, &csr).await? {
                    Some(record) => Ok(record),
                    None => Err(ApiError::unauthenticated(TokenRefusal::Used.to_string())),
                };
            }
            Err(refusal) => return Err(ApiError::unauthenticated(refusal.to_string())),
        };
        let profile = state.enrollment_profile;
        match issue_to_device(
            &state,
            &Actor::device(&device.to_string()),
            device,
            IssuanceBasis::Authorised,
            csr,
            profile,
        )
        .await
        {
            Ok(record) => Ok(record),
            Err(e) => {
                // Nothing was issued: the device may try again with the same token.
                if let Err(release) = state
                    .store
                    .release_enrollment_token(device, &token_id, &e.detail, state.now())
                    .await
                {
                    tracing::error!(error = %release, "could not release an enrolment token");
                }
                Err(e)
            }
        }
    }
    .await;
    answer(
        &state,
        addr.map(|a| a.0),
        &actor,
        "est.simpleenroll",
        subject,
        result,
    )
    .await
}

/// The unrevoked certificate of `device` for the key in `csr`, if one was issued: what a device
/// whose enrolment answer was lost asks for again with its spent token.
async fn retried_enrolment(
    state: &AppState,
    device: DeviceId,
    csr: &ValidatedCsr,
) -> Result<Option<CertificateRecord>, ApiError> {
    let existing = state
        .store
        .list_certificates(Some(device), 1000)
        .await?
        .into_iter()
        .filter(|c| {
            &c.spki_sha256 == csr.spki_fingerprint() && c.status != CertificateStatus::Revoked
        })
        // A renewal may keep its key: then the active certificate is the one to hand back.
        .max_by_key(|c| c.status == CertificateStatus::Active);
    if let Some(record) = &existing {
        state
            .store
            .append_audit(vec![sigil_audit::AuditEvent::new(
                state.now(),
                Actor::device(&device.to_string()),
                "est.simpleenroll_repeated",
                format!("device:{device}"),
                sigil_audit::Outcome::Success,
                serde_json::json!({"serial": record.serial.to_string()}),
            )])
            .await?;
    }
    Ok(existing)
}

fn forbidden(code: &'static str, detail: String) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, code, "Forbidden", detail)
}

/// The registered device a bootstrap certificate (already verified by the TLS layer against the
/// registered manufacturer CAs) stands for: a device of a product whose CA directly issued it,
/// whose serial number or hardware id is the certificate's subject serialNumber or CN.
async fn bootstrap_device(
    state: &AppState,
    der: &[u8],
) -> Result<(DeviceId, BootstrapCertificate, String), ApiError> {
    if sigil_ca::directly_issued_by(der, state.ca.issuing_cert_der()) {
        return Err(forbidden(
            "not-a-bootstrap-certificate",
            "this is a Sigil device certificate: renew it at /.well-known/est/simplereenroll"
                .into(),
        ));
    }
    let boot = BootstrapCertificate::parse(der)?;
    let cas: Vec<_> = state
        .store
        .manufacturer_cas(None)
        .await?
        .into_iter()
        .filter(|ca| sigil_ca::directly_issued_by(der, &ca.der))
        .collect();
    if cas.is_empty() {
        return Err(forbidden(
            "bootstrap-untrusted",
            format!(
                "the client certificate ({}) was not issued directly by a manufacturer CA registered for any product",
                boot.subject
            ),
        ));
    }
    let mut devices = Vec::new();
    for ca in &cas {
        for device in state
            .store
            .devices_named(ca.product_id, &boot.device_names)
            .await?
        {
            devices.push((device, ca.sha256.to_string()));
        }
    }
    match devices.as_slice() {
        [(device, ca)] => Ok((*device, boot, ca.clone())),
        [] => Err(forbidden(
            "bootstrap-no-device",
            format!(
                "no registered device of the product(s) trusting this CA has serial number or hardware id {:?}",
                boot.device_names
            ),
        )),
        _ => Err(ApiError::new(
            StatusCode::CONFLICT,
            "bootstrap-ambiguous",
            "Conflict",
            format!(
                "{} registered devices match the bootstrap certificate's names {:?}",
                devices.len(),
                boot.device_names
            ),
        )),
    }
}

async fn bootstrap_enroll(
    state: &AppState,
    addr: Option<PeerAddr>,
    der: &[u8],
    headers: &HeaderMap,
    body: &Bytes,
) -> Response {
    let found = bootstrap_device(state, der).await;
    let (actor, subject) = match &found {
        Ok((device, _, _)) => (
            Actor::device(&device.to_string()),
            format!("device:{device}"),
        ),
        Err(_) => (Actor::device("unknown"), "est:simpleenroll".to_owned()),
    };
    let result = async {
        let (device, boot, ca) = found?;
        let csr = read_csr(headers, body)?;
        state
            .store
            .append_audit(vec![sigil_audit::AuditEvent::new(
                state.now(),
                actor.clone(),
                "est.bootstrap_authenticated",
                format!("device:{device}"),
                sigil_audit::Outcome::Success,
                serde_json::json!({
                    "bootstrap_serial": boot.serial,
                    "bootstrap_subject": boot.subject,
                    "bootstrap_spki_sha256": boot.spki_sha256,
                    "manufacturer_ca_sha256": ca,
                }),
            )])
            .await?;
        let profile = state.enrollment_profile;
        issue_to_device(
            state,
            &actor,
            device,
            IssuanceBasis::Bootstrap,
            csr,
            profile,
        )
        .await
    }
    .await;
    answer(state, addr, &actor, "est.simpleenroll", subject, result).await
}

/// Sigil's record of a verified client certificate, if Sigil issued it and has not revoked it.
/// It may be superseded: [`current_identity`] is what authenticates a device.
async fn issued_certificate(
    state: &AppState,
    peer: &PeerCertificate,
) -> Result<CertificateRecord, ApiError> {
    let der = peer.0.as_ref().ok_or_else(|| {
        ApiError::unauthenticated(
            "this request needs the device's current certificate as the TLS client certificate",
        )
    })?;
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| ApiError::unauthenticated(format!("client certificate: {e}")))?;
    let serial = Serial::from_bytes(cert.raw_serial())?;
    // Only "no such certificate" is a refusal; a database failure is a 5xx the device retries.
    let record = match state.store.get_certificate(&serial).await {
        Ok(record) => record,
        Err(sigil_store::StoreError::NotFound { .. }) => {
            return Err(forbidden(
                "not-a-device-certificate",
                "the client certificate is not a device certificate Sigil issued".into(),
            ));
        }
        Err(e) => return Err(e.into()),
    };
    if record.der.as_slice() != der.as_ref().as_ref() {
        return Err(ApiError::unauthenticated(
            "the client certificate does not match Sigil's record of that serial",
        ));
    }
    if record.status == CertificateStatus::Revoked {
        return Err(ApiError::unauthenticated(
            "the client certificate is revoked",
        ));
    }
    Ok(record)
}

fn not_current(record: &CertificateRecord) -> ApiError {
    forbidden(
        "certificate-not-current",
        format!(
            "certificate {} was superseded by a newer certificate of device {}: only a device's current certificate authenticates it",
            record.serial, record.device_id
        ),
    )
}

/// The device a verified client certificate belongs to, if Sigil issued it and it is the
/// device's current (active) certificate. A superseded certificate stays valid for relying
/// parties during its overlap, but never authenticates the device to Sigil: whoever holds an
/// old key (a backup, a previous owner) must not act as the device.
pub(crate) async fn current_identity(
    state: &AppState,
    peer: &PeerCertificate,
) -> Result<(DeviceId, CertificateRecord), ApiError> {
    let record = issued_certificate(state, peer).await?;
    if record.status != CertificateStatus::Active {
        return Err(not_current(&record));
    }
    Ok((record.device_id, record))
}

async fn simplereenroll(
    State(state): State<AppState>,
    addr: Option<Extension<PeerAddr>>,
    Extension(peer): Extension<PeerCertificate>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let identity = issued_certificate(&state, &peer).await;
    let (actor, subject) = match &identity {
        Ok(record) => (
            Actor::device(&record.device_id.to_string()),
            format!("device:{}", record.device_id),
        ),
        Err(_) => (Actor::device("unknown"), "est:simplereenroll".to_owned()),
    };
    let result = async {
        let presented = identity?;
        let device = presented.device_id;
        let csr = read_csr(&headers, &body)?;
        if presented.status != CertificateStatus::Active {
            // A retry after a lost answer: the renewal went through, and the CSR proves
            // possession of the key its certificate certifies, so hand that certificate back.
            return match retried_enrolment(&state, device, &csr).await? {
                Some(record) if record.status == CertificateStatus::Active => Ok(record),
                _ => Err(not_current(&presented)),
            };
        }
        // Renewal keeps the profile of the certificate it renews.
        let profile = Profile::by_name(&presented.profile)?;
        let basis = IssuanceBasis::Renewal(presented.serial.clone());
        issue_to_device(&state, &actor, device, basis, csr, profile).await
    }
    .await;
    answer(
        &state,
        addr.map(|a| a.0),
        &actor,
        "est.simplereenroll",
        subject,
        result,
    )
    .await
}

#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnrollmentTokenRequest {
    /// Lifetime in seconds: 60 to 2,592,000 (30 days). Default 86,400 (one day).
    pub ttl_seconds: Option<u32>,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct EnrollmentTokenResponse {
    pub device_id: String,
    /// The secret, shown once: the device presents it as the HTTP Basic password (user = its
    /// device id) to `/.well-known/est/simpleenroll`. Only its SHA-256 is stored.
    pub token: String,
    pub expires_at: String,
}

/// Create a one-time EST enrolment token for a device.
#[utoipa::path(post, path = "/api/v1/devices/{id}/enrollment-tokens", tag = "lifecycle", params(("id" = String, Path)),
    request_body = EnrollmentTokenRequest,
    responses((status = 201, body = EnrollmentTokenResponse), (status = 404, body = super::Problem), (status = 422, body = super::Problem)))]
pub async fn create_enrollment_token(
    State(state): State<AppState>,
    Extension(caller): Extension<super::Caller>,
    axum::extract::Path(id): axum::extract::Path<String>,
    super::ApiJson(req): super::ApiJson<EnrollmentTokenRequest>,
) -> Result<(StatusCode, axum::Json<EnrollmentTokenResponse>), ApiError> {
    let actor = caller.actor();
    let subject = format!("device:{id}");
    let result = async {
        let device: DeviceId = id.parse()?;
        let ttl = req.ttl_seconds.unwrap_or(86_400);
        if !(60..=2_592_000).contains(&ttl) {
            return Err(ApiError::invalid(
                "ttl_seconds must be between 60 and 2592000 (30 days)",
            ));
        }
        let token = super::generate_token()?;
        let now = state.now();
        let expires_at = now + time::Duration::seconds(i64::from(ttl));
        state
            .store
            .create_enrollment_token(&actor, device, &token_hash(&token), now, expires_at)
            .await?;
        Ok((device, token, expires_at))
    }
    .await;
    let (device, token, expires_at) = state
        .audit_refusal(&actor, "enrollment_token.create", subject, result)
        .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(EnrollmentTokenResponse {
            device_id: device.to_string(),
            token,
            expires_at: expires_at
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
        }),
    ))
}
