//! Enforcement in a real Mosquitto 2.x broker, started by the test with the dynamic security
//! plugin: devices authenticate with their Sigil certificate (identity as username), Sigil keeps
//! the plugin's clients and roles and the broker's CRL in step with its policy decisions.
//!
//! Publishes are made with the independent `mosquitto_pub` client (MQTT v5, QoS 1, so the
//! broker's PUBACK says whether it accepted); a long-lived connection uses rumqttc.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use common::{Db, TestServer, p256_csr};
use sigil_server::MosquittoSettings;

/// Enforcement must follow a change within this long (the issue's bound).
const WITHIN: Duration = Duration::from_secs(5);
const ADMIN_PASSWORD: &str = "test-only-dynsec-admin-password";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The broker's own TLS identity (not part of Sigil's PKI): a throwaway CA and a localhost leaf.
fn broker_tls(dir: &Path) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "test broker CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::from_params(&ca, &ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let mut leaf = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    leaf.subject_alt_names
        .push(rcgen::SanType::IpAddress([127, 0, 0, 1].into()));
    let cert = leaf.signed_by(&key, &issuer).unwrap();
    std::fs::write(dir.join("broker-ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(dir.join("broker.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("broker.key"), key.serialize_pem()).unwrap();
}

struct Broker {
    child: Child,
    dir: PathBuf,
    device_port: u16,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start mosquitto: a device listener (client certificate required, its CN as username, Sigil's
/// CA and CRL) and a control listener (password, for Sigil's sync), both TLS.
fn start_broker(dir: &Path, sigil_ca: &Path, device_port: u16, control_port: u16) -> Broker {
    let d = dir.display();
    let user = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout).unwrap();
    let conf = format!(
        "per_listener_settings false
allow_anonymous false
user {user}
pid_file {d}/mosquitto.pid
plugin /usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so
plugin_opt_config_file {d}/dynsec.json
listener {device_port} 127.0.0.1
cafile {ca}
certfile {d}/broker.pem
keyfile {d}/broker.key
require_certificate true
use_identity_as_username true
crlfile {d}/crl.pem
listener {control_port} 127.0.0.1
cafile {d}/broker-ca.pem
certfile {d}/broker.pem
keyfile {d}/broker.key
",
        user = user.trim(),
        ca = sigil_ca.display(),
    );
    std::fs::write(dir.join("mosquitto.conf"), conf).unwrap();
    let child = Command::new("mosquitto")
        .arg("-c")
        .arg(dir.join("mosquitto.conf"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("mosquitto.log")).unwrap())
        .spawn()
        .expect("mosquitto on PATH (Debian package mosquitto)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", device_port)).is_err()
        || std::net::TcpStream::connect(("127.0.0.1", control_port)).is_err()
    {
        assert!(
            Instant::now() < deadline,
            "mosquitto did not start: {}",
            std::fs::read_to_string(dir.join("mosquitto.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Broker {
        child,
        dir: dir.to_owned(),
        device_port,
    }
}

#[derive(Debug, PartialEq)]
enum Publish {
    Accepted,
    NotAuthorized,
    /// The TLS handshake or the MQTT connection was refused.
    ConnectionRefused(String),
}

/// One publish by `device` (its key and certificate in `dir`) with `mosquitto_pub`.
fn publish(broker: &Broker, device: &str, topic: &str) -> Publish {
    let dir = &broker.dir;
    let out = Command::new("mosquitto_pub")
        .args(["-h", "localhost", "-V", "mqttv5", "-q", "1", "-m", "21.5"])
        .args(["-p", &broker.device_port.to_string(), "-t", topic])
        .arg("--cafile")
        .arg(dir.join("broker-ca.pem"))
        .arg("--cert")
        .arg(dir.join(format!("{device}.crt")))
        .arg("--key")
        .arg(dir.join(format!("{device}.key")))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if stderr.contains("Not authorized") {
        Publish::NotAuthorized
    } else if out.status.success() && stderr.trim().is_empty() {
        Publish::Accepted
    } else {
        Publish::ConnectionRefused(stderr)
    }
}

/// Poll `publish` until it gives what `expected` accepts; returns how long that took.
async fn within(
    what: &str,
    mut attempt: impl FnMut() -> Publish,
    expected: impl Fn(&Publish) -> bool,
) -> Duration {
    let start = Instant::now();
    loop {
        let got = tokio::task::block_in_place(&mut attempt);
        if expected(&got) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < WITHIN,
            "{what}: still {got:?} after {:?}",
            start.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A long-lived device connection (rumqttc, MQTT 3.1.1) subscribed to its command topic.
struct Session {
    events: tokio::sync::mpsc::UnboundedReceiver<Result<rumqttc::Event, String>>,
    client: rumqttc::AsyncClient,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn device_tls(dir: &Path, device: &str) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    let ca = std::fs::read(dir.join("broker-ca.pem")).unwrap();
    roots
        .add(rustls_pki_types::CertificateDer::from(
            pem::parse(&ca).unwrap().into_contents(),
        ))
        .unwrap();
    let chain: Vec<rustls_pki_types::CertificateDer<'static>> =
        pem::parse_many(std::fs::read(dir.join(format!("{device}.crt"))).unwrap())
            .unwrap()
            .into_iter()
            .map(|p| rustls_pki_types::CertificateDer::from(p.into_contents()))
            .collect();
    let key_pem = pem::parse(std::fs::read(dir.join(format!("{device}.key"))).unwrap()).unwrap();
    let key = rustls_pki_types::PrivateKeyDer::Pkcs8(key_pem.into_contents().into());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap(),
    )
}

async fn session(broker: &Broker, device: &str) -> Session {
    let mut options =
        rumqttc::MqttOptions::new(format!("s-{device}"), "localhost", broker.device_port);
    options.set_transport(rumqttc::Transport::tls_with_config(
        rumqttc::TlsConfiguration::Rustls(device_tls(&broker.dir, device)),
    ));
    let (client, mut event_loop) = rumqttc::AsyncClient::new(options, 16);
    let (tx, events) = tokio::sync::mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
        loop {
            let event = event_loop.poll().await.map_err(|e| e.to_string());
            let stop = event.is_err();
            if tx.send(event).is_err() || stop {
                return;
            }
        }
    });
    Session {
        events,
        client,
        task,
    }
}

impl Session {
    /// Subscribe and return the broker's SUBACK return code (0 = QoS 0 granted, 128 = refused).
    async fn subscribe(&mut self, filter: &str) -> Result<rumqttc::SubscribeReasonCode, String> {
        self.client
            .subscribe(filter, rumqttc::QoS::AtMostOnce)
            .await
            .unwrap();
        let deadline = Instant::now() + WITHIN;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.events.recv()).await {
                Ok(Some(Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(ack))))) => {
                    return Ok(ack.return_codes[0]);
                }
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(e))) => return Err(e),
                Ok(None) | Err(_) => return Err("no SUBACK".into()),
            }
        }
    }

    /// Wait for the broker to end the connection; returns how long that took.
    async fn disconnected(&mut self) -> Duration {
        let start = Instant::now();
        loop {
            let left = WITHIN.saturating_sub(start.elapsed());
            match tokio::time::timeout(left, self.events.recv()).await {
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(_))) | Ok(None) => return start.elapsed(),
                Err(_) => panic!("the broker kept the connection for {WITHIN:?}"),
            }
        }
    }
}

async fn issue(s: &TestServer, dir: &Path, device: &str, name: &str) {
    let csr = p256_csr(dir, name);
    let (st, issued) = s
        .post(
            &format!("/api/v1/devices/{device}/certificates"),
            json!({"csr": csr}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{issued}");
    std::fs::write(
        dir.join(format!("{name}.crt")),
        issued["certificate"].as_str().unwrap(),
    )
    .unwrap();
}

async fn post_ok(s: &TestServer, path: &str) {
    let (st, body) = s.post(path, json!({"reason": "keyCompromise"})).await;
    assert_eq!(st, StatusCode::OK, "{path}: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_enforces_sigil_decisions_within_seconds() {
    let mq = tempfile::tempdir().unwrap();
    let dir = mq.path();
    broker_tls(dir);
    let init = Command::new("mosquitto_ctrl")
        .args(["dynsec", "init"])
        .arg(dir.join("dynsec.json"))
        .args(["admin", ADMIN_PASSWORD])
        .output()
        .expect("mosquitto_ctrl on PATH");
    assert!(init.status.success(), "{init:?}");
    let (device_port, control_port) = (free_port(), free_port());

    let mut settings = MosquittoSettings::new("localhost", control_port, dir.join("broker-ca.pem"));
    settings.username = "admin".into();
    settings.password = ADMIN_PASSWORD.into();
    settings.crl_file = Some(dir.join("crl.pem"));
    settings.pid_file = Some(dir.join("mosquitto.pid"));
    settings.poll_interval = Duration::from_millis(200);
    let Some(s) = TestServer::start_with(Db::Sqlite, |c| c.mosquitto = Some(settings)).await else {
        return;
    };
    // Sigil writes the CRL at start; the broker needs it (and Sigil's CA chain) to start.
    let chain = [
        std::fs::read_to_string(s.data_dir().join("ca/issuing.crt")).unwrap(),
        std::fs::read_to_string(s.data_dir().join("ca/root.crt")).unwrap(),
    ]
    .concat();
    std::fs::write(dir.join("sigil-ca.pem"), chain).unwrap();
    let deadline = Instant::now() + WITHIN;
    while !dir.join("crl.pem").exists() {
        assert!(Instant::now() < deadline, "Sigil wrote no broker CRL");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let broker = start_broker(dir, &dir.join("sigil-ca.pem"), device_port, control_port);

    let product = s.create_product("Thermostat").await;
    let a = s.create_device(&product, "A").await;
    let b = s.create_device(&product, "B").await;
    issue(&s, dir, &a, &a).await;
    issue(&s, dir, &b, &b).await;
    post_ok(&s, &format!("/api/v1/devices/{a}/activate")).await;
    let own = format!("devices/{a}/telemetry/temperature");
    let others = format!("devices/{b}/telemetry/temperature");

    // A may publish its own telemetry once Sigil has synced (the sync reconnects with backoff
    // while the broker starts, so allow it the same bound).
    within(
        "A publishes its own telemetry",
        || publish(&broker, &a, &own),
        |p| *p == Publish::Accepted,
    )
    .await;
    assert_eq!(
        publish(&broker, &a, &others),
        Publish::NotAuthorized,
        "A must not publish as B"
    );
    assert_eq!(
        publish(&broker, &b, &others),
        Publish::Accepted,
        "B publishes its own"
    );
    assert_eq!(
        publish(&broker, &a, &format!("devices/{a}/commands/reboot")),
        Publish::NotAuthorized,
        "a device does not publish commands"
    );

    // A connected session: its own commands yes, B's no.
    let mut live = session(&broker, &a).await;
    assert_eq!(
        live.subscribe(&format!("devices/{a}/commands/#")).await,
        Ok(rumqttc::SubscribeReasonCode::Success(
            rumqttc::QoS::AtMostOnce
        ))
    );
    assert_eq!(
        live.subscribe(&format!("devices/{b}/commands/#")).await,
        Ok(rumqttc::SubscribeReasonCode::Failure)
    );

    // Suspend: the live connection is cut and publishes are refused within seconds.
    post_ok(&s, &format!("/api/v1/devices/{a}/suspend")).await;
    let cut = live.disconnected().await;
    let refused = within(
        "suspended A is refused",
        || publish(&broker, &a, &own),
        |p| *p == Publish::NotAuthorized,
    )
    .await;
    eprintln!("suspend: connection cut after {cut:?}, publish refused after {refused:?}");
    assert_eq!(
        publish(&broker, &b, &others),
        Publish::Accepted,
        "B is unaffected"
    );

    // Resume: A works again.
    post_ok(&s, &format!("/api/v1/devices/{a}/resume")).await;
    let back = within(
        "resumed A publishes",
        || publish(&broker, &a, &own),
        |p| *p == Publish::Accepted,
    )
    .await;
    eprintln!("resume: publishing again after {back:?}");

    // Revoke: the live connection is cut, and the broker's CRL refuses the certificate at the
    // TLS handshake.
    let mut live = session(&broker, &a).await;
    assert!(
        live.subscribe(&format!("devices/{a}/commands/#"))
            .await
            .is_ok()
    );
    post_ok(&s, &format!("/api/v1/devices/{a}/revoke")).await;
    let cut = live.disconnected().await;
    let refused = within(
        "revoked A cannot connect",
        || publish(&broker, &a, &own),
        |p| matches!(p, Publish::ConnectionRefused(_)),
    )
    .await;
    eprintln!("revoke: connection cut after {cut:?}, handshake refused after {refused:?}");
    assert_eq!(
        publish(&broker, &b, &others),
        Publish::Accepted,
        "B is unaffected"
    );

    // Sigil's changes are all in the plugin's own configuration file, the broker's state of record.
    let dynsec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("dynsec.json")).unwrap()).unwrap();
    let clients: Vec<&str> = dynsec["clients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["username"].as_str().unwrap())
        .collect();
    assert!(
        clients.contains(&b.as_str()) && !clients.contains(&a.as_str()),
        "{clients:?}"
    );
    s.shutdown().await;
    drop(broker);
}
