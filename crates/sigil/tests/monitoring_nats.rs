//! The metrics bus on a real NATS JetStream (127.0.0.1:4222, or SIGIL_TEST_NATS_URL): metrics
//! published while the detector is down are applied when it comes back, from the last
//! acknowledged message on (nothing applied before is applied twice), an envelope that a
//! Sigil collector did not seal, published straight onto the stream, is refused and counted,
//! and so is a genuine envelope captured and published again.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use serde_json::Value;

use common::{Db, TestServer};
use sigil_authority::datadir::DataDir;
use sigil_authority::monitoring::{Batch, Sealer};
use sigil_detect::{Datapoint, Metric};
use sigil_nats::{QueueConfig, WorkQueue};

fn nats_config() -> QueueConfig {
    let url =
        std::env::var("SIGIL_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    // A stream and subjects of this test's own, so tests running at once do not meet.
    let run = uuid::Uuid::new_v4().simple().to_string();
    let mut config = QueueConfig::new(url);
    config.stream = format!("SIGIL_TEST_{run}");
    config.subject_prefix = format!("sigil-test.{run}.metrics");
    // What a stopped detector had pulled but not acknowledged comes back this soon.
    config.ack_wait = Duration::from_secs(2);
    config
}

async fn status(s: &TestServer) -> Value {
    s.admin()
        .try_get("/api/v1/monitoring/status")
        .await
        .unwrap()
}

async fn wait_for_alarm(s: &TestServer, device: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let list = s
            .admin()
            .try_get(&format!("/api/v1/alarms?device={device}"))
            .await
            .unwrap();
        if let Some(a) = list["items"].as_array().and_then(|a| a.first()) {
            return a.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no alarm for {device}: {}",
            status(s).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn flood(device: &str) -> Batch {
    let now = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
    Batch::new(
        "broker",
        now,
        vec![Datapoint::number(device, Metric::MessagesSent, now, 500.0)],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_survive_a_detector_restart_and_forged_envelopes_are_refused() {
    let config = nats_config();
    let mut s = TestServer::start_with(Db::Sqlite, |c| c.nats = Some(config.clone()))
        .await
        .unwrap();
    assert_eq!(status(&s).await["transport"], "jetstream");
    let product = s.admin().create_product("Meter").await.unwrap();
    let mut devices = Vec::new();
    for serial in ["A", "B", "C"] {
        devices.push(s.admin().create_device(&product, serial).await.unwrap());
    }
    let (a, b, c) = (&devices[0], &devices[1], &devices[2]);

    // Another Sigil instance's collector: the same key (derived from the CA passphrase).
    let sealer = Sealer::new(&DataDir::new(s.data_dir()).metrics_bus_key().unwrap());
    let queue = WorkQueue::connect(config.clone()).await.unwrap();
    let publish = |device: &str, envelope: sigil_authority::monitoring::Envelope| {
        let queue = &queue;
        let device = device.to_owned();
        async move {
            queue
                .publish(
                    &device,
                    &[("Sigil-Tag", &hex::encode(&envelope.tag))],
                    envelope.body,
                )
                .await
                .unwrap();
        }
    };
    publish(a, sealer.seal(&flood(a))).await;
    let alarm = wait_for_alarm(&s, a).await;
    assert_eq!(alarm["behaviour"], "publish-flood");

    // The detector stops; meanwhile a flood of B is published, and one of C sealed with
    // another key (anyone who can reach NATS could publish that).
    s.stop().await;
    let b_envelope = sealer.seal(&flood(b));
    publish(b, b_envelope.clone()).await;
    let forger = Sealer::new(&[7; 32]);
    publish(c, forger.seal(&flood(c))).await;
    let untagged = sealer.seal(&flood(c));
    queue.publish(c, &[], untagged.body).await.unwrap();

    s.restart().await;
    let alarm = wait_for_alarm(&s, b).await;
    assert_eq!(alarm["behaviour"], "publish-flood");
    let deadline = Instant::now() + Duration::from_secs(10);
    let after = loop {
        let st = status(&s).await;
        if st["envelopes"].as_u64() == Some(3) {
            break st;
        }
        assert!(Instant::now() < deadline, "{st}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Only what was not acknowledged before the restart: B's envelope and the two forgeries.
    assert_eq!(after["datapoints"], 1, "{after}");
    assert_eq!(after["refused_forged"], 2, "{after}");
    let none = s
        .admin()
        .try_get(&format!("/api/v1/alarms?device={c}"))
        .await
        .unwrap();
    assert_eq!(
        none["items"],
        serde_json::json!([]),
        "a forged envelope was applied"
    );

    // B's genuine envelope, captured and published again: refused as a replay.
    publish(b, b_envelope).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let replayed = loop {
        let st = status(&s).await;
        if st["envelopes"].as_u64() == Some(4) {
            break st;
        }
        assert!(Instant::now() < deadline, "{st}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(replayed["refused_replayed"], 1, "{replayed}");
    assert_eq!(replayed["datapoints"], 1, "{replayed}");

    queue.delete_stream().await.unwrap();
    s.shutdown().await;
}

/// The README's flags: `sigil serve --nats URL --nats-stream NAME` puts the bus on JetStream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigil_serve_takes_the_bus_to_nats_from_its_flags() {
    let config = nats_config();
    let dir = tempfile::tempdir().unwrap();
    let server = common::SpawnedServer::spawn_with(
        &dir.path().join("data"),
        None,
        &[],
        &["--nats", &config.url, "--nats-stream", &config.stream],
    )
    .unwrap();
    let token = std::fs::read_to_string(dir.path().join("data/admin.token")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sigil"))
        .args(["monitor", "status", "--json"])
        .env("SIGIL_SERVER", server.api())
        .env("SIGIL_TOKEN", token.trim())
        .env("SIGIL_CA_FILE", dir.path().join("data/ca/root.crt"))
        .output()
        .unwrap();
    let status: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert_eq!(
        status["transport"],
        "jetstream",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(server);
    // The stream the server made, under the name given (subjects: the default prefix).
    let mut made = QueueConfig::new(&config.url);
    made.stream = config.stream.clone();
    WorkQueue::connect(made)
        .await
        .unwrap()
        .delete_stream()
        .await
        .unwrap();
}
