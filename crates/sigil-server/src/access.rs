//! What the access policy is asked about a device: its current facts, and what the broker should
//! let it do. Shared by the broker decision hooks and the Mosquitto sync.

use std::collections::BTreeSet;

use time::OffsetDateTime;

use sigil_domain::DeviceId;
use sigil_mosquitto::{Acl, AclType, DeviceGrant};
use sigil_policy::{DeviceFacts, OperatorContext, PolicyEngine, Principal, Target};
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
    Ok(DeviceFacts {
        id: id.to_string(),
        product: device.product_id.to_string(),
        state: device.state.as_str().to_owned(),
        certificate_status: certificate_status.to_owned(),
        // Compliance evaluation arrives with issue 7; until then it is unknown.
        compliance: "unknown".into(),
        quarantined: false,
    })
}

/// The device's own telemetry and command topic filters (the default topic layout).
pub fn telemetry_filter(device: &str) -> String {
    format!("devices/{device}/telemetry/#")
}

pub fn commands_filter(device: &str) -> String {
    format!("devices/{device}/commands/#")
}

/// What a pattern-based broker (Mosquitto's dynamic security) should grant the device: `None`
/// if the policy does not let it connect, else the topic filters of the default layout that the
/// policy allows. A policy error grants nothing (fail closed).
///
/// A pattern ACL cannot express every Cedar policy (one that looks at the topic's full name,
/// say); such deployments ask per topic through the EMQX-compatible hooks instead.
pub fn broker_grant(policy: &PolicyEngine, facts: &DeviceFacts) -> Option<DeviceGrant> {
    let principal = Principal::Device(facts.clone());
    let allowed = |action: &str, target: Target| match policy.decide(
        &principal,
        action,
        &target,
        &OperatorContext::default(),
    ) {
        Ok(d) => d.allowed,
        Err(e) => {
            tracing::error!(error = %e, device = %facts.id, action, "policy error: denying");
            false
        }
    };
    if !allowed("connect", Target::Broker("mosquitto".into())) {
        return None;
    }
    let mut acls = BTreeSet::new();
    let telemetry = telemetry_filter(&facts.id);
    if allowed("publish", Target::Topic(telemetry.clone())) {
        acls.insert(Acl::new(AclType::PublishClientSend, telemetry));
    }
    let commands = commands_filter(&facts.id);
    if allowed("subscribe", Target::Topic(commands.clone())) {
        // Subscribing and receiving are checked apart: grant both for the device's own
        // commands, and nothing else is delivered to it.
        acls.insert(Acl::new(AclType::PublishClientReceive, commands.clone()));
        acls.insert(Acl::new(AclType::SubscribePattern, commands));
    }
    Some(DeviceGrant { acls })
}
