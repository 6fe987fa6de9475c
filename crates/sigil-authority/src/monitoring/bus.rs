//! The metrics bus between collectors and detectors: batches of datapoints in envelopes that
//! carry an HMAC-SHA256 tag under a key derived from the CA passphrase. Every Sigil instance of
//! a deployment holds the key; a message anyone else put on the bus (NATS, say) is refused as
//! forged and counted, never applied.
//!
//! The transport is the only thing that differs between the embedded default (a channel in
//! process) and a deployment at scale (a durable JetStream stream, in `sigil-server`): both
//! seal, carry and open the same envelopes, and acknowledge each once it was applied.

use std::future::Future;
use std::pin::Pin;

use aws_lc_rs::hmac;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use sigil_detect::Datapoint;

/// Largest envelope body accepted, and most datapoints in one.
pub const MAX_BATCH_BYTES: usize = 4 << 20;
pub const MAX_BATCH_POINTS: usize = 20_000;

/// What travels: the batch's JSON and its tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub body: Vec<u8>,
    pub tag: Vec<u8>,
}

/// The source of the devices' own reports (the agent's, over mTLS).
pub const DEVICE_SOURCE: &str = "api";

/// Datapoints a collector sends together. The id and the time are under the tag: a detector
/// applies each batch once, and only while it is fresh, so a captured envelope replayed onto
/// the bus does nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Batch {
    /// Unique per batch (UUIDv4).
    pub id: String,
    /// `api` (the agent's reports), `broker` (the observer), `sigil` (Sigil's own refusals).
    pub source: String,
    pub sent_ms: i64,
    pub points: Vec<Datapoint>,
}

impl Batch {
    pub fn new(source: &str, sent_ms: i64, points: Vec<Datapoint>) -> Self {
        Self {
            id: uuid::Uuid::new_v4().to_string(),
            source: source.to_owned(),
            sent_ms,
            points,
        }
    }
}

/// A batch older than this when it is opened is refused (replayed, or stuck too long).
pub const MAX_BATCH_AGE_MS: i64 = 10 * 60 * 1000;
/// A batch stamped further ahead than this is refused (a collector's clock is wrong).
pub const MAX_CLOCK_AHEAD_MS: i64 = 60 * 1000;

/// The ids of the batches applied in the last [`MAX_BATCH_AGE_MS`]: a batch seen again (a
/// replay, or a redelivery of one applied but not yet acknowledged) is not applied twice.
#[derive(Default)]
pub struct SeenBatches {
    ids: std::collections::HashMap<String, i64>,
}

impl SeenBatches {
    /// `Ok` if `batch` is fresh at `now_ms` and new (it is then remembered).
    pub fn admit(&mut self, batch: &Batch, now_ms: i64) -> Result<(), EnvelopeRefusal> {
        if now_ms - batch.sent_ms > MAX_BATCH_AGE_MS || batch.sent_ms - now_ms > MAX_CLOCK_AHEAD_MS
        {
            return Err(EnvelopeRefusal::Stale);
        }
        if self.ids.len() >= 1_000_000 {
            self.ids
                .retain(|_, sent| now_ms - *sent <= MAX_BATCH_AGE_MS);
        }
        if self.ids.contains_key(&batch.id) {
            return Err(EnvelopeRefusal::Replayed);
        }
        self.ids.insert(batch.id.clone(), batch.sent_ms);
        Ok(())
    }
}

/// Why an envelope was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeRefusal {
    #[error("forged: the tag does not verify")]
    Forged,
    #[error("replayed: this batch was applied already")]
    Replayed,
    #[error("stale: sent too long ago, or stamped in the future")]
    Stale,
    #[error("malformed: {0}")]
    Malformed(String),
}

pub struct Sealer {
    key: hmac::Key,
}

impl Sealer {
    pub fn new(key: &[u8; 32]) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, key),
        }
    }

    pub fn seal(&self, batch: &Batch) -> Envelope {
        // Serialising plain data to a Vec cannot fail.
        let body = serde_json::to_vec(batch).unwrap_or_default();
        let tag = hmac::sign(&self.key, &body).as_ref().to_vec();
        Envelope { body, tag }
    }

    /// Verify (in constant time) before reading anything, then parse and bound.
    pub fn open(&self, envelope: &Envelope) -> Result<Batch, EnvelopeRefusal> {
        if envelope.body.len() > MAX_BATCH_BYTES {
            return Err(EnvelopeRefusal::Malformed(format!(
                "{} bytes; at most {MAX_BATCH_BYTES}",
                envelope.body.len()
            )));
        }
        hmac::verify(&self.key, &envelope.body, &envelope.tag)
            .map_err(|_| EnvelopeRefusal::Forged)?;
        let batch: Batch = serde_json::from_slice(&envelope.body)
            .map_err(|e| EnvelopeRefusal::Malformed(e.to_string()))?;
        if batch.points.len() > MAX_BATCH_POINTS {
            return Err(EnvelopeRefusal::Malformed(format!(
                "{} datapoints; at most {MAX_BATCH_POINTS}",
                batch.points.len()
            )));
        }
        Ok(batch)
    }
}

/// An envelope handed to the detector, with the means to acknowledge it once applied (a
/// durable transport redelivers what was not acknowledged).
pub struct Delivery {
    pub envelope: Envelope,
    pub ack: Option<oneshot::Sender<()>>,
}

impl Delivery {
    pub fn acknowledge(self) {
        if let Some(ack) = self.ack {
            let _ = ack.send(());
        }
    }
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How envelopes travel from collectors to detectors.
pub trait MetricsTransport: Send + Sync + 'static {
    /// Hand an envelope over; returns once the transport holds it (durably, if it is durable).
    /// `device` keys the message (the subject on NATS).
    fn publish<'a>(
        &'a self,
        device: &'a str,
        envelope: Envelope,
    ) -> BoxFuture<'a, Result<(), String>>;
    /// Start delivering envelopes to this detector. Called once.
    fn deliveries(&self) -> BoxFuture<'_, Result<mpsc::Receiver<Delivery>, String>>;
    /// `in-process` or `jetstream`.
    fn name(&self) -> &'static str;
}

/// The embedded default: a bounded channel in this process.
pub struct InProcess {
    sender: mpsc::Sender<Delivery>,
    receiver: std::sync::Mutex<Option<mpsc::Receiver<Delivery>>>,
}

impl Default for InProcess {
    fn default() -> Self {
        let (sender, receiver) = mpsc::channel(16_384);
        Self {
            sender,
            receiver: std::sync::Mutex::new(Some(receiver)),
        }
    }
}

impl MetricsTransport for InProcess {
    fn publish<'a>(
        &'a self,
        _device: &'a str,
        envelope: Envelope,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            self.sender
                .send(Delivery {
                    envelope,
                    ack: None,
                })
                .await
                .map_err(|_| "the detector has stopped".to_owned())
        })
    }

    fn deliveries(&self) -> BoxFuture<'_, Result<mpsc::Receiver<Delivery>, String>> {
        let taken = self.receiver.lock().ok().and_then(|mut r| r.take());
        Box::pin(async move { taken.ok_or_else(|| "deliveries already taken".to_owned()) })
    }

    fn name(&self) -> &'static str {
        "in-process"
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use sigil_detect::Metric;

    #[test]
    fn envelopes_open_only_under_their_key_and_unaltered() {
        let sealer = Sealer::new(&[1; 32]);
        let batch = Batch::new(
            "api",
            5,
            vec![Datapoint::number("d", Metric::BytesIn, 5, 1.0)],
        );
        let envelope = sealer.seal(&batch);
        assert_eq!(sealer.open(&envelope).unwrap(), batch);
        assert_eq!(
            Sealer::new(&[2; 32]).open(&envelope),
            Err(EnvelopeRefusal::Forged)
        );
        let mut altered = envelope.clone();
        altered.body[10] ^= 1;
        assert_eq!(sealer.open(&altered), Err(EnvelopeRefusal::Forged));
        let garbage = Envelope {
            body: b"{".to_vec(),
            tag: hmac::sign(&sealer.key, b"{").as_ref().to_vec(),
        };
        assert!(matches!(
            sealer.open(&garbage),
            Err(EnvelopeRefusal::Malformed(_))
        ));
    }

    #[test]
    fn batches_are_applied_once_and_only_while_fresh() {
        let mut seen = SeenBatches::default();
        let batch = Batch::new("api", 1_000_000, vec![]);
        assert_eq!(seen.admit(&batch, 1_000_500), Ok(()));
        assert_eq!(
            seen.admit(&batch, 1_000_600),
            Err(EnvelopeRefusal::Replayed)
        );
        let old = Batch::new("api", 1_000_000, vec![]);
        assert_eq!(
            seen.admit(&old, 1_000_000 + MAX_BATCH_AGE_MS + 1),
            Err(EnvelopeRefusal::Stale)
        );
        let ahead = Batch::new("api", 1_000_000 + MAX_CLOCK_AHEAD_MS + 1, vec![]);
        assert_eq!(seen.admit(&ahead, 1_000_000), Err(EnvelopeRefusal::Stale));
    }
}
