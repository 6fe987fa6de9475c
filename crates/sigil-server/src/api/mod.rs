//! The JSON REST API under `/api/v1`.

mod audit;
pub mod auth;
mod bootstrap;
mod broker;
mod certificates;
mod compliance;
mod error;
mod est;
mod evidence;
mod grants;
mod inventory;
mod openapi;
mod operators;
mod policy;
mod posture;
mod revocation;
mod services;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Request, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::middleware;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use time::OffsetDateTime;

use sigil_audit::{Actor, AuditEvent, Outcome};
use sigil_ca::{IdentityScheme, IssuingCa, PublicUrls};
use sigil_store::Store;

use crate::auditlog::AuditLog;

pub use auth::{Caller, generate_token, token_hash};
pub use certificates::store_record;
pub use error::{ApiError, Problem};
pub(crate) use inventory::rfc3339;
pub use openapi::ApiDoc;

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
    /// Access policy (Cedar) in force.
    pub policy: Arc<crate::policy::ActivePolicy>,
    /// Seals operator TOTP seeds in the database.
    pub secrets: Arc<crate::secrets::SecretBox>,
    pub login_limiter: Arc<auth::LoginLimiter>,
    /// Failed authentications per source address: recorded, or past the limit summarised.
    pub failures: Arc<crate::failures::FailureLedger>,
    /// The compliance control catalogue.
    pub catalogue: Arc<sigil_compliance::Catalogue>,
    /// The continuous compliance engine's results.
    pub compliance: Arc<crate::compliance::live::LiveCompliance>,
    /// Where compliance drops are announced, if anywhere.
    pub compliance_webhook: Option<Arc<crate::compliance::Webhook>>,
    /// The API listener's client-certificate verifier (to update its manufacturer CAs).
    pub client_verifier: Arc<crate::mtls::SigilClientVerifier>,
}

impl AppState {
    pub(crate) fn now(&self) -> OffsetDateTime {
        (self.clock)()
    }

    /// A snapshot of the access policy in force.
    pub fn policy(&self) -> Arc<sigil_policy::PolicyEngine> {
        self.policy.engine()
    }

    /// A failed authentication from `ip`: recorded in the audit log with the address (action
    /// `action`, details of `error`), or, past the address's limit, only counted for the
    /// window's summary and answered with 429. Returns the error to answer with.
    pub(crate) async fn authentication_failed(
        &self,
        ip: Option<std::net::IpAddr>,
        channel: &str,
        actor: &Actor,
        action: &str,
        subject: String,
        error: ApiError,
    ) -> ApiError {
        let address = ip.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
        if let Some(ip) = ip
            && let crate::failures::Verdict::Limited { retry_after } =
                self.failures.note(ip, channel, self.now())
        {
            return too_many_failures(&address, retry_after);
        }
        let outcome = if matches!(error.status, StatusCode::CONFLICT | StatusCode::FORBIDDEN) {
            Outcome::Denied
        } else {
            Outcome::Failure
        };
        // The reason may echo what the caller sent: keep entries small.
        let reason: String = error.detail.chars().take(512).collect();
        let event = AuditEvent::new(
            self.now(),
            actor.clone(),
            action,
            subject,
            outcome,
            serde_json::json!({"code": error.code, "reason": reason, "source_ip": address}),
        );
        if let Err(write) = self.store.append_audit(vec![event]).await {
            tracing::error!(error = %write, action, "could not record a failed authentication");
        }
        error
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
            let outcome = if matches!(e.status, StatusCode::CONFLICT | StatusCode::FORBIDDEN) {
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

fn too_many_failures(address: &str, retry_after: u64) -> ApiError {
    ApiError::rate_limited(
        format!(
            "too many failed authentications from {address}; retry in {retry_after} s (they are counted in the audit log)"
        ),
        retry_after,
    )
}

pub fn router(state: AppState) -> Router {
    let protected = Router::new()
        .route(
            "/api/v1/products",
            post(inventory::create_product).get(inventory::list_products),
        )
        .route("/api/v1/products/{id}", get(inventory::get_product))
        .route(
            "/api/v1/products/{id}/declaration",
            axum::routing::put(inventory::declare_product).get(inventory::get_declaration),
        )
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
        .route("/api/v1/policy", get(policy::current).post(policy::apply))
        .route("/api/v1/policy/versions", get(policy::versions))
        .route("/api/v1/policy/rollback", post(policy::rollback))
        .route(
            "/api/v1/operators",
            post(operators::create_operator).get(operators::list_operators),
        )
        .route(
            "/api/v1/tokens",
            post(operators::create_token).get(operators::list_tokens),
        )
        .route("/api/v1/tokens/{id}/revoke", post(operators::revoke_token))
        .route("/api/v1/compliance", get(compliance::frameworks))
        .route(
            "/api/v1/compliance/attestations",
            post(compliance::attest).get(compliance::attestations),
        )
        .route("/api/v1/compliance/{framework}", get(compliance::fleet))
        .route(
            "/api/v1/compliance/{framework}/devices/{id}",
            get(compliance::device),
        )
        .route(
            "/api/v1/compliance/{framework}/evaluate",
            post(compliance::evaluate_now),
        )
        .route(
            "/api/v1/compliance/{framework}/history",
            get(compliance::history),
        )
        .route("/api/v1/auth/me", get(auth::me))
        .route("/api/v1/auth/logout", post(auth::logout))
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
        .route("/api/v1/services/certificates", post(services::issue))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::guard));

    Router::new()
        .merge(protected)
        .merge(est::router())
        // Devices authenticate with their certificate (mTLS), not a bearer token.
        .route("/api/v1/device/posture", post(posture::report))
        // People log in with a password and TOTP code for a session cookie.
        .route("/api/v1/auth/login", post(auth::login))
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
        .layer(middleware::from_fn(crate::body::deliver_refusals))
        .with_state(state)
}

async fn health(State(state): State<AppState>) -> Response {
    crate::pki::health(State(state.audit.clone())).await
}

/// `Json` whose rejections are problem+json.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let Json(mut value) = Json::<serde_json::Value>::from_request(req, state).await?;
        integral_numbers(&mut value);
        serde_json::from_value(value).map(Self).map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-body",
                "Request body does not match the schema",
                format!("the JSON body does not match the request's schema: {e}"),
            )
        })
    }
}

/// JSON does not tell `60` from `60.0`: both are the number sixty, and JSON Schema's `integer`
/// accepts both. serde does, so turn integral floats into integers before it sees them.
fn integral_numbers(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Number(n) if n.is_f64() => {
            if let Some(f) = n.as_f64()
                && f.fract() == 0.0
                && f.abs() < 9.0e15
            {
                // Exact: |f| < 2^53.
                #[allow(clippy::cast_possible_truncation)]
                let i = f as i64;
                *value = serde_json::Value::from(i);
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(integral_numbers),
        serde_json::Value::Object(map) => map.values_mut().for_each(integral_numbers),
        _ => {}
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

async fn openapi() -> Json<serde_json::Value> {
    Json(openapi::document())
}
