//! The request path's handle on the writer.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use sluice_shared::audit::AuditEntry;

use super::config::{AuditConfig, Durability};
use super::job::Job;
use super::spill::{Spill, spill_or_lose};
use super::writer::{Writer, open_seal};
use crate::governance::store::{Store, StoreError};

/// The request path's handle on the writer.
#[derive(Debug)]
pub struct AuditSink {
    tx: mpsc::Sender<Job>,
    spill: Arc<Spill>,
    strict: bool,
    stop: CancellationToken,
}

impl AuditSink {
    pub async fn start(
        store: Arc<dyn Store>,
        config: AuditConfig,
        tasks: &tokio_util::task::TaskTracker,
    ) -> Result<Self, StoreError> {
        let (tx, rx) = mpsc::channel(config.channel_capacity.max(1));
        let spill_path = config
            .spill_path
            .clone()
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("sluice-audit.spill.jsonl"));
        let spill = Arc::new(Spill {
            path: spill_path,
            file: Mutex::new(()),
            pending: std::sync::atomic::AtomicBool::new(true),
        });
        let key = config
            .chain_key(&crate::config::ProcessEnv)
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
        };
        // The writer gets a thread of its own: SQLite calls block, and a batch (chain
        // hashes, one transaction) then runs start to finish without a hop to another
        // thread. It still waits on the channel, its flush timer and the stop token
        // through the runtime (`block_on`), so the request path talks to it as before.
        let runtime = tokio::runtime::Handle::current();
        let (done_tx, done_rx) = oneshot::channel::<()>();
        let writer_stop = stop.clone();
        std::thread::Builder::new()
            .name("sluice-audit".into())
            .spawn(move || {
                runtime.block_on(writer.run(writer_stop));
                let _ = done_tx.send(());
            })
            .map_err(StoreError::WriterThread)?;
        // Shutdown waits for the writer through the task tracker, as for any task.
        tasks.spawn(async move {
            let _ = done_rx.await;
        });
        Ok(AuditSink {
            tx,
            spill,
            strict: config.durability == Durability::Strict,
            stop,
        })
    }

    /// Queues a record. In strict mode returns the acknowledgement to wait for.
    pub fn submit(&self, entry: AuditEntry) -> Option<oneshot::Receiver<()>> {
        let (ack, wait) = if self.strict {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        match self.tx.try_send(Job { entry, ack }) {
            Ok(()) => wait,
            Err(mpsc::error::TrySendError::Full(job)) if self.strict => {
                // Strict: wait for room rather than spill (the client waits for disk anyway).
                let tx = self.tx.clone();
                let spill = self.spill.clone();
                tokio::spawn(async move {
                    if let Err(mpsc::error::SendError(job)) = tx.send(job).await {
                        spill_or_lose(&spill, &job.entry);
                    }
                });
                wait
            }
            Err(mpsc::error::TrySendError::Full(job) | mpsc::error::TrySendError::Closed(job)) => {
                spill_or_lose(&self.spill, &job.entry);
                None
            }
        }
    }

    /// Asks the writer to drain and stop (it runs on the task tracker the caller waits on).
    pub fn shutdown(&self) {
        self.stop.cancel();
    }
}
