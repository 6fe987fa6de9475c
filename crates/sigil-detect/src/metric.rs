//! Device metrics: the names (Device Defender Detect's set, plus Sigil's own refusals), the
//! values, and the device-side report the agent sends.

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

use crate::DetectError;

/// Every metric Sigil watches. Broker-side metrics come from the broker (its log and an observer
/// client), device-side ones from the agent's report, Sigil's own from its audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    // Broker side.
    /// Messages the device published (a count per datapoint).
    MessagesSent,
    /// Messages the broker delivered to the device.
    MessagesReceived,
    /// The size in bytes of one published message.
    MessageBytes,
    /// Subscriptions or publications the access policy refused.
    AuthorizationFailures,
    /// Connections the device opened.
    ConnectionAttempts,
    Disconnects,
    /// Seconds between a disconnect and the next connection.
    DisconnectSeconds,
    /// The addresses the device connected from.
    SourceIp,
    // Device side (the agent's report: deltas since its previous report).
    BytesIn,
    BytesOut,
    PacketsIn,
    PacketsOut,
    ListeningTcpPorts,
    ListeningUdpPorts,
    EstablishedTcpConnections,
    /// Remote addresses of the device's TCP connections (established or being opened).
    DestinationIps,
    /// Remote address and port of each such connection: a port scan shows here.
    DestinationEndpoints,
    // Sigil's own.
    TlsRefusals,
    EstFailures,
    ApiAuthenticationFailures,
}

/// How a metric's datapoints combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Events counted: an empty window counts zero.
    Count,
    /// A measurement: an empty window says nothing.
    Gauge,
    /// A set of names (addresses, ports): an empty window says nothing.
    Set,
}

impl Metric {
    pub const ALL: [Metric; 20] = [
        Metric::MessagesSent,
        Metric::MessagesReceived,
        Metric::MessageBytes,
        Metric::AuthorizationFailures,
        Metric::ConnectionAttempts,
        Metric::Disconnects,
        Metric::DisconnectSeconds,
        Metric::SourceIp,
        Metric::BytesIn,
        Metric::BytesOut,
        Metric::PacketsIn,
        Metric::PacketsOut,
        Metric::ListeningTcpPorts,
        Metric::ListeningUdpPorts,
        Metric::EstablishedTcpConnections,
        Metric::DestinationIps,
        Metric::DestinationEndpoints,
        Metric::TlsRefusals,
        Metric::EstFailures,
        Metric::ApiAuthenticationFailures,
    ];

    pub fn kind(self) -> MetricKind {
        match self {
            Metric::MessageBytes
            | Metric::DisconnectSeconds
            | Metric::EstablishedTcpConnections => MetricKind::Gauge,
            Metric::SourceIp
            | Metric::ListeningTcpPorts
            | Metric::ListeningUdpPorts
            | Metric::DestinationIps
            | Metric::DestinationEndpoints => MetricKind::Set,
            _ => MetricKind::Count,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Metric::MessagesSent => "messages_sent",
            Metric::MessagesReceived => "messages_received",
            Metric::MessageBytes => "message_bytes",
            Metric::AuthorizationFailures => "authorization_failures",
            Metric::ConnectionAttempts => "connection_attempts",
            Metric::Disconnects => "disconnects",
            Metric::DisconnectSeconds => "disconnect_seconds",
            Metric::SourceIp => "source_ip",
            Metric::BytesIn => "bytes_in",
            Metric::BytesOut => "bytes_out",
            Metric::PacketsIn => "packets_in",
            Metric::PacketsOut => "packets_out",
            Metric::ListeningTcpPorts => "listening_tcp_ports",
            Metric::ListeningUdpPorts => "listening_udp_ports",
            Metric::EstablishedTcpConnections => "established_tcp_connections",
            Metric::DestinationIps => "destination_ips",
            Metric::DestinationEndpoints => "destination_endpoints",
            Metric::TlsRefusals => "tls_refusals",
            Metric::EstFailures => "est_failures",
            Metric::ApiAuthenticationFailures => "api_authentication_failures",
        }
    }
}

impl std::fmt::Display for Metric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A datapoint's value: a number (counts and measurements) or a set of names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    Number(f64),
    Set(Vec<String>),
}

/// Most names one set value holds; more is a malformed report, not a bigger set.
pub const MAX_SET: usize = 1024;
const MAX_NAME: usize = 64;

/// One observation of one metric of one device, at a time in milliseconds since the epoch
/// (the collector's clock, never the device's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Datapoint {
    pub device: String,
    pub metric: Metric,
    pub at_ms: i64,
    pub value: Value,
}

impl Datapoint {
    pub fn number(device: impl Into<String>, metric: Metric, at_ms: i64, value: f64) -> Self {
        Self {
            device: device.into(),
            metric,
            at_ms,
            value: Value::Number(value),
        }
    }

    pub fn set(device: impl Into<String>, metric: Metric, at_ms: i64, names: Vec<String>) -> Self {
        Self {
            device: device.into(),
            metric,
            at_ms,
            value: Value::Set(names),
        }
    }

    /// The checks every datapoint passes before a detector sees it: a value of the metric's
    /// kind, finite and not negative, bounded sets of short printable names.
    pub fn validate(&self) -> Result<(), DetectError> {
        let bad = |why: String| Err(DetectError::Report(format!("{}: {why}", self.metric)));
        if self.device.is_empty() || self.device.len() > 128 {
            return Err(DetectError::Report("device: 1 to 128 characters".into()));
        }
        match (&self.value, self.metric.kind()) {
            (Value::Number(n), MetricKind::Count | MetricKind::Gauge) => {
                if !n.is_finite() || *n < 0.0 {
                    return bad(format!("{n} is not a finite, non-negative number"));
                }
            }
            (Value::Set(names), MetricKind::Set) => {
                if names.len() > MAX_SET {
                    return bad(format!("{} names; at most {MAX_SET}", names.len()));
                }
                if let Some(name) = names.iter().find(|n| {
                    n.is_empty() || n.len() > MAX_NAME || n.chars().any(|c| c.is_control())
                }) {
                    return bad(format!(
                        "{name:?} is not a name (1 to {MAX_NAME} printable characters)"
                    ));
                }
            }
            (Value::Number(_), MetricKind::Set) => return bad("a set of names is expected".into()),
            (Value::Set(_), _) => return bad("a number is expected".into()),
        }
        Ok(())
    }
}

/// What the agent reports from the device, read from `/proc` (counters as deltas since its
/// previous report). The server stamps the time and takes the device from the TLS client
/// certificate, never from the body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsReport {
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub packets_in: u64,
    pub packets_out: u64,
    pub listening_tcp_ports: Vec<u16>,
    pub listening_udp_ports: Vec<u16>,
    pub established_tcp_connections: u32,
    pub destination_ips: Vec<IpAddr>,
    /// Remote ends of TCP connections established or being opened (`SYN_SENT`).
    pub destination_endpoints: Vec<SocketAddr>,
}

impl MetricsReport {
    /// Parse and check a report: known fields only, each list at most [`MAX_SET`] long.
    pub fn parse(body: &[u8]) -> Result<Self, DetectError> {
        let report: MetricsReport =
            serde_json::from_slice(body).map_err(|e| DetectError::Report(e.to_string()))?;
        let lists = [
            ("listening_tcp_ports", report.listening_tcp_ports.len()),
            ("listening_udp_ports", report.listening_udp_ports.len()),
            ("destination_ips", report.destination_ips.len()),
            ("destination_endpoints", report.destination_endpoints.len()),
        ];
        if let Some((name, len)) = lists.iter().find(|(_, len)| *len > MAX_SET) {
            return Err(DetectError::Report(format!(
                "{name}: {len} entries; at most {MAX_SET}"
            )));
        }
        Ok(report)
    }

    /// The report as datapoints of `device` at `at_ms`.
    pub fn datapoints(&self, device: &str, at_ms: i64) -> Vec<Datapoint> {
        let n = |metric, v: f64| Datapoint::number(device, metric, at_ms, v);
        let set = |metric, names: Vec<String>| Datapoint::set(device, metric, at_ms, names);
        let strings = |v: &[u16]| v.iter().map(ToString::to_string).collect::<Vec<_>>();
        vec![
            n(Metric::BytesIn, self.bytes_in as f64),
            n(Metric::BytesOut, self.bytes_out as f64),
            n(Metric::PacketsIn, self.packets_in as f64),
            n(Metric::PacketsOut, self.packets_out as f64),
            n(
                Metric::EstablishedTcpConnections,
                f64::from(self.established_tcp_connections),
            ),
            set(
                Metric::ListeningTcpPorts,
                strings(&self.listening_tcp_ports),
            ),
            set(
                Metric::ListeningUdpPorts,
                strings(&self.listening_udp_ports),
            ),
            set(
                Metric::DestinationIps,
                self.destination_ips
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
            ),
            set(
                Metric::DestinationEndpoints,
                self.destination_endpoints
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_refuse_unknown_fields_bad_ports_and_long_lists() {
        assert!(MetricsReport::parse(br#"{"bytes_in": 1, "device": "x"}"#).is_err());
        assert!(MetricsReport::parse(br#"{"listening_tcp_ports": [70000]}"#).is_err());
        assert!(MetricsReport::parse(br#"{"bytes_in": -1}"#).is_err());
        assert!(MetricsReport::parse(br#"{"destination_ips": ["not-an-ip"]}"#).is_err());
        let long = format!(
            r#"{{"listening_udp_ports": [{}]}}"#,
            vec!["1"; 1025].join(",")
        );
        let err = MetricsReport::parse(long.as_bytes()).unwrap_err();
        assert!(
            err.to_string()
                .contains("listening_udp_ports: 1025 entries"),
            "{err}"
        );
        let ok =
            MetricsReport::parse(br#"{"bytes_out": 10, "listening_tcp_ports": [22]}"#).unwrap();
        let points = ok.datapoints("d", 5);
        assert!(points.iter().all(|p| p.validate().is_ok()));
        assert!(points.contains(&Datapoint::set(
            "d",
            Metric::ListeningTcpPorts,
            5,
            vec!["22".into()]
        )));
    }

    #[test]
    fn datapoints_must_match_their_metric_kind() {
        assert!(
            Datapoint::number("d", Metric::SourceIp, 0, 1.0)
                .validate()
                .is_err()
        );
        assert!(
            Datapoint::set("d", Metric::BytesIn, 0, vec![])
                .validate()
                .is_err()
        );
        assert!(
            Datapoint::number("d", Metric::BytesIn, 0, f64::NAN)
                .validate()
                .is_err()
        );
        assert!(
            Datapoint::number("d", Metric::BytesIn, 0, -1.0)
                .validate()
                .is_err()
        );
        assert!(
            Datapoint::set("d", Metric::SourceIp, 0, vec!["a\nb".into()])
                .validate()
                .is_err()
        );
        assert!(
            Datapoint::number("", Metric::BytesIn, 0, 1.0)
                .validate()
                .is_err()
        );
        let json = serde_json::to_string(&Datapoint::number("d", Metric::BytesIn, 7, 2.0)).unwrap();
        assert_eq!(
            json,
            r#"{"device":"d","metric":"bytes_in","at_ms":7,"value":2.0}"#
        );
        for metric in Metric::ALL {
            let name = serde_json::to_value(metric).unwrap();
            assert_eq!(name, metric.as_str());
        }
    }
}
