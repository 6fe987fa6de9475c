//! The parts of a device page, each read from the API on its own (a role that may not read
//! one part still sees the others).

use serde::Deserialize;
use serde_json::Value;

use super::super::{Section, section, text};
use crate::backend::{Backend, Forwarded};
use crate::view::{Time, query, segment};

pub struct CertificateRow {
    pub serial: String,
    pub profile: String,
    pub status: String,
    pub not_before: Time,
    pub not_after: Time,
    pub revoked: Option<String>,
}

#[derive(Deserialize)]
struct CertificateList {
    items: Vec<Value>,
}

pub async fn certificates(
    backend: &Backend,
    from: &Forwarded,
    device: &str,
) -> Section<Vec<CertificateRow>> {
    let path = format!(
        "/api/v1/certificates{}",
        query(&[("device", device), ("limit", "50")])
    );
    let list: CertificateList = section(backend, from, &path).await?;
    Ok(list
        .items
        .iter()
        .map(|c| CertificateRow {
            serial: text(c, "serial"),
            profile: text(c, "profile"),
            status: text(c, "status"),
            not_before: Time::or_raw(&text(c, "not_before")),
            not_after: Time::or_raw(&text(c, "not_after")),
            revoked: c["revoked_at"].as_str().map(|at| {
                let at = Time::or_raw(at).utc;
                format!("{at}, {}", text(c, "revocation_reason"))
            }),
        })
        .collect())
}

/// A certificate another CA issued to the device: tracked for expiry, never trusted.
pub struct ForeignRow {
    pub subject: String,
    pub issuer: String,
    pub sha256: String,
    pub not_after: Time,
    pub validity: String,
}

pub async fn foreign(
    backend: &Backend,
    from: &Forwarded,
    device: &str,
) -> Section<Vec<ForeignRow>> {
    let path = format!("/api/v1/devices/{}/foreign-certificates", segment(device));
    let list: CertificateList = section(backend, from, &path).await?;
    Ok(list
        .items
        .iter()
        .map(|c| ForeignRow {
            subject: text(c, "subject"),
            issuer: text(c, "issuer"),
            sha256: text(c, "sha256"),
            not_after: Time::or_raw(&text(c, "not_after")),
            validity: text(c, "validity"),
        })
        .collect())
}

/// One rollout the device is part of.
pub struct UpdateRow {
    pub release: String,
    pub status: String,
    pub rollout_state: String,
    pub reason: String,
    pub updated: Time,
}

pub async fn updates(backend: &Backend, from: &Forwarded, device: &str) -> Section<Vec<UpdateRow>> {
    let path = format!("/api/v1/devices/{}/updates", segment(device));
    let list: CertificateList = section(backend, from, &path).await?;
    Ok(list
        .items
        .iter()
        .map(|u| UpdateRow {
            release: text(u, "release_version"),
            status: text(u, "status"),
            rollout_state: text(u, "rollout_state"),
            reason: text(u, "reason"),
            updated: Time::or_raw(&text(u, "updated_at")),
        })
        .collect())
}

pub struct PostureView {
    pub latest: Option<(Time, Vec<(String, String)>)>,
    pub history: Vec<Time>,
}

pub async fn posture(backend: &Backend, from: &Forwarded, device: &str) -> Section<PostureView> {
    let path = format!("/api/v1/devices/{}/posture?limit=10", segment(device));
    let posture: Value = section(backend, from, &path).await?;
    let latest = posture["latest"].as_object().map(|latest| {
        let fields = latest
            .get("posture")
            .and_then(Value::as_object)
            .map(|p| {
                p.iter()
                    .map(|(k, v)| {
                        let shown = match v {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        };
                        (k.clone(), shown)
                    })
                    .collect()
            })
            .unwrap_or_default();
        (
            Time::or_raw(
                latest
                    .get("received_at")
                    .and_then(Value::as_str)
                    .unwrap_or(""),
            ),
            fields,
        )
    });
    let history = posture["history"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| Time::or_raw(&text(r, "received_at")))
        .collect();
    Ok(PostureView { latest, history })
}

pub struct FrameworkResult {
    pub title: String,
    pub failing: Vec<CheckRow>,
    pub passed: usize,
    pub total: usize,
}

pub struct CheckRow {
    pub requirement: String,
    pub check: String,
    pub status: String,
    pub reason: String,
    pub evidence: String,
}

/// The device's result in every framework: failing and undecided checks, with their reasons
/// and evidence.
pub async fn compliance(
    backend: &Backend,
    from: &Forwarded,
    device: &str,
) -> Section<Vec<FrameworkResult>> {
    let list: Value = section(backend, from, "/api/v1/compliance").await?;
    let mut results = Vec::new();
    for fw in list["frameworks"].as_array().into_iter().flatten() {
        let path = format!(
            "/api/v1/compliance/{}/devices/{}",
            segment(&text(fw, "id")),
            segment(device)
        );
        let report: Value = section(backend, from, &path).await?;
        let mut failing = Vec::new();
        let mut passed = 0;
        let mut total = 0;
        for req in report["requirements"].as_array().into_iter().flatten() {
            for check in req["checks"].as_array().into_iter().flatten() {
                let status = text(check, "status");
                if status == "not_applicable" {
                    continue;
                }
                total += 1;
                if status == "pass" {
                    passed += 1;
                    continue;
                }
                let first = &check["failures"][0];
                failing.push(CheckRow {
                    requirement: text(req, "id"),
                    check: text(check, "title"),
                    reason: if first.is_null() {
                        text(check, "reason")
                    } else {
                        text(first, "reason")
                    },
                    evidence: if first["evidence"].is_null() {
                        String::new()
                    } else {
                        first["evidence"].to_string()
                    },
                    status,
                });
            }
        }
        results.push(FrameworkResult {
            title: text(&report, "title"),
            failing,
            passed,
            total,
        });
    }
    Ok(results)
}

pub struct FindingRow {
    pub vulnerability: String,
    pub severity: String,
    pub component: String,
    pub fixed: String,
    pub due: Option<Time>,
    pub overdue: bool,
    pub known_exploited: bool,
    pub vex: String,
}

pub async fn findings(
    backend: &Backend,
    from: &Forwarded,
    device: &str,
) -> Section<Vec<FindingRow>> {
    let path = format!("/api/v1/devices/{}/findings", segment(device));
    let list: Value = section(backend, from, &path).await?;
    Ok(list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| FindingRow {
            vulnerability: text(f, "vulnerability"),
            severity: text(f, "severity"),
            component: format!("{} {}", text(f, "component"), text(f, "component_version")),
            fixed: text(f, "fixed"),
            due: f["remediation_due"].as_str().map(Time::or_raw),
            overdue: f["overdue"].as_bool().unwrap_or(false),
            known_exploited: !f["known_exploited"].is_null(),
            vex: text(f, "vex_status"),
        })
        .collect())
}

pub struct AuditRow {
    pub seq: String,
    pub time: Time,
    pub actor: String,
    pub action: String,
    pub outcome: String,
}

/// The device's audit trail, newest first.
pub async fn audit(backend: &Backend, from: &Forwarded, device: &str) -> Section<Vec<AuditRow>> {
    let path = format!(
        "/api/v1/audit/entries{}",
        query(&[("device", device), ("order", "desc"), ("limit", "50")])
    );
    let list: Value = section(backend, from, &path).await?;
    Ok(list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| AuditRow {
            seq: text(e, "seq"),
            time: Time::or_raw(&text(e, "time")),
            actor: format!("{}:{}", text(&e["actor"], "kind"), text(&e["actor"], "id")),
            action: text(e, "action"),
            outcome: text(e, "outcome"),
        })
        .collect())
}
