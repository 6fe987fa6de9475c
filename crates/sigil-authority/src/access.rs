//! What the access policy is asked about a device: its current facts. Shared by the broker
//! decision hooks (REST API) and the Mosquitto sync.

use time::OffsetDateTime;

use sigil_domain::DeviceId;
use sigil_policy::DeviceFacts;
use sigil_store::{CertificateStatus, Store, StoreError};

/// What Sigil knows of a device now, as policy facts. An unknown device (or a name that is not
/// a device id) has no valid certificate.
pub async fn device_facts(
    store: &Store,
    username: &str,
    now: OffsetDateTime,
) -> Result<DeviceFacts, StoreError> {
    let unknown = |id: String| DeviceFacts {
        id,
        product: "unknown".into(),
        state: "unknown".into(),
        certificate_status: "none".into(),
        compliance: "unknown".into(),
        quarantined: false,
    };
    let Ok(id) = username.parse::<DeviceId>() else {
        return Ok(unknown(username.chars().take(64).collect()));
    };
    let device = match store.get_device(id).await {
        Ok(d) => d,
        Err(StoreError::NotFound { .. }) => return Ok(unknown(id.to_string())),
        Err(e) => return Err(e),
    };
    let certificates = store.list_certificates(Some(id), 1000).await?;
    let certificate_status = if certificates
        .iter()
        .any(|c| c.status != CertificateStatus::Revoked && c.not_before <= now && now < c.not_after)
    {
        "valid"
    } else if certificates
        .iter()
        .any(|c| c.status == CertificateStatus::Revoked)
    {
        "revoked"
    } else if certificates.is_empty() {
        "none"
    } else {
        "expired"
    };
    // Quarantine is a trust state of its own: the policy leaves the device its quarantine topic.
    let quarantined = store.quarantined_since(id).await?.is_some();
    Ok(DeviceFacts {
        id: id.to_string(),
        product: device.product_id.to_string(),
        state: device.state.as_str().to_owned(),
        certificate_status: certificate_status.to_owned(),
        // Compliance evaluation arrives with issue 7; until then it is unknown.
        compliance: "unknown".into(),
        quarantined,
    })
}
