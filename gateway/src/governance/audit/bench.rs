//! `sluice-gateway audit bench`.

use std::path::PathBuf;
use std::sync::Arc;

use sluice_shared::audit::AuditEntry;

use super::sink::AuditSink;
use crate::config::{AuditConfig, Durability};
use crate::governance::store::Store;

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
    let store: Arc<dyn Store> =
        match crate::governance::store::sqlite::SqliteStore::open(&db, strict).await {
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
    let mut producers_set = tokio::task::JoinSet::new();
    for p in 0..producers.max(1) {
        let sink = sink.clone();
        producers_set.spawn(async move {
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
        });
    }
    let mut latencies = Vec::new();
    while let Some(done) = producers_set.join_next().await {
        latencies.extend(done.unwrap_or_default());
    }
    let submitted = started.elapsed();
    sink.shutdown();
    tasks.close();
    tasks.wait().await;
    let elapsed = started.elapsed();
    let seq = store.audit_head().await.map(|h| h.seq).unwrap_or_default();
    let report = super::verify::verify_chain(store.as_ref()).await;
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
        Ok(r) => println!("chain: {}", serde_json::to_string(&r).unwrap_or_default()),
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
pub(super) fn sample_entry(n: u64) -> AuditEntry {
    AuditEntry {
        // A request id as the API mints them, a UUIDv7: time-ordered, so the unique index
        // on request ids grows at its right edge as in production. Per-producer counters
        // (`bench-000000000042`) would scatter every batch over one index page per
        // producer, a cost no real traffic pays.
        request_id: uuid::Uuid::now_v7().simple().to_string(),
        ts_ms: now_ms(),
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

/// Unix milliseconds now. Governance's clock lives in its root module, which the audit
/// module (a child it imports from) must not import from in turn.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
