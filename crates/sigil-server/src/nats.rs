//! The metrics bus on NATS JetStream: envelopes go to `<prefix>.<device>` with their tag in a
//! header; the detector consumes through the durable consumer and acknowledges each envelope
//! only once it was applied, so a detector that stops resumes from the last acknowledged one.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use sigil_authority::monitoring::bus::BoxFuture;
use sigil_authority::monitoring::{Delivery, Envelope, MetricsTransport};
use sigil_nats::{QueueConfig, WorkQueue};

use crate::ServerError;

/// The header carrying an envelope's HMAC tag (hex).
const TAG_HEADER: &str = "Sigil-Tag";

pub struct JetStreamTransport {
    queue: Arc<WorkQueue>,
}

impl JetStreamTransport {
    pub async fn connect(config: QueueConfig) -> Result<Self, ServerError> {
        let queue = WorkQueue::connect(config)
            .await
            .map_err(|e| ServerError::Config(format!("metrics bus: {e}")))?;
        Ok(Self {
            queue: Arc::new(queue),
        })
    }
}

impl MetricsTransport for JetStreamTransport {
    fn publish<'a>(
        &'a self,
        device: &'a str,
        envelope: Envelope,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            // Device ids are UUIDs; anything else is not a subject token of ours.
            let key: String = device
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' {
                        c
                    } else {
                        '_'
                    }
                })
                .take(64)
                .collect();
            let tag = hex::encode(&envelope.tag);
            self.queue
                .publish(&key, &[(TAG_HEADER, &tag)], envelope.body)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn deliveries(&self) -> BoxFuture<'_, Result<mpsc::Receiver<Delivery>, String>> {
        Box::pin(async move {
            let mut received = self.queue.consume().await.map_err(|e| e.to_string())?;
            let (tx, rx) = mpsc::channel(1024);
            tokio::spawn(async move {
                loop {
                    // The detector stopped (the server shuts down): stop taking messages.
                    let message = tokio::select! {
                        m = received.recv() => match m { Some(m) => m, None => return },
                        () = tx.closed() => return,
                    };
                    // A missing or malformed tag is an empty one: the envelope is refused as
                    // forged, like any other the key did not make.
                    let tag = message
                        .header(TAG_HEADER)
                        .and_then(|h| hex::decode(h).ok())
                        .unwrap_or_default();
                    let envelope = Envelope {
                        body: message.payload.clone(),
                        tag,
                    };
                    let (ack, applied) = oneshot::channel();
                    if tx
                        .send(Delivery {
                            envelope,
                            ack: Some(ack),
                        })
                        .await
                        .is_err()
                    {
                        return;
                    }
                    // Acknowledged once the detector applied it (in the background, so the
                    // next message need not wait for the round trip).
                    tokio::spawn(async move {
                        if applied.await.is_ok()
                            && let Err(e) = message.ack().await
                        {
                            tracing::warn!(error = %e, "metrics bus: acknowledgement failed (it will be redelivered)");
                        }
                    });
                }
            });
            Ok(rx)
        })
    }

    fn name(&self) -> &'static str {
        "jetstream"
    }
}
