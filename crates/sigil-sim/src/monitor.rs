//! Behaviour monitoring over a simulated fleet (`sigil-sim monitor`): a real Sigil server with
//! its default security profile, N real agents enrolled over EST, each reporting its network
//! metrics read from a `/proc/net` the simulation writes for it, over mTLS. After the devices
//! have shown their normal behaviour, three misbehave: one scans a neighbour's ports, one opens
//! a new listening port (as after an update), and one's broker asks, as EMQX's HTTP authorizer
//! would, for a burst of topics that are not the device's. The summary says which alarm each
//! raised and how long after the misbehaviour began, whether the port scan's automatic
//! quarantine took the device's publishing away, and which alarms, if any, the devices that
//! behaved raised (none is the expectation).
//!
//! The broker side of a real Mosquitto (a publish flood, a connection from a new address
//! region) is shown by the `monitoring_broker` integration test, against the README's broker
//! deployment.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};

use sigil_agent::StateDir;
use sigil_agent::netstat::{self, NetSnapshot};
use sigil_testkit::AdminClient;

use crate::SimError;
use crate::rollout::{ServerThread, enrol_device};

#[derive(Debug, Clone)]
pub struct MonitorConfig {
    /// At least 4: three misbehave, the others behave.
    pub devices: usize,
    /// How often every agent reports (the agents' default is a minute; faster here).
    pub report_every: Duration,
    pub concurrency: usize,
    /// `None`: SQLite in the work directory.
    pub database_url: Option<String>,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        Self {
            devices: 24,
            report_every: Duration::from_millis(500),
            concurrency: 16,
            database_url: None,
        }
    }
}

/// One misbehaviour and what came of it.
#[derive(Debug, Clone)]
pub struct Misbehaviour {
    /// The alarm expected (a behaviour of the default profile).
    pub behaviour: &'static str,
    pub what: &'static str,
    pub device: String,
    /// From the misbehaviour's start to the alarm in the API.
    pub raised_after: Option<Duration>,
}

#[derive(Debug, Default, Clone)]
pub struct MonitorSummary {
    pub devices: usize,
    pub reports: u64,
    pub misbehaviours: Vec<Misbehaviour>,
    /// The port scanner is quarantined and the broker hook refuses its publishing.
    pub scanner_quarantined: bool,
    /// Alarms raised on the devices that behaved: `device: behaviour`.
    pub false_alarms: Vec<String>,
}

impl MonitorSummary {
    pub fn ok(&self) -> bool {
        self.scanner_quarantined
            && self.false_alarms.is_empty()
            && self
                .misbehaviours
                .iter()
                .all(|m| m.raised_after.is_some_and(|t| t <= ALARM_DEADLINE))
    }
}

impl std::fmt::Display for MonitorSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "devices:                 {}", self.devices)?;
        writeln!(f, "metrics reports:         {}", self.reports)?;
        for m in &self.misbehaviours {
            match m.raised_after {
                Some(t) => writeln!(
                    f,
                    "{:<24} {} raised within {:.2} s ({})",
                    format!("{}:", m.what),
                    m.behaviour,
                    t.as_secs_f64(),
                    m.device
                )?,
                None => writeln!(f, "{:<24} no {} alarm", format!("{}:", m.what), m.behaviour)?,
            }
        }
        writeln!(
            f,
            "port scanner quarantined: {}",
            if self.scanner_quarantined {
                "yes (its publishing refused)"
            } else {
                "NO"
            }
        )?;
        writeln!(
            f,
            "alarms on good devices:  {}",
            if self.false_alarms.is_empty() {
                "none".to_owned()
            } else {
                self.false_alarms.join(", ")
            }
        )
    }
}

/// A simulated device: its agent's state, and the network tables the agent reads.
struct SimDevice {
    id: String,
    state: StateDir,
    proc_root: PathBuf,
    listening: Vec<u16>,
    dials: Vec<(Ipv4Addr, u16)>,
    previous: Option<NetSnapshot>,
    rounds: u64,
}

impl SimDevice {
    /// Write `/proc/net` as the kernel lays it out (what `sigil_agent::netstat` reads).
    fn write_proc(&self) -> Result<(), SimError> {
        let net = self.proc_root.join("net");
        std::fs::create_dir_all(&net)?;
        let hex =
            |ip: Ipv4Addr, port: u16| format!("{:08X}:{port:04X}", u32::from(ip).swap_bytes());
        let mut tcp = String::from(
            "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n",
        );
        for (i, port) in self.listening.iter().enumerate() {
            tcp.push_str(&format!(
                "{i:4}: {} {} 0A 00000000:00000000 00:00000000 00000000     0        0 1 1\n",
                hex(Ipv4Addr::UNSPECIFIED, *port),
                hex(Ipv4Addr::UNSPECIFIED, 0)
            ));
        }
        for (i, (ip, port)) in self.dials.iter().enumerate() {
            // SYN_SENT: a connection being opened.
            tcp.push_str(&format!(
                "{:4}: {} {} 02 00000000:00000000 00:00000000 00000000     0        0 1 1\n",
                i + self.listening.len(),
                hex(Ipv4Addr::new(10, 0, 0, 2), 40000 + i as u16),
                hex(*ip, *port)
            ));
        }
        std::fs::write(net.join("tcp"), tcp)?;
        // Steady traffic: the same bytes and packets every round.
        let (rx, tx) = (1000 * (self.rounds + 1), 2000 * (self.rounds + 1));
        std::fs::write(
            net.join("dev"),
            format!(
                "Inter-|   Receive |  Transmit\n face |bytes packets|bytes packets\n  eth0: {rx} {} 0 0 0 0 0 0 {tx} {} 0 0 0 0 0 0\n",
                rx / 100,
                tx / 100
            ),
        )?;
        Ok(())
    }

    /// One report: the tables now, against the last ones read.
    async fn report(&mut self) -> Result<(), SimError> {
        self.write_proc()?;
        let current = netstat::read(&self.proc_root)?;
        let previous = self.previous.take().unwrap_or_else(|| current.clone());
        let report = netstat::report(&previous, &current);
        sigil_agent::report_metrics(&self.state, &report)
            .await
            .map_err(|e| SimError::Api(format!("metrics report of {}: {e}", self.id)))?;
        self.previous = Some(current);
        self.rounds += 1;
        Ok(())
    }
}

/// Rounds the devices report before any misbehaves: enough for the new-value behaviours to
/// learn (three datapoints) and the windows to hold normal values.
const LEARNING_ROUNDS: u64 = 5;
/// Rounds after the alarms, in which the devices that behave keep reporting.
const CLOSING_ROUNDS: u64 = 4;
/// The stated time: each misbehaviour raises its alarm within this, or the run fails.
pub const ALARM_DEADLINE: Duration = Duration::from_secs(10);

pub async fn simulate_monitoring(
    config: &MonitorConfig,
    work: &Path,
) -> Result<MonitorSummary, SimError> {
    if config.devices < 4 {
        return Err(SimError::Api("monitor: at least 4 devices".into()));
    }
    let mut server = ServerThread::start(config.database_url.clone(), work)?;
    let admin = server.admin.clone();
    let product = admin
        .create_product("simulated gateway")
        .await
        .map_err(SimError::Api)?;
    let states: Vec<Result<StateDir, SimError>> = futures_util::stream::iter(0..config.devices)
        .map(|i| enrol_device(&server, &product, i, work))
        .buffer_unordered(config.concurrency.max(1))
        .collect()
        .await;
    let mut devices = Vec::with_capacity(config.devices);
    for (i, state) in states.into_iter().enumerate() {
        let state = state?;
        let id = state
            .config()
            .map_err(|e| SimError::Api(e.to_string()))?
            .device_id;
        devices.push(SimDevice {
            id,
            state,
            proc_root: work.join(format!("proc/{i}")),
            listening: vec![22],
            dials: vec![(Ipv4Addr::new(10, 0, 0, 1), 8883)],
            previous: None,
            rounds: 0,
        });
    }
    let broker = broker_client(&server).await?;
    let mut summary = MonitorSummary {
        devices: config.devices,
        ..MonitorSummary::default()
    };
    for _ in 0..LEARNING_ROUNDS {
        round(&mut devices, config, &mut summary).await?;
    }

    // Misbehaviour: a port scan, a new listening port, a burst of refused topics.
    devices[0].dials = (1..=60).map(|p| (Ipv4Addr::new(10, 0, 0, 9), p)).collect();
    devices[1].listening.push(4444);
    let started = Instant::now();
    for i in 0..15 {
        let other = &devices[3 + i % (config.devices - 3)].id;
        emqx_authz(
            &broker,
            &devices[2].id,
            "subscribe",
            &format!("devices/{other}/commands/#"),
        )
        .await?;
    }
    summary.misbehaviours = [
        ("port-scan", "port scan", 0),
        ("new-listening-tcp-port", "new listening port", 1),
        ("authorization-failures", "authorization burst", 2),
    ]
    .map(|(behaviour, what, i)| Misbehaviour {
        behaviour,
        what,
        device: devices[i].id.clone(),
        raised_after: None,
    })
    .to_vec();
    let unseen = |s: &MonitorSummary| s.misbehaviours.iter().any(|m| m.raised_after.is_none());
    while unseen(&summary) && started.elapsed() < ALARM_DEADLINE {
        let round_started = Instant::now();
        reports(&mut devices, config, &mut summary).await?;
        // Ask for the alarms every 50 ms until the next round (at least once): the times are
        // that close.
        loop {
            let raised = alarms(&admin).await?;
            for m in summary.misbehaviours.iter_mut() {
                if m.raised_after.is_none()
                    && raised.iter().any(|a| {
                        a["device_id"] == m.device.as_str() && a["behaviour"] == m.behaviour
                    })
                {
                    m.raised_after = Some(started.elapsed());
                }
            }
            if !unseen(&summary)
                || round_started.elapsed() >= config.report_every
                || started.elapsed() > ALARM_DEADLINE
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    for _ in 0..CLOSING_ROUNDS {
        round(&mut devices, config, &mut summary).await?;
    }
    summary.scanner_quarantined = quarantined(&admin, &broker, &devices[0].id).await?;
    let misbehaving: Vec<&str> = devices[..3].iter().map(|d| d.id.as_str()).collect();
    summary.false_alarms = alarms(&admin)
        .await?
        .iter()
        .filter(|a| {
            !misbehaving
                .iter()
                .any(|d| a["device_id"].as_str() == Some(*d))
        })
        .map(|a| format!("{}: {}", a["device_id"], a["behaviour"]))
        .collect();
    server.stop();
    Ok(summary)
}

/// Every device reports once; then wait out the round.
async fn round(
    devices: &mut [SimDevice],
    config: &MonitorConfig,
    summary: &mut MonitorSummary,
) -> Result<(), SimError> {
    let started = Instant::now();
    reports(devices, config, summary).await?;
    tokio::time::sleep(config.report_every.saturating_sub(started.elapsed())).await;
    Ok(())
}

/// Every device reports once.
async fn reports(
    devices: &mut [SimDevice],
    config: &MonitorConfig,
    summary: &mut MonitorSummary,
) -> Result<(), SimError> {
    let results: Vec<Result<(), SimError>> = futures_util::stream::iter(devices.iter_mut())
        .map(SimDevice::report)
        .buffer_unordered(config.concurrency.max(1))
        .collect()
        .await;
    for r in results {
        r?;
        summary.reports += 1;
    }
    Ok(())
}

/// A broker's credential (role and scope `broker`), as EMQX's HTTP hooks would hold.
async fn broker_client(server: &ServerThread) -> Result<AdminClient, SimError> {
    let token = server
        .admin
        .try_post(
            "/api/v1/tokens",
            json!({"name": "simulated-emqx", "role": "broker", "scopes": ["broker"],
                   "expires_in_seconds": 3600}),
        )
        .await
        .map_err(SimError::Api)?;
    let secret = token["token"].as_str().unwrap_or_default();
    AdminClient::new(&server.data, server.api_addr.port(), secret).map_err(SimError::Api)
}

/// The EMQX authorization hook's answer for one request of `device`.
async fn emqx_authz(
    broker: &AdminClient,
    device: &str,
    action: &str,
    topic: &str,
) -> Result<String, SimError> {
    let answer = broker
        .try_post(
            "/api/v1/broker/emqx/authz",
            json!({"username": device, "action": action, "topic": topic}),
        )
        .await
        .map_err(SimError::Api)?;
    Ok(answer["result"].as_str().unwrap_or_default().to_owned())
}

async fn alarms(admin: &AdminClient) -> Result<Vec<Value>, SimError> {
    let list = admin
        .try_get("/api/v1/alarms?limit=500")
        .await
        .map_err(SimError::Api)?;
    Ok(list["items"].as_array().cloned().unwrap_or_default())
}

/// In quarantine, and refused publishing its telemetry by the broker hook for that reason.
async fn quarantined(
    admin: &AdminClient,
    broker: &AdminClient,
    device: &str,
) -> Result<bool, SimError> {
    let state = admin
        .try_get(&format!("/api/v1/devices/{device}/monitoring"))
        .await
        .map_err(SimError::Api)?;
    let publish = broker
        .try_post(
            "/api/v1/broker/emqx/authz",
            json!({"username": device, "action": "publish",
                   "topic": format!("devices/{device}/telemetry/reading")}),
        )
        .await
        .map_err(SimError::Api)?;
    let for_quarantine = publish["reasons"]
        .as_array()
        .is_some_and(|r| r.iter().any(|r| r == "device-quarantined"));
    Ok(state["quarantined_since"].is_string() && publish["result"] == "deny" && for_quarantine)
}
