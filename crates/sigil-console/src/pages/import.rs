//! Devices from a spreadsheet: upload a CSV file, see every row's problem or the devices it
//! would register (a dry run), then import all of it or none. The API does the work
//! (`POST /api/v1/devices/import`); this page uploads and shows its report.

use askama::Template;
use axum::extract::{Multipart, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;

use super::{render, text};
use crate::backend::Backend;
use crate::error::ConsoleError;
use crate::pages::device::problem;
use crate::view::{Layout, query};
use crate::viewer::Viewer;

pub const IMPORT: &str = "POST /api/v1/devices/import";
pub const EXPORT: &str = "GET /api/v1/devices/export";
/// The API's own limit, and room for the form around it.
pub const MAX_UPLOAD_BYTES: usize = 17 * 1024 * 1024;

#[derive(Template)]
#[template(path = "import.html")]
struct ImportPage {
    layout: Layout,
}

pub async fn form(viewer: Viewer) -> Result<Response, ConsoleError> {
    if !viewer.can(IMPORT) {
        return Err(ConsoleError::Forbidden(
            "your role may not register devices".into(),
        ));
    }
    Ok(render(&ImportPage {
        layout: Layout::new("Import devices", "devices", &viewer),
    }))
}

struct ErrorRow {
    line: String,
    column: String,
    message: String,
}

struct PreviewRow {
    line: String,
    serial: String,
    owner: String,
    site: String,
    tags: String,
}

#[derive(Template)]
#[template(path = "import_report.html")]
struct ReportFragment {
    dry_run: bool,
    created: String,
    valid: String,
    errors: Vec<ErrorRow>,
    unreported: u64,
    preview: Vec<PreviewRow>,
}

/// The upload: the file part and which button was pressed (check, or import).
pub async fn submit(
    State(backend): State<Backend>,
    viewer: Viewer,
    mut form: Multipart,
) -> Response {
    let mut file = None;
    let mut dry_run = true;
    loop {
        match form.next_field().await {
            Ok(Some(field)) => match field.name() {
                Some("file") => match field.bytes().await {
                    Ok(bytes) => file = Some(bytes),
                    Err(e) => {
                        return problem(
                            StatusCode::BAD_REQUEST,
                            "Upload failed",
                            &e.body_text(),
                            true,
                        );
                    }
                },
                Some("mode") => dry_run = field.text().await.map_or(true, |m| m != "import"),
                _ => {}
            },
            Ok(None) => break,
            Err(e) => return problem(e.status(), "Upload failed", &e.body_text(), true),
        }
    }
    let Some(file) = file.filter(|f| !f.is_empty()) else {
        return problem(
            StatusCode::BAD_REQUEST,
            "No file",
            "choose a CSV file to upload",
            true,
        );
    };
    let path = format!(
        "/api/v1/devices/import{}",
        query(&[("dry_run", if dry_run { "true" } else { "false" })])
    );
    let (status, body) = match backend
        .call_raw(&viewer.forwarded, &path, "text/csv", file)
        .await
    {
        Ok(answer) => answer,
        Err(e) => return problem(e.status, &e.title, &e.detail, true),
    };
    let report: Value = serde_json::from_slice(&body).unwrap_or_default();
    if report.get("errors").is_none() {
        let detail = text(&report, "detail");
        return problem(status, &text(&report, "title"), &detail, true);
    }
    let fragment = ReportFragment {
        dry_run,
        created: text(&report, "created"),
        valid: text(&report, "valid"),
        errors: report["errors"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| ErrorRow {
                line: text(e, "line"),
                column: text(e, "column"),
                message: text(e, "message"),
            })
            .collect(),
        unreported: report["unreported_errors"].as_u64().unwrap_or(0),
        preview: report["preview"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| PreviewRow {
                line: text(p, "line"),
                serial: text(p, "serial_number"),
                owner: text(p, "owner"),
                site: text(p, "site"),
                tags: p["tags"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", "),
            })
            .collect(),
    };
    match fragment.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => ConsoleError::from(e).into_response(),
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct ExportFilters {
    q: String,
    state: String,
    product: String,
    site: String,
    tag: String,
    compliance: String,
    sort: String,
}

/// The filtered view as CSV, streamed from the API.
pub async fn export(
    State(backend): State<Backend>,
    viewer: Viewer,
    Query(f): Query<ExportFilters>,
) -> Response {
    let path = format!(
        "/api/v1/devices/export{}",
        query(&[
            ("q", &f.q),
            ("state", &f.state),
            ("product", &f.product),
            ("site", &f.site),
            ("tag", &f.tag),
            ("compliance", &f.compliance),
            ("sort", &f.sort),
        ])
    );
    backend.download(&viewer.forwarded, &path).await
}
