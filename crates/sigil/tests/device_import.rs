//! Devices from a spreadsheet and back, as the README runs it: `sigil device import` of the
//! shipped `examples/devices.csv` (a dry run, then all or nothing), its refusals with each
//! row's line, and `sigil device export` read by Python's own `csv` module and imported again.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::PathBuf;

use reqwest::StatusCode;

use common::operators::audit;
use common::{Db, TestServer, sigil};

fn example() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/devices.csv")
}

fn stdout(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

async fn device_count(s: &TestServer) -> usize {
    let (_, list) = s.get("/api/v1/devices?limit=500").await;
    list["items"].as_array().unwrap().len()
}

async fn import_and_export(db: Db) {
    let Some(s) = TestServer::start(db).await else {
        return;
    };
    s.create_product("Thermostat T1").await;
    let file = example();
    let file = file.to_str().unwrap();

    // A dry run reports and writes nothing.
    let out = sigil(&s, &["device", "import", file, "--dry-run"]);
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("dry run: 3 devices would be registered"),
        "{}",
        stdout(&out)
    );
    assert_eq!(device_count(&s).await, 0);

    let out = sigil(&s, &["device", "import", file]);
    assert!(out.status.success(), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("registered 3 devices"),
        "{}",
        stdout(&out)
    );
    let (_, list) = s.get("/api/v1/devices?site=plant-2").await;
    assert_eq!(list["items"][0]["owner"], "Maintenance, night shift");
    assert_eq!(list["items"][0]["hardware_id"], "hw-7f3a-1003");
    let imported = audit(&s, "device.imported").await;
    assert_eq!(imported.len(), 1);
    assert_eq!(imported[0]["details"]["devices"], 3);
    assert_eq!(audit(&s, "device.created").await.len(), 3);

    // The same file again: every row is already registered, each said with its line, and
    // nothing changes.
    let out = sigil(&s, &["device", "import", file]);
    assert!(!out.status.success());
    let text = stdout(&out);
    for line in 2..=4 {
        assert!(
            text.contains(&format!("line {line} (serial_number): a device `SN-100")),
            "{text}"
        );
    }
    assert!(text.contains("nothing was imported"), "{text}");
    assert_eq!(device_count(&s).await, 3);

    // One bad row among good ones: none is written.
    let bad = s.dir.path().join("bad.csv");
    std::fs::write(
        &bad,
        "product,serial_number,tags\nThermostat T1,SN-2001,ok\nThermostat T1,SN-2002,bad!tag\nNo such product,SN-2003,\n",
    )
    .unwrap();
    let out = sigil(&s, &["device", "import", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let text = stdout(&out);
    assert!(
        text.contains("line 3 (tags): tag `bad!tag` is invalid"),
        "{text}"
    );
    assert!(
        text.contains("line 4 (product): no product `No such product`"),
        "{text}"
    );
    assert_eq!(device_count(&s).await, 3, "all or nothing");
    assert_eq!(audit(&s, "device.imported").await.len(), 1);

    // Too large a file is refused before it is read.
    let big = vec![b'a'; 17 * 1024 * 1024];
    let r = s
        .http
        .post(format!("{}/api/v1/devices/import", s.api))
        .bearer_auth(&s.token)
        .header("content-type", "text/csv")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);

    // The export of a view, read by Python's csv module, and imported into another Sigil.
    let exported = s.dir.path().join("plant-1.csv");
    let out = sigil(
        &s,
        &[
            "device",
            "export",
            "--site",
            "plant-1",
            "--out",
            exported.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", stdout(&out));
    let read = std::process::Command::new("python3")
        .arg("-c")
        .arg("import csv,sys,json; print(json.dumps(list(csv.DictReader(open(sys.argv[1], newline='')))))")
        .arg(&exported)
        .output()
        .unwrap();
    let rows: serde_json::Value = serde_json::from_slice(&read.stdout).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 2, "{rows}");
    assert_eq!(rows[0]["serial_number"], "SN-1001");
    assert_eq!(rows[0]["tags"], "floor-2;line-3");
    assert_eq!(rows[0]["state"], "registered");

    let Some(other) = TestServer::start(Db::Sqlite).await else {
        return;
    };
    let product = other.create_product("Thermostat T1").await;
    // The export names the product by id: in another deployment it is a new product, so the
    // file is edited as a person would, naming it by its name.
    let (_, products) = s.get("/api/v1/products").await;
    let old_id = products["items"][0]["id"].as_str().unwrap().to_owned();
    let text = std::fs::read_to_string(&exported)
        .unwrap()
        .replace(&old_id, "Thermostat T1");
    let moved = other.dir.path().join("moved.csv");
    std::fs::write(&moved, text).unwrap();
    let out = sigil(&other, &["device", "import", moved.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stdout(&out));
    let (_, list) = other
        .get(&format!("/api/v1/devices?product={product}"))
        .await;
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    other.shutdown().await;
    s.shutdown().await;
}

both_backends!(import_and_export);
