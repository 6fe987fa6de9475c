//! Decision endpoints for message brokers, compatible with EMQX's HTTP authentication and
//! authorisation hooks: the broker asks, Sigil decides with the Cedar policies on the device's
//! current facts (lifecycle state, certificate status), and says which policies decided.
//!
//! Configure EMQX with a bearer token in the hook's headers and bodies such as
//! `{"username": "${cert_common_name}"}` (authentication) and
//! `{"username": "${cert_common_name}", "topic": "${topic}", "action": "${action}"}`
//! (authorisation); a Sigil device certificate's CN is its device id.

use axum::extract::State;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use sigil_audit::{AuditEvent, Outcome};
use sigil_policy::{OperatorContext, Principal, Target};

use super::{ApiError, ApiJson, AppState, Caller, Problem};

#[derive(Debug, Deserialize, ToSchema)]
pub struct BrokerRequest {
    /// The device id (the certificate's CN).
    pub username: String,
    #[serde(default)]
    pub clientid: Option<String>,
    /// For authorisation: the topic or topic filter.
    #[serde(default)]
    pub topic: Option<String>,
    /// For authorisation: `publish` or `subscribe`.
    #[serde(default)]
    pub action: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BrokerDecision {
    /// `allow` or `deny`, as EMQX expects.
    pub result: &'static str,
    pub is_superuser: bool,
    /// The policies that determined the decision (Sigil's addition; EMQX ignores it).
    pub reasons: Vec<String>,
}

async fn decide(
    state: &AppState,
    caller: &Caller,
    req: &BrokerRequest,
    action: &str,
    target: Target,
) -> Result<Json<BrokerDecision>, ApiError> {
    let now = state.now();
    let facts = sigil_authority::access::device_facts(state.store(), &req.username, now).await?;
    let decision = state
        .policy()
        .decide(
            &Principal::Device(facts.clone()),
            action,
            &target,
            &OperatorContext::default(),
        )
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    if !decision.allowed {
        let event = AuditEvent::new(
            now,
            sigil_audit::Actor::device(&facts.id),
            &format!("broker.{action}"),
            format!("device:{}", facts.id),
            Outcome::Denied,
            serde_json::json!({
                "target": target,
                "reasons": decision.reasons,
                "state": facts.state,
                "certificate_status": facts.certificate_status,
                "clientid": req.clientid,
                "broker": caller.actor().id,
            }),
        );
        if let Err(e) = state.store().append_audit(vec![event]).await {
            tracing::error!(error = %e, "could not record a broker denial");
        }
    }
    Ok(Json(BrokerDecision {
        result: if decision.allowed { "allow" } else { "deny" },
        is_superuser: false,
        reasons: decision.reasons,
    }))
}

/// EMQX HTTP authentication hook: may this device connect?
#[utoipa::path(post, path = "/api/v1/broker/emqx/authn", tag = "access", request_body = BrokerRequest,
    responses((status = 200, body = BrokerDecision), (status = 401, body = Problem)))]
pub async fn authn(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(req): ApiJson<BrokerRequest>,
) -> Result<Json<BrokerDecision>, ApiError> {
    decide(
        &state,
        &caller,
        &req,
        "connect",
        Target::Broker("emqx".into()),
    )
    .await
}

/// EMQX HTTP authorisation hook: may this device publish or subscribe to this topic?
#[utoipa::path(post, path = "/api/v1/broker/emqx/authz", tag = "access", request_body = BrokerRequest,
    responses((status = 200, body = BrokerDecision), (status = 401, body = Problem), (status = 422, body = Problem)))]
pub async fn authz(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(req): ApiJson<BrokerRequest>,
) -> Result<Json<BrokerDecision>, ApiError> {
    let action = match req.action.as_deref() {
        Some("publish") => "publish",
        Some("subscribe") => "subscribe",
        other => {
            return Err(ApiError::invalid(format!(
                "action must be publish or subscribe, not {other:?}"
            )));
        }
    };
    let topic = req
        .topic
        .clone()
        .filter(|t| !t.is_empty() && t.chars().count() <= 1024)
        .ok_or_else(|| ApiError::invalid("topic: 1 to 1024 characters"))?;
    decide(&state, &caller, &req, action, Target::Topic(topic)).await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExplainRequest {
    /// `{"device": {...facts}}`, `{"operator": {"id", "roles"}}` or `{"token": {"id", "roles", "scopes"}}`.
    #[schema(value_type = Object)]
    pub principal: Principal,
    pub action: String,
    /// `{"topic": "..."}`, `{"broker": "..."}` or `{"kind": "..."}`.
    #[schema(value_type = Object)]
    pub resource: Target,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub context: OperatorContext,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ExplainResponse {
    /// `allow` or `deny`.
    pub decision: &'static str,
    /// The policies that determined it: the permits that allowed it, or the forbids that denied
    /// it (none: nothing permitted it).
    pub reasons: Vec<String>,
    pub errors: Vec<String>,
}

/// Ask the policy engine what it would decide, and why, without doing anything.
#[utoipa::path(post, path = "/api/v1/policy/explain", tag = "access", request_body = ExplainRequest,
    responses((status = 200, body = ExplainResponse), (status = 422, body = Problem)))]
pub async fn explain(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<ExplainRequest>,
) -> Result<Json<ExplainResponse>, ApiError> {
    let d = state
        .policy()
        .decide(&req.principal, &req.action, &req.resource, &req.context)
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    Ok(Json(ExplainResponse {
        decision: if d.allowed { "allow" } else { "deny" },
        reasons: d.reasons,
        errors: d.errors,
    }))
}
