//! EST helpers for the integration tests: an independent EST client made of `curl` and
//! `openssl`, and a manufacturer (IDevID) PKI made with `openssl`.

use std::path::Path;
use std::process::Command;

use reqwest::StatusCode;
use serde_json::json;

use super::{TestServer, openssl};

pub struct Curl {
    pub status: u16,
    pub body: String,
    pub headers: String,
}

/// `curl` to the EST endpoint `op`, with `args` (credentials, client certificate, body).
pub fn curl(s: &TestServer, op: &str, args: &[&str]) -> Curl {
    let port = s.handle.as_ref().unwrap().api_addr.port();
    let url = format!("https://localhost:{port}/.well-known/est/{op}");
    let root = s.data_dir().join("ca/root.crt");
    let out = Command::new("curl")
        .args([
            "-sS",
            "--cacert",
            root.to_str().unwrap(),
            "-D",
            "headers.txt",
            "-o",
            "body.txt",
            "-w",
            "%{http_code}",
        ])
        .args(args)
        .arg(&url)
        .current_dir(s.dir.path())
        .output()
        .unwrap();
    let code = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    Curl {
        status: code.parse().unwrap_or(0),
        body: std::fs::read_to_string(s.dir.path().join("body.txt")).unwrap_or_default(),
        headers: std::fs::read_to_string(s.dir.path().join("headers.txt")).unwrap_or_default(),
    }
}

pub const PKCS10: &str = "Content-Type: application/pkcs10";

/// simpleenroll with HTTP Basic `user` (`device:token`), a Content-Type header, and the body
/// in `file`.
pub fn enroll(s: &TestServer, user: Option<&str>, content_type: &str, file: &str) -> Curl {
    let body = format!("@{file}");
    let mut args = vec!["-H", content_type, "--data-binary", &body];
    if let Some(user) = user {
        args.extend(["-u", user]);
    }
    curl(s, "simpleenroll", &args)
}

/// simplereenroll with the TLS client certificate `(cert, key)`, if any, and the CSR in `file`.
pub fn reenroll(s: &TestServer, client: Option<(&str, &str)>, file: &str) -> Curl {
    let body = format!("@{file}");
    let mut args = vec!["-H", PKCS10, "--data-binary", &body];
    if let Some((cert, key)) = client {
        args.extend(["--cert", cert, "--key", key]);
    }
    curl(s, "simplereenroll", &args)
}

/// EST `op` authenticated only by the TLS client certificate `(cert, key)`, CSR in `file`.
pub fn reenroll_as(s: &TestServer, op: &str, (cert, key): (&str, &str), file: &str) -> Curl {
    let body = format!("@{file}");
    curl(
        s,
        op,
        &[
            "-H",
            PKCS10,
            "--data-binary",
            &body,
            "--cert",
            cert,
            "--key",
            key,
        ],
    )
}

/// A P-256 key and a base64 DER CSR from `openssl req` (file `<name>.b64`).
pub fn csr_b64(dir: &Path, name: &str) {
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-subj",
            "/CN=ignored",
            "-outform",
            "DER",
            "-out",
            &format!("{name}.der"),
        ],
    );
    openssl(
        dir,
        &[
            "base64",
            "-in",
            &format!("{name}.der"),
            "-out",
            &format!("{name}.b64"),
        ],
    );
}

/// Decode an EST certs-only answer with `openssl pkcs7 -print_certs` into `<name>.crt`.
pub fn save_certs(dir: &Path, body: &str, name: &str) -> String {
    std::fs::write(dir.join("answer.b64"), body).unwrap();
    openssl(
        dir,
        &["base64", "-d", "-in", "answer.b64", "-out", "answer.p7"],
    );
    openssl(
        dir,
        &[
            "pkcs7",
            "-inform",
            "DER",
            "-in",
            "answer.p7",
            "-print_certs",
            "-out",
            &format!("{name}.crt"),
        ],
    );
    std::fs::read_to_string(dir.join(format!("{name}.crt"))).unwrap()
}

pub async fn token(s: &TestServer, device: &str) -> String {
    let (st, t) = s
        .post(
            &format!("/api/v1/devices/{device}/enrollment-tokens"),
            json!({"ttl_seconds": 600}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{t}");
    t["token"].as_str().unwrap().to_owned()
}

/// A manufacturer CA made with openssl, as a device maker's factory PKI would be: `<name>.crt`,
/// `<name>.key`.
pub fn manufacturer_ca(dir: &Path, name: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-subj",
            &format!("/O={name}/CN={name} IDevID CA"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-days",
            "3650",
            "-out",
            &format!("{name}.crt"),
        ],
    );
}

/// A bootstrap (IDevID-style) certificate for device serial `serial`, issued by `ca` with
/// openssl: `<out>.crt`, `<out>.key`.
pub fn bootstrap_cert(dir: &Path, ca: &str, serial: &str, out: &str) {
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{out}.key"),
            "-subj",
            &format!("/serialNumber={serial}/CN=sensor"),
            "-out",
            &format!("{out}.csr"),
        ],
    );
    std::fs::write(
        dir.join("idevid.ext"),
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{out}.csr"),
            "-CA",
            &format!("{ca}.crt"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-days",
            "3650",
            "-extfile",
            "idevid.ext",
            "-out",
            &format!("{out}.crt"),
        ],
    );
}

/// Wait for the refused-handshake audit entry about a certificate whose subject contains
/// `needle`; its reason.
pub async fn tls_refusal(s: &TestServer, needle: &str) -> String {
    for _ in 0..50 {
        let (_, page) = s
            .get("/api/v1/audit/entries?action=tls.client_certificate&limit=500")
            .await;
        if let Some(e) = page["items"].as_array().and_then(|items| {
            items.iter().find(|e| {
                e["details"]["subject"]
                    .as_str()
                    .is_some_and(|s| s.contains(needle))
            })
        }) {
            assert_eq!(e["outcome"], "denied");
            return e["details"]["reason"].as_str().unwrap().to_owned();
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("no audit entry for the refused certificate {needle}");
}
