//! The overview: the fleet by lifecycle state, certificates expiring, compliance per framework
//! with its trend, open Article 14 cases and their next deadline, rollouts in progress, and the
//! audit log's health.

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;
use serde_json::Value;

use super::{Section, render, section, text};
use crate::backend::Backend;
use crate::chart::{TrendChart, trend};
use crate::view::{Layout, Time, segment};
use crate::viewer::Viewer;

#[derive(Deserialize)]
struct Summary {
    devices_by_state: BTreeMap<String, i64>,
    devices: i64,
    products: i64,
    expiring: Vec<Expiring>,
    expired: i64,
    foreign_expired: i64,
}

#[derive(Deserialize)]
struct Expiring {
    days: i64,
    certificates: i64,
    foreign_certificates: i64,
}

#[derive(Deserialize)]
struct AuditStatus {
    checkpoint_size: Option<u64>,
    verified_at: Option<String>,
    integrity_failure: Option<String>,
}

struct FrameworkRow {
    id: String,
    title: String,
    score: Option<String>,
    evaluated: Option<Time>,
    chart: Option<TrendChart>,
}

struct CaseRow {
    product: String,
    vulnerability: String,
    next_stage: String,
    next_due: Option<Time>,
    overdue: bool,
}

/// A product's open vulnerability findings (not silenced by its VEX), counted.
struct FindingsRow {
    product_id: String,
    product: String,
    open: usize,
    critical_or_high: usize,
    known_exploited: usize,
    overdue: usize,
    /// Devices on the firmware versions with an open finding.
    devices: u64,
}

/// Products whose findings the overview counts (a fleet has tens; the rest are on their pages).
const FINDINGS_PRODUCTS: usize = 100;

struct RolloutRow {
    product: String,
    release: String,
    state: String,
    group: String,
}

#[derive(Template)]
#[template(path = "overview.html")]
struct OverviewPage {
    layout: Layout,
    summary: Section<Summary>,
    states: Vec<(&'static str, i64)>,
    frameworks: Section<Vec<FrameworkRow>>,
    cases: Section<Vec<CaseRow>>,
    findings: Section<Vec<FindingsRow>>,
    rollouts: Section<Vec<RolloutRow>>,
    audit: Section<AuditStatus>,
    verified: Option<Time>,
}

const STATES: [&str; 5] = [
    "registered",
    "provisioned",
    "active",
    "suspended",
    "retired",
];

pub async fn page(State(backend): State<Backend>, viewer: Viewer) -> Response {
    let from = &viewer.forwarded;
    let (summary, frameworks, cases, findings, rollouts, audit) = tokio::join!(
        section::<Summary>(&backend, from, "/api/v1/inventory/summary"),
        frameworks(&backend, &viewer),
        open_cases(&backend, &viewer),
        open_findings(&backend, &viewer),
        rollouts(&backend, &viewer),
        section::<AuditStatus>(&backend, from, "/api/v1/audit/status"),
    );
    let states = summary.as_ref().map_or_else(
        |_| Vec::new(),
        |s| {
            STATES
                .iter()
                .map(|state| (*state, s.devices_by_state.get(*state).copied().unwrap_or(0)))
                .collect()
        },
    );
    let verified = audit
        .as_ref()
        .ok()
        .and_then(|a| a.verified_at.as_deref())
        .and_then(Time::parse);
    render(&OverviewPage {
        layout: Layout::new("Overview", "overview", &viewer),
        summary,
        states,
        frameworks,
        cases,
        findings,
        rollouts,
        audit,
        verified,
    })
}

/// Each product's open findings: how many, how grave, how many known exploited or overdue,
/// and the devices on the affected firmware (from the product's findings, as its page shows).
async fn open_findings(backend: &Backend, viewer: &Viewer) -> Section<Vec<FindingsRow>> {
    let from = &viewer.forwarded;
    let products: Value = section(backend, from, "/api/v1/products").await?;
    let mut rows = Vec::new();
    for p in products["items"]
        .as_array()
        .into_iter()
        .flatten()
        .take(FINDINGS_PRODUCTS)
    {
        let id = text(p, "id");
        let path = format!("/api/v1/products/{}/findings", segment(&id));
        let found: Value = section(backend, from, &path).await?;
        let open: Vec<&Value> = found["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|f| !matches!(f["vex_status"].as_str(), Some("not_affected" | "fixed")))
            .collect();
        if open.is_empty() {
            continue;
        }
        let mut per_firmware: std::collections::BTreeMap<String, u64> = Default::default();
        for f in &open {
            per_firmware.insert(
                text(f, "firmware_version"),
                f["devices"].as_u64().unwrap_or(0),
            );
        }
        rows.push(FindingsRow {
            product: text(p, "name"),
            open: open.len(),
            critical_or_high: open
                .iter()
                .filter(|f| matches!(f["severity"].as_str(), Some("critical" | "high")))
                .count(),
            known_exploited: open
                .iter()
                .filter(|f| f["known_exploited"].is_string())
                .count(),
            overdue: open.iter().filter(|f| f["overdue"] == true).count(),
            devices: per_firmware.values().sum(),
            product_id: id,
        });
    }
    Ok(rows)
}

/// Each framework's latest score and its trend over the recorded runs.
async fn frameworks(backend: &Backend, viewer: &Viewer) -> Section<Vec<FrameworkRow>> {
    let from = &viewer.forwarded;
    let list: Value = section(backend, from, "/api/v1/compliance").await?;
    let mut rows = Vec::new();
    for fw in list["frameworks"].as_array().into_iter().flatten() {
        let id = text(fw, "id");
        let history: Vec<Value> = section(
            backend,
            from,
            &format!("/api/v1/compliance/{}/history", segment(&id)),
        )
        .await
        .unwrap_or_default();
        // History is newest first; the chart reads left to right, oldest first.
        let points: Vec<(String, f64)> = history
            .iter()
            .rev()
            .filter_map(|run| Some((text(run, "evaluated_at"), run["score"].as_f64()?)))
            .collect();
        let latest = history.first();
        rows.push(FrameworkRow {
            title: text(fw, "title"),
            score: latest
                .and_then(|r| r["score"].as_f64())
                .map(|s| format!("{s:.0}%")),
            evaluated: latest.and_then(|r| Time::parse(&text(r, "evaluated_at"))),
            chart: trend(&id, &points),
            id,
        });
    }
    Ok(rows)
}

/// Every open case (the oldest are the likeliest to be overdue), a page of 500 at a time.
async fn open_cases(backend: &Backend, viewer: &Viewer) -> Section<Vec<CaseRow>> {
    let mut cases: Vec<Value> = Vec::new();
    let mut path = "/api/v1/cases?state=open&limit=500".to_owned();
    loop {
        let page: Value = section(backend, &viewer.forwarded, &path).await?;
        cases.extend(page["items"].as_array().into_iter().flatten().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => path = format!("/api/v1/cases?state=open&limit=500&after={next}"),
            None => break,
        }
    }
    Ok(cases
        .iter()
        .map(|case| {
            let next = case["deadlines"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|d| matches!(d["status"].as_str(), Some("pending" | "overdue")));
            CaseRow {
                product: text(case, "product_id"),
                vulnerability: text(case, "vulnerability"),
                next_stage: next.map(|d| text(d, "stage")).unwrap_or_default(),
                next_due: next.and_then(|d| Time::parse(&text(d, "due"))),
                overdue: next.is_some_and(|d| d["status"] == "overdue"),
            }
        })
        .collect())
}

/// Rollouts not yet finished, across products.
async fn rollouts(backend: &Backend, viewer: &Viewer) -> Section<Vec<RolloutRow>> {
    let from = &viewer.forwarded;
    let products: Value = section(backend, from, "/api/v1/products").await?;
    let mut rows = Vec::new();
    for product in products["items"].as_array().into_iter().flatten() {
        let id = text(product, "id");
        let path = format!("/api/v1/products/{}/rollouts", segment(&id));
        let Ok(list) = section::<Value>(backend, from, &path).await else {
            continue;
        };
        for r in list["items"].as_array().into_iter().flatten() {
            let state = text(r, "state");
            if matches!(state.as_str(), "running" | "paused" | "awaiting-approval") {
                rows.push(RolloutRow {
                    product: text(product, "name"),
                    release: text(r, "release"),
                    group: text(r, "current_group"),
                    state,
                });
            }
        }
    }
    Ok(rows)
}
