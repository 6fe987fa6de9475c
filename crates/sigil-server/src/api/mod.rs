//! The JSON REST API under `/api/v1`.

mod certificates;
mod error;
mod inventory;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use time::OffsetDateTime;
use utoipa::OpenApi;

use sigil_ca::{IdentityScheme, IssuingCa, PublicUrls};
use sigil_domain::Fingerprint;
use sigil_store::Store;

pub use certificates::store_record;
pub use error::{ApiError, Problem};

/// Largest request body the API reads. A CSR is a few KiB; nothing legitimate comes near this.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A clock, passed in so that tests and domain code never read the system time directly.
pub type Clock = Arc<dyn Fn() -> OffsetDateTime + Send + Sync>;

pub fn system_clock() -> Clock {
    Arc::new(OffsetDateTime::now_utc)
}

/// Everything a request handler needs.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub ca: Arc<IssuingCa>,
    pub urls: PublicUrls,
    pub scheme: IdentityScheme,
    pub clock: Clock,
}

impl AppState {
    fn now(&self) -> OffsetDateTime {
        (self.clock)()
    }
}

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub token_id: String,
    pub role: String,
}

pub fn router(state: AppState) -> Router {
    let protected = Router::new()
        .route(
            "/api/v1/products",
            post(inventory::create_product).get(inventory::list_products),
        )
        .route("/api/v1/products/{id}", get(inventory::get_product))
        .route(
            "/api/v1/devices",
            post(inventory::create_device).get(inventory::list_devices),
        )
        .route("/api/v1/devices/{id}", get(inventory::get_device))
        .route(
            "/api/v1/devices/{id}/activate",
            post(inventory::activate_device),
        )
        .route(
            "/api/v1/devices/{id}/suspend",
            post(inventory::suspend_device),
        )
        .route(
            "/api/v1/devices/{id}/resume",
            post(inventory::resume_device),
        )
        .route(
            "/api/v1/devices/{id}/retire",
            post(inventory::retire_device),
        )
        .route(
            "/api/v1/devices/{id}/certificates",
            post(certificates::issue),
        )
        .route("/api/v1/certificates", get(certificates::list))
        .route("/api/v1/certificates/{serial}", get(certificates::get))
        .route("/api/v1/profiles", get(certificates::profiles))
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate));

    Router::new()
        .merge(protected)
        .route("/api/v1/openapi.json", get(openapi))
        .route("/healthz", get(|| async { "ok" }))
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
                "this endpoint does not support that method",
            )
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Bearer-token authentication. Tokens are random 256-bit secrets, so the database holds only
/// their SHA-256; the lookup is by that hash and the final comparison is constant-time.
async fn authenticate(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    match caller(&state, request.headers()).await {
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(e) => e.into_response(),
    }
}

async fn caller(state: &AppState, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let value = headers.get(header::AUTHORIZATION).ok_or_else(|| {
        ApiError::unauthenticated("missing Authorization header (expected `Bearer <token>`)")
    })?;
    let value = value
        .to_str()
        .map_err(|_| ApiError::unauthenticated("Authorization header is not valid ASCII"))?;
    let token = value
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ApiError::unauthenticated("Authorization header must use the Bearer scheme")
        })?;
    let hash = token_hash(token);
    let record = state
        .store
        .find_api_token(&hash)
        .await?
        .ok_or_else(|| ApiError::unauthenticated("invalid API token"))?;
    if aws_lc_rs::constant_time::verify_slices_are_equal(
        record.token_hash.as_str().as_bytes(),
        hash.as_str().as_bytes(),
    )
    .is_err()
    {
        return Err(ApiError::unauthenticated("invalid API token"));
    }
    if record.revoked_at.is_some() {
        return Err(ApiError::unauthenticated("API token has been revoked"));
    }
    if record.expires_at.is_some_and(|t| t <= state.now()) {
        return Err(ApiError::unauthenticated("API token has expired"));
    }
    Ok(Caller {
        token_id: record.id,
        role: record.role,
    })
}

/// SHA-256 of a token secret, as stored.
pub fn token_hash(token: &str) -> Fingerprint {
    Fingerprint::from_digest(&sigil_ca::sha256(token.as_bytes()))
}

/// A fresh API token secret: `sigil_` followed by 256 random bits, base64url.
pub fn generate_token() -> Result<String, crate::ServerError> {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| crate::ServerError::Random)?;
    Ok(format!(
        "sigil_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

/// `Json` whose rejections are problem+json.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    Json<T>: FromRequest<S, Rejection = axum::extract::rejection::JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(Json::<T>::from_request(req, state).await?.0))
    }
}

/// `Query` whose rejections are problem+json.
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    axum::extract::Query<T>:
        FromRequestParts<S, Rejection = axum::extract::rejection::QueryRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(
            axum::extract::Query::<T>::from_request_parts(parts, state)
                .await?
                .0,
        ))
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Sigil API", description = "IoT device identity and compliance platform"),
    paths(
        inventory::create_product, inventory::list_products, inventory::get_product,
        inventory::create_device, inventory::list_devices, inventory::get_device,
        inventory::activate_device, inventory::suspend_device, inventory::resume_device, inventory::retire_device,
        certificates::issue, certificates::list, certificates::get, certificates::profiles,
    ),
    components(schemas(Problem)),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
