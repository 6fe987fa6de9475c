//! One device: identity, certificates, posture, compliance per framework, vulnerabilities and
//! audit trail; and its lifecycle actions, each behind a page that names what it will do.

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::Value;

use super::devices::DeviceRow;
use super::{Section, render, text};
use crate::backend::{ApiFailure, Backend};
use crate::error::{ConsoleError, next_step};
use crate::view::{Layout, Time, segment};
use crate::viewer::Viewer;

mod sections;

use sections::{AuditRow, CertificateRow, FindingRow, FrameworkResult, PostureView};

/// A lifecycle action on a device, as the console offers it.
pub struct Action {
    pub name: &'static str,
    pub label: &'static str,
    /// The API operation, as the OpenAPI document names it.
    operation: &'static str,
    /// What it does, said before it is done.
    pub consequence: &'static str,
    /// Whether it can be undone.
    pub final_: bool,
}

const ACTIONS: [Action; 6] = [
    Action {
        name: "suspend",
        label: "Suspend",
        operation: "POST /api/v1/devices/{id}/suspend",
        consequence: "The access policy refuses the device everywhere (broker, API, updates) until it is resumed. Its certificates stay valid.",
        final_: false,
    },
    Action {
        name: "resume",
        label: "Resume",
        operation: "POST /api/v1/devices/{id}/resume",
        consequence: "The device is trusted again under the access policy.",
        final_: false,
    },
    Action {
        name: "revoke",
        label: "Revoke certificates",
        operation: "POST /api/v1/devices/{id}/revoke",
        consequence: "Every certificate of the device is revoked: OCSP and the CRL say so within seconds, and TLS refuses it. The device cannot connect until it enrols again with a new token.",
        final_: true,
    },
    Action {
        name: "retire",
        label: "Retire",
        operation: "POST /api/v1/devices/{id}/retire",
        consequence: "The device leaves service for good: its certificates are revoked (cessation of operation) and it can never be resumed.",
        final_: true,
    },
    Action {
        name: "quarantine",
        label: "Quarantine",
        operation: "POST /api/v1/devices/{id}/quarantine",
        consequence: "The access policy keeps the device connected with only its quarantine topic (devices/<id>/quarantine/#): it can publish nowhere and subscribe to nothing else, and fetch no update, until it is released. The Mosquitto sync applies this within a second.",
        final_: false,
    },
    Action {
        name: "release",
        label: "Release from quarantine",
        operation: "POST /api/v1/devices/{id}/release",
        consequence: "The device gets its usual access back. Releasing needs your second factor: the session must have been opened with the authenticator code.",
        final_: false,
    },
];

/// RFC 5280 reasons an operator may give (the CA's own `superseded` is for rotation).
const REASONS: [(&str, &str); 5] = [
    ("unspecified", "Unspecified"),
    ("keyCompromise", "Key compromise"),
    ("affiliationChanged", "Affiliation changed"),
    ("cessationOfOperation", "Cessation of operation"),
    ("privilegeWithdrawn", "Privilege withdrawn"),
];

impl Action {
    fn find(name: &str) -> Option<&'static Action> {
        ACTIONS.iter().find(|a| a.name == name)
    }

    /// Whether the device's state allows it (the API decides; this avoids offering a dead end).
    /// `quarantined`: `None` when the page could not read it.
    fn applies(&self, state: &str, quarantined: Option<bool>) -> bool {
        match self.name {
            "suspend" => state == "active",
            "resume" => state == "suspended",
            "quarantine" => state != "retired" && quarantined == Some(false),
            "release" => quarantined == Some(true),
            _ => state != "retired",
        }
    }

    /// Whether the API wants the operator's reason in words.
    pub fn takes_reason(&self) -> bool {
        matches!(self.name, "quarantine" | "release")
    }
}

#[derive(Deserialize, Default)]
pub struct DoneQuery {
    done: Option<String>,
}

#[derive(Template)]
#[template(path = "device.html")]
struct DevicePage {
    layout: Layout,
    device: DeviceRow,
    identity: String,
    created: Time,
    updated: Time,
    actions: Vec<&'static Action>,
    editable: bool,
    done: Option<String>,
    certificates: Section<Vec<CertificateRow>>,
    foreign: Section<Vec<sections::ForeignRow>>,
    updates: Section<Vec<sections::UpdateRow>>,
    can_import_foreign: bool,
    posture: Section<PostureView>,
    compliance: Section<Vec<FrameworkResult>>,
    findings: Section<Vec<FindingRow>>,
    audit: Section<Vec<AuditRow>>,
    monitoring: Section<super::alarms::DeviceMonitoringView>,
}

pub async fn page(
    State(backend): State<Backend>,
    viewer: Viewer,
    Path(id): Path<String>,
    Query(q): Query<DoneQuery>,
) -> Result<Response, ConsoleError> {
    let from = &viewer.forwarded;
    let device: Value = backend
        .get(from, &format!("/api/v1/devices/{}", segment(&id)))
        .await?;
    let row: DeviceRow = serde_json::from_value(device.clone())
        .map_err(|e| ApiFailure::internal(format!("device: {e}")))?;
    let (certificates, foreign, updates, posture, compliance, findings, audit, monitoring) = tokio::join!(
        sections::certificates(&backend, from, &row.id),
        sections::foreign(&backend, from, &row.id),
        sections::updates(&backend, from, &row.id),
        sections::posture(&backend, from, &row.id),
        sections::compliance(&backend, from, &row.id),
        sections::findings(&backend, from, &row.id),
        sections::audit(&backend, from, &row.id),
        super::alarms::device_section(&backend, from, &row.id),
    );
    let quarantined = monitoring
        .as_ref()
        .ok()
        .map(|m| m.quarantined_since.is_some());
    let actions = ACTIONS
        .iter()
        .filter(|a| viewer.can(a.operation) && a.applies(&row.state, quarantined))
        .collect();
    let done = match q.done.as_deref() {
        Some("edit") => Some("Changes saved.".to_owned()),
        Some("foreign") => Some("Certificates recorded (tracked, never trusted).".to_owned()),
        other => other
            .and_then(Action::find)
            .map(|a| format!("Done: {}.", a.label.to_lowercase())),
    };
    let editable = viewer.can(super::device_edit::OPERATION);
    Ok(render(&DevicePage {
        layout: Layout::new(format!("Device {}", row.serial_number), "devices", &viewer),
        identity: text(&device, "identity"),
        created: Time::or_raw(&text(&device, "created_at")),
        updated: Time::or_raw(&text(&device, "updated_at")),
        device: row,
        actions,
        editable,
        done,
        certificates,
        foreign,
        updates,
        can_import_foreign: viewer.can(super::foreign::IMPORT),
        posture,
        compliance,
        findings,
        audit,
        monitoring,
    }))
}

#[derive(Template)]
#[template(path = "confirm.html")]
struct ConfirmPage {
    layout: Layout,
    device: DeviceRow,
    action: &'static Action,
    reasons: [(&'static str, &'static str); 5],
}

/// The page before an action: what it will do, to which device, and the button that does it.
pub async fn confirm(
    State(backend): State<Backend>,
    viewer: Viewer,
    Path((id, action)): Path<(String, String)>,
) -> Result<Response, ConsoleError> {
    let action = Action::find(&action)
        .ok_or_else(|| ConsoleError::NotFound(format!("no device action `{action}`")))?;
    if !viewer.can(action.operation) {
        return Err(ConsoleError::Forbidden(format!(
            "your role may not {}",
            action.label.to_lowercase()
        )));
    }
    let device: DeviceRow = backend
        .get(
            &viewer.forwarded,
            &format!("/api/v1/devices/{}", segment(&id)),
        )
        .await?;
    Ok(render(&ConfirmPage {
        layout: Layout::new(
            format!("{} {}", action.label, device.serial_number),
            "devices",
            &viewer,
        ),
        device,
        action,
        reasons: REASONS,
    }))
}

#[derive(Deserialize, Default)]
struct ActionForm {
    #[serde(default)]
    reason: String,
}

#[derive(Template)]
#[template(path = "problem.html")]
struct ProblemFragment {
    status: u16,
    title: String,
    detail: String,
    next_step: &'static str,
}

/// Do the action through the API (which checks the session, the CSRF header and the policy,
/// and audits the attempt whatever its outcome).
pub async fn act(
    State(backend): State<Backend>,
    viewer: Viewer,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let Some(action) = Action::find(&action) else {
        return ConsoleError::NotFound(format!("no device action `{action}`")).into_response();
    };
    let from_htmx = headers.contains_key("hx-request");
    let Ok(form) = serde_urlencoded::from_bytes::<ActionForm>(&body) else {
        return problem(
            StatusCode::BAD_REQUEST,
            "Malformed form",
            "send the form as the page gives it",
            from_htmx,
        );
    };
    // Revocation takes an RFC 5280 reason, quarantine and release the operator's words; the
    // lifecycle events take no body.
    let json = if action.takes_reason() {
        Some(serde_json::json!({ "reason": form.reason }))
    } else {
        (action.name == "revoke").then(|| {
            let reason = REASONS
                .iter()
                .find(|(r, _)| *r == form.reason)
                .map(|(r, _)| *r);
            serde_json::json!({ "reason": reason })
        })
    };
    let path = format!("/api/v1/devices/{}/{}", segment(&id), action.name);
    let result = backend
        .call(&viewer.forwarded, Method::POST, &path, json.as_ref())
        .await;
    finish(result, &id, action.name, from_htmx)
}

/// The answer to an action: back to the device page saying it is done, or the problem (a
/// fragment for htmx to show beside the button, or a whole page).
pub fn finish(
    result: Result<crate::backend::Answer, ApiFailure>,
    id: &str,
    done: &str,
    from_htmx: bool,
) -> Response {
    finish_at(
        result,
        &format!("/ui/devices/{}?done={done}", segment(id)),
        from_htmx,
    )
}

/// The answer to an action: on to `target` (a page saying it is done), or the problem.
pub fn finish_at(
    result: Result<crate::backend::Answer, ApiFailure>,
    target: &str,
    from_htmx: bool,
) -> Response {
    match result {
        Ok(_) if from_htmx => finish_to(target),
        Ok(_) => Redirect::to(target).into_response(),
        Err(e) => problem(e.status, &e.title, &e.detail, from_htmx),
    }
}

/// Done: htmx goes to `target` (a page saying so).
pub fn finish_to(target: &str) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Ok(value) = HeaderValue::from_str(target) {
        response.headers_mut().insert("hx-redirect", value);
    }
    response
}

/// A refusal, said with what to do next.
pub fn problem(status: StatusCode, title: &str, detail: &str, from_htmx: bool) -> Response {
    if !from_htmx {
        return ConsoleError::Api(ApiFailure {
            status,
            title: title.to_owned(),
            detail: detail.to_owned(),
        })
        .into_response();
    }
    let fragment = ProblemFragment {
        status: status.as_u16(),
        next_step: next_step(status),
        title: title.to_owned(),
        detail: detail.to_owned(),
    };
    match fragment.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(err) => ConsoleError::from(err).into_response(),
    }
}
