//! The access policy as a managed artefact: read it, apply a new version (validated against
//! the schema, audited with its hash), list versions, roll back.

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use sigil_policy::{PolicyEngine, Target};
use sigil_store::PolicyVersion;

use super::auth::Caller;
use super::{ApiError, ApiJson, AppState, Problem};

/// Largest policy text accepted.
pub const MAX_POLICY_BYTES: usize = 256 * 1024;

#[derive(Serialize, ToSchema)]
pub struct PolicyView {
    /// 0: the built-in defaults.
    pub version: i64,
    pub sha256: String,
    /// The `@id` of every policy in force.
    pub policies: Vec<String>,
    pub text: String,
}

#[derive(Serialize, ToSchema)]
pub struct VersionView {
    pub version: i64,
    pub sha256: String,
    pub comment: String,
    pub created_at: String,
    pub created_by: String,
}

fn version_view(v: &PolicyVersion) -> VersionView {
    VersionView {
        version: v.version,
        sha256: v.sha256.clone(),
        comment: v.comment.clone(),
        created_at: sigil_authority::rfc3339(v.created_at),
        created_by: v.created_by.clone(),
    }
}

fn view(engine: &PolicyEngine, version: i64) -> PolicyView {
    PolicyView {
        version,
        sha256: hex::encode(sigil_ca::sha256(engine.text().as_bytes())),
        policies: engine.policy_ids(),
        text: engine.text().to_owned(),
    }
}

/// The policy in force.
#[utoipa::path(get, path = "/api/v1/policy", tag = "access",
    responses((status = 200, body = PolicyView)))]
pub async fn current(State(state): State<AppState>) -> Json<PolicyView> {
    Json(view(&state.policy(), state.active_policy().version()))
}

/// Every applied version, newest first (version 0, the built-in defaults, is implicit).
#[utoipa::path(get, path = "/api/v1/policy/versions", tag = "access",
    responses((status = 200, body = [VersionView])))]
pub async fn versions(State(state): State<AppState>) -> Result<Json<Vec<VersionView>>, ApiError> {
    Ok(Json(
        state
            .store()
            .policy_versions()
            .await?
            .iter()
            .map(version_view)
            .collect(),
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApplyRequest {
    /// Cedar policies; each needs an `@id`, and all must validate against Sigil's schema.
    pub text: String,
    /// Why (kept with the version and in the audit log).
    pub comment: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    /// The version to restore (0: the built-in defaults). It is applied again as a new version.
    pub version: i64,
    #[serde(default)]
    pub comment: Option<String>,
}

/// Validate, refuse a policy that would lock the caller out of policy changes, record and
/// install it.
async fn install(
    state: &AppState,
    caller: &Caller,
    text: &str,
    comment: &str,
    origin: serde_json::Value,
) -> Result<(StatusCode, Json<PolicyView>), ApiError> {
    if text.len() > MAX_POLICY_BYTES {
        return Err(ApiError::invalid(format!(
            "text: at most {MAX_POLICY_BYTES} bytes"
        )));
    }
    if comment.trim().is_empty() || comment.chars().count() > 1024 {
        return Err(ApiError::invalid(
            "comment: 1 to 1024 characters, saying why",
        ));
    }
    let engine = PolicyEngine::new(text).map_err(|e| ApiError::invalid(format!("policy: {e}")))?;
    // Whoever applies a policy must still be able to apply the next one: otherwise a mistake
    // could not be rolled back through the API.
    let keeps_access = engine
        .decide(
            &caller.principal(),
            "policy.apply",
            &Target::Kind("policy".into()),
            &caller.context(),
        )
        .map(|d| d.allowed)
        .unwrap_or(false);
    if !keeps_access {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "policy-lockout",
            "Policy would lock you out",
            "under this policy you could no longer apply policies (or roll this one back); refusing it",
        ));
    }
    let previous = state.policy();
    let now = state.now();
    let mut existing: Vec<sigil_policy::Principal> = state
        .store()
        .list_api_tokens()
        .await?
        .into_iter()
        .filter(|t| t.revoked_at.is_none() && t.expires_at.is_none_or(|e| e > now))
        .map(|t| sigil_policy::Principal::Token {
            id: t.id,
            roles: vec![t.role],
            scopes: t.scopes,
        })
        .collect();
    existing.extend(state.store().list_operators().await?.into_iter().map(|o| {
        sigil_policy::Principal::Operator {
            id: o.id,
            roles: vec![o.role],
        }
    }));
    let widening = super::grants::check_no_self_widening(&previous, &engine, caller, &existing);
    state
        .audit_refusal(
            &caller.actor(),
            "access.denied",
            "policy:apply".into(),
            widening,
        )
        .await?;
    let mut details = origin;
    if let Some(o) = details.as_object_mut() {
        o.insert(
            "previous_version".into(),
            state.active_policy().version().into(),
        );
        o.insert(
            "previous_sha256".into(),
            hex::encode(sigil_ca::sha256(previous.text().as_bytes())).into(),
        );
        o.insert("policies".into(), engine.policy_ids().into());
    }
    let stored = state
        .store()
        .apply_policy(&caller.actor(), text, comment.trim(), details, state.now())
        .await?;
    let view = view(&engine, stored.version);
    state.active_policy().install(engine, stored.version);
    tracing::info!(version = stored.version, sha256 = %stored.sha256, "access policy applied");
    Ok((StatusCode::CREATED, Json(view)))
}

/// Apply a new policy version.
#[utoipa::path(post, path = "/api/v1/policy", tag = "access", request_body = ApplyRequest,
    responses((status = 201, body = PolicyView), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn apply(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(req): ApiJson<ApplyRequest>,
) -> Result<(StatusCode, Json<PolicyView>), ApiError> {
    install(
        &state,
        &caller,
        &req.text,
        &req.comment,
        serde_json::json!({}),
    )
    .await
}

/// Restore an earlier version (applied again as a new version).
#[utoipa::path(post, path = "/api/v1/policy/rollback", tag = "access", request_body = RollbackRequest,
    responses((status = 201, body = PolicyView), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn rollback(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(req): ApiJson<RollbackRequest>,
) -> Result<(StatusCode, Json<PolicyView>), ApiError> {
    let text = if req.version == 0 {
        sigil_policy::DEFAULT_POLICIES.to_owned()
    } else {
        state.store().policy_version(req.version).await?.text
    };
    let comment = req
        .comment
        .unwrap_or_else(|| format!("rollback to version {}", req.version));
    install(
        &state,
        &caller,
        &text,
        &comment,
        serde_json::json!({"rollback_to": req.version}),
    )
    .await
}

#[derive(Serialize, ToSchema)]
pub struct VersionText {
    pub version: i64,
    pub sha256: String,
    pub comment: String,
    /// Absent for version 0, the built-in defaults.
    pub created_at: Option<String>,
    pub created_by: Option<String>,
    pub text: String,
}

/// One applied version, with its text (version 0: the built-in defaults), to compare with
/// another before rolling back to it.
#[utoipa::path(get, path = "/api/v1/policy/versions/{version}", tag = "access",
    params(("version" = i64, Path, minimum = 0)),
    responses((status = 200, body = VersionText), (status = 404, body = Problem)))]
pub async fn version(
    State(state): State<AppState>,
    axum::extract::Path(version): axum::extract::Path<String>,
) -> Result<Json<VersionText>, ApiError> {
    let version: i64 = version
        .parse()
        .ok()
        .filter(|v| *v >= 0)
        .ok_or_else(|| ApiError::not_found(format!("no policy version `{version}`")))?;
    if version == 0 {
        let text = sigil_policy::DEFAULT_POLICIES.to_owned();
        return Ok(Json(VersionText {
            version,
            sha256: hex::encode(sigil_ca::sha256(text.as_bytes())),
            comment: "the built-in defaults".to_owned(),
            created_at: None,
            created_by: None,
            text,
        }));
    }
    let v = state.store().policy_version(version).await?;
    Ok(Json(VersionText {
        version,
        sha256: v.sha256,
        comment: v.comment,
        created_at: Some(sigil_authority::rfc3339(v.created_at)),
        created_by: Some(v.created_by),
        text: v.text,
    }))
}
