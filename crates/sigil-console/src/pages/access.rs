//! Access: the policy in force and every version before it, each compared line by line with
//! the one in force; applying a new policy and rolling back (trust changes: the API asks for a
//! session opened with a second factor); the explain form ("what would this role get for this
//! action, and which policies decide it"); operators and tokens.

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};
use similar::{ChangeTag, TextDiff};

use super::{Section, render, section, text};
use crate::backend::Backend;
use crate::error::ConsoleError;
use crate::pages::device::{finish_to, problem};
use crate::view::{Layout, Time};
use crate::viewer::Viewer;

pub const APPLY: &str = "POST /api/v1/policy";
pub const ROLLBACK: &str = "POST /api/v1/policy/rollback";
/// The roles the explain form offers (the built-in ones; a policy may name others).
const ROLES: [&str; 6] = [
    "admin",
    "security-officer",
    "provisioner",
    "operator",
    "auditor",
    "broker",
];
/// Resource kinds the API's rule table asks about.
const KINDS: [&str; 14] = [
    "device",
    "product",
    "certificate",
    "enrollment_token",
    "manufacturer_ca",
    "policy",
    "audit",
    "evidence",
    "operator",
    "compliance",
    "attestation",
    "release",
    "rollout",
    "vulnerability",
];

struct VersionRow {
    version: String,
    created: Option<Time>,
    created_by: String,
    comment: String,
}

struct Person {
    name: String,
    role: String,
    detail: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct ExplainQuery {
    role: String,
    action: String,
    kind: String,
    mfa: String,
}

struct Explained {
    decision: String,
    reasons: String,
}

#[derive(Template)]
#[template(path = "access.html")]
struct AccessPage {
    layout: Layout,
    current_version: String,
    current_policies: Vec<String>,
    current_text: String,
    versions: Section<Vec<VersionRow>>,
    operators: Section<Vec<Person>>,
    tokens: Section<Vec<Person>>,
    can_apply: bool,
    mfa: bool,
    roles: [&'static str; 6],
    kinds: [&'static str; 14],
    query: ExplainQuery,
    explained: Option<Result<Explained, String>>,
    done: bool,
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct PageQuery {
    #[serde(flatten)]
    explain: ExplainQuery,
    done: Option<String>,
}

pub async fn page(
    State(backend): State<Backend>,
    viewer: Viewer,
    Query(q): Query<PageQuery>,
) -> Result<Response, ConsoleError> {
    let from = &viewer.forwarded;
    let (current, versions, operators, tokens) = tokio::join!(
        backend.get::<Value>(from, "/api/v1/policy"),
        section::<Vec<Value>>(&backend, from, "/api/v1/policy/versions"),
        section::<Value>(&backend, from, "/api/v1/operators"),
        section::<Value>(&backend, from, "/api/v1/tokens"),
    );
    let current = current?;
    let explained = if q.explain.action.is_empty() {
        None
    } else {
        Some(explain(&backend, &viewer, &q.explain).await)
    };
    let people = |list: Value, detail: &dyn Fn(&Value) -> String| -> Vec<Person> {
        let items = list.get("items").cloned().unwrap_or(list);
        items
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| Person {
                name: [text(p, "username"), text(p, "name")].concat(),
                role: text(p, "role"),
                detail: detail(p),
            })
            .collect()
    };
    Ok(render(&AccessPage {
        layout: Layout::new("Access", "access", &viewer),
        current_version: text(&current, "version"),
        current_policies: current["policies"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p.as_str().map(str::to_owned))
            .collect(),
        current_text: text(&current, "text"),
        versions: versions.map(|list| {
            list.iter()
                .map(|v| VersionRow {
                    version: text(v, "version"),
                    created: Time::parse(&text(v, "created_at")),
                    created_by: text(v, "created_by"),
                    comment: text(v, "comment"),
                })
                .collect()
        }),
        operators: operators.map(|l| {
            people(l, &|p| {
                if p["disabled"] == true {
                    "disabled".into()
                } else {
                    String::new()
                }
            })
        }),
        tokens: tokens.map(|l| {
            people(l, &|p| {
                let scopes = p["scopes"].as_array().map(|s| {
                    s.iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                });
                format!(
                    "scopes: {}; expires {}",
                    scopes.unwrap_or_default(),
                    text(p, "expires_at")
                )
            })
        }),
        can_apply: viewer.can(APPLY),
        mfa: viewer.mfa,
        roles: ROLES,
        kinds: KINDS,
        query: q.explain,
        explained,
        done: q.done.is_some(),
    }))
}

/// What the policy in force would decide for a role, an action and a kind of resource.
async fn explain(
    backend: &Backend,
    viewer: &Viewer,
    q: &ExplainQuery,
) -> Result<Explained, String> {
    let body = json!({
        "principal": {"operator": {"id": "explain-form", "roles": [q.role]}},
        "action": q.action,
        "resource": {"kind": q.kind},
        "context": {"mfa": q.mfa == "on"},
    });
    // Explaining changes nothing, so a GET form may ask it: the console vouches for the CSRF
    // header the API wants of every POST (the answer is the reader's own, and never stored).
    let from = viewer.forwarded.clone().with_csrf();
    match backend
        .call(&from, Method::POST, "/api/v1/policy/explain", Some(&body))
        .await
    {
        Ok(answer) => {
            let v: Value = answer.json().map_err(|e| e.to_string())?;
            let reasons: Vec<String> = v["reasons"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| r.as_str().map(str::to_owned))
                .collect();
            Ok(Explained {
                decision: text(&v, "decision"),
                reasons: if reasons.is_empty() {
                    "no policy permits it".to_owned()
                } else {
                    reasons.join(", ")
                },
            })
        }
        Err(e) => Err(format!("{}: {}", e.title, e.detail)),
    }
}

struct DiffLine {
    sign: &'static str,
    class: &'static str,
    text: String,
}

#[derive(Template)]
#[template(path = "access_version.html")]
struct VersionPage {
    layout: Layout,
    version: String,
    comment: String,
    current_version: String,
    lines: Vec<DiffLine>,
    changed: usize,
    can_rollback: bool,
    mfa: bool,
}

/// A version compared with the policy in force, line by line.
pub async fn version(
    State(backend): State<Backend>,
    viewer: Viewer,
    Path(version): Path<u32>,
) -> Result<Response, ConsoleError> {
    let from = &viewer.forwarded;
    let path = format!("/api/v1/policy/versions/{version}");
    let (old, current) = tokio::join!(
        backend.get::<Value>(from, &path),
        backend.get::<Value>(from, "/api/v1/policy"),
    );
    let (old, current) = (old?, current?);
    let (old_text, new_text) = (text(&old, "text"), text(&current, "text"));
    let diff = TextDiff::from_lines(&old_text, &new_text);
    let lines: Vec<DiffLine> = diff
        .iter_all_changes()
        .map(|c| {
            let (sign, class) = match c.tag() {
                ChangeTag::Delete => ("-", "del"),
                ChangeTag::Insert => ("+", "ins"),
                ChangeTag::Equal => (" ", "same"),
            };
            DiffLine {
                sign,
                class,
                text: c.value().trim_end_matches('\n').to_owned(),
            }
        })
        .collect();
    Ok(render(&VersionPage {
        layout: Layout::new(format!("Policy version {version}"), "access", &viewer),
        changed: lines.iter().filter(|l| l.class != "same").count(),
        lines,
        version: version.to_string(),
        comment: text(&old, "comment"),
        current_version: text(&current, "version"),
        can_rollback: viewer.can(ROLLBACK),
        mfa: viewer.mfa,
    }))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ChangeForm {
    comment: String,
    text: String,
}

/// Roll back to a version: applied again as a new version, audited, MFA required by the API.
pub async fn rollback(
    State(backend): State<Backend>,
    viewer: Viewer,
    Path(version): Path<u32>,
    body: Bytes,
) -> Response {
    let form: ChangeForm = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let comment = (!form.comment.trim().is_empty()).then_some(form.comment);
    let body = json!({"version": version, "comment": comment});
    let result = backend
        .call(
            &viewer.forwarded,
            Method::POST,
            "/api/v1/policy/rollback",
            Some(&body),
        )
        .await;
    match result {
        Ok(_) => finish_to("/ui/access?done=applied"),
        Err(e) => problem(e.status, &e.title, &e.detail, true),
    }
}

/// Apply a new policy text (validated by the API against Sigil's schema first).
pub async fn apply(State(backend): State<Backend>, viewer: Viewer, body: Bytes) -> Response {
    let form: ChangeForm = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    if form.text.trim().is_empty() {
        return problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "No policy",
            "paste the Cedar policies to apply",
            true,
        );
    }
    let body = json!({"text": form.text, "comment": form.comment});
    match backend
        .call(
            &viewer.forwarded,
            Method::POST,
            "/api/v1/policy",
            Some(&body),
        )
        .await
    {
        Ok(_) => finish_to("/ui/access?done=applied"),
        Err(e) => problem(e.status, &e.title, &e.detail, true),
    }
}
