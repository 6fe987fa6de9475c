//! Behaviour monitoring over HTTP: devices report their metrics (mTLS); operators read the
//! detector's status, the security profiles and alarms, decide on alarms, and quarantine or
//! release devices (release needs a second factor: the policy's `device.release`).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use sigil_authority::monitoring::MonitoringStatus;
use sigil_authority::rfc3339;
use sigil_domain::DeviceId;
use sigil_http::PeerCertificate;
use sigil_store::{AlarmFilter, AlarmRecord};

use super::{ApiError, ApiJson, ApiPath, ApiQuery, AppState, Caller, Problem};

/// Largest metrics report accepted from a device.
const MAX_METRICS_BODY: usize = 64 * 1024;

#[derive(Debug, Serialize, ToSchema)]
pub struct MetricsAccepted {
    /// Datapoints put on the metrics bus.
    pub datapoints: usize,
}

/// A device reports its network metrics (`POST /api/v1/device/metrics`, mTLS with its current
/// Sigil certificate): counters since its previous report, listening ports, connections.
#[utoipa::path(post, path = "/api/v1/device/metrics", tag = "monitoring",
    request_body(content = String, content_type = "application/json"),
    responses((status = 202, body = MetricsAccepted), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 413, body = Problem), (status = 422, body = Problem),
        (status = 503, body = Problem)))]
pub async fn report(
    State(state): State<AppState>,
    peer: Option<Extension<PeerCertificate>>,
    body: Bytes,
) -> Result<(StatusCode, Json<MetricsAccepted>), ApiError> {
    let (actor, subject, device) = super::posture::device_caller(&state, peer, "metrics").await;
    let result = async {
        let device = device?;
        super::posture::within(&body, MAX_METRICS_BODY)?;
        Ok(state.device_metrics(device, &body).await?)
    }
    .await;
    let datapoints = state
        .audit_refusal(&actor, "device.metrics", subject, result)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(MetricsAccepted { datapoints })))
}

/// What the detector has done since this server started.
#[utoipa::path(get, path = "/api/v1/monitoring/status", tag = "monitoring",
    responses((status = 200, body = MonitoringStatus)))]
pub async fn status(State(state): State<AppState>) -> Json<MonitoringStatus> {
    Json(state.monitoring_status())
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProfilesResponse {
    /// 0: Sigil's default profiles (none applied yet).
    pub version: i64,
    /// The profile document in force.
    #[schema(value_type = Object)]
    pub document: serde_json::Value,
}

/// The security profiles in force.
#[utoipa::path(get, path = "/api/v1/monitoring/profiles", tag = "monitoring",
    responses((status = 200, body = ProfilesResponse)))]
pub async fn profiles(State(state): State<AppState>) -> Result<Json<ProfilesResponse>, ApiError> {
    let (version, text) = state.security_profiles().await?;
    let document = serde_json::from_str(&text).map_err(|e| ApiError::internal(&e))?;
    Ok(Json(ProfilesResponse { version, document }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ApplyQuery {
    /// Why (kept with the version and in the audit log).
    #[param(max_length = 500)]
    pub comment: Option<String>,
}

/// Apply a security profile document (validated whole; a new version, audited). The detector
/// starts over under it.
#[utoipa::path(put, path = "/api/v1/monitoring/profiles", tag = "monitoring", params(ApplyQuery),
    request_body(content = String, content_type = "application/json"),
    responses((status = 200, body = ProfilesResponse), (status = 413, body = Problem),
        (status = 422, body = Problem)))]
pub async fn apply_profiles(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiQuery(query): ApiQuery<ApplyQuery>,
    body: Bytes,
) -> Result<Json<ProfilesResponse>, ApiError> {
    let actor = caller.actor();
    let result = async {
        let text = std::str::from_utf8(&body)
            .map_err(|_| ApiError::invalid("the body is not UTF-8 JSON"))?;
        let comment = query.comment.unwrap_or_default();
        if comment.chars().count() > 500 {
            return Err(ApiError::invalid("comment: at most 500 characters"));
        }
        let version = state
            .apply_security_profiles(&actor, text, &comment)
            .await?;
        let document = serde_json::from_str(&version.text).map_err(|e| ApiError::internal(&e))?;
        Ok(ProfilesResponse {
            version: version.version,
            document,
        })
    }
    .await;
    Ok(Json(
        state
            .audit_refusal(
                &actor,
                "monitoring.profiles_applied",
                "security-profiles".into(),
                result,
            )
            .await?,
    ))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AlarmResponse {
    pub id: String,
    pub device_id: String,
    pub profile: String,
    pub behaviour: String,
    pub metric: String,
    /// low | medium | high | critical
    pub severity: String,
    /// none | notify | quarantine | suspend | revoke
    pub mitigation: String,
    /// Recorded only: the behaviour is suppressed, nothing was mitigated or announced.
    pub suppressed: bool,
    /// active | acknowledged | cleared | false_positive
    pub state: String,
    pub active: bool,
    pub raised_at: String,
    pub cleared_at: Option<String>,
    /// acknowledged | false_positive
    pub decision: Option<String>,
    pub decided_at: Option<String>,
    pub decided_by: Option<String>,
    pub note: Option<String>,
    /// Which behaviour, which values, which baseline or cohort.
    #[schema(value_type = Object)]
    pub explanation: serde_json::Value,
    #[schema(value_type = Option<Object>)]
    pub cleared_explanation: Option<serde_json::Value>,
}

fn ms(at_ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(at_ms) * 1_000_000)
        .map(rfc3339)
        .unwrap_or_default()
}

impl From<AlarmRecord> for AlarmResponse {
    fn from(r: AlarmRecord) -> Self {
        let state = match (r.decision.as_deref(), r.active) {
            (Some("false_positive"), _) => "false_positive",
            (Some(_), true) => "acknowledged",
            (_, true) => "active",
            (_, false) => "cleared",
        };
        Self {
            state: state.to_owned(),
            id: r.id,
            device_id: r.device_id,
            profile: r.profile,
            behaviour: r.behaviour,
            metric: r.metric,
            severity: r.severity,
            mitigation: r.mitigation,
            suppressed: r.suppressed,
            active: r.active,
            raised_at: ms(r.raised_at_ms),
            cleared_at: r.cleared_at_ms.map(ms),
            decision: r.decision,
            decided_at: r.decided_at.map(rfc3339),
            decided_by: r.decided_by,
            note: r.note,
            explanation: r.explanation,
            cleared_explanation: r.cleared_explanation,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AlarmQuery {
    /// Only this device's alarms.
    pub device: Option<String>,
    /// `active` or `cleared`.
    #[param(pattern = "^(active|cleared)$")]
    pub condition: Option<String>,
    /// Only alarms nobody decided on yet.
    pub undecided: Option<bool>,
    /// Most alarms returned (1 to 500, default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// Cursor: the `next_cursor` of the previous page.
    pub before: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AlarmList {
    pub items: Vec<AlarmResponse>,
    /// Pass as `before` for the next page (absent on the last page).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Alarms, newest first.
#[utoipa::path(get, path = "/api/v1/alarms", tag = "monitoring", params(AlarmQuery),
    responses((status = 200, body = AlarmList), (status = 400, body = Problem), (status = 422, body = Problem)))]
pub async fn list(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<AlarmQuery>,
) -> Result<Json<AlarmList>, ApiError> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::invalid("limit: 1 to 500"));
    }
    let active = match q.condition.as_deref() {
        None => None,
        Some("active") => Some(true),
        Some("cleared") => Some(false),
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "condition {other:?}: active or cleared"
            )));
        }
    };
    let device = q
        .device
        .as_deref()
        .map(str::parse::<DeviceId>)
        .transpose()?;
    if let Some(before) = &q.before {
        uuid::Uuid::parse_str(before).map_err(|_| ApiError::invalid("before: an alarm id"))?;
    }
    let filter = AlarmFilter {
        device,
        active,
        undecided: q.undecided.unwrap_or(false),
        limit,
        before: q.before,
    };
    let records = state.store().list_alarms(&filter).await?;
    let next_cursor = (records.len() == limit as usize)
        .then(|| records.last().map(|r| r.id.clone()))
        .flatten();
    Ok(Json(AlarmList {
        items: records.into_iter().map(Into::into).collect(),
        next_cursor,
    }))
}

/// An alarm id in a path: a UUID, in canonical form.
pub struct AlarmId(String);

impl std::str::FromStr for AlarmId {
    type Err = ApiError;
    fn from_str(id: &str) -> Result<Self, ApiError> {
        uuid::Uuid::parse_str(id)
            .map(|u| Self(u.hyphenated().to_string()))
            .map_err(|_| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid-id",
                    "Invalid identifier",
                    format!(
                        "{:?} is not an alarm id",
                        id.chars().take(40).collect::<String>()
                    ),
                )
            })
    }
}

/// One alarm.
#[utoipa::path(get, path = "/api/v1/alarms/{id}", tag = "monitoring", params(("id" = String, Path)),
    responses((status = 200, body = AlarmResponse), (status = 400, body = Problem), (status = 404, body = Problem)))]
pub async fn get(
    State(state): State<AppState>,
    ApiPath(AlarmId(id)): ApiPath<AlarmId>,
) -> Result<Json<AlarmResponse>, ApiError> {
    Ok(Json(state.store().alarm(&id).await?.into()))
}

/// `acknowledged` (seen, being handled) or `false_positive` (the detector learns the names
/// behind it).
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Acknowledged,
    FalsePositive,
}

impl Decision {
    fn as_str(self) -> &'static str {
        match self {
            Decision::Acknowledged => "acknowledged",
            Decision::FalsePositive => "false_positive",
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionRequest {
    pub decision: Decision,
    #[serde(default)]
    #[schema(max_length = 500)]
    pub note: String,
}

/// Decide on an alarm (audited).
#[utoipa::path(post, path = "/api/v1/alarms/{id}/decision", tag = "monitoring", params(("id" = String, Path)),
    request_body = DecisionRequest,
    responses((status = 200, body = AlarmResponse), (status = 400, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn decide(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(AlarmId(id)): ApiPath<AlarmId>,
    ApiJson(request): ApiJson<DecisionRequest>,
) -> Result<Json<AlarmResponse>, ApiError> {
    let actor = caller.actor();
    let subject = format!("alarm:{id}");
    let result = async {
        if !matches!(request.decision.as_str(), "acknowledged" | "false_positive") {
            return Err(ApiError::invalid(
                "decision: acknowledged or false_positive",
            ));
        }
        if request.note.chars().count() > 500 {
            return Err(ApiError::invalid("note: at most 500 characters"));
        }
        // A false positive teaches the detector what is normal for the device: a trust
        // change, a second right beside the route's monitoring.manage.
        if matches!(request.decision, Decision::FalsePositive)
            && !super::auth::allows(&state, &caller, "alarm.false_positive", "monitoring")
        {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "false-positive-needs-right",
                "Forbidden",
                "judging an alarm a false positive teaches the detector what is normal for the device: it needs alarm.false_positive (with a second factor for people)",
            ));
        }
        Ok(state
            .decide_alarm(&actor, &id, request.decision.as_str(), &request.note)
            .await?)
    }
    .await;
    Ok(Json(
        state
            .audit_refusal(&actor, "alarm.decide", subject, result)
            .await?
            .into(),
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuarantineRequest {
    /// Why (kept in the audit log): not blank.
    #[schema(min_length = 1, max_length = 500, pattern = "\\S")]
    pub reason: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct QuarantineResponse {
    pub device_id: String,
    pub quarantined: bool,
    /// Whether this request changed anything.
    pub changed: bool,
}

fn reason(r: &QuarantineRequest) -> Result<&str, ApiError> {
    let n = r.reason.trim().chars().count();
    if n == 0 || n > 500 {
        return Err(ApiError::invalid("reason: 1 to 500 characters"));
    }
    Ok(r.reason.trim())
}

/// Quarantine a device: the access policy leaves it its connection and its quarantine topic
/// (`devices/<id>/quarantine/#`), and the broker sync applies that within seconds.
#[utoipa::path(post, path = "/api/v1/devices/{id}/quarantine", tag = "monitoring", params(("id" = String, Path)),
    request_body = QuarantineRequest,
    responses((status = 200, body = QuarantineResponse), (status = 400, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn quarantine(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(device): ApiPath<DeviceId>,
    ApiJson(request): ApiJson<QuarantineRequest>,
) -> Result<Json<QuarantineResponse>, ApiError> {
    let actor = caller.actor();
    let result = async {
        Ok(state
            .quarantine(&actor, device, reason(&request)?, None)
            .await?)
    }
    .await;
    let changed = state
        .audit_refusal(
            &actor,
            "device.quarantine",
            format!("device:{device}"),
            result,
        )
        .await?;
    Ok(Json(QuarantineResponse {
        device_id: device.to_string(),
        quarantined: true,
        changed,
    }))
}

/// Take a device out of quarantine (needs a second factor).
#[utoipa::path(post, path = "/api/v1/devices/{id}/release", tag = "monitoring", params(("id" = String, Path)),
    request_body = QuarantineRequest,
    responses((status = 200, body = QuarantineResponse), (status = 400, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn release(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(device): ApiPath<DeviceId>,
    ApiJson(request): ApiJson<QuarantineRequest>,
) -> Result<Json<QuarantineResponse>, ApiError> {
    let actor = caller.actor();
    let result = async { Ok(state.release(&actor, device, reason(&request)?).await?) }.await;
    state
        .audit_refusal(&actor, "device.release", format!("device:{device}"), result)
        .await?;
    Ok(Json(QuarantineResponse {
        device_id: device.to_string(),
        quarantined: false,
        changed: true,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceMonitoring {
    pub device_id: String,
    pub quarantined_since: Option<String>,
    /// When this server last applied a datapoint of the device (from any source).
    pub last_metrics_at: Option<String>,
    /// When the device's own last metrics report reached a detector (what the compliance
    /// check `device.metrics-fresh` reads; recorded every few seconds).
    pub last_report_at: Option<String>,
    /// Its active alarms, newest first.
    pub active_alarms: Vec<AlarmResponse>,
}

/// A device's monitoring state: quarantine, metrics freshness, active alarms.
#[utoipa::path(get, path = "/api/v1/devices/{id}/monitoring", tag = "monitoring", params(("id" = String, Path)),
    responses((status = 200, body = DeviceMonitoring), (status = 400, body = Problem), (status = 404, body = Problem)))]
pub async fn device(
    State(state): State<AppState>,
    ApiPath(device): ApiPath<DeviceId>,
) -> Result<Json<DeviceMonitoring>, ApiError> {
    let quarantined_since = state.store().quarantined_since(device).await?;
    let last_report_at = state.store().metrics_reported_at(device).await?;
    let alarms = state
        .store()
        .list_alarms(&AlarmFilter {
            device: Some(device),
            active: Some(true),
            limit: 100,
            ..Default::default()
        })
        .await?;
    Ok(Json(DeviceMonitoring {
        device_id: device.to_string(),
        quarantined_since: quarantined_since.map(rfc3339),
        last_metrics_at: state.monitoring().last_seen_ms(&device.to_string()).map(ms),
        last_report_at: last_report_at.map(rfc3339),
        active_alarms: alarms.into_iter().map(Into::into).collect(),
    }))
}
