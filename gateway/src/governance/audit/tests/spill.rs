//! The spill file and the overflow path: the request path hands overflow to a thread
//! and never touches the file itself.

use std::sync::Arc;
use std::time::Duration;

use super::support::{config, start, stop, submit_committed, verify};
use crate::config::{AuditConfig, Durability};
use crate::governance::audit::bench::sample_entry;
use crate::governance::audit::job::AuditError;
use crate::governance::audit::spill::Spill;

/// Spilled records are audit records: owner only, whatever the umask; a directory the
/// spill creates too.
#[cfg(unix)]
#[test]
fn spill_files_are_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let spill = Spill::new(dir.path().join("new").join("spill.jsonl"));
    spill.append([&sample_entry(1)], true).unwrap();
    let mode = std::fs::metadata(spill.path())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "spill file mode {mode:o}");
    let mode = std::fs::metadata(dir.path().join("new"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700, "spill directory mode {mode:o}");
    assert_eq!(spill.synced(), 1);
    let taken = spill.take().unwrap();
    assert_eq!(taken.len(), 1);
    let mode = std::fs::metadata(&taken[0]).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "file moved aside for import: {mode:o}");
}

/// Buffered, a writer queue of 8 that the writer does not drain (it waits out a
/// one-minute flush after its first record).
fn overloaded(dir: &tempfile::TempDir, spill_dir: &str) -> AuditConfig {
    AuditConfig {
        channel_capacity: 8,
        spill_path: Some(
            dir.path()
                .join(spill_dir)
                .join("spill.jsonl")
                .to_string_lossy()
                .into_owned(),
        ),
        ..config(dir, Durability::Buffered, 60_000)
    }
}

/// Twice the queue's capacity: at least 7 records overflow, and all of them fit in the
/// overflow queue (as large as the writer's) whatever the overflow thread has done yet.
const RECORDS: u64 = 16;

/// The old request path wrote the spill file itself, and failed (losing the record) on
/// a spill directory that does not exist yet. The overflow thread creates it, and the
/// writer imports what it spilled before it stops: nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overflow_is_spilled_off_the_request_path_and_imported_by_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let spill_dir = dir.path().join("not-yet");
    let (_, store, sink, tasks) = start(&dir, overloaded(&dir, "not-yet")).await;
    for n in 0..RECORDS {
        assert!(sink.submit(sample_entry(n)).is_none());
    }
    stop(sink, tasks).await;
    assert!(spill_dir.is_dir(), "the overflow was spilled");
    assert_eq!(store.audit_head().await.unwrap().seq, RECORDS);
    let report = verify(store.as_ref()).await;
    assert!(report.ok, "{report:?}");
    let left: Vec<_> = std::fs::read_dir(&spill_dir).unwrap().collect();
    assert!(
        left.is_empty(),
        "imported spill files are removed: {left:?}"
    );
}

/// `submit` must not wait on the spill file: with the file held (its lock taken, as a
/// slow disk or a long rotation would), a submit that overflows still returns at once.
/// The old code appended on the caller's thread under that lock and would block here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_never_waits_for_the_spill_file() {
    let dir = tempfile::tempdir().unwrap();
    let (_, store, sink, tasks) = start(&dir, overloaded(&dir, "spill")).await;
    let sink = Arc::new(sink);
    let held = sink.spill().hold();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let submitter = sink.clone();
    let thread = std::thread::spawn(move || {
        for n in 0..RECORDS {
            assert!(submitter.submit(sample_entry(n)).is_none());
        }
        let _ = done_tx.send(());
    });
    done_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("submit returned while the spill file was held");
    drop(held);
    // The thread's clone of the sink is dropped when it ends, after it signalled.
    thread.join().unwrap();
    let sink = Arc::try_unwrap(sink).unwrap();
    stop(sink, tasks).await;
    assert_eq!(store.audit_head().await.unwrap().seq, RECORDS);
}

/// Strict: a full queue makes the record wait for room (in a tracked task), not spill;
/// every acknowledgement arrives once its record is committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_records_wait_for_room_in_a_full_queue() {
    let dir = tempfile::tempdir().unwrap();
    let config = AuditConfig {
        channel_capacity: 1,
        ..config(&dir, Durability::Strict, 0)
    };
    let (_, store, sink, tasks) = start(&dir, config).await;
    let acks: Vec<_> = (0..20)
        .map(|n| sink.submit(sample_entry(n)).unwrap())
        .collect();
    for ack in acks {
        tokio::time::timeout(Duration::from_secs(30), ack)
            .await
            .unwrap()
            .unwrap();
    }
    assert_eq!(store.audit_head().await.unwrap().seq, 20);
    stop(sink, tasks).await;
    assert!(!dir.path().join("spill.jsonl").exists(), "nothing spilled");
}

/// Strict, after shutdown: neither queue takes the record, and its acknowledgement says
/// so (the old code spilled it and returned no acknowledgement, so the response
/// completed as if it were recorded).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strict_record_nobody_takes_fails_its_acknowledgement() {
    let dir = tempfile::tempdir().unwrap();
    let (_, _, sink, tasks) = start(&dir, config(&dir, Durability::Strict, 0)).await;
    sink.shutdown();
    tasks.close();
    tasks.wait().await;
    let entry = sample_entry(1);
    let request_id = entry.request_id.clone();
    let ack = sink.submit(entry).expect("strict mode returns an ack");
    let answer = tokio::time::timeout(Duration::from_secs(30), ack)
        .await
        .unwrap();
    assert_eq!(answer, Err(AuditError::Dropped { request_id }));
}

/// Polls until the chain holds `seq` records, with a 20 s deadline (an import has no
/// acknowledgement to wait on).
async fn head_reaches(store: &dyn crate::governance::store::Store, seq: u64) -> u64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let head = store.audit_head().await.unwrap().seq;
        if head >= seq || tokio::time::Instant::now() >= deadline {
            return head;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What the overflow thread spills after the writer's last import is imported while the
/// gateway stays idle (no further record arrives to wake the writer), not left in the
/// file until the next request or shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_spilled_while_the_writer_is_idle_are_imported_without_new_traffic() {
    let dir = tempfile::tempdir().unwrap();
    let (_, store, sink, tasks) = start(&dir, config(&dir, Durability::Strict, 1)).await;
    // Committed when acknowledged: the writer has imported (nothing) and is idle.
    submit_committed(&sink, sample_entry(0)).await;
    assert_eq!(store.audit_head().await.unwrap().seq, 1);
    // As the overflow thread does, late: the writer has imported and gone idle.
    sink.spill().append([&sample_entry(1)], false).unwrap();
    assert_eq!(
        head_reaches(store.as_ref(), 2).await,
        2,
        "the spilled record was not imported while idle"
    );
    stop(sink, tasks).await;
    let report = verify(store.as_ref()).await;
    assert!(report.ok, "{report:?}");
}
