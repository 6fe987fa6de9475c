//! Refusals and failed authentications in the audit log. A refusal changed nothing, so its
//! entry is written in a transaction of its own; if that write fails the refusal still stands
//! (failing closed) and the failure is logged.

use std::net::IpAddr;

use sigil_audit::{Actor, AuditEvent, Outcome};

use crate::Authority;
use crate::failures::Verdict;

/// A refusal as the audit log records it: the caller's stable code and the reason it was told.
#[derive(Debug, Clone, Copy)]
pub struct RefusalRecord<'a> {
    pub code: &'a str,
    pub reason: &'a str,
    /// Denied (the caller may not: 403, 409) rather than failed (bad input, bad credential).
    pub denied: bool,
}

impl RefusalRecord<'_> {
    fn outcome(&self) -> Outcome {
        if self.denied {
            Outcome::Denied
        } else {
            Outcome::Failure
        }
    }
}

impl Authority {
    /// Record a refused request.
    pub async fn record_refusal(
        &self,
        actor: &Actor,
        action: &str,
        subject: String,
        refusal: RefusalRecord<'_>,
    ) {
        // Bounded, and one line: a reason may quote what the caller sent.
        let reason: String = refusal
            .reason
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .take(512)
            .collect();
        let details = serde_json::json!({"code": refusal.code, "reason": reason});
        self.append_refusal(actor, action, subject, refusal.outcome(), details)
            .await;
    }

    /// A failed authentication from `ip` on `channel` (`api`, `est`): recorded with the address,
    /// or, past the address's limit, only counted for the window's summary. Returns
    /// `Some(retry_after_seconds)` when the caller is to be told to slow down instead.
    pub async fn authentication_failed(
        &self,
        ip: Option<IpAddr>,
        channel: &str,
        actor: &Actor,
        action: &str,
        subject: String,
        refusal: RefusalRecord<'_>,
    ) -> Option<u64> {
        if let Some(ip) = ip
            && let Verdict::Limited { retry_after } = self.failures.note(ip, channel, self.now())
        {
            return Some(retry_after);
        }
        let address = ip.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
        // The reason may echo what the caller sent: keep entries small.
        let reason: String = refusal.reason.chars().take(512).collect();
        let details =
            serde_json::json!({"code": refusal.code, "reason": reason, "source_ip": address});
        self.append_refusal(actor, action, subject, refusal.outcome(), details)
            .await;
        None
    }

    /// One entry in a transaction of its own (the refusal changed nothing); a failed write is
    /// logged and the refusal stands.
    async fn append_refusal(
        &self,
        actor: &Actor,
        action: &str,
        subject: String,
        outcome: Outcome,
        details: serde_json::Value,
    ) {
        let event = AuditEvent::new(self.now(), actor.clone(), action, subject, outcome, details);
        if let Err(write) = self.store.append_audit(vec![event]).await {
            tracing::error!(error = %write, action, "could not record a refusal in the audit log");
        }
    }
}
