//! Device identity certificates.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use sigil_audit::Actor;
use utoipa::{IntoParams, ToSchema};

use sigil_ca::{DEFAULT_PROFILE, PROFILES, Profile, ValidatedCsr, certificate_pem};
use sigil_domain::{DeviceId, Serial};
use sigil_store::CertificateRecord;

use super::{ApiError, ApiJson, ApiPath, ApiQuery, AppState, Caller, Problem};
use sigil_authority::rfc3339;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IssueRequest {
    /// PKCS#10 certificate signing request, PEM. Only its public key is used.
    pub csr: String,
    /// Certificate profile (default `device`); see `GET /api/v1/profiles`.
    pub profile: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IssueResponse {
    /// Serial number, lowercase hex.
    pub serial: String,
    pub device_id: String,
    pub profile: String,
    /// The device certificate, PEM.
    pub certificate: String,
    /// Issuing CA then root CA, PEM.
    pub chain: String,
    pub not_before: String,
    pub not_after: String,
    /// When the device should re-enrol: the start of its profile's renewal window.
    pub renew_after: String,
    /// SHA-256 of the certificate DER, hex.
    pub sha256: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CertificateResponse {
    pub serial: String,
    pub device_id: String,
    pub profile: String,
    /// active, superseded or revoked
    pub status: String,
    pub not_before: String,
    pub not_after: String,
    /// When the device should re-enrol: the start of its profile's renewal window.
    pub renew_after: Option<String>,
    pub sha256: String,
    /// SHA-256 of the certified SubjectPublicKeyInfo, hex.
    pub spki_sha256: String,
    pub issued_at: String,
    /// When it was revoked (RFC 3339), if it was.
    pub revoked_at: Option<String>,
    /// RFC 5280 reason name, if revoked.
    pub revocation_reason: Option<String>,
    pub certificate: String,
}

impl From<CertificateRecord> for CertificateResponse {
    fn from(c: CertificateRecord) -> Self {
        let renew_after = Profile::by_name(&c.profile)
            .ok()
            .map(|p| rfc3339(p.renew_after(c.not_before, c.not_after)));
        Self {
            serial: c.serial.to_string(),
            device_id: c.device_id.to_string(),
            profile: c.profile,
            status: c.status.as_str().to_owned(),
            not_before: rfc3339(c.not_before),
            not_after: rfc3339(c.not_after),
            renew_after,
            sha256: c.sha256.to_string(),
            spki_sha256: c.spki_sha256.to_string(),
            issued_at: rfc3339(c.issued_at),
            revoked_at: c.revoked_at.map(rfc3339),
            revocation_reason: c.revocation_reason.map(|r| r.as_str().to_owned()),
            certificate: certificate_pem(&c.der),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CertificateList {
    pub items: Vec<CertificateResponse>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct CertificateQuery {
    /// Only certificates of this device.
    pub device: Option<String>,
    /// At most this many, newest first (1 to 500, default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

/// Issue a device identity certificate from a CSR.
///
/// The CA decides the certificate's contents: subject, SAN URI, validity, extensions. The CSR's
/// signature must verify under its own key (proof of possession) and the key must meet the
/// crypto policy and not be bound to another device.
#[utoipa::path(post, path = "/api/v1/devices/{id}/certificates", tag = "certificates", params(("id" = String, Path)),
    request_body = IssueRequest,
    responses((status = 201, body = IssueResponse), (status = 400, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem), (status = 413, body = Problem), (status = 422, body = Problem)))]
pub async fn issue(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<IssueRequest>,
) -> Result<(StatusCode, Json<IssueResponse>), ApiError> {
    let actor = caller.actor();
    let subject = format!("device:{id}");
    let result = sign_and_record(&state, &actor, &id, &req).await;
    let (device, profile, record) = state
        .audit_refusal(&actor, "certificate.issue", subject, result)
        .await?;
    tracing::info!(%device, serial = %record.serial, profile = profile.name, "issued device certificate");
    Ok((
        StatusCode::CREATED,
        Json(IssueResponse {
            serial: record.serial.to_string(),
            device_id: device.to_string(),
            profile: record.profile.clone(),
            certificate: certificate_pem(&record.der),
            chain: state.ca().chain_pem(),
            not_before: rfc3339(record.not_before),
            not_after: rfc3339(record.not_after),
            renew_after: rfc3339(profile.renew_after(record.not_before, record.not_after)),
            sha256: record.sha256.to_string(),
        }),
    ))
}

async fn sign_and_record(
    state: &AppState,
    actor: &Actor,
    id: &str,
    req: &IssueRequest,
) -> Result<(DeviceId, &'static Profile, CertificateRecord), ApiError> {
    let device: DeviceId = id.parse()?;
    let profile = Profile::by_name(req.profile.as_deref().unwrap_or(DEFAULT_PROFILE))?;
    let csr = ValidatedCsr::from_pem(&req.csr)?;
    let record = state
        .issue(
            actor,
            device,
            sigil_store::IssuanceBasis::Authorised,
            csr,
            profile,
        )
        .await?;
    Ok((device, profile, record))
}

#[utoipa::path(get, path = "/api/v1/certificates", tag = "certificates", params(CertificateQuery),
    responses((status = 200, body = CertificateList), (status = 400, body = Problem), (status = 404, body = Problem, description = "No such device")))]
pub async fn list(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<CertificateQuery>,
) -> Result<Json<CertificateList>, ApiError> {
    let device = q
        .device
        .as_deref()
        .map(str::parse::<DeviceId>)
        .transpose()?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=sigil_store::MAX_PAGE).contains(&limit) {
        return Err(ApiError::invalid(format!(
            "limit must be between 1 and {}",
            sigil_store::MAX_PAGE
        )));
    }
    if let Some(d) = device {
        // Distinguish "no certificates" from "no such device".
        state.store().get_device(d).await?;
    }
    let items = state
        .store()
        .list_certificates(device, limit)
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    Ok(Json(CertificateList { items }))
}

#[utoipa::path(get, path = "/api/v1/certificates/{serial}", tag = "certificates", params(("serial" = String, Path)),
    responses((status = 200, body = CertificateResponse), (status = 404, body = Problem)))]
pub async fn get(
    State(state): State<AppState>,
    ApiPath(serial): ApiPath<Serial>,
) -> Result<Json<CertificateResponse>, ApiError> {
    Ok(Json(state.store().get_certificate(&serial).await?.into()))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProfileResponse {
    pub name: String,
    pub validity_seconds: i64,
    /// The renewal window: re-enrol once less than this remains.
    pub renew_before_seconds: i64,
    pub default: bool,
}

#[utoipa::path(get, path = "/api/v1/profiles", tag = "certificates", responses((status = 200, body = [ProfileResponse])))]
pub async fn profiles() -> Json<Vec<ProfileResponse>> {
    Json(
        PROFILES
            .iter()
            .map(|p| ProfileResponse {
                name: p.name.to_owned(),
                validity_seconds: p.validity.whole_seconds(),
                renew_before_seconds: p.renew_before.whole_seconds(),
                default: p.name == DEFAULT_PROFILE,
            })
            .collect(),
    )
}
