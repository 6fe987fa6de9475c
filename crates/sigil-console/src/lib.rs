//! Sigil's web console, served at `/ui` on the API listener: server-rendered pages for security
//! teams and auditors. Every read page works without JavaScript; actions go through htmx
//! (vendored), which sends the API's CSRF header. The console holds no authority of its own:
//! it calls the REST API in process as the person logged in (see [`backend`]), so the same
//! session, CSRF rule, Cedar rule table and audit entries apply to both.

mod assets;
mod backend;
mod chart;
mod error;
mod pages;
pub mod security;
mod view;
mod viewer;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::response::{IntoResponse, Redirect};
use axum::routing::get;

pub use backend::CSRF_HEADER;

use backend::Backend;
use error::ConsoleError;

/// Largest form a console page posts (a login, an action with its reason).
const MAX_FORM_BYTES: usize = 16 * 1024;
/// A policy text: the API takes 256 KiB of Cedar, URL-encoded up to three times that.
const MAX_POLICY_FORM_BYTES: usize = 800 * 1024;

/// The console's routes. `api` is the REST API's application, which the console calls in
/// process for everything it shows and does.
pub fn router(api: Router) -> Router {
    Router::new()
        .route("/ui", get(pages::overview::page))
        .route("/ui/", get(|| async { Redirect::permanent("/ui") }))
        .route(
            "/ui/login",
            get(pages::login::form).post(pages::login::submit),
        )
        .route("/ui/logout", axum::routing::post(pages::login::logout))
        .route("/ui/devices", get(pages::devices::list))
        .route(
            "/ui/devices/import",
            get(pages::import::form)
                .post(pages::import::submit)
                .layer(DefaultBodyLimit::max(pages::import::MAX_UPLOAD_BYTES)),
        )
        .route("/ui/devices/export.csv", get(pages::import::export))
        .route("/ui/devices/{id}", get(pages::device::page))
        .route(
            "/ui/devices/{id}/edit",
            get(pages::device_edit::form).post(pages::device_edit::submit),
        )
        .route(
            "/ui/devices/{id}/foreign-certificates",
            axum::routing::post(pages::foreign::submit)
                .layer(DefaultBodyLimit::max(pages::foreign::MAX_UPLOAD_BYTES)),
        )
        .route(
            "/ui/devices/{id}/{action}",
            get(pages::device::confirm).post(pages::device::act),
        )
        .route("/ui/products", get(pages::products::list))
        .route("/ui/products/{id}", get(pages::products::page))
        .route(
            "/ui/products/{id}/rollouts",
            axum::routing::post(pages::products::create),
        )
        .route(
            "/ui/rollouts/{id}/{action}",
            axum::routing::post(pages::products::act),
        )
        .route("/ui/alarms", get(pages::alarms::list))
        .route("/ui/alarms/{id}", get(pages::alarms::page))
        .route(
            "/ui/alarms/{id}/decision",
            axum::routing::post(pages::alarms::decide),
        )
        .route("/ui/compliance", get(pages::compliance::frameworks))
        .route("/ui/compliance/{id}", get(pages::compliance::framework))
        .route(
            "/ui/compliance/{id}/attestations",
            axum::routing::post(pages::compliance::attest).layer(DefaultBodyLimit::max(
                pages::compliance::MAX_ATTESTATION_FORM,
            )),
        )
        .route(
            "/ui/compliance/{id}/report/{format}",
            get(pages::compliance::download),
        )
        .route("/ui/access", get(pages::access::page))
        .route(
            "/ui/access/apply",
            axum::routing::post(pages::access::apply)
                .layer(DefaultBodyLimit::max(MAX_POLICY_FORM_BYTES)),
        )
        .route("/ui/access/versions/{version}", get(pages::access::version))
        .route(
            "/ui/access/versions/{version}/rollback",
            axum::routing::post(pages::access::rollback),
        )
        .route("/ui/audit", get(pages::audit::list))
        .route("/ui/audit/evidence.tar", get(pages::audit::evidence))
        .route(
            "/ui/audit/checkpoint",
            axum::routing::post(pages::audit_checkpoint::sign),
        )
        .route("/ui/audit/{seq}", get(pages::audit::entry))
        .route("/ui/assets/{name}", get(assets::serve))
        .route(
            "/ui/{*rest}",
            get(|| async { ConsoleError::NotFound("no such console page".into()).into_response() }),
        )
        .layer(DefaultBodyLimit::max(MAX_FORM_BYTES))
        .layer(middleware::from_fn(security::headers))
        .with_state(Backend::new(api))
}
