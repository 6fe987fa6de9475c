//! Compliance: each framework's score and report downloads; a framework's requirements, their
//! checks and the failing devices with the reasons and evidence; attestations, and recording
//! one with its document.

use askama::Template;
use axum::extract::{Multipart, Path, Query, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Section, render, section, text};
use crate::backend::Backend;
use crate::error::ConsoleError;
use crate::pages::device::{finish_to, problem};
use crate::view::{Layout, Time, query, segment};
use crate::viewer::Viewer;

pub const ATTEST: &str = "POST /api/v1/compliance/attestations";
/// The API takes documents of 44 KiB; the form around one is small.
pub const MAX_ATTESTATION_FORM: usize = 64 * 1024;
/// The report formats offered for download, with their labels.
const FORMATS: [(&str, &str); 5] = [
    ("html", "HTML page"),
    ("csv", "CSV"),
    ("json", "JSON"),
    ("oscal", "OSCAL assessment results"),
    ("oscal-component-definition", "OSCAL component definition"),
];

struct FrameworkRow {
    id: String,
    title: String,
    score: Option<String>,
    evaluated: Option<Time>,
}

#[derive(Template)]
#[template(path = "compliance.html")]
struct CompliancePage {
    layout: Layout,
    frameworks: Section<Vec<FrameworkRow>>,
    formats: [(&'static str, &'static str); 5],
}

pub async fn frameworks(State(backend): State<Backend>, viewer: Viewer) -> Response {
    let from = &viewer.forwarded;
    let frameworks = match section::<Value>(&backend, from, "/api/v1/compliance").await {
        Ok(list) => {
            let mut rows = Vec::new();
            for fw in list["frameworks"].as_array().into_iter().flatten() {
                let id = text(fw, "id");
                let path = format!("/api/v1/compliance/{}/history", segment(&id));
                let history: Vec<Value> = section(&backend, from, &path).await.unwrap_or_default();
                let latest = history.first();
                rows.push(FrameworkRow {
                    title: text(fw, "title"),
                    score: latest
                        .and_then(|r| r["score"].as_f64())
                        .map(|s| format!("{s:.0}%")),
                    evaluated: latest.and_then(|r| Time::parse(&text(r, "evaluated_at"))),
                    id,
                });
            }
            Ok(rows)
        }
        Err(e) => Err(e),
    };
    render(&CompliancePage {
        layout: Layout::new("Compliance", "compliance", &viewer),
        frameworks,
        formats: FORMATS,
    })
}

struct RequirementRow {
    id: String,
    group: String,
    summary: String,
    status: String,
    checks: Vec<CheckRow>,
}

struct CheckRow {
    title: String,
    status: String,
    counts: String,
    reason: String,
    failures: Vec<FailureRow>,
}

struct FailureRow {
    subject: String,
    /// The device page, when the subject is a device.
    href: Option<String>,
    reason: String,
    evidence: String,
}

struct AttestationRow {
    check: String,
    attested_by: String,
    statement: String,
    document: String,
    expires: Time,
}

#[derive(Template)]
#[template(path = "framework.html")]
struct FrameworkPage {
    layout: Layout,
    id: String,
    title: String,
    score: String,
    evaluated: Time,
    requirements: Vec<RequirementRow>,
    attestations: Section<Vec<AttestationRow>>,
    attestable: Vec<String>,
    can_attest: bool,
    formats: [(&'static str, &'static str); 5],
    done: bool,
}

#[derive(Deserialize, Default)]
pub struct Done {
    done: Option<String>,
}

fn check_row(c: &Value) -> CheckRow {
    let counts = &c["counts"];
    CheckRow {
        title: text(c, "title"),
        status: text(c, "status"),
        counts: format!(
            "{} pass, {} fail, {} unknown",
            counts["pass"], counts["fail"], counts["unknown"]
        ),
        reason: text(c, "reason"),
        failures: c["failures"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|f| {
                let subject = text(f, "device");
                let href = subject
                    .strip_prefix("device:")
                    .or(Some(subject.as_str()).filter(|s| s.len() == 36))
                    .map(|id| format!("/ui/devices/{}", segment(id)));
                FailureRow {
                    href,
                    subject,
                    reason: text(f, "reason"),
                    evidence: if f["evidence"].as_array().is_some_and(Vec::is_empty) {
                        String::new()
                    } else {
                        f["evidence"].to_string()
                    },
                }
            })
            .collect(),
    }
}

pub async fn framework(
    State(backend): State<Backend>,
    viewer: Viewer,
    Path(id): Path<String>,
    Query(q): Query<Done>,
) -> Result<Response, ConsoleError> {
    let from = &viewer.forwarded;
    let path = format!("/api/v1/compliance/{}", segment(&id));
    let (report, attestations) = tokio::join!(
        backend.get::<Value>(from, &path),
        section::<Vec<Value>>(&backend, from, "/api/v1/compliance/attestations"),
    );
    let report = report?;
    let mut attestable = Vec::new();
    let requirements = report["requirements"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            let checks: Vec<CheckRow> = r["checks"]
                .as_array()
                .into_iter()
                .flatten()
                .map(check_row)
                .collect();
            for c in r["checks"].as_array().into_iter().flatten() {
                let check = text(c, "check");
                if check.starts_with("attest.") && !attestable.contains(&check) {
                    attestable.push(check);
                }
            }
            RequirementRow {
                id: text(r, "id"),
                group: text(r, "group_title"),
                summary: text(r, "summary"),
                status: text(r, "status"),
                checks,
            }
        })
        .collect();
    let attestations = attestations.map(|list| {
        list.iter()
            .filter(|a| attestable.contains(&text(a, "check")))
            .map(|a| AttestationRow {
                check: text(a, "check"),
                attested_by: text(a, "attested_by"),
                statement: text(a, "statement"),
                document: format!(
                    "{} (SHA-256 {})",
                    text(a, "document_name"),
                    text(a, "document_sha256")
                ),
                expires: Time::or_raw(&text(a, "expires_at")),
            })
            .collect()
    });
    Ok(render(&FrameworkPage {
        layout: Layout::new(text(&report, "title"), "compliance", &viewer),
        title: text(&report, "title"),
        score: report["score"]
            .as_f64()
            .map(|s| format!("{s:.0}%"))
            .unwrap_or_default(),
        evaluated: Time::or_raw(&text(&report, "evaluated_at")),
        requirements,
        attestations,
        attestable,
        can_attest: viewer.can(ATTEST),
        formats: FORMATS,
        done: q.done.is_some(),
        id,
    }))
}

/// A report download, streamed from the API.
pub async fn download(
    State(backend): State<Backend>,
    viewer: Viewer,
    Path((id, format)): Path<(String, String)>,
) -> Response {
    let path = format!(
        "/api/v1/compliance/{}/report{}",
        segment(&id),
        query(&[("format", &format)])
    );
    backend.download(&viewer.forwarded, &path).await
}

/// Record an attestation: the form's fields and document, sent to the API as it takes them.
pub async fn attest(
    State(backend): State<Backend>,
    viewer: Viewer,
    Path(id): Path<String>,
    mut form: Multipart,
) -> Response {
    let mut body = json!({});
    loop {
        let field = match form.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(e) => return problem(e.status(), "Upload failed", &e.body_text(), true),
        };
        let name = field.name().unwrap_or_default().to_owned();
        if name == "document" {
            let file_name = field.file_name().unwrap_or("document").to_owned();
            match field.bytes().await {
                Ok(bytes) => {
                    body["document_name"] = json!(file_name);
                    body["document_base64"] =
                        json!(base64::engine::general_purpose::STANDARD.encode(&bytes));
                }
                Err(e) => return problem(e.status(), "Upload failed", &e.body_text(), true),
            }
        } else if ["check", "attested_by", "statement", "expires"].contains(&name.as_str()) {
            let value = field.text().await.unwrap_or_default();
            if name == "expires" {
                // A day, as the date input gives it: the attestation counts until its end (UTC).
                body["expires_at"] = json!(format!("{value}T23:59:59Z"));
            } else {
                body[name] = json!(value);
            }
        }
    }
    let result = backend
        .call(
            &viewer.forwarded,
            Method::POST,
            "/api/v1/compliance/attestations",
            Some(&body),
        )
        .await;
    let target = format!("/ui/compliance/{}?done=attested", segment(&id));
    match result {
        Ok(_) => finish_to(&target),
        Err(e) if e.status == StatusCode::UNPROCESSABLE_ENTITY => {
            problem(e.status, &e.title, &e.detail, true)
        }
        Err(e) => problem(e.status, &e.title, &e.detail, true),
    }
}
