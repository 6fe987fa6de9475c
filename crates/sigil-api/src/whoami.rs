//! Who the caller is, and which operations the policy in force lets them perform: what a
//! console needs to show a person exactly the controls their role has (the API still decides
//! every request; hiding a control is a courtesy, never the enforcement).

use std::sync::LazyLock;

use axum::Json;
use axum::extract::State;
use axum::http::Method;
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use super::auth::{Caller, Credential, Rule, allows, rule};
use super::{AppState, Problem};

#[derive(Serialize, ToSchema)]
pub struct CallerView {
    pub operator_id: String,
    pub username: String,
    pub role: String,
    /// Whether this session was opened with a second factor (trust changes need it).
    pub mfa: bool,
    /// The documented operations this caller may perform now, as `METHOD /path template`
    /// (for example `POST /api/v1/devices/{id}/revoke`), decided by the policy in force
    /// through the same rule table as every request.
    pub allowed: Vec<String>,
}

/// Who the caller is, as Sigil sees it.
#[utoipa::path(get, path = "/api/v1/auth/me", tag = "auth",
    responses((status = 200, body = CallerView), (status = 401, body = Problem)))]
pub async fn me(
    State(state): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
) -> Json<CallerView> {
    let (username, mfa) = match &caller.credential {
        Credential::Session { username, mfa, .. } => (username.clone(), *mfa),
        Credential::Token { .. } => (format!("token:{}", caller.id), false),
    };
    let allowed = OPERATIONS
        .iter()
        .filter(|(method, route)| match rule(method, route) {
            Some(Rule::Authenticated) => true,
            Some(Rule::Action(action, kind)) => allows(&state, &caller, action, kind),
            None => false,
        })
        .map(|(method, route)| format!("{method} {route}"))
        .collect();
    Json(CallerView {
        operator_id: caller.id,
        username,
        role: caller.role,
        mfa,
        allowed,
    })
}

/// Every documented operation behind the guard, read once from the OpenAPI document.
static OPERATIONS: LazyLock<Vec<(Method, String)>> = LazyLock::new(|| {
    let doc = super::ApiDoc::openapi();
    let mut operations = Vec::new();
    for (path, item) in &doc.paths.paths {
        if super::openapi::OPEN.contains(&path.as_str()) || !path.starts_with("/api/") {
            continue;
        }
        let methods = [
            (Method::GET, item.get.is_some()),
            (Method::POST, item.post.is_some()),
            (Method::PUT, item.put.is_some()),
            (Method::PATCH, item.patch.is_some()),
            (Method::DELETE, item.delete.is_some()),
        ];
        for (method, present) in methods {
            if present {
                operations.push((method, path.clone()));
            }
        }
    }
    operations
});
