//! A device's updates: every rollout it is part of, what it was to install and where that
//! stands (the console's device page, and anyone asking why a device is behind).

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use sigil_authority::rfc3339;
use sigil_domain::DeviceId;

use super::{ApiError, ApiPath, AppState, Problem};

#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceUpdateView {
    pub rollout_id: String,
    /// The rollout's state (running, paused, completed, ...).
    pub rollout_state: String,
    pub release_version: String,
    /// This device's part: pending, assigned, downloading, installing, installed, failed,
    /// rejected or timed-out.
    pub status: String,
    pub reason: Option<String>,
    /// The version the device reported running after the update.
    pub reported_version: Option<String>,
    pub updated_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceUpdates {
    /// The firmware the inventory records for the device.
    pub firmware_version: Option<String>,
    /// Newest first, at most 20.
    pub items: Vec<DeviceUpdateView>,
}

/// The device's firmware and its updates, newest first.
#[utoipa::path(get, path = "/api/v1/devices/{id}/updates", tag = "updates", params(("id" = String, Path)),
    responses((status = 200, body = DeviceUpdates), (status = 404, body = Problem)))]
pub async fn device_updates(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<DeviceId>,
) -> Result<Json<DeviceUpdates>, ApiError> {
    let device = state.store().get_device(id).await?;
    let items = state
        .store()
        .device_updates(&id.to_string())
        .await?
        .into_iter()
        .map(|u| DeviceUpdateView {
            rollout_id: u.rollout_id,
            rollout_state: u.rollout_state,
            release_version: u.release_version,
            status: u.status,
            reason: u.reason,
            reported_version: u.reported_version,
            updated_at: rfc3339(u.updated_at),
        })
        .collect();
    Ok(Json(DeviceUpdates {
        firmware_version: device.firmware_version,
        items,
    }))
}
