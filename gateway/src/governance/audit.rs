//! The audit writer: records go through a bounded channel to one batch writer that
//! chains them (hash of the predecessor) and appends them to the store in transactions.
//! The writer runs on its own thread (`sluice-audit`) with its own synchronous database
//! handle ([`AuditAppender`]): chaining and the transaction never occupy a request
//! worker, and a batch costs one wake-up of one thread.
//!
//! * The request path never waits (`try_send`). When the channel is full, the record is
//!   appended to a local spill file instead and counted in
//!   `sluice_audit_spilled_total`; the writer imports spill files (oldest first) whenever
//!   it has caught up, and at start. A record is only ever lost if both the channel and
//!   the spill file refuse it — then it is logged at error level and counted in
//!   `sluice_audit_lost_total`.
//! * `strict` durability: each record carries an acknowledgement that the writer sends
//!   after its batch has committed (group commit, `synchronous=FULL`); the response does
//!   not complete until then, and a full channel makes the request wait instead of
//!   spilling.
//! * Import is idempotent. A spill file is imported in chunks, one transaction each, and
//!   deleted after the last; a crash in between leaves it to be imported again. Every
//!   request has its own request id (a fresh UUIDv7, rejected requests included): before
//!   chaining a chunk, the import drops the records whose id is already stored, so a
//!   re-import adds nothing, takes no chain position and charges no budget twice. A
//!   spilled record never was written from the queue (it went to the spill file instead,
//!   or its batch failed), so only imported records need looking at: they alone are in
//!   a unique index on the request id, which also refuses a repeat the lookup missed (the
//!   batch is then filtered and retried). A write from the queue maintains no index for
//!   this, and is as fast as before.
//! * Sealing (optional, `hmac_key`): each record and the chain head also carry an
//!   HMAC-SHA256 under the key, so that `audit verify` with the key detects a truncated
//!   tail with a rewritten head, which the plain chain cannot (design and limits:
//!   `sluice_shared::audit`). Starting on a keyed chain, the writer checks the head's seal;
//!   one that does not verify is never resealed (that would launder a truncation made
//!   while the gateway was stopped): it is logged, and a new seal starts after it, which
//!   `audit verify` reports.
//! * Spill files, like the database, are created 0600 (owner only) whatever the umask.
//! * Shutdown: the writer drains the channel and the spill file, logs the head it leaves
//!   (a checkpoint to compare `audit verify`'s head with), then exits.

use std::collections::HashSet;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use sluice_shared::audit::{AuditEntry, ChainKey, canonical_json, chain_hash};

use super::store::{AuditAppender, AuditHead, ChainedRecord, HeadSeal, Store, StoreError};
use crate::env::Environment;

/// `[governance.audit]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// `buffered` (default): batches commit every `flush_interval_ms`; a crash can lose
    /// only the batch in memory. `strict`: a response completes only after its record is
    /// committed and fsynced.
    #[serde(default)]
    pub durability: Durability,
    /// Records queued for the writer before new ones spill to disk. Default 65536.
    #[serde(default = "default_capacity")]
    pub channel_capacity: usize,
    /// Records per transaction, at most. Default 2048.
    #[serde(default = "default_batch")]
    pub batch_max: usize,
    /// Longest a record waits for its batch to fill. Default 20 ms. Buffered only:
    /// strict durability commits at once, and a batch is whatever queued during the
    /// previous commit's fsync.
    #[serde(default = "default_flush")]
    pub flush_interval_ms: u64,
    /// Spill file for overload. Default: next to the database, `<database>.spill.jsonl`.
    #[serde(default)]
    pub spill_path: Option<String>,
    /// Bodies in `full` content records are cut at this many bytes. Default 65536.
    #[serde(default = "default_body")]
    pub max_body_bytes: usize,
    /// Seals the audit chain with HMAC-SHA256 under this key, so that `audit verify`
    /// (given the same key) detects a deleted tail with a rewritten head, which the plain
    /// hash chain cannot. A secret reference, `env:SLUICE_AUDIT_KEY` or
    /// `file:/run/secrets/sluice-audit-key`, of at least 32 bytes (`openssl rand -hex 32`).
    /// It protects only if whoever can write the database cannot read it: keep it out of
    /// the database's directory and backups. Records written before it was set stay
    /// unsealed; changing it makes records sealed under the old key fail verification.
    /// Default: none (the plain chain; `audit verify` says the MACs were not checked).
    #[serde(default)]
    pub hmac_key: Option<String>,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            durability: Durability::default(),
            channel_capacity: default_capacity(),
            batch_max: default_batch(),
            flush_interval_ms: default_flush(),
            spill_path: None,
            max_body_bytes: default_body(),
            hmac_key: None,
        }
    }
}

impl AuditConfig {
    /// Resolves `hmac_key` (`None` when unset). The error names the setting and never
    /// contains the key.
    pub fn chain_key(&self, env: &dyn Environment) -> Result<Option<ChainKey>, String> {
        let Some(reference) = &self.hmac_key else {
            return Ok(None);
        };
        let secret = crate::secret::resolve(reference, env)
            .map_err(|e| format!("governance.audit.hmac_key: {e}"))?;
        ChainKey::new(secret.expose().as_bytes())
            .map(Some)
            .map_err(|e| format!("governance.audit.hmac_key {e}"))
    }
}

fn default_capacity() -> usize {
    65_536
}
fn default_batch() -> usize {
    2048
}
fn default_flush() -> u64 {
    20
}
fn default_body() -> usize {
    65_536
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    #[default]
    Buffered,
    Strict,
}

struct Job {
    entry: AuditEntry,
    ack: Option<oneshot::Sender<()>>,
}

/// The request path's handle on the writer.
#[derive(Debug)]
pub struct AuditSink {
    tx: mpsc::Sender<Job>,
    spill: Arc<Spill>,
    strict: bool,
    stop: CancellationToken,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("request_id", &self.entry.request_id)
            .finish()
    }
}

/// The overload file: JSON lines of entries not yet chained.
#[derive(Debug)]
struct Spill {
    path: PathBuf,
    /// Serializes appends and rotations.
    file: Mutex<()>,
    /// Set when a record is spilled (and at start), so the writer only looks for spill
    /// files when there can be some: the look costs blocking file-system calls.
    pending: std::sync::atomic::AtomicBool,
}

impl Spill {
    fn append(&self, entry: &AuditEntry) -> std::io::Result<()> {
        let line = serde_json::to_string(entry).map_err(std::io::Error::other)?;
        let _guard = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let mut options = std::fs::OpenOptions::new();
        options.create(true).append(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            // Spilled records are audit records: owner only, like the database.
            options.mode(0o600);
        }
        let mut f = options.open(&self.path)?;
        #[cfg(unix)]
        if f.metadata()?.len() == 0 {
            // Just created (or empty): the umask may have cleared bits of 0600 too.
            use std::os::unix::fs::PermissionsExt;
            f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
        f.write_all(line.as_bytes())?;
        f.write_all(b"\n")?;
        f.flush()?;
        self.pending
            .store(true, std::sync::atomic::Ordering::Release);
        Ok(())
    }

    /// Moves the current spill file aside for import (new spills start a fresh file) and
    /// returns every file waiting for import, oldest first.
    fn take(&self) -> std::io::Result<Vec<PathBuf>> {
        let _guard = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if self.path.exists() && std::fs::metadata(&self.path)?.len() > 0 {
            let name = format!(
                "{}.{}.importing",
                self.path.display(),
                uuid::Uuid::now_v7().simple()
            );
            std::fs::rename(&self.path, &name)?;
        }
        let dir = self
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let prefix = format!(
            "{}.",
            self.path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        );
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                let name = p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                name.starts_with(&prefix) && name.ends_with(".importing")
            })
            .collect();
        // uuid v7 names sort by creation time.
        files.sort();
        Ok(files)
    }
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

fn spill_or_lose(spill: &Spill, entry: &AuditEntry) {
    match spill.append(entry) {
        Ok(()) => metrics::counter!("sluice_audit_spilled_total").increment(1),
        Err(e) => {
            metrics::counter!("sluice_audit_lost_total").increment(1);
            tracing::error!(request_id = %entry.request_id, error = %e, path = %spill.path.display(), "audit record lost: the writer queue is full and the spill file cannot be written");
        }
    }
}

/// The first record the writer's seal covers. The stored seal's, when the head verifies
/// under `key`; otherwise a new seal from the next record, written to the head at once
/// (so that `audit verify` sees it before the first commit). A head that carries a seal
/// that does not verify, or none while its record carries a MAC, was rewritten by
/// someone without the key (or the key changed): that is logged and counted, and the
/// head is not vouched for — records sealed before the new start make `audit verify`
/// report the restart.
fn open_seal(
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

struct Writer {
    appender: Box<dyn AuditAppender>,
    rx: mpsc::Receiver<Job>,
    spill: Arc<Spill>,
    next_seq: u64,
    head: String,
    /// Seals records and the head when set (`hmac_key`).
    key: Option<Arc<ChainKey>>,
    /// The first record the seal covers (see [`open_seal`]); unused without a key.
    sealed_from: u64,
    batch_max: usize,
    flush: Duration,
}

impl Writer {
    async fn run(mut self, stop: CancellationToken) {
        self.import_spills();
        loop {
            let first = tokio::select! {
                job = self.rx.recv() => job,
                _ = stop.cancelled() => None,
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
        self.import_spills();
        // A checkpoint for the log: compare it with the head `audit verify` prints to
        // tell a database rolled back to an earlier state, which no MAC can.
        tracing::info!(
            seq = self.next_seq - 1,
            hash = %self.head,
            sealed = self.key.is_some(),
            "audit writer stopped; chain head"
        );
    }

    /// Chains and commits a batch; acknowledges strict waiters. On failure the entries go
    /// to the spill file (and the chain position is not consumed).
    fn write(&mut self, batch: Vec<Job>) {
        if batch.is_empty() {
            return;
        }
        let (entries, acks): (Vec<AuditEntry>, Vec<Option<oneshot::Sender<()>>>) =
            batch.into_iter().map(|j| (j.entry, j.ack)).unzip();
        if let Err(entries) = self.commit(entries, Origin::Queue) {
            for e in &entries {
                spill_or_lose(&self.spill, e);
            }
        }
        metrics::counter!("sluice_audit_batches_total").increment(1);
        for ack in acks.into_iter().flatten() {
            let _ = ack.send(());
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
    /// a few times; `Err` gives the entries back (the chain position is not consumed).
    /// Imported records whose request id is already stored are dropped when the store
    /// refuses them, and the rest rechained: a dropped record takes no chain position.
    fn commit(&mut self, entries: Vec<AuditEntry>, origin: Origin) -> Result<(), Vec<AuditEntry>> {
        let mut batch = self.chain(entries, origin);
        let mut delay = Duration::from_millis(50);
        for attempt in 0..5 {
            if batch.records.is_empty() {
                return Ok(());
            }
            match self.appender.append(&batch.records, batch.seal.as_ref()) {
                Ok(()) => {
                    metrics::counter!("sluice_audit_records_total")
                        .increment(batch.records.len() as u64);
                    self.next_seq = batch.next_seq;
                    self.head = batch.head;
                    return Ok(());
                }
                Err(StoreError::DuplicateRequestId) => {
                    // An import whose records the lookup before chaining did not all
                    // find (the unique index covers imported records only).
                    match self.skip_stored(batch.into_entries()) {
                        Ok(rest) => batch = self.chain(rest, origin),
                        Err(entries) => {
                            batch = self.chain(entries, origin);
                            std::thread::sleep(delay);
                            delay *= 2;
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, attempt, "audit batch failed to commit; retrying");
                    // This thread only writes the audit log; nothing else waits on it.
                    std::thread::sleep(delay);
                    delay *= 2;
                }
            }
        }
        Err(batch.into_entries())
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
        if !self
            .spill
            .pending
            .swap(false, std::sync::atomic::Ordering::AcqRel)
        {
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
                self.spill
                    .pending
                    .store(true, std::sync::atomic::Ordering::Release);
                return;
            }
        }
    }
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

/// `sluice-gateway audit bench`: the audit sink's sustained write rate on this machine.
/// Producers submit as fast as they can (in strict mode each waits for its
/// acknowledgement, as a request would); the run ends when every record is committed,
/// then the chain is verified and the spill and loss counts are reported.
pub async fn bench(records: u64, producers: u64, strict: bool) -> std::process::ExitCode {
    use std::process::ExitCode;
    let dir = match tempfile_dir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("cannot create a temporary directory: {e}");
            return ExitCode::FAILURE;
        }
    };
    let db = dir.join("bench.db").to_string_lossy().into_owned();
    let store: Arc<dyn Store> = match super::store::sqlite::SqliteStore::open(&db, strict).await {
        Ok(s) => Arc::new(s),
        Err(e) => {
            eprintln!("cannot open {db}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let config = AuditConfig {
        durability: if strict {
            Durability::Strict
        } else {
            Durability::Buffered
        },
        spill_path: Some(dir.join("bench.spill.jsonl").to_string_lossy().into_owned()),
        ..AuditConfig::default()
    };
    let tasks = tokio_util::task::TaskTracker::new();
    let sink = match AuditSink::start(store.clone(), config, &tasks).await {
        Ok(s) => Arc::new(s),
        Err(e) => {
            eprintln!("cannot start the writer: {e}");
            return ExitCode::FAILURE;
        }
    };
    let started = std::time::Instant::now();
    let per = records.div_ceil(producers.max(1));
    let mut handles = Vec::new();
    for p in 0..producers.max(1) {
        let sink = sink.clone();
        handles.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            for i in 0..per {
                let entry = sample_entry(p * per + i);
                let t = std::time::Instant::now();
                if let Some(ack) = sink.submit(entry) {
                    let _ = ack.await;
                    latencies.push(t.elapsed());
                }
                if i % 64 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for h in handles {
        latencies.extend(h.await.unwrap_or_default());
    }
    let submitted = started.elapsed();
    sink.shutdown();
    tasks.close();
    tasks.wait().await;
    let elapsed = started.elapsed();
    let seq = store.audit_head().await.map(|h| h.seq).unwrap_or_default();
    let report = crate::api::admin::verify_chain(store.as_ref()).await;
    let spilled = std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0);
    println!(
        "audit sink benchmark ({} durability)",
        if strict { "strict" } else { "buffered" }
    );
    println!(
        "records: {} submitted by {producers} producers, {seq} committed",
        per * producers.max(1)
    );
    println!(
        "submit phase: {:.2} s; until all committed: {:.2} s",
        submitted.as_secs_f64(),
        elapsed.as_secs_f64()
    );
    println!(
        "throughput: {:.0} records/s",
        seq as f64 / elapsed.as_secs_f64()
    );
    if !latencies.is_empty() {
        latencies.sort();
        let pct =
            |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
        println!(
            "strict acknowledgement latency: p50 {:?}, p99 {:?}",
            pct(0.5),
            pct(0.99)
        );
    }
    println!("files in the bench directory (db, wal, shm, spills): {spilled}");
    match report {
        Ok(r) => println!("chain: {r}"),
        Err(e) => println!("chain: cannot verify: {e}"),
    }
    let _ = std::fs::remove_dir_all(&dir);
    if seq == per * producers.max(1) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn tempfile_dir() -> std::io::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "sluice-audit-bench-{}",
        uuid::Uuid::now_v7().simple()
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// A realistic metadata-only record.
fn sample_entry(n: u64) -> AuditEntry {
    AuditEntry {
        // A request id as the API mints them, a UUIDv7: time-ordered, so the unique index
        // on request ids grows at its right edge as in production. Per-producer counters
        // (`bench-000000000042`) would scatter every batch over one index page per
        // producer, a cost no real traffic pays.
        request_id: uuid::Uuid::now_v7().simple().to_string(),
        ts_ms: super::now_ms(),
        source: "gateway".into(),
        org_id: Some("acme".into()),
        team_id: Some(format!("team-{}", n % 8)),
        user_id: Some(format!("user-{}", n % 200)),
        key_id: Some(format!("key{:08}", n % 500)),
        api: "chat_completions".into(),
        requested_model: "default".into(),
        provider: Some("openai".into()),
        model: Some("gpt-4o-mini".into()),
        attempts: vec![sluice_shared::audit::AuditAttempt {
            provider: "openai".into(),
            model: "gpt-4o-mini".into(),
            key_id: "key0".into(),
            duration_ms: 412.5,
            outcome: "ok".into(),
            status: Some(200),
            detail: None,
        }],
        input_tokens: 812,
        output_tokens: 164,
        cost_micros: 220,
        priced: true,
        latency_ms: 418.0,
        status: 200,
        outcome: "ok".into(),
        request_bytes: Some(3_400),
        response_bytes: Some(1_100),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::governance::store::sqlite::SqliteStore;
    use serde_json::Value;

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
        let env = crate::env::MapEnv::new([
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
}
