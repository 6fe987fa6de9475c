//! Who is calling, and may they: authentication (API bearer tokens for automation, session
//! cookies for people) and authorisation of every route by the Cedar policies, with every
//! refusal in the audit log.

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use sigil_audit::{Actor, AuditEvent, Outcome};
use sigil_authority::token_hash;
use sigil_http::peer_ip;
use sigil_policy::{OperatorContext, Principal, Target};

use super::{ApiError, AppState, Problem};

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "sigil_session";
/// Header a browser session must send with every request that changes something: a cross-site
/// form cannot set it (defence in depth beside `SameSite=Strict`).
pub const CSRF_HEADER: &str = "x-sigil-csrf";
/// How long a session lasts (absolute; people log in again after a working day).
pub const SESSION_LIFETIME: time::Duration = time::Duration::hours(8);
/// Consecutive failed logins that lock an account, and for how long.
pub const LOCK_AFTER: i64 = 5;
pub const LOCK_FOR: time::Duration = time::Duration::minutes(15);
/// Login attempts per source address per minute, whatever the account.
pub const LOGINS_PER_MINUTE: u32 = 20;
/// Roles that can change trust: their accounts always have a second factor.
pub const MFA_ROLES: [&str; 2] = ["admin", "security-officer"];
/// The built-in roles (the default policies give each its rights).
pub const ROLES: [&str; 6] = [
    "admin",
    "security-officer",
    "provisioner",
    "operator",
    "auditor",
    "broker",
];

/// How the caller proved who it is.
#[derive(Debug, Clone)]
pub enum Credential {
    /// An API token, with its scopes.
    Token { scopes: Vec<String> },
    /// A person's session cookie (its hash identifies the session), and whether the login
    /// used a second factor.
    Session {
        username: String,
        mfa: bool,
        session_hash: String,
    },
}

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Token id or operator id.
    pub id: String,
    pub role: String,
    pub credential: Credential,
    pub source_ip: String,
}

impl Caller {
    pub fn actor(&self) -> Actor {
        Actor::operator(&self.id)
    }

    pub(crate) fn principal(&self) -> Principal {
        match &self.credential {
            Credential::Token { scopes } => Principal::Token {
                id: self.id.clone(),
                roles: vec![self.role.clone()],
                scopes: scopes.clone(),
            },
            Credential::Session { .. } => Principal::Operator {
                id: self.id.clone(),
                roles: vec![self.role.clone()],
            },
        }
    }

    pub(crate) fn context(&self) -> OperatorContext {
        OperatorContext {
            mfa: matches!(self.credential, Credential::Session { mfa: true, .. }),
            source_ip: self.source_ip.clone(),
        }
    }
}

fn source_ip(request: &Request) -> String {
    peer_ip(request).map_or_else(|| "unknown".to_owned(), |ip| ip.to_string())
}

/// What a route needs: any authenticated caller, or the policy's permission for an action on
/// a kind of resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    Authenticated,
    Action(&'static str, &'static str),
}

/// The access rule of every protected route, in one table to review. A route missing here is
/// refused (fail closed); a test checks every route has one.
pub fn rule(method: &Method, route: &str) -> Option<Rule> {
    use Rule::{Action, Authenticated};
    let get = method == Method::GET;
    let post = method == Method::POST;
    Some(match route {
        "/api/v1/auth/me" | "/api/v1/auth/logout" => Authenticated,
        "/api/v1/products" if post => Action("inventory.write", "product"),
        "/api/v1/products" | "/api/v1/products/{id}" | "/api/v1/products/{id}/declaration"
            if get =>
        {
            Action("inventory.read", "product")
        }
        "/api/v1/products/{id}/declaration" if method == Method::PUT => {
            Action("inventory.write", "product")
        }
        "/api/v1/products/{id}/manufacturer-cas" if post => {
            Action("manufacturer_ca.manage", "manufacturer_ca")
        }
        "/api/v1/products/{id}/manufacturer-cas" if get => {
            Action("inventory.read", "manufacturer_ca")
        }
        "/api/v1/artefacts" | "/api/v1/products/{id}/releases" if post => {
            Action("release.publish", "release")
        }
        "/api/v1/products/{id}/update-channel/signatures" if post => {
            Action("release.publish", "release")
        }
        "/api/v1/products/{id}/update-channel"
        | "/api/v1/products/{id}/update-channel/rotations"
            if post =>
        {
            Action("update.trust", "update_channel")
        }
        "/api/v1/products/{id}/releases"
        | "/api/v1/products/{id}/update-channel"
        | "/api/v1/products/{id}/rollouts"
        | "/api/v1/rollouts/{id}"
            if get =>
        {
            Action("release.read", "release")
        }
        "/api/v1/products/{id}/rollouts" | "/api/v1/rollouts/{id}/actions" if post => {
            Action("rollout.manage", "rollout")
        }
        route
            if route.starts_with("/api/v1/vuln")
                || route.starts_with("/api/v1/cases")
                || route.contains("/disclosure-")
                || route.contains("sbom")
                || route.ends_with("/findings")
                || route.ends_with("/vex") =>
        {
            return vulnerability_rule(method, route);
        }
        "/api/v1/sites" if get => Action("inventory.read", "site"),
        "/api/v1/sites/{name}" if method == Method::PUT => Action("inventory.write", "site"),
        "/api/v1/devices" | "/api/v1/devices/import" if post => Action("device.create", "device"),
        "/api/v1/devices"
        | "/api/v1/devices/{id}"
        | "/api/v1/devices/export"
        | "/api/v1/inventory/summary"
            if get =>
        {
            Action("inventory.read", "device")
        }
        "/api/v1/devices/{id}/posture" if get => Action("posture.read", "posture"),
        "/api/v1/devices/{id}/updates" if get => Action("release.read", "release"),
        "/api/v1/devices/{id}" if method == Method::PATCH => Action("inventory.write", "device"),
        "/api/v1/devices/{id}/activate"
        | "/api/v1/devices/{id}/suspend"
        | "/api/v1/devices/{id}/resume"
        | "/api/v1/devices/{id}/retire"
            if post =>
        {
            Action("device.lifecycle", "device")
        }
        "/api/v1/devices/{id}/revoke" if post => Action("certificate.revoke", "certificate"),
        "/api/v1/devices/{id}/enrollment-tokens" if post => {
            Action("enrollment_token.create", "enrollment_token")
        }
        "/api/v1/devices/{id}/certificates" if post => Action("certificate.issue", "certificate"),
        // Foreign certificates are inventory records (never trust): kept by those who keep
        // the inventory, read by those who read certificates.
        "/api/v1/devices/{id}/foreign-certificates" if post => {
            Action("inventory.write", "certificate")
        }
        "/api/v1/devices/{id}/foreign-certificates" if get => {
            Action("certificate.read", "certificate")
        }
        "/api/v1/devices/{id}/foreign-certificates/{sha256}" if method == Method::DELETE => {
            Action("inventory.write", "certificate")
        }
        route if monitoring_route(route) => return monitoring_rule(method, route),
        "/api/v1/broker/emqx/authn" | "/api/v1/broker/emqx/authz" if post => {
            Action("broker.decide", "device")
        }
        "/api/v1/policy/explain" if post => Action("policy.read", "policy"),
        "/api/v1/policy" | "/api/v1/policy/versions" | "/api/v1/policy/versions/{version}"
            if get =>
        {
            Action("policy.read", "policy")
        }
        "/api/v1/policy" | "/api/v1/policy/rollback" if post => Action("policy.apply", "policy"),
        "/api/v1/certificates" | "/api/v1/certificates/{serial}" | "/api/v1/profiles" if get => {
            Action("certificate.read", "certificate")
        }
        route
            if route.starts_with("/api/v1/audit/")
                || route.starts_with("/api/v1/compliance")
                || route.starts_with("/api/v1/operators")
                || route.starts_with("/api/v1/tokens")
                || route == "/api/v1/evidence"
                || route == "/api/v1/services/certificates" =>
        {
            return oversight_rule(method, route);
        }
        _ => return None,
    })
}

fn monitoring_route(route: &str) -> bool {
    route.starts_with("/api/v1/alarms")
        || route.starts_with("/api/v1/monitoring/")
        || matches!(
            route,
            "/api/v1/devices/{id}/monitoring"
                | "/api/v1/devices/{id}/quarantine"
                | "/api/v1/devices/{id}/release"
        )
}

/// The rules of behaviour monitoring: alarms, security profiles, quarantine.
fn monitoring_rule(method: &Method, route: &str) -> Option<Rule> {
    use Rule::Action;
    let get = method == Method::GET;
    let post = method == Method::POST;
    Some(match route {
        "/api/v1/monitoring/status"
        | "/api/v1/monitoring/profiles"
        | "/api/v1/alarms"
        | "/api/v1/alarms/{id}"
        | "/api/v1/devices/{id}/monitoring"
            if get =>
        {
            Action("monitoring.read", "monitoring")
        }
        "/api/v1/monitoring/profiles" if method == Method::PUT => {
            Action("monitoring.profiles", "monitoring")
        }
        "/api/v1/alarms/{id}/decision" | "/api/v1/devices/{id}/quarantine" if post => {
            Action("monitoring.manage", "monitoring")
        }
        // Leaving quarantine restores trust: a second factor for people (the policy).
        "/api/v1/devices/{id}/release" if post => Action("device.release", "device"),
        _ => return None,
    })
}

/// The rules of the audit log, compliance, evidence, accounts and service certificates.
fn oversight_rule(method: &Method, route: &str) -> Option<Rule> {
    use Rule::Action;
    let get = method == Method::GET;
    let post = method == Method::POST;
    Some(match route {
        "/api/v1/audit/entries"
        | "/api/v1/audit/status"
        | "/api/v1/audit/checkpoint"
        | "/api/v1/audit/proof/inclusion"
        | "/api/v1/audit/proof/consistency"
        | "/api/v1/audit/export"
            if get =>
        {
            Action("audit.read", "audit")
        }
        "/api/v1/audit/checkpoint" if post => Action("audit.checkpoint", "audit"),
        "/api/v1/services/certificates" if post => Action("ca.manage", "service"),
        "/api/v1/evidence" if get => Action("evidence.export", "evidence"),
        "/api/v1/operators" | "/api/v1/tokens" if get => Action("operator.read", "operator"),
        "/api/v1/compliance/attestations" if post => Action("compliance.attest", "attestation"),
        "/api/v1/compliance/{framework}/evaluate" if post => {
            Action("compliance.evaluate", "compliance")
        }
        "/api/v1/compliance"
        | "/api/v1/compliance/attestations"
        | "/api/v1/compliance/{framework}/history"
        | "/api/v1/compliance/{framework}/report"
        | "/api/v1/compliance/{framework}"
        | "/api/v1/compliance/{framework}/devices/{id}"
            if get =>
        {
            Action("compliance.read", "compliance")
        }
        "/api/v1/operators" | "/api/v1/tokens" | "/api/v1/tokens/{id}/revoke" if post => {
            Action("operator.manage", "operator")
        }
        _ => return None,
    })
}

/// The rules of the vulnerability routes: feeds, SBOMs, findings, VEX, cases.
fn vulnerability_rule(method: &Method, route: &str) -> Option<Rule> {
    use Rule::Action;
    let get = method == Method::GET;
    let post = method == Method::POST;
    Some(match route {
        // The vulnerability data every product's findings rest on: a trust change.
        "/api/v1/vulndb/imports" if post => Action("vuln.import", "vulnerability"),
        "/api/v1/products/{id}/sboms" | "/api/v1/products/{id}/vex" if post => {
            Action("vuln.manage", "vulnerability")
        }
        "/api/v1/products/{id}/sboms"
        | "/api/v1/sboms/{id}"
        | "/api/v1/products/{id}/findings"
        | "/api/v1/products/{id}/vex"
        | "/api/v1/devices/{id}/findings"
        | "/api/v1/vuln-policy"
        | "/api/v1/cases"
        | "/api/v1/cases/{id}"
        | "/api/v1/cases/{id}/drafts/{stage}"
            if get =>
        {
            Action("vuln.read", "vulnerability")
        }
        "/api/v1/cases" if post => Action("vuln.manage", "vulnerability"),
        "/api/v1/disclosure-policy"
        | "/api/v1/products/{id}/disclosure-policy"
        | "/api/v1/disclosure-reports"
        | "/api/v1/disclosure-reports/{id}"
            if get =>
        {
            Action("vuln.read", "vulnerability")
        }
        // What the organisation promises reporters, published: governance.
        "/api/v1/disclosure-policy" | "/api/v1/products/{id}/disclosure-policy"
            if method == Method::PUT =>
        {
            Action("vuln.report", "vulnerability")
        }
        "/api/v1/disclosure-reports"
        | "/api/v1/disclosure-reports/{id}/acknowledge"
        | "/api/v1/disclosure-reports/{id}/reject"
            if post =>
        {
            Action("vuln.manage", "vulnerability")
        }
        // An accepted report adds an advisory every product's SBOMs are matched against: as
        // much a trust change as importing a feed.
        "/api/v1/disclosure-reports/{id}/accept" if post => Action("vuln.import", "vulnerability"),
        // What the organisation tells regulators, and how long it gives itself: governance.
        "/api/v1/cases/{id}/reports" if post => Action("vuln.report", "vulnerability"),
        "/api/v1/vuln-policy" if method == Method::PUT => Action("vuln.report", "vulnerability"),
        _ => return None,
    })
}

/// Authenticate, then authorise by the route's rule. Refusals of either kind are audited.
pub async fn guard(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map_or_else(
        || request.uri().path().to_owned(),
        |m| m.as_str().to_owned(),
    );
    let method = request.method().clone();
    let subject = format!("api:{method} {route}");
    let ip = source_ip(&request);
    let caller = match authenticate(&state, request.headers(), &method, &route, ip).await {
        Ok(caller) => caller,
        Err((id, e)) => {
            let actor = Actor::operator(id.as_deref().unwrap_or("unknown"));
            // A CSRF refusal is of an authenticated caller: an access decision, not a failed
            // authentication.
            if e.code == "csrf" {
                return state
                    .audit_refusal(&actor, "access.denied", subject, Err::<(), _>(e))
                    .await
                    .err()
                    .map_or_else(
                        || StatusCode::FORBIDDEN.into_response(),
                        |e| e.into_response(),
                    );
            }
            return state
                .authentication_failed(peer_ip(&request), &actor, "auth.failed", subject, e)
                .await
                .into_response();
        }
    };
    if let Err(e) = authorise(&state, &caller, &method, &route, &subject).await {
        return e.into_response();
    }
    request.extensions_mut().insert(caller);
    next.run(request).await
}

/// Whether the policy in force lets `caller` do `action` on a `kind` resource, for a handler
/// whose request needs a second right beside its route's (a policy error refuses).
pub(crate) fn allows(state: &AppState, caller: &Caller, action: &str, kind: &str) -> bool {
    state
        .policy()
        .decide(
            &caller.principal(),
            action,
            &Target::Kind(kind.into()),
            &caller.context(),
        )
        .is_ok_and(|d| d.allowed)
}

pub(crate) async fn authorise(
    state: &AppState,
    caller: &Caller,
    method: &Method,
    route: &str,
    subject: &str,
) -> Result<(), ApiError> {
    let rule = rule(method, route);
    let (action, kind) = match rule {
        Some(Rule::Authenticated) => return Ok(()),
        Some(Rule::Action(action, kind)) => (action, kind),
        None => ("unmapped", "unknown"),
    };
    // One snapshot of the policy for the decision and its explanation.
    let engine = state.policy();
    let decision = if rule.is_none() {
        None
    } else {
        match engine.decide(
            &caller.principal(),
            action,
            &Target::Kind(kind.into()),
            &caller.context(),
        ) {
            Ok(d) => Some(d),
            Err(e) => {
                tracing::error!(error = %e, action, "policy error: refusing");
                None
            }
        }
    };
    if let Some(d) = &decision
        && d.allowed
    {
        return Ok(());
    }
    let reasons = decision
        .as_ref()
        .map(|d| d.reasons.clone())
        .unwrap_or_default();
    // Say what would change the answer: a second factor only if with one it would be allowed.
    let mfa_would_allow = decision.is_some()
        && !caller.context().mfa
        && engine
            .decide(
                &caller.principal(),
                action,
                &Target::Kind(kind.into()),
                &OperatorContext {
                    mfa: true,
                    ..caller.context()
                },
            )
            .is_ok_and(|d| d.allowed);
    let other_forbids: Vec<&str> = reasons
        .iter()
        .map(String::as_str)
        .filter(|r| *r != "trust-changes-need-mfa")
        .collect();
    let detail = if rule.is_none() {
        "this route has no access rule, so it is refused".to_owned()
    } else if mfa_would_allow {
        format!("{action} changes trust and needs a session opened with a second factor (TOTP)")
    } else if reasons.iter().any(|r| r == "token-scope") {
        format!("this token's scopes do not cover {action}")
    } else if other_forbids.is_empty() {
        format!(
            "role `{}` may not {action}: no policy permits it",
            caller.role
        )
    } else {
        format!(
            "{action} is forbidden by policy {}",
            other_forbids.join(", ")
        )
    };
    let event = AuditEvent::new(
        state.now(),
        caller.actor(),
        "access.denied",
        subject.to_owned(),
        Outcome::Denied,
        serde_json::json!({"action": action, "resource": kind, "role": caller.role,
                           "reasons": reasons, "mfa": caller.context().mfa, "source_ip": caller.source_ip}),
    );
    if let Err(e) = state.store().append_audit(vec![event]).await {
        tracing::error!(error = %e, "could not record an access denial");
    }
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        "forbidden",
        "Forbidden",
        detail,
    ))
}

/// The caller, or why not (with the token or operator id when known).
async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    method: &Method,
    route: &str,
    source_ip: String,
) -> Result<Caller, (Option<String>, ApiError)> {
    let anonymous = |e: ApiError| (None, e);
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        return bearer(state, value, method, route, source_ip).await;
    }
    let Some(secret) = session_cookie(headers) else {
        return Err(anonymous(ApiError::unauthenticated(
            "missing credentials: send `Authorization: Bearer <token>` or log in for a session",
        )));
    };
    let hash = token_hash(&secret);
    let session = state
        .store()
        .find_session(hash.as_str())
        .await
        .map_err(|e| anonymous(e.into()))?
        .ok_or_else(|| anonymous(ApiError::unauthenticated("unknown session; log in again")))?;
    let known = Some(session.operator_id.clone());
    if session.revoked_at.is_some() {
        return Err((
            known,
            ApiError::unauthenticated("session has ended; log in again"),
        ));
    }
    if session.expires_at <= state.now() {
        return Err((
            known,
            ApiError::unauthenticated("session has expired; log in again"),
        ));
    }
    if session.operator_disabled {
        return Err((
            known,
            ApiError::unauthenticated("operator account is disabled"),
        ));
    }
    if *method != Method::GET && !headers.contains_key(CSRF_HEADER) {
        return Err((
            known,
            ApiError::new(
                StatusCode::FORBIDDEN,
                "csrf",
                "Missing CSRF header",
                format!("requests that change something must send the `{CSRF_HEADER}` header"),
            ),
        ));
    }
    Ok(Caller {
        id: session.operator_id,
        role: session.role,
        credential: Credential::Session {
            username: session.username,
            mfa: session.mfa,
            session_hash: hash.as_str().to_owned(),
        },
        source_ip,
    })
}

fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.to_owned())
}

/// Bearer tokens are random 256-bit secrets, so the database holds only their SHA-256; the
/// lookup is by that hash and the final comparison is constant-time.
async fn bearer(
    state: &AppState,
    value: &HeaderValue,
    method: &Method,
    route: &str,
    source_ip: String,
) -> Result<Caller, (Option<String>, ApiError)> {
    let anonymous = |e: ApiError| (None, e);
    let value = value.to_str().map_err(|_| {
        anonymous(ApiError::unauthenticated(
            "Authorization header is not valid ASCII",
        ))
    })?;
    let token = value
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            anonymous(ApiError::unauthenticated(
                "Authorization header must use the Bearer scheme",
            ))
        })?;
    let hash = token_hash(token);
    let record = state
        .store()
        .find_api_token(&hash)
        .await
        .map_err(|e| anonymous(e.into()))?
        .ok_or_else(|| anonymous(ApiError::unauthenticated("invalid API token")))?;
    if aws_lc_rs::constant_time::verify_slices_are_equal(
        record.token_hash.as_str().as_bytes(),
        hash.as_str().as_bytes(),
    )
    .is_err()
    {
        return Err(anonymous(ApiError::unauthenticated("invalid API token")));
    }
    if record.revoked_at.is_some() {
        return Err((
            Some(record.id),
            ApiError::unauthenticated("API token has been revoked"),
        ));
    }
    let now = state.now();
    if record.expires_at.is_some_and(|t| t <= now) {
        return Err((
            Some(record.id),
            ApiError::unauthenticated("API token has expired"),
        ));
    }
    if record
        .last_used_at
        .is_none_or(|t| now - t >= TOKEN_USE_INTERVAL)
    {
        // Best effort: a failure to record use must not lock every operator out, and it is
        // reported. The changes the caller makes are still logged under its token id.
        let details = serde_json::json!({"first_request": format!("{method} {route}")});
        if let Err(e) = state
            .store()
            .record_token_use(&record.id, now, TOKEN_USE_INTERVAL, details)
            .await
        {
            tracing::error!(error = %e, token = %record.id, "could not record token use in the audit log");
        }
    }
    Ok(Caller {
        id: record.id,
        role: record.role,
        credential: Credential::Token {
            scopes: record.scopes,
        },
        source_ip,
    })
}

/// How often a token's use is recorded: on first use, then at most once per interval.
const TOKEN_USE_INTERVAL: time::Duration = time::Duration::hours(1);

/// End this session.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth",
    responses((status = 204), (status = 401, body = Problem),
        (status = 422, body = Problem, description = "An API token is revoked, not logged out")))]
pub async fn logout(
    State(state): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
) -> Result<Response, ApiError> {
    let Credential::Session { session_hash, .. } = &caller.credential else {
        return Err(ApiError::invalid(
            "logout ends a session; API tokens are revoked instead",
        ));
    };
    state
        .store()
        .revoke_session(session_hash, &caller.id, state.now())
        .await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "sigil_session=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0",
        ),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use utoipa::OpenApi;

    use super::super::openapi::OPEN;

    #[test]
    fn every_documented_route_has_an_access_rule() {
        let doc = super::super::ApiDoc::openapi();
        let mut checked = 0;
        for (path, item) in &doc.paths.paths {
            if OPEN.contains(&path.as_str()) || path.starts_with("/.well-known/") {
                continue;
            }
            for (method, op) in [
                (Method::GET, &item.get),
                (Method::POST, &item.post),
                (Method::PUT, &item.put),
                (Method::PATCH, &item.patch),
                (Method::DELETE, &item.delete),
            ] {
                if op.is_some() {
                    assert!(
                        rule(&method, path).is_some(),
                        "{method} {path} has no access rule"
                    );
                    checked += 1;
                }
            }
        }
        assert!(checked >= 40, "only {checked} routes checked");
    }

    #[test]
    fn every_rule_names_a_known_resource_kind() {
        let doc = super::super::ApiDoc::openapi();
        for (path, item) in &doc.paths.paths {
            for (method, op) in [
                (Method::GET, &item.get),
                (Method::POST, &item.post),
                (Method::PUT, &item.put),
                (Method::PATCH, &item.patch),
            ] {
                if op.is_some()
                    && let Some(Rule::Action(_, kind)) = rule(&method, path)
                {
                    assert!(
                        super::super::grants::RESOURCE_KINDS.contains(&kind),
                        "{method} {path}: kind {kind} missing from RESOURCE_KINDS"
                    );
                }
            }
        }
    }

    #[test]
    fn unknown_routes_and_methods_have_no_rule() {
        assert_eq!(rule(&Method::DELETE, "/api/v1/devices/{id}"), None);
        assert_eq!(rule(&Method::GET, "/api/v1/devices/{id}/revoke"), None);
        assert_eq!(rule(&Method::GET, "/api/v1/nothing"), None);
    }
}
