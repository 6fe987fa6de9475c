//! Devices in and out as CSV: the import (checked whole, with a dry run that shows each row's
//! problem; then all of the file or none of it) and the export of any filtered view, streamed.

use std::collections::HashMap;

use axum::Extension;
use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use sigil_authority::rfc3339;
use sigil_domain::import::{self, ParsedImport, RowError};
use sigil_domain::{NewDevice, ProductId};

use super::inventory::DeviceQuery;
use super::{ApiError, ApiQuery, AppState, Caller, Problem};

/// Largest import file (about 100,000 rows of a typical sheet).
pub const MAX_IMPORT_BYTES: usize = 16 * 1024 * 1024;
/// Devices shown in a dry run's preview.
const PREVIEW: usize = 20;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ImportParams {
    /// Check the file and report, writing nothing.
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ImportReport {
    pub dry_run: bool,
    /// SHA-256 of the file, hex (the audit entry names it).
    pub sha256: String,
    /// Devices the file would create (or created).
    pub valid: usize,
    pub created: usize,
    #[schema(value_type = Vec<Object>)]
    pub errors: Vec<RowError>,
    /// Problems beyond the ones listed.
    pub unreported_errors: usize,
    /// The first devices the file holds, as they would be registered.
    pub preview: Vec<PreviewRow>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PreviewRow {
    pub line: u64,
    pub product_id: String,
    pub serial_number: String,
    pub hardware_id: Option<String>,
    pub owner: Option<String>,
    pub site: Option<String>,
    pub tags: Vec<String>,
    pub firmware_version: Option<String>,
}

/// Register devices from a CSV file (header row; columns `product` (id or exact name),
/// `serial_number`, and optionally `hardware_id`, `owner`, `site`, `tags` (separated by `;`),
/// `firmware_version`). Every row is checked first; with any problem nothing is written and the
/// answer lists each problem's line and column. `dry_run=true` only checks.
#[utoipa::path(post, path = "/api/v1/devices/import", tag = "inventory", params(ImportParams),
    request_body(content = String, content_type = "text/csv"),
    responses((status = 200, body = ImportReport, description = "Dry run: the file is ready"),
        (status = 201, body = ImportReport, description = "Every device registered"),
        (status = 413, body = Problem),
        (status = 422, body = Problem, description = "Problems found, nothing written: the problem also carries the report's members (errors with their lines, valid, preview)")))]
pub async fn import_devices(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(params): ApiQuery<ImportParams>,
    body: Body,
) -> Result<Response, ApiError> {
    let actor = caller.actor();
    let bytes = match axum::body::to_bytes(body, MAX_IMPORT_BYTES).await {
        Ok(b) => b,
        Err(_) => {
            let e = ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too-large",
                "Import file too large",
                format!(
                    "an import file is at most {} MiB: split it",
                    MAX_IMPORT_BYTES / (1024 * 1024)
                ),
            );
            return state
                .audit_refusal::<Response>(&actor, "device.import", "import".into(), Err(e))
                .await;
        }
    };
    if bytes.is_empty() {
        let e = ApiError::invalid("the request has no body: send the CSV file");
        return state
            .audit_refusal::<Response>(&actor, "device.import", "import".into(), Err(e))
            .await;
    }
    let sha256 = hex::encode(sigil_ca::sha256(&bytes));
    let parsed = parse(&state, &bytes).await?;
    let mut report = ImportReport {
        dry_run: params.dry_run,
        valid: parsed.rows.len(),
        created: 0,
        preview: parsed.rows.iter().take(PREVIEW).map(preview).collect(),
        errors: parsed.errors,
        unreported_errors: parsed.unreported,
        sha256,
    };
    let clean = report.errors.is_empty() && report.unreported_errors == 0;
    if params.dry_run && clean {
        return Ok((StatusCode::OK, Json(report)).into_response());
    }
    if params.dry_run {
        // A check changes nothing: refused, but not an audited attempt.
        let detail = format!(
            "the file has {} problem(s)",
            report.errors.len() + report.unreported_errors
        );
        return Ok(refused_report(report, detail));
    }
    if !clean {
        let refusal = ApiError::invalid(format!(
            "the file has {} problem(s); nothing was imported",
            report.errors.len() + report.unreported_errors
        ));
        let detail = refusal.detail.clone();
        let _ = state
            .audit_refusal::<()>(
                &actor,
                "device.import",
                format!("import:{}", report.sha256),
                Err(refusal),
            )
            .await;
        return Ok(refused_report(report, detail));
    }
    let devices: Vec<NewDevice> = parsed.rows.into_iter().map(|r| r.device).collect();
    let result = state
        .store()
        .import_devices(&actor, devices, &report.sha256, state.now())
        .await
        .map_err(ApiError::from);
    let created = state
        .audit_refusal(
            &actor,
            "device.import",
            format!("import:{}", report.sha256),
            result,
        )
        .await?;
    report.created = created.len();
    Ok((StatusCode::CREATED, Json(report)).into_response())
}

/// A refused import: an RFC 9457 problem whose extension members are the report.
fn refused_report(report: ImportReport, detail: String) -> Response {
    let mut body = serde_json::to_value(&report).unwrap_or_default();
    if let Some(fields) = body.as_object_mut() {
        for (k, v) in [
            ("type", "urn:sigil:problem:import-refused"),
            ("title", "The file has problems; nothing was imported"),
            ("code", "import-refused"),
        ] {
            fields.insert(k.to_owned(), v.into());
        }
        fields.insert("status".to_owned(), 422.into());
        fields.insert("detail".to_owned(), detail.into());
    }
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        )],
        body.to_string(),
    )
        .into_response()
}

/// The file's rows, checked by the inventory's rules, then against the devices registered.
async fn parse(state: &AppState, bytes: &[u8]) -> Result<ParsedImport, ApiError> {
    let products = state.store().list_products().await?;
    let mut by_name: HashMap<&str, Option<ProductId>> = HashMap::new();
    for p in &products {
        // A name two products share names neither: the file must use the id.
        by_name
            .entry(p.name.as_str())
            .and_modify(|id| *id = None)
            .or_insert(Some(p.id));
    }
    let ids: HashMap<String, ProductId> =
        products.iter().map(|p| (p.id.to_string(), p.id)).collect();
    let mut parsed = import::parse_devices(bytes, |value| {
        ids.get(value)
            .copied()
            .or_else(|| by_name.get(value).copied().flatten())
    });
    let candidates: Vec<&NewDevice> = parsed.rows.iter().map(|r| &r.device).collect();
    let registered = state.store().registered_devices(&candidates).await?;
    let mut kept = Vec::with_capacity(parsed.rows.len());
    for row in std::mem::take(&mut parsed.rows) {
        let d = &row.device;
        let problem = if registered
            .serials
            .contains(&(d.product_id, d.serial_number.clone()))
        {
            Some((
                "serial_number",
                format!(
                    "a device `{}` of this product is already registered",
                    d.serial_number
                ),
            ))
        } else if d
            .hardware_id
            .as_ref()
            .is_some_and(|hw| registered.hardware_ids.contains(hw))
        {
            Some((
                "hardware_id",
                "a registered device already has this hardware id".to_owned(),
            ))
        } else {
            None
        };
        match problem {
            Some((column, message)) if parsed.errors.len() < import::MAX_REPORTED => {
                parsed.errors.push(RowError {
                    line: row.line,
                    column: Some(column.to_owned()),
                    message,
                });
            }
            Some(_) => parsed.unreported += 1,
            None => kept.push(row),
        }
    }
    parsed.errors.sort_by_key(|e| e.line);
    parsed.rows = kept;
    Ok(parsed)
}

fn preview(row: &import::ImportRow) -> PreviewRow {
    let d = &row.device;
    PreviewRow {
        line: row.line,
        product_id: d.product_id.to_string(),
        serial_number: d.serial_number.clone(),
        hardware_id: d.hardware_id.clone(),
        owner: d.owner.clone(),
        site: d.site.clone(),
        tags: d.tags.iter().map(|t| t.as_str().to_owned()).collect(),
        firmware_version: d.firmware_version.clone(),
    }
}

/// Every device of a filtered view as CSV (the import's columns, then id, state and times),
/// streamed page by page: a million devices never sit in memory at once. Values a spreadsheet
/// would run as formulas are written with a leading `'`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    pub state: Option<String>,
    pub product: Option<String>,
    pub tag: Option<String>,
    pub site: Option<String>,
    /// As in the device listing: a device id, or the start of a serial number or hardware id.
    pub q: Option<String>,
    pub sort: Option<String>,
    /// As in the device listing: `fail`, or `eu-cra:fail`.
    pub compliance: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/devices/export", tag = "inventory", params(ExportQuery),
    responses((status = 200, body = String, content_type = "text/csv"), (status = 400, body = Problem),
        (status = 404, body = Problem)))]
pub async fn export_devices(
    State(state): State<AppState>,
    axum::Extension(caller): axum::Extension<super::Caller>,
    ApiQuery(q): ApiQuery<ExportQuery>,
) -> Result<Response, ApiError> {
    let listing = super::device_listing::listing(
        &state,
        &caller,
        &DeviceQuery {
            state: q.state,
            product: q.product,
            tag: q.tag,
            site: q.site,
            q: q.q,
            sort: q.sort,
            compliance: q.compliance,
            limit: Some(sigil_store::MAX_PAGE),
            after: None,
        },
    )
    .await?;
    let header: Vec<String> = import::export_header()
        .into_iter()
        .map(str::to_owned)
        .collect();
    let first =
        futures_util::stream::once(
            async move { Ok::<_, std::io::Error>(import::to_csv(&[header])) },
        );
    let pages = futures_util::stream::unfold(Some(listing), move |listing| {
        let state = state.clone();
        async move {
            let mut listing = listing?;
            let (page, next) = match super::device_listing::page(&state, &listing).await {
                Ok(page) => page,
                // Cut short: the client sees a broken transfer, never a plausible short file.
                Err(e) => return Some((Err(std::io::Error::other(e.detail)), None)),
            };
            let rows: Vec<Vec<String>> = page
                .iter()
                .map(|d| import::export_row(d, (&rfc3339(d.created_at), &rfc3339(d.updated_at))))
                .collect();
            let next = next.map(|after| {
                listing.filter.after = Some(after);
                listing
            });
            Some((Ok(import::to_csv(&rows)), next))
        }
    });
    use futures_util::StreamExt;
    let body = Body::from_stream(first.chain(pages));
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/csv; charset=utf-8"),
            ),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_static("attachment; filename=\"sigil-devices.csv\""),
            ),
        ],
        body,
    )
        .into_response())
}
