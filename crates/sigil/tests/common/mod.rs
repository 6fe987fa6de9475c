//! The `sigil` crate's test helpers: the shared harness (`sigil-testkit`: the real server
//! in-process on SQLite or a fresh PostgreSQL database, the admin client, CSR helpers), plus
//! what needs this crate's binary (`sigil serve` as a child process, the CLI).
// Each test binary uses part of the harness.
#![allow(dead_code, unused_imports, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use serde_json::Value;

pub use sigil_testkit::csr::{fresh_csr_pem, openssl, openssl_csr, p256_csr};
pub use sigil_testkit::postgres::{drop_postgres, fresh_postgres};
pub use sigil_testkit::{Db, TestServer, split};

pub mod deployment;
pub mod est;
pub mod operators;

/// Run an async test body once per backend (see `sigil_testkit::both_backends`).
#[macro_export]
macro_rules! both_backends {
    ($name:ident) => {
        sigil_testkit::both_backends!($name);
    };
}

/// A client that trusts only the root CA of the data directory `dir`.
pub fn root_client(dir: &Path) -> reqwest::Client {
    sigil_testkit::root_client(dir).unwrap()
}

/// The real `sigil serve` binary in a child process.
pub struct SpawnedServer {
    pub child: Child,
    pub api_addr: SocketAddr,
    pub pki_addr: SocketAddr,
}

impl SpawnedServer {
    pub fn spawn(
        data_dir: &Path,
        database_url: Option<&str>,
        envs: &[(&str, &str)],
    ) -> Result<Self, String> {
        Self::spawn_with(data_dir, database_url, envs, &[])
    }

    /// `sigil serve` with `args` added to the listener and data-directory flags.
    pub fn spawn_with(
        data_dir: &Path,
        database_url: Option<&str>,
        envs: &[(&str, &str)],
        args: &[&str],
    ) -> Result<Self, String> {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sigil"));
        cmd.args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--pki-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(data_dir)
        .args(args)
        .env_remove("SIGIL_CA_PASSPHRASE")
        .env("SIGIL_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        if let Some(url) = database_url {
            cmd.args(["--database-url", url]);
        }
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn sigil");
        let stderr = child.stderr.take().unwrap();
        let mut lines = BufReader::new(stderr).lines();
        let (mut api, mut pki) = (None, None);
        let mut seen = String::new();
        while api.is_none() || pki.is_none() {
            let Some(Ok(line)) = lines.next() else {
                let _ = child.wait();
                return Err(seen);
            };
            seen.push_str(&line);
            seen.push('\n');
            if let Some(rest) = line.strip_prefix("API:  https://") {
                api = rest.split('/').next().and_then(|a| a.parse().ok());
            }
            if let Some(rest) = line.strip_prefix("PKI:  http://") {
                pki = rest.split('/').next().and_then(|a| a.parse().ok());
            }
        }
        // Keep draining stderr so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Ok(Self {
            child,
            api_addr: api.unwrap(),
            pki_addr: pki.unwrap(),
        })
    }

    pub fn api(&self) -> String {
        format!("https://localhost:{}", self.api_addr.port())
    }

    pub fn kill9(mut self) {
        // std's Child::kill sends SIGKILL on Unix.
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for SpawnedServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The real `sigil` binary set up against `s`, as an operator would through the environment.
pub fn sigil_command(s: &TestServer, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sigil"));
    command
        .args(args)
        .env("SIGIL_SERVER", &s.api)
        .env("SIGIL_TOKEN", &s.token)
        .env("SIGIL_CA_FILE", s.data_dir().join("ca/root.crt"))
        .env("SIGIL_DATA_DIR", "/nonexistent")
        .current_dir(s.dir.path());
    command
}

/// Run the real `sigil` binary against `s`, configured as an operator would through the environment.
pub fn sigil(s: &TestServer, args: &[&str]) -> Output {
    sigil_command(s, args).output().unwrap()
}

/// The command's stdout; panics with its output if it failed.
pub fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub fn json(out: Output) -> Value {
    serde_json::from_str(&ok(out)).unwrap()
}

/// An SBOM of the pinned Python environment (`sigil-vuln/tests/fixtures/python-env`) written
/// by cyclonedx-py (`format` JSON or XML, CycloneDX `spec`) into the test directory, then
/// uploaded for the product's `version` as the README does. The file and the upload's answer.
pub fn upload_python_sbom(
    s: &TestServer,
    product: &str,
    version: &str,
    (format, spec): (&str, &str),
) -> (std::path::PathBuf, Value) {
    let file = s
        .dir
        .path()
        .join(format!("sbom-{version}.cdx.{}", format.to_lowercase()));
    let requirements = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../sigil-vuln/tests/fixtures/python-env/requirements.txt");
    let out = Command::new("cyclonedx-py")
        .args(["requirements", "--of", format, "--sv", spec, "-o"])
        .arg(&file)
        .arg(requirements)
        .output()
        .expect("cyclonedx-py (scripts/test.sh says how to install it)");
    assert!(out.status.success(), "{out:?}");
    let answer = json(sigil(
        s,
        &[
            "sbom",
            "upload",
            "--product",
            product,
            "--version",
            version,
            file.to_str().unwrap(),
            "--json",
        ],
    ));
    (file, answer)
}

/// Issue a certificate for a new device from an `openssl req` CSR; files `<name>.crt` and
/// `chain.pem` land in the test directory. Returns (device id, serial).
pub async fn enrolled_device(s: &TestServer, product: &str, name: &str) -> (String, String) {
    let device = s.create_device(product, name).await;
    let csr = p256_csr(s.dir.path(), name);
    let (st, c) = s
        .post(
            &format!("/api/v1/devices/{device}/certificates"),
            serde_json::json!({"csr": csr}),
        )
        .await;
    assert_eq!(st, reqwest::StatusCode::CREATED, "{c}");
    std::fs::write(
        s.dir.path().join(format!("{name}.crt")),
        c["certificate"].as_str().unwrap(),
    )
    .unwrap();
    std::fs::write(s.dir.path().join("chain.pem"), c["chain"].as_str().unwrap()).unwrap();
    (device, c["serial"].as_str().unwrap().to_owned())
}

/// `openssl ocsp` against Sigil's responder for `cert`, verifying the response against the CA.
pub fn openssl_ocsp(s: &TestServer, extra: &[&str]) -> String {
    let issuing = s.data_dir().join("ca/issuing.crt");
    let root = s.data_dir().join("ca/root.crt");
    let url = format!("{}/ocsp", s.pki);
    let mut args = vec![
        "ocsp",
        "-issuer",
        issuing.to_str().unwrap(),
        "-CAfile",
        root.to_str().unwrap(),
        "-url",
        &url,
    ];
    args.extend_from_slice(extra);
    let out = std::process::Command::new("openssl")
        .args(&args)
        .current_dir(s.dir.path())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "openssl {args:?}: {text}");
    text
}

/// `openssl s_client` to the API listener with a client certificate, sending one request.
/// Returns everything it printed.
pub fn s_client(s: &TestServer, cert: &str, key: &str) -> String {
    use std::io::Write;
    let port = s.handle.as_ref().unwrap().api_addr.port().to_string();
    let root = s.data_dir().join("ca/root.crt");
    let mut child = std::process::Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-servername",
            "localhost",
            "-CAfile",
            root.to_str().unwrap(),
            "-cert",
            cert,
            "-key",
            key,
            "-ign_eof",
            "-quiet",
        ])
        .current_dir(s.dir.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// An old fleet CA (`oldca.crt`, `oldca.key`) and a device certificate `<name>.crt` (key
/// `<name>.key`, valid `days`) from it, made by openssl in the test directory: another CA's
/// identities, as a fleet moving to Sigil holds them.
pub fn old_fleet_certificate(s: &TestServer, name: &str, days: &str) {
    let dir = s.dir.path();
    let key = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    if !dir.join("oldca.crt").exists() {
        let mut ca = vec!["req", "-x509"];
        ca.extend(key);
        ca.extend([
            "-keyout",
            "oldca.key",
            "-out",
            "oldca.crt",
            "-subj",
            "/CN=Old Fleet CA",
            "-days",
            "3650",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
        ]);
        openssl(dir, &ca);
    }
    let (key_file, csr, crt, subject) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.crt"),
        format!("/CN={name}"),
    );
    let mut req = vec!["req", "-new"];
    req.extend(key);
    req.extend(["-keyout", &key_file, "-out", &csr, "-subj", &subject]);
    openssl(dir, &req);
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "oldca.crt",
            "-CAkey",
            "oldca.key",
            "-CAcreateserial",
            "-days",
            days,
            "-out",
            &crt,
        ],
    );
}

/// The device's own metrics report over mTLS (curl with its certificate and key).
pub fn metrics_report(s: &TestServer, name: &str, body: &Value) -> String {
    let out = std::process::Command::new("curl")
        .args([
            "-sS",
            "-w",
            " %{http_code}",
            "--cacert",
            "chain.pem",
            "--cert",
        ])
        .arg(format!("{name}.crt"))
        .arg("--key")
        .arg(format!("{name}.key"))
        .args([
            "-H",
            "content-type: application/json",
            "-d",
            &body.to_string(),
        ])
        .arg(format!("{}/api/v1/device/metrics", s.api))
        .current_dir(s.dir.path())
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A compliance report's requirement, by id.
pub fn requirement<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["requirements"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("no requirement {id}"))
}

pub fn check<'a>(requirement: &'a Value, id: &str) -> &'a Value {
    requirement["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == id)
        .unwrap_or_else(|| panic!("no check {id}"))
}

pub fn failing(check: &Value) -> Vec<(String, String)> {
    check["failures"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["status"] == "fail")
        .map(|f| {
            (
                f["device"].as_str().unwrap().to_owned(),
                f["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}
