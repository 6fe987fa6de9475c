//! Manufacturer (IDevID) CAs an operator trusts per product. A device of that product may then
//! enrol over EST with the bootstrap certificate its maker installed, instead of a token.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use sigil_ca::ManufacturerCa;
use sigil_domain::ProductId;
use sigil_store::ManufacturerCaRecord;

use super::{ApiError, ApiJson, ApiPath, AppState, Caller, Problem};
use sigil_authority::rfc3339;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ManufacturerCaRequest {
    /// The manufacturer's CA certificate (PEM, one certificate) that issues the bootstrap
    /// certificates of this product's devices.
    pub certificate: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ManufacturerCaResponse {
    pub id: String,
    pub product_id: String,
    pub subject: String,
    /// SHA-256 of the certificate DER, hex.
    pub sha256: String,
    pub not_after: String,
    pub created_at: String,
}

impl From<ManufacturerCaRecord> for ManufacturerCaResponse {
    fn from(r: ManufacturerCaRecord) -> Self {
        Self {
            id: r.id,
            product_id: r.product_id.to_string(),
            subject: r.subject,
            sha256: r.sha256.to_string(),
            not_after: rfc3339(r.not_after),
            created_at: rfc3339(r.created_at),
        }
    }
}

/// Trust a manufacturer CA for a product's bootstrap certificates.
#[utoipa::path(post, path = "/api/v1/products/{id}/manufacturer-cas", tag = "lifecycle", params(("id" = String, Path)),
    request_body = ManufacturerCaRequest,
    responses((status = 201, body = ManufacturerCaResponse), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn add(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<ManufacturerCaRequest>,
) -> Result<(StatusCode, Json<ManufacturerCaResponse>), ApiError> {
    let actor = caller.actor();
    let subject = format!("product:{id}");
    let result = async {
        let product: ProductId = id.parse()?;
        let ca = ManufacturerCa::from_pem(&req.certificate, state.now())?;
        Ok(state.add_manufacturer_ca(&actor, product, &ca).await?)
    }
    .await;
    let record = state
        .audit_refusal(&actor, "manufacturer_ca.add", subject, result)
        .await?;
    Ok((StatusCode::CREATED, Json(record.into())))
}

/// The manufacturer CAs trusted for a product.
#[utoipa::path(get, path = "/api/v1/products/{id}/manufacturer-cas", tag = "lifecycle", params(("id" = String, Path)),
    responses((status = 200, body = [ManufacturerCaResponse]), (status = 404, body = Problem)))]
pub async fn list(
    State(state): State<AppState>,
    ApiPath(product): ApiPath<ProductId>,
) -> Result<Json<Vec<ManufacturerCaResponse>>, ApiError> {
    state.store().get_product(product).await?;
    let cas = state.store().manufacturer_cas(Some(product)).await?;
    Ok(Json(cas.into_iter().map(Into::into).collect()))
}
