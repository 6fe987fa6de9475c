//! The stored audit log against an in-memory model: whatever the batch sizes, sequence numbers
//! are gapless, the stored tree has the root of the entries as they read back, and every proof
//! the store builds verifies. On SQLite, and on PostgreSQL when SIGIL_TEST_POSTGRES_URL is set.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use serde_json::json;
use sqlx::Connection;
use time::OffsetDateTime;

use sigil_audit::{Actor, AuditEntry, AuditEvent, Outcome, tree};
use sigil_store::{AuditQuery, Store};

fn event(n: u64, device: Option<&str>) -> AuditEvent {
    let mut details = json!({"n": n});
    if let Some(d) = device {
        details["device"] = json!(d);
    }
    AuditEvent::new(
        OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(n as i64),
        Actor::system(if n.is_multiple_of(2) { "even" } else { "odd" }),
        if n.is_multiple_of(3) {
            "thing.made"
        } else {
            "other.done"
        },
        format!("thing:{n}"),
        Outcome::Success,
        details,
    )
}

async fn check(store: &Store, batches: &[usize]) {
    let mut frontier = tree::Frontier::default();
    let mut roots = Vec::new();
    let mut n = 0u64;
    for &batch in batches {
        let events = (n..n + batch as u64)
            .map(|i| event(i, i.is_multiple_of(5).then_some("dev-1")))
            .collect();
        let seqs = store.append_audit(events).await.unwrap();
        assert_eq!(seqs, (n..n + batch as u64).collect::<Vec<_>>());
        n += batch as u64;
        for (entry, leaf) in store.audit_range(n - batch as u64, n).await.unwrap() {
            let parsed = AuditEntry::from_canonical(&entry.entry).unwrap();
            assert_eq!(parsed.seq, entry.seq);
            assert_eq!(leaf, Some(tree::leaf_hash(&entry.entry)));
            frontier.push(tree::leaf_hash(&entry.entry));
        }
        assert_eq!(store.audit_size().await.unwrap(), n);
        assert_eq!(store.audit_root(n).await.unwrap(), frontier.root());
        roots.push((n, frontier.root()));
    }
    // Proofs against every intermediate size.
    for &(size, root) in &roots {
        for seq in [0, size / 3, size / 2, size - 1] {
            let (leaf, proof) = store.audit_inclusion_proof(seq, size).await.unwrap();
            tree::verify_inclusion(&proof, size, root, seq, leaf).unwrap();
        }
        for &(old, old_root) in roots.iter().filter(|(s, _)| *s <= size) {
            let proof = store.audit_consistency_proof(old, size).await.unwrap();
            tree::verify_consistency(&proof, old, old_root, size, root).unwrap();
        }
    }
    // Out-of-range proofs are errors, not panics.
    assert!(store.audit_inclusion_proof(n, n).await.is_err());
    assert!(store.audit_consistency_proof(n, n + 1).await.is_err());
    // Queries see what was written.
    let q = AuditQuery {
        device: Some("dev-1".into()),
        limit: 500,
        ..AuditQuery::default()
    };
    let found = store.audit_entries(&q).await.unwrap();
    assert_eq!(found.len() as u64, n.div_ceil(5).min(500));
    let q = AuditQuery {
        action: Some("thing.".into()),
        actor: Some("even".into()),
        newest_first: true,
        limit: 3,
        ..AuditQuery::default()
    };
    for e in store.audit_entries(&q).await.unwrap() {
        assert!(e.seq.is_multiple_of(6));
    }
}

async fn sqlite_store(dir: &tempfile::TempDir) -> Store {
    Store::open(&format!("sqlite://{}", dir.path().join("a.db").display()))
        .await
        .unwrap()
}

#[tokio::test]
async fn batches_across_statement_and_subtree_boundaries() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(&dir).await;
    // 1, then sizes that cross the 100-row statement chunks and power-of-two subtrees.
    check(&store, &[1, 1, 2, 99, 100, 101, 255, 1, 1000, 7]).await;
    store.close().await;
}

#[tokio::test]
async fn postgres_matches_the_model() {
    let Ok(base) = std::env::var("SIGIL_TEST_POSTGRES_URL") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the PostgreSQL variant"
        );
        return;
    };
    sqlx::any::install_default_drivers();
    let name = format!("sigil_store_audit_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::AnyConnection::connect(&base).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .unwrap();
    let url = format!("{}/{name}", base.rsplit_once('/').unwrap().0);
    let store = Store::open(&url).await.unwrap();
    check(&store, &[1, 1, 2, 99, 100, 101, 255, 1, 1000, 7]).await;
    store.close().await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE {name} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await
    .unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]
    #[test]
    fn any_batching_gives_the_same_tree(batches in proptest::collection::vec(1usize..300, 1..8)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let store = sqlite_store(&dir).await;
            check(&store, &batches).await;
            store.close().await;
        });
    }
}
