//! The README's Mosquitto section, followed as written: the shipped `deploy/mosquitto/
//! mosquitto.conf` (its directories moved under a temporary root, its ports made free ones),
//! Sigil started first with the README's flags, the broker's certificate issued by Sigil's CA
//! (`sigil cert issue-service`), the files owned and moded as the README says, the broker run
//! as root dropping to the `mosquitto` account, and devices that are paho-mqtt (PyPI) clients,
//! one of which tries to take over another's session.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use common::{SpawnedServer, openssl};

const SHIPPED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../deploy/mosquitto/mosquitto.conf"
);
const TAKEOVER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/mqtt_session_takeover.py"
);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The uid and gid of `name`, if the account exists.
fn account(name: &str) -> Option<(u32, u32)> {
    let id = |flag: &str| -> Option<u32> {
        let out = Command::new("id").args([flag, name]).output().ok()?;
        String::from_utf8(out.stdout).ok()?.trim().parse().ok()
    };
    Some((id("-u")?, id("-g")?))
}

struct Broker(Child);

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Wait for `ready`; on a timeout, fail with `what` and the broker's log (if there is one yet).
fn wait_for(what: &str, log: &Path, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !ready() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; broker log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `mosquitto_pub` as `device`, MQTT v5 QoS 1: whether the broker accepted the publish.
fn publish(dir: &Path, port: u16, device: &str, topic: &str) -> Result<(), String> {
    let out = Command::new("mosquitto_pub")
        .args(["-h", "localhost", "-V", "mqttv5", "-q", "1", "-m", "1"])
        .args(["-p", &port.to_string(), "-t", topic])
        .arg("--cafile")
        .arg(dir.join("ca.pem"))
        .arg("--cert")
        .arg(dir.join(format!("{device}.crt")))
        .arg("--key")
        .arg(dir.join(format!("{device}.key")))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if out.status.success() && stderr.trim().is_empty() {
        Ok(())
    } else {
        Err(stderr)
    }
}

#[test]
fn readme_mosquitto_deployment_with_paho_devices_resists_session_takeover() {
    // The broker drops to the `mosquitto` account only when started as root; elsewhere it
    // runs as whoever starts it, and the ownership steps are skipped.
    let as_root = current_uid() == 0;
    let broker_account = if as_root { account("mosquitto") } else { None };
    if as_root {
        assert!(
            broker_account.is_some(),
            "the mosquitto package creates the mosquitto account"
        );
    }

    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
    let at = |p: &str| -> PathBuf { root.join(p.trim_start_matches('/')) };
    for d in [
        "/etc/mosquitto/sigil",
        "/etc/sigil",
        "/var/lib/sigil/mosquitto",
        "/var/lib/mosquitto",
        "/run/mosquitto",
    ] {
        std::fs::create_dir_all(at(d)).unwrap();
    }
    for d in [
        "/etc",
        "/etc/mosquitto",
        "/var",
        "/var/lib",
        "/var/lib/sigil",
        "/run",
    ] {
        std::fs::set_permissions(at(d), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let (device_port, control_port) = (free_port(), free_port());
    let log = root.join("mosquitto.log");
    let relocate = |text: &str| -> String {
        text.replace("/etc/", &format!("{}/etc/", root.display()))
            .replace(
                "/var/lib/sigil",
                &format!("{}/var/lib/sigil", root.display()),
            )
            .replace(
                "/var/lib/mosquitto",
                &format!("{}/var/lib/mosquitto", root.display()),
            )
            .replace("/run/", &format!("{}/run/", root.display()))
            .replace("listener 8883", &format!("listener {device_port}"))
            .replace("listener 8884", &format!("listener {control_port}"))
    };

    // 1. The password Sigil's sync logs in with, readable by Sigil only.
    let password_file = at("/etc/sigil/mosquitto.pw");
    let password = "a-test-only-broker-password-0123456789";
    std::fs::write(&password_file, password).unwrap();
    std::fs::set_permissions(&password_file, std::fs::Permissions::from_mode(0o600)).unwrap();

    // 2. Sigil first, with the README's flags: it writes the CRL the broker needs to start.
    let data = at("/var/lib/sigil/data");
    let root_ca = data.join("ca/root.crt");
    let crl_file = at("/var/lib/sigil/mosquitto/sigil.crl");
    let pid_file = at("/run/mosquitto/mosquitto.pid");
    let sigil = SpawnedServer::spawn_with(
        &data,
        None,
        &[],
        &[
            "--mosquitto",
            &format!("localhost:{control_port}"),
            "--mosquitto-ca",
            root_ca.to_str().unwrap(),
            "--mosquitto-user",
            "sigil",
            "--mosquitto-password-file",
            password_file.to_str().unwrap(),
            "--mosquitto-crl-file",
            crl_file.to_str().unwrap(),
            "--mosquitto-pid-file",
            pid_file.to_str().unwrap(),
        ],
    )
    .unwrap();
    wait_for("Sigil's CRL file", &log, || crl_file.exists());
    let token = std::fs::read_to_string(data.join("admin.token")).unwrap();
    let cli = |args: &[&str]| {
        run(Command::new(env!("CARGO_BIN_EXE_sigil"))
            .args(args)
            .env("SIGIL_SERVER", sigil.api())
            .env("SIGIL_TOKEN", token.trim())
            .env("SIGIL_CA_FILE", &root_ca)
            .current_dir(root))
    };

    // 3. The broker's own TLS certificate, from Sigil's CA, for a key made on the broker.
    let conf_dir = at("/etc/mosquitto/sigil");
    openssl(
        &conf_dir,
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "broker.key",
            "-subj",
            "/CN=mqtt.example.com",
            "-out",
            "broker.csr",
        ],
    );
    cli(&[
        "cert",
        "issue-service",
        "--dns",
        "mqtt.example.com",
        "--dns",
        "localhost",
        "--ip",
        "127.0.0.1",
        "--csr",
        conf_dir.join("broker.csr").to_str().unwrap(),
        "--out",
        conf_dir.join("broker.leaf.pem").to_str().unwrap(),
        "--chain-out",
        conf_dir.join("sigil-ca.pem").to_str().unwrap(),
    ]);
    let leaf = std::fs::read_to_string(conf_dir.join("broker.leaf.pem")).unwrap();
    let chain = std::fs::read_to_string(conf_dir.join("sigil-ca.pem")).unwrap();
    std::fs::write(conf_dir.join("broker.crt"), format!("{leaf}{chain}")).unwrap();
    let eku = openssl(
        &conf_dir,
        &[
            "x509",
            "-in",
            "broker.leaf.pem",
            "-noout",
            "-ext",
            "extendedKeyUsage",
        ],
    );
    assert!(eku.contains("TLS Web Server Authentication"), "{eku}");

    // 4. The plugin's file with Sigil's admin user, owned by the broker's account; the key
    // readable by that account's group only.
    let dynsec = at("/var/lib/mosquitto/dynamic-security.json");
    run(Command::new("mosquitto_ctrl")
        .args(["dynsec", "init"])
        .arg(&dynsec)
        .args(["sigil", password]));
    if let Some((uid, gid)) = broker_account {
        for f in ["broker.key", "broker.crt", "sigil-ca.pem"] {
            std::os::unix::fs::chown(conf_dir.join(f), Some(0), Some(gid)).unwrap();
        }
        std::fs::set_permissions(
            conf_dir.join("broker.key"),
            std::fs::Permissions::from_mode(0o640),
        )
        .unwrap();
        std::os::unix::fs::chown(&dynsec, Some(uid), Some(gid)).unwrap();
        std::os::unix::fs::chown(at("/var/lib/mosquitto"), Some(uid), Some(gid)).unwrap();
        std::os::unix::fs::chown(at("/run/mosquitto"), Some(uid), Some(gid)).unwrap();
    }

    // 5. The broker, from the shipped file.
    let mut conf = relocate(&std::fs::read_to_string(SHIPPED).unwrap());
    if broker_account.is_none() {
        let me = run(Command::new("id").arg("-un"));
        conf = conf.replace("user mosquitto", &format!("user {}", me.trim()));
    }
    std::fs::write(root.join("mosquitto.conf"), &conf).unwrap();
    let broker = Broker(
        Command::new("mosquitto")
            .arg("-c")
            .arg(root.join("mosquitto.conf"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    wait_for("the broker's listeners and pid file", &log, || {
        std::net::TcpStream::connect(("127.0.0.1", device_port)).is_ok()
            && std::net::TcpStream::connect(("127.0.0.1", control_port)).is_ok()
            && pid_file.exists()
    });

    // Two devices with Sigil identities, active.
    let devices = root.join("devices");
    std::fs::create_dir_all(&devices).unwrap();
    std::fs::copy(conf_dir.join("sigil-ca.pem"), devices.join("ca.pem")).unwrap();
    let product: Value = serde_json::from_str(&cli(&[
        "product",
        "create",
        "--name",
        "T1",
        "--manufacturer",
        "Acme",
        "--support-end",
        "2031-12-31",
        "--json",
    ]))
    .unwrap();
    let mut ids = Vec::new();
    for serial in ["X", "Y"] {
        let device: Value = serde_json::from_str(&cli(&[
            "device",
            "create",
            "--product",
            product["id"].as_str().unwrap(),
            "--serial",
            serial,
            "--json",
        ]))
        .unwrap();
        let id = device["id"].as_str().unwrap().to_owned();
        common::p256_csr(&devices, &id);
        cli(&[
            "cert",
            "issue",
            "--device",
            &id,
            "--csr",
            devices.join(format!("{id}.csr")).to_str().unwrap(),
            "--out",
            devices.join(format!("{id}.crt")).to_str().unwrap(),
        ]);
        cli(&["device", "activate", &id]);
        ids.push(id);
    }
    let (x, y) = (&ids[0], &ids[1]);
    wait_for("Sigil's sync to grant X", &log, || {
        publish(
            &devices,
            device_port,
            x,
            &format!("devices/{x}/telemetry/t"),
        )
        .is_ok()
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
        run(Command::new("mosquitto_ctrl")
            .args([
                "-h",
                "localhost",
                "-p",
                &control_port.to_string(),
                "--cafile",
            ])
            .arg(devices.join("ca.pem"))
            .args(["-u", "sigil", "-P", password, "dynsec"])
            .args(&args));
    }

    // The takeover attempt, with paho-mqtt.
    let out = run(Command::new("python3")
        .arg(TAKEOVER)
        .args([&device_port.to_string(), &control_port.to_string()])
        .arg(&devices)
        .args([x, y, commander]));
    let seen: Value = serde_json::from_str(out.trim()).unwrap();
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
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
    wait_for("the broker to refuse X's handshake", &log, || {
        publish(
            &devices,
            device_port,
            x,
            &format!("devices/{x}/telemetry/t"),
        )
        .is_err_and(|e| !e.contains("Not authorized"))
    });
    assert!(
        publish(
            &devices,
            device_port,
            y,
            &format!("devices/{y}/telemetry/t")
        )
        .is_ok()
    );
    drop(broker);
    drop(sigil);
}

fn current_uid() -> u32 {
    String::from_utf8(Command::new("id").arg("-u").output().unwrap().stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}
