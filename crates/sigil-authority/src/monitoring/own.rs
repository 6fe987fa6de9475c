//! Sigil's own metrics: refusals that name a device, read from the audit log (where every
//! refusal is recorded): TLS client certificates refused, EST requests failed, posture reports
//! refused, and the access decisions brokers ask for through the EMQX hooks that the
//! policy denied (authorization failures: Mosquitto 2.0 logs its own refusals only at debug
//! level, which it never publishes on `$SYS/broker/log`). They go on the bus like any
//! collector's.

use std::sync::Arc;
use std::time::Duration;

use sigil_audit::{AuditEntry, Outcome};
use sigil_detect::{Datapoint, Metric};
use sigil_domain::Serial;

use crate::Authority;

/// The audit actions read, and the metric each refusal counts towards.
const WATCHED: [(&str, Metric); 7] = [
    ("tls.client_certificate", Metric::TlsRefusals),
    ("est.simpleenroll", Metric::EstFailures),
    ("est.simplereenroll", Metric::EstFailures),
    ("posture.report", Metric::ApiAuthenticationFailures),
    ("broker.connect", Metric::AuthorizationFailures),
    ("broker.publish", Metric::AuthorizationFailures),
    ("broker.subscribe", Metric::AuthorizationFailures),
];

/// Follow the audit log from its end and submit a datapoint for each refusal naming a device.
pub fn spawn_own_metrics(authority: Arc<Authority>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let store = authority.store().clone();
        let mut cursor = loop {
            match store.audit_size().await {
                Ok(end) => break end,
                Err(e) => {
                    tracing::error!(error = %e, "monitoring: audit log unavailable");
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
            }
        };
        let mut commits = store.commits();
        let actions: Vec<&str> = WATCHED.iter().map(|(a, _)| *a).collect();
        loop {
            match store.audit_changes_since(cursor, 1000, &actions).await {
                Ok((changes, next)) => {
                    let mut points = Vec::new();
                    for change in changes {
                        if let Some(point) =
                            refusal_datapoint(&authority, change.entry.as_deref()).await
                        {
                            points.push(point);
                        }
                    }
                    if let Err(e) = authority.submit_metrics("sigil", points).await {
                        tracing::error!(error = %e, "monitoring: own metrics not submitted");
                    }
                    if next != cursor {
                        cursor = next;
                        continue;
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "monitoring: audit log unavailable");
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
            }
            tokio::select! {
                changed = commits.changed() => if changed.is_err() { return },
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    })
}

/// The datapoint for a refusal entry naming a device (directly, or by its certificate).
async fn refusal_datapoint(authority: &Authority, entry: Option<&str>) -> Option<Datapoint> {
    let entry = AuditEntry::from_canonical(entry?).ok()?;
    if entry.outcome == Outcome::Success {
        return None;
    }
    let metric = WATCHED.iter().find(|(a, _)| *a == entry.action)?.1;
    let device = match entry.subject.split_once(':')? {
        ("device", id) => id.to_owned(),
        ("certificate", serial) => {
            let serial: Serial = serial.parse().ok()?;
            authority
                .store()
                .get_certificate(&serial)
                .await
                .ok()?
                .device_id
                .to_string()
        }
        _ => return None,
    };
    Some(Datapoint::number(device, metric, authority.now_ms(), 1.0))
}
