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
//! * Shutdown: the writer drains the channel and the spill file, then exits.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use sluice_shared::audit::{AuditEntry, canonical_json, chain_hash};

use super::store::{AuditAppender, ChainedRecord, Store, StoreError};

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
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
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
        let (seq, head) = store.audit_head().await?;
        let appender = store.audit_appender()?;
        let stop = CancellationToken::new();
        let writer = Writer {
            appender,
            rx,
            spill: spill.clone(),
            next_seq: seq + 1,
            head,
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

struct Writer {
    appender: Box<dyn AuditAppender>,
    rx: mpsc::Receiver<Job>,
    spill: Arc<Spill>,
    next_seq: u64,
    head: String,
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
    }

    /// Chains and commits a batch; acknowledges strict waiters. On failure the entries go
    /// to the spill file (and the chain position is not consumed).
    fn write(&mut self, batch: Vec<Job>) {
        if batch.is_empty() {
            return;
        }
        let (entries, acks): (Vec<AuditEntry>, Vec<Option<oneshot::Sender<()>>>) =
            batch.into_iter().map(|j| (j.entry, j.ack)).unzip();
        if let Err(entries) = self.commit(entries) {
            for e in &entries {
                spill_or_lose(&self.spill, e);
            }
        }
        metrics::counter!("sluice_audit_batches_total").increment(1);
        for ack in acks.into_iter().flatten() {
            let _ = ack.send(());
        }
    }

    /// Chains `entries` after the head and appends them, retrying a failed transaction
    /// a few times; `Err` gives the entries back (the chain position is not consumed).
    fn commit(&mut self, entries: Vec<AuditEntry>) -> Result<(), Vec<AuditEntry>> {
        let (records, seq, prev) = chain(entries, self.next_seq, self.head.clone());
        let mut delay = Duration::from_millis(50);
        for attempt in 0..5 {
            match self.appender.append(&records) {
                Ok(()) => {
                    metrics::counter!("sluice_audit_records_total").increment(records.len() as u64);
                    self.next_seq = seq;
                    self.head = prev;
                    return Ok(());
                }
                Err(e) => {
                    tracing::warn!(error = %e, attempt, "audit batch failed to commit; retrying");
                    // This thread only writes the audit log; nothing else waits on it.
                    std::thread::sleep(delay);
                    delay *= 2;
                }
            }
        }
        Err(records.into_iter().map(|r| r.entry).collect())
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
                if self.commit(chunk.to_vec()).is_err() {
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
                self.spill
                    .pending
                    .store(true, std::sync::atomic::Ordering::Release);
                return;
            }
        }
    }
}

/// Chains `entries` after `(start, head)`: each record's canonical JSON, hash and link.
fn chain(entries: Vec<AuditEntry>, start: u64, head: String) -> (Vec<ChainedRecord>, u64, String) {
    let mut records = Vec::with_capacity(entries.len());
    let mut seq = start;
    let mut prev = head;
    for entry in entries {
        let canonical = String::from_utf8(canonical_json(&entry)).unwrap_or_default();
        let hash = chain_hash(&prev, canonical.as_bytes());
        records.push(ChainedRecord {
            seq,
            prev_hash: std::mem::replace(&mut prev, hash.clone()),
            hash,
            entry,
            canonical,
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
    let (seq, _) = store.audit_head().await.unwrap_or_default();
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
        request_id: format!("bench-{n:012}"),
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

    async fn sink(
        dir: &tempfile::TempDir,
        durability: Durability,
        flush_interval_ms: u64,
    ) -> (Arc<dyn Store>, AuditSink, tokio_util::task::TaskTracker) {
        let db = dir.path().join("audit.db").to_string_lossy().into_owned();
        let strict = durability == Durability::Strict;
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&db, strict).await.unwrap());
        let config = AuditConfig {
            durability,
            flush_interval_ms,
            spill_path: Some(
                dir.path()
                    .join("spill.jsonl")
                    .to_string_lossy()
                    .into_owned(),
            ),
            ..AuditConfig::default()
        };
        let tasks = tokio_util::task::TaskTracker::new();
        let sink = AuditSink::start(store.clone(), config, &tasks)
            .await
            .unwrap();
        (store, sink, tasks)
    }

    /// Strict: each acknowledgement comes after its record is committed, and without
    /// waiting out the (here one-minute) flush interval, which only buffered mode uses.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn strict_acknowledges_after_commit_without_the_flush_wait() {
        let dir = tempfile::tempdir().unwrap();
        let (store, sink, tasks) = sink(&dir, Durability::Strict, 60_000).await;
        for n in 0..3 {
            let ack = sink
                .submit(sample_entry(n))
                .expect("strict mode returns an ack");
            tokio::time::timeout(Duration::from_secs(30), ack)
                .await
                .expect("acknowledged before the flush interval")
                .unwrap();
            let (seq, _) = store.audit_head().await.unwrap();
            assert_eq!(seq, n + 1, "record {n} committed before its ack");
        }
        sink.shutdown();
        tasks.close();
        tasks.wait().await;
    }

    /// Buffered: no ack; shutdown drains what is queued, chained in order.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn buffered_records_are_committed_by_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let (store, sink, tasks) = sink(&dir, Durability::Buffered, 60_000).await;
        for n in 0..100 {
            assert!(sink.submit(sample_entry(n)).is_none());
        }
        sink.shutdown();
        tasks.close();
        tasks.wait().await;
        let (seq, _) = store.audit_head().await.unwrap();
        assert_eq!(seq, 100);
        let report = crate::api::admin::verify_chain(store.as_ref())
            .await
            .unwrap();
        assert!(report.to_string().contains("\"ok\":true"), "{report}");
    }
}
