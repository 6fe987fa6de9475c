//! The README's Mosquitto deployment, followed as written: the shipped `deploy/mosquitto/
//! mosquitto.conf` (its directories moved under a temporary root, its ports made free ones),
//! Sigil started first with the README's flags, the broker's certificate issued by Sigil's CA
//! (`sigil cert issue-service`), the files owned and moded as the README says, and the broker
//! run as root dropping to the `mosquitto` account. Used by the deployment and monitoring tests.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{SpawnedServer, openssl};

pub const SHIPPED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../deploy/mosquitto/mosquitto.conf"
);

/// The password Sigil's sync and observer log in with (test only).
pub const PASSWORD: &str = "a-test-only-broker-password-0123456789";

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn run(cmd: &mut Command) -> String {
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

pub struct Broker(Child);

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Wait for `ready`; on a timeout, fail with `what` and the broker's log (if there is one yet).
pub fn wait_for(what: &str, log: &Path, mut ready: impl FnMut() -> bool) {
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
pub fn publish(dir: &Path, port: u16, device: &str, topic: &str) -> Result<(), String> {
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

/// A running deployment: Sigil, the broker, and a directory for device files.
pub struct Deployment {
    pub root: tempfile::TempDir,
    pub sigil: SpawnedServer,
    pub broker: Broker,
    pub device_port: u16,
    pub control_port: u16,
    /// Device keys and certificates, and `ca.pem` (what a device is given).
    pub devices: PathBuf,
    pub log: PathBuf,
    pub token: String,
    pub root_ca: PathBuf,
}

impl Deployment {
    /// Steps 1 to 4 of the README's Mosquitto section.
    pub fn start() -> Self {
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
        let password = PASSWORD;
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

        // Where device files go, with the CA file a device is given.
        let devices = root.join("devices");
        std::fs::create_dir_all(&devices).unwrap();
        std::fs::copy(conf_dir.join("sigil-ca.pem"), devices.join("ca.pem")).unwrap();
        let token = token.trim().to_owned();
        Self {
            root: tmp,
            sigil,
            broker,
            device_port,
            control_port,
            devices,
            log,
            token,
            root_ca,
        }
    }

    /// The `sigil` CLI against this deployment, as the bootstrap admin.
    pub fn cli(&self, args: &[&str]) -> String {
        run(Command::new(env!("CARGO_BIN_EXE_sigil"))
            .args(args)
            .env("SIGIL_SERVER", self.sigil.api())
            .env("SIGIL_TOKEN", &self.token)
            .env("SIGIL_CA_FILE", &self.root_ca)
            .current_dir(self.root.path()))
    }

    /// A product for the devices.
    pub fn product(&self, name: &str) -> String {
        let product: Value = serde_json::from_str(&self.cli(&[
            "product",
            "create",
            "--name",
            name,
            "--manufacturer",
            "Acme",
            "--support-end",
            "2031-12-31",
            "--json",
        ]))
        .unwrap();
        product["id"].as_str().unwrap().to_owned()
    }

    /// A device of `product` with a Sigil identity (key and certificate in `devices`), active.
    pub fn device(&self, product: &str, serial: &str) -> String {
        let device: Value = serde_json::from_str(&self.cli(&[
            "device",
            "create",
            "--product",
            product,
            "--serial",
            serial,
            "--json",
        ]))
        .unwrap();
        let id = device["id"].as_str().unwrap().to_owned();
        super::p256_csr(&self.devices, &id);
        self.cli(&[
            "cert",
            "issue",
            "--device",
            &id,
            "--csr",
            self.devices.join(format!("{id}.csr")).to_str().unwrap(),
            "--out",
            self.devices.join(format!("{id}.crt")).to_str().unwrap(),
        ]);
        self.cli(&["device", "activate", &id]);
        id
    }

    /// `mosquitto_ctrl dynsec ...` on the control listener, as Sigil's admin user.
    pub fn dynsec(&self, args: &[&str]) {
        run(Command::new("mosquitto_ctrl")
            .args([
                "-h",
                "localhost",
                "-p",
                &self.control_port.to_string(),
                "--cafile",
            ])
            .arg(self.devices.join("ca.pem"))
            .args(["-u", "sigil", "-P", PASSWORD, "dynsec"])
            .args(args));
    }

    /// Wait (15 s at most) for `ready`, failing with the broker's log.
    pub fn wait_for(&self, what: &str, ready: impl FnMut() -> bool) {
        wait_for(what, &self.log, ready);
    }
}

fn current_uid() -> u32 {
    String::from_utf8(Command::new("id").arg("-u").output().unwrap().stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}
