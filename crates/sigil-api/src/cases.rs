//! Vulnerability handling: a device's findings, the remediation policy, sites and their
//! countries, and CRA Article 14 cases (their deadlines, drafts and submitted reports).

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use sigil_authority::rfc3339;
use sigil_authority::vulns::{CaseView, DeviceFindings};
use sigil_domain::DeviceId;
use sigil_store::SiteRecord;
use sigil_vuln::{RemediationPolicy, SeverityLevel};

use super::vulns::FindingResponse;
use super::{ApiError, ApiJson, ApiPath, ApiQuery, AppState, Caller, Problem};

#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceFindingList {
    pub device: String,
    pub product_id: String,
    /// The firmware version the device runs (no findings without one).
    pub firmware_version: Option<String>,
    pub items: Vec<FindingResponse>,
    pub truncated: bool,
}

impl From<DeviceFindings> for DeviceFindingList {
    fn from(d: DeviceFindings) -> Self {
        Self {
            device: d.device,
            product_id: d.product_id,
            firmware_version: d.firmware_version,
            items: d.findings.into_iter().map(Into::into).collect(),
            truncated: d.truncated,
        }
    }
}

/// The vulnerabilities of the firmware a device runs, each with its remediation deadline.
#[utoipa::path(get, path = "/api/v1/devices/{id}/findings", tag = "vulnerabilities", params(("id" = String, Path)),
    responses((status = 200, body = DeviceFindingList), (status = 404, body = Problem)))]
pub async fn device_findings(
    State(state): State<AppState>,
    ApiPath(device): ApiPath<DeviceId>,
) -> Result<Json<DeviceFindingList>, ApiError> {
    Ok(Json(
        state.device_findings(&device.to_string()).await?.into(),
    ))
}

/// Days to remediate a vulnerability, by severity, and for a known exploited one whatever
/// its severity (the shorter applies).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyBody {
    #[schema(minimum = 1, maximum = 3650)]
    pub critical: u32,
    #[schema(minimum = 1, maximum = 3650)]
    pub high: u32,
    #[schema(minimum = 1, maximum = 3650)]
    pub medium: u32,
    #[schema(minimum = 1, maximum = 3650)]
    pub low: u32,
    #[schema(minimum = 1, maximum = 3650)]
    pub none: u32,
    /// A record with no score or rating.
    #[schema(minimum = 1, maximum = 3650)]
    pub unknown: u32,
    #[schema(minimum = 1, maximum = 3650)]
    pub known_exploited: u32,
}

impl From<RemediationPolicy> for PolicyBody {
    fn from(p: RemediationPolicy) -> Self {
        let d = |l| p.days_for(l, false);
        Self {
            critical: d(SeverityLevel::Critical),
            high: d(SeverityLevel::High),
            medium: d(SeverityLevel::Medium),
            low: d(SeverityLevel::Low),
            none: d(SeverityLevel::None),
            unknown: d(SeverityLevel::Unknown),
            known_exploited: p.known_exploited_days,
        }
    }
}

impl From<&PolicyBody> for RemediationPolicy {
    fn from(b: &PolicyBody) -> Self {
        RemediationPolicy {
            days: BTreeMap::from([
                (SeverityLevel::Critical, b.critical),
                (SeverityLevel::High, b.high),
                (SeverityLevel::Medium, b.medium),
                (SeverityLevel::Low, b.low),
                (SeverityLevel::None, b.none),
                (SeverityLevel::Unknown, b.unknown),
            ]),
            known_exploited_days: b.known_exploited,
        }
    }
}

/// The remediation policy.
#[utoipa::path(get, path = "/api/v1/vuln-policy", tag = "vulnerabilities",
    responses((status = 200, body = PolicyBody)))]
pub async fn get_policy(State(state): State<AppState>) -> Result<Json<PolicyBody>, ApiError> {
    Ok(Json(state.remediation_policy().await?.into()))
}

/// Replace the remediation policy (1 to 3650 days each).
#[utoipa::path(put, path = "/api/v1/vuln-policy", tag = "vulnerabilities", request_body = PolicyBody,
    responses((status = 200, body = PolicyBody), (status = 422, body = Problem)))]
pub async fn set_policy(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<PolicyBody>,
) -> Result<Json<PolicyBody>, ApiError> {
    let actor = caller.actor();
    let result = state
        .set_remediation_policy(&actor, &RemediationPolicy::from(&body))
        .await
        .map_err(Into::into);
    let policy = state
        .audit_refusal(
            &actor,
            "vuln.policy.set",
            "remediation-policy".into(),
            result,
        )
        .await?;
    Ok(Json(policy.into()))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SiteRequest {
    /// ISO 3166-1 alpha-2 (`DE`, `FR`, `US`), an assigned code.
    #[schema(pattern = "^[A-Z]{2}$")]
    pub country: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SiteResponse {
    pub name: String,
    pub country: String,
    /// Whether the country is an EU member state (Article 14 reports name them).
    pub member_state: bool,
    pub updated_by: String,
    pub updated_at: String,
}

impl From<SiteRecord> for SiteResponse {
    fn from(s: SiteRecord) -> Self {
        Self {
            member_state: sigil_vuln::reporting::is_member_state(&s.country),
            name: s.name,
            country: s.country,
            updated_by: s.updated_by,
            updated_at: rfc3339(s.updated_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SiteList {
    pub items: Vec<SiteResponse>,
}

/// Register the country a site (the `site` of devices) is in.
#[utoipa::path(put, path = "/api/v1/sites/{name}", tag = "inventory", params(("name" = String, Path)),
    request_body = SiteRequest,
    responses((status = 200, body = SiteResponse), (status = 422, body = Problem)))]
pub async fn put_site(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<SiteRequest>,
) -> Result<Json<SiteResponse>, ApiError> {
    let actor = caller.actor();
    let result = state
        .put_site(&actor, &name, &req.country)
        .await
        .map_err(Into::into);
    let site = state
        .audit_refusal(&actor, "site.set", format!("site:{name}"), result)
        .await?;
    Ok(Json(site.into()))
}

#[utoipa::path(get, path = "/api/v1/sites", tag = "inventory",
    responses((status = 200, body = SiteList)))]
pub async fn list_sites(State(state): State<AppState>) -> Result<Json<SiteList>, ApiError> {
    Ok(Json(SiteList {
        items: state.sites().await?.into_iter().map(Into::into).collect(),
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct CaseParams {
    /// Only this product's cases.
    pub product: Option<String>,
    /// `open` (the default) or `all`.
    pub state: Option<String>,
    /// Page size, 1 to 500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// Cursor: the `next_cursor` of the previous page.
    #[param(format = Uuid)]
    pub after: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CaseList {
    pub items: Vec<CaseView>,
    /// Pass as `after` to fetch the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Article 14 cases, newest first.
#[utoipa::path(get, path = "/api/v1/cases", tag = "vulnerabilities", params(CaseParams),
    responses((status = 200, body = CaseList), (status = 400, body = Problem)))]
pub async fn list_cases(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<CaseParams>,
) -> Result<Json<CaseList>, ApiError> {
    let open_only = match params.state.as_deref().unwrap_or("open") {
        "open" => true,
        "all" => false,
        _ => return Err(ApiError::invalid("state: open or all")),
    };
    let limit = params.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::invalid("limit must be between 1 and 500"));
    }
    // Case ids are stored in UUID's canonical text; a cursor is compared as such.
    let after = params
        .after
        .as_deref()
        .map(|a| {
            uuid::Uuid::parse_str(a)
                .map(|u| u.hyphenated().to_string())
                .map_err(|_| ApiError::invalid("after: a case id (UUID)"))
        })
        .transpose()?;
    let items = state
        .cases(
            params.product.as_deref(),
            open_only,
            after.as_deref(),
            limit,
        )
        .await?;
    let next_cursor = (items.len() == limit as usize)
        .then(|| items.last().map(|c| c.id.clone()))
        .flatten();
    Ok(Json(CaseList { items, next_cursor }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenCaseRequest {
    pub product_id: String,
    /// A vulnerability among the product's findings (any of its ids).
    #[schema(min_length = 1, max_length = 100)]
    pub vulnerability: String,
    /// Why it is known to be actively exploited.
    #[schema(min_length = 1, max_length = 2000)]
    pub reason: String,
}

/// The three reports of Article 14(2).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ReportStage {
    EarlyWarning,
    Notification,
    FinalReport,
}

/// Open a case by hand for a vulnerability known to be actively exploited (one in CISA's KEV
/// catalogue on a deployed version opens its case by itself).
#[utoipa::path(post, path = "/api/v1/cases", tag = "vulnerabilities", request_body = OpenCaseRequest,
    responses((status = 201, body = CaseView), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn open_case(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(req): ApiJson<OpenCaseRequest>,
) -> Result<(StatusCode, Json<CaseView>), ApiError> {
    let actor = caller.actor();
    // Parsed before anything is audited: the subject names a product, not raw input.
    let product: sigil_domain::ProductId = req.product_id.parse()?;
    let result = state
        .open_case(
            &actor,
            &product.to_string(),
            &req.vulnerability,
            &req.reason,
        )
        .await
        .map_err(Into::into);
    let case = state
        .audit_refusal(
            &actor,
            "vuln.case.open",
            format!("product:{product}"),
            result,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(case)))
}

fn case_id(id: &str) -> Result<(), ApiError> {
    uuid::Uuid::parse_str(id).map(|_| ()).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid-id",
            "Invalid identifier",
            "a case id is a UUID",
        )
    })
}

/// A case: its deadlines (each an exact instant), submitted reports and alerts sent.
#[utoipa::path(get, path = "/api/v1/cases/{id}", tag = "vulnerabilities", params(("id" = String, Path)),
    responses((status = 200, body = CaseView), (status = 400, body = Problem), (status = 404, body = Problem)))]
pub async fn get_case(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<CaseView>, ApiError> {
    case_id(&id)?;
    Ok(Json(state.case(&id).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DraftParams {
    /// `json` (the default) or `text`.
    pub format: Option<String>,
}

/// A draft of one of the case's reports (`early-warning`, `notification`, `final-report`):
/// the product, the vulnerability, the affected devices and member states, the mitigations
/// and the fix release, from Sigil's current data.
#[utoipa::path(get, path = "/api/v1/cases/{id}/drafts/{stage}", tag = "vulnerabilities",
    params(("id" = String, Path), ("stage" = ReportStage, Path), DraftParams),
    responses((status = 200, content_type = "application/json"), (status = 400, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn draft(
    State(state): State<AppState>,
    Path((id, stage)): Path<(String, String)>,
    ApiQuery(params): ApiQuery<DraftParams>,
) -> Result<Response, ApiError> {
    case_id(&id)?;
    let text = match params.format.as_deref().unwrap_or("json") {
        "json" => false,
        "text" => true,
        _ => return Err(ApiError::invalid("format: json or text")),
    };
    let draft = state.case_draft(&id, &stage).await?;
    Ok(if text {
        (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            draft.to_text(),
        )
            .into_response()
    } else {
        Json(draft).into_response()
    })
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportRequest {
    #[schema(value_type = ReportStage)]
    pub stage: String,
    /// The submission's reference at the CSIRT or the single reporting platform.
    #[schema(max_length = 500)]
    pub reference: Option<String>,
}

/// Record that one of the case's reports was submitted (once per stage).
#[utoipa::path(post, path = "/api/v1/cases/{id}/reports", tag = "vulnerabilities", params(("id" = String, Path)),
    request_body = ReportRequest,
    responses((status = 201, body = CaseView), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn record_report(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<ReportRequest>,
) -> Result<(StatusCode, Json<CaseView>), ApiError> {
    case_id(&id)?;
    let actor = caller.actor();
    let result = state
        .record_case_report(&actor, &id, &req.stage, req.reference.as_deref())
        .await
        .map_err(Into::into);
    let case = state
        .audit_refusal(&actor, "vuln.case.report", format!("case:{id}"), result)
        .await?;
    Ok((StatusCode::CREATED, Json(case)))
}
