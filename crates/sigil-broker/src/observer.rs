//! The broker observer: a Sigil client of Mosquitto that reads the broker's log topic and the
//! devices' topics, and turns what it sees into broker-side metrics (messages sent and received
//! with their sizes, connections and their source addresses, disconnections and how long they
//! lasted), sent to the detector once a second. Every observation is cheap and local: one
//! device's traffic cannot stall the observer for the others.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use sigil_detect::{Datapoint, Metric};
use sigil_domain::DeviceId;
use sigil_mosquitto::observe::LOG_NOTICE_TOPIC;
use sigil_mosquitto::{ControlConfig, LogEvent, Observed, Observer, parse_log_line};

use crate::BrokerAuthority;

/// What one device did since the last flush.
#[derive(Default)]
struct Tally {
    sent: u32,
    largest: usize,
    received: u32,
    connections: u32,
    disconnects: u32,
    sources: BTreeSet<String>,
    /// Seconds offline before each reconnection.
    offline: Vec<f64>,
}

/// Devices seen offline, and since when (ms): the next connection says for how long.
const MAX_OFFLINE_TRACKED: usize = 1_000_000;

pub(crate) async fn run<A: BrokerAuthority>(control: ControlConfig, authority: Arc<A>) {
    let mut backoff = Duration::from_millis(250);
    let mut offline_since: HashMap<String, i64> = HashMap::new();
    loop {
        let filters = vec![
            "devices/+/telemetry/#".to_owned(),
            "devices/+/commands/#".to_owned(),
        ];
        match Observer::connect(&control, &filters).await {
            Ok((_observer, mut messages)) => {
                tracing::info!(host = %control.host, "mosquitto observer watching");
                backoff = Duration::from_millis(250);
                let mut tallies: HashMap<String, Tally> = HashMap::new();
                let mut flush = tokio::time::interval(Duration::from_secs(1));
                loop {
                    tokio::select! {
                        m = messages.recv() => match m {
                            Some(m) => observe(&*authority, &m, &mut tallies, &mut offline_since).await,
                            None => break,
                        },
                        _ = flush.tick() => submit(&*authority, &mut tallies).await,
                    }
                }
                submit(&*authority, &mut tallies).await;
            }
            Err(e) => tracing::warn!(error = %e, "mosquitto observer could not connect"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

async fn observe<A: BrokerAuthority>(
    authority: &A,
    m: &Observed,
    tallies: &mut HashMap<String, Tally>,
    offline_since: &mut HashMap<String, i64>,
) {
    if m.topic != LOG_NOTICE_TOPIC {
        // devices/<id>/telemetry/... or devices/<id>/commands/...
        let mut parts = m.topic.split('/');
        if let (Some("devices"), Some(device), Some(kind)) =
            (parts.next(), parts.next(), parts.next())
            && device.parse::<DeviceId>().is_ok()
        {
            let t = tallies.entry(device.to_owned()).or_default();
            match kind {
                "telemetry" => {
                    t.sent += 1;
                    t.largest = t.largest.max(m.payload_len);
                }
                "commands" => t.received += 1,
                _ => {}
            }
        }
        return;
    }
    let Some(event) = parse_log_line(&m.text) else {
        return;
    };
    let client = match &event {
        LogEvent::Connected { client, .. } | LogEvent::Disconnected { client } => client.clone(),
    };
    if client.parse::<DeviceId>().is_err() {
        return; // Not a device (Sigil's own clients, an operator's tool).
    }
    let now = authority.now_ms();
    match event {
        LogEvent::Connected { address, .. } => {
            let t = tallies.entry(client.clone()).or_default();
            t.connections += 1;
            if t.sources.len() < sigil_detect::MAX_SET {
                t.sources.insert(address.to_canonical().to_string());
            }
            if let Some(since) = offline_since.remove(&client) {
                t.offline.push((now - since).max(0) as f64 / 1000.0);
            }
        }
        LogEvent::Disconnected { .. } => {
            tallies.entry(client.clone()).or_default().disconnects += 1;
            if offline_since.len() < MAX_OFFLINE_TRACKED {
                offline_since.insert(client, now);
            }
        }
    }
}

async fn submit<A: BrokerAuthority>(authority: &A, tallies: &mut HashMap<String, Tally>) {
    if tallies.is_empty() {
        return;
    }
    let now = authority.now_ms();
    let mut points = Vec::new();
    for (device, t) in tallies.drain() {
        let n = |metric, v: f64| Datapoint::number(device.clone(), metric, now, v);
        if t.sent > 0 {
            points.push(n(Metric::MessagesSent, f64::from(t.sent)));
            points.push(n(Metric::MessageBytes, t.largest as f64));
        }
        if t.received > 0 {
            points.push(n(Metric::MessagesReceived, f64::from(t.received)));
        }
        if t.connections > 0 {
            points.push(n(Metric::ConnectionAttempts, f64::from(t.connections)));
            points.push(Datapoint::set(
                device.clone(),
                Metric::SourceIp,
                now,
                t.sources.into_iter().collect(),
            ));
        }
        if t.disconnects > 0 {
            points.push(n(Metric::Disconnects, f64::from(t.disconnects)));
        }
        for seconds in t.offline {
            points.push(n(Metric::DisconnectSeconds, seconds));
        }
    }
    if let Err(e) = authority.submit_metrics(points).await {
        tracing::error!(error = %e, "mosquitto observer: metrics not submitted");
    }
}
