//! The audit log over the API: search, checkpoints, proofs and the full export.

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::{IntoParams, ToSchema};

use sigil_audit::{Hash, export};
use sigil_store::AuditQuery;

use super::{ApiError, ApiQuery, AppState, Problem};

/// Entries per database read while streaming an export.
const EXPORT_PAGE: u64 = 2000;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct EntryQuery {
    /// Entries at or after this time (RFC 3339).
    pub since: Option<String>,
    /// Entries before this time (RFC 3339).
    pub until: Option<String>,
    /// Actor id: an API token id, a device id, or a system component.
    pub actor: Option<String>,
    /// Entries about this device.
    pub device: Option<String>,
    /// Exact action (`device.created`) or a prefix ending in `.` (`device.`).
    pub action: Option<String>,
    /// Entries with a higher sequence number (paging forward).
    #[param(maximum = 9_223_372_036_854_775_807_i64)]
    pub after: Option<u64>,
    /// Entries with a lower sequence number (paging backward).
    #[param(maximum = 9_223_372_036_854_775_807_i64)]
    pub before: Option<u64>,
    /// `asc` (default) or `desc` (newest first).
    pub order: Option<String>,
    /// 1 to 500, default 100.
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EntryList {
    /// Entries exactly as logged (RFC 8785 canonical JSON); SHA-256(0x00 || entry) is the leaf.
    #[schema(value_type = Vec<Object>)]
    pub items: Vec<Box<RawValue>>,
}

/// Normalise an RFC 3339 time to the entries' fixed-width UTC form, so text order is time order.
pub(crate) fn entry_time(value: &str, field: &str) -> Result<String, ApiError> {
    let t = time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339)
        .map_err(|e| ApiError::invalid(format!("{field}: not an RFC 3339 time: {e}")))?;
    Ok(sigil_audit::entry::format_time(t))
}

/// The store's query from the API's: the same filters, validated (times normalised to the
/// entries' form, bounds within the database's range, the page size and order checked).
impl TryFrom<EntryQuery> for AuditQuery {
    type Error = ApiError;

    fn try_from(q: EntryQuery) -> Result<Self, ApiError> {
        let limit = q.limit.unwrap_or(100);
        if !(1..=sigil_store::MAX_PAGE).contains(&limit) {
            return Err(ApiError::invalid(format!(
                "limit must be between 1 and {}",
                sigil_store::MAX_PAGE
            )));
        }
        let newest_first = match q.order.as_deref() {
            None | Some("asc") => false,
            Some("desc") => true,
            Some(other) => {
                return Err(ApiError::invalid(format!(
                    "order must be `asc` or `desc`, not `{other}`"
                )));
            }
        };
        // Sequence numbers are i64 in the database: a bound beyond is refused, not a false alarm.
        for (name, bound) in [("after", q.after), ("before", q.before)] {
            if bound.is_some_and(|b| i64::try_from(b).is_err()) {
                return Err(ApiError::invalid(format!(
                    "{name}: at most {} (a sequence number)",
                    i64::MAX
                )));
            }
        }
        Ok(AuditQuery {
            since: q
                .since
                .as_deref()
                .map(|t| entry_time(t, "since"))
                .transpose()?,
            until: q
                .until
                .as_deref()
                .map(|t| entry_time(t, "until"))
                .transpose()?,
            actor: q.actor,
            device: q.device,
            action: q.action,
            after: q.after,
            before: q.before,
            newest_first,
            limit,
        })
    }
}

/// Search the audit log.
#[utoipa::path(get, path = "/api/v1/audit/entries", tag = "audit", params(EntryQuery),
    responses((status = 200, body = EntryList), (status = 400, body = Problem)))]
pub async fn entries(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<EntryQuery>,
) -> Result<Json<EntryList>, ApiError> {
    let query = AuditQuery::try_from(q)?;
    let items = state
        .store()
        .audit_entries(&query)
        .await?
        .into_iter()
        .map(|e| RawValue::from_string(e.entry))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ApiError::internal(format!("stored audit entry is not JSON: {e}")))?;
    Ok(Json(EntryList { items }))
}

/// The newest signed checkpoint: a C2SP tlog-checkpoint in a C2SP signed note.
#[utoipa::path(get, path = "/api/v1/audit/checkpoint", tag = "audit",
    responses((status = 200, body = String, content_type = "text/plain"), (status = 404, body = Problem)))]
pub async fn latest_checkpoint(State(state): State<AppState>) -> Result<Response, ApiError> {
    let cp = state
        .audit()
        .latest()
        .await
        .ok_or_else(|| ApiError::not_found("no checkpoint signed yet"))?;
    Ok(sigil_http::text(cp.note))
}

/// Sign a checkpoint of the log as it is now (or return the newest, if nothing was appended).
#[utoipa::path(post, path = "/api/v1/audit/checkpoint", tag = "audit",
    responses((status = 200, body = String, content_type = "text/plain"), (status = 503, body = Problem)))]
pub async fn sign_checkpoint(State(state): State<AppState>) -> Result<Response, ApiError> {
    let cp = state.audit().checkpoint(state.now()).await?;
    Ok(sigil_http::text(cp.note))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct InclusionQuery {
    pub seq: u64,
    /// Tree size to prove against; default: the newest checkpoint's.
    pub size: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InclusionProof {
    pub seq: u64,
    pub size: u64,
    /// Base64 SHA-256(0x00 || entry).
    pub leaf_hash: String,
    /// Base64 hashes, RFC 9162 audit path.
    pub proof: Vec<String>,
    /// The signed checkpoint for `size`, when the proof is against the newest one.
    pub checkpoint: Option<String>,
}

fn b64(hashes: &[Hash]) -> Vec<String> {
    hashes.iter().map(Hash::to_string).collect()
}

/// The size to prove against: `requested`, or the newest checkpoint's; never beyond the log.
async fn proof_size(
    state: &AppState,
    requested: Option<u64>,
) -> Result<(u64, Option<String>), ApiError> {
    let latest = state.audit().latest().await;
    let size = match (requested, &latest) {
        (Some(size), _) => size,
        (None, Some(cp)) => cp.size,
        (None, None) => return Err(ApiError::not_found("no checkpoint signed yet")),
    };
    let log_size = state.store().audit_size().await?;
    if size > log_size {
        return Err(ApiError::invalid(format!(
            "size {size} is beyond the log ({log_size} entries)"
        )));
    }
    let note = latest.filter(|cp| cp.size == size).map(|cp| cp.note);
    Ok((size, note))
}

/// Inclusion proof for entry `seq`.
#[utoipa::path(get, path = "/api/v1/audit/proof/inclusion", tag = "audit", params(InclusionQuery),
    responses((status = 200, body = InclusionProof), (status = 400, body = Problem)))]
pub async fn inclusion(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<InclusionQuery>,
) -> Result<Json<InclusionProof>, ApiError> {
    let (size, checkpoint) = proof_size(&state, q.size).await?;
    if q.seq >= size {
        return Err(ApiError::invalid(format!(
            "entry {} is not in a tree of {size} entries (sign a newer checkpoint first)",
            q.seq
        )));
    }
    let (leaf, proof) = state.store().audit_inclusion_proof(q.seq, size).await?;
    Ok(Json(InclusionProof {
        seq: q.seq,
        size,
        leaf_hash: leaf.to_string(),
        proof: b64(&proof),
        checkpoint,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyQuery {
    #[param(minimum = 1)]
    pub from: u64,
    /// Default: the newest checkpoint's size.
    pub to: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConsistencyProof {
    pub from: u64,
    pub to: u64,
    pub proof: Vec<String>,
    /// The signed checkpoint for `to`, when it is the newest one.
    pub checkpoint: Option<String>,
}

/// Consistency proof between two tree sizes.
#[utoipa::path(get, path = "/api/v1/audit/proof/consistency", tag = "audit", params(ConsistencyQuery),
    responses((status = 200, body = ConsistencyProof), (status = 400, body = Problem)))]
pub async fn consistency(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<ConsistencyQuery>,
) -> Result<Json<ConsistencyProof>, ApiError> {
    let (to, checkpoint) = proof_size(&state, q.to).await?;
    if q.from == 0 {
        // RFC 6962 2.1.2: a consistency proof starts from a non-empty tree.
        return Err(ApiError::invalid("from must be at least 1"));
    }
    if q.from > to {
        return Err(ApiError::invalid(format!(
            "from ({}) must not exceed to ({to})",
            q.from
        )));
    }
    let proof = state.store().audit_consistency_proof(q.from, to).await?;
    Ok(Json(ConsistencyProof {
        from: q.from,
        to,
        proof: b64(&proof),
        checkpoint,
    }))
}

/// The whole log as JSON Lines (format `sigil-audit-export/1`), with every checkpoint the log
/// signed, for `sigil audit verify`. A fresh checkpoint is signed first, so the export ends on a
/// signed root (unless the log has failed its integrity check, which the verifier will show).
#[utoipa::path(get, path = "/api/v1/audit/export", tag = "audit",
    responses((status = 200, body = String, content_type = "application/jsonl")))]
pub async fn export(State(state): State<AppState>) -> Result<Response, ApiError> {
    if let Err(e) = state.audit().checkpoint(state.now()).await {
        tracing::warn!(error = %e, "exporting without a fresh checkpoint");
    }
    let size = state.store().audit_size().await?;
    let origin = state.audit().key().origin().to_owned();
    let mut head =
        export::header_line(&origin, size).map_err(|e| ApiError::internal(e.to_string()))?;
    head.push('\n');
    for note in state.store().checkpoints(0, size).await? {
        head.push_str(
            &export::checkpoint_line(&note).map_err(|e| ApiError::internal(e.to_string()))?,
        );
        head.push('\n');
    }
    let store = state.store().clone();
    let pages = futures_util::stream::unfold(0u64, move |next| {
        let store = store.clone();
        async move {
            if next >= size {
                return None;
            }
            let to = (next + EXPORT_PAGE).min(size);
            let chunk = match store.audit_range(next, to).await {
                Ok(rows) => {
                    let mut buf = String::new();
                    for (entry, leaf) in rows {
                        buf.push_str(&export::entry_line(&entry.entry, leaf.as_ref()));
                        buf.push('\n');
                    }
                    Ok(Bytes::from(buf))
                }
                // Ends the body early; the verifier reports the missing tail.
                Err(e) => Err(std::io::Error::other(e.to_string())),
            };
            Some((chunk, to))
        }
    });
    let body = futures_util::stream::once(async move { Ok(Bytes::from(head)) }).chain(pages);
    let mut response = Body::from_stream(body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/jsonl"),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn query() -> EntryQuery {
        EntryQuery {
            since: Some("2026-01-02T03:04:05+01:00".into()),
            until: None,
            actor: Some("a".into()),
            device: Some("d".into()),
            action: Some("device.".into()),
            after: Some(7),
            before: None,
            order: Some("desc".into()),
            limit: Some(20),
        }
    }

    #[test]
    fn the_api_query_becomes_the_stores_with_every_filter() {
        let q = AuditQuery::try_from(query()).unwrap();
        assert_eq!(q.since.as_deref(), Some("2026-01-02T02:04:05.000000Z"));
        assert_eq!(
            (q.actor.as_deref(), q.device.as_deref()),
            (Some("a"), Some("d"))
        );
        assert_eq!(q.action.as_deref(), Some("device."));
        assert_eq!((q.after, q.before), (Some(7), None));
        assert!(q.newest_first);
        assert_eq!(q.limit, 20);
        assert_eq!(
            AuditQuery::try_from(EntryQuery {
                order: None,
                limit: None,
                ..query()
            })
            .unwrap()
            .limit,
            100
        );
    }

    #[test]
    fn out_of_range_queries_are_refused() {
        for bad in [
            EntryQuery {
                limit: Some(0),
                ..query()
            },
            EntryQuery {
                limit: Some(501),
                ..query()
            },
            EntryQuery {
                order: Some("up".into()),
                ..query()
            },
            EntryQuery {
                after: Some(u64::MAX),
                ..query()
            },
            EntryQuery {
                since: Some("yesterday".into()),
                ..query()
            },
        ] {
            assert_eq!(AuditQuery::try_from(bad).unwrap_err().status, 422);
        }
    }
}
