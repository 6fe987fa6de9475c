//! Device-side monitoring end to end: agents read network tables in `/proc` layout and report
//! them over mTLS; the server's default security profile raises an alarm for a port scan (and
//! quarantines the scanner) and for a port that starts listening after the device's learning
//! reports; a well-behaved device raises nothing; a malformed report is refused and counted.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use sigil_agent::{MetricsOptions, RunOptions};
use sigil_testkit::{Db, TestServer};

/// `/proc/net` tables of a device listening on `ports` and opening TCP connections to `dials`.
fn write_proc(root: &Path, ports: &[u16], dials: &[(Ipv4Addr, u16)]) {
    let net = root.join("net");
    std::fs::create_dir_all(&net).unwrap();
    let mut tcp = String::from(
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n",
    );
    let hex = |ip: Ipv4Addr, port: u16| format!("{:08X}:{port:04X}", u32::from(ip).swap_bytes());
    for (i, port) in ports.iter().enumerate() {
        tcp.push_str(&format!(
            "{i:4}: {} {} 0A 00000000:00000000 00:00000000 00000000     0        0 1 1\n",
            hex(Ipv4Addr::UNSPECIFIED, *port),
            hex(Ipv4Addr::UNSPECIFIED, 0)
        ));
    }
    for (i, (ip, port)) in dials.iter().enumerate() {
        tcp.push_str(&format!(
            "{:4}: {} {} 02 00000000:00000000 00:00000000 00000000     0        0 1 1\n",
            i + ports.len(),
            hex(Ipv4Addr::new(10, 0, 0, 2), 40000 + i as u16),
            hex(*ip, *port)
        ));
    }
    std::fs::write(net.join("tcp"), tcp).unwrap();
    std::fs::write(
        net.join("dev"),
        "Inter-|   Receive |  Transmit\n face |bytes packets|bytes packets\n  eth0: 1000 10 0 0 0 0 0 0 2000 20 0 0 0 0 0 0\n",
    )
    .unwrap();
}

/// One pass of the agent's run loop that sends a metrics report and returns.
async fn report(device: &support::Device, proc_root: &Path) {
    let options = RunOptions {
        renewals: Some(0),
        metrics: Some(MetricsOptions {
            proc_root: proc_root.to_owned(),
            interval: Duration::from_secs(60),
        }),
        ..RunOptions::default()
    };
    let done = sigil_agent::run(&device.state, &options).await.unwrap();
    assert_eq!(done.metrics_reports, 1);
}

async fn alarms(s: &TestServer) -> Vec<Value> {
    let v = s.admin().try_get("/api/v1/alarms").await.unwrap();
    v["items"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_scans_and_new_listening_ports_raise_alarms_from_agent_reports() {
    let s = TestServer::start(Db::Sqlite).await.unwrap();
    let product = s.admin().create_product("Camera").await.unwrap();
    let scanner = support::enrol(&s, &product, "SCAN-1").await;
    let updated = support::enrol(&s, &product, "UPD-1").await;
    let steady = support::enrol(&s, &product, "OK-1").await;
    let proc_of = |d: &support::Device| s.dir.path().join(format!("proc-{}", d.id));

    // Three reports to learn from: each device listens on 22 and 8443 and talks to its broker.
    let broker = [(Ipv4Addr::new(10, 0, 0, 5), 8883)];
    for _ in 0..3 {
        for d in [&scanner, &updated, &steady] {
            write_proc(&proc_of(d), &[22, 8443], &broker);
            report(d, &proc_of(d)).await;
        }
    }
    // Then: one device opens connections to 60 ports of a neighbour; one listens on a new port.
    let sweep: Vec<(Ipv4Addr, u16)> = (1..=60).map(|p| (Ipv4Addr::new(10, 0, 0, 9), p)).collect();
    write_proc(&proc_of(&scanner), &[22, 8443], &sweep);
    let scanned_at = Instant::now();
    report(&scanner, &proc_of(&scanner)).await;
    write_proc(&proc_of(&updated), &[22, 8443, 4444], &broker);
    report(&updated, &proc_of(&updated)).await;
    // The steady device's fourth report through the README's command.
    write_proc(&proc_of(&steady), &[22, 8443], &broker);
    let out = Command::new(env!("CARGO_BIN_EXE_sigil-agent"))
        .args(["metrics", "--state-dir"])
        .arg(s.dir.path().join("agents/OK-1"))
        .arg("--proc-root")
        .arg(proc_of(&steady))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.contains("metrics report accepted: 9 datapoints"),
        "{said} {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let deadline = Instant::now() + Duration::from_secs(15);
    let (scan, port) = loop {
        let all = alarms(&s).await;
        let find = |device: &str, behaviour: &str| {
            all.iter()
                .find(|a| a["device_id"] == device && a["behaviour"] == behaviour)
                .cloned()
        };
        if let (Some(a), Some(b)) = (
            find(&scanner.id, "port-scan"),
            find(&updated.id, "new-listening-tcp-port"),
        ) {
            break (a, b);
        }
        assert!(Instant::now() < deadline, "alarms: {all:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!("port scan alarm after {:?}", scanned_at.elapsed());
    assert_eq!(scan["severity"], "critical");
    // Distinct endpoints in the window: the 60 swept and the broker of the earlier reports.
    assert_eq!(scan["explanation"]["value"], 61.0);
    assert_eq!(scan["explanation"]["threshold"], 50.0);
    assert_eq!(
        port["explanation"]["new_values"],
        serde_json::json!(["4444"])
    );
    assert_eq!(port["explanation"]["known_values"], 2);
    let all = alarms(&s).await;
    assert!(
        all.iter().all(|a| a["device_id"] != steady.id.as_str()),
        "{all:#?}"
    );
    let monitoring = s
        .admin()
        .try_get(&format!("/api/v1/devices/{}/monitoring", scanner.id))
        .await
        .unwrap();
    assert!(monitoring["quarantined_since"].is_string(), "{monitoring}");
    assert!(monitoring["last_metrics_at"].is_string(), "{monitoring}");

    // Judged a false positive (audited); the detector learns the port behind it.
    let (st, decided) = s
        .admin()
        .post(
            &format!("/api/v1/alarms/{}/decision", port["id"].as_str().unwrap()),
            serde_json::json!({"decision": "false_positive", "note": "the 1.4 release serves its UI on 4444"}),
        )
        .await;
    assert_eq!(st, 200, "{decided}");
    assert_eq!(decided["state"], "false_positive");

    // A malformed report, with the device's own mTLS identity: refused, counted, not applied.
    let identity = updated.state.current().unwrap().unwrap();
    let dir = s.dir.path();
    std::fs::write(dir.join("u.crt"), &identity.cert_pem).unwrap();
    std::fs::write(dir.join("u.key"), &identity.key_pem).unwrap();
    let before = s
        .admin()
        .try_get("/api/v1/monitoring/status")
        .await
        .unwrap();
    for body in [
        r#"{"listening_tcp_ports": [70000]}"#,
        r#"{"bytes_in": 1, "device": "someone-else"}"#,
        "not json",
    ] {
        let out = Command::new("curl")
            .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
            .arg(s.data_dir().join("ca/root.crt"))
            .arg("--cert")
            .arg(dir.join("u.crt"))
            .arg("--key")
            .arg(dir.join("u.key"))
            .args(["-H", "content-type: application/json", "-d", body])
            .arg(format!("{}/api/v1/device/metrics", s.api))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "422", "{body}");
    }
    let after = s
        .admin()
        .try_get("/api/v1/monitoring/status")
        .await
        .unwrap();
    assert_eq!(
        after["refused_malformed"].as_u64().unwrap(),
        before["refused_malformed"].as_u64().unwrap() + 3,
        "{after}"
    );
    assert_eq!(
        after["datapoints"], before["datapoints"],
        "nothing of a refused report is applied"
    );
    s.shutdown().await;
}
