//! Behaviour monitoring against a real Mosquitto deployed as the README says: a small fleet in
//! which some devices misbehave (a publish flood, a connection from a new address region, a
//! burst of refused requests). Each raises its alarm; the flood's automatic quarantine cuts the
//! device's publishing at the broker within 5 seconds of the alarm; the well-behaved devices
//! raise nothing. Sigil watches the broker from outside (its log topic and the devices' topics)
//! with its default security profile; the devices are mosquitto_pub and mosquitto_sub.
//!
//! Mosquitto 2.0 logs the requests it refuses only at debug level, which it never publishes on
//! its log topic, so the burst of refusals comes through the other broker path Sigil serves:
//! the EMQX authorization hook, asked (with curl, as EMQX's HTTP authorizer would) for one
//! device's requests to other devices' topics.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use common::deployment::{Deployment, PASSWORD, publish};

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// `mosquitto_pub -l` as `device`: one connection, one message per line written to it.
struct Publisher {
    child: Child,
}

impl Publisher {
    fn start(d: &Deployment, device: &str) -> Self {
        let child = Command::new("mosquitto_pub")
            .args([
                "-h",
                "localhost",
                "-p",
                &d.device_port.to_string(),
                "-q",
                "0",
                "-l",
            ])
            .args(["-t", &format!("devices/{device}/telemetry/reading")])
            .args(device_tls(&d.devices, device))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Self { child }
    }

    /// Publish `rate` messages a second for `seconds`.
    fn run(mut self, rate: u32, seconds: f64) -> std::thread::JoinHandle<()> {
        std::thread::spawn(move || {
            let mut stdin = self.child.stdin.take().unwrap();
            let interval = Duration::from_secs_f64(1.0 / f64::from(rate));
            let end = Instant::now() + Duration::from_secs_f64(seconds);
            let mut i = 0u64;
            while Instant::now() < end {
                if writeln!(stdin, "{{\"n\":{i}}}").is_err() {
                    break;
                }
                i += 1;
                std::thread::sleep(interval);
            }
            drop(stdin);
            let _ = self.child.wait();
        })
    }
}

fn device_tls(devices: &Path, device: &str) -> Vec<String> {
    vec![
        "--cafile".into(),
        devices.join("ca.pem").display().to_string(),
        "--cert".into(),
        devices.join(format!("{device}.crt")).display().to_string(),
        "--key".into(),
        devices.join(format!("{device}.key")).display().to_string(),
    ]
}

/// Every telemetry message the broker delivers, with when it arrived (a reader with Sigil's
/// broker account).
struct Watcher {
    child: Child,
    seen: Arc<Mutex<Vec<(f64, String)>>>,
}

impl Watcher {
    fn start(d: &Deployment) -> Self {
        let mut child = Command::new("mosquitto_sub")
            .args([
                "-h",
                "localhost",
                "-p",
                &d.control_port.to_string(),
                "--cafile",
            ])
            .arg(d.devices.join("ca.pem"))
            .args([
                "-u",
                "sigil",
                "-P",
                PASSWORD,
                "-t",
                "devices/+/telemetry/#",
                "-F",
                "%U %t",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().unwrap();
        let sink = seen.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if let Some((at, topic)) = line.split_once(' ')
                    && let Ok(at) = at.parse::<f64>()
                {
                    sink.lock().unwrap().push((at, topic.to_owned()));
                }
            }
        });
        Self { child, seen }
    }

    /// When the last message from `device` arrived, and how many there were.
    fn last_from(&self, device: &str) -> (Option<f64>, usize) {
        let prefix = format!("devices/{device}/");
        let seen = self.seen.lock().unwrap();
        let from: Vec<f64> = seen
            .iter()
            .filter(|(_, t)| t.starts_with(&prefix))
            .map(|(at, _)| *at)
            .collect();
        (from.last().copied(), from.len())
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn alarms(d: &Deployment) -> Vec<Value> {
    let list: Value = serde_json::from_str(&d.cli(&["alarm", "list", "--json"])).unwrap();
    list["items"].as_array().cloned().unwrap_or_default()
}

fn alarm_of<'a>(alarms: &'a [Value], device: &str, behaviour: &str) -> Option<&'a Value> {
    alarms
        .iter()
        .find(|a| a["device_id"] == device && a["behaviour"] == behaviour)
}

fn rfc3339_secs(text: &str) -> f64 {
    let t =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).unwrap();
    t.unix_timestamp_nanos() as f64 / 1e9
}

/// `mosquitto_sub` as `device` on `filters` for a second, MQTT v5: its output (a refused
/// subscription is reported).
fn subscribe(d: &Deployment, device: &str, host: &str, filters: &[String]) -> String {
    let mut cmd = Command::new("mosquitto_sub");
    cmd.args([
        "-h",
        host,
        "-p",
        &d.device_port.to_string(),
        "-V",
        "mqttv5",
        "-W",
        "1",
    ])
    .args(device_tls(&d.devices, device));
    for f in filters {
        cmd.args(["-t", f]);
    }
    let out = cmd.output().unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn misbehaving_devices_raise_alarms_and_the_flood_is_quarantined_at_the_broker() {
    let d = Deployment::start();
    let product = d.product("Meter");
    let good: Vec<String> = (0..3)
        .map(|i| d.device(&product, &format!("G{i}")))
        .collect();
    let flooder = d.device(&product, "F");
    let prober = d.device(&product, "P");
    let roamer = d.device(&product, "R");
    for device in good.iter().chain([&flooder, &prober, &roamer]) {
        d.wait_for("Sigil's sync to grant the device", || {
            publish(
                &d.devices,
                d.device_port,
                device,
                &format!("devices/{device}/telemetry/t"),
            )
            .is_ok()
        });
    }
    let watcher = Watcher::start(&d);
    let good_runs: Vec<_> = good
        .iter()
        .map(|g| Publisher::start(&d, g).run(1, 30.0))
        .collect();

    // The roamer connects three times from 127.0.0.0/16 (learnt), then from ::1.
    for _ in 0..3 {
        publish(
            &d.devices,
            d.device_port,
            &roamer,
            &format!("devices/{roamer}/telemetry/t"),
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(1500));
    }
    let roamed_at = now();
    let out = Command::new("mosquitto_pub")
        .args([
            "-h",
            "::1",
            "--insecure",
            "-p",
            &d.device_port.to_string(),
            "-q",
            "1",
            "-m",
            "1",
        ])
        .args(["-t", &format!("devices/{roamer}/telemetry/t")])
        .args(device_tls(&d.devices, &roamer))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The prober asks for twelve other devices' command topics, through the EMQX hook.
    let broker_token: Value = serde_json::from_str(&d.cli(&[
        "token", "create", "--name", "emqx", "--role", "broker", "--scope", "broker", "--days",
        "1", "--json",
    ]))
    .unwrap();
    let probed_at = now();
    for i in 0..12 {
        let body = serde_json::json!({
            "username": prober, "clientid": prober, "action": "subscribe",
            "topic": format!("devices/{}/commands/{i}", good[i % 3]),
        });
        let out = Command::new("curl")
            .args(["-sS", "--fail", "--cacert"])
            .arg(&d.root_ca)
            .args([
                "-H",
                &format!(
                    "authorization: Bearer {}",
                    broker_token["token"].as_str().unwrap()
                ),
            ])
            .args([
                "-H",
                "content-type: application/json",
                "-d",
                &body.to_string(),
            ])
            .arg(format!("{}/api/v1/broker/emqx/authz", d.sigil.api()))
            .output()
            .unwrap();
        let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(answer["result"], "deny", "{answer}");
    }

    // The flood: 200 messages a second for 12 seconds.
    let flood_started = now();
    let flood = Publisher::start(&d, &flooder).run(200, 12.0);

    let deadline = Instant::now() + Duration::from_secs(40);
    let found = loop {
        let all = alarms(&d);
        let wanted = [
            alarm_of(&all, &flooder, "publish-flood").cloned(),
            alarm_of(&all, &prober, "authorization-failures").cloned(),
            alarm_of(&all, &roamer, "new-source-region").cloned(),
        ];
        if wanted.iter().all(Option::is_some) {
            break wanted.map(Option::unwrap);
        }
        assert!(
            Instant::now() < deadline,
            "alarms so far: {all:#?}\n{}\nthe prober in the broker's log:\n{}",
            d.cli(&["monitor", "status", "--json"]),
            std::fs::read_to_string(&d.log)
                .unwrap_or_default()
                .lines()
                .filter(|l| l.contains(prober.as_str()))
                .collect::<Vec<_>>()
                .join("\n")
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    let [flood_alarm, probe_alarm, roam_alarm] = found;
    let raised = |a: &Value| rfc3339_secs(a["raised_at"].as_str().unwrap());
    let latency = [
        ("publish-flood", raised(&flood_alarm) - flood_started),
        ("authorization-failures", raised(&probe_alarm) - probed_at),
        ("new-source-region", raised(&roam_alarm) - roamed_at),
    ];
    eprintln!("alarm latencies (s): {latency:?}");
    for (behaviour, seconds) in latency {
        assert!(
            seconds < 10.0,
            "{behaviour} raised {seconds:.1} s after the misbehaviour began"
        );
    }
    let summary = flood_alarm["explanation"]["summary"].as_str().unwrap();
    assert!(
        summary.contains("messages_sent sum over 10 s is"),
        "{summary}"
    );
    assert_eq!(flood_alarm["mitigation"], "quarantine");
    assert_eq!(probe_alarm["explanation"]["threshold"], 10.0);
    assert_eq!(
        roam_alarm["explanation"]["new_values"],
        serde_json::json!(["::/48"])
    );

    // The flood goes on for its 12 seconds; the broker stops delivering it soon after the alarm.
    flood.join().unwrap();
    let (last, count) = watcher.last_from(&flooder);
    let cut_after = last.unwrap() - raised(&flood_alarm);
    eprintln!("flood: {count} messages delivered; the last {cut_after:.2} s after the alarm");
    assert!(
        cut_after <= 5.0,
        "the flood was still delivered {cut_after:.2} s after the alarm"
    );
    assert!(
        count < 200 * 12 / 2,
        "{count} of 2400 flood messages delivered"
    );
    let device: Value =
        serde_json::from_str(&d.cli(&["monitor", "device", &flooder, "--json"])).unwrap();
    assert!(device["quarantined_since"].is_string(), "{device}");

    // In quarantine the device keeps its quarantine topic and loses its commands.
    let own = subscribe(
        &d,
        &flooder,
        "localhost",
        &[format!("devices/{flooder}/quarantine/#")],
    );
    assert!(!own.contains("denied"), "{own}");
    let commands = subscribe(
        &d,
        &flooder,
        "localhost",
        &[format!("devices/{flooder}/commands/#")],
    );
    assert!(commands.contains("denied"), "{commands}");

    for run in good_runs {
        run.join().unwrap();
    }
    let all = alarms(&d);
    for g in &good {
        assert!(
            all.iter().all(|a| a["device_id"] != g.as_str()),
            "a well-behaved device raised an alarm: {all:#?}"
        );
        assert!(watcher.last_from(g).1 >= 25, "{g} was not heard");
    }

    // Released (the bootstrap token is not a person: no second factor asked), it publishes again.
    d.cli(&[
        "monitor",
        "release",
        &flooder,
        "--reason",
        "flood investigated: a firmware bug",
    ]);
    d.wait_for("the released device to publish again", || {
        publish(
            &d.devices,
            d.device_port,
            &flooder,
            &format!("devices/{flooder}/telemetry/t"),
        )
        .is_ok()
    });
}
