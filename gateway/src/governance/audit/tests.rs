use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use sluice_shared::audit::AuditEntry;

use super::bench::sample_entry;
use super::config::{AuditConfig, Durability};
use super::sink::AuditSink;
use super::spill::Spill;
use crate::governance::store::Store;
use crate::governance::store::sqlite::SqliteStore;

fn config(dir: &tempfile::TempDir, durability: Durability, flush_ms: u64) -> AuditConfig {
    AuditConfig {
        durability,
        flush_interval_ms: flush_ms,
        spill_path: Some(
            dir.path()
                .join("spill.jsonl")
                .to_string_lossy()
                .into_owned(),
        ),
        ..AuditConfig::default()
    }
}

/// Opens the directory's database (again) and starts a writer on it.
async fn start(
    dir: &tempfile::TempDir,
    config: AuditConfig,
) -> (
    SqliteStore,
    Arc<dyn Store>,
    AuditSink,
    tokio_util::task::TaskTracker,
) {
    let db = dir.path().join("audit.db").to_string_lossy().into_owned();
    let strict = config.durability == Durability::Strict;
    let sqlite = SqliteStore::open(&db, strict).await.unwrap();
    let store: Arc<dyn Store> = Arc::new(sqlite.clone());
    let tasks = tokio_util::task::TaskTracker::new();
    let sink = AuditSink::start(store.clone(), config, &tasks)
        .await
        .unwrap();
    (sqlite, store, sink, tasks)
}

async fn sink(
    dir: &tempfile::TempDir,
    durability: Durability,
    flush_interval_ms: u64,
) -> (Arc<dyn Store>, AuditSink, tokio_util::task::TaskTracker) {
    let (_, store, sink, tasks) = start(dir, config(dir, durability, flush_interval_ms)).await;
    (store, sink, tasks)
}

async fn stop(sink: AuditSink, tasks: tokio_util::task::TaskTracker) {
    sink.shutdown();
    tasks.close();
    tasks.wait().await;
}

/// Strict mode: submits and waits until committed.
async fn submit_committed(sink: &AuditSink, entry: AuditEntry) {
    let ack = sink.submit(entry).expect("strict mode returns an ack");
    tokio::time::timeout(Duration::from_secs(30), ack)
        .await
        .expect("acknowledged")
        .unwrap();
}

async fn verify(store: &dyn Store) -> Value {
    crate::api::admin::verify_chain(store).await.unwrap()
}

async fn sql(store: &SqliteStore, statement: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(statement.to_owned()))
        .execute(store.pool())
        .await
        .unwrap();
}

/// Strict: each acknowledgement comes after its record is committed, and without
/// waiting out the (here one-minute) flush interval, which only buffered mode uses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_acknowledges_after_commit_without_the_flush_wait() {
    let dir = tempfile::tempdir().unwrap();
    let (store, sink, tasks) = sink(&dir, Durability::Strict, 60_000).await;
    for n in 0..3 {
        submit_committed(&sink, sample_entry(n)).await;
        let head = store.audit_head().await.unwrap();
        assert_eq!(head.seq, n + 1, "record {n} committed before its ack");
    }
    stop(sink, tasks).await;
}

/// Buffered: no ack; shutdown drains what is queued, chained in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buffered_records_are_committed_by_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let (store, sink, tasks) = sink(&dir, Durability::Buffered, 60_000).await;
    for n in 0..100 {
        assert!(sink.submit(sample_entry(n)).is_none());
    }
    stop(sink, tasks).await;
    assert_eq!(store.audit_head().await.unwrap().seq, 100);
    let report = verify(store.as_ref()).await;
    assert_eq!(report["ok"], true, "{report}");
}

/// Writes `entries` as a spill file moved aside for import (as `Spill::take` names it).
fn importing_file(dir: &tempfile::TempDir, entries: &[AuditEntry]) -> PathBuf {
    let path = dir.path().join(format!(
        "spill.jsonl.{}.importing",
        uuid::Uuid::now_v7().simple()
    ));
    let lines: String = entries
        .iter()
        .map(|e| serde_json::to_string(e).unwrap() + "\n")
        .collect();
    std::fs::write(&path, lines).unwrap();
    path
}

/// The review finding: killed during a spill import, after some of its chunks had
/// committed, the gateway restarts and imports the whole file again. Those records
/// must not be stored twice (nor their cost counted twice), and the chain must stay
/// gapless.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spill_import_after_a_crash_skips_records_already_committed() {
    let dir = tempfile::tempdir().unwrap();
    let entries: Vec<AuditEntry> = (0..5).map(sample_entry).collect();
    let config = AuditConfig {
        batch_max: 2,
        ..config(&dir, Durability::Buffered, 1)
    };
    // What the killed run left: the first chunks of the import committed (records
    // 0..3, imported as the writer imports them at start) ...
    importing_file(&dir, &entries[..3]);
    let (_, store, sink, tasks) = start(&dir, config.clone()).await;
    stop(sink, tasks).await;
    assert_eq!(store.audit_head().await.unwrap().seq, 3);
    // ... and the file it was reading still there, with all five.
    let importing = importing_file(&dir, &entries);

    // Restart: the writer imports it at start.
    let (_, store, sink, tasks) = start(&dir, config).await;
    stop(sink, tasks).await;
    assert!(
        !importing.exists(),
        "the import finished and removed the file"
    );
    assert_eq!(store.audit_head().await.unwrap().seq, 5);
    let report = verify(store.as_ref()).await;
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["duplicates"]["request_ids"], 0, "{report}");
    let usage = store
        .usage(
            crate::governance::store::UsageGroup::Org,
            false,
            0,
            i64::MAX,
        )
        .await
        .unwrap();
    assert_eq!(usage[0].requests, 5);
    assert!((usage[0].cost_usd - 5.0 * 220e-6).abs() < 1e-9, "{usage:?}");
}

/// A record repeated within a chunk, or in a later chunk, is stored once, and what
/// is left out takes no chain position.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_repeating_a_record_stores_it_once_without_a_gap() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (sample_entry(1), sample_entry(2), sample_entry(3));
    importing_file(&dir, &[a.clone(), b.clone(), a, c, b]);
    let config = AuditConfig {
        batch_max: 3,
        ..config(&dir, Durability::Buffered, 1)
    };
    let (_, store, sink, tasks) = start(&dir, config).await;
    stop(sink, tasks).await;
    assert_eq!(store.audit_head().await.unwrap().seq, 3);
    let report = verify(store.as_ref()).await;
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["duplicates"]["request_ids"], 0, "{report}");
}

fn key_file(dir: &tempfile::TempDir) -> String {
    let path = dir.path().join("audit.key");
    std::fs::write(&path, "9f".repeat(32)).unwrap();
    format!("file:{}", path.display())
}

fn keyed(dir: &tempfile::TempDir) -> AuditConfig {
    AuditConfig {
        hmac_key: Some(key_file(dir)),
        ..config(dir, Durability::Strict, 0)
    }
}

/// Six sealed records, then the attack: the last two deleted and the head pointed at
/// record 4 (with record 4's own MAC, the best an attacker without the key has).
async fn truncated_sealed_chain(dir: &tempfile::TempDir) -> (SqliteStore, Arc<dyn Store>) {
    let (sqlite, store, sink, tasks) = start(dir, keyed(dir)).await;
    for n in 0..6 {
        submit_committed(&sink, sample_entry(n)).await;
    }
    stop(sink, tasks).await;
    let report = verify(store.as_ref()).await;
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["mac"]["checked"], true, "{report}");
    assert_eq!(report["mac"]["sealed_records"], 6, "{report}");
    sql(
        &sqlite,
        "DELETE FROM audit WHERE seq > 4; \
         UPDATE audit_head SET seq = 4, hash = (SELECT hash FROM audit WHERE seq = 4), \
         mac = (SELECT mac FROM audit WHERE seq = 4)",
    )
    .await;
    (sqlite, store)
}

/// The review finding: a truncated tail with a rewritten head is a valid plain
/// chain; with the key, `audit verify` catches it, and without the key it says the
/// MACs were not checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hmac_key_detects_a_truncated_tail_and_rewritten_head() {
    let dir = tempfile::tempdir().unwrap();
    let (_, store) = truncated_sealed_chain(&dir).await;
    let report = verify(store.as_ref()).await;
    assert_eq!(report["ok"], false, "{report}");
    let error = report["error"].as_str().unwrap();
    assert!(
        error.contains("head's MAC does not match")
            && error.contains("the last record with a valid MAC is 4"),
        "{error}"
    );

    store.set_audit_key(None);
    let report = verify(store.as_ref()).await;
    assert_eq!(report["ok"], true, "the plain chain is intact: {report}");
    assert_eq!(report["mac"]["checked"], false, "{report}");
    assert_eq!(report["mac"]["records_with_mac"], 4, "{report}");
}

/// Restarted on the truncated chain, the writer must not seal over it (which would
/// hide the truncation): it starts a new seal, and verify names the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_on_a_truncated_chain_does_not_reseal_it() {
    let dir = tempfile::tempdir().unwrap();
    let (_, _) = truncated_sealed_chain(&dir).await;
    let (_, store, sink, tasks) = start(&dir, keyed(&dir)).await;
    submit_committed(&sink, sample_entry(10)).await;
    stop(sink, tasks).await;
    let report = verify(store.as_ref()).await;
    assert_eq!(report["ok"], false, "{report}");
    let error = report["error"].as_str().unwrap();
    assert!(
        error.contains("the seal restarts at record 5 although record 4 before it was sealed"),
        "{error}"
    );
}

/// A key configured on an existing chain seals it from the next record on; the
/// records before stay as they were and verify.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_configured_later_seals_the_chain_from_then_on() {
    let dir = tempfile::tempdir().unwrap();
    let (_, _, sink, tasks) = start(&dir, config(&dir, Durability::Strict, 0)).await;
    for n in 0..3 {
        submit_committed(&sink, sample_entry(n)).await;
    }
    stop(sink, tasks).await;
    let (_, store, sink, tasks) = start(&dir, keyed(&dir)).await;
    let report = verify(store.as_ref()).await;
    assert_eq!(report["ok"], true, "sealed at start: {report}");
    for n in 3..5 {
        submit_committed(&sink, sample_entry(n)).await;
    }
    stop(sink, tasks).await;
    let report = verify(store.as_ref()).await;
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["mac"]["sealed_from"], 4, "{report}");
    assert_eq!(report["mac"]["sealed_records"], 2, "{report}");
}

#[test]
fn hmac_key_is_a_secret_reference_of_at_least_32_bytes() {
    let env = crate::config::MapEnv::new([
        ("GOOD", "0123456789abcdef0123456789abcdef"),
        ("SHORT", "0123456789"),
    ]);
    let with = |r: &str| AuditConfig {
        hmac_key: Some(r.to_owned()),
        ..AuditConfig::default()
    };
    assert!(AuditConfig::default().chain_key(&env).unwrap().is_none());
    assert!(with("env:GOOD").chain_key(&env).unwrap().is_some());
    let err = with("pasted-0123456789abcdef0123456789abcdef")
        .chain_key(&env)
        .unwrap_err();
    assert!(
        err.starts_with("governance.audit.hmac_key") && !err.contains("pasted"),
        "{err}"
    );
    let err = with("env:SHORT").chain_key(&env).unwrap_err();
    assert!(
        err.contains("at least 32") && !err.contains("0123456789"),
        "{err}"
    );
    let parsed: AuditConfig = toml::from_str("hmac_key = \"env:GOOD\"").unwrap();
    assert_eq!(parsed.hmac_key.as_deref(), Some("env:GOOD"));
}

/// Spilled records are audit records: owner only, whatever the umask.
#[cfg(unix)]
#[test]
fn spill_files_are_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let spill = Spill {
        path: dir.path().join("spill.jsonl"),
        file: Mutex::new(()),
        pending: std::sync::atomic::AtomicBool::new(false),
    };
    spill.append(&sample_entry(1)).unwrap();
    let mode = std::fs::metadata(&spill.path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "spill file mode {mode:o}");
    let taken = spill.take().unwrap();
    assert_eq!(taken.len(), 1);
    let mode = std::fs::metadata(&taken[0]).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "file moved aside for import: {mode:o}");
}
