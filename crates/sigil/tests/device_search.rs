//! Finding devices in a large fleet: search by the start of a serial number or hardware id
//! (or a device id), sorting that pages exactly in either direction, and the compliance
//! status filter (the continuous engine's results) that must agree with each device's own
//! evaluation. Through the API and the CLI, on both databases.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;

use serde_json::{Value, json};

use common::{Db, TestServer, enrolled_device, json as json_out, sigil};

/// Every page of `query`, `limit` devices at a time, followed by its cursors.
async fn all_pages(s: &TestServer, query: &str, limit: u32) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after = String::new();
    loop {
        let (st, page) = s
            .get(&format!("/api/v1/devices?{query}&limit={limit}{after}"))
            .await;
        assert_eq!(st, 200, "{query}: {page}");
        out.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => after = format!("&after={next}"),
            None => return out,
        }
    }
}

fn serials(devices: &[Value]) -> Vec<String> {
    devices
        .iter()
        .map(|d| d["serial_number"].as_str().unwrap().to_owned())
        .collect()
}

/// A device's roll-up over the framework's device checks, from its own evaluation.
fn rolled_up(report: &Value) -> &'static str {
    let mut seen = Vec::new();
    for r in report["requirements"].as_array().unwrap() {
        for c in r["checks"].as_array().unwrap() {
            if c["check"].as_str().unwrap().starts_with("device.") {
                seen.push(c["status"].as_str().unwrap().to_owned());
            }
        }
    }
    let has = |s: &str| seen.iter().any(|x| x == s);
    if has("fail") {
        "fail"
    } else if has("unknown") {
        "unknown"
    } else if has("pass") {
        "pass"
    } else {
        "not-applicable"
    }
}

async fn devices_are_searched_sorted_and_filtered(db: Db) {
    let Some(s) = TestServer::start(db).await else {
        return;
    };
    let product = s.create_product("Meter").await;
    // Serials registered out of order, with a shared prefix and byte-order traps (lower case
    // after upper, a digit after '-').
    let mut ids = BTreeMap::new();
    for (serial, hardware) in [
        ("GW-010", "HW-AA-1"),
        ("GW-002", "HW-AB-2"),
        ("METER-7", "HW-AA-3"),
        ("GW-001", "HW-AC-4"),
        ("gw-100", "HW-AD-5"),
        ("GW0", "HW-AA-6"),
        ("GW-011", "HW-AE-7"),
    ] {
        let (st, d) = s
            .post(
                "/api/v1/devices",
                json!({"product_id": product, "serial_number": serial, "hardware_id": hardware}),
            )
            .await;
        assert_eq!(st, 201, "{d}");
        ids.insert(serial.to_owned(), d["id"].as_str().unwrap().to_owned());
    }
    let (enrolled, _) = enrolled_device(&s, &product, "GW-500").await;
    ids.insert("GW-500".into(), enrolled.clone());

    // Search: the start of a serial number or hardware id, case-sensitive; or a device id.
    let found = all_pages(&s, "q=GW-0", 2).await;
    assert_eq!(serials(&found), ["GW-010", "GW-002", "GW-001", "GW-011"]);
    let found = all_pages(&s, "q=HW-AA", 100).await;
    assert_eq!(serials(&found), ["GW-010", "METER-7", "GW0"]);
    let found = all_pages(&s, &format!("q={}", ids["gw-100"]), 100).await;
    assert_eq!(serials(&found), ["gw-100"]);
    assert!(all_pages(&s, "q=gw-1000", 100).await.is_empty());
    for (bad, words) in [
        ("q=%20%20", "must not be empty"),
        ("q=a%07b", "control character"),
        ("sort=owner", "sort `owner`"),
        ("sort=--serial", "sort `--serial`"),
        ("compliance=broken", "compliance is pass, fail"),
        ("compliance=eu-cra:broken", "compliance is pass, fail"),
        ("compliance=nope:fail", "no framework `nope`"),
    ] {
        let (st, body) = s.get(&format!("/api/v1/devices?{bad}")).await;
        assert_eq!(st, 422, "{bad}: {body}");
        assert!(
            body["detail"].as_str().unwrap().contains(words),
            "{bad}: {body}"
        );
    }
    let long = "x".repeat(257);
    assert_eq!(s.get(&format!("/api/v1/devices?q={long}")).await.0, 422);

    // Sorting: byte order of serial numbers, paging exactly, in both directions.
    let mut expected: Vec<String> = ids.keys().cloned().collect();
    expected.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    for limit in [1, 3, 100] {
        assert_eq!(
            serials(&all_pages(&s, "sort=serial", limit).await),
            expected
        );
        let mut reversed = expected.clone();
        reversed.reverse();
        assert_eq!(
            serials(&all_pages(&s, "sort=-serial", limit).await),
            reversed
        );
    }
    let by_serial_prefix = all_pages(&s, "q=GW-0&sort=-serial", 3).await;
    assert_eq!(
        serials(&by_serial_prefix),
        ["GW-011", "GW-010", "GW-002", "GW-001"]
    );
    // A device's lifecycle changing between pages does not move it in either order.
    let (st, body) = s
        .post(
            &format!("/api/v1/devices/{}/retire", ids["GW-002"]),
            json!({}),
        )
        .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(serials(&all_pages(&s, "sort=serial", 2).await), expected);
    // A cursor naming no device is refused, not an empty last page.
    let (st, body) = s
        .get("/api/v1/devices?sort=serial&after=0190f1a8-7a3c-7cc4-8f00-000000000001")
        .await;
    assert_eq!(st, 404, "{body}");
    for bad in ["state", "-state"] {
        assert_eq!(s.get(&format!("/api/v1/devices?sort={bad}")).await.0, 422);
    }

    // The compliance filter: each status lists exactly the devices whose own evaluation rolls
    // up to it, and the statuses split the fleet.
    let mut by_own = BTreeMap::<&str, Vec<String>>::new();
    for (serial, id) in &ids {
        let (st, report) = s
            .get(&format!("/api/v1/compliance/eu-cra/devices/{id}"))
            .await;
        assert_eq!(st, 200, "{report}");
        by_own
            .entry(rolled_up(&report))
            .or_default()
            .push(serial.clone());
    }
    assert!(
        by_own.len() >= 2,
        "the fleet should not be uniform: {by_own:?}"
    );
    for status in ["pass", "fail", "unknown", "not-applicable"] {
        let listed = all_pages(&s, &format!("compliance=eu-cra:{status}"), 2).await;
        let mut got = serials(&listed);
        got.sort();
        let mut want = by_own.get(status).cloned().unwrap_or_default();
        want.sort();
        assert_eq!(got, want, "{status}");
        // In another order the store pages and each device's status is looked up: the same
        // devices, in that order.
        let sorted = all_pages(&s, &format!("compliance=eu-cra:{status}&sort=-serial"), 2).await;
        let mut reversed = want.clone();
        reversed.sort_by(|a, b| b.as_bytes().cmp(a.as_bytes()));
        assert_eq!(serials(&sorted), reversed, "{status} by serial");
    }
    // Compliance results need compliance.read: a provisioner reads the inventory, not which
    // devices fail (the denial is audited); the plain listing is still theirs.
    let (st, t) = s
        .post(
            "/api/v1/tokens",
            json!({"name": "line", "role": "provisioner", "scopes": ["inventory"], "expires_in_seconds": 600}),
        )
        .await;
    assert_eq!(st, 201, "{t}");
    let as_provisioner = |args: &[&str]| {
        common::sigil_command(&s, args)
            .env("SIGIL_TOKEN", t["token"].as_str().unwrap())
            .output()
            .unwrap()
    };
    assert!(as_provisioner(&["device", "list"]).status.success());
    for args in [
        &["device", "list", "--compliance", "fail"][..],
        &["device", "export", "--compliance", "fail", "--out", "x.csv"][..],
    ] {
        let out = as_provisioner(args);
        assert!(
            !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("403"),
            "{out:?}"
        );
    }
    let (_, denied) = s.get("/api/v1/audit/entries?action=access.denied").await;
    assert!(
        denied["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["details"]["action"] == "compliance.read"),
        "{denied}"
    );

    // Combined with the other filters.
    let failing_gw = all_pages(&s, "compliance=eu-cra:fail&q=GW-0", 100).await;
    assert!(serials(&failing_gw).iter().all(|x| x.starts_with("GW-0")));

    // The README's commands: the example sheet imported, searched and sorted from the CLI,
    // and the failing devices exported.
    s.create_product("Thermostat T1").await;
    let sheet = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/devices.csv");
    assert!(
        sigil(&s, &["device", "import", sheet.to_str().unwrap()])
            .status
            .success()
    );
    let listed = json_out(sigil(
        &s,
        &[
            "device",
            "list",
            "--search",
            "SN-100",
            "--sort=-serial",
            "--json",
        ],
    ));
    assert_eq!(
        serials(listed["items"].as_array().unwrap()),
        ["SN-1003", "SN-1002", "SN-1001"]
    );
    let listed = json_out(sigil(
        &s,
        &[
            "device",
            "list",
            "--compliance",
            "fail",
            "--framework",
            "eu-cra",
            "--json",
        ],
    ));
    let failing = all_pages(&s, "compliance=eu-cra:fail", 500).await;
    assert_eq!(listed["items"].as_array().unwrap().len(), failing.len());
    let out = s.dir.path().join("failing.csv");
    let ok = sigil(
        &s,
        &[
            "device",
            "export",
            "--framework",
            "eu-cra",
            "--compliance",
            "fail",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert!(ok.status.success(), "{ok:?}");
    let csv = std::fs::read_to_string(&out).unwrap();
    let rows = csv.lines().count() - 1;
    assert_eq!(rows, failing.len(), "{csv}");
    assert!(rows >= by_own.get("fail").map_or(0, Vec::len), "{csv}");
    let refused = sigil(&s, &["device", "list", "--framework", "eu-cra"]);
    assert!(!refused.status.success());
}
sigil_testkit::both_backends!(devices_are_searched_sorted_and_filtered);
