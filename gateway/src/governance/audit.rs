//! The audit writer: records go through a bounded channel to one batch writer that
//! chains them (hash of the predecessor) and appends them to the store in transactions.
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
//! * Shutdown: the writer drains the channel and the spill file, then exits.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use sluice_shared::audit::{AuditEntry, AuditRecord, canonical_json, chain_hash};

use super::store::{Store, StoreError};

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
    /// Records per transaction, at most. Default 1024.
    #[serde(default = "default_batch")]
    pub batch_max: usize,
    /// Longest a record waits for its batch to fill. Default 20 ms.
    #[serde(default = "default_flush")]
    pub flush_interval_ms: u64,
    /// Spill file for overload. Default: next to the database, `<database>.spill.jsonl`.
    #[serde(default)]
    pub spill_path: Option<String>,
    /// Bodies in `full` content records are cut at this many bytes. Default 65536.
    #[serde(default = "default_body")]
    pub max_body_bytes: usize,
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
        }
    }
}

fn default_capacity() -> usize {
    65_536
}
fn default_batch() -> usize {
    1024
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
}

impl Spill {
    fn append(&self, entry: &AuditEntry) -> std::io::Result<()> {
        let line = serde_json::to_string(entry).map_err(std::io::Error::other)?;
        let _guard = self.file.lock().unwrap_or_else(|p| p.into_inner());
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        f.write_all(line.as_bytes())?;
        f.write_all(b"\n")?;
        f.flush()
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
        });
        let (seq, head) = store.audit_head().await?;
        let stop = CancellationToken::new();
        let writer = Writer {
            store,
            rx,
            spill: spill.clone(),
            next_seq: seq + 1,
            head,
            batch_max: config.batch_max.max(1),
            flush: Duration::from_millis(config.flush_interval_ms),
        };
        tasks.spawn(writer.run(stop.clone()));
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

struct Writer {
    store: Arc<dyn Store>,
    rx: mpsc::Receiver<Job>,
    spill: Arc<Spill>,
    next_seq: u64,
    head: String,
    batch_max: usize,
    flush: Duration,
}

impl Writer {
    async fn run(mut self, stop: CancellationToken) {
        self.import_spills().await;
        loop {
            let first = tokio::select! {
                job = self.rx.recv() => job,
                _ = stop.cancelled() => None,
            };
            let Some(first) = first else { break };
            let mut batch = vec![first];
            let deadline = tokio::time::Instant::now() + self.flush;
            while batch.len() < self.batch_max {
                match self.rx.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                        Ok(Some(job)) => batch.push(job),
                        _ => break,
                    },
                }
            }
            self.write(batch).await;
            if self.rx.is_empty() {
                self.import_spills().await;
            }
        }
        // Drain what is still queued, then whatever spilled.
        self.rx.close();
        let mut rest = Vec::new();
        while let Some(job) = self.rx.recv().await {
            rest.push(job);
            if rest.len() >= self.batch_max {
                self.write(std::mem::take(&mut rest)).await;
            }
        }
        self.write(rest).await;
        self.import_spills().await;
    }

    /// Chains and commits a batch; acknowledges strict waiters. On failure the entries go
    /// to the spill file (and the chain position is not consumed).
    async fn write(&mut self, batch: Vec<Job>) {
        if batch.is_empty() {
            return;
        }
        let (entries, acks): (Vec<AuditEntry>, Vec<Option<oneshot::Sender<()>>>) =
            batch.into_iter().map(|j| (j.entry, j.ack)).unzip();
        if let Err(entries) = self.commit(entries).await {
            for e in &entries {
                spill_or_lose(&self.spill, e);
            }
        }
        metrics::counter!("sluice_audit_batches_total").increment(1);
        for ack in acks.into_iter().flatten() {
            let _ = ack.send(());
        }
    }

    async fn commit(&mut self, entries: Vec<AuditEntry>) -> Result<(), Vec<AuditEntry>> {
        let mut records = Vec::with_capacity(entries.len());
        let mut seq = self.next_seq;
        let mut prev = self.head.clone();
        for entry in &entries {
            let hash = chain_hash(&prev, &canonical_json(entry));
            records.push(AuditRecord {
                seq,
                prev_hash: prev,
                hash: hash.clone(),
                entry: entry.clone(),
            });
            prev = hash;
            seq += 1;
        }
        let mut delay = Duration::from_millis(50);
        for attempt in 0..5 {
            match self.store.append_audit(records.clone()).await {
                Ok(()) => {
                    metrics::counter!("sluice_audit_records_total").increment(records.len() as u64);
                    self.next_seq = seq;
                    self.head = prev;
                    return Ok(());
                }
                Err(e) => {
                    tracing::warn!(error = %e, attempt, "audit batch failed to commit; retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
            }
        }
        Err(entries)
    }

    async fn import_spills(&mut self) {
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
                if self.commit(chunk.to_vec()).await.is_err() {
                    ok = false;
                    break;
                }
            }
            if ok {
                let _ = std::fs::remove_file(&path);
                metrics::counter!("sluice_audit_spill_imported_total").increment(count as u64);
                tracing::info!(records = count, "imported spilled audit records");
            } else {
                // Keep the file; the next import retries it (records may then appear twice,
                // which the request id makes visible, rather than not at all).
                tracing::warn!(file = %path.display(), "audit spill import failed; will retry");
                return;
            }
        }
    }
}
