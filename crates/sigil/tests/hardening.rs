//! Regression tests for the defects of the hardening issue (#14), each named after the attack
//! it stops. Each failed on the main branch before its fix.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use reqwest::StatusCode;
use serde_json::json;

use common::est::*;
use common::{Db, TestServer};

/// The serial of the certificate in the PEM file `name`, as Sigil writes it.
fn serial_of(s: &TestServer, name: &str) -> String {
    let out = common::openssl(s.dir.path(), &["x509", "-in", name, "-noout", "-serial"]);
    out.trim()
        .trim_start_matches("serial=")
        .to_ascii_lowercase()
}

async fn statuses(s: &TestServer, device: &str) -> Vec<(String, String)> {
    let (_, certs) = s
        .get(&format!("/api/v1/certificates?device={device}"))
        .await;
    let mut out: Vec<(String, String)> = certs["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["serial"].as_str().unwrap().to_owned(),
                c["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    out.sort();
    out
}

/// Attack: keep an old certificate (a backup, a previous owner, a leak) after the device has
/// renewed, and use it to renew again, taking the identity back from the real device.
async fn superseded_certificate_cannot_renew_or_report(db: Db) {
    let Some(s) = TestServer::start(db).await else {
        return;
    };
    let dir = s.dir.path();
    let product = s.create_product("P").await;
    let device = s.create_device(&product, "SN-1").await;
    csr_b64(dir, "g1");
    let user = format!("{device}:{}", token(&s, &device).await);
    let first = enroll(&s, Some(&user), PKCS10, "g1.b64");
    assert_eq!(first.status, 200, "{}", first.body);
    save_certs(dir, &first.body, "g1");
    csr_b64(dir, "g2");
    let second = reenroll(&s, Some(("g1.crt", "g1.key")), "g2.b64");
    assert_eq!(second.status, 200, "{}", second.body);
    save_certs(dir, &second.body, "g2");
    let g2 = serial_of(&s, "g2.crt");
    let before = statuses(&s, &device).await;

    // The old certificate asks for g3 with a new key: refused, nothing issued, g2 stays current.
    csr_b64(dir, "g3");
    let stolen = reenroll(&s, Some(("g1.crt", "g1.key")), "g3.b64");
    assert_eq!(stolen.status, 403, "{}", stolen.body);
    assert!(
        stolen.body.contains("certificate-not-current"),
        "{}",
        stolen.body
    );
    assert_eq!(statuses(&s, &device).await, before);
    assert!(
        before.contains(&(g2.clone(), "active".to_owned())),
        "{before:?}"
    );

    // Nor does it authenticate posture reports.
    let port = s.handle.as_ref().unwrap().api_addr.port();
    let out = std::process::Command::new("curl")
        .args(["-sS", "--cacert", "ca/root.crt", "--cert"])
        .arg(dir.join("g1.crt"))
        .arg("--key")
        .arg(dir.join("g1.key"))
        .args(["--json", "{}", "-w", "\n%{http_code}"])
        .arg(format!("https://localhost:{port}/api/v1/device/posture"))
        .current_dir(s.data_dir())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.ends_with("403"), "{text}");
    assert!(text.contains("certificate-not-current"), "{text}");

    // A device whose renewal answer was lost retries with the old certificate and the CSR of
    // the key it renewed to: it gets g2 back (it proves possession of g2's key), not a g3.
    let retry = reenroll(&s, Some(("g1.crt", "g1.key")), "g2.b64");
    assert_eq!(retry.status, 200, "{}", retry.body);
    save_certs(dir, &retry.body, "retried");
    assert_eq!(serial_of(&s, "retried.crt"), g2);
    assert_eq!(statuses(&s, &device).await, before);

    // The current certificate still renews.
    let renew = reenroll(&s, Some(("g2.crt", "g2.key")), "g3.b64");
    assert_eq!(renew.status, 200, "{}", renew.body);
    s.shutdown().await;
}
both_backends!(superseded_certificate_cannot_renew_or_report);

/// Attack: a cloned (or simply kept) factory key enrols the device again and again with new
/// keys, each time pushing the real device's identity out, with no operator deciding anything.
async fn bootstrap_certificate_enrols_a_device_once(db: Db) {
    let Some(s) = TestServer::start(db).await else {
        return;
    };
    let dir = s.dir.path();
    let product = s.create_product("P").await;
    let device = s.create_device(&product, "SN-100").await;
    manufacturer_ca(dir, "acme");
    bootstrap_cert(dir, "acme", "SN-100", "boot");
    let pem = std::fs::read_to_string(dir.join("acme.crt")).unwrap();
    let (st, e) = s
        .post(
            &format!("/api/v1/products/{product}/manufacturer-cas"),
            json!({"certificate": pem}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{e}");
    csr_b64(dir, "first");
    let first = reenroll_as(&s, "simpleenroll", ("boot.crt", "boot.key"), "first.b64");
    assert_eq!(first.status, 200, "{}", first.body);

    let count = s.count("certificates").await;
    csr_b64(dir, "again");
    let again = reenroll_as(&s, "simpleenroll", ("boot.crt", "boot.key"), "again.b64");
    assert_eq!(again.status, 403, "{}", again.body);
    assert!(again.body.contains("already enrolled"), "{}", again.body);
    assert_eq!(s.count("certificates").await, count);

    // Re-bootstrapping after a factory reset is an operator's decision: revoke the identity,
    // then the bootstrap certificate enrols the device once more.
    let (st, r) = s
        .post(
            &format!("/api/v1/devices/{device}/revoke"),
            json!({"reason": "superseded"}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{r}");
    let after_reset = reenroll_as(&s, "simpleenroll", ("boot.crt", "boot.key"), "again.b64");
    assert_eq!(after_reset.status, 200, "{}", after_reset.body);
    assert_eq!(s.count("certificates").await, count + 1);
    s.shutdown().await;
}
both_backends!(bootstrap_certificate_enrols_a_device_once);

/// Attack: slowloris on the public PKI port. Connections that send half a request head are
/// cut off after the header timeout, one address holds at most its share of connections, and
/// the listener goes on answering others meanwhile; the server raised its descriptor limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_on_the_pki_port_is_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = TestServer::start(Db::Sqlite).await.unwrap();
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        fields[3], fields[4],
        "soft limit raised to the hard one: {line}"
    );

    let cap = sigil_server::tls::MAX_CONNECTIONS_PER_ADDRESS;
    let mut held = Vec::new();
    for _ in 0..cap + 40 {
        let mut c = tokio::net::TcpStream::connect(s.pki_addr).await.unwrap();
        c.write_all(b"GET /crl/issuing.crl HTTP/1.1\r\nHost: pki\r\n")
            .await
            .unwrap();
        held.push(c);
    }
    // Another client (another address: 127.0.0.2 is loopback too) is served meanwhile.
    let other = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .unwrap();
    let r = other
        .get(format!("{}/ca/root.crt", s.pki))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // The connections past the per-address share were closed at once.
    let started = std::time::Instant::now();
    let mut buf = [0u8; 64];
    let mut closed_at_once = 0;
    for c in held.iter_mut().skip(cap) {
        let read = tokio::time::timeout(std::time::Duration::from_secs(2), c.read(&mut buf)).await;
        if matches!(read, Ok(Ok(0)) | Ok(Err(_))) {
            closed_at_once += 1;
        }
    }
    assert_eq!(closed_at_once, 40);
    // And the rest once the header timeout passed.
    let limit = sigil_server::tls::HEADER_READ_TIMEOUT + std::time::Duration::from_secs(10);
    for c in held.iter_mut().take(cap) {
        let left = limit.saturating_sub(started.elapsed());
        let read = tokio::time::timeout(left, c.read(&mut buf)).await;
        // Closed (EOF or reset), perhaps after a 408: anything but still waiting.
        assert!(
            read.is_ok(),
            "a half-sent request head was still open after {limit:?}"
        );
    }
    s.shutdown().await;
}

/// `curl` with `args` against the API; (exit code, HTTP status) - status 0 when none arrived.
fn curl_status(s: &TestServer, args: &[&str], path: &str) -> (i32, u16) {
    let out = std::process::Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--cacert",
            "ca/root.crt",
        ])
        .args(args)
        .arg(format!("{}{path}", s.api))
        .current_dir(s.data_dir())
        .output()
        .unwrap();
    let code = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    (out.status.code().unwrap_or(-1), code)
}

/// Defect: a refusal decided before the body is read (401, 413) was lost to an HTTP/2 stream
/// reset or an HTTP/1.1 connection reset in a share of tries; a client that half-closed after
/// its request got no answer at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_sent_before_the_body_is_read_reach_the_client() {
    let s = TestServer::start_with(Db::Sqlite, |c| c.failures_per_window = 1000)
        .await
        .unwrap();
    let big = s.data_dir().join("big.json");
    std::fs::write(&big, vec![b' '; 2 * 1024 * 1024]).unwrap();
    let small = s.data_dir().join("small.json");
    std::fs::write(&small, vec![b' '; 200 * 1024]).unwrap();
    let auth = format!("Authorization: Bearer {}", s.token);
    for _ in 0..15 {
        for proto in ["--http2", "--http1.1"] {
            // Too large (413) with a valid token.
            let got = curl_status(
                &s,
                &[
                    proto,
                    "-H",
                    &auth,
                    "-H",
                    "content-type: application/json",
                    "--data-binary",
                    "@big.json",
                ],
                "/api/v1/products",
            );
            assert_eq!(got, (0, 413), "{proto}");
            // Unauthenticated (401), body unread.
            let got = curl_status(
                &s,
                &[
                    proto,
                    "-H",
                    "Authorization: Bearer sigil_wrong",
                    "--data-binary",
                    "@small.json",
                ],
                "/api/v1/products",
            );
            assert_eq!(got, (0, 401), "{proto}");
        }
    }

    // Half-close: the request, then a FIN (no close_notify), then read the answer.
    let port = s.handle.as_ref().unwrap().api_addr.port();
    let script = format!(
        r#"
import socket, ssl
ctx = ssl.create_default_context(cafile="ca/root.crt")
raw = socket.create_connection(("127.0.0.1", {port}))
s = ctx.wrap_socket(raw, server_hostname="localhost")
s.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
# A TCP FIN under the TLS session (shutdown on a duplicate of its descriptor).
socket.fromfd(s.fileno(), socket.AF_INET, socket.SOCK_STREAM).shutdown(socket.SHUT_WR)
data = b""
try:
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
except (ssl.SSLError, OSError):
    pass
print(data.split(b"\r\n", 1)[0].decode())
"#
    );
    let out = std::process::Command::new("python3")
        .args(["-c", &script])
        .current_dir(s.data_dir())
        .output()
        .unwrap();
    let first = String::from_utf8_lossy(&out.stdout);
    assert!(
        first.starts_with("HTTP/1.1 200"),
        "stdout {first:?} stderr {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The same on the PKI listener, in plain TCP.
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(s.pki_addr).unwrap();
    c.write_all(b"GET /ca/root.crt HTTP/1.1\r\nHost: pki\r\nConnection: close\r\n\r\n")
        .unwrap();
    c.shutdown(std::net::Shutdown::Write).unwrap();
    let mut answer = String::new();
    c.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    s.shutdown().await;
}

/// The CRL's nextUpdate is how long a broker checking it keeps admitting devices while Sigil is
/// down; `sigil serve --crl-validity-hours` sets it (the README's Mosquitto section).
#[test]
fn crl_validity_follows_the_flag() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let server =
        common::SpawnedServer::spawn_with(&data, None, &[], &["--crl-validity-hours", "48"])
            .unwrap();
    let crl = tmp.path().join("issuing.crl");
    let out = std::process::Command::new("curl")
        .args(["-sS", "-o"])
        .arg(&crl)
        .arg(format!("http://{}/crl/issuing.crl", server.pki_addr))
        .output()
        .unwrap();
    assert!(out.status.success());
    let dates = common::openssl(
        tmp.path(),
        &[
            "crl",
            "-inform",
            "DER",
            "-in",
            "issuing.crl",
            "-noout",
            "-lastupdate",
            "-nextupdate",
        ],
    );
    let field = |name: &str| {
        let text = dates
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap()
            .trim()
            .to_owned();
        let format = time::macros::format_description!(
            "[month repr:short] [day padding:space] [hour]:[minute]:[second] [year] GMT"
        );
        time::PrimitiveDateTime::parse(&text, &format).unwrap()
    };
    let validity = field("nextUpdate=") - field("lastUpdate=");
    assert_eq!(validity, time::Duration::hours(48), "{dates}");
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_sigil"))
        .args(["serve", "--crl-validity-hours", "1", "--data-dir"])
        .arg(tmp.path().join("other"))
        .output()
        .unwrap();
    assert!(
        !refused.status.success(),
        "a validity below the refresh interval is refused"
    );
}
