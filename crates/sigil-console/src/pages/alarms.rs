//! Behaviour monitoring for people: the detector's state, alarms filtered and paged, one alarm
//! with its explanation (which behaviour, which value, against which bound, baseline or cohort)
//! and the operator's decision on it; and the monitoring part of a device's page.

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::Value;

use super::device::{finish_at, problem};
use super::{Section, render, section, text};
use crate::backend::{Backend, Forwarded};
use crate::error::ConsoleError;
use crate::view::{Layout, Time, query, segment};
use crate::viewer::Viewer;

const PAGE: &str = "50";
/// The API operation behind the decision form.
const DECIDE: &str = "POST /api/v1/alarms/{id}/decision";

pub struct AlarmRow {
    pub id: String,
    pub device_id: String,
    pub behaviour: String,
    pub severity: String,
    pub mitigation: String,
    /// active | acknowledged | cleared | false_positive
    pub state: String,
    pub raised: Time,
    pub summary: String,
}

impl AlarmRow {
    fn from_json(a: &Value) -> Self {
        Self {
            id: text(a, "id"),
            device_id: text(a, "device_id"),
            behaviour: text(a, "behaviour"),
            severity: text(a, "severity"),
            mitigation: text(a, "mitigation"),
            state: text(a, "state").replace('_', " "),
            raised: Time::or_raw(&text(a, "raised_at")),
            summary: text(&a["explanation"], "summary"),
        }
    }
}

/// The detector's counters, in words.
pub struct StatusView {
    pub running: bool,
    pub transport: String,
    pub profiles_version: String,
    pub facts: Vec<(&'static str, String)>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(default)]
pub struct AlarmFilters {
    /// `active`, `cleared` or empty (both).
    condition: String,
    /// `1`: only alarms nobody decided on.
    undecided: String,
    device: String,
    before: String,
}

#[derive(Template)]
#[template(path = "alarms.html")]
struct AlarmsPage {
    layout: Layout,
    filters: AlarmFilters,
    status: Section<StatusView>,
    alarms: Section<Vec<AlarmRow>>,
    next_page: Option<String>,
}

async fn status(backend: &Backend, from: &Forwarded) -> Section<StatusView> {
    let s: Value = section(backend, from, "/api/v1/monitoring/status").await?;
    let count = |field: &str| text(&s, field);
    Ok(StatusView {
        running: s["detector_running"].as_bool().unwrap_or(false),
        transport: text(&s, "transport"),
        profiles_version: text(&s, "profiles_version"),
        facts: vec![
            ("Devices watched", count("devices_watched")),
            ("Datapoints applied", count("datapoints")),
            ("Alarms raised", count("alarms_raised")),
            ("Alarms cleared", count("alarms_cleared")),
            ("Refused: forged", count("refused_forged")),
            ("Refused: replayed or stale", count("refused_replayed")),
            ("Refused: malformed", count("refused_malformed")),
            ("Refused: unknown device", count("refused_unknown_device")),
        ],
    })
}

pub async fn list(
    State(backend): State<Backend>,
    viewer: Viewer,
    Query(f): Query<AlarmFilters>,
) -> Result<Response, ConsoleError> {
    if !matches!(f.condition.as_str(), "" | "active" | "cleared") {
        return Err(ConsoleError::BadRequest(
            "condition: active, cleared or nothing".into(),
        ));
    }
    let undecided = if f.undecided == "1" { "true" } else { "" };
    let api = [
        ("condition", f.condition.as_str()),
        ("undecided", undecided),
        ("device", f.device.as_str()),
        ("before", f.before.as_str()),
        ("limit", PAGE),
    ];
    let from = &viewer.forwarded;
    let path = format!("/api/v1/alarms{}", query(&api));
    let (status, alarms) = tokio::join!(status(&backend, from), async {
        let list: Value = section(&backend, from, &path).await?;
        let rows: Vec<AlarmRow> = list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(AlarmRow::from_json)
            .collect();
        Ok::<_, String>((rows, list["next_cursor"].as_str().map(str::to_owned)))
    });
    let (alarms, cursor) = match alarms {
        Ok((rows, cursor)) => (Ok(rows), cursor),
        Err(why) => (Err(why), None),
    };
    let next_page = cursor.map(|before| {
        let pairs = [
            ("condition", f.condition.as_str()),
            ("undecided", f.undecided.as_str()),
            ("device", f.device.as_str()),
            ("before", before.as_str()),
        ];
        format!("/ui/alarms{}", query(&pairs))
    });
    Ok(render(&AlarmsPage {
        layout: Layout::new("Alarms", "alarms", &viewer),
        filters: f,
        status,
        alarms,
        next_page,
    }))
}

#[derive(Template)]
#[template(path = "alarm.html")]
struct AlarmPage {
    layout: Layout,
    alarm: AlarmRow,
    profile: String,
    metric: String,
    suppressed: bool,
    cleared: Option<Time>,
    decision: Option<(String, String, Option<Time>, String)>,
    /// The explanation's facts, as `name: value` lines.
    explanation: Vec<(String, String)>,
    cleared_summary: Option<String>,
    can_decide: bool,
    done: bool,
}

#[derive(Deserialize, Default)]
pub struct DoneQuery {
    done: Option<String>,
}

/// An explanation's fields as lines for people (nested objects flattened one level).
fn explanation_lines(explanation: &Value) -> Vec<(String, String)> {
    let mut lines = Vec::new();
    let Some(fields) = explanation.as_object() else {
        return lines;
    };
    for (name, value) in fields {
        match value {
            Value::Object(inner) => {
                for (k, v) in inner {
                    lines.push((format!("{name} {k}"), plain(v)));
                }
            }
            _ if name == "summary" => {}
            Value::Number(ms) if name == "window_start_ms" => {
                let at = ms
                    .as_i64()
                    .and_then(|ms| {
                        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
                            .ok()
                    })
                    .and_then(|t| {
                        t.format(&time::format_description::well_known::Rfc3339)
                            .ok()
                    })
                    .map(|t| Time::or_raw(&t).utc)
                    .unwrap_or_else(|| ms.to_string());
                lines.push(("window start".to_owned(), at));
            }
            other => lines.push((name.replace('_', " "), plain(other))),
        }
    }
    lines
}

fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(plain).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    }
}

pub async fn page(
    State(backend): State<Backend>,
    viewer: Viewer,
    Path(id): Path<String>,
    Query(q): Query<DoneQuery>,
) -> Result<Response, ConsoleError> {
    let a: Value = backend
        .get(
            &viewer.forwarded,
            &format!("/api/v1/alarms/{}", segment(&id)),
        )
        .await?;
    let row = AlarmRow::from_json(&a);
    let decision = a["decision"].as_str().map(|d| {
        (
            d.replace('_', " "),
            text(&a, "decided_by"),
            a["decided_at"].as_str().map(Time::or_raw),
            text(&a, "note"),
        )
    });
    Ok(render(&AlarmPage {
        layout: Layout::new(
            format!("Alarm {} on {}", row.behaviour, row.device_id),
            "alarms",
            &viewer,
        ),
        profile: text(&a, "profile"),
        metric: text(&a, "metric"),
        suppressed: a["suppressed"].as_bool().unwrap_or(false),
        cleared: a["cleared_at"].as_str().map(Time::or_raw),
        can_decide: viewer.can(DECIDE) && decision.is_none(),
        decision,
        explanation: explanation_lines(&a["explanation"]),
        cleared_summary: a["cleared_explanation"]["summary"]
            .as_str()
            .map(str::to_owned),
        done: q.done.is_some(),
        alarm: row,
    }))
}

#[derive(Deserialize)]
struct DecisionForm {
    decision: String,
    #[serde(default)]
    note: String,
}

/// Record the decision through the API (which checks the session, the CSRF header and the
/// policy, and audits it).
pub async fn decide(
    State(backend): State<Backend>,
    viewer: Viewer,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let from_htmx = headers.contains_key("hx-request");
    let form = match serde_urlencoded::from_bytes::<DecisionForm>(&body) {
        Ok(f) if matches!(f.decision.as_str(), "acknowledged" | "false_positive") => f,
        _ => {
            return problem(
                StatusCode::BAD_REQUEST,
                "Malformed form",
                "choose acknowledged or false positive, as the page offers",
                from_htmx,
            );
        }
    };
    let json = serde_json::json!({ "decision": form.decision, "note": form.note });
    let path = format!("/api/v1/alarms/{}/decision", segment(&id));
    let result = backend
        .call(&viewer.forwarded, Method::POST, &path, Some(&json))
        .await;
    finish_at(
        result,
        &format!("/ui/alarms/{}?done=decided", segment(&id)),
        from_htmx,
    )
}

/// A device's monitoring state, for its page.
pub struct DeviceMonitoringView {
    pub quarantined_since: Option<Time>,
    pub last_report: Option<Time>,
    pub alarms: Vec<AlarmRow>,
}

pub async fn device_section(
    backend: &Backend,
    from: &Forwarded,
    device: &str,
) -> Section<DeviceMonitoringView> {
    let m: Value = section(
        backend,
        from,
        &format!("/api/v1/devices/{}/monitoring", segment(device)),
    )
    .await?;
    Ok(DeviceMonitoringView {
        quarantined_since: m["quarantined_since"].as_str().map(Time::or_raw),
        last_report: m["last_report_at"].as_str().map(Time::or_raw),
        alarms: m["active_alarms"]
            .as_array()
            .into_iter()
            .flatten()
            .map(AlarmRow::from_json)
            .collect(),
    })
}
