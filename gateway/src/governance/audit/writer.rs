//! The batch writer: chains records after the head, seals them with a key, appends
//! them in transactions and imports spill files.

use std::collections::HashSet;
use std::io::BufRead;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use sluice_shared::audit::{AuditEntry, ChainKey, canonical_json, chain_hash};

use super::job::{Ack, AuditError, Job, answer};
use super::loss::Losses;
use super::spill::Spill;
use crate::governance::store::{AuditAppender, AuditHead, ChainedRecord, HeadSeal, StoreError};

/// The first record the writer's seal covers. The stored seal's, when the head verifies
/// under `key`; otherwise a new seal from the next record, written to the head at once
/// (so that `audit verify` sees it before the first commit). A head that carries a seal
/// that does not verify, or none while its record carries a MAC, was rewritten by
/// someone without the key (or the key changed): that is logged and counted, and the
/// head is not vouched for — records sealed before the new start make `audit verify`
/// report the restart.
pub(super) fn open_seal(
    key: &ChainKey,
    head: &AuditHead,
    head_record_mac: Option<&str>,
    appender: &mut dyn AuditAppender,
) -> Result<u64, StoreError> {
    if head.seq == 0 {
        return Ok(1);
    }
    if let Some(seal) = &head.seal
        && key.head_mac_matches(head.seq, &head.hash, seal.sealed_from, &seal.mac)
    {
        return Ok(seal.sealed_from);
    }
    let sealed_from = head.seq + 1;
    if head.seal.is_some() || head_record_mac.is_some() {
        metrics::counter!("sluice_audit_seal_broken_total").increment(1);
        tracing::error!(
            head = head.seq,
            sealed_from,
            "the audit chain's head does not verify under governance.audit.hmac_key: records after {} may have been deleted and the head rewritten while the gateway was stopped, or the key was changed; not vouching for it, a new seal starts at record {sealed_from} (`sluice-gateway audit verify` reports the break)",
            head.seq
        );
    } else {
        tracing::info!(
            sealed_from,
            "sealing the audit chain with governance.audit.hmac_key from record {sealed_from} on; the {} records before it were written without a key",
            head.seq
        );
    }
    appender.seal_head(&HeadSeal {
        mac: key.head_mac(head.seq, &head.hash, sealed_from),
        sealed_from,
    })?;
    Ok(sealed_from)
}

/// Attempts at a batch's transaction before its records go to the spill file.
const COMMIT_ATTEMPTS: u32 = 5;

/// The pause before the next attempt at a failed commit: 50 ms, doubling (750 ms over
/// all five attempts, what a busy or briefly locked database needs). It sleeps the
/// writer's thread, which only writes the audit log: nothing else waits on it.
struct Backoff(Duration);

impl Default for Backoff {
    fn default() -> Self {
        Backoff(Duration::from_millis(50))
    }
}

impl Backoff {
    fn wait(&mut self) {
        std::thread::sleep(self.0);
        self.0 *= 2;
    }
}

pub(super) struct Writer {
    pub(super) appender: Box<dyn AuditAppender>,
    pub(super) rx: mpsc::Receiver<Job>,
    pub(super) spill: Arc<Spill>,
    pub(super) next_seq: u64,
    pub(super) head: String,
    /// Seals records and the head when set (`hmac_key`).
    pub(super) key: Option<Arc<ChainKey>>,
    /// The first record the seal covers (see [`open_seal`]); unused without a key.
    pub(super) sealed_from: u64,
    pub(super) batch_max: usize,
    pub(super) flush: Duration,
    /// Strict durability: a batch the database refuses is spilled with an fsync before
    /// its waiters hear `Ok`.
    pub(super) strict: bool,
    pub(super) losses: Arc<Losses>,
    /// Stops the overflow thread (see [`SpillWriter::run`](super::overflow::SpillWriter::run)).
    pub(super) overflow_stop: CancellationToken,
    /// Resolves when the overflow thread has written its last record.
    pub(super) overflow_done: oneshot::Receiver<()>,
}

impl Writer {
    pub(super) async fn run(mut self, stop: CancellationToken) {
        self.import_spills();
        loop {
            let spill = Arc::clone(&self.spill);
            let first = tokio::select! {
                job = self.rx.recv() => job,
                _ = stop.cancelled() => None,
                () = spill.import_due() => {
                    self.import_spills();
                    continue;
                }
            };
            let Some(first) = first else { break };
            let mut batch = vec![first];
            // Let the batch fill for the flush interval without listening to the channel:
            // a writer waiting in `recv` would be woken (and a worker thread unparked) for
            // every record the request path sends. When a full batch is already queued
            // there is nothing to wait for.
            if !self.flush.is_zero() && self.rx.len() + 1 < self.batch_max {
                tokio::select! {
                    _ = tokio::time::sleep(self.flush) => {}
                    _ = stop.cancelled() => {}
                }
            }
            while batch.len() < self.batch_max {
                match self.rx.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            self.write(batch);
            if self.rx.is_empty() {
                self.import_spills();
            }
        }
        // Drain what is still queued, then whatever spilled.
        self.rx.close();
        let mut rest = Vec::new();
        while let Some(job) = self.rx.recv().await {
            rest.push(job);
            if rest.len() >= self.batch_max {
                self.write(std::mem::take(&mut rest));
            }
        }
        self.write(rest);
        // Then the overflow queue, which took what the closed queue refused, and last
        // whatever spilled.
        self.overflow_stop.cancel();
        let _ = (&mut self.overflow_done).await;
        self.import_spills();
        self.losses.flush();
        // A checkpoint for the log: compare it with the head `audit verify` prints to
        // tell a database rolled back to an earlier state, which no MAC can.
        tracing::info!(
            seq = self.next_seq - 1,
            hash = %self.head,
            sealed = self.key.is_some(),
            "audit writer stopped; chain head"
        );
    }

    /// Chains and commits a batch, then answers its strict waiters. When the database
    /// refuses it, the entries go to the spill file (the chain position is not
    /// consumed), fsynced in strict mode: a waiter hears `Ok` only once its record is
    /// committed or synced to the spill file, and an error when it is neither.
    fn write(&mut self, batch: Vec<Job>) {
        if batch.is_empty() {
            return;
        }
        let mut entries = Vec::with_capacity(batch.len());
        let mut acks: Vec<(Ack, String)> = Vec::new();
        for job in batch {
            if let Some(ack) = job.ack {
                acks.push((ack, job.entry.request_id.clone()));
            }
            entries.push(job.entry);
        }
        metrics::counter!("sluice_audit_batches_total").increment(1);
        let failure = match self.commit(entries, Origin::Queue) {
            Ok(()) => None,
            Err(uncommitted) => self.spill_uncommitted(uncommitted),
        };
        for (ack, request_id) in acks {
            let result = match &failure {
                None => Ok(()),
                Some((commit, spill)) => Err(AuditError::NotStored {
                    request_id,
                    commit: commit.clone(),
                    spill_path: self.spill.path().display().to_string(),
                    spill: spill.clone(),
                }),
            };
            answer(Some(ack), result);
        }
    }

    /// Spills a batch the database refused; `Some((commit error, spill error))` when
    /// the spill file refused it too (the records are lost).
    fn spill_uncommitted(&self, uncommitted: Uncommitted) -> Option<(String, String)> {
        let Uncommitted { entries, error } = uncommitted;
        match self.spill.append(&entries, self.strict) {
            Ok(()) => {
                metrics::counter!("sluice_audit_spilled_total").increment(entries.len() as u64);
                None
            }
            Err(e) => {
                self.losses.lost(
                    entries.len() as u64,
                    entries.first().map(|e| e.request_id.as_str()).unwrap_or(""),
                    &format!(
                        "the audit database did not commit them ({error}) and the spill file {} cannot be written: {e}",
                        self.spill.path().display()
                    ),
                );
                Some((error, e.to_string()))
            }
        }
    }

    /// Chains (and seals) `entries` after the head.
    fn chain(&self, entries: Vec<AuditEntry>, origin: Origin) -> Chained {
        let (records, next_seq, head) = chain(
            entries,
            self.next_seq,
            self.head.clone(),
            self.key.as_deref(),
            origin,
        );
        let seal = self.key.as_ref().map(|key| HeadSeal {
            mac: key.head_mac(next_seq - 1, &head, self.sealed_from),
            sealed_from: self.sealed_from,
        });
        Chained {
            records,
            next_seq,
            head,
            seal,
        }
    }

    /// Chains `entries` after the head and appends them, retrying a failed transaction
    /// a few times; `Err` gives the entries back with the last error (the chain
    /// position is not consumed).
    /// Imported records whose request id is already stored are dropped when the store
    /// refuses them, and the rest rechained: a dropped record takes no chain position.
    fn commit(&mut self, entries: Vec<AuditEntry>, origin: Origin) -> Result<(), Uncommitted> {
        let mut batch = self.chain(entries, origin);
        let mut backoff = Backoff::default();
        let mut last_error = String::new();
        for attempt in 1..=COMMIT_ATTEMPTS {
            if batch.records.is_empty() {
                return Ok(());
            }
            let failed = match self.appender.append(&batch.records, batch.seal.as_ref()) {
                Ok(()) => {
                    metrics::counter!("sluice_audit_records_total")
                        .increment(batch.records.len() as u64);
                    self.next_seq = batch.next_seq;
                    self.head = batch.head;
                    return Ok(());
                }
                Err(StoreError::DuplicateRequestId) => {
                    // An import whose records the lookup before chaining did not all
                    // find (the unique index covers imported records only): retried at
                    // once without them, or after a pause if the lookup failed.
                    let (rest, failed) = match self.skip_stored(batch.into_entries()) {
                        Ok(rest) => (rest, false),
                        Err(entries) => {
                            last_error = "cannot look up stored request ids".into();
                            (entries, true)
                        }
                    };
                    batch = self.chain(rest, origin);
                    failed
                }
                Err(e) => {
                    tracing::warn!(error = %e, attempt, "audit batch failed to commit");
                    last_error = e.to_string();
                    true
                }
            };
            if failed && attempt < COMMIT_ATTEMPTS {
                backoff.wait();
            }
        }
        Err(Uncommitted {
            entries: batch.into_entries(),
            error: last_error,
        })
    }

    /// Drops the entries whose request id is already stored, or repeated among them
    /// (after the first): what an import interrupted after a commit would add twice.
    /// `Err` gives the entries back when the store cannot be asked.
    fn skip_stored(
        &mut self,
        entries: Vec<AuditEntry>,
    ) -> Result<Vec<AuditEntry>, Vec<AuditEntry>> {
        let stored = {
            let ids: Vec<(&str, i64)> = entries
                .iter()
                .map(|e| (e.request_id.as_str(), e.ts_ms))
                .collect();
            match self.appender.stored_records(&ids) {
                Ok(stored) => stored,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot look up which audit records are already stored");
                    return Err(entries);
                }
            }
        };
        if stored.is_empty() && entries.len() < 2 {
            return Ok(entries);
        }
        // A request id names one request (a UUIDv7 minted for it, rejected requests
        // included), so a stored id means a stored record. The content is compared only
        // to say so if it differs: a record written by an older version (a field added
        // since), or a bug worth seeing.
        let mut seen: HashSet<String> = HashSet::with_capacity(entries.len());
        let mut skipped = 0u64;
        let rest: Vec<AuditEntry> = entries
            .into_iter()
            .filter(|e| {
                let first = seen.insert(e.request_id.clone());
                let stored_as = stored.get(&e.request_id);
                if first && stored_as.is_none() {
                    return true;
                }
                skipped += 1;
                if stored_as.is_some_and(|r| r.as_bytes() != canonical_json(e).as_slice()) {
                    tracing::warn!(request_id = %e.request_id, "spilled audit record skipped: its request id is already stored, with different content");
                }
                false
            })
            .collect();
        if skipped > 0 {
            metrics::counter!("sluice_audit_duplicates_skipped_total").increment(skipped);
            tracing::info!(
                records = skipped,
                "skipped spilled audit records already stored (an import interrupted after its commit)"
            );
        }
        Ok(rest)
    }

    fn import_spills(&mut self) {
        if !self.spill.take_pending() {
            return;
        }
        let files = match self.spill.take() {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the audit spill files");
                return;
            }
        };
        for path in files {
            let entries: Vec<AuditEntry> = match std::fs::File::open(&path) {
                Ok(f) => std::io::BufReader::new(f)
                    .lines()
                    .map_while(Result::ok)
                    .filter(|l| !l.trim().is_empty())
                    .filter_map(|l| match serde_json::from_str(&l) {
                        Ok(e) => Some(e),
                        Err(err) => {
                            tracing::error!(error = %err, file = %path.display(), "unreadable line in the audit spill file; kept in the file");
                            None
                        }
                    })
                    .collect(),
                Err(e) => {
                    tracing::warn!(error = %e, file = %path.display(), "cannot open an audit spill file");
                    continue;
                }
            };
            let count = entries.len();
            let mut ok = true;
            for chunk in entries.chunks(self.batch_max) {
                // The file may be one whose import was interrupted after some chunks
                // committed: leave out what is already stored before chaining.
                let Ok(fresh) = self.skip_stored(chunk.to_vec()) else {
                    ok = false;
                    break;
                };
                if self.commit(fresh, Origin::Spill).is_err() {
                    ok = false;
                    break;
                }
            }
            if ok {
                let _ = std::fs::remove_file(&path);
                metrics::counter!("sluice_audit_spill_imported_total").increment(count as u64);
                tracing::info!(records = count, "imported spilled audit records");
            } else {
                // Keep the file; the next import retries it and skips the records this
                // one committed.
                tracing::warn!(file = %path.display(), "audit spill import failed; will retry");
                self.spill.set_pending();
                return;
            }
        }
    }
}

/// Entries the database did not commit, and why (the last attempt's error).
struct Uncommitted {
    entries: Vec<AuditEntry>,
    error: String,
}

/// A batch chained after the writer's head: the records, the head after them and its
/// seal.
struct Chained {
    records: Vec<ChainedRecord>,
    next_seq: u64,
    head: String,
    seal: Option<HeadSeal>,
}

impl Chained {
    fn into_entries(self) -> Vec<AuditEntry> {
        self.records.into_iter().map(|r| r.entry).collect()
    }
}

/// Where the records of a batch come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// The channel: records never stored before.
    Queue,
    /// A spill file: records an interrupted import may have stored already.
    Spill,
}

/// Chains `entries` after `(start, head)`: each record's canonical JSON, hash, link and,
/// with a key, MAC.
fn chain(
    entries: Vec<AuditEntry>,
    start: u64,
    head: String,
    key: Option<&ChainKey>,
    origin: Origin,
) -> (Vec<ChainedRecord>, u64, String) {
    let mut records = Vec::with_capacity(entries.len());
    let mut seq = start;
    let mut prev = head;
    for entry in entries {
        let canonical = String::from_utf8(canonical_json(&entry)).unwrap_or_default();
        let hash = chain_hash(&prev, canonical.as_bytes());
        records.push(ChainedRecord {
            seq,
            prev_hash: std::mem::replace(&mut prev, hash.clone()),
            mac: key.map(|k| k.record_mac(seq, &hash)),
            hash,
            entry,
            canonical,
            imported: origin == Origin::Spill,
        });
        seq += 1;
    }
    (records, seq, prev)
}
