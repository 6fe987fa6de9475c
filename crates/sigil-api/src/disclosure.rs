//! Coordinated vulnerability disclosure for operators: each product's policy (published as its
//! `security.txt` by `sigil-disclosure`), and the reports received: listed, entered by hand,
//! acknowledged, accepted as an advisory or rejected. The reporters' side is public and lives
//! in `sigil-disclosure`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};

use sigil_authority::rfc3339;
use sigil_authority::vulns::{Accepted, ReportView};
use sigil_domain::ProductId;
use sigil_store::DisclosurePolicyRecord;
use sigil_vuln::disclosure::{AdvisorySpec, DisclosurePolicy, Submission};

use super::{ApiError, ApiJson, ApiQuery, AppState, Caller, Problem};

/// A disclosure policy: what `security.txt` publishes (RFC 9116) and the days promised to
/// reporters.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DisclosurePolicyBody {
    /// `mailto:`, `https://` or `tel:` URIs, most preferred first (1 to 8).
    pub contacts: Vec<String>,
    /// RFC 3339; in the future and less than a year ahead.
    #[schema(format = DateTime)]
    pub expires: String,
    /// The policy document (`https://`).
    pub policy: Option<String>,
    /// A key to encrypt reports with (`https://`, `dns:` or `openpgp4fpr:`).
    pub encryption: Option<String>,
    pub acknowledgments: Option<String>,
    /// RFC 5646 language tags.
    #[serde(default)]
    pub preferred_languages: Vec<String>,
    /// The CSAF provider metadata (`https://.../provider-metadata.json`).
    pub csaf: Option<String>,
    /// Days to acknowledge a report (default 5) and to decide it (default 30).
    #[schema(minimum = 1, maximum = 365)]
    pub acknowledge_days: Option<u32>,
    #[schema(minimum = 1, maximum = 365)]
    pub triage_days: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DisclosurePolicyResponse {
    /// A product id, or `*` for the organisation's policy.
    pub scope: String,
    #[serde(flatten)]
    pub policy: DisclosurePolicyBody,
    pub updated_by: String,
    pub updated_at: String,
}

fn to_policy(b: DisclosurePolicyBody) -> Result<DisclosurePolicy, ApiError> {
    let expires = OffsetDateTime::parse(&b.expires, &time::format_description::well_known::Rfc3339)
        .map_err(|_| ApiError::invalid("expires: an RFC 3339 date and time"))?;
    Ok(DisclosurePolicy {
        contacts: b.contacts,
        expires,
        policy: b.policy,
        encryption: b.encryption,
        acknowledgments: b.acknowledgments,
        preferred_languages: b.preferred_languages,
        csaf: b.csaf,
        acknowledge_days: b
            .acknowledge_days
            .unwrap_or(sigil_vuln::disclosure::DEFAULT_ACKNOWLEDGE_DAYS),
        triage_days: b
            .triage_days
            .unwrap_or(sigil_vuln::disclosure::DEFAULT_TRIAGE_DAYS),
    })
}

fn policy_response(r: &DisclosurePolicyRecord, p: DisclosurePolicy) -> DisclosurePolicyResponse {
    DisclosurePolicyResponse {
        scope: r.scope.clone(),
        policy: DisclosurePolicyBody {
            contacts: p.contacts,
            expires: rfc3339(p.expires),
            policy: p.policy,
            encryption: p.encryption,
            acknowledgments: p.acknowledgments,
            preferred_languages: p.preferred_languages,
            csaf: p.csaf,
            acknowledge_days: Some(p.acknowledge_days),
            triage_days: Some(p.triage_days),
        },
        updated_by: r.updated_by.clone(),
        updated_at: rfc3339(r.updated_at),
    }
}

async fn put_policy(
    state: &AppState,
    caller: &Caller,
    product: Option<ProductId>,
    body: DisclosurePolicyBody,
) -> Result<Json<DisclosurePolicyResponse>, ApiError> {
    let actor = caller.actor();
    let product = product.map(|p| p.to_string());
    let subject = format!("disclosure:{}", product.as_deref().unwrap_or("*"));
    let result = match to_policy(body) {
        Ok(p) => state
            .set_disclosure_policy(&actor, product.as_deref(), &p)
            .await
            .map(|r| (r, p))
            .map_err(Into::into),
        Err(e) => Err(e),
    };
    let (record, policy) = state
        .audit_refusal(&actor, "disclosure.policy.set", subject, result)
        .await?;
    Ok(Json(policy_response(&record, policy)))
}

async fn get_policy(
    state: &AppState,
    product: Option<ProductId>,
) -> Result<Json<DisclosurePolicyResponse>, ApiError> {
    let product = product.map(|p| p.to_string());
    let (record, policy) = state
        .disclosure_policy(product.as_deref())
        .await?
        .ok_or_else(|| ApiError::not_found("no disclosure policy is set here"))?;
    Ok(Json(policy_response(&record, policy)))
}

/// The organisation's disclosure policy (for products without their own).
#[utoipa::path(get, path = "/api/v1/disclosure-policy", tag = "vulnerabilities",
    responses((status = 200, body = DisclosurePolicyResponse), (status = 404, body = Problem)))]
pub async fn organisation_policy(
    State(state): State<AppState>,
) -> Result<Json<DisclosurePolicyResponse>, ApiError> {
    get_policy(&state, None).await
}

/// Publish the organisation's disclosure policy at `/.well-known/security.txt`.
#[utoipa::path(put, path = "/api/v1/disclosure-policy", tag = "vulnerabilities", request_body = DisclosurePolicyBody,
    responses((status = 200, body = DisclosurePolicyResponse), (status = 422, body = Problem)))]
pub async fn set_organisation_policy(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<DisclosurePolicyBody>,
) -> Result<Json<DisclosurePolicyResponse>, ApiError> {
    put_policy(&state, &caller, None, body).await
}

/// A product's own disclosure policy.
#[utoipa::path(get, path = "/api/v1/products/{id}/disclosure-policy", tag = "vulnerabilities",
    params(("id" = String, Path)),
    responses((status = 200, body = DisclosurePolicyResponse), (status = 404, body = Problem)))]
pub async fn product_policy(
    State(state): State<AppState>,
    super::ApiPath(product): super::ApiPath<ProductId>,
) -> Result<Json<DisclosurePolicyResponse>, ApiError> {
    get_policy(&state, Some(product)).await
}

/// Publish a product's disclosure policy at `/disclosure/{id}/security.txt`.
#[utoipa::path(put, path = "/api/v1/products/{id}/disclosure-policy", tag = "vulnerabilities",
    params(("id" = String, Path)), request_body = DisclosurePolicyBody,
    responses((status = 200, body = DisclosurePolicyResponse), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn set_product_policy(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    super::ApiPath(product): super::ApiPath<ProductId>,
    ApiJson(body): ApiJson<DisclosurePolicyBody>,
) -> Result<Json<DisclosurePolicyResponse>, ApiError> {
    put_policy(&state, &caller, Some(product), body).await
}

/// A report, as a reporter would send it to `/disclosure/reports` or an operator enters it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmissionBody {
    pub product: String,
    #[schema(min_length = 1, max_length = 200)]
    pub summary: String,
    #[schema(min_length = 1, max_length = 16000)]
    pub details: String,
    #[schema(max_length = 300)]
    pub affected: Option<String>,
    #[schema(max_length = 300)]
    pub reporter: Option<String>,
    /// A CVSS v3.x or v4.0 vector.
    pub cvss: Option<String>,
    #[serde(default)]
    pub exploited: bool,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ReportParams {
    pub product: Option<String>,
    /// `open` (the default: received or acknowledged) or `all`.
    pub state: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DisclosureReportList {
    pub items: Vec<ReportView>,
}

/// Vulnerability reports, newest first (at most 1000).
#[utoipa::path(get, path = "/api/v1/disclosure-reports", tag = "vulnerabilities", params(ReportParams),
    responses((status = 200, body = DisclosureReportList), (status = 400, body = Problem)))]
pub async fn list_reports(
    State(state): State<AppState>,
    ApiQuery(params): ApiQuery<ReportParams>,
) -> Result<Json<DisclosureReportList>, ApiError> {
    let open_only = match params.state.as_deref().unwrap_or("open") {
        "open" => true,
        "all" => false,
        _ => return Err(ApiError::invalid("state: open or all")),
    };
    let items = state
        .disclosure_reports(params.product.as_deref(), open_only)
        .await?;
    Ok(Json(DisclosureReportList { items }))
}

/// Enter a report received elsewhere (mail, a partner, a CSIRT): it gets the same deadlines.
#[utoipa::path(post, path = "/api/v1/disclosure-reports", tag = "vulnerabilities", request_body = SubmissionBody,
    responses((status = 201, body = ReportView), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn enter_report(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(body): ApiJson<SubmissionBody>,
) -> Result<(StatusCode, Json<ReportView>), ApiError> {
    let actor = caller.actor();
    let product: ProductId = body.product.parse()?;
    let submission = Submission {
        product: product.to_string(),
        summary: body.summary,
        details: body.details,
        affected: body.affected,
        reporter: body.reporter,
        cvss: body.cvss,
        exploited: body.exploited,
    };
    let result = state
        .enter_report(&actor, &submission)
        .await
        .map_err(Into::into);
    let report = state
        .audit_refusal(
            &actor,
            "disclosure.report.received",
            format!("product:{product}"),
            result,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(report)))
}

fn report_id(id: &str) -> Result<(), ApiError> {
    uuid::Uuid::parse_str(id).map(|_| ()).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid-id",
            "Invalid identifier",
            "a report id is a UUID",
        )
    })
}

#[utoipa::path(get, path = "/api/v1/disclosure-reports/{id}", tag = "vulnerabilities",
    params(("id" = String, Path)),
    responses((status = 200, body = ReportView), (status = 400, body = Problem), (status = 404, body = Problem)))]
pub async fn get_report(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ReportView>, ApiError> {
    report_id(&id)?;
    Ok(Json(state.disclosure_report(&id).await?))
}

/// Acknowledge a report (tell the reporter it arrived; their status shows it).
#[utoipa::path(post, path = "/api/v1/disclosure-reports/{id}/acknowledge", tag = "vulnerabilities",
    params(("id" = String, Path)),
    responses((status = 200, body = ReportView), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn acknowledge(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<ReportView>, ApiError> {
    report_id(&id)?;
    let actor = caller.actor();
    let result = state
        .acknowledge_report(&actor, &id)
        .await
        .map_err(Into::into);
    let report = state
        .audit_refusal(
            &actor,
            "disclosure.report.acknowledged",
            format!("disclosure-report:{id}"),
            result,
        )
        .await?;
    Ok(Json(report))
}

/// Accept a report: the component it affects (a package URL) and the affected versions, in
/// that package ecosystem's order; it becomes an OSV advisory matched against every SBOM.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptReportRequest {
    /// `pkg:cargo/acme-mqtt`, `pkg:deb/debian/openssl?distro=debian-12`.
    pub component: String,
    /// First affected version (`0`: all before `fixed`).
    pub introduced: Option<String>,
    pub fixed: Option<String>,
    pub last_affected: Option<String>,
    #[serde(default)]
    pub versions: Vec<String>,
    /// A CVSS v3.x or v4.0 vector (the report's, if it gave one and this is absent).
    pub cvss: Option<String>,
    /// CVE or other ids assigned.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Known to be actively exploited: opens a CRA Article 14 case.
    #[serde(default)]
    pub exploited: bool,
}

#[utoipa::path(post, path = "/api/v1/disclosure-reports/{id}/accept", tag = "vulnerabilities",
    params(("id" = String, Path)), request_body = AcceptReportRequest,
    responses((status = 200, body = Accepted), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn accept(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<AcceptReportRequest>,
) -> Result<Json<Accepted>, ApiError> {
    report_id(&id)?;
    let actor = caller.actor();
    let spec = AdvisorySpec {
        component: req.component,
        introduced: req.introduced,
        fixed: req.fixed,
        last_affected: req.last_affected,
        versions: req.versions,
        cvss: req.cvss,
        aliases: req.aliases,
    };
    let result = state
        .accept_report(&actor, &id, &spec, req.exploited)
        .await
        .map_err(Into::into);
    let accepted = state
        .audit_refusal(
            &actor,
            "disclosure.report.accepted",
            format!("disclosure-report:{id}"),
            result,
        )
        .await?;
    Ok(Json(accepted))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RejectReportRequest {
    /// Not a vulnerability, out of scope, a duplicate of ...: the reporter sees it.
    #[schema(min_length = 1, max_length = 2000)]
    pub reason: String,
}

#[utoipa::path(post, path = "/api/v1/disclosure-reports/{id}/reject", tag = "vulnerabilities",
    params(("id" = String, Path)), request_body = RejectReportRequest,
    responses((status = 200, body = ReportView), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn reject(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<RejectReportRequest>,
) -> Result<Json<ReportView>, ApiError> {
    report_id(&id)?;
    let actor = caller.actor();
    let result = state
        .reject_report(&actor, &id, &req.reason)
        .await
        .map_err(Into::into);
    let report = state
        .audit_refusal(
            &actor,
            "disclosure.report.rejected",
            format!("disclosure-report:{id}"),
            result,
        )
        .await?;
    Ok(Json(report))
}
