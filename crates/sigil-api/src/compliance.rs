//! Compliance posture per framework, per requirement and per device.

use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use sigil_domain::DeviceId;

use super::{ApiError, AppState, Problem};
use sigil_authority::compliance::{self, FrameworkReport};
use sigil_authority::rfc3339;

#[derive(Serialize, ToSchema)]
pub struct FrameworkSummary {
    pub id: String,
    pub title: String,
    pub version: String,
    pub requirements: usize,
}

#[derive(Serialize, ToSchema)]
pub struct FrameworkList {
    pub catalogue_version: String,
    pub frameworks: Vec<FrameworkSummary>,
}

/// The frameworks in the catalogue.
#[utoipa::path(get, path = "/api/v1/compliance", tag = "compliance",
    responses((status = 200, body = FrameworkList)))]
pub async fn frameworks(State(state): State<AppState>) -> Json<FrameworkList> {
    Json(FrameworkList {
        catalogue_version: state.catalogue().version().to_owned(),
        frameworks: state
            .catalogue()
            .frameworks()
            .iter()
            .map(|f| FrameworkSummary {
                id: f.info.id.clone(),
                title: f.info.title.clone(),
                version: f.info.version.clone(),
                requirements: f.requirements.len(),
            })
            .collect(),
    })
}

pub(crate) fn framework<'a>(
    state: &'a AppState,
    id: &str,
) -> Result<&'a sigil_compliance::Framework, ApiError> {
    state.catalogue().framework(id).ok_or_else(|| {
        let known: Vec<&str> = state
            .catalogue()
            .frameworks()
            .iter()
            .map(|f| f.info.id.as_str())
            .collect();
        ApiError::not_found(format!(
            "no framework `{id}`; the catalogue has {}",
            known.join(", ")
        ))
    })
}

/// The fleet's posture against a framework: each requirement's status, its checks, counts and
/// the failing devices with reasons and evidence.
#[utoipa::path(get, path = "/api/v1/compliance/{framework}", tag = "compliance",
    responses((status = 200, body = FrameworkReport), (status = 404, body = Problem)))]
pub async fn fleet(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<FrameworkReport>, ApiError> {
    let fw = framework(&state, &id)?;
    Ok(Json(
        compliance::evaluate(&state, fw, state.catalogue(), None).await?,
    ))
}

/// One device's posture against a framework (device checks for it; product and organisation
/// checks as they stand).
#[utoipa::path(get, path = "/api/v1/compliance/{framework}/devices/{id}", tag = "compliance",
    responses((status = 200, body = FrameworkReport), (status = 404, body = Problem)))]
pub async fn device(
    State(state): State<AppState>,
    Path((framework_id, device)): Path<(String, String)>,
) -> Result<Json<FrameworkReport>, ApiError> {
    let fw = framework(&state, &framework_id)?;
    let device: DeviceId = device
        .parse()
        .map_err(|_| ApiError::not_found(format!("no device `{device}`")))?;
    Ok(Json(
        compliance::evaluate(&state, fw, state.catalogue(), Some(device)).await?,
    ))
}

/// Largest evidence document accepted (the request body limit leaves room for base64).
pub const MAX_DOCUMENT_BYTES: usize = 44 * 1024;
/// Longest an attestation may stand before it must be renewed.
pub const MAX_ATTESTATION: time::Duration = time::Duration::days(3 * 366);

#[derive(serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AttestRequest {
    /// An attestation check of the catalogue (e.g. `attest.vulnerability-disclosure`).
    pub check: String,
    /// Who attests (name and role): the accountable person, not necessarily the caller.
    pub attested_by: String,
    pub statement: String,
    pub document_name: String,
    /// The evidence document, base64.
    pub document_base64: String,
    /// When the attestation stops counting (RFC 3339): the control turns unknown then.
    pub expires_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct AttestationView {
    pub id: String,
    pub check: String,
    pub attested_by: String,
    pub recorded_by: String,
    pub statement: String,
    pub document_name: String,
    pub document_sha256: String,
    pub created_at: String,
    pub expires_at: String,
}

fn attestation_view(a: &sigil_store::Attestation) -> AttestationView {
    AttestationView {
        id: a.id.clone(),
        check: a.check_id.clone(),
        attested_by: a.attested_by.clone(),
        recorded_by: a.recorded_by.clone(),
        statement: a.statement.clone(),
        document_name: a.document_name.clone(),
        document_sha256: a.document_sha256.clone(),
        created_at: rfc3339(a.created_at),
        expires_at: rfc3339(a.expires_at),
    }
}

/// Record an attestation of an organisational control, with its evidence document (stored;
/// its SHA-256 goes into the audit log).
#[utoipa::path(post, path = "/api/v1/compliance/attestations", tag = "compliance", request_body = AttestRequest,
    responses((status = 201, body = AttestationView), (status = 422, body = Problem)))]
pub async fn attest(
    State(state): State<AppState>,
    axum::Extension(caller): axum::Extension<super::Caller>,
    super::ApiJson(req): super::ApiJson<AttestRequest>,
) -> Result<(axum::http::StatusCode, Json<AttestationView>), ApiError> {
    use base64::Engine;
    let check = state.catalogue().check(&req.check).ok_or_else(|| {
        ApiError::invalid(format!("check: no check `{}` in the catalogue", req.check))
    })?;
    if check.kind != sigil_compliance::CheckKind::Attestation {
        return Err(ApiError::invalid(format!(
            "check: `{}` is evaluated automatically and cannot be attested",
            req.check
        )));
    }
    let text = |field: &str, v: &str, max: usize| {
        if v.trim().is_empty() || v.chars().count() > max || v.chars().any(char::is_control) {
            Err(ApiError::invalid(format!(
                "{field}: 1 to {max} printable characters"
            )))
        } else {
            Ok(())
        }
    };
    text("attested_by", &req.attested_by, 200)?;
    text("statement", &req.statement, 4000)?;
    text("document_name", &req.document_name, 200)?;
    let document = base64::engine::general_purpose::STANDARD
        .decode(req.document_base64.trim())
        .map_err(|e| ApiError::invalid(format!("document_base64: {e}")))?;
    if document.is_empty() || document.len() > MAX_DOCUMENT_BYTES {
        return Err(ApiError::invalid(format!(
            "document_base64: 1 byte to {MAX_DOCUMENT_BYTES} bytes once decoded"
        )));
    }
    let expires_at = time::OffsetDateTime::parse(
        &req.expires_at,
        &time::format_description::well_known::Rfc3339,
    )
    .map_err(|e| ApiError::invalid(format!("expires_at: {e}")))?;
    let now = state.now();
    if expires_at <= now || expires_at - now > MAX_ATTESTATION {
        return Err(ApiError::invalid(
            "expires_at: in the future, at most 3 years away",
        ));
    }
    let record = state
        .store()
        .record_attestation(
            &caller.actor(),
            &sigil_store::NewAttestation {
                check_id: &req.check,
                attested_by: req.attested_by.trim(),
                statement: req.statement.trim(),
                document_name: req.document_name.trim(),
                document: &document,
                expires_at,
            },
            now,
        )
        .await?;
    Ok((
        axum::http::StatusCode::CREATED,
        Json(attestation_view(&record)),
    ))
}

/// The newest attestation of each check.
#[utoipa::path(get, path = "/api/v1/compliance/attestations", tag = "compliance",
    responses((status = 200, body = [AttestationView])))]
pub async fn attestations(
    State(state): State<AppState>,
) -> Result<Json<Vec<AttestationView>>, ApiError> {
    Ok(Json(
        state
            .store()
            .latest_attestations()
            .await?
            .iter()
            .map(attestation_view)
            .collect(),
    ))
}

#[derive(Serialize, ToSchema)]
pub struct EvaluationResult {
    pub report: FrameworkReport,
    /// Requirements whose status got worse since the previous run (each is also an audit entry).
    pub regressions: Vec<sigil_authority::compliance::Regression>,
}

/// Evaluate a framework now and keep the result in its history.
#[utoipa::path(post, path = "/api/v1/compliance/{framework}/evaluate", tag = "compliance",
    responses((status = 200, body = EvaluationResult), (status = 404, body = Problem)))]
pub async fn evaluate_now(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<EvaluationResult>, ApiError> {
    let fw = framework(&state, &id)?;
    let (report, regressions) = sigil_authority::compliance::record_run(&state, fw).await?;
    Ok(Json(EvaluationResult {
        report,
        regressions,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct RunView {
    pub id: String,
    pub evaluated_at: String,
    pub catalogue_version: String,
    pub score: f64,
    #[schema(value_type = Object)]
    pub summary: serde_json::Value,
    /// Requirement id -> status.
    #[schema(value_type = Object)]
    pub requirements: serde_json::Map<String, serde_json::Value>,
}

impl From<sigil_store::ComplianceRun> for RunView {
    fn from(r: sigil_store::ComplianceRun) -> Self {
        Self {
            id: r.id,
            evaluated_at: rfc3339(r.evaluated_at),
            catalogue_version: r.catalogue_version,
            score: r.score,
            summary: r.summary,
            requirements: r.requirements,
        }
    }
}

/// The framework's posture over time, newest first (at most 500 runs).
#[utoipa::path(get, path = "/api/v1/compliance/{framework}/history", tag = "compliance",
    responses((status = 200, body = [RunView]), (status = 404, body = Problem)))]
pub async fn history(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Vec<RunView>>, ApiError> {
    let fw = framework(&state, &id)?;
    let runs = state
        .store()
        .compliance_history(&fw.info.id, sigil_store::MAX_PAGE)
        .await?;
    Ok(Json(runs.into_iter().map(RunView::from).collect()))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ReportQuery {
    /// `html` (the default: a self-contained page), `csv`, `json`, `oscal` (OSCAL
    /// assessment-results) or `oscal-component-definition` (which checks implement what).
    pub format: Option<String>,
}

/// The fleet's posture against a framework as a document to keep or hand over: HTML and CSV
/// for people, JSON and NIST OSCAL for tools. Evaluated now.
#[utoipa::path(get, path = "/api/v1/compliance/{framework}/report", tag = "compliance", params(ReportQuery),
    responses((status = 200, description = "The report in the format asked for",
        content(("text/html"), ("text/csv"), ("application/json"))),
        (status = 400, body = Problem), (status = 404, body = Problem)))]
pub async fn report(
    State(state): State<AppState>,
    Path(id): Path<String>,
    super::ApiQuery(q): super::ApiQuery<ReportQuery>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let format = q.format.as_deref().unwrap_or("html");
    let formats = ["html", "csv", "json", "oscal", "oscal-component-definition"];
    if !formats.contains(&format) {
        return Err(ApiError::invalid(format!(
            "format must be one of {}, not `{format}`",
            formats.join(", ")
        )));
    }
    let fw = framework(&state, &id)?;
    let catalogue = state.catalogue();
    let report = compliance::evaluate(&state, fw, catalogue, None).await?;
    let report = serde_json::to_value(&report).map_err(ApiError::internal)?;
    let attestations: Vec<AttestationView> = state
        .store()
        .latest_attestations()
        .await?
        .iter()
        .map(attestation_view)
        .collect();
    let attestations = serde_json::to_value(&attestations).map_err(ApiError::internal)?;
    let file = format!("sigil-{}", fw.info.id);
    let (content_type, name, body) = match format {
        "csv" => (
            "text/csv; charset=utf-8",
            format!("{file}.csv"),
            sigil_reports::csv(&report),
        ),
        "json" => (
            "application/json",
            format!("{file}.json"),
            serde_json::json!({"report": report, "attestations": attestations}).to_string(),
        ),
        "oscal" => {
            let results = sigil_reports::oscal::assessment_results(
                &report,
                catalogue,
                "component-definition.json",
            )
            .map_err(ApiError::internal)?;
            (
                "application/json",
                format!("{file}.assessment-results.json"),
                results.to_string(),
            )
        }
        "oscal-component-definition" => {
            let at = report["evaluated_at"].as_str().unwrap_or_default();
            let doc = sigil_reports::oscal::component_definition(catalogue, at);
            (
                "application/json",
                "component-definition.json".to_owned(),
                doc.to_string(),
            )
        }
        _ => (
            "text/html; charset=utf-8",
            format!("{file}.html"),
            sigil_reports::html(&report, &attestations),
        ),
    };
    let disposition = format!("attachment; filename=\"{name}\"");
    Ok((
        [
            (axum::http::header::CONTENT_TYPE, content_type.to_owned()),
            (axum::http::header::CONTENT_DISPOSITION, disposition),
        ],
        body,
    )
        .into_response())
}
