//! Revoking a device's certificates. The revocation commits with its audit entries; the CRL is
//! re-signed straight after, so relying parties see it within seconds.

use axum::extract::{Path, State};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use sigil_domain::{DeviceId, RevocationReason};

use super::{ApiError, ApiJson, AppState, Caller, Problem};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    /// RFC 5280 reason: `keyCompromise`, `affiliationChanged`, `superseded`,
    /// `cessationOfOperation`, `privilegeWithdrawn`, or `unspecified` (the default).
    pub reason: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RevokeResponse {
    pub device_id: String,
    pub reason: String,
    /// Serials of the certificates revoked now.
    pub revoked: Vec<String>,
    /// Number of the CRL that lists them (absent if re-signing failed; it is retried within a
    /// minute).
    pub crl_number: Option<u64>,
}

/// Revoke every valid certificate of a device. The device keeps its lifecycle state (suspend or
/// retire it separately); it can be given a new identity later.
#[utoipa::path(post, path = "/api/v1/devices/{id}/revoke", tag = "lifecycle", params(("id" = String, Path)),
    request_body = RevokeRequest,
    responses((status = 200, body = RevokeResponse), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn revoke_device(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<RevokeRequest>,
) -> Result<Json<RevokeResponse>, ApiError> {
    let actor = caller.actor();
    let subject = format!("device:{id}");
    let result = async {
        let id: DeviceId = id.parse()?;
        let reason: RevocationReason = match &req.reason {
            Some(r) => r
                .parse()
                .map_err(|e| ApiError::invalid(format!("reason: {e}")))?,
            None => RevocationReason::Unspecified,
        };
        let serials = state
            .store()
            .revoke_device_certificates(&actor, id, reason, state.now())
            .await?;
        Ok((id, reason, serials))
    }
    .await;
    let (id, reason, serials) = state
        .audit_refusal(&actor, "certificate.revoke", subject, result)
        .await?;
    tracing::info!(device = %id, %reason, count = serials.len(), "revoked device certificates");
    let crl_number = state.publish_crl(&actor).await;
    Ok(Json(RevokeResponse {
        device_id: id.to_string(),
        reason: reason.as_str().to_owned(),
        revoked: serials.iter().map(|s| s.as_str().to_owned()).collect(),
        crl_number,
    }))
}
