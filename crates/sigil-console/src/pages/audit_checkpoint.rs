//! Signing a checkpoint now (so that the newest entries can be proven without waiting for the
//! periodic one).

use axum::extract::State;
use axum::http::{HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::backend::Backend;
use crate::pages::device::problem;
use crate::viewer::Viewer;

pub async fn sign(State(backend): State<Backend>, viewer: Viewer) -> Response {
    match backend
        .call(
            &viewer.forwarded,
            Method::POST,
            "/api/v1/audit/checkpoint",
            None,
        )
        .await
    {
        Ok(_) => {
            // htmx reloads the page, which now proves against the new checkpoint.
            let mut response = StatusCode::NO_CONTENT.into_response();
            response
                .headers_mut()
                .insert("hx-refresh", HeaderValue::from_static("true"));
            response
        }
        Err(e) => problem(e.status, &e.title, &e.detail, true),
    }
}
