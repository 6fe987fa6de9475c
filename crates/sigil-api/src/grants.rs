//! Nobody grants more than they hold. A new account, a new token and a new policy are each
//! compared, right by right, with what the caller may do under the policy in force: an account
//! or token whose role would allow anything its creator may not do is refused, and a policy that
//! would widen its applier's own rights must be applied by another administrator.

use std::collections::BTreeSet;

use axum::http::StatusCode;
use sigil_policy::{OperatorContext, PolicyEngine, Principal};

use super::ApiError;
use super::auth::Caller;

/// Every resource kind an API route names (`auth::rule`); a unit test keeps them in step.
pub const RESOURCE_KINDS: &[&str] = &[
    "attestation",
    "audit",
    "certificate",
    "compliance",
    "device",
    "enrollment_token",
    "evidence",
    "manufacturer_ca",
    "monitoring",
    "operator",
    "policy",
    "posture",
    "product",
    "release",
    "rollout",
    "service",
    "site",
    "update_channel",
    "vulnerability",
];

type Rights = BTreeSet<(String, String)>;

fn caller_rights(engine: &PolicyEngine, caller: &Caller) -> Rights {
    engine.rights(&caller.principal(), &caller.context(), RESOURCE_KINDS)
}

fn listed(rights: &Rights) -> String {
    rights
        .iter()
        .map(|(action, kind)| format!("{action} on {kind}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Refuse to create a principal (an operator of `role`, or a token of `role` with `scopes`)
/// that could do something `caller` cannot. An operator is judged at its strongest, with a
/// second factor.
pub fn check_grant(
    engine: &PolicyEngine,
    caller: &Caller,
    role: &str,
    scopes: Option<&[String]>,
) -> Result<(), ApiError> {
    let granted = match scopes {
        Some(scopes) => Principal::Token {
            id: "new".into(),
            roles: vec![role.to_owned()],
            scopes: scopes.to_vec(),
        },
        None => Principal::Operator {
            id: "new".into(),
            roles: vec![role.to_owned()],
        },
    };
    let strongest = OperatorContext {
        mfa: true,
        source_ip: caller.source_ip.clone(),
    };
    let excess: Rights = engine
        .rights(&granted, &strongest, RESOURCE_KINDS)
        .difference(&caller_rights(engine, caller))
        .cloned()
        .collect();
    if excess.is_empty() {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        "grant-exceeds-own-rights",
        "Forbidden",
        format!(
            "nobody grants more than they hold: role `{role}` would allow what you may not do ({})",
            listed(&excess)
        ),
    ))
}

/// Every principal a policy could widen that Sigil can name: each role as a person (with a
/// second factor) and as a token of every scope, and each existing account and token by id.
fn principals(existing: &[Principal]) -> Vec<(Principal, OperatorContext)> {
    let mfa = OperatorContext {
        mfa: true,
        source_ip: String::new(),
    };
    let mut out: Vec<(Principal, OperatorContext)> = Vec::new();
    for role in super::auth::ROLES {
        out.push((
            Principal::Operator {
                id: "any".into(),
                roles: vec![role.to_owned()],
            },
            mfa.clone(),
        ));
        out.push((
            Principal::Token {
                id: "any".into(),
                roles: vec![role.to_owned()],
                scopes: vec!["*".into()],
            },
            mfa.clone(),
        ));
    }
    out.extend(existing.iter().map(|p| (p.clone(), mfa.clone())));
    out
}

/// Refuse a policy that gives anyone rights its applier does not hold (nobody grants more than
/// they hold), and one under which the applier itself could do something it cannot do now:
/// that widening may be right, but it needs a second administrator, one to whom it gives
/// nothing new. `existing` are the accounts and tokens there are, by id, so that a policy
/// naming one of them is judged too.
pub fn check_no_self_widening(
    current: &PolicyEngine,
    proposed: &PolicyEngine,
    caller: &Caller,
    existing: &[Principal],
) -> Result<(), ApiError> {
    let held = caller_rights(current, caller);
    let gained: Rights = caller_rights(proposed, caller)
        .difference(&held)
        .cloned()
        .collect();
    if !gained.is_empty() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "policy-widens-own-rights",
            "Forbidden",
            format!(
                "this policy would give you rights you do not hold now ({}); another administrator, whom it does not widen, must apply it",
                listed(&gained)
            ),
        ));
    }
    let mut handed_out = Rights::new();
    for (principal, context) in principals(existing) {
        let before = current.rights(&principal, &context, RESOURCE_KINDS);
        handed_out.extend(
            proposed
                .rights(&principal, &context, RESOURCE_KINDS)
                .into_iter()
                .filter(|r| !before.contains(r) && !held.contains(r)),
        );
    }
    if handed_out.is_empty() {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        "grant-exceeds-own-rights",
        "Forbidden",
        format!(
            "nobody grants more than they hold: this policy would give others rights you do not hold ({})",
            listed(&handed_out)
        ),
    ))
}
