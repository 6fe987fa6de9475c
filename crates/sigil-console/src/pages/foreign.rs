//! A device's certificates from another CA, recorded from its page: the file goes to the API
//! (`POST /api/v1/devices/{id}/foreign-certificates`), which checks and audits it.

use axum::extract::{Multipart, Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::Value;

use super::text;
use crate::backend::Backend;
use crate::pages::device::{finish_to, problem};
use crate::view::segment;
use crate::viewer::Viewer;

pub const IMPORT: &str = "POST /api/v1/devices/{id}/foreign-certificates";
/// The API's limit (256 KiB), and room for the form around it.
pub const MAX_UPLOAD_BYTES: usize = 300 * 1024;

pub async fn submit(
    State(backend): State<Backend>,
    viewer: Viewer,
    Path(id): Path<String>,
    mut form: Multipart,
) -> Response {
    let mut file = None;
    loop {
        match form.next_field().await {
            Ok(Some(field)) if field.name() == Some("file") => match field.bytes().await {
                Ok(bytes) => file = Some(bytes),
                Err(e) => return problem(e.status(), "Upload failed", &e.body_text(), true),
            },
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(e) => return problem(e.status(), "Upload failed", &e.body_text(), true),
        }
    }
    let Some(file) = file.filter(|f| !f.is_empty()) else {
        return problem(
            StatusCode::BAD_REQUEST,
            "No file",
            "choose a PEM file to upload",
            true,
        );
    };
    let path = format!("/api/v1/devices/{}/foreign-certificates", segment(&id));
    match backend
        .call_raw(
            &viewer.forwarded,
            &path,
            "application/pem-certificate-chain",
            file,
        )
        .await
    {
        Ok((status, _)) if status.is_success() => {
            finish_to(&format!("/ui/devices/{}?done=foreign", segment(&id)))
        }
        Ok((status, body)) => {
            let answer: Value = serde_json::from_slice(&body).unwrap_or_default();
            problem(
                status,
                &text(&answer, "title"),
                &text(&answer, "detail"),
                true,
            )
        }
        Err(e) => problem(e.status, &e.title, &e.detail, true),
    }
}
