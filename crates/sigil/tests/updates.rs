//! Signed software updates: releases become targets of each product's TUF repository, served
//! over HTTPS and verified by an independent client (python-tuf's ngclient, from PyPI); root
//! and targets keys can stay off the server (`sigil release sign`); bad input changes nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Command;

use reqwest::StatusCode;
use serde_json::{Value, json};

use common::{Db, TestServer, json as json_out, ok, sigil};

/// The README's independent client, the very file it tells users to run.
const CLIENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/tuf_client.py");

/// Run python-tuf against `product`'s repository with `root` as the trusted root; the
/// downloaded file's content, or the client's error line.
fn python_tuf(
    s: &TestServer,
    product: &str,
    root: &[u8],
    target: &str,
    work: &Path,
) -> Result<Vec<u8>, String> {
    let meta = work.join("metadata");
    let out = work.join("downloads");
    std::fs::create_dir_all(&meta).unwrap();
    std::fs::create_dir_all(&out).unwrap();
    if !meta.join("root.json").exists() {
        std::fs::write(meta.join("root.json"), root).unwrap();
    }
    let run = Command::new("python3")
        .arg(CLIENT)
        .arg(format!("{}/tuf/{product}/metadata/", s.api))
        .arg(format!("{}/tuf/{product}/targets/", s.api))
        .arg(s.data_dir().join("ca/root.crt"))
        .arg(&meta)
        .arg(target)
        .arg(&out)
        .output()
        .expect("python3 with tuf installed (.ci/run installs it)");
    let stdout = String::from_utf8_lossy(&run.stdout).trim().to_owned();
    if run.status.success() {
        Ok(std::fs::read(stdout).unwrap())
    } else {
        Err(format!("{stdout} {}", String::from_utf8_lossy(&run.stderr)))
    }
}

/// Run the CLI as `sigil` does, typing `input` at its prompt.
fn answering(s: &TestServer, args: &[&str], input: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = common::sigil_command(s, args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

async fn raw_get(s: &TestServer, path: &str) -> (StatusCode, Vec<u8>) {
    let r = s.http.get(format!("{}{path}", s.api)).send().await.unwrap();
    (r.status(), r.bytes().await.unwrap().to_vec())
}

async fn entries(s: &TestServer, action: &str) -> Vec<Value> {
    let (_, page) = s
        .get(&format!("/api/v1/audit/entries?action={action}"))
        .await;
    page["items"].as_array().cloned().unwrap_or_default()
}

async fn a_python_tuf_client_downloads_signed_releases(db: Db) {
    let Some(s) = TestServer::start(db).await else {
        return;
    };
    let work = s.dir.path();
    let product = s.create_product("Meter").await;
    let firmware = work.join("meter-1.0.0.bin");
    std::fs::write(&firmware, b"firmware one".repeat(1000)).unwrap();
    let release = json_out(sigil(
        &s,
        &[
            "release",
            "upload",
            "--product",
            &product,
            "--version",
            "1.0.0",
            "--file",
            firmware.to_str().unwrap(),
            "--name",
            "meter.bin",
            "--security",
            "--notes",
            "first",
            "--json",
        ],
    ));
    assert_eq!(release["state"], "published", "{release}");
    assert_eq!(release["target_name"], "1.0.0/meter.bin");
    assert_eq!(release["length"], 12_000);

    // The trusted root, as a device would be given it.
    let (st, root) = raw_get(&s, &format!("/tuf/{product}/metadata/1.root.json")).await;
    assert_eq!(st, StatusCode::OK);
    // The README fetches it, and looks at the timestamp, with curl.
    let ca = s.data_dir().join("ca/root.crt");
    let curl = |path: &str| {
        let out = Command::new("curl")
            .args(["-s", "--fail", "--cacert"])
            .arg(&ca)
            .arg(format!("{}{path}", s.api))
            .output()
            .unwrap();
        assert!(out.status.success(), "curl {path}: {out:?}");
        out.stdout
    };
    assert_eq!(curl(&format!("/tuf/{product}/metadata/1.root.json")), root);
    let ts: Value =
        serde_json::from_slice(&curl(&format!("/tuf/{product}/metadata/timestamp.json"))).unwrap();
    assert_eq!(ts["signed"]["_type"], "timestamp");
    let got = python_tuf(&s, &product, &root, "1.0.0/meter.bin", &work.join("client")).unwrap();
    assert_eq!(got, std::fs::read(&firmware).unwrap());

    // A second release: the same client (same trusted state) refreshes and finds it.
    let second = work.join("two.bin");
    std::fs::write(&second, b"firmware two").unwrap();
    ok(sigil(
        &s,
        &[
            "release",
            "upload",
            "--product",
            &product,
            "--version",
            "1.1.0",
            "--file",
            second.to_str().unwrap(),
        ],
    ));
    let got = python_tuf(&s, &product, &root, "1.1.0/two.bin", &work.join("client")).unwrap();
    assert_eq!(got, b"firmware two");
    let list = json_out(sigil(
        &s,
        &["release", "list", "--product", &product, "--json"],
    ));
    let versions: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["version"].as_str().unwrap())
        .collect();
    assert_eq!(versions, ["1.0.0", "1.1.0"]);

    // The client checks what it downloads: content changed on the server's disk is refused.
    let sha = release["sha256"].as_str().unwrap();
    let stored = s.data_dir().join("artefacts/sha256").join(sha);
    std::fs::write(
        &stored,
        b"firmware one"
            .repeat(999)
            .iter()
            .chain(b"evil!evil!ev")
            .copied()
            .collect::<Vec<u8>>(),
    )
    .unwrap();
    let e = python_tuf(&s, &product, &root, "1.0.0/meter.bin", &work.join("fresh")).unwrap_err();
    assert!(e.contains("LengthOrHashMismatchError"), "{e}");

    // Versioned metadata is immutable and cacheable; timestamp.json is not.
    let r = s
        .http
        .get(format!("{}/tuf/{product}/metadata/timestamp.json", s.api))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["cache-control"], "no-cache");
    let ts: Value = r.json().await.unwrap();
    assert_eq!(ts["signed"]["_type"], "timestamp");
    assert!(ts["signed"]["version"].as_u64().unwrap() >= 2, "{ts}");
    for (path, status) in [
        (
            format!("/tuf/{product}/metadata/99.root.json"),
            StatusCode::NOT_FOUND,
        ),
        (
            format!("/tuf/{product}/metadata/..%2Fsigil.db"),
            StatusCode::NOT_FOUND,
        ),
        (
            format!("/tuf/{product}/targets/../../ca/root.key"),
            StatusCode::NOT_FOUND,
        ),
        (
            format!("/tuf/{product}/targets/{sha}.meter.bin"),
            StatusCode::NOT_FOUND,
        ),
        (
            "/tuf/not-a-product/metadata/1.root.json".to_owned(),
            StatusCode::NOT_FOUND,
        ),
    ] {
        assert_eq!(raw_get(&s, &path).await.0, status, "{path}");
    }
    assert_eq!(entries(&s, "update.channel_created").await.len(), 1);
    assert_eq!(entries(&s, "artefact.uploaded").await.len(), 2);
    let created = entries(&s, "release.created").await;
    assert_eq!(created.len(), 2);
    assert_eq!(created[0]["details"]["security"], true, "{}", created[0]);
    s.shutdown().await;
}
both_backends!(a_python_tuf_client_downloads_signed_releases);

/// A targets key kept off the server: releases wait for `sigil release sign`, which only
/// that key can complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_targets_key_signs_releases() {
    let s = TestServer::start(Db::Sqlite).await.unwrap();
    let work = s.dir.path();
    let product = s.create_product("Valve").await;
    let key = work.join("targets.pem");
    let out = ok(sigil(
        &s,
        &["release", "keygen", "--out", key.to_str().unwrap()],
    ));
    assert!(out.contains("key id"), "{out}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // keygen never overwrites a key.
    assert!(
        !sigil(&s, &["release", "keygen", "--out", key.to_str().unwrap()])
            .status
            .success()
    );
    let public = work.join("targets.pub.json");
    let channel = json_out(sigil(
        &s,
        &[
            "release",
            "init",
            "--product",
            &product,
            "--targets-key",
            public.to_str().unwrap(),
            "--json",
        ],
    ));
    let roles = channel["roles"].as_array().unwrap();
    let targets_role = roles.iter().find(|r| r["role"] == "targets").unwrap();
    assert_eq!(targets_role["online"], false, "{channel}");
    assert_eq!(channel["pending"][0]["role"], "targets");

    let fw = work.join("valve.bin");
    std::fs::write(&fw, b"valve firmware").unwrap();
    let release = json_out(sigil(
        &s,
        &[
            "release",
            "upload",
            "--product",
            &product,
            "--version",
            "2.0.0",
            "--file",
            fw.to_str().unwrap(),
            "--json",
        ],
    ));
    assert_eq!(release["state"], "awaiting-signature");
    // Nothing is served before the targets are signed.
    assert_eq!(
        raw_get(&s, &format!("/tuf/{product}/metadata/timestamp.json"))
            .await
            .0,
        StatusCode::NOT_FOUND
    );

    // Another key cannot sign, and a forged signature is refused without changing anything.
    let other = work.join("other.pem");
    ok(sigil(
        &s,
        &["release", "keygen", "--out", other.to_str().unwrap()],
    ));
    let e = sigil(
        &s,
        &[
            "release",
            "sign",
            "--product",
            &product,
            "--key",
            other.to_str().unwrap(),
        ],
    );
    assert!(
        String::from_utf8_lossy(&e.stderr).contains("awaits the signature"),
        "{e:?}"
    );
    let keyid = targets_role["keyids"][0].as_str().unwrap();
    let (st, body) = s.post(&format!("/api/v1/products/{product}/update-channel/signatures"),
        json!({"signatures": [{"role": "targets", "version": 1, "keyid": keyid, "sig": "00".repeat(64)}]})).await;
    assert_eq!(
        (st, body["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid-signature")),
        "{body}"
    );
    let (st, body) = s
        .post(
            &format!("/api/v1/products/{product}/update-channel/signatures"),
            json!({"signatures": [{"role": "targets", "version": 7, "keyid": keyid, "sig": "00"}]}),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT, "{body}");
    assert_eq!(entries(&s, "update.metadata_signed").await.len(), 0);

    // Without an answer nothing is signed; the operator reads what it signs and says yes.
    let sign_args = [
        "release",
        "sign",
        "--product",
        &product,
        "--key",
        key.to_str().unwrap(),
    ];
    let unanswered = sigil(&s, &sign_args);
    assert!(
        String::from_utf8_lossy(&unanswered.stderr).contains("not signed"),
        "{unanswered:?}"
    );
    assert_eq!(entries(&s, "update.metadata_signed").await.len(), 0);
    let out = ok(answering(&s, &sign_args, "y\n"));
    assert!(
        out.contains("2.0.0/valve.bin"),
        "the signer is shown what it signs: {out}"
    );
    let list = json_out(sigil(
        &s,
        &["release", "list", "--product", &product, "--json"],
    ));
    assert_eq!(list["items"][0]["state"], "published");
    let (_, root) = raw_get(&s, &format!("/tuf/{product}/metadata/1.root.json")).await;
    let got = python_tuf(&s, &product, &root, "2.0.0/valve.bin", &work.join("client")).unwrap();
    assert_eq!(got, b"valve firmware");
    assert_eq!(entries(&s, "update.metadata_signed").await.len(), 1);
    s.shutdown().await;
}

/// Uploads and releases that are malformed, too large or conflicting are refused with a
/// specific error, and leave no file, row or metadata behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_releases_change_nothing() {
    let s = TestServer::start_with(Db::Sqlite, |c| c.updates.max_artefact_bytes = 1024)
        .await
        .unwrap();
    let product = s.create_product("Lamp").await;
    let upload = |body: Vec<u8>, content_type: &'static str| {
        let req = s
            .http
            .post(format!("{}/api/v1/artefacts", s.api))
            .bearer_auth(&s.token)
            .header("content-type", content_type)
            .body(body);
        async move { common::split(req.send().await.unwrap()).await }
    };
    let (st, e) = upload(vec![1; 10], "application/json").await;
    assert_eq!(st, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{e}");
    let (st, e) = upload(vec![], "application/octet-stream").await;
    assert_eq!(
        (st, e["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("empty-artefact")),
        "{e}"
    );
    let (st, e) = upload(vec![7; 1025], "application/octet-stream").await;
    assert_eq!(
        (st, e["code"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("artefact-too-large")),
        "{e}"
    );
    // Streamed without a length, it is cut off at the limit all the same.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = (0..4).map(|_| Ok(vec![9u8; 400])).collect();
    let r = s
        .http
        .post(format!("{}/api/v1/artefacts", s.api))
        .bearer_auth(&s.token)
        .header("content-type", "application/octet-stream")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let stored = |sub: &str| {
        std::fs::read_dir(s.data_dir().join("artefacts").join(sub))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    assert_eq!((stored("sha256"), stored("incoming")), (0, 0));
    assert_eq!(s.count("artefacts").await, 0);

    let (st, a) = upload(b"lamp firmware".to_vec(), "application/octet-stream").await;
    assert_eq!(st, StatusCode::CREATED, "{a}");
    let sha = a["sha256"].as_str().unwrap();
    let path = format!("/api/v1/products/{product}/releases");
    let release = |version: &str, file: &str, artefact: &str| {
        s.post(
            &path,
            json!({"version": version, "artefact_sha256": artefact, "file_name": file}),
        )
    };
    assert_eq!(
        release("1.0.0", "lamp.bin", sha).await.0,
        StatusCode::CREATED
    );
    for (version, file, artefact, status, code) in [
        (
            "1.0",
            "lamp.bin",
            sha,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-version",
        ),
        (
            "v2",
            "lamp.bin",
            sha,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-version",
        ),
        (
            "1.0.0+rebuild",
            "lamp.bin",
            sha,
            StatusCode::CONFLICT,
            "release-exists",
        ),
        (
            "2.0.0",
            "../lamp.bin",
            sha,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-file-name",
        ),
        (
            "2.0.0",
            "dir/lamp.bin",
            sha,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-file-name",
        ),
        (
            "2.0.0",
            "lamp bin",
            sha,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-file-name",
        ),
        (
            "2.0.0",
            "lamp.bin",
            &"ab".repeat(32),
            StatusCode::NOT_FOUND,
            "unknown-artefact",
        ),
        (
            "2.0.0",
            "lamp.bin",
            "../../ca/root.key",
            StatusCode::NOT_FOUND,
            "unknown-artefact",
        ),
    ] {
        let (st, e) = release(version, file, artefact).await;
        assert_eq!(
            (st, e["code"].as_str()),
            (status, Some(code)),
            "{version} {file}: {e}"
        );
    }
    let (st, e) = s
        .post(
            "/api/v1/products/0190aaaa-0000-7000-8000-000000000000/releases",
            json!({"version": "1.0.0", "artefact_sha256": sha, "file_name": "x.bin"}),
        )
        .await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{e}");
    assert_eq!(s.count("releases").await, 1);
    assert_eq!(
        s.count("tuf_metadata").await,
        4 + 3,
        "channel (4) and one release (targets, snapshot, timestamp)"
    );
    // A second channel for the product, or offline keys that are not keys, are refused.
    let (st, _) = s
        .post(
            &format!("/api/v1/products/{product}/update-channel"),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT);
    let other = s.create_product("Other").await;
    for body in [
        json!({"targets_keys": [{"keytype": "rsa"}]}),
        json!({"targets_threshold": 2}),
        json!({"version_scheme": "calver"}),
    ] {
        let (st, e) = s
            .post(
                &format!("/api/v1/products/{other}/update-channel"),
                body.clone(),
            )
            .await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {e}");
    }
    let key = sigil_update::tuf::PublicKey::ed25519(&[1; 32]);
    let (st, e) = s
        .post(
            &format!("/api/v1/products/{other}/update-channel"),
            json!({"targets_keys": [key], "targets_threshold": 2}),
        )
        .await;
    assert_eq!(
        (st, e["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid-keys")),
        "{e}"
    );
    assert_eq!(s.count("update_channels").await, 1);
    s.shutdown().await;
}

/// The update checks read the repository: a product whose channel is complete and fresh
/// passes `product.update-channel`, one awaiting offline signatures fails it; the newest
/// published release is what `device.firmware-current` compares against.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compliance_reads_the_update_evidence() {
    let s = TestServer::start(Db::Sqlite).await.unwrap();
    let work = s.dir.path();
    let online = s.create_product("Online").await;
    let offline = s.create_product("Offline").await;
    let fw = work.join("fw.bin");
    std::fs::write(&fw, b"fw").unwrap();
    ok(sigil(
        &s,
        &[
            "release",
            "upload",
            "--product",
            &online,
            "--version",
            "3.1.0",
            "--file",
            fw.to_str().unwrap(),
        ],
    ));
    let key = work.join("t.pem");
    ok(sigil(
        &s,
        &["release", "keygen", "--out", key.to_str().unwrap()],
    ));
    ok(sigil(
        &s,
        &[
            "release",
            "init",
            "--product",
            &offline,
            "--targets-key",
            work.join("t.pub.json").to_str().unwrap(),
        ],
    ));

    let (_, report) = s.get("/api/v1/compliance/eu-cra").await;
    let channel = check_of(&report, "II.7", "product.update-channel");
    assert_eq!(channel["status"], "fail", "{channel}");
    let failures = channel["failures"].as_array().unwrap();
    assert_eq!(
        failures.len(),
        1,
        "only the product awaiting signatures fails: {channel}"
    );
    assert!(
        failures[0]["reason"].as_str().unwrap().contains("targets"),
        "{channel}"
    );

    // The online product's device runs the newest release: current; an older one: not.
    let device = s.create_device(&online, "SN-1").await;
    let (st, _) = s
        .post(
            &format!("/api/v1/devices/{device}/certificates"),
            json!({"csr": common::fresh_csr_pem()}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    assert_eq!(
        s.post(&format!("/api/v1/devices/{device}/activate"), json!({}))
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(firmware_check(&s, &device, "3.1.0").await["status"], "pass");
    let old = firmware_check(&s, &device, "3.0.0").await;
    assert_eq!(old["status"], "fail", "{old}");
    assert!(old["reason"].as_str().unwrap().contains("3.1.0"), "{old}");

    // Security updates apart from features (CRA Part II (2)): a security patch release
    // passes; a security release that is a new minor version bundles features and fails.
    let separate = |report: &Value| check_of(report, "II.2", "product.security-updates-separate");
    let upload = |version: &str| {
        std::fs::write(&fw, format!("fw {version}")).unwrap();
        ok(sigil(
            &s,
            &[
                "release",
                "upload",
                "--product",
                &online,
                "--version",
                version,
                "--file",
                fw.to_str().unwrap(),
                "--security",
            ],
        ));
    };
    upload("3.1.1");
    let (_, report) = s.get("/api/v1/compliance/eu-cra").await;
    assert_eq!(separate(&report)["status"], "pass", "{}", separate(&report));
    upload("3.2.0");
    let (_, report) = s.get("/api/v1/compliance/eu-cra").await;
    let check = separate(&report);
    assert_eq!(check["status"], "fail", "{check}");
    assert!(
        check["failures"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("3.2.0 (over 3.1.1)"),
        "{check}"
    );
    s.shutdown().await;
}

fn check_of(report: &Value, requirement: &str, check: &str) -> Value {
    let r = report["requirements"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == requirement)
        .unwrap();
    r["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == check)
        .unwrap()
        .clone()
}

/// Record a posture report saying `device` runs `version`; its `device.firmware-current`.
async fn firmware_check(s: &TestServer, device: &str, version: &str) -> Value {
    let posture =
        sigil_domain::Posture::parse(json!({"firmware_version": version}).to_string().as_bytes())
            .unwrap();
    let actor = sigil_audit::Actor::device(device);
    let now = s.handle().authority().now();
    s.store()
        .record_posture(&actor, device.parse().unwrap(), &posture, now)
        .await
        .unwrap();
    let (_, report) = s
        .get(&format!("/api/v1/compliance/eu-cra/devices/{device}"))
        .await;
    check_of(&report, "I.2.c", "device.firmware-current")
}

/// The root key moves off the server: root v2 is cross-signed by the old (online) root key and
/// the new offline one (`release sign`); a client that pinned root v1 walks to v2 and keeps
/// downloading; a rotation a forged signature cannot complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_root_rotation_is_cross_signed() {
    let s = TestServer::start(Db::Sqlite).await.unwrap();
    let work = s.dir.path();
    let product = s.create_product("Gateway").await;
    let fw = work.join("gw.bin");
    std::fs::write(&fw, b"gateway 1").unwrap();
    ok(sigil(
        &s,
        &[
            "release",
            "upload",
            "--product",
            &product,
            "--version",
            "1.0.0",
            "--file",
            fw.to_str().unwrap(),
        ],
    ));
    let (_, root_v1) = raw_get(&s, &format!("/tuf/{product}/metadata/1.root.json")).await;

    let key = work.join("root2.pem");
    ok(sigil(
        &s,
        &["release", "keygen", "--out", key.to_str().unwrap()],
    ));
    let channel = json_out(sigil(
        &s,
        &[
            "release",
            "rotate",
            "--product",
            &product,
            "--role",
            "root",
            "--key",
            work.join("root2.pub.json").to_str().unwrap(),
            "--json",
        ],
    ));
    let pending = &channel["pending"][0];
    assert_eq!(
        (pending["role"].as_str(), pending["version"].as_u64()),
        (Some("root"), Some(2)),
        "{channel}"
    );
    assert_eq!(
        raw_get(&s, &format!("/tuf/{product}/metadata/2.root.json"))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    // Another rotation cannot start while this one waits.
    let (st, _) = s
        .post(
            &format!("/api/v1/products/{product}/update-channel/rotations"),
            json!({"rotations": [{"role": "timestamp"}]}),
        )
        .await;
    assert_eq!(st, StatusCode::CONFLICT);

    let out = ok(answering(
        &s,
        &[
            "release",
            "sign",
            "--product",
            &product,
            "--key",
            key.to_str().unwrap(),
        ],
        "y\n",
    ));
    assert!(out.contains("root version 2"), "{out}");
    assert_eq!(
        raw_get(&s, &format!("/tuf/{product}/metadata/2.root.json"))
            .await
            .0,
        StatusCode::OK
    );
    let status = json_out(sigil(
        &s,
        &["release", "status", "--product", &product, "--json"],
    ));
    let root_role = status["roles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["role"] == "root")
        .unwrap();
    assert_eq!(root_role["online"], false, "{status}");

    // A client pinned to root v1 follows the chain and still verifies new releases.
    std::fs::write(&fw, b"gateway 2").unwrap();
    ok(sigil(
        &s,
        &[
            "release",
            "upload",
            "--product",
            &product,
            "--version",
            "1.1.0",
            "--file",
            fw.to_str().unwrap(),
        ],
    ));
    let got = python_tuf(&s, &product, &root_v1, "1.1.0/gw.bin", &work.join("client")).unwrap();
    assert_eq!(got, b"gateway 2");
    assert_eq!(entries(&s, "update.keys_rotated").await.len(), 1);
    // Rotating the timestamp key now needs the offline root key's signature (root v3); signed,
    // the client follows.
    let channel = json_out(sigil(
        &s,
        &[
            "release",
            "rotate",
            "--product",
            &product,
            "--role",
            "timestamp",
            "--json",
        ],
    ));
    assert_eq!(channel["pending"][0]["version"], 3, "{channel}");
    ok(answering(
        &s,
        &[
            "release",
            "sign",
            "--product",
            &product,
            "--key",
            key.to_str().unwrap(),
        ],
        "y\n",
    ));
    assert_eq!(
        raw_get(&s, &format!("/tuf/{product}/metadata/3.root.json"))
            .await
            .0,
        StatusCode::OK
    );
    let got = python_tuf(&s, &product, &root_v1, "1.1.0/gw.bin", &work.join("client")).unwrap();
    assert_eq!(got, b"gateway 2");
    s.shutdown().await;
}

/// Publishing is not trusting: an operator's token publishes releases to an existing channel,
/// but a product's first release (which would create its update trust root) needs
/// `update.trust`. Keys that differ only in letter case are one key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creating_an_update_trust_root_needs_update_trust() {
    let s = TestServer::start(Db::Sqlite).await.unwrap();
    let product = s.create_product("Sensor").await;
    let (st, t) = s.post("/api/v1/tokens", json!({"name": "ci", "role": "operator", "scopes": ["inventory"], "expires_in_seconds": 600})).await;
    assert_eq!(st, StatusCode::CREATED, "{t}");
    let token = t["token"].as_str().unwrap().to_owned();
    let r = s
        .http
        .post(format!("{}/api/v1/artefacts", s.api))
        .bearer_auth(&token)
        .header("content-type", "application/octet-stream")
        .body(b"sensor fw".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let sha = r.json::<Value>().await.unwrap()["sha256"]
        .as_str()
        .unwrap()
        .to_owned();
    let release = json!({"version": "1.0.0", "artefact_sha256": sha, "file_name": "s.bin"});
    let path = format!("/api/v1/products/{product}/releases");
    let (st, e) = common::operators::bearer(&s, &token, "POST", &path, release.clone()).await;
    assert_eq!(
        (st, e["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("channel-needs-trust")),
        "{e}"
    );
    assert_eq!(s.count("update_channels").await, 0);
    let (st, _) = s
        .post(
            &format!("/api/v1/products/{product}/update-channel"),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let (st, e) = common::operators::bearer(&s, &token, "POST", &path, release).await;
    assert_eq!(st, StatusCode::CREATED, "{e}");

    let other = s.create_product("Other").await;
    let lower = "ab".repeat(32);
    let key = |public: &str| json!({"keytype": "ed25519", "scheme": "ed25519", "keyval": {"public": public}});
    let (st, e) = s.post(&format!("/api/v1/products/{other}/update-channel"),
        json!({"targets_keys": [key(&lower), key(&lower.to_uppercase())], "targets_threshold": 2})).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert_eq!(s.count("update_channels").await, 1);
    s.shutdown().await;
}

/// `sigil serve` takes the update settings from its flags and refuses nonsense before starting.
#[test]
fn serve_checks_the_update_settings() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for (args, says) in [
        (["--update-timestamp-hours", "0"], "update-timestamp-hours"),
        (["--max-artefact-mib", "0"], "max-artefact-mib"),
        (
            ["--update-timestamp-hours", "169"],
            "update-timestamp-hours",
        ),
    ] {
        let e = common::SpawnedServer::spawn_with(&data, None, &[], &args)
            .err()
            .expect("refused");
        assert!(e.contains(says), "{args:?}: {e}");
    }
    let s = common::SpawnedServer::spawn_with(
        &data,
        None,
        &[],
        &["--update-timestamp-hours", "2", "--max-artefact-mib", "1"],
    )
    .unwrap();
    let token = std::fs::read_to_string(data.join("admin.token")).unwrap();
    let http = common::root_client(&data);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let upload = |size: usize| {
            http.post(format!("{}/api/v1/artefacts", s.api()))
                .bearer_auth(token.trim())
                .header("content-type", "application/octet-stream")
                .body(vec![1u8; size])
                .send()
        };
        assert_eq!(
            upload(2 << 20).await.unwrap().status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        let sha = upload(1000).await.unwrap().json::<Value>().await.unwrap()["sha256"]
            .as_str()
            .unwrap()
            .to_owned();
        let product = http
            .post(format!("{}/api/v1/products", s.api()))
            .bearer_auth(token.trim())
            .json(&json!({"name": "P", "manufacturer": "M", "support_end": "2031-12-31"}))
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let r = http
            .post(format!("{}/api/v1/products/{product}/releases", s.api()))
            .bearer_auth(token.trim())
            .json(&json!({"version": "1.0.0", "artefact_sha256": sha, "file_name": "f.bin"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        let ts: Value = http
            .get(format!("{}/tuf/{product}/metadata/timestamp.json", s.api()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let expires = time::PrimitiveDateTime::parse(
            ts["signed"]["expires"].as_str().unwrap(),
            time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z"),
        )
        .unwrap()
        .assume_utc();
        let left = expires - time::OffsetDateTime::now_utc();
        assert!(
            left <= time::Duration::hours(2) && left > time::Duration::minutes(110),
            "{left}"
        );
    });
    s.kill9();
}
