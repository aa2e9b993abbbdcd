use sluice_shared::audit::{AuditEntry, ChainVerifier, GENESIS_HASH, canonical_json, chain_hash};

use super::SqliteStore;
use super::migrations::MIGRATIONS;
use crate::governance::model::ScopeKind;
use crate::governance::store::{AuditDuplicates, ChainedRecord, Store, StoreError, UsageGroup};

fn entry(request_id: &str, cost_micros: u64) -> AuditEntry {
    AuditEntry {
        request_id: request_id.into(),
        ts_ms: 1_700_000_000_000,
        source: "gateway".into(),
        key_id: Some("key1".into()),
        api: "chat_completions".into(),
        status: 200,
        outcome: "ok".into(),
        cost_micros,
        priced: true,
        ..Default::default()
    }
}

#[cfg(unix)]
fn mode(path: &str) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// The review finding: the database and its WAL were created 0644 (minus the umask).
#[cfg(unix)]
#[tokio::test]
async fn database_wal_and_shm_are_owner_only() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("g.db").to_string_lossy().into_owned();
    let store = SqliteStore::open(&db, false).await.unwrap();
    store
        .insert_org(crate::governance::model::Org {
            id: "o".into(),
            name: "o".into(),
            created_ms: 0,
        })
        .await
        .unwrap();
    for path in [db.clone(), format!("{db}-wal"), format!("{db}-shm")] {
        assert_eq!(mode(&path), 0o600, "{path}: {:o}", mode(&path));
    }
}

/// What the above relies on for WAL files SQLite creates later (after the last
/// connection closed and removed them): SQLite's unix VFS creates `-wal` and `-shm`
/// with the database file's permissions. 0640 differs from any umask-derived default.
#[cfg(unix)]
#[test]
fn sqlite_gives_wal_and_shm_the_database_files_mode() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("m.db").to_string_lossy().into_owned();
    std::fs::write(&db, b"").unwrap();
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o640)).unwrap();
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (x); INSERT INTO t VALUES (1);")
        .unwrap();
    for path in [format!("{db}-wal"), format!("{db}-shm")] {
        assert_eq!(mode(&path), 0o640, "{path}: {:o}", mode(&path));
    }
}

/// SQLite reuses an existing `-wal` as it is: one left readable from before the
/// database was `chmod 600`ed loses what the database lacks.
#[cfg(unix)]
#[tokio::test]
async fn a_leftover_wal_loses_permissions_the_database_lacks() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.db").to_string_lossy().into_owned();
    std::fs::write(&db, b"").unwrap();
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    // A connection kept open keeps its WAL (with content) in place.
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (x); INSERT INTO t VALUES (1);")
        .unwrap();
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(mode(&format!("{db}-wal")), 0o644);
    let _store = SqliteStore::open(&db, false).await.unwrap();
    assert_eq!(mode(&format!("{db}-wal")), 0o600);
    assert_eq!(mode(&format!("{db}-shm")), 0o600);
    drop(conn);
}

/// A database from before migration 3 that already holds a request id twice (a spill
/// import repeated after a crash): the migration must not fail on it, the store reports
/// it, spend and usage count it once, and no further duplicate gets in.
#[tokio::test]
async fn migration_keeps_old_duplicates_out_of_spend_and_reports_them() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("old.db").to_string_lossy().into_owned();
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_ms INTEGER NOT NULL); \
             INSERT INTO schema_migrations VALUES (1, 0), (2, 0);",
        )
        .unwrap();
        for (_, sql) in &MIGRATIONS[..2] {
            conn.execute_batch(sql).unwrap();
        }
        let mut prev = GENESIS_HASH.to_owned();
        let rows = [
            entry("a", 100),
            entry("b", 10),
            entry("a", 100),
            entry("c", 1),
        ];
        for (i, e) in rows.iter().enumerate() {
            let canonical = String::from_utf8(canonical_json(e)).unwrap();
            let hash = chain_hash(&prev, canonical.as_bytes());
            conn.execute(
                "INSERT INTO audit (seq, ts_ms, request_id, key_id, status, cost_micros, input_tokens, output_tokens, record, prev_hash, hash) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, 0, ?7, ?8, ?9)",
                rusqlite::params![
                    i as i64 + 1,
                    e.ts_ms,
                    e.request_id,
                    e.key_id,
                    e.status as i64,
                    e.cost_micros as i64,
                    canonical,
                    prev,
                    hash
                ],
            )
            .unwrap();
            prev = hash;
        }
        conn.execute(
            "INSERT INTO audit_head (id, seq, hash) VALUES (1, 4, ?1)",
            [&prev],
        )
        .unwrap();
    }

    let store = SqliteStore::open(&db, false).await.unwrap();
    assert_eq!(walk_chain(&store).await, Ok(4));
    let dups = store.audit_duplicates(10).await.unwrap();
    assert_eq!(
        dups,
        AuditDuplicates {
            request_ids: 1,
            extra_records: 1,
            examples: vec!["a".into()],
            unmatched: vec![],
        }
    );

    let spend = store
        .spend_buckets(ScopeKind::Key, "key1".into(), 0, 86_400_000)
        .await
        .unwrap();
    assert_eq!(spend.iter().map(|(_, m)| m).sum::<u64>(), 111);
    let usage = store
        .usage(UsageGroup::Key, false, 0, i64::MAX)
        .await
        .unwrap();
    assert_eq!(usage[0].requests, 3);

    // Imports from now on: the unique index refuses a second imported record for an
    // id; lookups find imported records by id and older ones by time.
    let mut appender = store.audit_appender().unwrap();
    let chained = |e: AuditEntry, seq: u64, prev: &str| {
        let canonical = String::from_utf8(canonical_json(&e)).unwrap();
        ChainedRecord {
            seq,
            prev_hash: prev.to_owned(),
            hash: chain_hash(prev, canonical.as_bytes()),
            entry: e,
            canonical,
            mac: None,
            imported: true,
        }
    };
    let x = chained(entry("x", 5), 5, &prev_hash(&store).await);
    appender.append(std::slice::from_ref(&x), None).unwrap();
    let again = chained(entry("x", 5), 6, &x.hash);
    assert!(matches!(
        appender.append(&[again], None),
        Err(StoreError::DuplicateRequestId)
    ));
    let ts = entry("a", 0).ts_ms;
    let found = appender
        .stored_records(&[("a", ts), ("x", ts), ("zzz", ts)])
        .unwrap();
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(
        found["a"],
        String::from_utf8(canonical_json(&entry("a", 100))).unwrap()
    );
    assert_eq!(found["x"], x.canonical);
    assert_eq!(walk_chain(&store).await, Ok(5));

    // Marking the original as a duplicate too would hide its spend: the store names it
    // (for `audit verify` to report).
    sqlx::query("UPDATE audit SET dup_seq = seq WHERE seq = 1")
        .execute(store.pool())
        .await
        .unwrap();
    let dups = store.audit_duplicates(10).await.unwrap();
    assert_eq!(dups.unmatched, vec![1], "{dups:?}");
}

/// Walks the stored chain with the shared verifier (plain chain): the records checked,
/// or the break. `audit verify` itself belongs to the audit module, which imports the
/// store, not the other way round.
async fn walk_chain(store: &SqliteStore) -> Result<u64, String> {
    let mut verifier = ChainVerifier::default();
    for row in store.audit_chain(0, 1000).await.unwrap() {
        verifier
            .check(row.seq, &row.prev_hash, &row.canonical, &row.hash)
            .map_err(|e| e.to_string())?;
    }
    let head = store.audit_head().await.unwrap();
    verifier
        .finish(head.seq, &head.hash, None)
        .map_err(|e| e.to_string())?;
    Ok(verifier.checked)
}

async fn prev_hash(store: &SqliteStore) -> String {
    store.audit_head().await.unwrap().hash
}
