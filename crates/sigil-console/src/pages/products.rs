//! Products: each product's declaration (CRA Annex II), manufacturer CAs, releases and SBOMs,
//! vulnerability findings, and rollouts with each group's progress drawn, paused, resumed,
//! stopped or started from here.

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Section, render, section, text};
use crate::backend::Backend;
use crate::error::ConsoleError;
use crate::pages::device::{finish_to, problem};
use crate::view::{Layout, Time, segment};
use crate::viewer::Viewer;

pub const MANAGE_ROLLOUTS: &str = "POST /api/v1/rollouts/{id}/actions";
pub const CREATE_ROLLOUT: &str = "POST /api/v1/products/{id}/rollouts";

struct ProductRow {
    id: String,
    name: String,
    manufacturer: String,
    support_end: String,
}

#[derive(Template)]
#[template(path = "products.html")]
struct ProductsPage {
    layout: Layout,
    products: Section<Vec<ProductRow>>,
}

pub async fn list(State(backend): State<Backend>, viewer: Viewer) -> Response {
    let products = section::<Value>(&backend, &viewer.forwarded, "/api/v1/products")
        .await
        .map(|list| {
            list["items"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| ProductRow {
                    id: text(p, "id"),
                    name: text(p, "name"),
                    manufacturer: text(p, "manufacturer"),
                    support_end: text(p, "support_end"),
                })
                .collect()
        });
    render(&ProductsPage {
        layout: Layout::new("Products", "products", &viewer),
        products,
    })
}

struct GroupBar {
    share: String,
    reach: u64,
    installed: u64,
    failed: u64,
    in_flight: u64,
}

struct RolloutRow {
    id: String,
    release: String,
    state: String,
    reason: String,
    current_group: String,
    groups: Vec<GroupBar>,
    actions: Vec<(&'static str, &'static str)>,
}

struct ReleaseRow {
    version: String,
    state: String,
    security: bool,
    sbom: bool,
    created: Time,
}

struct FindingRow {
    vulnerability: String,
    severity: String,
    component: String,
    firmware: String,
    devices: String,
    fixed: String,
    known_exploited: bool,
}

#[derive(Template)]
#[template(path = "product.html")]
struct ProductPage {
    layout: Layout,
    id: String,
    name: String,
    declaration: Section<Vec<(String, String)>>,
    cas: Section<Vec<(String, String)>>,
    releases: Section<Vec<ReleaseRow>>,
    findings: Section<Vec<FindingRow>>,
    rollouts: Section<Vec<RolloutRow>>,
    published: Vec<String>,
    can_create: bool,
}

/// The actions a rollout in `state` can take, with their labels.
fn rollout_actions(state: &str) -> Vec<(&'static str, &'static str)> {
    match state {
        "running" => vec![("pause", "Pause"), ("stop", "Stop for good")],
        "paused" => vec![
            ("resume", "Resume"),
            ("retry-failed", "Retry the failed devices"),
            ("stop", "Stop for good"),
        ],
        "awaiting-approval" => vec![
            ("approve", "Approve the next group"),
            ("stop", "Stop for good"),
        ],
        _ => Vec::new(),
    }
}

fn flat(value: &Value) -> Vec<(String, String)> {
    value
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| {
            let shown = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.replace('_', " "), shown)
        })
        .collect()
}

pub async fn page(
    State(backend): State<Backend>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Result<Response, ConsoleError> {
    let from = &viewer.forwarded;
    let base = format!("/api/v1/products/{}", segment(&id));
    let product: Value = backend.get(from, &base).await?;
    let paths = [
        "declaration",
        "manufacturer-cas",
        "releases",
        "findings",
        "rollouts",
    ]
    .map(|part| format!("{base}/{part}"));
    let (declaration, cas, releases, findings, rollouts) = tokio::join!(
        section::<Value>(&backend, from, &paths[0]),
        section::<Value>(&backend, from, &paths[1]),
        section::<Value>(&backend, from, &paths[2]),
        section::<Value>(&backend, from, &paths[3]),
        section::<Value>(&backend, from, &paths[4]),
    );
    let items = |v: &Value| v["items"].as_array().cloned().unwrap_or_default();
    let releases: Section<Vec<ReleaseRow>> = releases.map(|l| {
        items(&l)
            .iter()
            .map(|r| ReleaseRow {
                version: text(r, "version"),
                state: text(r, "state"),
                security: r["security"] == true,
                sbom: !r["sbom_sha256"].is_null(),
                created: Time::or_raw(&text(r, "created_at")),
            })
            .collect()
    });
    let published = releases
        .as_ref()
        .map(|rs| {
            rs.iter()
                .filter(|r| r.state == "published")
                .map(|r| r.version.clone())
                .collect()
        })
        .unwrap_or_default();
    let can_manage = viewer.can(MANAGE_ROLLOUTS);
    Ok(render(&ProductPage {
        layout: Layout::new(
            format!("Product {}", text(&product, "name")),
            "products",
            &viewer,
        ),
        name: text(&product, "name"),
        declaration: declaration.map(|d| flat(&d)),
        cas: cas.map(|l| {
            items(&l)
                .iter()
                .map(|c| (text(c, "subject"), text(c, "not_after")))
                .collect()
        }),
        releases,
        findings: findings.map(|l| {
            items(&l)
                .iter()
                .take(50)
                .map(|f| FindingRow {
                    vulnerability: text(f, "vulnerability"),
                    severity: text(f, "severity"),
                    component: format!("{} {}", text(f, "component"), text(f, "component_version")),
                    firmware: text(f, "firmware_version"),
                    devices: text(f, "devices"),
                    fixed: text(f, "fixed"),
                    known_exploited: !f["known_exploited"].is_null(),
                })
                .collect()
        }),
        rollouts: rollouts.map(|l| {
            items(&l)
                .iter()
                .map(|r| {
                    let state = text(r, "state");
                    RolloutRow {
                        id: text(r, "id"),
                        release: text(r, "release"),
                        reason: text(r, "reason"),
                        current_group: text(r, "current_group"),
                        actions: if can_manage {
                            rollout_actions(&state)
                        } else {
                            Vec::new()
                        },
                        state,
                        groups: r["groups"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .map(|g| GroupBar {
                                share: text(g, "share"),
                                reach: g["reach"].as_u64().unwrap_or(0),
                                installed: g["installed"].as_u64().unwrap_or(0),
                                failed: ["failed", "rejected", "timed_out"]
                                    .iter()
                                    .map(|k| g[*k].as_u64().unwrap_or(0))
                                    .sum(),
                                in_flight: g["in_flight"].as_u64().unwrap_or(0),
                            })
                            .collect(),
                    }
                })
                .collect()
        }),
        published,
        can_create: viewer.can(CREATE_ROLLOUT),
        id,
    }))
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ActionForm {
    reason: String,
    product: String,
}

/// A rollout action (pause, resume, approve, retry-failed, stop), through the API.
pub async fn act(
    State(backend): State<Backend>,
    viewer: Viewer,
    Path((rollout, action)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let Ok(form) = serde_urlencoded::from_bytes::<ActionForm>(&body) else {
        return problem(
            StatusCode::BAD_REQUEST,
            "Malformed form",
            "send the form as the page gives it",
            true,
        );
    };
    let reason = (!form.reason.trim().is_empty()).then_some(form.reason);
    let path = format!("/api/v1/rollouts/{}/actions", segment(&rollout));
    let body = json!({"action": action, "reason": reason});
    match backend
        .call(&viewer.forwarded, Method::POST, &path, Some(&body))
        .await
    {
        Ok(_) => finish_to(&format!("/ui/products/{}", segment(&form.product))),
        Err(e) => problem(e.status, &e.title, &e.detail, true),
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct CreateForm {
    release: String,
    groups: String,
    success_threshold: String,
    error_threshold: String,
    approval: String,
}

/// Start a rollout of a published release, in cumulative groups.
pub async fn create(
    State(backend): State<Backend>,
    viewer: Viewer,
    Path(product): Path<String>,
    body: Bytes,
) -> Response {
    let Ok(form) = serde_urlencoded::from_bytes::<CreateForm>(&body) else {
        return problem(
            StatusCode::BAD_REQUEST,
            "Malformed form",
            "send the form as the page gives it",
            true,
        );
    };
    let groups: Vec<String> = form
        .groups
        .split([',', ' '])
        .filter(|g| !g.is_empty())
        .map(|g| {
            if g.ends_with('%') {
                g.to_owned()
            } else {
                format!("{g}%")
            }
        })
        .collect();
    let body = json!({
        "release": form.release,
        "groups": groups,
        "success_threshold": form.success_threshold,
        "error_threshold": form.error_threshold,
        "approval": form.approval == "on",
    });
    let path = format!("/api/v1/products/{}/rollouts", segment(&product));
    match backend
        .call(&viewer.forwarded, Method::POST, &path, Some(&body))
        .await
    {
        Ok(_) => finish_to(&format!("/ui/products/{}", segment(&product))),
        Err(e) => problem(e.status, &e.title, &e.detail, true),
    }
}
