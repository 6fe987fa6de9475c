//! Vulnerability data: feed imports (OSV, KEV, EPSS), product SBOMs in and out, and the
//! findings they give.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use sigil_authority::rfc3339;
use sigil_authority::vulns::{FeedImport, FeedKind, Finding, ProductFindings, Undecided};
use sigil_domain::ProductId;
use sigil_store::SbomRecord;
use sigil_vuln::sbom::{MAX_SBOM_BYTES, to_cyclonedx, to_spdx};

use super::{ApiError, ApiPath, ApiQuery, AppState, Caller, Problem};

/// Largest feed file accepted (OSV's biggest ecosystem archive is about 150 MB).
pub const MAX_FEED_BYTES: usize = 512 * 1024 * 1024;

/// Read a raw body, refusing it once it passes `limit`.
pub(crate) async fn read_body(body: Body, limit: usize) -> Result<Vec<u8>, ApiError> {
    match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => Ok(Vec::from(bytes)),
        Err(e) => {
            let e = e.into_inner();
            if e.is::<http_body_util::LengthLimitError>() {
                Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too-large",
                    "Payload too large",
                    format!("at most {limit} bytes"),
                ))
            } else {
                Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "incomplete-body",
                    "Incomplete body",
                    format!("the upload was cut off: {e}"),
                ))
            }
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ImportParams {
    /// `osv`, `osv-archive`, `kev` or `epss`; detected from the content if left out.
    pub kind: Option<String>,
    /// Where the file came from (kept with each record), e.g. `osv-PyPI-2026-12-04`.
    pub source: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ImportResponse {
    pub kind: String,
    pub records: u64,
    pub added: u64,
    pub updated: u64,
    pub unchanged: u64,
}

impl From<FeedImport> for ImportResponse {
    fn from(f: FeedImport) -> Self {
        Self {
            kind: f.kind.into(),
            records: f.records,
            added: f.added,
            updated: f.updated,
            unchanged: f.unchanged,
        }
    }
}

/// Import a vulnerability feed file: one OSV record (JSON), an OSV ecosystem archive (zip),
/// CISA's KEV catalogue (JSON) or FIRST's EPSS scores (CSV). All or nothing.
#[utoipa::path(post, path = "/api/v1/vulndb/imports", tag = "vulnerabilities", params(ImportParams),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 201, body = ImportResponse), (status = 413, body = Problem), (status = 422, body = Problem)))]
pub async fn import(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(params): ApiQuery<ImportParams>,
    body: Body,
) -> Result<(StatusCode, Json<ImportResponse>), ApiError> {
    let actor = caller.actor();
    let result = async {
        let kind = match params.kind.as_deref() {
            None => None,
            Some("osv") => Some(FeedKind::Osv),
            Some("osv-archive") => Some(FeedKind::OsvArchive),
            Some("kev") => Some(FeedKind::Kev),
            Some("epss") => Some(FeedKind::Epss),
            Some(_) => {
                return Err(ApiError::invalid(
                    "kind: one of osv, osv-archive, kev, epss",
                ));
            }
        };
        let source = params.source.unwrap_or_else(|| "upload".into());
        if source.is_empty() || source.len() > 128 || source.chars().any(char::is_control) {
            return Err(ApiError::invalid("source: 1 to 128 printable characters"));
        }
        let bytes = read_body(body, MAX_FEED_BYTES).await?;
        Ok(state.import_feed(&actor, &source, kind, &bytes).await?)
    }
    .await;
    let done = state
        .audit_refusal(&actor, "vulndb.import", "vulndb".into(), result)
        .await?;
    Ok((StatusCode::CREATED, Json(done.into())))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SbomResponse {
    pub id: String,
    pub product_id: String,
    pub firmware_version: String,
    /// The release of that version, if the product released it through Sigil.
    pub release_id: Option<String>,
    /// `cyclonedx` or `spdx`.
    pub format: String,
    pub spec_version: String,
    /// SHA-256 of the document as uploaded.
    pub sha256: String,
    pub components: u64,
    pub created_by: String,
    pub created_at: String,
}

impl From<SbomRecord> for SbomResponse {
    fn from(r: SbomRecord) -> Self {
        Self {
            id: r.id,
            product_id: r.product_id,
            firmware_version: r.firmware_version,
            release_id: r.release_id,
            format: r.format,
            spec_version: r.spec_version,
            sha256: r.sha256,
            components: r.components,
            created_by: r.created_by,
            created_at: rfc3339(r.created_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SbomList {
    pub items: Vec<SbomResponse>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct SbomParams {
    /// The firmware version the SBOM describes.
    pub version: String,
}

/// Upload the SBOM (CycloneDX 1.4-1.6 JSON or XML, SPDX 2.2/2.3 JSON or SPDX 3.0 JSON-LD) of one of the product's firmware
/// versions, replacing the one it had. A malformed SBOM is refused with the line and the
/// reason, and nothing is stored.
#[utoipa::path(post, path = "/api/v1/products/{id}/sboms", tag = "vulnerabilities",
    params(("id" = String, Path), SbomParams),
    request_body(content((Vec<u8> = "application/json"), (Vec<u8> = "application/xml"))),
    responses((status = 201, body = SbomResponse), (status = 404, body = Problem), (status = 413, body = Problem), (status = 422, body = Problem)))]
pub async fn upload_sbom(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(product): ApiPath<ProductId>,
    ApiQuery(params): ApiQuery<SbomParams>,
    body: Body,
) -> Result<(StatusCode, Json<SbomResponse>), ApiError> {
    let actor = caller.actor();
    let result = async {
        let bytes = read_body(body, MAX_SBOM_BYTES).await?;
        Ok(state
            .upload_sbom(&actor, &product.to_string(), &params.version, &bytes)
            .await?)
    }
    .await;
    let sbom = state
        .audit_refusal(&actor, "sbom.upload", format!("product:{product}"), result)
        .await?;
    Ok((StatusCode::CREATED, Json(sbom.into())))
}

/// The product's SBOMs, by firmware version.
#[utoipa::path(get, path = "/api/v1/products/{id}/sboms", tag = "vulnerabilities", params(("id" = String, Path)),
    responses((status = 200, body = SbomList), (status = 404, body = Problem)))]
pub async fn list_sboms(
    State(state): State<AppState>,
    ApiPath(product): ApiPath<ProductId>,
) -> Result<Json<SbomList>, ApiError> {
    state.store().get_product(product).await?;
    let items = state.store().sboms(&product.to_string()).await?;
    Ok(Json(SbomList {
        items: items.into_iter().map(Into::into).collect(),
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ExportParams {
    /// `cyclonedx` (1.6 JSON), `spdx` (2.3 JSON), or `original` (as uploaded, JSON or XML).
    pub format: Option<String>,
}

/// An SBOM, as uploaded or written in either format.
#[utoipa::path(get, path = "/api/v1/sboms/{id}", tag = "vulnerabilities", params(("id" = String, Path), ExportParams),
    responses((status = 200, description = "The SBOM: as uploaded, or written as CycloneDX or SPDX JSON", content(("application/json"), ("application/xml"))), (status = 400, body = Problem), (status = 404, body = Problem)))]
pub async fn export_sbom(
    State(state): State<AppState>,
    Path(id): Path<String>,
    ApiQuery(params): ApiQuery<ExportParams>,
) -> Result<Response, ApiError> {
    if uuid::Uuid::parse_str(&id).is_err() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid-id",
            "Invalid identifier",
            "an SBOM id is a UUID",
        ));
    }
    let format = params.format.as_deref().unwrap_or("original");
    if format == "original" {
        // As uploaded, and as a file to save: never a page in a browser.
        state.store().sbom(&id).await?;
        let original = state.store().sbom_document(&id).await?;
        let media_type = sigil_vuln::sbom::media_type(&original);
        let name = if sigil_vuln::sbom::is_xml(&original) {
            "xml"
        } else {
            "json"
        };
        let disposition = format!("attachment; filename=\"sbom-{id}.{name}\"");
        return Ok((
            [
                (header::CONTENT_TYPE, media_type.to_owned()),
                (header::CONTENT_DISPOSITION, disposition),
            ],
            original,
        )
            .into_response());
    }
    let (record, sbom) = state.sbom_document(&id).await?;
    // Whole seconds: SPDX's `created` admits no fraction (spdx-tools refuses one).
    let now = state.now();
    let now = rfc3339(now.replace_nanosecond(0).unwrap_or(now));
    let document = match format {
        "cyclonedx" => serde_json::to_vec_pretty(&to_cyclonedx(
            &sbom,
            &uuid::Uuid::new_v4().to_string(),
            &now,
        ))
        .unwrap_or_default(),
        "spdx" => serde_json::to_vec_pretty(&to_spdx(
            &sbom,
            &format!("{} {}", record.product_id, record.firmware_version),
            &format!(
                "https://sigil.invalid/spdx/{}/{}",
                record.id,
                uuid::Uuid::new_v4()
            ),
            &now,
        ))
        .unwrap_or_default(),
        _ => return Err(ApiError::invalid("format: cyclonedx, spdx or original")),
    };
    Ok(([(header::CONTENT_TYPE, "application/json")], document).into_response())
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FindingResponse {
    /// A CVE id where there is one.
    pub vulnerability: String,
    /// Every id the vulnerability is known by (OSV records and their aliases).
    pub ids: Vec<String>,
    pub summary: Option<String>,
    /// `critical`, `high`, `medium`, `low`, `none` or `unknown`: from the highest CVSS
    /// vector, else the database's rating.
    pub severity: String,
    pub cvss_score: Option<f64>,
    /// When Sigil first found it in this component of the product.
    pub first_seen: Option<String>,
    /// The remediation policy's deadline (none once VEX says `not_affected` or `fixed`).
    pub remediation_due: Option<String>,
    pub overdue: bool,
    pub firmware_version: String,
    pub component: String,
    pub component_version: String,
    pub purl: Option<String>,
    pub fixed: Option<String>,
    /// The day CISA added it to the Known Exploited Vulnerabilities catalogue.
    pub known_exploited: Option<String>,
    pub epss: Option<f64>,
    pub epss_percentile: Option<f64>,
    /// Devices of the product running this firmware version.
    pub devices: u64,
    /// The product's VEX status for this vulnerability in this component (`not_affected`,
    /// `affected`, `fixed`, `under_investigation`), if it made a statement.
    pub vex_status: Option<String>,
    pub vex_justification: Option<String>,
}

impl From<Finding> for FindingResponse {
    fn from(f: Finding) -> Self {
        Self {
            vulnerability: f.vulnerability,
            ids: f.ids,
            summary: f.summary,
            severity: f.severity.to_string(),
            cvss_score: f.cvss_score,
            first_seen: f.first_seen,
            remediation_due: f.remediation_due,
            overdue: f.overdue,
            firmware_version: f.firmware_version,
            component: f.component,
            component_version: f.component_version,
            purl: f.purl,
            fixed: f.fixed,
            known_exploited: f.known_exploited,
            epss: f.epss.map(|e| e.0),
            epss_percentile: f.epss.map(|e| e.1),
            devices: f.devices,
            vex_status: f.vex.as_ref().map(|v| v.status.clone()),
            vex_justification: f.vex.and_then(|v| v.justification),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UndecidedResponse {
    pub record: String,
    pub firmware_version: String,
    pub component: String,
    pub reason: String,
}

impl From<Undecided> for UndecidedResponse {
    fn from(u: Undecided) -> Self {
        Self {
            record: u.record,
            firmware_version: u.firmware_version,
            component: u.component,
            reason: u.reason,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FindingList {
    pub items: Vec<FindingResponse>,
    /// Records that name a component but whose ranges Sigil cannot decide on.
    pub undecided: Vec<UndecidedResponse>,
}

impl From<ProductFindings> for FindingList {
    fn from(p: ProductFindings) -> Self {
        Self {
            items: p.findings.into_iter().map(Into::into).collect(),
            undecided: p.undecided.into_iter().map(Into::into).collect(),
        }
    }
}

/// Every known vulnerability in a component of one of the product's SBOMs, with the fix, KEV,
/// EPSS and the devices running that firmware.
#[utoipa::path(get, path = "/api/v1/products/{id}/findings", tag = "vulnerabilities", params(("id" = String, Path)),
    responses((status = 200, body = FindingList), (status = 404, body = Problem)))]
pub async fn findings(
    State(state): State<AppState>,
    ApiPath(product): ApiPath<ProductId>,
) -> Result<Json<FindingList>, ApiError> {
    Ok(Json(
        state.product_findings(&product.to_string()).await?.into(),
    ))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VexImportResponse {
    /// Statements recorded (each replacing the product's earlier one on the same
    /// vulnerability and component).
    pub statements: u64,
}

/// Record a VEX document for the product: OpenVEX, CycloneDX VEX or CSAF 2.0 VEX JSON. Each
/// statement applies to the vulnerability in the component it names (by purl), not to the
/// CVE wherever it appears.
#[utoipa::path(post, path = "/api/v1/products/{id}/vex", tag = "vulnerabilities", params(("id" = String, Path)),
    request_body(content = Vec<u8>, content_type = "application/json"),
    responses((status = 201, body = VexImportResponse), (status = 404, body = Problem), (status = 413, body = Problem), (status = 422, body = Problem)))]
pub async fn import_vex(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(product): ApiPath<ProductId>,
    body: Body,
) -> Result<(StatusCode, Json<VexImportResponse>), ApiError> {
    let actor = caller.actor();
    let result = async {
        let bytes = read_body(body, sigil_vuln::vex::MAX_VEX_BYTES).await?;
        Ok(state
            .import_vex(&actor, &product.to_string(), &bytes)
            .await?)
    }
    .await;
    let n = state
        .audit_refusal(&actor, "vex.import", format!("product:{product}"), result)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(VexImportResponse {
            statements: n as u64,
        }),
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct VexExportParams {
    /// `openvex` (the default) or `csaf` (CSAF 2.0, profile `csaf_vex`).
    pub format: Option<String>,
}

/// The product's VEX, published as OpenVEX or CSAF 2.0: every finding with its status (the
/// product's own statement, else `affected` with what to do) and, for each vulnerability, the
/// later firmware versions that fixed it.
#[utoipa::path(get, path = "/api/v1/products/{id}/vex", tag = "vulnerabilities", params(("id" = String, Path), VexExportParams),
    responses((status = 200, content_type = "application/json"), (status = 400, body = Problem), (status = 404, body = Problem)))]
pub async fn export_vex(
    State(state): State<AppState>,
    ApiPath(product): ApiPath<ProductId>,
    ApiQuery(params): ApiQuery<VexExportParams>,
) -> Result<Response, ApiError> {
    let doc = match params.format.as_deref().unwrap_or("openvex") {
        "openvex" => state.product_openvex(&product.to_string()).await?,
        "csaf" => state.product_csaf(&product.to_string()).await?,
        _ => return Err(ApiError::invalid("format: openvex or csaf")),
    };
    let bytes = serde_json::to_vec_pretty(&doc).unwrap_or_default();
    Ok(([(header::CONTENT_TYPE, "application/json")], bytes).into_response())
}
