//! The fleet at a glance: devices per lifecycle state and certificates expiring soon, counted
//! by the database (the console's overview, and any dashboard).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use super::{ApiError, AppState};

#[derive(Serialize, ToSchema)]
pub struct InventorySummaryView {
    /// Devices per lifecycle state (registered, provisioned, active, suspended, retired).
    pub devices_by_state: BTreeMap<String, i64>,
    pub devices: i64,
    pub products: i64,
    /// Live certificates ending within 7, 30 and 90 days (each count includes the shorter
    /// windows).
    pub expiring: Vec<ExpiryWindow>,
    /// Live certificates already past their validity.
    pub expired: i64,
    /// Certificates from other CAs (tracked, never trusted) already past their validity.
    pub foreign_expired: i64,
    pub as_of: String,
}

#[derive(Serialize, ToSchema)]
pub struct ExpiryWindow {
    pub days: i64,
    pub certificates: i64,
    /// Certificates from other CAs ending within the window (not yet ended).
    pub foreign_certificates: i64,
}

/// Devices per state and certificates expiring soon.
#[utoipa::path(get, path = "/api/v1/inventory/summary", tag = "inventory",
    responses((status = 200, body = InventorySummaryView)))]
pub async fn inventory_summary(
    State(state): State<AppState>,
) -> Result<Json<InventorySummaryView>, ApiError> {
    let now = state.now();
    let summary = state.store().inventory_summary(now).await?;
    let limits: Vec<_> = summary
        .expiring
        .iter()
        .map(|(days, _)| now + time::Duration::days(*days))
        .collect();
    let (foreign, foreign_expired) = state.store().foreign_expiry_counts(now, &limits).await?;
    let devices_by_state: BTreeMap<String, i64> = summary.devices_by_state.into_iter().collect();
    Ok(Json(InventorySummaryView {
        devices: devices_by_state.values().sum(),
        devices_by_state,
        products: summary.products,
        expiring: summary
            .expiring
            .into_iter()
            .zip(foreign)
            .map(
                |((days, certificates), foreign_certificates)| ExpiryWindow {
                    days,
                    certificates,
                    foreign_certificates,
                },
            )
            .collect(),
        expired: summary.expired,
        foreign_expired,
        as_of: sigil_authority::rfc3339(now),
    }))
}

#[derive(Serialize, ToSchema)]
pub struct AuditStatusView {
    /// The newest signed checkpoint's tree size and origin (absent before the first).
    pub checkpoint_size: Option<u64>,
    pub checkpoint_origin: Option<String>,
    /// When the log's integrity (every entry against the newest checkpoint) was last verified.
    pub verified_at: Option<String>,
    /// Why the last verification failed, if it did.
    pub integrity_failure: Option<String>,
    /// The log's note verifier key (`origin+keyhash+base64key`), to check checkpoints with.
    pub verifier_key: String,
}

/// The audit log's health: its newest checkpoint and its last verification.
#[utoipa::path(get, path = "/api/v1/audit/status", tag = "audit",
    responses((status = 200, body = AuditStatusView)))]
pub async fn audit_status(State(state): State<AppState>) -> Json<AuditStatusView> {
    let checkpoint = state.audit().latest().await;
    Json(AuditStatusView {
        checkpoint_size: checkpoint.as_ref().map(|c| c.size),
        checkpoint_origin: checkpoint.map(|c| c.origin),
        verified_at: state.audit().verified_at().map(sigil_authority::rfc3339),
        integrity_failure: state.audit().integrity_failure(),
        verifier_key: state.audit().key().verifier_key(),
    })
}
