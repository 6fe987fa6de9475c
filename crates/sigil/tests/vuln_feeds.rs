//! The scheduled refresh of vulnerability feeds, against an independent web server (Python's
//! `http.server`, which answers `If-Modified-Since` with 304): `sigil serve --vuln-feed ...`
//! as the README runs it imports an OSV record, the KEV catalogue and a gzip'd EPSS file at
//! start; on a short interval an unchanged feed is not imported again, a changed one is, and a
//! missing or malformed feed changes nothing while the others go on. A feed URL that is not
//! https (or http to loopback) is refused at start.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use common::{Db, SpawnedServer, TestServer};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../sigil-vuln/tests/fixtures")
}

/// `python3 -m http.server` serving `dir` on a free loopback port; killed on drop.
struct Mirror {
    child: Child,
    base: String,
}

impl Drop for Mirror {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn mirror(dir: &Path) -> Mirror {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("python3")
        .args([
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--directory",
        ])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Dropped (killed and waited for) on every path from here.
    let m = Mirror {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return m;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the mirror did not start");
}

/// The feeds a mirror serves: an OSV record, the KEV catalogue, EPSS gzip'd (by `gzip`), and
/// one file that is no feed at all.
fn feed_files(dir: &Path) {
    std::fs::copy(
        fixtures().join("osv/GHSA-j8r2-6x86-q33q.json"),
        dir.join("GHSA-j8r2-6x86-q33q.json"),
    )
    .unwrap();
    std::fs::write(
        dir.join("known_exploited_vulnerabilities.json"),
        json!({"catalogVersion": "2026.12.05", "count": 1,
               "vulnerabilities": [{"cveID": "CVE-2023-32681", "vendorProject": "PSF", "product": "requests",
                   "vulnerabilityName": "requests Proxy-Authorization leak", "dateAdded": "2026-12-05",
                   "shortDescription": "-", "requiredAction": "Update", "dueDate": "2026-12-26",
                   "knownRansomwareCampaignUse": "Unknown", "notes": ""}]})
        .to_string(),
    )
    .unwrap();
    let csv = dir.join("epss_scores-current.csv");
    std::fs::write(
        &csv,
        "#model_version:v2025.03.14,score_date:2026-12-04T00:00:00Z\ncve,epss,percentile\nCVE-2023-32681,0.0123,0.85\n",
    )
    .unwrap();
    assert!(Command::new("gzip").arg(&csv).status().unwrap().success());
    std::fs::write(dir.join("garbage.json"), "{\"not\": \"a feed\"}").unwrap();
}

/// The sources of `vulndb.imported` entries, in order.
async fn imports(s: &TestServer) -> Vec<(String, Value)> {
    let (st, entries) = s
        .get("/api/v1/audit/entries?action=vulndb.imported&limit=100")
        .await;
    assert_eq!(st, 200, "{entries}");
    entries["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["details"]["source"].as_str().unwrap_or("").to_owned(),
                e["details"].clone(),
            )
        })
        .collect()
}

async fn until(
    s: &TestServer,
    what: &str,
    ok: impl Fn(&[(String, Value)]) -> bool,
) -> Vec<(String, Value)> {
    for _ in 0..200 {
        let seen = imports(s).await;
        if ok(&seen) {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what}: {:?}", imports(s).await);
}

async fn feeds_follow_their_sources(db: Db) {
    let dir = tempfile::tempdir().unwrap();
    feed_files(dir.path());
    let m = mirror(dir.path());
    let url = |f: &str| format!("{}/{f}", m.base);
    let record = url("GHSA-j8r2-6x86-q33q.json");
    let feeds = vec![
        url("missing.json"),
        url("garbage.json"),
        record.clone(),
        url("known_exploited_vulnerabilities.json"),
        url("epss_scores-current.csv.gz"),
    ];
    let Some(s) = TestServer::start_with(db, |c| {
        c.vuln_feeds = feeds.clone();
        c.vuln_feed_interval = Duration::from_millis(300);
    })
    .await
    else {
        return;
    };
    // The three feeds arrive; the missing and malformed ones change nothing.
    let seen = until(&s, "three feeds imported", |seen| seen.len() >= 3).await;
    let kinds: Vec<&str> = seen
        .iter()
        .map(|(_, d)| d["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["osv", "kev", "epss"], "{seen:?}");
    assert_eq!(seen[0].0, record);
    assert_eq!(seen[0].1["added"], 1);
    // Several passes later nothing unchanged was imported again.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(imports(&s).await.len(), 3);
    assert_eq!(s.count("vuln_records").await, 1);

    // The record changes at its source: the next pass imports the newer one.
    let path = dir.path().join("GHSA-j8r2-6x86-q33q.json");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("2023-05-26T14:47:00Z", "2026-12-05T00:00:00Z")
        .replace("Unintended leak", "Revised: unintended leak");
    // A later mtime than the last answer's Last-Modified (seconds resolution).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    std::fs::write(&path, text).unwrap();
    let seen = until(&s, "the changed record imported", |seen| seen.len() >= 4).await;
    assert_eq!(
        (seen[3].0.as_str(), &seen[3].1["updated"]),
        (record.as_str(), &json!(1))
    );
    assert_eq!(s.count("vuln_records").await, 1);
}
both_backends!(feeds_follow_their_sources);

#[test]
fn sigil_serve_takes_feeds_as_the_readme_says() {
    let dir = tempfile::tempdir().unwrap();
    let files = dir.path().join("mirror");
    std::fs::create_dir(&files).unwrap();
    feed_files(&files);
    let m = mirror(&files);
    let data = dir.path().join("data");
    let server = SpawnedServer::spawn_with(
        &data,
        None,
        &[],
        &[
            "--vuln-feed",
            &format!("{}/GHSA-j8r2-6x86-q33q.json", m.base),
            "--vuln-feed",
            &format!("{}/known_exploited_vulnerabilities.json", m.base),
            "--vuln-feed",
            &format!("{}/epss_scores-current.csv.gz", m.base),
            "--vuln-feed-interval",
            "360",
        ],
    )
    .unwrap();
    let token = std::fs::read_to_string(data.join("admin.token")).unwrap();
    let http = common::root_client(&data);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let imported = runtime.block_on(async {
        for _ in 0..100 {
            let entries: Value = http
                .get(format!(
                    "{}/api/v1/audit/entries?action=vulndb.imported",
                    server.api()
                ))
                .bearer_auth(token.trim())
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if entries["items"].as_array().is_some_and(|a| a.len() == 3) {
                return entries;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the feeds were not imported at start");
    });
    assert!(imported.to_string().contains("epss"), "{imported}");
    server.kill9();

    // Plain http to anything but loopback is refused before Sigil serves.
    let out = Command::new(env!("CARGO_BIN_EXE_sigil"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--pki-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir.path().join("other"))
        .args(["--vuln-feed", "http://feeds.example.com/all.zip"])
        .env_remove("SIGIL_CA_PASSPHRASE")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("must be https"),
        "{err}"
    );
}
