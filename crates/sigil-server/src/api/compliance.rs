//! Compliance posture per framework, per requirement and per device.

use axum::Json;
use axum::extract::{Path, State};
use serde::Serialize;
use utoipa::ToSchema;

use sigil_domain::DeviceId;

use super::{ApiError, AppState, Problem};
use crate::compliance::{self, FrameworkReport};

#[derive(Serialize, ToSchema)]
pub struct FrameworkSummary {
    pub id: String,
    pub title: String,
    pub version: String,
    pub requirements: usize,
}

#[derive(Serialize, ToSchema)]
pub struct FrameworkList {
    pub catalogue_version: String,
    pub frameworks: Vec<FrameworkSummary>,
}

/// The frameworks in the catalogue.
#[utoipa::path(get, path = "/api/v1/compliance", tag = "compliance",
    responses((status = 200, body = FrameworkList)))]
pub async fn frameworks(State(state): State<AppState>) -> Json<FrameworkList> {
    Json(FrameworkList {
        catalogue_version: state.catalogue.version().to_owned(),
        frameworks: state
            .catalogue
            .frameworks()
            .iter()
            .map(|f| FrameworkSummary {
                id: f.info.id.clone(),
                title: f.info.title.clone(),
                version: f.info.version.clone(),
                requirements: f.requirements.len(),
            })
            .collect(),
    })
}

fn framework<'a>(
    state: &'a AppState,
    id: &str,
) -> Result<&'a sigil_compliance::Framework, ApiError> {
    state.catalogue.framework(id).ok_or_else(|| {
        let known: Vec<&str> = state
            .catalogue
            .frameworks()
            .iter()
            .map(|f| f.info.id.as_str())
            .collect();
        ApiError::not_found(format!(
            "no framework `{id}`; the catalogue has {}",
            known.join(", ")
        ))
    })
}

/// The fleet's posture against a framework: each requirement's status, its checks, counts and
/// the failing devices with reasons and evidence.
#[utoipa::path(get, path = "/api/v1/compliance/{framework}", tag = "compliance",
    responses((status = 200, body = FrameworkReport), (status = 404, body = Problem)))]
pub async fn fleet(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<FrameworkReport>, ApiError> {
    let fw = framework(&state, &id)?;
    Ok(Json(
        compliance::evaluate(&state, fw, &state.catalogue, None).await?,
    ))
}

/// One device's posture against a framework (device checks for it; product and organisation
/// checks as they stand).
#[utoipa::path(get, path = "/api/v1/compliance/{framework}/devices/{id}", tag = "compliance",
    responses((status = 200, body = FrameworkReport), (status = 404, body = Problem)))]
pub async fn device(
    State(state): State<AppState>,
    Path((framework_id, device)): Path<(String, String)>,
) -> Result<Json<FrameworkReport>, ApiError> {
    let fw = framework(&state, &framework_id)?;
    let device: DeviceId = device
        .parse()
        .map_err(|_| ApiError::not_found(format!("no device `{device}`")))?;
    state.store.get_device(device).await?;
    Ok(Json(
        compliance::evaluate(&state, fw, &state.catalogue, Some(device)).await?,
    ))
}
