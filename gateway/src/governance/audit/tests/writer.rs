//! The writer: acknowledgements, shutdown drain, idempotent spill imports.

use sluice_shared::audit::AuditEntry;

use super::support::{config, importing_file, sink, start, stop, submit_committed, verify};
use crate::config::{AuditConfig, Durability};
use crate::governance::audit::bench::sample_entry;

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
    assert!(report.ok, "{report:?}");
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
    assert!(report.ok, "{report:?}");
    assert_eq!(report.duplicates.request_ids, 0, "{report:?}");
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
    assert!(report.ok, "{report:?}");
    assert_eq!(report.duplicates.request_ids, 0, "{report:?}");
}
