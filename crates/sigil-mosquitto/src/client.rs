//! The control connection: an MQTT client (rumqttc, over TLS) that publishes command batches to
//! `$CONTROL/dynamic-security/v1` and reads the plugin's answers from its response topic.

use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::MosquittoError;
use crate::dynsec::{self, Command, Response};

const CONTROL_TOPIC: &str = "$CONTROL/dynamic-security/v1";
const RESPONSE_TOPIC: &str = "$CONTROL/dynamic-security/v1/response";
/// Commands per message: keeps each message (and the plugin's answer) well under any broker's
/// packet limit, and the broker's config-file rewrite per message amortised.
pub const BATCH: usize = 200;
/// Page size for listings.
const PAGE: i64 = 1000;

/// Where and how to reach the broker's control topic.
#[derive(Clone)]
pub struct ControlConfig {
    pub host: String,
    pub port: u16,
    pub username: String,
    pub password: String,
    /// TLS to the broker (the server name is `host`).
    pub tls: Arc<rustls::ClientConfig>,
    pub client_id: String,
    /// How long to wait for the plugin's answer to one message.
    pub timeout: Duration,
}

impl std::fmt::Debug for ControlConfig {
    // The password is a secret: never in logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("username", &self.username)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// What the event-loop task passes on.
enum Incoming {
    Subscribed,
    Answer(Vec<u8>),
    Closed(String),
}

/// A connected control client. Dropping it stops its event loop.
pub struct ControlClient {
    client: AsyncClient,
    incoming: mpsc::Receiver<Incoming>,
    event_loop: JoinHandle<()>,
    timeout: Duration,
    next_id: u64,
}

impl Drop for ControlClient {
    fn drop(&mut self) {
        self.event_loop.abort();
    }
}

impl ControlClient {
    /// Connect, subscribe to the response topic, and wait until the subscription is in place.
    pub async fn connect(config: &ControlConfig) -> Result<Self, MosquittoError> {
        let mut options = MqttOptions::new(&config.client_id, &config.host, config.port);
        options
            .set_credentials(&config.username, &config.password)
            .set_keep_alive(Duration::from_secs(30))
            .set_clean_session(true)
            // Listings of large fleets come back as one message per page.
            .set_max_packet_size(64 * 1024 * 1024, 4 * 1024 * 1024)
            .set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
                config.tls.clone(),
            )));
        let (client, mut event_loop) = AsyncClient::new(options, 64);
        let (tx, incoming) = mpsc::channel(64);
        let event_loop = tokio::spawn(async move {
            loop {
                match event_loop.poll().await {
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if tx.send(Incoming::Subscribed).await.is_err() {
                            return;
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) if p.topic == RESPONSE_TOPIC => {
                        if tx.send(Incoming::Answer(p.payload.to_vec())).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        // No silent reconnects: the owner notices, reconnects and re-reads the
                        // broker's state, which may have changed meanwhile.
                        let _ = tx.send(Incoming::Closed(e.to_string())).await;
                        return;
                    }
                }
            }
        });
        let mut me = Self {
            client,
            incoming,
            event_loop,
            timeout: config.timeout,
            next_id: 0,
        };
        me.client
            .subscribe(RESPONSE_TOPIC, QoS::AtLeastOnce)
            .await
            .map_err(|e| MosquittoError::Connection(e.to_string()))?;
        match tokio::time::timeout(config.timeout, me.incoming.recv()).await {
            Ok(Some(Incoming::Subscribed)) => Ok(me),
            Ok(Some(Incoming::Closed(e))) => Err(MosquittoError::Connection(e)),
            Ok(Some(Incoming::Answer(_))) => Err(MosquittoError::Malformed(
                "answer before any command".into(),
            )),
            Ok(None) => Err(MosquittoError::Connection("event loop stopped".into())),
            Err(_) => Err(MosquittoError::Timeout(config.timeout)),
        }
    }

    /// Send `commands` as one message and return the plugin's answers, in order.
    pub async fn send(&mut self, commands: &[Command]) -> Result<Vec<Response>, MosquittoError> {
        self.next_id += 1;
        let correlation = format!("sigil-{}-{}", std::process::id(), self.next_id);
        let mut body: Vec<Value> = Vec::with_capacity(commands.len());
        for c in commands {
            let mut v =
                serde_json::to_value(c).map_err(|e| MosquittoError::Malformed(e.to_string()))?;
            if let Some(o) = v.as_object_mut() {
                o.insert("correlationData".into(), Value::String(correlation.clone()));
            }
            body.push(v);
        }
        let payload = serde_json::to_vec(&serde_json::json!({ "commands": body }))
            .map_err(|e| MosquittoError::Malformed(e.to_string()))?;
        self.client
            .publish(CONTROL_TOPIC, QoS::AtLeastOnce, false, payload)
            .await
            .map_err(|e| MosquittoError::Connection(e.to_string()))?;
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            let next = tokio::time::timeout_at(deadline, self.incoming.recv()).await;
            match next {
                Err(_) => return Err(MosquittoError::Timeout(self.timeout)),
                Ok(None) => return Err(MosquittoError::Connection("event loop stopped".into())),
                Ok(Some(Incoming::Closed(e))) => return Err(MosquittoError::Connection(e)),
                Ok(Some(Incoming::Subscribed)) => {}
                Ok(Some(Incoming::Answer(bytes))) => {
                    let responses = dynsec::parse_responses(&bytes)?;
                    // Answers to other administrators' commands (or to an earlier, timed-out
                    // message of ours) share the topic: skip them.
                    if responses
                        .first()
                        .and_then(|r| r.correlation_data.as_deref())
                        == Some(correlation.as_str())
                    {
                        return Ok(responses);
                    }
                }
            }
        }
    }

    /// Send `commands` in batches, checking every answer.
    pub async fn execute(&mut self, commands: &[Command]) -> Result<(), MosquittoError> {
        for batch in commands.chunks(BATCH) {
            let responses = self.send(batch).await?;
            dynsec::check(batch, &responses)?;
        }
        Ok(())
    }

    /// Every client and role (verbose), page by page.
    pub async fn list_all(&mut self) -> Result<(Vec<Value>, Vec<Value>), MosquittoError> {
        let clients = self
            .list(|offset| Command::ListClients {
                verbose: true,
                count: PAGE,
                offset,
            })
            .await?;
        let roles = self
            .list(|offset| Command::ListRoles {
                verbose: true,
                count: PAGE,
                offset,
            })
            .await?;
        Ok((clients, roles))
    }

    async fn list(&mut self, page: impl Fn(i64) -> Command) -> Result<Vec<Value>, MosquittoError> {
        let mut all = Vec::new();
        loop {
            let command = page(all.len() as i64);
            let responses = self.send(std::slice::from_ref(&command)).await?;
            dynsec::check(std::slice::from_ref(&command), &responses)?;
            let data = responses
                .first()
                .and_then(|r| r.data.as_ref())
                .ok_or_else(|| MosquittoError::Malformed("listing without data".into()))?;
            let (items, total) = match command {
                Command::ListClients { .. } => dynsec::listed_clients(data)?,
                _ => dynsec::listed_roles(data)?,
            };
            let empty = items.is_empty();
            all.extend(items);
            if empty || all.len() as i64 >= total {
                return Ok(all);
            }
        }
    }
}
