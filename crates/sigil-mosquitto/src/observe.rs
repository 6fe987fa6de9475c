//! Watching a Mosquitto broker from outside, with no plugin of ours inside it: the broker's log
//! published on `$SYS/broker/log/#` (`log_dest topic`) tells connections and disconnections;
//! subscribing to the devices' topics tells message counts and sizes.
//!
//! [`parse_log_line`] reads Mosquitto 2.0's log messages (pure); [`Observer`] is the client.

use std::net::IpAddr;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::{ControlConfig, MosquittoError};

/// The broker's notices (connections, disconnections), as published with `log_dest topic`.
pub const LOG_NOTICE_TOPIC: &str = "$SYS/broker/log/N";

/// What one log line says about a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogEvent {
    /// `New client connected from <ip>:<port> as <id> (...)`.
    Connected { client: String, address: IpAddr },
    /// `Client <id> disconnected...`, `Client <id> closed its connection.`, `Client <id> has
    /// exceeded timeout, disconnecting.`
    Disconnected { client: String },
}

/// Parse one payload of `$SYS/broker/log/N`. Lines about anything else, or that do not
/// parse, give `None`.
pub fn parse_log_line(payload: &str) -> Option<LogEvent> {
    // "<unix time>: <message>"
    let (time, message) = payload.split_once(": ")?;
    if time.is_empty() || !time.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let message = message.trim_end();
    if let Some(rest) = message.strip_prefix("New client connected from ") {
        let (endpoint, rest) = rest.split_once(" as ")?;
        let client = rest
            .split_once(" (")
            .map_or(rest, |(c, _)| c)
            .trim_end_matches('.');
        let address = endpoint_address(endpoint)?;
        if client.is_empty() || client.contains(' ') {
            return None;
        }
        return Some(LogEvent::Connected {
            client: client.to_owned(),
            address,
        });
    }
    let rest = message.strip_prefix("Client ")?;
    let (client, what) = rest.split_once(' ')?;
    let disconnect = what.starts_with("disconnected")
        || what.starts_with("closed its connection")
        || what.starts_with("has exceeded timeout");
    if disconnect && client != "<unknown>" && !client.is_empty() {
        return Some(LogEvent::Disconnected {
            client: client.to_owned(),
        });
    }
    None
}

/// `1.2.3.4:5678` or `[::1]:5678` (Mosquitto writes IPv6 bare: `::1:5678`).
fn endpoint_address(endpoint: &str) -> Option<IpAddr> {
    if let Ok(socket) = endpoint.parse::<std::net::SocketAddr>() {
        return Some(socket.ip());
    }
    let (host, port) = endpoint.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

/// A message the observer received.
#[derive(Debug, Clone)]
pub struct Observed {
    pub topic: String,
    pub payload_len: usize,
    /// The payload when the topic is a log topic (small text); empty otherwise.
    pub text: String,
}

/// A read-only client subscribed to the log topic and the given filters. Dropping it stops it.
pub struct Observer {
    event_loop: JoinHandle<()>,
    _client: AsyncClient,
}

impl Drop for Observer {
    fn drop(&mut self) {
        self.event_loop.abort();
    }
}

impl Observer {
    /// Connect with `config`'s account and subscribe; messages arrive on the returned channel,
    /// which closes when the connection ends (the owner reconnects).
    pub async fn connect(
        config: &ControlConfig,
        filters: &[String],
    ) -> Result<(Self, mpsc::Receiver<Observed>), MosquittoError> {
        let mut options = MqttOptions::new(&config.client_id, &config.host, config.port);
        options
            .set_credentials(&config.username, &config.password)
            .set_keep_alive(Duration::from_secs(30))
            .set_clean_session(true)
            .set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
                config.tls.clone(),
            )));
        let (client, mut event_loop) = AsyncClient::new(options, 1024);
        let (tx, rx) = mpsc::channel(65_536);
        let mut wanted = vec![LOG_NOTICE_TOPIC.to_owned()];
        wanted.extend(filters.iter().cloned());
        for filter in &wanted {
            client
                .subscribe(filter, QoS::AtMostOnce)
                .await
                .map_err(|e| MosquittoError::Connection(e.to_string()))?;
        }
        let event_loop = tokio::spawn(async move {
            loop {
                match event_loop.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let log = p.topic.starts_with("$SYS/broker/log/");
                        let observed = Observed {
                            payload_len: p.payload.len(),
                            text: if log {
                                String::from_utf8_lossy(&p.payload).into_owned()
                            } else {
                                String::new()
                            },
                            topic: p.topic,
                        };
                        if tx.send(observed).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "mosquitto observer disconnected");
                        return;
                    }
                }
            }
        });
        Ok((
            Self {
                event_loop,
                _client: client,
            },
            rx,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn mosquitto_2_0_log_lines() {
        assert_eq!(
            parse_log_line(
                "1796478243: New client connected from 127.0.0.1:53488 as dev1 (p2, c1, k60, u'dev1')."
            ),
            Some(LogEvent::Connected {
                client: "dev1".into(),
                address: "127.0.0.1".parse().unwrap()
            })
        );
        assert_eq!(
            parse_log_line("1796478243: New client connected from ::1:53488 as d (p5, c1, k60)."),
            Some(LogEvent::Connected {
                client: "d".into(),
                address: "::1".parse().unwrap()
            })
        );
        for line in [
            "1796478243: Client dev1 disconnected.",
            "1796478243: Client dev1 closed its connection.",
            "1796478243: Client dev1 has exceeded timeout, disconnecting.",
            "1796478243: Client dev1 disconnected, not authorised.",
        ] {
            assert_eq!(
                parse_log_line(line),
                Some(LogEvent::Disconnected {
                    client: "dev1".into()
                }),
                "{line}"
            );
        }
        assert_eq!(
            parse_log_line("1796478243: Client <unknown> disconnected, not authorised."),
            None
        );
        assert_eq!(
            parse_log_line("1796478243: New connection from 127.0.0.1:52756 on port 18830."),
            None
        );
    }

    proptest! {
        #[test]
        fn arbitrary_lines_never_panic(line in ".{0,200}") {
            let _ = parse_log_line(&line);
        }
    }
}
