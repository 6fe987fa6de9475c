//! The JSON REST API under `/api/v1`.

mod audit;
mod bootstrap;
mod broker;
mod certificates;
mod error;
mod est;
mod evidence;
mod inventory;
mod posture;
mod revocation;

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

use sigil_audit::{Actor, AuditEvent, Outcome};
use sigil_ca::{IdentityScheme, IssuingCa, PublicUrls};
use sigil_domain::Fingerprint;
use sigil_store::Store;

use crate::auditlog::AuditLog;

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
    /// Profile of certificates issued by EST `simpleenroll` (renewals keep their profile).
    pub enrollment_profile: &'static sigil_ca::Profile,
    pub clock: Clock,
    pub audit: Arc<AuditLog>,
    pub crl: Arc<crate::crl::CrlPublisher>,
    /// Access policy (Cedar).
    pub policy: Arc<sigil_policy::PolicyEngine>,
    /// The API listener's client-certificate verifier (to update its manufacturer CAs).
    pub client_verifier: Arc<crate::mtls::SigilClientVerifier>,
}

impl AppState {
    fn now(&self) -> OffsetDateTime {
        (self.clock)()
    }

    /// Pass `result` through; if it is a refusal, record it in the audit log first. A refusal
    /// changed nothing, so its entry is written in a transaction of its own. If that write
    /// fails the refusal still stands (failing closed), and the failure is logged.
    async fn audit_refusal<T>(
        &self,
        actor: &Actor,
        action: &str,
        subject: String,
        result: Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        if let Err(e) = &result {
            let outcome = if e.status == StatusCode::CONFLICT {
                Outcome::Denied
            } else {
                Outcome::Failure
            };
            let event = AuditEvent::new(
                self.now(),
                actor.clone(),
                action,
                subject,
                outcome,
                serde_json::json!({"code": e.code, "reason": e.detail}),
            );
            if let Err(write) = self.store.append_audit(vec![event]).await {
                tracing::error!(error = %write, action, "could not record a refusal in the audit log");
            }
        }
        result
    }
}

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub token_id: String,
    pub role: String,
}

impl Caller {
    pub fn actor(&self) -> Actor {
        Actor::operator(&self.token_id)
    }
}

pub fn router(state: AppState) -> Router {
    let protected = Router::new()
        .route(
            "/api/v1/products",
            post(inventory::create_product).get(inventory::list_products),
        )
        .route("/api/v1/products/{id}", get(inventory::get_product))
        .route(
            "/api/v1/products/{id}/manufacturer-cas",
            post(bootstrap::add).get(bootstrap::list),
        )
        .route(
            "/api/v1/devices",
            post(inventory::create_device).get(inventory::list_devices),
        )
        .route("/api/v1/devices/{id}", get(inventory::get_device))
        .route("/api/v1/devices/{id}/posture", get(posture::get))
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
            "/api/v1/devices/{id}/revoke",
            post(revocation::revoke_device),
        )
        .route(
            "/api/v1/devices/{id}/enrollment-tokens",
            post(est::create_enrollment_token),
        )
        .route(
            "/api/v1/devices/{id}/certificates",
            post(certificates::issue),
        )
        .route("/api/v1/broker/emqx/authn", post(broker::authn))
        .route("/api/v1/broker/emqx/authz", post(broker::authz))
        .route("/api/v1/policy/explain", post(broker::explain))
        .route("/api/v1/certificates", get(certificates::list))
        .route("/api/v1/certificates/{serial}", get(certificates::get))
        .route("/api/v1/profiles", get(certificates::profiles))
        .route("/api/v1/audit/entries", get(audit::entries))
        .route(
            "/api/v1/audit/checkpoint",
            get(audit::latest_checkpoint).post(audit::sign_checkpoint),
        )
        .route("/api/v1/audit/proof/inclusion", get(audit::inclusion))
        .route("/api/v1/audit/proof/consistency", get(audit::consistency))
        .route("/api/v1/audit/export", get(audit::export))
        .route("/api/v1/evidence", get(evidence::export))
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate));

    Router::new()
        .merge(protected)
        .merge(est::router())
        // Devices authenticate with their certificate (mTLS), not a bearer token.
        .route("/api/v1/device/posture", post(posture::report))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/healthz", get(health))
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
    match caller(
        &state,
        request.headers(),
        request.method(),
        request.uri().path(),
    )
    .await
    {
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err((token_id, e)) => {
            let actor = Actor::operator(token_id.as_deref().unwrap_or("unknown"));
            let subject = format!("api:{} {}", request.method(), request.uri().path());
            let refused: Result<(), ApiError> = Err(e);
            match state
                .audit_refusal(&actor, "auth.failed", subject, refused)
                .await
            {
                Err(e) => e.into_response(),
                Ok(()) => StatusCode::UNAUTHORIZED.into_response(),
            }
        }
    }
}

async fn health(State(state): State<AppState>) -> Response {
    crate::pki::health(State(state.audit.clone())).await
}

/// The caller, or why not (with the token id when the token exists but is unusable).
async fn caller(
    state: &AppState,
    headers: &HeaderMap,
    method: &axum::http::Method,
    path: &str,
) -> Result<Caller, (Option<String>, ApiError)> {
    let anonymous = |e: ApiError| (None, e);
    let value = headers.get(header::AUTHORIZATION).ok_or_else(|| {
        anonymous(ApiError::unauthenticated(
            "missing Authorization header (expected `Bearer <token>`)",
        ))
    })?;
    let value = value.to_str().map_err(|_| {
        anonymous(ApiError::unauthenticated(
            "Authorization header is not valid ASCII",
        ))
    })?;
    let token = value
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            anonymous(ApiError::unauthenticated(
                "Authorization header must use the Bearer scheme",
            ))
        })?;
    let hash = token_hash(token);
    let record = state
        .store
        .find_api_token(&hash)
        .await
        .map_err(|e| anonymous(e.into()))?
        .ok_or_else(|| anonymous(ApiError::unauthenticated("invalid API token")))?;
    if aws_lc_rs::constant_time::verify_slices_are_equal(
        record.token_hash.as_str().as_bytes(),
        hash.as_str().as_bytes(),
    )
    .is_err()
    {
        return Err(anonymous(ApiError::unauthenticated("invalid API token")));
    }
    if record.revoked_at.is_some() {
        return Err((
            Some(record.id),
            ApiError::unauthenticated("API token has been revoked"),
        ));
    }
    if record.expires_at.is_some_and(|t| t <= state.now()) {
        return Err((
            Some(record.id),
            ApiError::unauthenticated("API token has expired"),
        ));
    }
    let now = state.now();
    if record
        .last_used_at
        .is_none_or(|t| now - t >= TOKEN_USE_INTERVAL)
    {
        // Best effort: a failure to record use must not lock every operator out, and it is
        // reported. The changes the caller makes are still logged under its token id.
        let details = serde_json::json!({"first_request": format!("{} {}", method, path)});
        if let Err(e) = state
            .store
            .record_token_use(&record.id, now, TOKEN_USE_INTERVAL, details)
            .await
        {
            tracing::error!(error = %e, token = %record.id, "could not record token use in the audit log");
        }
    }
    Ok(Caller {
        token_id: record.id,
        role: record.role,
    })
}

/// How often a token's use is recorded: on first use, then at most once per interval.
const TOKEN_USE_INTERVAL: time::Duration = time::Duration::hours(1);

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
        revocation::revoke_device, est::create_enrollment_token, bootstrap::add, bootstrap::list, posture::get, broker::authn, broker::authz, broker::explain,
        audit::entries, audit::latest_checkpoint, audit::sign_checkpoint, audit::inclusion,
        audit::consistency, audit::export, evidence::export,
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
