//! Audit reads through the pool: the head, pages, the verifier's rows, duplicates,
//! spend and usage. Appends go through the writer's own connection (`appender`).

use sqlx::sqlite::{SqlitePool, SqliteRow};
use sqlx::{AssertSqlSafe, Row};

use sluice_shared::audit::{AuditEntry, AuditRecord, GENESIS_HASH};

use super::database::db;
use crate::governance::model::ScopeKind;
use crate::governance::store::{
    AuditDuplicates, AuditFilter, AuditHead, ChainRow, HeadSeal, StoreError, StoreResult,
    UsageGroup, UsageRow,
};

fn record_from_row(r: &SqliteRow) -> StoreResult<AuditRecord> {
    let get = |e: sqlx::Error| StoreError::Db {
        op: "read audit",
        source: e,
    };
    let seq: i64 = r.try_get("seq").map_err(get)?;
    let json: String = r.try_get("record").map_err(get)?;
    let entry: AuditEntry = serde_json::from_str(&json)
        .map_err(|e| StoreError::Corrupt(format!("audit record {seq}: {e}")))?;
    Ok(AuditRecord {
        seq: seq as u64,
        prev_hash: r.try_get("prev_hash").map_err(get)?,
        hash: r.try_get("hash").map_err(get)?,
        entry,
    })
}

fn scope_column(scope: ScopeKind) -> &'static str {
    match scope {
        ScopeKind::Key => "key_id",
        ScopeKind::User => "user_id",
        ScopeKind::Device => "device_id",
        ScopeKind::Team => "team_id",
        ScopeKind::Org => "org_id",
        ScopeKind::Model => "model",
    }
}

pub(super) async fn head(pool: &SqlitePool) -> StoreResult<AuditHead> {
    let row = sqlx::query("SELECT seq, hash, mac, sealed_from FROM audit_head WHERE id = 1")
        .fetch_optional(pool)
        .await
        .map_err(db("read audit head"))?;
    let Some(r) = row else {
        return Ok(AuditHead {
            seq: 0,
            hash: GENESIS_HASH.to_owned(),
            seal: None,
        });
    };
    let seq: i64 = r.try_get(0).map_err(db("read audit head"))?;
    let hash: String = r.try_get(1).map_err(db("read audit head"))?;
    let mac: Option<String> = r.try_get(2).map_err(db("read audit head"))?;
    let sealed_from: Option<i64> = r.try_get(3).map_err(db("read audit head"))?;
    Ok(AuditHead {
        seq: seq as u64,
        hash,
        seal: mac.zip(sealed_from).map(|(mac, from)| HeadSeal {
            mac,
            sealed_from: from as u64,
        }),
    })
}

pub(super) async fn duplicates(pool: &SqlitePool, examples: u32) -> StoreResult<AuditDuplicates> {
    let get = |e: sqlx::Error| StoreError::Db {
        op: "find duplicate audit records",
        source: e,
    };
    // One pass grouped by request id (a sort: no index covers every record, so
    // that writes from the queue maintain none). Besides repeated ids, it finds
    // ids whose first record is marked as a duplicate, or none is counted.
    let rows = sqlx::query(
        "SELECT request_id, COUNT(*), SUM(dup_seq = 0), MIN(seq), \
         MIN(CASE WHEN dup_seq = 0 THEN seq END) AS first_counted \
         FROM audit GROUP BY request_id \
         HAVING COUNT(*) > 1 OR first_counted IS NULL OR first_counted != MIN(seq) \
         ORDER BY MIN(seq)",
    )
    .fetch_all(pool)
    .await
    .map_err(get)?;
    let mut found = AuditDuplicates::default();
    for r in &rows {
        let records: i64 = r.try_get(1).map_err(get)?;
        let first: i64 = r.try_get(3).map_err(get)?;
        let first_counted: Option<i64> = r.try_get(4).map_err(get)?;
        if records > 1 {
            found.request_ids += 1;
            found.extra_records += (records - 1) as u64;
            if found.examples.len() < examples as usize {
                found.examples.push(r.try_get(0).map_err(get)?);
            }
        }
        if first_counted != Some(first) && found.unmatched.len() < 10 {
            found.unmatched.push(first as u64);
        }
    }
    Ok(found)
}

pub(super) async fn page(
    pool: &SqlitePool,
    f: AuditFilter,
    limit: u32,
) -> StoreResult<Vec<AuditRecord>> {
    let mut sql = String::from("SELECT seq, record, prev_hash, hash FROM audit WHERE seq > ?");
    let mut text_binds: Vec<String> = Vec::new();
    for (column, value) in [
        ("key_id", &f.key_id),
        ("user_id", &f.user_id),
        ("device_id", &f.device_id),
        ("team_id", &f.team_id),
        ("org_id", &f.org_id),
        ("model", &f.model),
        ("provider", &f.provider),
        ("app", &f.app),
    ] {
        if let Some(v) = value {
            sql.push_str(&format!(" AND {column} = ?"));
            text_binds.push(v.clone());
        }
    }
    if f.status.is_some() {
        sql.push_str(" AND status = ?");
    }
    if f.from_ms.is_some() {
        sql.push_str(" AND ts_ms >= ?");
    }
    if f.to_ms.is_some() {
        sql.push_str(" AND ts_ms < ?");
    }
    sql.push_str(" ORDER BY seq LIMIT ?");
    // Only fixed column names were interpolated; every value is bound.
    let mut q = sqlx::query(AssertSqlSafe(sql)).bind(f.after_seq.unwrap_or(0) as i64);
    for v in text_binds {
        q = q.bind(v);
    }
    if let Some(s) = f.status {
        q = q.bind(s as i64);
    }
    if let Some(v) = f.from_ms {
        q = q.bind(v);
    }
    if let Some(v) = f.to_ms {
        q = q.bind(v);
    }
    let rows = q
        .bind(limit as i64)
        .fetch_all(pool)
        .await
        .map_err(db("query audit"))?;
    rows.iter().map(record_from_row).collect()
}

pub(super) async fn chain(pool: &SqlitePool, after: u64, limit: u32) -> StoreResult<Vec<ChainRow>> {
    let rows = sqlx::query(
        "SELECT seq, prev_hash, record, hash, ts_ms, key_id, team_id, model, status, cost_micros, dup_seq, mac, imported FROM audit WHERE seq > ? ORDER BY seq LIMIT ?",
    )
    .bind(after as i64)
    .bind(limit as i64)
    .fetch_all(pool)
    .await
    .map_err(db("read audit"))?;
    let get = |e: sqlx::Error| StoreError::Db {
        op: "read audit",
        source: e,
    };
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let seq: i64 = r.try_get(0).map_err(get)?;
        let record: String = r.try_get(2).map_err(get)?;
        // The indexed columns must agree with the hashed record; a mismatch is an
        // edit made to fool queries without touching the JSON. Report it as an
        // altered record by handing the verifier bytes that cannot match. `dup_seq`
        // is 0, or the record's own seq on a record from before migration 3 (a
        // duplicate it found): anything else would hide the record from spend.
        let entry: Option<AuditEntry> = serde_json::from_str(&record).ok();
        let dup_seq = r.try_get::<i64, _>(10).ok();
        let legacy = r.try_get::<Option<i64>, _>(12).ok() == Some(None);
        let consistent = (dup_seq == Some(0) || (dup_seq == Some(seq) && legacy))
            && entry.as_ref().is_some_and(|e| {
                r.try_get::<i64, _>(4).ok() == Some(e.ts_ms)
                    && r.try_get::<Option<String>, _>(5).ok().flatten() == e.key_id
                    && r.try_get::<Option<String>, _>(6).ok().flatten() == e.team_id
                    && r.try_get::<Option<String>, _>(7).ok().flatten() == e.model
                    && r.try_get::<i64, _>(8).ok() == Some(e.status as i64)
                    && r.try_get::<i64, _>(9).ok() == Some(e.cost_micros as i64)
            });
        let bytes = if consistent {
            record.into_bytes()
        } else {
            b"<columns differ from record>".to_vec()
        };
        out.push(ChainRow {
            seq: seq as u64,
            prev_hash: r.try_get(1).map_err(get)?,
            canonical: bytes,
            hash: r.try_get(3).map_err(get)?,
            mac: r.try_get(11).map_err(get)?,
        });
    }
    Ok(out)
}

pub(super) async fn spend_buckets(
    pool: &SqlitePool,
    scope: ScopeKind,
    id: String,
    since_ms: i64,
    bucket_ms: i64,
) -> StoreResult<Vec<(i64, u64)>> {
    let sql = format!(
        "SELECT (ts_ms / ?) * ? AS bucket, SUM(cost_micros) FROM audit WHERE {} = ? AND ts_ms >= ? AND dup_seq = 0 GROUP BY bucket",
        scope_column(scope)
    );
    let rows = sqlx::query(AssertSqlSafe(sql))
        .bind(bucket_ms)
        .bind(bucket_ms)
        .bind(&id)
        .bind(since_ms)
        .fetch_all(pool)
        .await
        .map_err(db("read spend"))?;
    let get = |e: sqlx::Error| StoreError::Db {
        op: "read spend",
        source: e,
    };
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get::<i64, _>(0).map_err(get)?,
                r.try_get::<i64, _>(1).map_err(get)?.max(0) as u64,
            ))
        })
        .collect()
}

pub(super) async fn usage(
    pool: &SqlitePool,
    group: UsageGroup,
    by_day: bool,
    from_ms: i64,
    to_ms: i64,
) -> StoreResult<Vec<UsageRow>> {
    let col = group.column();
    let day = if by_day {
        "strftime('%Y-%m-%d', ts_ms / 1000, 'unixepoch')"
    } else {
        "NULL"
    };
    let sql = format!(
        "SELECT COALESCE({col}, '(none)') AS g, {day} AS d, COUNT(*), SUM(input_tokens), SUM(output_tokens), SUM(cost_micros) \
         FROM audit WHERE ts_ms >= ? AND ts_ms < ? AND dup_seq = 0 GROUP BY g, d ORDER BY d, g"
    );
    let rows = sqlx::query(AssertSqlSafe(sql))
        .bind(from_ms)
        .bind(to_ms)
        .fetch_all(pool)
        .await
        .map_err(db("usage report"))?;
    let get = |e: sqlx::Error| StoreError::Db {
        op: "usage report",
        source: e,
    };
    rows.iter()
        .map(|r| {
            Ok(UsageRow {
                group: r.try_get(0).map_err(get)?,
                day: r.try_get(1).map_err(get)?,
                requests: r.try_get::<i64, _>(2).map_err(get)? as u64,
                input_tokens: r.try_get::<i64, _>(3).map_err(get)? as u64,
                output_tokens: r.try_get::<i64, _>(4).map_err(get)? as u64,
                cost_usd: r.try_get::<i64, _>(5).map_err(get)? as f64 / 1_000_000.0,
            })
        })
        .collect()
}
