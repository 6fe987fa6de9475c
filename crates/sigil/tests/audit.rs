//! The tamper-evident audit log, end to end: every change is logged atomically with it, the
//! checkpoints and proofs verify, and someone with direct database access cannot edit, delete,
//! reorder, truncate or rewrite the log without `sigil audit verify` naming what broke.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::Row;

use common::{Db, TestServer, fresh_csr_pem, ok, sigil};
use sigil_audit::{AuditEntry, Hash, LogVerifier, tree};

/// Products, devices, lifecycle changes, a certificate, a refused request and a failed login:
/// a little of everything the log records. Returns the device ids.
async fn activity(s: &TestServer, devices: usize) -> Vec<String> {
    let product = s
        .create_product(&format!("P-{}", uuid::Uuid::new_v4()))
        .await;
    let mut ids = Vec::new();
    for i in 0..devices {
        ids.push(
            s.create_device(&product, &format!("SN-{}-{i}", uuid::Uuid::new_v4()))
                .await,
        );
    }
    let (st, body) = s
        .post(
            &format!("/api/v1/devices/{}/certificates", ids[0]),
            json!({"csr": fresh_csr_pem()}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{body}");
    let (st, body) = s
        .post(&format!("/api/v1/devices/{}/activate", ids[0]), json!({}))
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    // Refused: a registered device cannot be resumed.
    let (st, _) = s
        .post(&format!("/api/v1/devices/{}/resume", ids[1]), json!({}))
        .await;
    assert_eq!(st, StatusCode::CONFLICT);
    let r = s
        .http
        .get(format!("{}/api/v1/devices", s.api))
        .bearer_auth("not-a-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    ids
}

async fn entries(s: &TestServer, query: &str) -> Vec<Value> {
    let (st, body) = s.get(&format!("/api/v1/audit/entries?{query}")).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    body["items"].as_array().unwrap().clone()
}

fn actions(items: &[Value]) -> Vec<&str> {
    items
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect()
}

async fn log_size(s: &TestServer) -> u64 {
    s.store().audit_size().await.unwrap()
}

async fn every_change_is_logged_and_searchable(db: Db) {
    let Some(s) = TestServer::start(db).await else {
        return;
    };
    let start = entries(&s, "limit=10").await;
    assert_eq!(
        actions(&start),
        [
            "ca.created",
            "audit_log.created",
            "token.created",
            "server.started",
            "crl.published",
            "token.used"
        ]
    );
    // A token's use is logged on its first request, then at most hourly: not once per request.
    assert_eq!(
        start[5]["details"]["first_request"],
        "GET /api/v1/audit/entries"
    );
    assert_eq!(
        start[5]["subject"],
        format!("token:{}", start[5]["actor"]["id"].as_str().unwrap())
    );
    assert_eq!(start[0]["actor"], json!({"kind": "system", "id": "sigil"}));

    let ids = activity(&s, 3).await;
    let device = entries(&s, &format!("device={}", ids[0])).await;
    assert_eq!(
        actions(&device),
        ["device.created", "certificate.issued", "device.activated"]
    );
    assert!(
        device
            .iter()
            .all(|e| e["actor"]["kind"] == "operator" && e["outcome"] == "success")
    );
    assert_eq!(device[0]["subject"], format!("device:{}", ids[0]));
    let issued = &device[1];
    assert!(
        issued["subject"]
            .as_str()
            .unwrap()
            .starts_with("certificate:")
    );
    assert_eq!(issued["details"]["device"], ids[0].as_str());
    assert!(issued["details"]["spki_sha256"].is_string(), "{issued}");
    assert_eq!(
        issued["details"]["device_state"],
        json!({"from": "registered", "to": "provisioned"})
    );

    let refused = entries(&s, &format!("device={}", ids[1])).await;
    assert_eq!(actions(&refused), ["device.created", "device.resume"]);
    assert_eq!(refused[1]["outcome"], "denied");
    assert!(
        refused[1]["details"]["reason"]
            .as_str()
            .unwrap()
            .contains("registered"),
        "{}",
        refused[1]
    );

    assert_eq!(entries(&s, "action=token.used").await.len(), 1);
    let failed = entries(&s, "action=auth.failed").await;
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["outcome"], "failure");
    assert_eq!(failed[0]["subject"], "api:GET /api/v1/devices");
    // The presented secret is never logged.
    assert!(!failed[0].to_string().contains("not-a-token"));

    // Prefix search, actor search, time window, paging, newest first.
    let all_device = entries(&s, "action=device.&limit=500").await;
    assert_eq!(all_device.len(), 3 + 1 + 1);
    let operator = device[0]["actor"]["id"].as_str().unwrap();
    let by_actor = entries(&s, &format!("actor={operator}&limit=500")).await;
    assert!(by_actor.iter().all(|e| e["actor"]["id"] == operator));
    assert!(by_actor.len() >= 7);
    let all = entries(&s, "limit=500").await;
    let size = log_size(&s).await;
    assert_eq!(all.len() as u64, size);
    for (i, e) in all.iter().enumerate() {
        assert_eq!(e["seq"], i as u64, "sequence numbers are gapless");
    }
    let newest = entries(&s, "order=desc&limit=2").await;
    assert_eq!(newest[0]["seq"], size - 1);
    let page = entries(&s, "after=2&limit=2").await;
    assert_eq!((page[0]["seq"].as_u64(), page.len()), (Some(3), 2));
    let t = all[4]["time"].as_str().unwrap();
    let before = entries(&s, &format!("until={t}&limit=500")).await;
    assert!(before.iter().all(|e| e["time"].as_str().unwrap() < t));
    assert!(entries(&s, &format!("since={t}&limit=500")).await.len() as u64 >= size - 4);

    // Bad queries are 400s that name the field.
    for (q, field) in [
        ("since=yesterday", "since"),
        ("limit=0", "limit"),
        ("order=sideways", "order"),
        ("colour=red", "colour"),
    ] {
        let (st, body) = s.get(&format!("/api/v1/audit/entries?{q}")).await;
        assert!(
            [StatusCode::BAD_REQUEST, StatusCode::UNPROCESSABLE_ENTITY].contains(&st),
            "{q}: {body}"
        );
        assert!(body["detail"].as_str().unwrap().contains(field), "{body}");
    }
    s.shutdown().await;
}
both_backends!(every_change_is_logged_and_searchable);

async fn checkpoints_and_proofs_verify(db: Db) {
    let Some(s) = TestServer::start(db).await else {
        return;
    };
    // The checkpoint and the verifier key are public, on the PKI listener.
    let note = s
        .http
        .get(format!("{}/audit/checkpoint", s.pki))
        .send()
        .await
        .unwrap();
    assert_eq!(note.status(), StatusCode::OK);
    assert!(
        note.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let first_note = note.text().await.unwrap();
    let vkey = s
        .http
        .get(format!("{}/audit/log.pub", s.pki))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        vkey.trim(),
        std::fs::read_to_string(s.data_dir().join("audit/log.pub"))
            .unwrap()
            .trim()
    );
    let verifier = LogVerifier::new(&vkey).unwrap();
    let first = verifier.open_checkpoint(first_note.as_bytes()).unwrap();
    assert_eq!(first.size, 5, "the start-up entries are signed at start");

    // C2SP tlog-checkpoint in a C2SP signed-note, line by line: origin, size, base64 root, blank
    // line, then one signature line `— <key name> <base64(key id || signature)>`.
    let root_pem = std::fs::read(s.data_dir().join("ca/root.crt")).unwrap();
    let der = x509_parser::pem::parse_x509_pem(&root_pem)
        .unwrap()
        .1
        .contents;
    let fp = hex(&aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &der).as_ref()[..4]);
    let origin = format!("sigil/{fp}/audit");
    let lines: Vec<&str> = first_note.split('\n').collect();
    assert_eq!(lines[0], origin);
    assert_eq!(lines[1], "5");
    assert_eq!(lines[2], first.root.to_string());
    assert_eq!(lines[3], "");
    let sig = lines[4]
        .strip_prefix(&format!("\u{2014} {origin} "))
        .unwrap();
    let sig = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, sig).unwrap();
    assert_eq!(sig.len(), 4 + 64, "key id and Ed25519 signature");
    assert_eq!((lines.len(), lines[5]), (6, ""), "ends with a newline");
    assert!(vkey.starts_with(&format!("{origin}+{}+", hex(&sig[..4]))));

    activity(&s, 3).await;
    let (st, _) = s.get("/api/v1/audit/checkpoint").await;
    assert_eq!(st, StatusCode::OK);
    let r = s
        .http
        .post(format!("{}/api/v1/audit/checkpoint", s.api))
        .bearer_auth(&s.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let second = verifier
        .open_checkpoint(r.text().await.unwrap().as_bytes())
        .unwrap();
    assert_eq!(second.size, log_size(&s).await);
    let served = s
        .http
        .get(format!("{}/audit/checkpoint", s.pki))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(served, second.note, "the PKI listener serves the newest");

    // Inclusion proof for every entry, checked against the signed root; the leaf is SHA-256(0x00
    // || the entry exactly as listed).
    let all = entries(&s, "limit=500").await;
    for e in &all {
        let seq = e["seq"].as_u64().unwrap();
        let (st, p) = s
            .get(&format!("/api/v1/audit/proof/inclusion?seq={seq}"))
            .await;
        assert_eq!(st, StatusCode::OK, "{p}");
        assert_eq!(p["size"], second.size);
        assert_eq!(p["checkpoint"], second.note);
        let leaf = tree::leaf_hash(&e.to_string());
        assert_eq!(p["leaf_hash"], leaf.to_string());
        let proof = hashes(&p["proof"]);
        assert!(proof.len() <= 64);
        tree::verify_inclusion(&proof, second.size, second.root, seq, leaf).unwrap();
        assert!(tree::verify_inclusion(&proof, second.size, first.root, seq, leaf).is_err());
    }
    // Consistency: the first checkpoint's tree is a prefix of the second's.
    let (st, c) = s
        .get(&format!(
            "/api/v1/audit/proof/consistency?from={}&to={}",
            first.size, second.size
        ))
        .await;
    assert_eq!(st, StatusCode::OK, "{c}");
    tree::verify_consistency(
        &hashes(&c["proof"]),
        first.size,
        first.root,
        second.size,
        second.root,
    )
    .unwrap();
    // Out-of-range requests are refused, not answered with garbage.
    for q in [
        format!("inclusion?seq={}", second.size),
        format!("inclusion?seq=0&size={}", second.size + 100),
        "inclusion?seq=-1".into(),
        format!("consistency?from={}&to=2", second.size),
    ] {
        let (st, body) = s.get(&format!("/api/v1/audit/proof/{q}")).await;
        assert!(
            [StatusCode::BAD_REQUEST, StatusCode::UNPROCESSABLE_ENTITY].contains(&st),
            "{q}: {body}"
        );
    }
    // The audit API needs a token like every other route.
    let r = s
        .http
        .get(format!("{}/api/v1/audit/entries", s.api))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    s.shutdown().await;
}
both_backends!(checkpoints_and_proofs_verify);

async fn checkpoints_are_signed_periodically(db: Db) {
    let Some(s) = TestServer::start_with(db, |c| {
        c.checkpoint_interval = std::time::Duration::from_millis(200);
    })
    .await
    else {
        return;
    };
    let served = || async {
        s.http
            .get(format!("{}/audit/checkpoint", s.pki))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let verifier =
        LogVerifier::new(&std::fs::read_to_string(s.data_dir().join("audit/log.pub")).unwrap())
            .unwrap();
    let before = verifier.open_checkpoint(served().await.as_bytes()).unwrap();
    s.create_product("P").await;
    // No one asks for a checkpoint: the timer signs one that covers the new entries.
    let size = log_size(&s).await;
    let mut latest = before.clone();
    for _ in 0..50 {
        latest = verifier.open_checkpoint(served().await.as_bytes()).unwrap();
        if latest.size >= size {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        latest.size >= size && latest.size > before.size,
        "{latest:?}"
    );
    s.shutdown().await;
}
both_backends!(checkpoints_are_signed_periodically);

fn hashes(v: &Value) -> Vec<Hash> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|h| Hash::parse_hash(h.as_str().unwrap()).unwrap())
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn failed(out: Output) -> String {
    assert!(
        !out.status.success(),
        "expected failure; stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Export the log with the CLI and verify it offline against `kept`.
fn export_and_verify(s: &TestServer, name: &str, kept: &Path) -> Output {
    let file = s.dir.path().join(name);
    ok(sigil(
        s,
        &["audit", "export", "--out", file.to_str().unwrap()],
    ));
    sigil(
        s,
        &[
            "audit",
            "verify",
            file.to_str().unwrap(),
            "--log-key",
            s.data_dir().join("audit/log.pub").to_str().unwrap(),
            "--checkpoint",
            kept.to_str().unwrap(),
        ],
    )
}

#[derive(Debug, Clone, Copy)]
enum Tamper {
    /// Change one field of one entry.
    EditField,
    /// Change one field and also the stored leaf hash, so the row looks self-consistent.
    EditFieldAndLeaf,
    DeleteRow,
    SwapRows,
    /// Remove the newest entries (and every trace of them: hashes, head, checkpoints).
    TruncateTail,
    /// Rewrite the whole log consistently (every entry, every hash) and drop the checkpoints,
    /// which the attacker cannot re-sign.
    RewriteWithFreshRoot,
}

async fn exec(s: &TestServer, sql: &str) {
    let mut conn = s.store().pool().acquire().await.unwrap();
    if s.db == Db::Sqlite {
        // SQLite checks DDL against the connection's cached schema when it prepares the
        // statement; a read first makes a pooled connection pick up schema changes made on
        // another one.
        sqlx::query("SELECT COUNT(*) FROM sqlite_master")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
    }
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(&mut *conn)
        .await
        .unwrap();
}

async fn entry_text(s: &TestServer, seq: u64) -> String {
    sqlx::query("SELECT entry FROM audit_entries WHERE seq = $1")
        .bind(seq as i64)
        .fetch_one(s.store().pool())
        .await
        .unwrap()
        .get("entry")
}

async fn set_entry(s: &TestServer, seq: u64, text: &str) {
    sqlx::query("UPDATE audit_entries SET entry = $1 WHERE seq = $2")
        .bind(text.to_owned())
        .bind(seq as i64)
        .execute(s.store().pool())
        .await
        .unwrap();
}

/// Recompute every stored hash from the entries as they now are.
async fn rehash_everything(s: &TestServer) {
    let rows = sqlx::query("SELECT entry FROM audit_entries ORDER BY seq")
        .fetch_all(s.store().pool())
        .await
        .unwrap();
    let mut hashes = tree::Hashes::new();
    for (seq, row) in rows.iter().enumerate() {
        let text: String = row.get("entry");
        tree::append(seq as u64, &[tree::leaf_hash(&text)], &mut hashes).unwrap();
    }
    exec(s, "DELETE FROM audit_hashes").await;
    for (idx, hash) in hashes {
        sqlx::query("INSERT INTO audit_hashes (idx, hash) VALUES ($1, $2)")
            .bind(idx as i64)
            .bind(hash.0.to_vec())
            .execute(s.store().pool())
            .await
            .unwrap();
    }
}

async fn tamper(s: &TestServer, how: Tamper, target: u64) {
    match how {
        Tamper::EditField | Tamper::EditFieldAndLeaf => {
            let text = entry_text(s, target).await;
            let edited = text.replace(r#""outcome":"success""#, r#""outcome":"failure""#);
            assert_ne!(text, edited);
            set_entry(s, target, &edited).await;
            if let Tamper::EditFieldAndLeaf = how {
                sqlx::query("UPDATE audit_hashes SET hash = $1 WHERE idx = $2")
                    .bind(tree::leaf_hash(&edited).0.to_vec())
                    .bind(tree::leaf_index(target) as i64)
                    .execute(s.store().pool())
                    .await
                    .unwrap();
            }
        }
        Tamper::DeleteRow => {
            exec(
                s,
                &format!("DELETE FROM audit_entries WHERE seq = {target}"),
            )
            .await;
        }
        Tamper::SwapRows => {
            let (a, b) = (entry_text(s, target).await, entry_text(s, target + 1).await);
            set_entry(s, target, &b).await;
            set_entry(s, target + 1, &a).await;
        }
        Tamper::TruncateTail => {
            exec(
                s,
                &format!("DELETE FROM audit_entries WHERE seq >= {target}"),
            )
            .await;
            exec(s, &format!("UPDATE audit_head SET size = {target}")).await;
            exec(
                s,
                &format!("DELETE FROM audit_checkpoints WHERE size > {target}"),
            )
            .await;
            rehash_everything(s).await;
        }
        Tamper::RewriteWithFreshRoot => {
            // Rewrite history: entry `target` never happened. Later entries are renumbered and
            // stay canonical, so the rewritten log is internally perfect.
            let rows = sqlx::query("SELECT entry FROM audit_entries ORDER BY seq")
                .fetch_all(s.store().pool())
                .await
                .unwrap();
            let mut kept: Vec<AuditEntry> = rows
                .iter()
                .map(|r| AuditEntry::from_canonical(&r.get::<String, _>("entry")).unwrap())
                .collect();
            kept.remove(target as usize);
            exec(s, "DELETE FROM audit_entries").await;
            for (seq, mut e) in kept.into_iter().enumerate() {
                e.seq = seq as u64;
                sqlx::query(
                    "INSERT INTO audit_entries (seq, recorded_at, actor_id, action, device_id, entry) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(seq as i64)
                .bind(e.time.clone())
                .bind(e.actor.id.clone())
                .bind(e.action.clone())
                .bind(e.device().map(str::to_owned))
                .bind(e.to_canonical().unwrap())
                .execute(s.store().pool())
                .await
                .unwrap();
            }
            let size = log_size(s).await - 1;
            exec(s, &format!("UPDATE audit_head SET size = {size}")).await;
            exec(s, "DELETE FROM audit_checkpoints").await;
            rehash_everything(s).await;
        }
    }
}

/// Keep a checkpoint, keep working, tamper, and check that the offline verifier fails against
/// the kept checkpoint with `expected` in its message.
async fn tampering_is_detected(db: Db, how: Tamper, expected: &[&str]) {
    let Some(s) = TestServer::start(db).await else {
        return;
    };
    activity(&s, 4).await;
    let kept = s.dir.path().join("kept.checkpoint");
    let out = ok(sigil(
        &s,
        &[
            "audit",
            "checkpoint",
            "--sign",
            "--out",
            kept.to_str().unwrap(),
        ],
    ));
    let kept_size = log_size(&s).await;
    assert!(
        out.contains(&format!("checkpoint of {kept_size} entries")),
        "{out}"
    );
    activity(&s, 2).await;
    let intact = ok(export_and_verify(&s, "before.jsonl", &kept));
    assert!(intact.contains("OK:"), "{intact}");
    assert!(intact.contains(&format!(
        "consistent with your checkpoint of {kept_size} entries"
    )));

    // Targets well inside what the kept checkpoint covers.
    let target = match how {
        Tamper::TruncateTail => kept_size - 3,
        _ => kept_size / 2,
    };
    tamper(&s, how, target).await;
    let report = failed(export_and_verify(&s, "after.jsonl", &kept));
    for needle in expected {
        let needle = needle.replace("{target}", &target.to_string());
        let needle = needle.replace("{next}", &(target + 1).to_string());
        let needle = needle.replace("{kept}", &kept_size.to_string());
        assert!(
            report.contains(&needle),
            "{how:?}: expected `{needle}` in:\n{report}"
        );
    }
    assert!(report.contains("verification FAILED"), "{report}");

    // The server itself noticed when it tried to sign past what it signed before.
    if matches!(how, Tamper::TruncateTail | Tamper::RewriteWithFreshRoot) {
        let r = s
            .http
            .get(format!("{}/healthz", s.pki))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(r.text().await.unwrap().contains("integrity"));
        let (st, body) = s.post("/api/v1/audit/checkpoint", json!({})).await;
        assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    }
    s.shutdown().await;
}

async fn edited_field(db: Db) {
    tampering_is_detected(
        db,
        Tamper::EditField,
        &["entry {target}: its content does not match the hash recorded"],
    )
    .await
}
both_backends!(edited_field);

async fn edited_field_and_leaf_hash(db: Db) {
    // The row is self-consistent, so only the signed roots catch it: the verifier names the
    // range between the last root that matched and the first that does not.
    tampering_is_detected(
        db,
        Tamper::EditFieldAndLeaf,
        &[
            "do not hash to the root in your checkpoint for size {kept}",
            "the log was rewritten",
        ],
    )
    .await
}
both_backends!(edited_field_and_leaf_hash);

async fn deleted_row(db: Db) {
    tampering_is_detected(
        db,
        Tamper::DeleteRow,
        &["entry {target}: found entry {next} in its place"],
    )
    .await
}
both_backends!(deleted_row);

async fn swapped_rows(db: Db) {
    tampering_is_detected(
        db,
        Tamper::SwapRows,
        &[
            "entry {target}: found entry {next} in its place",
            "reordered",
        ],
    )
    .await
}
both_backends!(swapped_rows);

async fn truncated_tail(db: Db) {
    tampering_is_detected(
        db,
        Tamper::TruncateTail,
        &[
            "entry {target}: missing: your checkpoint covers {kept} entries",
            "truncated",
        ],
    )
    .await
}
both_backends!(truncated_tail);

async fn rewritten_with_fresh_root(db: Db) {
    tampering_is_detected(
        db,
        Tamper::RewriteWithFreshRoot,
        &[
            "entries 0..{kept} do not hash to the root in your checkpoint",
            "the log was rewritten",
        ],
    )
    .await
}
both_backends!(rewritten_with_fresh_root);

/// A trigger that aborts writes to `table`: the failure injected between the change and its
/// entry (both happen in one transaction, in either order).
async fn inject_fault(s: &TestServer, table: &str, op: &str) {
    let sql = match s.db {
        Db::Sqlite => format!(
            "CREATE TRIGGER inject_fault BEFORE {op} ON {table} BEGIN SELECT RAISE(ABORT, 'injected fault'); END"
        ),
        Db::Postgres => format!(
            "CREATE OR REPLACE FUNCTION inject_fault() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN RAISE EXCEPTION 'injected fault'; END $$; \
             CREATE TRIGGER inject_fault BEFORE {op} ON {table} FOR EACH ROW EXECUTE FUNCTION inject_fault()"
        ),
    };
    exec(s, &sql).await;
}

async fn clear_fault(s: &TestServer, table: &str) {
    let sql = match s.db {
        Db::Sqlite => "DROP TRIGGER inject_fault".to_owned(),
        Db::Postgres => format!("DROP TRIGGER inject_fault ON {table}"),
    };
    exec(s, &sql).await;
    if s.db == Db::Sqlite {
        let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'trigger'")
            .fetch_one(s.store().pool())
            .await
            .unwrap()
            .get("n");
        assert_eq!(n, 0, "fault trigger removed");
    }
}

async fn device_state(s: &TestServer, id: &str) -> String {
    let (_, d) = s.get(&format!("/api/v1/devices/{id}")).await;
    d["state"].as_str().unwrap().to_owned()
}

async fn no_entry_means_no_change(db: Db) {
    let Some(s) = TestServer::start(db).await else {
        return;
    };
    let product = s.create_product("P").await;
    let device = s.create_device(&product, "SN-1").await;
    let before = (
        s.count("products").await,
        s.count("devices").await,
        s.count("certificates").await,
        log_size(&s).await,
    );

    inject_fault(&s, "audit_entries", "INSERT").await;
    let (st, body) = s
        .post(
            "/api/v1/products",
            json!({"name": "Q", "manufacturer": "M", "support_end": "2031-01-01"}),
        )
        .await;
    assert_eq!(st, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    let (st, _) = s
        .post(
            "/api/v1/devices",
            json!({"product_id": product, "serial_number": "SN-2"}),
        )
        .await;
    assert_eq!(st, StatusCode::INTERNAL_SERVER_ERROR);
    let (st, _) = s
        .post(&format!("/api/v1/devices/{device}/retire"), json!({}))
        .await;
    assert_eq!(st, StatusCode::INTERNAL_SERVER_ERROR);
    let (st, _) = s
        .post(
            &format!("/api/v1/devices/{device}/certificates"),
            json!({"csr": fresh_csr_pem()}),
        )
        .await;
    assert_eq!(st, StatusCode::INTERNAL_SERVER_ERROR);
    clear_fault(&s, "audit_entries").await;

    let after = (
        s.count("products").await,
        s.count("devices").await,
        s.count("certificates").await,
        log_size(&s).await,
    );
    assert_eq!(before, after, "(products, devices, certificates, entries)");
    assert_eq!(device_state(&s, &device).await, "registered");
    assert_eq!(s.count("audit_entries").await as u64, after.3);

    // Once the fault is gone the same requests work, and the log is intact.
    let (st, _) = s
        .post(
            &format!("/api/v1/devices/{device}/certificates"),
            json!({"csr": fresh_csr_pem()}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    assert_log_verifies(&s).await;
    s.shutdown().await;
}
both_backends!(no_entry_means_no_change);

async fn no_change_means_no_entry(db: Db) {
    let Some(s) = TestServer::start(db).await else {
        return;
    };
    let product = s.create_product("P").await;
    let device = s.create_device(&product, "SN-1").await;

    for (table, op) in [
        ("devices", "INSERT"),
        ("devices", "UPDATE"),
        ("certificates", "INSERT"),
    ] {
        inject_fault(&s, table, op).await;
        let (st, body) = match (table, op) {
            ("devices", "INSERT") => {
                s.post(
                    "/api/v1/devices",
                    json!({"product_id": product, "serial_number": "SN-2"}),
                )
                .await
            }
            ("devices", _) => {
                s.post(&format!("/api/v1/devices/{device}/retire"), json!({}))
                    .await
            }
            _ => {
                s.post(
                    &format!("/api/v1/devices/{device}/certificates"),
                    json!({"csr": fresh_csr_pem()}),
                )
                .await
            }
        };
        assert_eq!(
            st,
            StatusCode::INTERNAL_SERVER_ERROR,
            "{table} {op}: {body}"
        );
        clear_fault(&s, table).await;
    }
    assert_eq!(s.count("devices").await, 1);
    assert_eq!(s.count("certificates").await, 0);
    assert_eq!(device_state(&s, &device).await, "registered");
    // No success entry for a change that did not happen; each attempt is logged as a failure.
    let all = entries(&s, "limit=500").await;
    let success: Vec<&str> = all
        .iter()
        .filter(|e| e["outcome"] == "success")
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        success.iter().filter(|a| **a == "device.created").count(),
        1
    );
    assert!(!success.contains(&"device.retired"));
    assert!(!success.contains(&"certificate.issued"));
    let failures: Vec<&str> = all
        .iter()
        .filter(|e| e["outcome"] == "failure")
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        failures,
        ["device.create", "device.retire", "certificate.issue"]
    );
    assert_log_verifies(&s).await;
    s.shutdown().await;
}
both_backends!(no_change_means_no_entry);

/// Export the log and verify it with only the public key.
async fn assert_log_verifies(s: &TestServer) {
    let file = s.dir.path().join("check.jsonl");
    ok(sigil(
        s,
        &["audit", "export", "--out", file.to_str().unwrap()],
    ));
    let out = ok(sigil(
        s,
        &[
            "audit",
            "verify",
            file.to_str().unwrap(),
            "--log-key",
            s.data_dir().join("audit/log.pub").to_str().unwrap(),
        ],
    ));
    let size = log_size(s).await;
    assert!(out.contains(&format!("OK: {size} entries")), "{out}");
}

fn tar(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("tar")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("tar on PATH");
    assert!(
        out.status.success(),
        "tar {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

async fn evidence_bundle(db: Db) {
    let Some(s) = TestServer::start(db).await else {
        return;
    };
    activity(&s, 2).await;
    let since = entries(&s, "limit=500").await.last().unwrap()["time"]
        .as_str()
        .unwrap()
        .to_owned();
    // A moment later: the period holds only what happens next.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let since = {
        let t = time::OffsetDateTime::parse(&since, &time::format_description::well_known::Rfc3339)
            .unwrap()
            + time::Duration::milliseconds(1);
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let devices = activity(&s, 3).await;
    let in_period = entries(&s, &format!("since={since}&limit=500")).await.len();
    assert!(in_period >= 8);
    let until = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();

    let bundle = s.dir.path().join("evidence.tar");
    let bundle_s = bundle.to_str().unwrap();
    ok(sigil(
        &s,
        &[
            "evidence", "export", "--since", &since, "--until", &until, "--out", bundle_s,
        ],
    ));
    let log_pub = s.data_dir().join("audit/log.pub");
    let log_pub_s = log_pub.to_str().unwrap();
    let out = ok(sigil(
        &s,
        &["evidence", "verify", bundle_s, "--log-key", log_pub_s],
    ));
    assert!(out.contains(&format!("{in_period} audit entries")), "{out}");

    // An ordinary tar reads it; the contents are what an auditor expects.
    let listing = tar(s.dir.path(), &["-tf", bundle_s]);
    let files: Vec<&str> = listing.lines().collect();
    for f in [
        "MANIFEST",
        "checkpoint",
        "audit/entries.jsonl",
        "audit/proofs.jsonl",
        "ca/root.crt",
        "ca/issuing.crt",
        "inventory/products.json",
        "inventory/devices.json",
        "inventory/certificates.json",
        "log.pub",
        "compliance/catalogue/VERSION",
        "compliance/catalogue/checks.toml",
        "compliance/catalogue/frameworks/eu-cra.toml",
        "compliance/eu-cra/posture.json",
        "compliance/eu-cra/history.json",
        "compliance/etsi-en-303-645/posture.json",
    ] {
        assert!(files.contains(&f), "{f} missing from {files:?}");
    }
    let unpacked = s.dir.path().join("unpacked");
    std::fs::create_dir(&unpacked).unwrap();
    tar(&unpacked, &["-xf", bundle_s]);
    let inventory: Value = serde_json::from_str(
        &std::fs::read_to_string(unpacked.join("inventory/devices.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(inventory.as_array().unwrap().len(), 2 + 3);
    let lines = std::fs::read_to_string(unpacked.join("audit/entries.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), in_period);
    assert!(lines.contains(&devices[0]));
    let manifest = std::fs::read_to_string(unpacked.join("MANIFEST")).unwrap();
    assert!(manifest.starts_with("sigil-evidence/1\n"), "{manifest}");
    // The compliance results carry the catalogue version the bundle's catalogue files hash to.
    let version = std::fs::read_to_string(unpacked.join("compliance/catalogue/VERSION")).unwrap();
    let posture: Value = serde_json::from_str(
        &std::fs::read_to_string(unpacked.join("compliance/eu-cra/posture.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(posture["catalogue_version"], version.trim());
    assert_eq!(posture["devices_evaluated"], 2 + 3);
    assert!(manifest.contains("compliance/eu-cra/posture.json"));
    // The CA certificate in the bundle is the one the data directory holds.
    assert_eq!(
        std::fs::read(unpacked.join("ca/root.crt")).unwrap(),
        std::fs::read(s.data_dir().join("ca/root.crt")).unwrap()
    );

    // Change one file and repack with tar: the verifier names the file.
    std::fs::write(unpacked.join("inventory/devices.json"), "[]\n").unwrap();
    let repacked = s.dir.path().join("repacked.tar");
    let names: Vec<&str> = files.clone();
    let mut args = vec!["-cf", repacked.to_str().unwrap()];
    args.extend(names);
    tar(&unpacked, &args);
    let report = failed(sigil(
        &s,
        &[
            "evidence",
            "verify",
            repacked.to_str().unwrap(),
            "--log-key",
            log_pub_s,
        ],
    ));
    assert!(
        report.contains("inventory/devices.json") && report.contains("changed"),
        "{report}"
    );
    // A bundle verified with another log's key fails on the manifest signature.
    let other = sigil_audit::LogKey::from_pkcs8(
        std::fs::read_to_string(&log_pub)
            .unwrap()
            .split('+')
            .next()
            .unwrap(),
        &sigil_audit::LogKey::generate_pkcs8().unwrap(),
    )
    .unwrap()
    .verifier_key();
    let report = failed(sigil(
        &s,
        &["evidence", "verify", bundle_s, "--log-key", &other],
    ));
    assert!(report.contains("MANIFEST"), "{report}");
    // Bad periods are refused by the server.
    let report = failed(sigil(
        &s,
        &[
            "evidence", "export", "--since", &until, "--until", &since, "--out", bundle_s,
        ],
    ));
    assert!(report.contains("since must be before until"), "{report}");
    s.shutdown().await;
}
both_backends!(evidence_bundle);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_reads_the_log() {
    let s = TestServer::start(Db::Sqlite).await.unwrap();
    let ids = activity(&s, 2).await;
    let tail = ok(sigil(&s, &["audit", "tail", "-n", "3"]));
    assert!(
        tail.contains("SEQ") && tail.contains("auth.failed"),
        "{tail}"
    );
    let search = ok(sigil(
        &s,
        &["audit", "search", "--device", &ids[0], "--json"],
    ));
    let found: Vec<Value> = search
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        actions(&found),
        ["device.created", "certificate.issued", "device.activated"]
    );
    let search = ok(sigil(
        &s,
        &["audit", "search", "--action", "device.", "--limit", "2"],
    ));
    assert!(search.contains("device.created"), "{search}");
    let note = ok(sigil(&s, &["audit", "checkpoint"]));
    assert!(note.starts_with("sigil/"), "{note}");
    // Verifying with a key that is not one is a clear error.
    let export: PathBuf = s.dir.path().join("e.jsonl");
    ok(sigil(
        &s,
        &["audit", "export", "--out", export.to_str().unwrap()],
    ));
    let err = failed(sigil(
        &s,
        &[
            "audit",
            "verify",
            export.to_str().unwrap(),
            "--log-key",
            "garbage",
        ],
    ));
    assert!(err.contains("--log-key"), "{err}");
    s.shutdown().await;
}
