//! Crash consistency: `kill -9` of the real server during a burst of concurrent issuance leaves a
//! database in which every acknowledged certificate is recorded exactly once and nothing is
//! half-written.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};
use sqlx::Row;
use x509_parser::prelude::{FromDer, X509Certificate};

use common::{Db, SpawnedServer, fresh_postgres, root_client};

const DEVICES: usize = 400;
const WORKERS: usize = 8;
/// Kill once this many certificates have been acknowledged (requests are still in flight then).
const KILL_AFTER: usize = 40;

async fn kill_9_during_issuance_burst(db: Db) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let pg_url = match db {
        Db::Sqlite => None,
        Db::Postgres => match fresh_postgres().await {
            Some(u) => Some(u),
            None => return,
        },
    };
    let server = SpawnedServer::spawn(&data, pg_url.as_deref(), &[]).expect("server starts");
    let api = server.api();
    let token = std::fs::read_to_string(data.join("admin.token"))
        .unwrap()
        .trim()
        .to_owned();
    let http = root_client(&data);

    let (h, a, t) = (http.clone(), api.clone(), token.clone());
    let post = move |path: String, body: Value| {
        let (http, api, token) = (h.clone(), a.clone(), t.clone());
        async move {
            http.post(format!("{api}{path}"))
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
        }
    };
    let product: Value = post(
        "/api/v1/products".into(),
        json!({"name": "P", "manufacturer": "M", "support_end": "2030-01-01"}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let product = product["id"].as_str().unwrap().to_owned();
    let mut jobs = Vec::new();
    for i in 0..DEVICES {
        let d: Value = post(
            "/api/v1/devices".into(),
            json!({"product_id": product, "serial_number": format!("SN-{i}")}),
        )
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
        let csr = common::fresh_csr_pem();
        jobs.push((d["id"].as_str().unwrap().to_owned(), csr));
    }

    // The burst: WORKERS concurrent clients, each taking the next device.
    let next = Arc::new(AtomicUsize::new(0));
    let acked = Arc::new(AtomicUsize::new(0));
    let jobs = Arc::new(jobs);
    let mut workers = Vec::new();
    for _ in 0..WORKERS {
        let (next, acked, jobs, post) = (next.clone(), acked.clone(), jobs.clone(), post.clone());
        workers.push(tokio::spawn(async move {
            let mut mine: Vec<(String, String, String)> = Vec::new(); // (device, serial, sha256)
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some((device, csr)) = jobs.get(i) else {
                    break;
                };
                match post(
                    format!("/api/v1/devices/{device}/certificates"),
                    json!({"csr": csr}),
                )
                .await
                {
                    Ok(r) if r.status().as_u16() == 201 => {
                        if let Ok(v) = r.json::<Value>().await {
                            mine.push((
                                device.clone(),
                                v["serial"].as_str().unwrap().into(),
                                v["sha256"].as_str().unwrap().into(),
                            ));
                            acked.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    Ok(r) => panic!("unexpected status {} before the kill", r.status()),
                    Err(_) => break, // the server is gone
                }
            }
            mine
        }));
    }
    while acked.load(Ordering::SeqCst) < KILL_AFTER {
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    server.kill9();
    let mut acknowledged = Vec::new();
    for w in workers {
        acknowledged.extend(w.await.unwrap());
    }
    assert!(acknowledged.len() >= KILL_AFTER);
    assert!(acknowledged.len() < DEVICES, "the kill landed mid-burst");
    eprintln!(
        "{db:?}: {} certificates acknowledged before kill -9",
        acknowledged.len()
    );

    // The server restarts on the same data and serves.
    let server =
        SpawnedServer::spawn(&data, pg_url.as_deref(), &[]).expect("server restarts after kill -9");
    let r = http
        .get(format!("{}/api/v1/certificates?limit=500", server.api()))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    drop(server);

    let url = pg_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", data.join("sigil.db").display()));
    let store = sigil_store::Store::open(&url).await.unwrap();
    let pool = store.pool();
    if db == Db::Sqlite {
        let row = sqlx::query("PRAGMA integrity_check")
            .fetch_one(pool)
            .await
            .unwrap();
        assert_eq!(row.try_get::<String, _>(0).unwrap(), "ok");
    }

    let rows = sqlx::query("SELECT serial, device_id, sha256, spki_sha256, der FROM certificates")
        .fetch_all(pool)
        .await
        .unwrap();
    let mut by_serial: HashMap<String, (String, String)> = HashMap::new();
    let mut per_device: HashMap<String, usize> = HashMap::new();
    for row in &rows {
        let serial: String = row.try_get("serial").unwrap();
        let device: String = row.try_get("device_id").unwrap();
        let sha: String = row.try_get("sha256").unwrap();
        let spki: String = row.try_get("spki_sha256").unwrap();
        let der: Vec<u8> = row.try_get("der").unwrap();
        // The stored DER is whole and matches every column recorded beside it.
        let (rest, cert) = X509Certificate::from_der(&der).expect("stored certificate parses");
        assert!(rest.is_empty());
        assert_eq!(hex(cert.raw_serial()), serial);
        assert_eq!(hex(&sha256(&der)), sha);
        assert_eq!(hex(&sha256(cert.public_key().raw)), spki);
        assert!(cert.subject().to_string().contains(&device));
        let bound: String = sqlx::query("SELECT device_id FROM device_keys WHERE spki_sha256 = $1")
            .bind(&spki)
            .fetch_one(pool)
            .await
            .unwrap()
            .try_get("device_id")
            .unwrap();
        assert_eq!(bound, device);
        assert!(by_serial.insert(serial, (device.clone(), sha)).is_none());
        *per_device.entry(device).or_default() += 1;
    }
    eprintln!("{db:?}: {} certificates recorded", rows.len());
    // Every acknowledged certificate is there, once, unchanged.
    for (device, serial, sha) in &acknowledged {
        assert_eq!(
            by_serial.get(serial),
            Some(&(device.clone(), sha.clone())),
            "acknowledged serial {serial} lost"
        );
    }
    // Lifecycle state agrees with the certificates: provisioned iff it has one.
    let devices = sqlx::query("SELECT id, state FROM devices")
        .fetch_all(pool)
        .await
        .unwrap();
    assert_eq!(devices.len(), DEVICES);
    for row in devices {
        let id: String = row.try_get("id").unwrap();
        let state: String = row.try_get("state").unwrap();
        let expected = if per_device.get(&id).copied().unwrap_or(0) > 0 {
            "provisioned"
        } else {
            "registered"
        };
        assert_eq!(state, expected, "device {id}");
        assert!(per_device.get(&id).copied().unwrap_or(0) <= 1);
    }
    let keys: i64 = sqlx::query("SELECT COUNT(*) AS n FROM device_keys")
        .fetch_one(pool)
        .await
        .unwrap()
        .try_get("n")
        .unwrap();
    assert_eq!(
        keys as usize,
        rows.len(),
        "no key binding without its certificate"
    );
    // The audit log survived too: one `certificate.issued` entry per certificate (no entry
    // without its certificate, no certificate without its entry), gapless, and the stored tree
    // reproduces the root recomputed from the entries themselves.
    let entries = sqlx::query("SELECT seq, entry FROM audit_entries ORDER BY seq")
        .fetch_all(pool)
        .await
        .unwrap();
    let size = store.audit_size().await.unwrap();
    assert_eq!(entries.len() as u64, size);
    let mut frontier = sigil_audit::tree::Frontier::default();
    let mut logged: HashMap<String, usize> = HashMap::new();
    for (i, row) in entries.iter().enumerate() {
        let text: String = row.try_get("entry").unwrap();
        let entry = sigil_audit::AuditEntry::from_canonical(&text).unwrap();
        assert_eq!(entry.seq, i as u64);
        if entry.action == "certificate.issued" {
            let serial = entry
                .subject
                .strip_prefix("certificate:")
                .unwrap()
                .to_owned();
            *logged.entry(serial).or_default() += 1;
        }
        frontier.push(sigil_audit::tree::leaf_hash(&text));
    }
    assert_eq!(logged.len(), rows.len(), "one entry per certificate");
    assert!(logged.values().all(|n| *n == 1));
    assert!(by_serial.keys().all(|s| logged.contains_key(s)));
    assert_eq!(store.audit_root(size).await.unwrap(), frontier.root());

    store.close().await;
    if let Some(u) = pg_url {
        common::drop_postgres(&u).await;
    }
}
both_backends!(kill_9_during_issuance_burst);

fn sha256(data: &[u8]) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data)
        .as_ref()
        .to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
