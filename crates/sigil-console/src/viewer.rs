//! The person looking at a page: who the API says they are, and which operations the policy
//! in force lets them perform (so a page draws only the controls they may use).

use std::collections::BTreeSet;

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use crate::backend::{Backend, Forwarded};
use crate::error::ConsoleError;

#[derive(Debug, Clone)]
pub struct Viewer {
    pub username: String,
    pub role: String,
    pub mfa: bool,
    allowed: BTreeSet<String>,
    pub forwarded: Forwarded,
}

#[derive(Deserialize)]
struct Me {
    username: String,
    role: String,
    mfa: bool,
    allowed: Vec<String>,
}

impl Viewer {
    /// Whether the API would let this person perform `operation` (`"POST /api/v1/..."`, as the
    /// OpenAPI document names it).
    pub fn can(&self, operation: &str) -> bool {
        self.allowed.contains(operation)
    }
}

impl FromRequestParts<Backend> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, backend: &Backend) -> Result<Self, Response> {
        let Ok(forwarded) = Forwarded::from_request_parts(parts, backend).await;
        // No session at all: straight to the login page. Asking the API would count a failed
        // authentication against the visitor's address (and fill the audit log) for every
        // logged-out visit, until the limit refused even the login page's visitors.
        if !forwarded.has_session() {
            return Err(to_login(parts));
        }
        match backend.get::<Me>(&forwarded, "/api/v1/auth/me").await {
            Ok(me) => Ok(Self {
                username: me.username,
                role: me.role,
                mfa: me.mfa,
                allowed: me.allowed.into_iter().collect(),
                forwarded,
            }),
            // An ended session, or too many failed ones from here: log in, then come back.
            Err(e)
                if matches!(
                    e.status,
                    StatusCode::UNAUTHORIZED | StatusCode::TOO_MANY_REQUESTS
                ) =>
            {
                Err(to_login(parts))
            }
            Err(e) => Err(ConsoleError::Api(e).into_response()),
        }
    }
}

/// The login page, with this page to come back to.
fn to_login(parts: &Parts) -> Response {
    let next = parts
        .uri
        .path_and_query()
        .map_or("/ui", |p| p.as_str())
        .to_owned();
    let query = serde_urlencoded::to_string([("next", next)]).unwrap_or_default();
    Redirect::to(&format!("/ui/login?{query}")).into_response()
}
