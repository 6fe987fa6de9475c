//! A CRA Article 14 case from start to end, against a real server with real agents: a KEV
//! entry for a vulnerability in a deployed release opens the case at once, its deadlines are
//! exact instants after that moment (24 h, 72 h; 14 days after the fix release is published),
//! the drafts name the affected devices and the member states their sites are in, webhook
//! alerts go out once as each deadline nears and once it passes (not for a submitted report),
//! and the case closes when the agents have installed the fix release. Every step is in the
//! audit log.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use sigil_agent::update::{Followed, follow_assignment};
use sigil_testkit::{Db, TestServer};

mod support;

use support::{enrol_at, report};

const HOUR: i64 = 3600;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../sigil-vuln/tests/fixtures")
}

fn at(v: &Value) -> OffsetDateTime {
    OffsetDateTime::parse(v.as_str().unwrap_or_else(|| panic!("{v}")), &Rfc3339).unwrap()
}

/// A CycloneDX SBOM of `requirements` written by cyclonedx-py.
fn sbom(dir: &Path, name: &str, requirements: &str) -> Vec<u8> {
    let req = dir.join(format!("{name}.txt"));
    std::fs::write(&req, requirements).unwrap();
    let out = dir.join(format!("{name}.cdx.json"));
    let run = Command::new("cyclonedx-py")
        .args(["requirements", "--of", "JSON", "--sv", "1.6", "-o"])
        .arg(&out)
        .arg(&req)
        .output()
        .unwrap();
    assert!(run.status.success(), "{run:?}");
    std::fs::read(out).unwrap()
}

async fn upload(s: &TestServer, path: &str, bytes: Vec<u8>) -> Value {
    let r = s
        .http
        .post(format!("{}{path}", s.api))
        .bearer_auth(&s.token)
        .header("content-type", "application/octet-stream")
        .body(bytes)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert!(status.is_success(), "{path}: {status} {body}");
    body
}

/// Poll `GET path` until `done` holds of the body (10 s at most).
async fn until(s: &TestServer, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..100 {
        let (st, body) = s.get(path).await;
        assert_eq!(st, 200, "{body}");
        if done(&body) {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, body) = s.get(path).await;
    panic!("{path} never got there: {body}");
}

/// The next alert the webhook receives (5 s at most).
async fn next_alert(alerts: &mut tokio::sync::mpsc::UnboundedReceiver<Value>) -> Value {
    tokio::time::timeout(Duration::from_secs(5), alerts.recv())
        .await
        .expect("an alert within 5 s")
        .unwrap()
}

fn deadline<'a>(case: &'a Value, stage: &str) -> &'a Value {
    case["deadlines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["stage"] == stage)
        .unwrap()
}

async fn case_follows_a_kev_entry_to_the_installed_fix(db: Db) {
    let offset = Arc::new(AtomicI64::new(0));
    let clock: sigil_server::Clock = {
        let offset = offset.clone();
        Arc::new(move || {
            OffsetDateTime::now_utc() + time::Duration::seconds(offset.load(Ordering::SeqCst))
        })
    };
    let (alerts_tx, mut alerts) = tokio::sync::mpsc::unbounded_channel::<Value>();
    let receiver = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", receiver.local_addr().unwrap());
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
            let tx = alerts_tx.clone();
            async move {
                if body["kind"] == "cra-article-14" {
                    let _ = tx.send(body);
                }
                "ok"
            }
        }),
    );
    tokio::spawn(async move { axum::serve(receiver, app).await });
    let Some(s) = TestServer::start_with_clock(
        db,
        |c| {
            c.rollout_tick = Duration::from_millis(100);
            c.vuln_review = Duration::from_millis(100);
            c.compliance_webhook = Some(hook);
        },
        clock,
    )
    .await
    else {
        return;
    };
    let work = s.dir.path().to_path_buf();
    let product = s.admin().create_product("Gateway").await.unwrap();
    for (site, country) in [("lyon", "FR"), ("berlin", "DE"), ("zurich", "CH")] {
        let (st, r) = s
            .admin()
            .call(
                reqwest::Method::PUT,
                &format!("/api/v1/sites/{site}"),
                &json!({ "country": country }),
            )
            .await
            .unwrap();
        assert_eq!(st, 200, "{r}");
    }
    let lyon = enrol_at(&s, &product, "GW-LYON", "lyon", "2.0.0").await;
    let berlin = enrol_at(&s, &product, "GW-BERLIN", "berlin", "2.0.0").await;
    let zurich = enrol_at(&s, &product, "GW-ZURICH", "zurich", "2.0.0").await;
    let fleet = [&lyon, &berlin, &zurich];

    // Release 2.0.0 carries requests 2.25.0; the OSV record says it is affected.
    let vulnerable =
        std::fs::read_to_string(fixtures().join("python-env/requirements.txt")).unwrap();
    let sbom_sha = upload(&s, "/api/v1/artefacts", sbom(&work, "2.0.0", &vulnerable)).await;
    let image = upload(&s, "/api/v1/artefacts", b"firmware 2.0.0".to_vec()).await;
    let (st, r) = s
        .post(
            &format!("/api/v1/products/{product}/releases"),
            json!({"version": "2.0.0", "artefact_sha256": image["sha256"], "file_name": "fw.bin",
                   "sbom_sha256": sbom_sha["sha256"]}),
        )
        .await;
    assert_eq!(st, 201, "{r}");
    let record = std::fs::read(fixtures().join("osv/GHSA-j8r2-6x86-q33q.json")).unwrap();
    upload(&s, "/api/v1/vulndb/imports", record).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, cases) = s.get("/api/v1/cases?state=all").await;
    assert_eq!(
        cases["items"],
        json!([]),
        "no case before it is known exploited"
    );

    // CISA lists it: the case opens, aware from the moment the catalogue arrived.
    let kev = json!({"title": "CISA Catalog of Known Exploited Vulnerabilities",
        "catalogVersion": "2026.12.05", "dateReleased": "2026-12-05T00:00:00.000Z", "count": 1,
        "vulnerabilities": [{"cveID": "CVE-2023-32681", "vendorProject": "Python Software Foundation",
            "product": "requests", "vulnerabilityName": "requests Proxy-Authorization leak",
            "dateAdded": "2026-12-05", "shortDescription": "-", "requiredAction": "Update",
            "dueDate": "2026-12-26", "knownRansomwareCampaignUse": "Unknown", "notes": ""}]});
    let before = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    upload(&s, "/api/v1/vulndb/imports", kev.to_string().into_bytes()).await;
    let cases = until(&s, "/api/v1/cases", |b| {
        b["items"].as_array().unwrap().len() == 1
    })
    .await;
    let after = OffsetDateTime::now_utc();
    let case = cases["items"][0].clone();
    let id = case["id"].as_str().unwrap().to_owned();
    assert_eq!(case["vulnerability"], "CVE-2023-32681");
    assert_eq!(case["cause"], "known-exploited");
    assert_eq!(case["state"], "open");
    let aware = at(&case["aware_at"]);
    assert!(
        before <= aware && aware <= after,
        "{aware} not in [{before}, {after}]"
    );
    // Exact instants: 24 h and 72 h after awareness, to the second; no final report yet.
    assert_eq!(
        at(&deadline(&case, "early-warning")["due"]) - aware,
        time::Duration::hours(24)
    );
    assert_eq!(
        at(&deadline(&case, "notification")["due"]) - aware,
        time::Duration::hours(72)
    );
    assert_eq!(deadline(&case, "final-report")["due"], Value::Null);
    assert_eq!(deadline(&case, "early-warning")["status"], "pending");

    // The drafts name the devices, and the member states their sites are in.
    let (st, draft) = s
        .get(&format!("/api/v1/cases/{id}/drafts/early-warning"))
        .await;
    assert_eq!(st, 200, "{draft}");
    assert_eq!(draft["affected"]["devices"], 3);
    assert_eq!(draft["affected"]["member_states"], json!(["DE", "FR"]));
    assert_eq!(draft["affected"]["other_countries"], json!(["CH"]));
    assert_eq!(draft["affected"]["firmware_versions"], json!(["2.0.0"]));
    let mut serials: Vec<&str> = draft["affected"]["listed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["serial_number"].as_str().unwrap())
        .collect();
    serials.sort_unstable();
    assert_eq!(serials, ["GW-BERLIN", "GW-LYON", "GW-ZURICH"]);
    assert_eq!(draft["due"], deadline(&case, "early-warning")["due"]);
    assert!(
        draft["aliases"]
            .as_array()
            .unwrap()
            .contains(&json!("GHSA-j8r2-6x86-q33q"))
    );

    // A VEX statement (an operator may record one) does not close a case on an actively
    // exploited vulnerability: only devices leaving the affected firmware do.
    let vex = json!({"@context": "https://openvex.dev/ns/v0.2.0", "@id": "https://example.org/vex/a14",
        "author": "ops", "timestamp": "2026-12-05T00:00:00Z", "version": 1,
        "statements": [{"vulnerability": {"name": "CVE-2023-32681"},
            "products": [{"@id": "pkg:generic/acme/gateway", "subcomponents": [{"@id": "pkg:pypi/requests"}]}],
            "status": "not_affected", "justification": "vulnerable_code_not_in_execute_path"}]});
    upload(
        &s,
        &format!("/api/v1/products/{product}/vex"),
        vex.to_string().into_bytes(),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, still) = s.get(&format!("/api/v1/cases/{id}")).await;
    assert_eq!(still["state"], "open", "{still}");

    // 18 h 1 min on: the early warning is 5 h 59 min away, and the webhook hears it once.
    offset.store(18 * HOUR + 60, Ordering::SeqCst);
    let alert = next_alert(&mut alerts).await;
    assert_eq!(
        (
            alert["case"].as_str(),
            alert["stage"].as_str(),
            alert["urgency"].as_str()
        ),
        (Some(id.as_str()), Some("early-warning"), Some("nearing")),
        "{alert}"
    );
    assert_eq!(alert["due"], deadline(&case, "early-warning")["due"]);
    let (st, r) = s
        .post(
            &format!("/api/v1/cases/{id}/reports"),
            json!({"stage": "early-warning", "reference": "CSIRT-FR-2026-0042"}),
        )
        .await;
    assert_eq!(st, 201, "{r}");
    assert_eq!(deadline(&r, "early-warning")["status"], "submitted");
    let (st, again) = s
        .post(
            &format!("/api/v1/cases/{id}/reports"),
            json!({"stage": "early-warning"}),
        )
        .await;
    assert_eq!(st, 409, "a stage is submitted once: {again}");
    let (st, early) = s
        .post(
            &format!("/api/v1/cases/{id}/reports"),
            json!({"stage": "final-report"}),
        )
        .await;
    assert_eq!(st, 409, "no final report before a fix: {early}");

    // 48 h 1 min: the notification nears; the submitted early warning, past due, stays quiet.
    offset.store(48 * HOUR + 60, Ordering::SeqCst);
    let alert = next_alert(&mut alerts).await;
    assert_eq!(
        (alert["stage"].as_str(), alert["urgency"].as_str()),
        (Some("notification"), Some("nearing")),
        "{alert}"
    );

    // A release whose SBOM lists nothing proves no fix.
    let empty =
        json!({"bomFormat": "CycloneDX", "specVersion": "1.6", "version": 1, "components": []});
    let sbom_sha = upload(&s, "/api/v1/artefacts", empty.to_string().into_bytes()).await;
    let image = upload(&s, "/api/v1/artefacts", b"firmware 2.0.1".to_vec()).await;
    let (st, r) = s
        .post(
            &format!("/api/v1/products/{product}/releases"),
            json!({"version": "2.0.1", "artefact_sha256": image["sha256"], "file_name": "fw.bin",
                   "sbom_sha256": sbom_sha["sha256"]}),
        )
        .await;
    assert_eq!(st, 201, "{r}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, c) = s.get(&format!("/api/v1/cases/{id}")).await;
    assert_eq!(c["fix_release"], Value::Null, "{c}");

    // The fix: release 2.1.0 with requests 2.31.0, published now; the final report is due
    // 14 days after its publication.
    let fixed = vulnerable.replace("requests==2.25.0", "requests==2.31.0");
    let sbom_sha = upload(&s, "/api/v1/artefacts", sbom(&work, "2.1.0", &fixed)).await;
    let image = upload(&s, "/api/v1/artefacts", b"firmware 2.1.0".to_vec()).await;
    let (st, release) = s
        .post(
            &format!("/api/v1/products/{product}/releases"),
            json!({"version": "2.1.0", "artefact_sha256": image["sha256"], "file_name": "fw.bin",
                   "sbom_sha256": sbom_sha["sha256"], "security": true}),
        )
        .await;
    assert_eq!(st, 201, "{release}");
    let published = at(&release["published_at"]);
    let case = until(&s, &format!("/api/v1/cases/{id}"), |c| {
        c["fix_release"] == "2.1.0"
    })
    .await;
    assert_eq!(at(&case["fix_available_at"]), published);
    assert_eq!(
        at(&deadline(&case, "final-report")["due"]) - published,
        time::Duration::days(14)
    );
    assert_eq!(case["state"], "open", "no device has installed it yet");
    let text = s
        .http
        .get(format!(
            "{}/api/v1/cases/{id}/drafts/notification?format=text",
            s.api
        ))
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for words in [
        "GW-LYON",
        "GW-BERLIN",
        "GW-ZURICH",
        "DE, FR",
        "install release 2.1.0",
        "update requests to 2.31.0",
    ] {
        assert!(text.contains(words), "{words:?} missing from:\n{text}");
    }

    // The agents install 2.1.0 through a rollout and report it: the case closes.
    let (st, r) = s
        .post(
            &format!("/api/v1/products/{product}/rollouts"),
            json!({"release": "2.1.0", "groups": ["100%"], "success_threshold": "50%", "error_threshold": "50%"}),
        )
        .await;
    assert_eq!(st, 201, "{r}");
    for (i, d) in fleet.iter().enumerate() {
        let mut installed = false;
        for _ in 0..100 {
            if let Followed::Installed(_) = follow_assignment(&d.state, &d.install).await.unwrap() {
                installed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(installed, "device {i} never got 2.1.0");
        report(
            d,
            &json!({"firmware_version": "2.1.0", "secure_boot": true}),
            true,
        );
        if i < 2 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let (_, c) = s.get(&format!("/api/v1/cases/{id}")).await;
            assert_eq!(c["state"], "open", "a device still runs 2.0.0");
        }
    }
    let case = until(&s, &format!("/api/v1/cases/{id}"), |c| {
        c["state"] == "closed"
    })
    .await;
    assert!(
        case["close_reason"]
            .as_str()
            .unwrap()
            .contains("2.1.0 installed"),
        "{case}"
    );

    // The notification was never submitted: past its deadline it is overdue, and said so
    // once; the final report still nears on its own clock.
    offset.store(72 * HOUR + 60, Ordering::SeqCst);
    let alert = next_alert(&mut alerts).await;
    assert_eq!(
        (alert["stage"].as_str(), alert["urgency"].as_str()),
        (Some("notification"), Some("overdue")),
        "{alert}"
    );
    let (_, case) = s.get(&format!("/api/v1/cases/{id}")).await;
    assert_eq!(deadline(&case, "notification")["status"], "overdue");
    let final_due = at(&deadline(&case, "final-report")["due"]);
    let to_final = (final_due - OffsetDateTime::now_utc()).whole_seconds() - 3 * 24 * HOUR + 60;
    offset.store(to_final, Ordering::SeqCst);
    let alert = next_alert(&mut alerts).await;
    assert_eq!(
        (alert["stage"].as_str(), alert["urgency"].as_str()),
        (Some("final-report"), Some("nearing")),
        "{alert}"
    );
    let (st, r) = s
        .post(
            &format!("/api/v1/cases/{id}/reports"),
            json!({"stage": "final-report"}),
        )
        .await;
    assert_eq!(st, 201, "{r}");
    let (_, case) = s.get(&format!("/api/v1/cases/{id}")).await;
    assert_eq!(
        case["alerts"].as_array().unwrap().len(),
        4,
        "each alert once: {case}"
    );

    // Every step is in the audit log.
    let (_, log) = s
        .get("/api/v1/audit/entries?action=vuln.case.&limit=500")
        .await;
    let actions: Vec<&str> = log["items"]
        .as_array()
        .unwrap_or_else(|| panic!("{log}"))
        .iter()
        .filter(|e| e["subject"].as_str() == Some(&format!("case:{id}")))
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for action in [
        "vuln.case.opened",
        "vuln.case.alerted",
        "vuln.case.report-submitted",
        "vuln.case.fix-available",
        "vuln.case.closed",
    ] {
        assert!(actions.contains(&action), "{action} missing: {actions:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn article_14_case_on_sqlite() {
    case_follows_a_kev_entry_to_the_installed_fix(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn article_14_case_on_postgres() {
    case_follows_a_kev_entry_to_the_installed_fix(Db::Postgres).await;
}
