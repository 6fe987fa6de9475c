//! One-time EST enrolment tokens (the device spends one at `/.well-known/est/simpleenroll`).

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;

use sigil_authority::token_hash;
use sigil_domain::DeviceId;

use super::{ApiError, AppState};

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
        let token = sigil_authority::generate_token()?;
        let now = state.now();
        let expires_at = now + time::Duration::seconds(i64::from(ttl));
        state
            .store()
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
