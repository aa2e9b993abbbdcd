//! What the audit tests share: a writer on a real SQLite file in a temporary
//! directory, and ways to wait for it, stop it and look inside.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sluice_shared::audit::AuditEntry;

use crate::config::{AuditConfig, Durability};
use crate::governance::audit::sink::AuditSink;
use crate::governance::audit::verify::{VerifyReport, verify_chain};
use crate::governance::store::Store;
use crate::governance::store::sqlite::SqliteStore;

pub(super) fn config(
    dir: &tempfile::TempDir,
    durability: Durability,
    flush_ms: u64,
) -> AuditConfig {
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
pub(super) async fn start(
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

pub(super) async fn sink(
    dir: &tempfile::TempDir,
    durability: Durability,
    flush_interval_ms: u64,
) -> (Arc<dyn Store>, AuditSink, tokio_util::task::TaskTracker) {
    let (_, store, sink, tasks) = start(dir, config(dir, durability, flush_interval_ms)).await;
    (store, sink, tasks)
}

pub(super) async fn stop(sink: AuditSink, tasks: tokio_util::task::TaskTracker) {
    sink.shutdown();
    tasks.close();
    tasks.wait().await;
}

/// Strict mode: submits and waits until committed.
pub(super) async fn submit_committed(sink: &AuditSink, entry: AuditEntry) {
    let ack = sink.submit(entry).expect("strict mode returns an ack");
    tokio::time::timeout(Duration::from_secs(30), ack)
        .await
        .expect("acknowledged")
        .unwrap();
}

pub(super) async fn verify(store: &dyn Store) -> VerifyReport {
    verify_chain(store).await.unwrap()
}

pub(super) async fn sql(store: &SqliteStore, statement: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(statement.to_owned()))
        .execute(store.pool())
        .await
        .unwrap();
}

/// Writes `entries` as a spill file moved aside for import (as `Spill::take` names it).
pub(super) fn importing_file(dir: &tempfile::TempDir, entries: &[AuditEntry]) -> PathBuf {
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

pub(super) fn key_file(dir: &tempfile::TempDir) -> String {
    let path = dir.path().join("audit.key");
    std::fs::write(&path, "9f".repeat(32)).unwrap();
    format!("file:{}", path.display())
}

pub(super) fn keyed(dir: &tempfile::TempDir) -> AuditConfig {
    AuditConfig {
        hmac_key: Some(key_file(dir)),
        ..config(dir, Durability::Strict, 0)
    }
}
