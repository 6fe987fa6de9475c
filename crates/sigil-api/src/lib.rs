//! The JSON REST API under `/api/v1`: the operators' front-end (inventory, certificates,
//! revocation, access policy, operators and tokens, compliance, the audit log and evidence),
//! the EMQX decision hooks and the devices' posture reports. It sees the authority through
//! [`AppState`]: the authority's services by method, never its fields.

mod audit;
pub mod auth;
mod bootstrap;
mod broker;
mod cases;
mod certificates;
mod compliance;
mod device_listing;
mod device_updates;
mod disclosure;
mod enrollment;
mod evidence;
mod foreign;
mod grants;
mod import;
mod inventory;
mod login;
mod monitoring;
mod openapi;
mod operators;
mod overview;
mod policy;
mod posture;
mod releases;
mod revocation;
mod rollouts;
mod services;
mod vulns;
mod whoami;

use std::ops::Deref;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::middleware;
use axum::response::Response;
use axum::routing::{get, post, put};
use axum::{Json, Router};

use sigil_audit::Actor;
use sigil_authority::Authority;

pub use auth::Caller;
pub use openapi::ApiDoc;
pub use sigil_http::{ApiError, ApiJson, ApiPath, ApiQuery, Problem};

/// Largest request body the API reads. A CSR is a few KiB; nothing legitimate comes near this.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// What a request handler has: the authority's services, and the API's own login limiter.
#[derive(Clone)]
pub struct AppState {
    authority: Arc<Authority>,
    login_limiter: Arc<login::LoginLimiter>,
}

impl Deref for AppState {
    type Target = Authority;
    fn deref(&self) -> &Authority {
        &self.authority
    }
}

impl AppState {
    pub fn new(authority: Arc<Authority>) -> Self {
        Self {
            authority,
            login_limiter: Arc::default(),
        }
    }

    /// A failed authentication from `ip` on the API: recorded in the audit log with the address
    /// (action `action`, details of `error`), or, past the address's limit, only counted for the
    /// window's summary and answered with 429. Returns the error to answer with.
    pub(crate) async fn authentication_failed(
        &self,
        ip: Option<std::net::IpAddr>,
        actor: &Actor,
        action: &str,
        subject: String,
        error: ApiError,
    ) -> ApiError {
        match self
            .authority
            .authentication_failed(ip, "api", actor, action, subject, error.record())
            .await
        {
            Some(retry_after) => ApiError::too_many_failures(ip, retry_after),
            None => error,
        }
    }

    /// Pass `result` through; if it is a refusal, record it in the audit log first.
    async fn audit_refusal<T>(
        &self,
        actor: &Actor,
        action: &str,
        subject: String,
        result: Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        if let Err(e) = &result {
            self.authority
                .record_refusal(actor, action, subject, e.record())
                .await;
        }
        result
    }
}

/// The API's routes, with `others` (the routes of front-ends sharing its listener, such as
/// EST) mounted beside them under the same body limits and refusal delivery.
pub fn router(state: AppState, others: Router<AppState>) -> Router {
    // Every route behind the guard: a bearer token or a session, and `auth::rule` decides.
    let protected = inventory_routes()
        .merge(update_routes())
        .merge(access_routes())
        .merge(evidence_routes())
        .merge(vulnerability_routes())
        .merge(monitoring_routes())
        .route_layer(middleware::from_fn_with_state(state.clone(), auth::guard));

    Router::new()
        .merge(protected)
        .merge(others)
        // Devices authenticate with their certificate (mTLS), not a bearer token.
        .route("/api/v1/device/posture", post(posture::report))
        .route("/api/v1/device/metrics", post(monitoring::report))
        .route(
            "/api/v1/device/update-channel",
            get(releases::device_channel),
        )
        .route(
            "/api/v1/device/assignment",
            get(rollouts::device_assignment),
        )
        .route(
            "/api/v1/device/update-reports",
            post(rollouts::device_report),
        )
        // People log in with a password and TOTP code for a session cookie.
        .route("/api/v1/auth/login", post(login::login))
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
        .layer(middleware::from_fn(sigil_http::body::deliver_refusals))
        .layer(middleware::map_response(inert))
        .with_state(state)
}

/// Nothing the API sends runs in a browser: a document someone uploaded (an SBOM, an
/// attestation) served back from this origin, which the console shares, must not become a
/// page. Pages that set their own policy (the console's) keep it.
async fn inert(mut response: axum::response::Response) -> axum::response::Response {
    use axum::http::{HeaderValue, header};
    let headers = response.headers_mut();
    headers
        .entry(header::X_CONTENT_TYPE_OPTIONS)
        .or_insert(HeaderValue::from_static("nosniff"));
    headers
        .entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(HeaderValue::from_static(
            "default-src 'none'; frame-ancestors 'none'; sandbox",
        ));
    response
}

/// Vulnerabilities: feeds, SBOMs, findings.
fn monitoring_routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/monitoring/status", get(monitoring::status))
        .route(
            "/api/v1/monitoring/profiles",
            get(monitoring::profiles).put(monitoring::apply_profiles),
        )
        .route("/api/v1/alarms", get(monitoring::list))
        .route("/api/v1/alarms/{id}", get(monitoring::get))
        .route("/api/v1/alarms/{id}/decision", post(monitoring::decide))
        .route(
            "/api/v1/devices/{id}/quarantine",
            post(monitoring::quarantine),
        )
        .route("/api/v1/devices/{id}/release", post(monitoring::release))
        .route("/api/v1/devices/{id}/monitoring", get(monitoring::device))
}

fn vulnerability_routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/vulndb/imports", post(vulns::import))
        .route(
            "/api/v1/products/{id}/sboms",
            post(vulns::upload_sbom).get(vulns::list_sboms),
        )
        .route("/api/v1/sboms/{id}", get(vulns::export_sbom))
        .route("/api/v1/products/{id}/findings", get(vulns::findings))
        .route(
            "/api/v1/products/{id}/vex",
            post(vulns::import_vex).get(vulns::export_vex),
        )
        .route("/api/v1/devices/{id}/findings", get(cases::device_findings))
        .route(
            "/api/v1/devices/{id}/updates",
            get(device_updates::device_updates),
        )
        .route(
            "/api/v1/vuln-policy",
            get(cases::get_policy).put(cases::set_policy),
        )
        .route("/api/v1/sites", get(cases::list_sites))
        .route("/api/v1/sites/{name}", put(cases::put_site))
        .route(
            "/api/v1/cases",
            get(cases::list_cases).post(cases::open_case),
        )
        .route("/api/v1/cases/{id}", get(cases::get_case))
        .route("/api/v1/cases/{id}/drafts/{stage}", get(cases::draft))
        .route("/api/v1/cases/{id}/reports", post(cases::record_report))
        .route(
            "/api/v1/disclosure-policy",
            get(disclosure::organisation_policy).put(disclosure::set_organisation_policy),
        )
        .route(
            "/api/v1/products/{id}/disclosure-policy",
            get(disclosure::product_policy).put(disclosure::set_product_policy),
        )
        .route(
            "/api/v1/disclosure-reports",
            get(disclosure::list_reports).post(disclosure::enter_report),
        )
        .route(
            "/api/v1/disclosure-reports/{id}",
            get(disclosure::get_report),
        )
        .route(
            "/api/v1/disclosure-reports/{id}/acknowledge",
            post(disclosure::acknowledge),
        )
        .route(
            "/api/v1/disclosure-reports/{id}/accept",
            post(disclosure::accept),
        )
        .route(
            "/api/v1/disclosure-reports/{id}/reject",
            post(disclosure::reject),
        )
}

/// Software updates: artefacts, releases, update channels.
fn update_routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/artefacts", post(releases::upload_artefact))
        .route(
            "/api/v1/products/{id}/rollouts",
            post(rollouts::create_rollout).get(rollouts::list_rollouts),
        )
        .route("/api/v1/rollouts/{id}", get(rollouts::get_rollout))
        .route("/api/v1/rollouts/{id}/actions", post(rollouts::act))
        .route(
            "/api/v1/products/{id}/releases",
            post(releases::create_release).get(releases::list_releases),
        )
        .route(
            "/api/v1/products/{id}/update-channel",
            post(releases::create_channel).get(releases::get_channel),
        )
        .route(
            "/api/v1/products/{id}/update-channel/signatures",
            post(releases::add_signatures),
        )
        .route(
            "/api/v1/products/{id}/update-channel/rotations",
            post(releases::rotate_keys),
        )
}

/// Access: broker decisions, the policy, operators, tokens, sessions.
fn access_routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/broker/emqx/authn", post(broker::authn))
        .route("/api/v1/broker/emqx/authz", post(broker::authz))
        .route("/api/v1/policy/explain", post(broker::explain))
        .route("/api/v1/policy", get(policy::current).post(policy::apply))
        .route("/api/v1/policy/versions", get(policy::versions))
        .route("/api/v1/policy/versions/{version}", get(policy::version))
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
        .route("/api/v1/auth/me", get(whoami::me))
        .route("/api/v1/auth/logout", post(auth::logout))
}

/// Evidence: compliance, the audit log, evidence bundles.
fn evidence_routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/compliance", get(compliance::frameworks))
        .route(
            "/api/v1/compliance/attestations",
            post(compliance::attest).get(compliance::attestations),
        )
        .route("/api/v1/compliance/{framework}", get(compliance::fleet))
        .route(
            "/api/v1/compliance/{framework}/report",
            get(compliance::report),
        )
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
        .route("/api/v1/audit/entries", get(audit::entries))
        .route(
            "/api/v1/audit/checkpoint",
            get(audit::latest_checkpoint).post(audit::sign_checkpoint),
        )
        .route("/api/v1/audit/proof/inclusion", get(audit::inclusion))
        .route("/api/v1/audit/proof/consistency", get(audit::consistency))
        .route("/api/v1/audit/export", get(audit::export))
        .route("/api/v1/evidence", get(evidence::export))
}

/// Inventory and identity: products, devices and their lifecycle, certificates.
fn inventory_routes() -> Router<AppState> {
    Router::new()
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
        .route(
            "/api/v1/devices/{id}",
            get(inventory::get_device).patch(inventory::update_device),
        )
        .route("/api/v1/devices/import", post(import::import_devices))
        .route("/api/v1/devices/export", get(import::export_devices))
        .route(
            "/api/v1/inventory/summary",
            get(overview::inventory_summary),
        )
        .route("/api/v1/audit/status", get(overview::audit_status))
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
            post(enrollment::create_enrollment_token),
        )
        .route(
            "/api/v1/devices/{id}/certificates",
            post(certificates::issue),
        )
        .route(
            "/api/v1/devices/{id}/foreign-certificates",
            get(foreign::list).post(foreign::import),
        )
        .route(
            "/api/v1/devices/{id}/foreign-certificates/{sha256}",
            axum::routing::delete(foreign::remove),
        )
        .route("/api/v1/certificates", get(certificates::list))
        .route("/api/v1/certificates/{serial}", get(certificates::get))
        .route("/api/v1/profiles", get(certificates::profiles))
        .route("/api/v1/services/certificates", post(services::issue))
}

async fn health(State(state): State<AppState>) -> Response {
    sigil_http::health(state.audit().integrity_failure())
}

async fn openapi() -> Json<serde_json::Value> {
    Json(openapi::document())
}
