//! Posture reports. Devices send them over mTLS with their current Sigil certificate (no token:
//! the certificate is the identity); operators read the latest and the history.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use sigil_audit::Actor;
use sigil_domain::{DeviceId, Posture};
use sigil_store::PostureRecord;

use super::{ApiError, AppState, Problem};
use sigil_authority::rfc3339;
use sigil_http::PeerCertificate;

/// Largest posture report accepted.
const MAX_POSTURE_BODY: usize = 64 * 1024;

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PostureReportResponse {
    pub id: String,
    pub device_id: String,
    pub received_at: String,
    /// The report as stored (the agent's JSON, validated).
    #[schema(value_type = Object)]
    pub posture: Posture,
}

impl From<PostureRecord> for PostureReportResponse {
    fn from(r: PostureRecord) -> Self {
        Self {
            id: r.id,
            device_id: r.device_id.to_string(),
            received_at: rfc3339(r.received_at),
            posture: r.posture,
        }
    }
}

/// Who sends a device's own request (`/api/v1/device/...`): the device of the current Sigil
/// certificate presented over mTLS (no token: the certificate is the identity), with the actor
/// and subject its audit entry names (`what` when no device could be told).
pub(crate) async fn device_caller(
    state: &AppState,
    peer: Option<Extension<PeerCertificate>>,
    what: &str,
) -> (Actor, String, Result<DeviceId, ApiError>) {
    let peer = peer.map(|Extension(p)| p).unwrap_or(PeerCertificate(None));
    match state.current_identity(peer.der()).await {
        Ok((device, _)) => (
            Actor::device(&device.to_string()),
            format!("device:{device}"),
            Ok(device),
        ),
        Err(e) => (Actor::device("unknown"), what.to_owned(), Err(e.into())),
    }
}

/// 413 for a device's body over `max` bytes.
pub(crate) fn within(body: &Bytes, max: usize) -> Result<(), ApiError> {
    if body.len() > max {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body-too-large",
            "Body too large",
            format!("{} bytes; at most {max}", body.len()),
        ));
    }
    Ok(())
}

/// A device reports its posture (`POST /api/v1/device/posture`, mTLS with its Sigil
/// certificate).
pub async fn report(
    State(state): State<AppState>,
    peer: Option<Extension<PeerCertificate>>,
    body: Bytes,
) -> Result<(StatusCode, Json<PostureReportResponse>), ApiError> {
    let (actor, subject, device) = device_caller(&state, peer, "posture").await;
    let result = async {
        let device = device?;
        within(&body, MAX_POSTURE_BODY)?;
        let posture = Posture::parse(&body).map_err(|e| ApiError::invalid(e.to_string()))?;
        Ok(state
            .store()
            .record_posture(&actor, device, &posture, state.now())
            .await?)
    }
    .await;
    let record = state
        .audit_refusal(&actor, "posture.report", subject, result)
        .await?;
    Ok((StatusCode::CREATED, Json(record.into())))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PostureQuery {
    /// Most history entries returned (1 to 500, default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PostureResponse {
    pub device_id: String,
    pub latest: Option<PostureReportResponse>,
    /// Newest first, `latest` included.
    pub history: Vec<PostureReportResponse>,
}

/// A device's latest posture and its history.
#[utoipa::path(get, path = "/api/v1/devices/{id}/posture", tag = "inventory", params(("id" = String, Path), PostureQuery),
    responses((status = 200, body = PostureResponse), (status = 404, body = Problem)))]
pub async fn get(
    State(state): State<AppState>,
    // The query first, then the id: a request wrong in both is told about its query, as
    // before the id had an extractor of its own.
    super::ApiQuery(q): super::ApiQuery<PostureQuery>,
    super::ApiPath(device): super::ApiPath<DeviceId>,
) -> Result<Json<PostureResponse>, ApiError> {
    state.store().get_device(device).await?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::invalid("limit: 1 to 500"));
    }
    let history: Vec<PostureReportResponse> = state
        .store()
        .posture_history(device, limit)
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    Ok(Json(PostureResponse {
        device_id: device.to_string(),
        latest: history.first().cloned(),
        history,
    }))
}
