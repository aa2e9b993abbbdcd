//! The request path's handle on the writer.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use sluice_shared::audit::AuditEntry;

use super::job::{AuditAck, Job};
use super::loss::Losses;
use super::overflow::{SpillWriter, overflow_or_lose};
use super::spill::Spill;
use super::writer::{Writer, open_seal};
use crate::config::{AuditConfig, Durability};
use crate::governance::store::{Store, StoreError};

/// The request path's handle on the writer. [`submit`](AuditSink::submit) never blocks
/// and never touches a file.
#[derive(Debug)]
pub struct AuditSink {
    tx: mpsc::Sender<Job>,
    /// To the overflow thread, which appends to the spill file.
    overflow: mpsc::Sender<Job>,
    losses: Arc<Losses>,
    strict: bool,
    stop: CancellationToken,
    /// Where a strict record waiting for room in a full queue waits.
    tasks: TaskTracker,
    #[cfg(test)]
    spill: Arc<Spill>,
}

impl AuditSink {
    /// Starts the writer and the overflow thread; both are waited for through `tasks`
    /// after [`shutdown`](AuditSink::shutdown).
    pub async fn start(
        store: Arc<dyn Store>,
        config: AuditConfig,
        tasks: &TaskTracker,
    ) -> Result<Self, StoreError> {
        let capacity = config.channel_capacity.max(1);
        let (tx, rx) = mpsc::channel(capacity);
        // The overflow queue holds as many records as the writer's: a burst that fills
        // one fits in the other while the overflow thread writes it out.
        let (overflow, overflow_rx) = mpsc::channel(capacity);
        let spill_path = config
            .spill_path
            .clone()
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("sluice-audit.spill.jsonl"));
        let spill = Arc::new(Spill::new(spill_path));
        let losses = Arc::new(Losses::default());
        let strict = config.durability == Durability::Strict;
        let key = config
            .chain_key(&crate::env::ProcessEnv)
            .map_err(StoreError::Config)?
            .map(Arc::new);
        // The admin API's `audit verify` checks MACs with the key the store holds.
        store.set_audit_key(key.clone());
        let mut appender = store.audit_appender()?;
        // Two short statements on the writer's own connection, once at start.
        let (head, head_record_mac) = appender.head()?;
        let sealed_from = match &key {
            Some(key) => open_seal(key, &head, head_record_mac.as_deref(), appender.as_mut())?,
            None => 0,
        };
        let stop = CancellationToken::new();
        let overflow_stop = CancellationToken::new();
        // Both threads wait on their queues, timers and stop tokens through the runtime
        // (`block_on`), so the request path talks to them as to any task.
        let runtime = tokio::runtime::Handle::current();
        let (overflow_done_tx, overflow_done) = oneshot::channel::<()>();
        let spill_writer = SpillWriter {
            rx: overflow_rx,
            spill: spill.clone(),
            losses: losses.clone(),
        };
        let spill_stop = overflow_stop.clone();
        let spill_runtime = runtime.clone();
        std::thread::Builder::new()
            .name("sluice-audit-spill".into())
            .spawn(move || {
                spill_runtime.block_on(spill_writer.run(spill_stop));
                let _ = overflow_done_tx.send(());
            })
            .map_err(StoreError::WriterThread)?;
        let writer = Writer {
            appender,
            rx,
            spill: spill.clone(),
            next_seq: head.seq + 1,
            head: head.hash,
            key,
            sealed_from,
            batch_max: config.batch_max.max(1),
            // Strict: commit at once. Each commit's fsync is the group window: whatever
            // arrives while it runs goes into the next transaction, so waiting on top of
            // it would only add latency to every acknowledged request.
            flush: match config.durability {
                Durability::Strict => Duration::ZERO,
                Durability::Buffered => Duration::from_millis(config.flush_interval_ms),
            },
            strict,
            losses: losses.clone(),
            overflow_stop: overflow_stop.clone(),
            overflow_done,
        };
        // The writer gets a thread of its own: SQLite calls block, and a batch (chain
        // hashes, one transaction) then runs start to finish without a hop to another
        // thread.
        let (done_tx, done_rx) = oneshot::channel::<()>();
        let writer_stop = stop.clone();
        let started = std::thread::Builder::new()
            .name("sluice-audit".into())
            .spawn(move || {
                runtime.block_on(writer.run(writer_stop));
                let _ = done_tx.send(());
            });
        if let Err(e) = started {
            overflow_stop.cancel();
            return Err(StoreError::WriterThread(e));
        }
        // Shutdown waits for the writer through the task tracker, as for any task. The
        // writer waits for the overflow thread before it exits (it imports what that
        // thread spilled), so this covers both.
        tasks.spawn(async move {
            let _ = done_rx.await;
        });
        Ok(AuditSink {
            tx,
            overflow,
            losses,
            strict,
            stop,
            tasks: tasks.clone(),
            #[cfg(test)]
            spill,
        })
    }

    /// Queues a record; never blocks and never touches a file. In strict mode returns
    /// the acknowledgement the response must wait for, and fail on `Err`.
    ///
    /// When the writer's queue is full: buffered, the record goes to the overflow
    /// thread, which appends it to the spill file (and when that queue is full too, the
    /// record is lost, counted and logged); strict, it waits for room in a task on the
    /// tracker (its client waits for the disk anyway).
    pub fn submit(&self, entry: AuditEntry) -> Option<AuditAck> {
        let (job, ack) = Job::new(entry, self.strict);
        match self.tx.try_send(job) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(job)) if self.strict => {
                let tx = self.tx.clone();
                let overflow = self.overflow.clone();
                let losses = self.losses.clone();
                self.tasks.spawn(async move {
                    // Refused only once the writer has closed its queue (shutdown).
                    if let Err(mpsc::error::SendError(job)) = tx.send(job).await {
                        overflow_or_lose(&overflow, &losses, job);
                    }
                });
            }
            Err(mpsc::error::TrySendError::Full(job) | mpsc::error::TrySendError::Closed(job)) => {
                overflow_or_lose(&self.overflow, &self.losses, job);
            }
        }
        ack
    }

    /// The spill file, for tests that hold it or look at what was synced.
    #[cfg(test)]
    pub(super) fn spill(&self) -> &Spill {
        &self.spill
    }

    /// Asks the writer to drain and stop (it runs on the task tracker the caller waits on).
    pub fn shutdown(&self) {
        self.stop.cancel();
    }
}
