//! Foreign certificates over HTTP: import a PEM bundle for a device, list, remove. Records for
//! inventory and expiry tracking, never trust.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::Serialize;
use utoipa::ToSchema;

use sigil_authority::rfc3339;
use sigil_ca::foreign::MAX_FOREIGN_BUNDLE;
use sigil_domain::{DeviceId, Fingerprint};
use sigil_store::ForeignRecord;

use super::vulns::read_body;
use super::{ApiError, ApiPath, AppState, Caller, Problem};

#[derive(Debug, Serialize, ToSchema)]
pub struct ForeignCertificateResponse {
    /// SHA-256 of the certificate DER, hex.
    pub sha256: String,
    pub subject: String,
    pub issuer: String,
    /// The issuer's serial number, hex.
    pub serial: String,
    pub not_before: String,
    pub not_after: String,
    /// `valid`, `expired` or `not-yet-valid`, now.
    pub validity: String,
    /// SHA-256 of its SubjectPublicKeyInfo, hex.
    pub spki_sha256: String,
    pub imported_by: String,
    pub imported_at: String,
    /// Always false: a foreign certificate is never accepted for TLS, EST or bootstrap.
    pub trusted: bool,
    /// PEM.
    pub certificate: String,
}

impl ForeignCertificateResponse {
    fn new(r: ForeignRecord, now: time::OffsetDateTime) -> Self {
        let validity = if now >= r.not_after {
            "expired"
        } else if now < r.not_before {
            "not-yet-valid"
        } else {
            "valid"
        };
        Self {
            certificate: sigil_ca::certificate_pem(&r.der),
            sha256: r.sha256,
            subject: r.subject,
            issuer: r.issuer,
            serial: r.serial,
            not_before: rfc3339(r.not_before),
            not_after: rfc3339(r.not_after),
            validity: validity.into(),
            spki_sha256: r.spki_sha256,
            imported_by: r.imported_by,
            imported_at: rfc3339(r.imported_at),
            trusted: false,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ForeignList {
    pub items: Vec<ForeignCertificateResponse>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ForeignImportResponse {
    /// Fingerprints of the certificates recorded now.
    pub added: Vec<String>,
    /// Fingerprints the device had already (left as they were).
    pub already: Vec<String>,
}

/// Import certificates another CA issued to the device (a PEM bundle of 1 to 64 end-entity
/// certificates), for the inventory and expiry tracking. They are marked foreign and never
/// trusted. A bundle with any malformed, CA, or Sigil-issued certificate is refused whole.
#[utoipa::path(post, path = "/api/v1/devices/{id}/foreign-certificates", tag = "certificates",
    params(("id" = String, Path)),
    request_body(content = String, content_type = "text/plain"),
    responses((status = 201, body = ForeignImportResponse), (status = 404, body = Problem),
        (status = 413, body = Problem), (status = 422, body = Problem)))]
pub async fn import(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(device): ApiPath<DeviceId>,
    body: Body,
) -> Result<(StatusCode, Json<ForeignImportResponse>), ApiError> {
    let actor = caller.actor();
    let result = async {
        let bytes = read_body(body, MAX_FOREIGN_BUNDLE).await?;
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| ApiError::invalid("the body is not UTF-8 PEM text"))?;
        Ok(state
            .import_foreign_certificates(&actor, device, text)
            .await?)
    }
    .await;
    let imported = state
        .audit_refusal(
            &actor,
            "certificate.foreign-import",
            format!("device:{device}"),
            result,
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(ForeignImportResponse {
            added: imported.added,
            already: imported.already,
        }),
    ))
}

/// The device's foreign certificates, soonest to expire first.
#[utoipa::path(get, path = "/api/v1/devices/{id}/foreign-certificates", tag = "certificates",
    params(("id" = String, Path)),
    responses((status = 200, body = ForeignList), (status = 404, body = Problem)))]
pub async fn list(
    State(state): State<AppState>,
    ApiPath(device): ApiPath<DeviceId>,
) -> Result<Json<ForeignList>, ApiError> {
    let now = state.now();
    let items = state
        .foreign_certificates(device)
        .await?
        .into_iter()
        .map(|r| ForeignCertificateResponse::new(r, now))
        .collect();
    Ok(Json(ForeignList { items }))
}

/// Forget one of the device's foreign certificates (audited).
#[utoipa::path(delete, path = "/api/v1/devices/{id}/foreign-certificates/{sha256}", tag = "certificates",
    params(("id" = String, Path), ("sha256" = String, Path)),
    responses((status = 204), (status = 400, body = Problem), (status = 404, body = Problem)))]
pub async fn remove(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((device, sha256)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let actor = caller.actor();
    let result = async {
        let device: DeviceId = device.parse()?;
        let sha256: Fingerprint = sha256.parse()?;
        Ok(state
            .remove_foreign_certificate(&actor, device, sha256.as_str())
            .await?)
    }
    .await;
    state
        .audit_refusal(
            &actor,
            "certificate.foreign-remove",
            format!("device:{}", device.chars().take(40).collect::<String>()),
            result,
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
