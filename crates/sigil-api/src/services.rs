//! TLS server certificates for the deployment's own services (an MQTT broker, say), issued by
//! Sigil's CA from a CSR, so that devices trust them through the root they already pin and a
//! deployment needs no second CA. The key stays with the service; only the CSR's verified key
//! is used. Audited as `service_certificate.issued`.

use std::net::IpAddr;

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use sigil_audit::{AuditEvent, Outcome};
use sigil_ca::ValidatedCsr;

use super::auth::Caller;
use super::{ApiError, ApiJson, AppState};
use sigil_authority::rfc3339;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceCertificateRequest {
    /// PEM PKCS#10 request made where the service's key lives.
    pub csr: String,
    /// DNS names the service answers to (the first is also the subject CN).
    #[serde(default)]
    pub dns_names: Vec<String>,
    #[serde(default)]
    pub ip_addresses: Vec<String>,
    /// 1 to 398 days; default 90.
    pub validity_days: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ServiceCertificateResponse {
    pub serial: String,
    /// The certificate, PEM.
    pub certificate: String,
    /// Issuing CA and root, PEM: what the service presents after its certificate.
    pub chain: String,
    pub not_after: String,
    pub sha256: String,
}

/// Issue a TLS server certificate (serverAuth) for one of the deployment's services.
#[utoipa::path(post, path = "/api/v1/services/certificates", tag = "certificates",
    request_body = ServiceCertificateRequest,
    responses((status = 201, body = ServiceCertificateResponse), (status = 422, body = super::Problem)))]
pub async fn issue(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    ApiJson(req): ApiJson<ServiceCertificateRequest>,
) -> Result<(StatusCode, Json<ServiceCertificateResponse>), ApiError> {
    if req.dns_names.len() + req.ip_addresses.len() > 32 {
        return Err(ApiError::invalid("at most 32 names and addresses"));
    }
    let ips = req
        .ip_addresses
        .iter()
        .map(|ip| {
            ip.parse::<IpAddr>().map_err(|_| {
                ApiError::invalid(format!("ip_addresses: `{ip}` is not an IP address"))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let days = req.validity_days.unwrap_or(90);
    let csr = ValidatedCsr::from_pem(&req.csr)?;
    let now = state.now();
    let issued = state
        .ca()
        .issue_service_certificate(
            &csr,
            &req.dns_names,
            &ips,
            time::Duration::days(i64::from(days)),
            state.urls(),
            now,
        )
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    state
        .store()
        .append_audit(vec![AuditEvent::new(
            now,
            caller.actor(),
            "service_certificate.issued",
            format!("certificate:{}", issued.serial),
            Outcome::Success,
            serde_json::json!({
                "dns_names": req.dns_names,
                "ip_addresses": req.ip_addresses,
                "sha256": issued.fingerprint.as_str(),
                "spki_sha256": issued.spki_fingerprint.as_str(),
                "not_after": issued.not_after.unix_timestamp(),
            }),
        )])
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(ServiceCertificateResponse {
            serial: issued.serial.to_string(),
            certificate: issued.pem,
            chain: state.ca().chain_pem(),
            not_after: rfc3339(issued.not_after),
            sha256: issued.fingerprint.to_string(),
        }),
    ))
}
