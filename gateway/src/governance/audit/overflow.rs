//! The overflow path: what the writer's queue cannot take goes, through a second
//! bounded queue, to a thread of its own (`sluice-audit-spill`) that appends it to the
//! spill file. The request path only ever does a `try_send` on either queue: no file
//! I/O, no lock.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::job::{AuditError, Job, answer};
use super::loss::Losses;
use super::spill::Spill;

/// Records per spill write, at most: one `write` (and, strict, one fsync) for what
/// queued while the previous one ran.
const SPILL_BATCH: usize = 1024;

/// Hands a job the writer's queue refused to the overflow thread; when its queue is
/// full or closed too, the record is lost: counted, logged (rate-limited) and, strict,
/// its acknowledgement fails.
pub(super) fn overflow_or_lose(overflow: &mpsc::Sender<Job>, losses: &Losses, job: Job) {
    let job = match overflow.try_send(job) {
        Ok(()) => return,
        Err(mpsc::error::TrySendError::Full(job) | mpsc::error::TrySendError::Closed(job)) => job,
    };
    losses.lost(
        1,
        &job.entry.request_id,
        "the audit writer's queue and its spill queue are full, or the writer has stopped",
    );
    let request_id = job.entry.request_id;
    answer(job.ack, Err(AuditError::Dropped { request_id }));
}

/// The overflow thread's loop.
pub(super) struct SpillWriter {
    pub(super) rx: mpsc::Receiver<Job>,
    pub(super) spill: Arc<Spill>,
    pub(super) losses: Arc<Losses>,
}

impl SpillWriter {
    /// Appends queued jobs until `stop` (which the writer cancels once its own queue is
    /// closed and drained, so that what it refused while closing still gets here), then
    /// closes the queue and appends what is left.
    pub(super) async fn run(mut self, stop: CancellationToken) {
        let mut batch = Vec::with_capacity(SPILL_BATCH);
        loop {
            let received = tokio::select! {
                n = self.rx.recv_many(&mut batch, SPILL_BATCH) => n,
                () = stop.cancelled() => 0,
            };
            if received == 0 {
                break;
            }
            self.write(&mut batch);
        }
        self.rx.close();
        while self.rx.recv_many(&mut batch, SPILL_BATCH).await > 0 {
            self.write(&mut batch);
        }
    }

    /// Appends `batch` (fsynced when a strict request waits for one of them) and
    /// answers the waiters.
    fn write(&self, batch: &mut Vec<Job>) {
        let sync = batch.iter().any(|j| j.ack.is_some());
        let result = self.spill.append(batch.iter().map(|j| &j.entry), sync);
        match &result {
            Ok(()) => metrics::counter!("sluice_audit_spilled_total").increment(batch.len() as u64),
            Err(e) => self.losses.lost(
                batch.len() as u64,
                batch
                    .first()
                    .map(|j| j.entry.request_id.as_str())
                    .unwrap_or(""),
                &format!(
                    "the audit writer's queue is full and the spill file {} cannot be written: {e}",
                    self.spill.path().display()
                ),
            ),
        }
        for job in batch.drain(..) {
            let answer_for = match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(AuditError::NotStored {
                    request_id: job.entry.request_id,
                    commit: "not attempted: the writer's queue was full or closed".into(),
                    spill_path: self.spill.path().display().to_string(),
                    spill: e.to_string(),
                }),
            };
            answer(job.ack, answer_for);
        }
    }
}
