//! The README's Mosquitto section, followed as written (`common::deployment`), with devices
//! that are paho-mqtt (PyPI) clients, one of which tries to take over another's session.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;

use serde_json::{Value, json};

use common::deployment::{Deployment, publish, run};

const TAKEOVER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/mqtt_session_takeover.py"
);

#[test]
fn readme_mosquitto_deployment_with_paho_devices_resists_session_takeover() {
    let d = Deployment::start();
    let (device_port, control_port, devices, log) =
        (d.device_port, d.control_port, &d.devices, &d.log);
    let cli = |args: &[&str]| d.cli(args);
    let wait_for = |what: &str, _log: &std::path::Path, ready: &mut dyn FnMut() -> bool| {
        d.wait_for(what, ready)
    };
    // Two devices with Sigil identities, active.
    let product = d.product("T1");
    let ids = [d.device(&product, "X"), d.device(&product, "Y")];
    let (x, y) = (&ids[0], &ids[1]);
    wait_for("Sigil's sync to grant X", log, &mut || {
        publish(devices, device_port, x, &format!("devices/{x}/telemetry/t")).is_ok()
    });

    // A command sender for the test, made with mosquitto_ctrl on the control listener.
    let commander = "commander-password-for-the-test";
    for args in [
        vec!["createClient", "commander", "-p", commander],
        vec!["createRole", "commands"],
        vec![
            "addRoleACL",
            "commands",
            "publishClientSend",
            "devices/+/commands/#",
            "allow",
        ],
        vec!["addClientRole", "commander", "commands"],
    ] {
        d.dynsec(&args);
    }

    // The takeover attempt, with paho-mqtt.
    let out = run(Command::new("python3")
        .arg(TAKEOVER)
        .args([&device_port.to_string(), &control_port.to_string()])
        .arg(devices)
        .args([x, y, commander]));
    let seen: Value = serde_json::from_str(out.trim()).unwrap();
    let log_text = std::fs::read_to_string(log).unwrap_or_default();
    assert_eq!(seen["y_suback"], json!([1]), "{seen} {log_text}");
    assert_eq!(
        seen["x_connack"]["session_present"], false,
        "X must not resume Y's session: {seen}"
    );
    assert_eq!(
        seen["y_received"],
        json!([format!("devices/{y}/commands/first")]),
        "{seen}"
    );
    assert_eq!(
        seen["x_received"],
        json!([]),
        "X must not receive Y's commands: {seen}"
    );
    assert_eq!(seen["y_kicked"], false, "X must not push Y off: {seen}");
    assert!(
        seen["x_own_subscribe_to_y"][0].as_u64().unwrap() >= 0x80,
        "{seen}"
    );
    assert_eq!(seen["x_received_queued"], json!([]), "{seen}");
    assert_eq!(seen["y_session_present"], true, "{seen}");
    assert_eq!(
        seen["y_received_queued"],
        json!([format!("devices/{y}/commands/queued")]),
        "{seen}"
    );

    // Revocation reaches the broker running as its own account: Sigil rewrites the CRL and
    // signals it through the pid file; the next handshake with X's certificate fails.
    cli(&["device", "revoke", x, "--reason", "key-compromise"]);
    wait_for("the broker to refuse X's handshake", log, &mut || {
        publish(devices, device_port, x, &format!("devices/{x}/telemetry/t"))
            .is_err_and(|e| !e.contains("Not authorized"))
    });
    assert!(publish(devices, device_port, y, &format!("devices/{y}/telemetry/t")).is_ok());
    drop(d);
}
