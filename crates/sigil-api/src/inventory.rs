//! Products and devices.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use sigil_audit::Actor;
use sigil_authority::rfc3339;
use utoipa::{IntoParams, ToSchema};

use sigil_domain::{
    Device, DeviceFields, DeviceFilter, DeviceId, LifecycleEvent, LifecycleState, NewDevice,
    NewProduct, Product, ProductDeclaration, ProductId, Tag,
};

use super::{ApiError, ApiJson, ApiPath, ApiQuery, AppState, Caller, Problem};

/// The verb for a refused lifecycle request, e.g. `device.activate` (the store names the
/// successful ones in the past tense: `device.activated`).
fn event_name(event: LifecycleEvent) -> &'static str {
    match event {
        LifecycleEvent::IdentityIssued => "provision",
        LifecycleEvent::Activate => "activate",
        LifecycleEvent::Suspend => "suspend",
        LifecycleEvent::Resume => "resume",
        LifecycleEvent::Retire => "retire",
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductRequest {
    pub name: String,
    pub manufacturer: String,
    /// Last day of the declared security-support period (CRA), `YYYY-MM-DD`.
    #[schema(example = "2031-12-31")]
    pub support_end: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProductResponse {
    pub id: String,
    pub name: String,
    pub manufacturer: String,
    #[schema(example = "2031-12-31")]
    pub support_end: String,
    #[schema(example = "2026-11-25T12:00:00Z")]
    pub created_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProductList {
    pub items: Vec<ProductResponse>,
}

impl From<Product> for ProductResponse {
    fn from(p: Product) -> Self {
        Self {
            id: p.id.to_string(),
            name: p.name,
            manufacturer: p.manufacturer,
            // `time::Date` displays as YYYY-MM-DD.
            support_end: p.support_end.to_string(),
            created_at: rfc3339(p.created_at),
        }
    }
}

#[utoipa::path(post, path = "/api/v1/products", request_body = ProductRequest, tag = "inventory",
    responses((status = 201, body = ProductResponse), (status = 422, body = Problem), (status = 409, body = Problem)))]
pub async fn create_product(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(req): ApiJson<ProductRequest>,
) -> Result<(StatusCode, Json<ProductResponse>), ApiError> {
    let actor = caller.actor();
    let result = async {
        let new = NewProduct::parse(&req.name, &req.manufacturer, &req.support_end)?;
        Ok(state
            .store()
            .create_product(&actor, new, state.now())
            .await?)
    }
    .await;
    let subject = format!("product:{}/{}", req.manufacturer, req.name);
    let product = state
        .audit_refusal(&actor, "product.create", subject, result)
        .await?;
    Ok((StatusCode::CREATED, Json(product.into())))
}

#[utoipa::path(get, path = "/api/v1/products", tag = "inventory", responses((status = 200, body = ProductList)))]
pub async fn list_products(State(state): State<AppState>) -> Result<Json<ProductList>, ApiError> {
    let items = state
        .store()
        .list_products()
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    Ok(Json(ProductList { items }))
}

#[utoipa::path(get, path = "/api/v1/products/{id}", tag = "inventory", params(("id" = String, Path)),
    responses((status = 200, body = ProductResponse), (status = 404, body = Problem)))]
pub async fn get_product(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<ProductId>,
) -> Result<Json<ProductResponse>, ApiError> {
    Ok(Json(state.store().get_product(id).await?.into()))
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeclarationRequest {
    /// Firmware versions that are current; a device running any other is out of date.
    pub current_firmware: Vec<String>,
    /// Services a device may expose, as `tcp/PORT` or `udp/PORT`.
    #[serde(default)]
    pub allowed_services: Vec<String>,
    /// SBOM reference (URI or digest) per firmware version.
    #[serde(default)]
    pub sboms: std::collections::BTreeMap<String, String>,
    /// Days a device may go without a security release once it is published (1 to 3650);
    /// `device.update-timely` fails past it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 3650)]
    pub remediation_days: Option<u32>,
}

/// Declare what the product's maker commits to for compliance: current firmware, expected
/// services, SBOMs. Replaces the previous declaration; every version is in the audit log.
#[utoipa::path(put, path = "/api/v1/products/{id}/declaration", tag = "inventory", params(("id" = String, Path)),
    request_body = DeclarationRequest,
    responses((status = 200, body = DeclarationRequest), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn declare_product(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<DeclarationRequest>,
) -> Result<Json<DeclarationRequest>, ApiError> {
    let actor = caller.actor();
    let id: ProductId = id.parse()?;
    let result = async {
        let d = ProductDeclaration::parse(
            &req.current_firmware,
            &req.allowed_services,
            &req.sboms,
            req.remediation_days,
        )?;
        state
            .store()
            .declare_product(&actor, id, &d, state.now())
            .await?;
        Ok(d)
    }
    .await;
    let d = state
        .audit_refusal(&actor, "product.declare", format!("product:{id}"), result)
        .await?;
    Ok(Json(DeclarationRequest {
        current_firmware: d.current_firmware,
        allowed_services: d.allowed_services,
        sboms: d.sboms,
        remediation_days: d.remediation_days,
    }))
}

/// The product's declaration (404 if none was made).
#[utoipa::path(get, path = "/api/v1/products/{id}/declaration", tag = "inventory", params(("id" = String, Path)),
    responses((status = 200, body = DeclarationRequest), (status = 404, body = Problem)))]
pub async fn get_declaration(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<ProductId>,
) -> Result<Json<DeclarationRequest>, ApiError> {
    state.store().get_product(id).await?;
    let d = state
        .store()
        .product_declarations()
        .await?
        .remove(&id)
        .ok_or_else(|| ApiError::not_found(format!("product {id} has declared nothing yet")))?;
    Ok(Json(DeclarationRequest {
        current_firmware: d.current_firmware,
        allowed_services: d.allowed_services,
        sboms: d.sboms,
        remediation_days: d.remediation_days,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeviceRequest {
    pub product_id: String,
    pub serial_number: String,
    pub hardware_id: Option<String>,
    pub owner: Option<String>,
    pub site: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    pub firmware_version: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceResponse {
    pub id: String,
    pub product_id: String,
    pub serial_number: String,
    pub hardware_id: Option<String>,
    pub owner: Option<String>,
    pub site: Option<String>,
    pub tags: Vec<String>,
    pub firmware_version: Option<String>,
    /// registered, provisioned, active, suspended or retired
    pub state: String,
    /// The identity URI certificates for this device carry in their SAN.
    pub identity: String,
    pub created_at: String,
    pub updated_at: String,
}

impl DeviceResponse {
    pub(crate) fn new(d: Device, state: &AppState) -> Self {
        Self {
            identity: state.scheme().uri_for(d.id),
            id: d.id.to_string(),
            product_id: d.product_id.to_string(),
            serial_number: d.serial_number,
            hardware_id: d.hardware_id,
            owner: d.owner,
            site: d.site,
            tags: d.tags.into_iter().map(String::from).collect(),
            firmware_version: d.firmware_version,
            state: d.state.to_string(),
            created_at: rfc3339(d.created_at),
            updated_at: rfc3339(d.updated_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceList {
    pub items: Vec<DeviceResponse>,
    /// Pass as `after` to fetch the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeviceQuery {
    /// Only devices in this lifecycle state.
    pub state: Option<String>,
    /// Only devices of this product.
    pub product: Option<String>,
    /// Only devices with this tag.
    pub tag: Option<String>,
    /// Only devices at this site.
    pub site: Option<String>,
    /// A device id, or the start of a serial number or hardware id (case-sensitive).
    pub q: Option<String>,
    /// The order: `created` (registration, the default) or `serial`; a leading `-` reverses
    /// it.
    pub sort: Option<String>,
    /// Only devices whose results over every framework's device checks (`fail`), or one
    /// framework's (`eu-cra:fail`), roll up to this status: pass, fail, unknown or
    /// not-applicable. A page may then hold fewer devices and still have a next one.
    pub compliance: Option<String>,
    /// Page size, 1 to 500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// Cursor: the `next_cursor` of the previous page.
    pub after: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/devices", request_body = DeviceRequest, tag = "inventory",
    responses((status = 201, body = DeviceResponse), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn create_device(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(req): ApiJson<DeviceRequest>,
) -> Result<(StatusCode, Json<DeviceResponse>), ApiError> {
    let actor = caller.actor();
    let subject = format!("device:{}/{}", req.product_id, req.serial_number);
    let result = register_device(&state, &actor, req).await;
    let device = state
        .audit_refusal(&actor, "device.create", subject, result)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(DeviceResponse::new(device, &state)),
    ))
}

async fn register_device(
    state: &AppState,
    actor: &Actor,
    req: DeviceRequest,
) -> Result<Device, ApiError> {
    let product: ProductId = req.product_id.parse()?;
    let new = NewDevice::parse(
        product,
        DeviceFields {
            serial_number: &req.serial_number,
            hardware_id: req.hardware_id.as_deref(),
            owner: req.owner.as_deref(),
            site: req.site.as_deref(),
            tags: &req.tags,
            firmware_version: req.firmware_version.as_deref(),
        },
    )?;
    Ok(state.store().create_device(actor, new, state.now()).await?)
}

#[utoipa::path(get, path = "/api/v1/devices", tag = "inventory", params(DeviceQuery),
    responses((status = 200, body = DeviceList), (status = 400, body = Problem),
        (status = 404, description = "The `after` device does not exist (with a sort)", body = Problem)))]
pub async fn list_devices(
    State(state): State<AppState>,
    axum::Extension(caller): axum::Extension<super::Caller>,
    ApiQuery(q): ApiQuery<DeviceQuery>,
) -> Result<Json<DeviceList>, ApiError> {
    let listing = super::device_listing::listing(&state, &caller, &q).await?;
    let (devices, next) = super::device_listing::page(&state, &listing).await?;
    let items = devices
        .into_iter()
        .map(|d| DeviceResponse::new(d, &state))
        .collect();
    Ok(Json(DeviceList {
        items,
        next_cursor: next.map(|id| id.to_string()),
    }))
}

/// The store's filter from a listing's query, checked.
pub(crate) fn device_filter(q: &DeviceQuery) -> Result<DeviceFilter, ApiError> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=sigil_store::MAX_PAGE).contains(&limit) {
        return Err(ApiError::invalid(format!(
            "limit must be between 1 and {}",
            sigil_store::MAX_PAGE
        )));
    }
    Ok(DeviceFilter {
        state: q
            .state
            .as_deref()
            .map(str::parse::<LifecycleState>)
            .transpose()
            .map_err(|e| ApiError::invalid(e.to_string()))?,
        product: q
            .product
            .as_deref()
            .map(str::parse::<ProductId>)
            .transpose()?,
        tag: q.tag.as_deref().map(Tag::parse).transpose()?,
        site: q.site.clone(),
        after: q.after.as_deref().map(str::parse::<DeviceId>).transpose()?,
        limit,
        ..DeviceFilter::default()
    })
}

#[utoipa::path(get, path = "/api/v1/devices/{id}", tag = "inventory", params(("id" = String, Path)),
    responses((status = 200, body = DeviceResponse), (status = 404, body = Problem)))]
pub async fn get_device(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<DeviceId>,
) -> Result<Json<DeviceResponse>, ApiError> {
    let device = state.store().get_device(id).await?;
    Ok(Json(DeviceResponse::new(device, &state)))
}

async fn transition(
    state: AppState,
    caller: Caller,
    id: String,
    event: LifecycleEvent,
) -> Result<Json<DeviceResponse>, ApiError> {
    let actor = caller.actor();
    let subject = format!("device:{id}");
    let result = async {
        let id: DeviceId = id.parse()?;
        Ok(state
            .store()
            .transition_device(&actor, id, event, state.now())
            .await?)
    }
    .await;
    let action = format!("device.{}", event_name(event));
    let device = state
        .audit_refusal(&actor, &action, subject, result)
        .await?;
    let id = device.id;
    tracing::info!(device = %id, ?event, state = %device.state, "device lifecycle transition");
    if event == LifecycleEvent::Retire {
        // Retiring revoked the device's certificates (cessationOfOperation): publish that.
        state.publish_crl(&actor).await;
    }
    Ok(Json(DeviceResponse::new(device, &state)))
}

/// Put a provisioned device into service.
#[utoipa::path(post, path = "/api/v1/devices/{id}/activate", tag = "lifecycle", params(("id" = String, Path)),
    responses((status = 200, body = DeviceResponse), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn activate_device(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<DeviceResponse>, ApiError> {
    transition(state, caller, id, LifecycleEvent::Activate).await
}

#[utoipa::path(post, path = "/api/v1/devices/{id}/suspend", tag = "lifecycle", params(("id" = String, Path)),
    responses((status = 200, body = DeviceResponse), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn suspend_device(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<DeviceResponse>, ApiError> {
    transition(state, caller, id, LifecycleEvent::Suspend).await
}

#[utoipa::path(post, path = "/api/v1/devices/{id}/resume", tag = "lifecycle", params(("id" = String, Path)),
    responses((status = 200, body = DeviceResponse), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn resume_device(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<DeviceResponse>, ApiError> {
    transition(state, caller, id, LifecycleEvent::Resume).await
}

/// Permanently decommission a device. Terminal.
#[utoipa::path(post, path = "/api/v1/devices/{id}/retire", tag = "lifecycle", params(("id" = String, Path)),
    responses((status = 200, body = DeviceResponse), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn retire_device(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<DeviceResponse>, ApiError> {
    transition(state, caller, id, LifecycleEvent::Retire).await
}

/// Edit a device's owner, site, tags or hardware id (an RFC 7396 merge patch: a field left
/// out is kept, `null` clears it). Audited as `device.updated` with the values before and
/// after.
#[utoipa::path(patch, path = "/api/v1/devices/{id}", tag = "inventory", params(("id" = String, Path)),
    request_body(content = DevicePatch, content_type = "application/merge-patch+json"),
    responses((status = 200, body = DeviceResponse), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn update_device(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<DeviceId>,
    ApiJson(patch): ApiJson<serde_json::Value>,
) -> Result<Json<DeviceResponse>, ApiError> {
    let actor = caller.actor();
    let result = async {
        let change = sigil_domain::DeviceChange::from_merge_patch(&patch)?;
        Ok(state
            .store()
            .update_device(&actor, id, &change, state.now())
            .await?)
    }
    .await;
    let device = state
        .audit_refusal(&actor, "device.update", format!("device:{id}"), result)
        .await?;
    Ok(Json(DeviceResponse::new(device, &state)))
}

/// The fields a device edit may carry; each may be `null` to clear it.
#[derive(ToSchema)]
#[allow(dead_code)] // Documents the body; the handler reads it as a merge patch.
pub struct DevicePatch {
    #[schema(nullable, max_length = 256)]
    hardware_id: Option<String>,
    #[schema(nullable, max_length = 200)]
    owner: Option<String>,
    #[schema(nullable, max_length = 200)]
    site: Option<String>,
    #[schema(nullable, max_items = 32)]
    tags: Option<Vec<String>>,
}
