//! What a pattern-based broker (Mosquitto's dynamic security) grants a device, decided by the
//! access policy over the device's facts.

use std::collections::BTreeSet;

use sigil_mosquitto::{Acl, AclType, DeviceGrant};
use sigil_policy::{DeviceFacts, OperatorContext, PolicyEngine, Principal, Target};

/// The device's own telemetry and command topic filters (the default topic layout).
pub fn telemetry_filter(device: &str) -> String {
    format!("devices/{device}/telemetry/#")
}

pub fn commands_filter(device: &str) -> String {
    format!("devices/{device}/commands/#")
}

/// Where a quarantined device is still sent commands (instructions to recover, say).
pub fn quarantine_filter(device: &str) -> String {
    format!("devices/{device}/quarantine/#")
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
    let quarantine = quarantine_filter(&facts.id);
    if allowed("subscribe", Target::Topic(quarantine.clone())) {
        acls.insert(Acl::new(AclType::PublishClientReceive, quarantine.clone()));
        acls.insert(Acl::new(AclType::SubscribePattern, quarantine));
    }
    Some(DeviceGrant { acls })
}
