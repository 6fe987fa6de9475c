//! The audit log: entries searched by time, actor, device and action, newest first; one
//! entry with its inclusion proof, checked in the page against the newest signed checkpoint
//! (by `audit-proof.js`, with WebCrypto: not by the server that wrote the log); and evidence
//! bundles for a period.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde::Deserialize;
use serde_json::Value;

use super::{Section, render, section, text};
use crate::backend::Backend;
use crate::error::ConsoleError;
use crate::view::{Layout, Time, query};
use crate::viewer::Viewer;

const PAGE: &str = "50";

#[derive(Deserialize, Default, Clone)]
#[serde(default)]
pub struct AuditFilters {
    /// Days (YYYY-MM-DD, UTC), as a date input gives them.
    since: String,
    until: String,
    actor: String,
    device: String,
    action: String,
    before: String,
}

pub struct EntryRow {
    pub seq: String,
    pub time: Time,
    pub actor: String,
    pub action: String,
    pub subject: String,
    pub outcome: String,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    layout: Layout,
    filters: AuditFilters,
    entries: Section<Vec<EntryRow>>,
    next_page: Option<String>,
    evidence: Option<String>,
}

/// A day as the API's RFC 3339 bound (the start of that day, UTC); `next` for an end day.
fn day_bound(day: &str, next: bool) -> Result<String, ConsoleError> {
    if day.is_empty() {
        return Ok(String::new());
    }
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let date = time::Date::parse(day, &format)
        .map_err(|_| ConsoleError::BadRequest(format!("`{day}` is not a date (YYYY-MM-DD)")))?;
    let date = if next {
        date.next_day().unwrap_or(date)
    } else {
        date
    };
    Ok(format!("{date}T00:00:00Z"))
}

pub fn entry_row(e: &Value) -> EntryRow {
    EntryRow {
        seq: text(e, "seq"),
        time: Time::or_raw(&text(e, "time")),
        actor: format!("{}:{}", text(&e["actor"], "kind"), text(&e["actor"], "id")),
        action: text(e, "action"),
        subject: text(e, "subject"),
        outcome: text(e, "outcome"),
    }
}

pub async fn list(
    State(backend): State<Backend>,
    viewer: Viewer,
    Query(f): Query<AuditFilters>,
) -> Result<Response, ConsoleError> {
    let since = day_bound(&f.since, false)?;
    let until = day_bound(&f.until, true)?;
    let selection = [
        ("since", since.as_str()),
        ("until", until.as_str()),
        ("actor", f.actor.as_str()),
        ("device", f.device.as_str()),
        ("action", f.action.as_str()),
    ];
    let mut api = selection.to_vec();
    api.extend([
        ("before", f.before.as_str()),
        ("order", "desc"),
        ("limit", PAGE),
    ]);
    let path = format!("/api/v1/audit/entries{}", query(&api));
    let entries: Section<Vec<EntryRow>> = section::<Value>(&backend, &viewer.forwarded, &path)
        .await
        .map(|list| {
            list["items"]
                .as_array()
                .into_iter()
                .flatten()
                .map(entry_row)
                .collect()
        });
    let next_page = entries.as_ref().ok().and_then(|rows| {
        (rows.len().to_string() == PAGE)
            .then(|| rows.last().map(|r| r.seq.clone()))
            .flatten()
    });
    let next_page = next_page.map(|before| {
        let pairs = [
            ("since", f.since.as_str()),
            ("until", f.until.as_str()),
            ("actor", f.actor.as_str()),
            ("device", f.device.as_str()),
            ("action", f.action.as_str()),
            ("before", before.as_str()),
        ];
        format!("/ui/audit{}", query(&pairs))
    });
    let evidence = viewer.can("GET /api/v1/evidence").then(|| {
        format!(
            "/ui/audit/evidence.tar{}",
            query(&[("since", &since), ("until", &until)])
        )
    });
    Ok(render(&AuditPage {
        layout: Layout::new("Audit log", "audit", &viewer),
        filters: f,
        entries,
        next_page,
        evidence,
    }))
}

#[derive(Template)]
#[template(path = "audit_entry.html")]
struct EntryPage {
    layout: Layout,
    entry: EntryRow,
    /// The entry exactly as logged (its canonical bytes are the Merkle leaf).
    raw: String,
    pretty: String,
    proof: Result<ProofView, String>,
    can_checkpoint: bool,
}

struct ProofView {
    size: String,
    leaf: String,
    path: String,
    checkpoint: String,
    vkey: String,
}

pub async fn entry(
    State(backend): State<Backend>,
    viewer: Viewer,
    Path(seq): Path<u64>,
) -> Result<Response, ConsoleError> {
    let from = &viewer.forwarded;
    // The entry with this number: the first after the one before it.
    let path = match seq.checked_sub(1) {
        Some(prev) => format!("/api/v1/audit/entries?after={prev}&limit=1"),
        None => "/api/v1/audit/entries?limit=1".to_owned(),
    };
    let answer = backend
        .call(from, axum::http::Method::GET, &path, None)
        .await?;
    let list: Value = answer.json()?;
    let found = list["items"].as_array().and_then(|i| i.first()).cloned();
    let Some(value) = found.filter(|e| e["seq"] == seq) else {
        return Err(ConsoleError::NotFound(format!("no audit entry {seq}")));
    };
    let raw = raw_entry(&answer.body, seq).unwrap_or_else(|| value.to_string());
    let proof = proof(&backend, &viewer, seq).await;
    Ok(render(&EntryPage {
        layout: Layout::new(format!("Audit entry {seq}"), "audit", &viewer),
        entry: entry_row(&value),
        pretty: serde_json::to_string_pretty(&value).unwrap_or_default(),
        raw,
        proof,
        can_checkpoint: viewer.can("POST /api/v1/audit/checkpoint"),
    }))
}

/// The entry's exact bytes from the API's answer (`{"items":[ENTRY]}`), not re-serialised:
/// the leaf hash is over these bytes.
fn raw_entry(body: &[u8], seq: u64) -> Option<String> {
    #[derive(Deserialize)]
    struct Raw<'a> {
        #[serde(borrow)]
        items: Vec<&'a serde_json::value::RawValue>,
    }
    let raw: Raw<'_> = serde_json::from_slice(body).ok()?;
    let first = raw.items.first()?.get();
    let value: Value = serde_json::from_str(first).ok()?;
    (value["seq"] == seq).then(|| first.to_owned())
}

async fn proof(backend: &Backend, viewer: &Viewer, seq: u64) -> Result<ProofView, String> {
    let from = &viewer.forwarded;
    let proof_path = format!("/api/v1/audit/proof/inclusion?seq={seq}");
    let (proof, status) = tokio::join!(
        section::<Value>(backend, from, &proof_path),
        section::<Value>(backend, from, "/api/v1/audit/status"),
    );
    let (proof, status) = (proof?, status?);
    let checkpoint = proof["checkpoint"]
        .as_str()
        .ok_or("the proof is not against the newest checkpoint")?;
    Ok(ProofView {
        size: text(&proof, "size"),
        leaf: text(&proof, "leaf_hash"),
        path: proof["proof"].to_string(),
        checkpoint: checkpoint.to_owned(),
        vkey: text(&status, "verifier_key"),
    })
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct Period {
    since: String,
    until: String,
}

/// An evidence bundle for a period, streamed from the API as it is made.
pub async fn evidence(
    State(backend): State<Backend>,
    viewer: Viewer,
    Query(p): Query<Period>,
) -> Response {
    let path = format!(
        "/api/v1/evidence{}",
        query(&[("since", &p.since), ("until", &p.until)])
    );
    backend.download(&viewer.forwarded, &path).await
}
