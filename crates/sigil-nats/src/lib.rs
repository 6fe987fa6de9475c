//! A durable work queue on NATS JetStream: messages published to `<prefix>.<key>` are kept in a
//! file-backed stream until a consumer acknowledges them; a durable pull consumer shared by the
//! detectors of a deployment hands each message to one of them, and redelivers what was not
//! acknowledged within its wait (a detector that stopped picks up where it was).
//!
//! Knows nothing of Sigil's envelopes: bytes and headers in, bytes and headers out.

use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, consumer, stream};
use futures_util::StreamExt;
use tokio::sync::mpsc;

#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    #[error("NATS at {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("JetStream: {0}")]
    JetStream(String),
}

fn js_error(e: impl std::fmt::Display) -> NatsError {
    NatsError::JetStream(e.to_string())
}

/// Where the queue lives.
#[derive(Debug, Clone)]
pub struct QueueConfig {
    /// `nats://host:port`.
    pub url: String,
    /// The stream's name (created if missing), e.g. `SIGIL_METRICS`.
    pub stream: String,
    /// Subjects are `<prefix>.<key>`, e.g. `sigil.metrics.<device>`.
    pub subject_prefix: String,
    /// The durable consumer the detectors share.
    pub durable: String,
    /// Messages older than this are dropped, acknowledged or not.
    pub max_age: Duration,
    /// Redeliver a message not acknowledged within this long.
    pub ack_wait: Duration,
}

impl QueueConfig {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            stream: "SIGIL_METRICS".into(),
            subject_prefix: "sigil.metrics".into(),
            durable: "sigil-detector".into(),
            max_age: Duration::from_secs(24 * 3600),
            ack_wait: Duration::from_secs(30),
        }
    }
}

/// A message received, to acknowledge once applied.
pub struct Received {
    pub payload: Vec<u8>,
    pub headers: Vec<(String, String)>,
    message: jetstream::Message,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Acknowledge: the stream will not deliver it again.
    pub async fn ack(self) -> Result<(), NatsError> {
        self.message.ack().await.map_err(js_error)
    }
}

/// The queue: a connection and the stream it made sure of.
pub struct WorkQueue {
    js: jetstream::Context,
    config: QueueConfig,
}

impl WorkQueue {
    /// Connect and create the stream if it does not exist (file storage, limits retention).
    pub async fn connect(config: QueueConfig) -> Result<Self, NatsError> {
        let client = async_nats::connect(&config.url)
            .await
            .map_err(|e| NatsError::Connect {
                url: config.url.clone(),
                reason: e.to_string(),
            })?;
        let js = jetstream::new(client);
        js.get_or_create_stream(stream::Config {
            name: config.stream.clone(),
            subjects: vec![format!("{}.>", config.subject_prefix)],
            storage: stream::StorageType::File,
            max_age: config.max_age,
            ..Default::default()
        })
        .await
        .map_err(js_error)?;
        Ok(Self { js, config })
    }

    pub fn config(&self) -> &QueueConfig {
        &self.config
    }

    /// Publish and wait for the stream's acknowledgement (it is then stored).
    pub async fn publish(
        &self,
        key: &str,
        headers: &[(&str, &str)],
        payload: Vec<u8>,
    ) -> Result<(), NatsError> {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.insert(*name, *value);
        }
        let subject = format!("{}.{key}", self.config.subject_prefix);
        self.js
            .publish_with_headers(subject, map, payload.into())
            .await
            .map_err(js_error)?
            .await
            .map_err(js_error)?;
        Ok(())
    }

    /// Start consuming through the durable consumer: messages arrive on the channel, which
    /// closes if the subscription ends.
    pub async fn consume(&self) -> Result<mpsc::Receiver<Received>, NatsError> {
        let stream = self
            .js
            .get_stream(&self.config.stream)
            .await
            .map_err(js_error)?;
        let consumer: consumer::PullConsumer = stream
            .get_or_create_consumer(
                &self.config.durable,
                consumer::pull::Config {
                    durable_name: Some(self.config.durable.clone()),
                    ack_policy: consumer::AckPolicy::Explicit,
                    ack_wait: self.config.ack_wait,
                    deliver_policy: consumer::DeliverPolicy::All,
                    ..Default::default()
                },
            )
            .await
            .map_err(js_error)?;
        let mut messages = consumer.messages().await.map_err(js_error)?;
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(async move {
            loop {
                // Stop pulling as soon as nobody listens: what was pulled and not acknowledged
                // is redelivered (after `ack_wait`) to whoever consumes next.
                let next = tokio::select! {
                    next = messages.next() => next,
                    () = tx.closed() => return,
                };
                match next {
                    Some(Ok(message)) => {
                        let headers = message
                            .headers
                            .as_ref()
                            .map(|h| {
                                h.iter()
                                    .flat_map(|(name, values)| {
                                        values
                                            .iter()
                                            .map(move |v| (name.to_string(), v.to_string()))
                                    })
                                    .collect()
                            })
                            .unwrap_or_default();
                        let received = Received {
                            payload: message.payload.to_vec(),
                            headers,
                            message,
                        };
                        if tx.send(received).await.is_err() {
                            return;
                        }
                    }
                    Some(Err(e)) => tracing::warn!(error = %e, "JetStream consumer"),
                    None => return,
                }
            }
        });
        Ok(rx)
    }

    /// Remove the stream (tests clean up after themselves).
    pub async fn delete_stream(&self) -> Result<(), NatsError> {
        self.js
            .delete_stream(&self.config.stream)
            .await
            .map_err(js_error)?;
        Ok(())
    }
}
