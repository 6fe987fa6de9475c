//! Coordinated disclosure with the README's commands against a real server: policies
//! published as security.txt (read back by curl and checked by an independent RFC 9116
//! validator, DigitalTrustCenter's `sectxt`), a stranger's report through the public intake
//! with its receipt, the deadlines to acknowledge and decide (and the compliance check that
//! watches them, on a clock moved forward), a report accepted as an advisory that reaches the
//! devices' findings with its clock from receipt, another rejected, one reported exploited
//! opening an Article 14 case; who may do what, bad input refused with nothing changed, and
//! the intake's limits.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use common::{Db, TestServer, json as json_out, ok, sigil, upload_python_sbom};

fn at(v: &Value) -> OffsetDateTime {
    OffsetDateTime::parse(v.as_str().unwrap_or_else(|| panic!("{v}")), &Rfc3339).unwrap()
}

fn refused(out: Output, words: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains(words),
        "{words:?} not in: {err}"
    );
}

/// `curl` as the README runs it, trusting the server's root; the status code last.
fn curl(s: &TestServer, path: &str, args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "--cacert"])
        .arg(s.data_dir().join("ca/root.crt"))
        .args(["-w", "\n%{http_code}"])
        .arg(format!("{}{path}", s.api))
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.parse().unwrap(), body.to_owned())
}

fn report(s: &TestServer, body: &Value) -> (u16, Value) {
    let (code, text) = curl(
        s,
        "/disclosure/reports",
        &[
            "-H",
            "Content-Type: application/json",
            "-d",
            &body.to_string(),
        ],
    );
    (code, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn status(s: &TestServer, receipt: &str) -> (u16, Value) {
    let (code, text) = curl(
        s,
        "/disclosure/reports/status",
        &["-H", &format!("Authorization: Bearer {receipt}")],
    );
    (code, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// The independent validator's verdict on a file the server publishes.
fn sectxt(s: &TestServer, path: Option<&str>) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/check_security_txt.py");
    let mut cmd = Command::new("python3");
    cmd.arg(script)
        .arg(&s.api)
        .env("REQUESTS_CA_BUNDLE", s.data_dir().join("ca/root.crt"));
    if let Some(p) = path {
        cmd.arg(p);
    }
    serde_json::from_str(&ok(cmd.output().unwrap())).unwrap()
}

/// A check's status in CRA Annex I Part II (5), and the first failure's reason.
async fn check(s: &TestServer, id: &str) -> (String, String) {
    let (st, cra) = s.get("/api/v1/compliance/eu-cra").await;
    assert_eq!(st, 200, "{cra}");
    let c = cra["requirements"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == "II.5")
        .and_then(|r| {
            r["checks"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["check"] == id)
        })
        .unwrap_or_else(|| panic!("{id}: {cra}"))
        .clone();
    let reason = c["failures"][0]["reason"].as_str().unwrap_or("").to_owned();
    (c["status"].as_str().unwrap().to_owned(), reason)
}

/// A product with an SBOM (cyclonedx-py over the pinned Python environment: jinja2 3.1.2)
/// and two devices on that firmware.
async fn gateway(s: &TestServer) -> (String, Vec<String>) {
    let product = s.create_product("Gateway").await;
    let mut devices = Vec::new();
    for serial in ["GW-1", "GW-2"] {
        let (st, d) = s
            .post(
                "/api/v1/devices",
                json!({"product_id": product, "serial_number": serial, "firmware_version": "2.0.0"}),
            )
            .await;
        assert_eq!(st, 201, "{d}");
        devices.push(d["id"].as_str().unwrap().to_owned());
    }
    upload_python_sbom(s, &product, "2.0.0", ("JSON", "1.6"));
    (product, devices)
}

async fn disclosure_follows_the_readme(db: Db) {
    let offset = Arc::new(AtomicI64::new(0));
    let clock: sigil_server::Clock = {
        let offset = offset.clone();
        Arc::new(move || {
            OffsetDateTime::now_utc() + time::Duration::seconds(offset.load(Ordering::SeqCst))
        })
    };
    let Some(s) = TestServer::start_with_clock(
        db,
        |c| c.vuln_review = std::time::Duration::from_millis(100),
        clock,
    )
    .await
    else {
        return;
    };
    let (product, devices) = gateway(&s).await;
    let first = json!({"product": product, "summary": "jinja2 sandbox escape in the web UI",
        "details": "The template preview renders user input with the sandbox off.",
        "affected": "firmware 2.0.0", "reporter": "mailto:finder@example.org", "exploited": true});

    // Nothing published yet: no file, no public VEX, and the intake takes no report for the
    // product.
    assert_eq!(curl(&s, "/.well-known/security.txt", &[]).0, 404);
    assert_eq!(
        curl(&s, &format!("/disclosure/{product}/vex.json"), &[]).0,
        404
    );
    let (code, r) = report(&s, &first);
    assert_eq!(
        (code, r["code"].as_str()),
        (404, Some("no-disclosure-policy"))
    );
    // Without a policy or an attestation, nothing decides it.
    let (status_now, reason) = check(&s, "product.disclosure-published").await;
    assert_eq!(status_now, "unknown", "{reason}");
    assert!(reason.contains("no policy published in Sigil"), "{reason}");

    // The README's policies.
    ok(sigil(
        &s,
        &[
            "disclosure",
            "set-policy",
            "--contact",
            "mailto:psirt@example.com",
            "--contact",
            "https://example.com/report",
            "--expires",
            "2027-06-30T00:00:00Z",
            "--policy",
            "https://example.com/cvd",
            "--language",
            "en",
        ],
    ));
    ok(sigil(
        &s,
        &[
            "disclosure",
            "set-policy",
            "--product",
            &product,
            "--contact",
            "mailto:gateway-psirt@example.com",
            "--expires",
            "2027-06-30T00:00:00Z",
            "--acknowledge-days",
            "3",
            "--triage-days",
            "10",
        ],
    ));
    let (code, text) = curl(&s, "/.well-known/security.txt", &[]);
    assert_eq!(code, 200);
    assert!(
        text.contains("Contact: mailto:psirt@example.com\nContact: https://example.com/report\nExpires: 2027-06-30T00:00:00Z\n"),
        "{text}"
    );
    // The independent validator: the RFC 9116 location (HTTPS, text/plain, UTF-8) and fields.
    let v = sectxt(&s, None);
    assert_eq!(v["valid"], true, "{v}");
    assert_eq!(
        v["fields"]["policy"],
        json!(["https://example.com/cvd"]),
        "{v}"
    );
    let v = sectxt(&s, Some(&format!("/disclosure/{product}/security.txt")));
    assert_eq!(v["valid"], true, "{v}");
    assert_eq!(v["content_type"], "text/plain; charset=utf-8");
    assert_eq!(
        v["fields"]["contact"],
        json!(["mailto:gateway-psirt@example.com"])
    );
    let (status_now, _) = check(&s, "product.disclosure-published").await;
    assert_eq!(status_now, "pass");
    // With a policy, the product's VEX is public too (Part II (4)): OpenVEX, as exported.
    let (code, vex) = curl(&s, &format!("/disclosure/{product}/vex.json"), &[]);
    assert_eq!(code, 200, "{vex}");
    let vex: Value = serde_json::from_str(&vex).unwrap();
    assert!(
        vex["@context"]
            .as_str()
            .unwrap()
            .starts_with("https://openvex.dev/ns"),
        "{vex}"
    );
    // The organisation's policy alone publishes no product's VEX.
    let other = s.create_product("Other").await;
    assert_eq!(
        curl(&s, &format!("/disclosure/{other}/vex.json"), &[]).0,
        404
    );
    assert_eq!(
        curl(
            &s,
            "/disclosure/00000000-0000-7000-8000-000000000000/vex.json",
            &[]
        )
        .0,
        404
    );

    // A stranger reports; the receipt tells them where the report stands.
    let (code, receipt) = report(&s, &first);
    assert_eq!(code, 201, "{receipt}");
    let token = receipt["receipt"].as_str().unwrap().to_owned();
    assert_eq!(
        at(&receipt["acknowledge_by"]) - at(&receipt["received_at"]),
        time::Duration::days(3)
    );
    let (code, st) = status(&s, &token);
    assert_eq!((code, st["state"].as_str()), (200, Some("received")));
    assert!(st.get("details").is_none(), "the status shows no content");
    assert_eq!(status(&s, "sigil-report_wrong").0, 404);
    assert_eq!(curl(&s, "/disclosure/reports/status", &[]).0, 401);

    // The operators' side, as the README runs it.
    let list = json_out(sigil(&s, &["disclosure", "reports", "--json"]));
    let id = list["items"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(list["items"][0]["reporter"], "mailto:finder@example.org");
    assert_eq!(list["items"][0]["channel"], "public");
    ok(sigil(&s, &["disclosure", "acknowledge", &id]));
    assert_eq!(status(&s, &token).1["state"], "acknowledged");
    refused(
        sigil(&s, &["disclosure", "acknowledge", &id]),
        "already acknowledged",
    );
    let (status_now, reason) = check(&s, "product.disclosure-timely").await;
    assert_eq!(status_now, "pass", "{reason}");

    // A second report nobody acknowledges: four days on, the check fails naming it.
    let (code, second) = report(
        &s,
        &json!({"product": product, "summary": "telnet open", "details": "port 23"}),
    );
    assert_eq!(code, 201);
    offset.store(4 * 86_400, Ordering::SeqCst);
    let (status_now, reason) = check(&s, "product.disclosure-timely").await;
    assert_eq!(status_now, "fail");
    assert!(
        reason.contains(&format!(
            "report {} not acknowledged in time",
            second["id"].as_str().unwrap()
        )),
        "{reason}"
    );
    let other = second["id"].as_str().unwrap().to_owned();
    ok(sigil(
        &s,
        &[
            "disclosure",
            "reject",
            &other,
            "--reason",
            "duplicate of CVE-2026-40001",
        ],
    ));
    let (_, st) = status(&s, second["receipt"].as_str().unwrap());
    assert_eq!(
        (st["state"].as_str(), st["decision"].as_str()),
        (Some("rejected"), Some("duplicate of CVE-2026-40001"))
    );

    // Accepted: an advisory matched against the SBOM, in both devices' findings, its clock
    // running from the report's receipt (four days ago), fixed by jinja2 3.1.3.
    let accepted = json_out(sigil(
        &s,
        &[
            "disclosure",
            "accept",
            &id,
            "--component",
            "pkg:pypi/jinja2",
            "--introduced",
            "0",
            "--fixed",
            "3.1.3",
            "--cvss",
            "CVSS:3.1/AV:N/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:N",
            "--alias",
            "CVE-2026-40001",
            "--json",
        ],
    ));
    let advisory = accepted["report"]["advisory_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(advisory.starts_with("SIGIL-"), "{accepted}");
    // The reporter said exploited; the operator did not: no regulatory case on a claim.
    assert!(accepted["case"].is_null(), "{accepted}");
    assert_eq!(status(&s, &token).1["advisory_id"], advisory.as_str());
    for device in &devices {
        let found = json_out(sigil(&s, &["vuln", "list", "--device", device, "--json"]));
        let f = found["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["vulnerability"] == "CVE-2026-40001")
            .unwrap_or_else(|| panic!("{found}"));
        assert_eq!(f["component"], "jinja2");
        assert_eq!(f["fixed"], "3.1.3");
        assert_eq!(f["severity"], "high");
        assert_eq!(at(&f["first_seen"]), at(&receipt["received_at"]));
        // High: 30 days from receipt.
        assert_eq!(
            at(&f["remediation_due"]) - at(&receipt["received_at"]),
            time::Duration::days(30)
        );
    }
    refused(
        sigil(&s, &["disclosure", "reject", &id, "--reason", "x"]),
        "already accepted",
    );

    // Reported exploited, entered by an operator, accepted with --exploited: a case opens.
    let details = s.dir.path().join("report.txt");
    std::fs::write(&details, "Seen in attacks on plant networks.\n").unwrap();
    let entered = json_out(sigil(
        &s,
        &[
            "disclosure",
            "enter",
            "--product",
            &product,
            "--summary",
            "reported by our CSIRT",
            "--details",
            details.to_str().unwrap(),
            "--cvss",
            "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H",
            "--json",
        ],
    ));
    assert_eq!(entered["channel"], "operator");
    let accepted = json_out(sigil(
        &s,
        &[
            "disclosure",
            "accept",
            entered["id"].as_str().unwrap(),
            "--component",
            "pkg:pypi/markupsafe",
            "--version",
            "2.1.3",
            "--exploited",
            "--json",
        ],
    ));
    assert_eq!(accepted["case"]["cause"], "operator", "{accepted}");
    assert_eq!(accepted["case"]["state"], "open");
    // Accepted without a score: the report's own (7.5) stands.
    let advisory = accepted["report"]["advisory_id"].as_str().unwrap();
    let found = json_out(sigil(
        &s,
        &["vuln", "list", "--device", &devices[0], "--json"],
    ));
    let f = found["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["vulnerability"] == advisory)
        .unwrap_or_else(|| panic!("{found}"));
    assert_eq!(
        (&f["severity"], &f["cvss_score"]),
        (&json!("high"), &json!(7.5))
    );

    // The audit log has every step, and no report's text.
    let (_, entries) = s
        .get("/api/v1/audit/entries?action=disclosure.&limit=100")
        .await;
    let actions: Vec<&str> = entries["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for a in [
        "disclosure.policy.set",
        "disclosure.report.received",
        "disclosure.report.acknowledged",
        "disclosure.report.accepted",
        "disclosure.report.rejected",
    ] {
        assert!(actions.contains(&a), "{a} not in {actions:?}");
    }
    assert!(!entries.to_string().contains("sandbox off"));
}
both_backends!(disclosure_follows_the_readme);

async fn bad_input_and_abuse_change_nothing(db: Db) {
    let Some(s) = TestServer::start(db).await else {
        return;
    };
    let product = s.create_product("Gateway").await;
    ok(sigil(
        &s,
        &[
            "disclosure",
            "set-policy",
            "--contact",
            "mailto:psirt@example.com",
            "--expires",
            "2027-06-30T00:00:00Z",
        ],
    ));
    let before = curl(&s, "/.well-known/security.txt", &[]).1;
    // A value that would add a field, an http:// policy, an expired or decade-long file.
    for (args, words) in [
        (
            vec!["--contact", "mailto:a@b\nPolicy: https://evil.example"],
            "one line",
        ),
        (
            vec![
                "--contact",
                "mailto:a@b",
                "--policy",
                "http://example.com/cvd",
            ],
            "https://",
        ),
        (
            vec![
                "--contact",
                "mailto:a@b",
                "--expires",
                "2020-01-01T00:00:00Z",
            ],
            "in the future",
        ),
        (
            vec![
                "--contact",
                "mailto:a@b",
                "--expires",
                "2036-01-01T00:00:00Z",
            ],
            "less than a year",
        ),
        (
            vec!["--contact", "mailto:a@b", "--language", "english please"],
            "RFC 5646",
        ),
    ] {
        let mut full = vec!["disclosure", "set-policy"];
        full.extend(args.iter().copied());
        if !args.contains(&"--expires") {
            full.extend(["--expires", "2027-06-30T00:00:00Z"]);
        }
        refused(sigil(&s, &full), words);
    }
    assert_eq!(curl(&s, "/.well-known/security.txt", &[]).1, before);
    // An operator's token reads reports but publishes no policy (governance).
    let (st, t) = s
        .post(
            "/api/v1/tokens",
            json!({"name": "ops", "role": "operator", "scopes": ["inventory"], "expires_in_seconds": 600}),
        )
        .await;
    assert_eq!(st, 201, "{t}");
    let as_operator = |args: &[&str]| {
        common::sigil_command(&s, args)
            .env("SIGIL_TOKEN", t["token"].as_str().unwrap())
            .output()
            .unwrap()
    };
    ok(as_operator(&["disclosure", "reports"]));
    refused(
        as_operator(&[
            "disclosure",
            "set-policy",
            "--contact",
            "mailto:x@example.com",
            "--expires",
            "2027-06-30T00:00:00Z",
        ]),
        "403",
    );

    // Malformed reports are refused and stored nowhere, and spend no quota: junk cannot use
    // up the hour for everyone.
    let reports = || async { s.count("disclosure_reports").await };
    for body in [
        json!({"product": product, "summary": "two\nlines", "details": "x"}),
        json!({"product": product, "summary": "ansi", "details": "\u{1b}[31m"}),
        json!({"product": product, "summary": "a\u{2028}Contact: mailto:x", "details": "d"}),
        json!({"product": product, "summary": "s", "details": "d", "extra": 1}),
    ] {
        let (code, r) = report(&s, &body);
        assert_eq!(code, 422, "{r}");
    }
    let huge = json!({"product": product, "summary": "s", "details": "x".repeat(70_000)});
    assert_eq!(report(&s, &huge).0, 413);
    assert_eq!(reports().await, 0);
    // Five well-formed reports an hour from this address are taken (a product id in upper
    // case is the same product), the sixth is not.
    for i in 0..5 {
        let id = if i == 0 {
            product.to_uppercase()
        } else {
            product.clone()
        };
        let (code, r) = report(&s, &json!({"product": id, "summary": "s", "details": "d"}));
        assert_eq!(code, 201, "{r}");
    }
    let (code, r) = report(
        &s,
        &json!({"product": product, "summary": "s", "details": "d"}),
    );
    assert_eq!((code, r["status"].as_u64()), (429, Some(429)), "{r}");
    // Every report is stored under the product's own id.
    let list = json_out(sigil(
        &s,
        &["disclosure", "reports", "--product", &product, "--json"],
    ));
    assert_eq!(list["items"].as_array().unwrap().len(), 5);
    assert_eq!(reports().await, 5);
    // An advisory that cannot be matched is refused; the report stays undecided.
    let id = json_out(sigil(&s, &["disclosure", "reports", "--json"]))["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    refused(
        sigil(
            &s,
            &[
                "disclosure",
                "accept",
                &id,
                "--component",
                "pkg:generic/firmware",
                "--fixed",
                "2",
            ],
        ),
        "no ecosystem",
    );
    refused(
        sigil(
            &s,
            &[
                "disclosure",
                "accept",
                &id,
                "--component",
                "pkg:pypi/jinja2",
                "--fixed",
                "1..2!x",
            ],
        ),
        "not a valid PyPI version",
    );
    // Accepting adds vulnerability data every product is matched against: not an operator's.
    refused(
        as_operator(&[
            "disclosure",
            "accept",
            &id,
            "--component",
            "pkg:pypi/jinja2",
            "--fixed",
            "3.1.3",
        ]),
        "403",
    );
    // Nor may a feed take the id of one of Sigil's advisories (it could rewrite it).
    let forged = s.dir.path().join("SIGIL-2026-00000000.json");
    std::fs::write(
        &forged,
        json!({"id": "SIGIL-2026-00000000", "modified": "2030-01-01T00:00:00Z", "affected": []})
            .to_string(),
    )
    .unwrap();
    refused(
        sigil(&s, &["vulndb", "import", forged.to_str().unwrap()]),
        "reserved for Sigil's own advisories",
    );
    assert_eq!(s.count("vuln_records").await, 0);
    let r = json_out(sigil(&s, &["disclosure", "show", &id, "--json"]));
    assert_eq!(r["state"], "received");
}
both_backends!(bad_input_and_abuse_change_nothing);
