//! Staged rollouts of a release (operators), and the device side: its assignment and its
//! reports (mTLS).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use sigil_authority::rfc3339;
use sigil_authority::rollouts::{GroupProgress, NewRollout, RolloutAction, RolloutView};
use sigil_domain::{DeviceId, ProductId};
use sigil_store::{DeviceSelector, UpdateReport};
use sigil_update::rollout::{Plan, format_percent, parse_percent};

use super::{ApiError, ApiJson, ApiPath, AppState, Caller, Problem};

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SelectorRequest {
    #[serde(default)]
    pub site: Option<String>,
    #[serde(default)]
    pub tag: Option<String>,
    /// Lifecycle states (default `provisioned` and `active`).
    #[serde(default)]
    pub states: Vec<String>,
    /// Only these devices.
    #[serde(default)]
    pub devices: Vec<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RolloutRequest {
    /// The release's version (it must be published).
    pub release: String,
    #[serde(default)]
    pub devices: SelectorRequest,
    /// Cumulative shares, e.g. `["1%", "10%", "50%", "100%"]`.
    pub groups: Vec<String>,
    /// A group advances when this share of its devices installed, e.g. `95%`.
    pub success_threshold: String,
    /// The rollout halts when failures, rejections or timeouts (each apart) reach this share.
    pub error_threshold: String,
    /// Reports of one failure kind needed before its share is judged (default 3).
    #[serde(default)]
    pub min_sample: Option<u32>,
    /// Wait for an operator's approval between groups.
    #[serde(default)]
    pub approval: bool,
    /// Daily maintenance window in UTC, `HH:MM-HH:MM`: devices are assigned only inside it.
    #[serde(default)]
    pub window: Option<String>,
    /// New assignments per minute at most.
    #[serde(default)]
    pub rate_per_minute: Option<u32>,
    /// A device that reports no outcome within this many seconds counts as timed out
    /// (default 3600).
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
    /// Ship a release older than the product's newest (needs `rollout.rollback`, and a
    /// second factor for people).
    #[serde(default)]
    pub rollback: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct GroupResponse {
    /// Cumulative share, e.g. `10%`.
    pub share: String,
    /// Devices this group and those before it reach now.
    pub reach: u64,
    pub assigned: u64,
    pub in_flight: u64,
    pub installed: u64,
    pub failed: u64,
    pub rejected: u64,
    pub timed_out: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RolloutResponse {
    pub id: String,
    pub product_id: String,
    pub release: String,
    pub target: String,
    /// `running`, `awaiting-approval`, `paused`, `stopped` or `completed`.
    pub state: String,
    /// The group being rolled out (1-based).
    pub current_group: u32,
    /// Why it is in its state: the threshold that triggered a decision, or who acted.
    pub reason: String,
    pub rollback: bool,
    pub success_threshold: String,
    pub error_threshold: String,
    pub min_sample: u32,
    pub approval: bool,
    pub window: Option<String>,
    pub rate_per_minute: Option<u32>,
    pub timeout_seconds: u64,
    #[schema(value_type = Object)]
    pub selector: serde_json::Value,
    /// Devices the rollout may reach (those that matched, and those that joined since).
    pub devices: u64,
    pub groups: Vec<GroupResponse>,
    pub created_by: String,
    pub created_at: String,
    pub updated_at: String,
}

impl From<RolloutView> for RolloutResponse {
    fn from(v: RolloutView) -> Self {
        let group = |g: &GroupProgress| GroupResponse {
            share: format_percent(g.share_basis_points),
            reach: g.reach,
            assigned: g.assigned,
            in_flight: g.in_flight,
            installed: g.installed,
            failed: g.failed,
            rejected: g.rejected,
            timed_out: g.timed_out,
        };
        Self {
            id: v.record.id,
            product_id: v.record.product_id,
            release: v.release_version,
            target: v.target_name,
            state: v.record.state,
            current_group: v.record.current_group + 1,
            reason: v.record.reason,
            rollback: v.record.rollback,
            success_threshold: format_percent(v.plan.success_threshold),
            error_threshold: format_percent(v.plan.error_threshold),
            min_sample: v.plan.min_sample,
            approval: v.plan.approval,
            window: v.record.window,
            rate_per_minute: v.record.rate_per_minute,
            timeout_seconds: v.record.timeout_seconds,
            selector: serde_json::to_value(&v.record.selector).unwrap_or_default(),
            devices: v.devices,
            groups: v.groups.iter().map(group).collect(),
            created_by: v.record.created_by,
            created_at: rfc3339(v.record.created_at),
            updated_at: rfc3339(v.record.updated_at),
        }
    }
}

/// A rollout id (a UUID), checked before it reaches the store.
pub struct RolloutId(String);

impl std::str::FromStr for RolloutId {
    type Err = ApiError;
    fn from_str(s: &str) -> Result<Self, ApiError> {
        let shaped = s.len() == 36
            && s.char_indices().all(|(i, c)| match i {
                8 | 13 | 18 | 23 => c == '-',
                _ => c.is_ascii_hexdigit(),
            });
        if !shaped {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid-id",
                "Invalid identifier",
                "a rollout id is a UUID",
            ));
        }
        Ok(Self(s.to_ascii_lowercase()))
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RolloutList {
    pub items: Vec<RolloutResponse>,
}

fn new_rollout(req: RolloutRequest) -> Result<NewRollout, ApiError> {
    let percent = |field: &str, text: &str| {
        parse_percent(text).map_err(|e| ApiError::invalid(format!("{field}: {e}")))
    };
    if req.groups.len() > 20 {
        return Err(ApiError::invalid("groups: at most 20"));
    }
    let groups = req
        .groups
        .iter()
        .map(|g| percent("groups", g))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(NewRollout {
        release_version: req.release,
        selector: DeviceSelector {
            site: req.devices.site,
            tag: req.devices.tag,
            states: req.devices.states,
            devices: req.devices.devices,
        },
        plan: Plan {
            groups,
            success_threshold: percent("success_threshold", &req.success_threshold)?,
            error_threshold: percent("error_threshold", &req.error_threshold)?,
            min_sample: req.min_sample.unwrap_or(3),
            approval: req.approval,
        },
        window: req.window,
        rate_per_minute: req.rate_per_minute,
        timeout: std::time::Duration::from_secs(req.timeout_seconds.unwrap_or(3600)),
        rollback: req.rollback,
    })
}

/// Start a staged rollout of a published release to the product's devices.
#[utoipa::path(post, path = "/api/v1/products/{id}/rollouts", tag = "updates", request_body = RolloutRequest,
    responses((status = 201, body = RolloutResponse), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn create_rollout(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(product): ApiPath<ProductId>,
    ApiJson(req): ApiJson<RolloutRequest>,
) -> Result<(StatusCode, Json<RolloutResponse>), ApiError> {
    let actor = caller.actor();
    let result = async {
        let new = new_rollout(req)?;
        // A downgrade is a second right, checked here: the route's is rollout.manage.
        if new.rollback && !super::auth::allows(&state, &caller, "rollout.rollback", "rollout") {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "rollback-needs-right",
                "Forbidden",
                "a rollback installs an older release: it needs rollout.rollback (with a second factor for people)",
            ));
        }
        Ok(state.create_rollout(&actor, &product.to_string(), new).await?)
    }
    .await;
    let view = state
        .audit_refusal(
            &actor,
            "rollout.create",
            format!("product:{product}"),
            result,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(view.into())))
}

/// A product's rollouts, newest first.
#[utoipa::path(get, path = "/api/v1/products/{id}/rollouts", tag = "updates",
    responses((status = 200, body = RolloutList), (status = 404, body = Problem)))]
pub async fn list_rollouts(
    State(state): State<AppState>,
    ApiPath(product): ApiPath<ProductId>,
) -> Result<Json<RolloutList>, ApiError> {
    let views = state.product_rollouts(&product.to_string()).await?;
    Ok(Json(RolloutList {
        items: views.into_iter().map(Into::into).collect(),
    }))
}

/// A rollout and its group progress.
#[utoipa::path(get, path = "/api/v1/rollouts/{id}", tag = "updates",
    params(("id" = String, Path, format = "uuid")),
    responses((status = 200, body = RolloutResponse), (status = 404, body = Problem)))]
pub async fn get_rollout(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<RolloutId>,
) -> Result<Json<RolloutResponse>, ApiError> {
    Ok(Json(state.rollout_view(&id.0).await?.into()))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RolloutActionRequest {
    /// `pause`, `resume`, `approve` (the next group, after awaiting approval), `stop` (for
    /// good) or `retry-failed` (assign again the devices that failed, rejected or timed out).
    pub action: ActionName,
    /// Why, kept in the rollout's reason and the audit log.
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ActionName {
    Pause,
    Resume,
    Approve,
    Stop,
    RetryFailed,
}

impl From<ActionName> for RolloutAction {
    fn from(a: ActionName) -> Self {
        match a {
            ActionName::Pause => Self::Pause,
            ActionName::Resume => Self::Resume,
            ActionName::Approve => Self::Approve,
            ActionName::Stop => Self::Stop,
            ActionName::RetryFailed => Self::RetryFailed,
        }
    }
}

/// Pause, resume, approve, stop or retry the failed.
#[utoipa::path(post, path = "/api/v1/rollouts/{id}/actions", tag = "updates", request_body = RolloutActionRequest,
    params(("id" = String, Path, format = "uuid")),
    responses((status = 200, body = RolloutResponse), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn act(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiPath(id): ApiPath<RolloutId>,
    ApiJson(req): ApiJson<RolloutActionRequest>,
) -> Result<Json<RolloutResponse>, ApiError> {
    let actor = caller.actor();
    let result = async {
        // Taking a rollback further (to more devices) needs the rollback right, like starting
        // one: rollout.manage alone only pauses or stops it.
        let widens = matches!(req.action, ActionName::Resume | ActionName::Approve | ActionName::RetryFailed);
        if widens
            && state.rollout_view(&id.0).await?.record.rollback
            && !super::auth::allows(&state, &caller, "rollout.rollback", "rollout")
        {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "rollback-needs-right",
                "Forbidden",
                "this rollout installs an older release: taking it further needs rollout.rollback (with a second factor for people)",
            ));
        }
        Ok(state
            .act_on_rollout(&actor, &id.0, req.action.into(), req.reason.as_deref())
            .await?)
    }
    .await;
    let view = state
        .audit_refusal(&actor, "rollout.act", format!("rollout:{}", id.0), result)
        .await?;
    Ok(Json(view.into()))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AssignmentResponse {
    pub rollout_id: String,
    /// The TUF target to install, e.g. `1.4.2/firmware.bin`.
    pub target: String,
    pub version: String,
    /// The operator declared this a rollback: the device may install an older version.
    pub rollback: bool,
    /// `assigned`, `downloading` or `installing`.
    pub status: String,
}

/// The device's identity from its client certificate (mTLS), a refusal recorded.
async fn device_of(
    state: &AppState,
    peer: Option<Extension<sigil_http::PeerCertificate>>,
    action: &str,
) -> Result<DeviceId, ApiError> {
    let peer = peer
        .map(|Extension(p)| p)
        .unwrap_or(sigil_http::PeerCertificate(None));
    let identity = state
        .current_identity(peer.der())
        .await
        .map_err(ApiError::from);
    let (device, _) = state
        .audit_refusal(
            &sigil_audit::Actor::device("unknown"),
            action,
            "device".into(),
            identity,
        )
        .await?;
    Ok(device)
}

/// What the device (authenticated by its current certificate, mTLS) should install now:
/// `204` when nothing.
#[utoipa::path(get, path = "/api/v1/device/assignment", tag = "updates", security(()),
    responses((status = 200, body = AssignmentResponse), (status = 204), (status = 401, body = Problem)))]
pub async fn device_assignment(
    State(state): State<AppState>,
    peer: Option<Extension<sigil_http::PeerCertificate>>,
) -> Result<Response, ApiError> {
    let device = device_of(&state, peer, "update.assignment_read").await?;
    Ok(match state.device_assignment(device).await? {
        Some(a) => Json(AssignmentResponse {
            rollout_id: a.rollout_id,
            target: a.target_name,
            version: a.release_version,
            rollback: a.rollback,
            status: a.status,
        })
        .into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    })
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateReportRequest {
    pub rollout_id: String,
    /// `downloading`, `installing`, `installed`, `failed` (download or install went wrong, or
    /// the new slot was unhealthy) or `rejected` (verification failed, or a downgrade).
    pub status: String,
    #[serde(default)]
    pub reason: Option<String>,
    /// The version the device runs now (required with `installed`).
    #[serde(default)]
    pub version: Option<String>,
}

/// The device reports on its update (mTLS).
#[utoipa::path(post, path = "/api/v1/device/update-reports", tag = "updates", security(()), request_body = UpdateReportRequest,
    responses((status = 204), (status = 401, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn device_report(
    State(state): State<AppState>,
    peer: Option<Extension<sigil_http::PeerCertificate>>,
    ApiJson(req): ApiJson<UpdateReportRequest>,
) -> Result<StatusCode, ApiError> {
    let device = device_of(&state, peer, "update.report").await?;
    let actor = sigil_audit::Actor::device(&device.to_string());
    let result = state
        .report_update(
            device,
            UpdateReport {
                rollout_id: req.rollout_id,
                status: req.status,
                reason: req.reason,
                version: req.version,
            },
        )
        .await
        .map_err(ApiError::from);
    state
        .audit_refusal(&actor, "update.report", format!("device:{device}"), result)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
