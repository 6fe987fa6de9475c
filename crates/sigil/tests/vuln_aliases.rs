//! A vulnerability first known by one id (a GHSA) and later by another (the CVE assigned to
//! it, which becomes its preferred id) keeps one clock: its first sighting and its open
//! Article 14 case stay those of the first id, and a KEV listing under the new id opens no
//! second case.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use common::{Db, TestServer, json as json_out, ok, sigil, upload_python_sbom};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../sigil-vuln/tests/fixtures")
}

fn import(s: &TestServer, file: &Path) {
    ok(sigil(s, &["vulndb", "import", file.to_str().unwrap()]));
}

fn jinja_finding(s: &TestServer, product: &str) -> Value {
    let list = json_out(sigil(s, &["vuln", "list", "--product", product, "--json"]));
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["component"] == "jinja2")
        .unwrap_or_else(|| panic!("{list}"))
        .clone()
}

fn cases(s: &TestServer) -> Vec<Value> {
    json_out(sigil(s, &["case", "list", "--all", "--json"]))["items"]
        .as_array()
        .unwrap()
        .clone()
}

async fn an_alias_that_becomes_the_preferred_id_keeps_the_clock(db: Db) {
    let Some(s) = TestServer::start(db).await else {
        return;
    };
    let work = s.dir.path();
    let product = s.create_product("Gateway").await;
    let (st, d) = s
        .post(
            "/api/v1/devices",
            json!({"product_id": product, "serial_number": "GW-1", "firmware_version": "2.0.0"}),
        )
        .await;
    assert_eq!(st, 201, "{d}");
    upload_python_sbom(&s, &product, "2.0.0", ("JSON", "1.6"));

    // The advisory as first published: a GHSA with no CVE yet.
    let published = fixtures().join("osv/GHSA-h5c8-rqwp-cp95.json");
    let mut early: Value = serde_json::from_slice(&std::fs::read(&published).unwrap()).unwrap();
    early["aliases"] = json!([]);
    early["modified"] = json!("2024-01-10T00:00:00Z");
    let early_file = work.join("early.json");
    std::fs::write(&early_file, early.to_string()).unwrap();
    import(&s, &early_file);
    ok(sigil(
        &s,
        &[
            "case",
            "open",
            "--product",
            &product,
            "--vulnerability",
            "GHSA-h5c8-rqwp-cp95",
            "--reason",
            "exploited in the wild (vendor report)",
        ],
    ));
    // The review records the sighting; once recorded it no longer moves with the clock.
    let mut first_seen = Value::Null;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let seen = jinja_finding(&s, &product)["first_seen"].clone();
        if seen == first_seen {
            break;
        }
        first_seen = seen;
    }
    assert_eq!(
        jinja_finding(&s, &product)["vulnerability"],
        "GHSA-h5c8-rqwp-cp95"
    );
    let [case] = cases(&s).try_into().unwrap_or_else(|c| panic!("{c:?}"));

    // The CVE is assigned (the record now aliases it) and CISA lists it as exploited, as it
    // does another vulnerability of the product: that one's case shows the review has run.
    import(&s, &published);
    import(&s, &fixtures().join("osv/GHSA-j8r2-6x86-q33q.json"));
    let kev = work.join("kev.json");
    let entry = |cve: &str| {
        json!({"cveID": cve, "vendorProject": "-", "product": "-", "vulnerabilityName": "-",
               "dateAdded": "2026-12-01", "shortDescription": "-", "requiredAction": "Update",
               "dueDate": "2026-12-22", "knownRansomwareCampaignUse": "Unknown", "notes": ""})
    };
    std::fs::write(
        &kev,
        json!({"title": "CISA Catalog of Known Exploited Vulnerabilities", "catalogVersion": "2026.12.05",
               "dateReleased": "2026-12-05T12:00:00.000Z", "count": 2,
               "vulnerabilities": [entry("CVE-2024-22195"), entry("CVE-2023-32681")]})
        .to_string(),
    )
    .unwrap();
    import(&s, &kev);
    let mut all = cases(&s);
    for _ in 0..100 {
        if all.iter().any(|c| c["vulnerability"] == "CVE-2023-32681") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        all = cases(&s);
    }
    // The pass that opened it went on to the jinja2 finding: give it time to finish.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let all = cases(&s);
    let jinja = jinja_finding(&s, &product);
    assert_eq!(jinja["vulnerability"], "CVE-2024-22195", "{jinja}");
    assert_eq!(
        jinja["first_seen"], first_seen,
        "the clock restarted: {jinja}"
    );
    assert_eq!(all.len(), 2, "{all:?}");
    let kept = all.iter().find(|c| c["id"] == case["id"]).unwrap();
    assert_eq!(kept["state"], "open");
    assert_eq!(kept["aware_at"], case["aware_at"]);
    assert_eq!(kept["deadlines"], case["deadlines"]);
    assert!(
        all.iter().any(|c| c["vulnerability"] == "CVE-2023-32681"),
        "{all:?}"
    );
    // Cases page, newest first, by cursor: the same two, one at a time.
    let mut paged = Vec::new();
    let mut after = String::new();
    loop {
        let (st, page) = s
            .get(&format!("/api/v1/cases?state=all&limit=1{after}"))
            .await;
        assert_eq!(st, 200, "{page}");
        paged.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["id"].clone()),
        );
        match page["next_cursor"].as_str() {
            Some(next) => after = format!("&after={next}"),
            None => break,
        }
    }
    let listed: Vec<Value> = all.iter().map(|c| c["id"].clone()).collect();
    assert_eq!(paged, listed);
    assert_eq!(s.get("/api/v1/cases?limit=0").await.0, 422);
    assert_eq!(s.get("/api/v1/cases?after=not-a-case").await.0, 422);
    // A cursor in another spelling of the same UUID pages alike.
    let first = &listed[0].as_str().unwrap().to_uppercase();
    let (_, upper) = s
        .get(&format!("/api/v1/cases?state=all&after={first}"))
        .await;
    assert_eq!(upper["items"][0]["id"], listed[1], "{upper}");
}
sigil_testkit::both_backends!(an_alias_that_becomes_the_preferred_id_keeps_the_clock);
