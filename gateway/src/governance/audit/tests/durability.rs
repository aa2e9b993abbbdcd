//! Strict durability when the database refuses a record: the acknowledgement comes only
//! once the record is synced to the spill file, and is an error when it cannot be.

use std::time::Duration;

use super::support::{config, sql, start, stop, verify};
use crate::config::{AuditConfig, Durability};
use crate::governance::audit::bench::sample_entry;
use crate::governance::audit::job::AuditError;

/// Makes every audit insert fail, as a full disk or a corrupt page would.
const REFUSE_INSERTS: &str = "CREATE TRIGGER audit_refuses BEFORE INSERT ON audit \
     BEGIN SELECT RAISE(ABORT, 'refused by the test'); END";

/// The review finding: the commit failed, the spill (never fsynced) failed too, and the
/// acknowledgement said `Ok` all the same. Now it is an error naming both failures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_ack_fails_when_neither_the_database_nor_the_spill_file_takes_the_record() {
    let dir = tempfile::tempdir().unwrap();
    // A spill directory that cannot exist: its parent is a regular file.
    let blocker = dir.path().join("blocker");
    std::fs::write(&blocker, b"").unwrap();
    let config = AuditConfig {
        spill_path: Some(blocker.join("spill.jsonl").to_string_lossy().into_owned()),
        ..config(&dir, Durability::Strict, 0)
    };
    let (sqlite, store, sink, tasks) = start(&dir, config).await;
    sql(&sqlite, REFUSE_INSERTS).await;
    let entry = sample_entry(1);
    let request_id = entry.request_id.clone();
    let ack = sink.submit(entry).expect("strict mode returns an ack");
    let answer = tokio::time::timeout(Duration::from_secs(30), ack)
        .await
        .expect("answered");
    match answer {
        Err(AuditError::NotStored {
            request_id: id,
            commit,
            spill_path,
            ..
        }) => {
            assert_eq!(id, request_id);
            assert!(commit.contains("refused by the test"), "{commit}");
            assert!(spill_path.contains("blocker"), "{spill_path}");
        }
        other => panic!("expected NotStored, got {other:?}"),
    }
    stop(sink, tasks).await;
    assert_eq!(store.audit_head().await.unwrap().seq, 0);
}

/// The database refuses the record, the spill file takes it: the acknowledgement is
/// `Ok` only after the spill was fsynced, and the record reaches the database once it
/// accepts records again (imported at shutdown at the latest).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_ack_waits_for_a_synced_spill_when_the_database_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let (sqlite, store, sink, tasks) = start(&dir, config(&dir, Durability::Strict, 0)).await;
    sql(&sqlite, REFUSE_INSERTS).await;
    let ack = sink
        .submit(sample_entry(1))
        .expect("strict mode returns an ack");
    tokio::time::timeout(Duration::from_secs(30), ack)
        .await
        .expect("answered")
        .expect("durable in the spill file");
    assert_eq!(
        sink.spill().synced(),
        1,
        "fsynced before the acknowledgement"
    );
    assert_eq!(store.audit_head().await.unwrap().seq, 0);
    sql(&sqlite, "DROP TRIGGER audit_refuses").await;
    stop(sink, tasks).await;
    assert_eq!(store.audit_head().await.unwrap().seq, 1, "imported");
    let report = verify(store.as_ref()).await;
    assert!(report.ok, "{report:?}");
}
