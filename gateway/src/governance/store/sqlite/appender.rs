//! The audit writer's own synchronous connection.

use std::collections::{HashMap, HashSet};

use sluice_shared::audit::GENESIS_HASH;

use super::database::{BUSY_TIMEOUT, CACHE_SIZE, WAL_AUTOCHECKPOINT};
use crate::governance::store::{
    AuditAppender, AuditHead, ChainedRecord, HeadSeal, StoreError, StoreResult,
};

const AUDIT_ROWS_PER_INSERT: usize = 48;

/// `INSERT INTO audit (...) VALUES (?, …), (?, …)` for `rows` rows.
fn insert_sql(rows: usize) -> String {
    const ROW: &str = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
    let mut sql = String::from(
        "INSERT INTO audit (seq, ts_ms, request_id, org_id, team_id, user_id, device_id, key_id, app, provider, model, status, cost_micros, input_tokens, output_tokens, record, prev_hash, hash, mac, imported) VALUES ",
    );
    for i in 0..rows {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(ROW);
    }
    sql
}

/// The audit writer's connection: a plain synchronous SQLite handle on the same file
/// (WAL lets it write while the pool serves admin reads), used only from the writer's
/// thread. Going through the async pool instead cost a round trip to sqlx's worker
/// thread for every statement of a batch, and a copy of every bound string.
pub(super) struct SqliteAuditAppender {
    conn: rusqlite::Connection,
    /// The SQL of a full multi-row chunk (the cache key of its prepared statement).
    chunk_sql: String,
    one_sql: String,
    /// Whether the table holds records from before migration 3, once asked.
    has_legacy: Option<bool>,
}

fn sqlite_err(op: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |source| StoreError::Sqlite { op, source }
}

impl SqliteAuditAppender {
    pub(super) fn open(path: &str, strict_durability: bool) -> StoreResult<Self> {
        let conn = (|| {
            let conn = rusqlite::Connection::open(path)?;
            conn.busy_timeout(BUSY_TIMEOUT)?;
            // The pool's settings (see `SqliteStore::open`): WAL is a property of the
            // file, the rest is per connection.
            let synchronous = if strict_durability { "FULL" } else { "NORMAL" };
            conn.execute_batch(&format!(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = {synchronous}; PRAGMA cache_size = {CACHE_SIZE}; PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT};"
            ))?;
            Ok(conn)
        })()
        .map_err(sqlite_err("open the audit writer"))?;
        Ok(SqliteAuditAppender {
            conn,
            chunk_sql: insert_sql(AUDIT_ROWS_PER_INSERT),
            one_sql: insert_sql(1),
            has_legacy: None,
        })
    }

    /// Records from before migration 3 have `imported` NULL and precede every later
    /// one, so the first record tells.
    fn has_legacy_records(&mut self) -> StoreResult<bool> {
        use rusqlite::OptionalExtension;
        if let Some(known) = self.has_legacy {
            return Ok(known);
        }
        let first: Option<Option<i64>> = self
            .conn
            .query_row("SELECT imported FROM audit ORDER BY seq LIMIT 1", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(sqlite_err("look up audit request ids"))?;
        let legacy = first == Some(None);
        self.has_legacy = Some(legacy);
        Ok(legacy)
    }

    /// One transaction: the records, then the chain head.
    fn append_tx(
        &mut self,
        records: &[ChainedRecord],
        last: &ChainedRecord,
        seal: Option<&HeadSeal>,
    ) -> rusqlite::Result<()> {
        // IMMEDIATE takes the write lock up front, so a concurrent admin write makes
        // this wait (busy timeout) rather than fail when the read lock upgrades.
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        // Multi-row inserts: one statement per AUDIT_ROWS_PER_INSERT records cuts the
        // per-statement cost that dominates single-row inserts (20 columns × 48 rows
        // stays far below SQLite's bound-variable limit); the remainder goes row by row
        // through one prepared statement.
        let mut chunks = records.chunks_exact(AUDIT_ROWS_PER_INSERT);
        for chunk in chunks.by_ref() {
            let mut stmt = tx.prepare_cached(&self.chunk_sql)?;
            bind_rows(&mut stmt, chunk)?;
            stmt.raw_execute()?;
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut stmt = tx.prepare_cached(&self.one_sql)?;
            for r in rest {
                bind_rows(&mut stmt, std::slice::from_ref(r))?;
                stmt.raw_execute()?;
            }
        }
        tx.prepare_cached("INSERT INTO audit_head (id, seq, hash, mac, sealed_from) VALUES (1, ?1, ?2, ?3, ?4) ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, mac = excluded.mac, sealed_from = excluded.sealed_from")?
            .execute(rusqlite::params![
                last.seq as i64,
                last.hash,
                seal.map(|s| s.mac.as_str()),
                seal.map(|s| s.sealed_from as i64),
            ])?;
        tx.commit()
    }
}

/// Whether `e` is the unique index on the request id refusing a record.
fn is_request_id_conflict(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, Some(message))
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                && message.contains("audit.request_id")
    )
}

/// Request ids per lookup statement (SQLite binds up to 32766 parameters).
const IDS_PER_LOOKUP: usize = 500;

impl AuditAppender for SqliteAuditAppender {
    fn append(&mut self, records: &[ChainedRecord], seal: Option<&HeadSeal>) -> StoreResult<()> {
        match records.last() {
            Some(last) => self.append_tx(records, last, seal).map_err(|e| {
                if is_request_id_conflict(&e) {
                    StoreError::DuplicateRequestId
                } else {
                    StoreError::Sqlite {
                        op: "write audit",
                        source: e,
                    }
                }
            }),
            None => Ok(()),
        }
    }

    fn head(&mut self) -> StoreResult<(AuditHead, Option<String>)> {
        use rusqlite::OptionalExtension;
        let row = self
            .conn
            .query_row(
                "SELECT h.seq, h.hash, h.mac, h.sealed_from, a.mac FROM audit_head h \
                 LEFT JOIN audit a ON a.seq = h.seq WHERE h.id = 1",
                [],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, Option<String>>(2)?,
                        r.get::<_, Option<i64>>(3)?,
                        r.get::<_, Option<String>>(4)?,
                    ))
                },
            )
            .optional()
            .map_err(sqlite_err("read audit head"))?;
        Ok(match row {
            Some((seq, hash, mac, sealed_from, record_mac)) => (
                AuditHead {
                    seq: seq as u64,
                    hash,
                    seal: mac.zip(sealed_from).map(|(mac, from)| HeadSeal {
                        mac,
                        sealed_from: from as u64,
                    }),
                },
                record_mac,
            ),
            None => (
                AuditHead {
                    seq: 0,
                    hash: GENESIS_HASH.to_owned(),
                    seal: None,
                },
                None,
            ),
        })
    }

    fn seal_head(&mut self, seal: &HeadSeal) -> StoreResult<()> {
        self.conn
            .execute(
                "UPDATE audit_head SET mac = ?1, sealed_from = ?2 WHERE id = 1",
                rusqlite::params![seal.mac, seal.sealed_from as i64],
            )
            .map(drop)
            .map_err(sqlite_err("seal audit head"))
    }

    fn stored_records(&mut self, entries: &[(&str, i64)]) -> StoreResult<HashMap<String, String>> {
        let op = "look up audit request ids";
        let mut found = HashMap::new();
        let mut collect = |conn: &rusqlite::Connection,
                           sql: String,
                           params: Vec<&dyn rusqlite::ToSql>,
                           wanted: Option<&HashSet<&str>>|
         -> StoreResult<()> {
            let mut stmt = conn.prepare(&sql).map_err(sqlite_err(op))?;
            let rows = stmt
                .query_map(params.as_slice(), |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                })
                .map_err(sqlite_err(op))?;
            for row in rows {
                let (id, record) = row.map_err(sqlite_err(op))?;
                if wanted.is_none_or(|w| w.contains(id.as_str())) {
                    // Oldest first: an id's first record wins.
                    found.entry(id).or_insert(record);
                }
            }
            Ok(())
        };
        for chunk in entries.chunks(IDS_PER_LOOKUP) {
            let placeholders = vec!["?"; chunk.len()].join(", ");
            // Imported records, by the partial unique index (the `imported = 1` term lets
            // the planner use it).
            collect(
                &self.conn,
                format!(
                    "SELECT request_id, record FROM audit WHERE imported = 1 AND request_id IN ({placeholders}) ORDER BY seq"
                ),
                chunk
                    .iter()
                    .map(|(id, _)| id as &dyn rusqlite::ToSql)
                    .collect(),
                None,
            )?;
        }
        if self.has_legacy_records()? {
            // Records from before migration 3 (an import interrupted on an older version,
            // resumed on this one): not indexed by request id, so found by receipt time
            // (`audit_ts`), which a re-imported record shares with its first copy.
            let wanted: HashSet<&str> = entries.iter().map(|(id, _)| *id).collect();
            let mut times: Vec<i64> = entries.iter().map(|(_, ts)| *ts).collect();
            times.sort_unstable();
            times.dedup();
            for chunk in times.chunks(IDS_PER_LOOKUP) {
                let placeholders = vec!["?"; chunk.len()].join(", ");
                collect(
                    &self.conn,
                    format!(
                        "SELECT request_id, record FROM audit WHERE imported IS NULL AND ts_ms IN ({placeholders}) ORDER BY seq"
                    ),
                    chunk.iter().map(|ts| ts as &dyn rusqlite::ToSql).collect(),
                    Some(&wanted),
                )?;
            }
        }
        Ok(found)
    }
}

/// Binds `rows` to consecutive parameters of a multi-row insert (see [`insert_sql`]).
fn bind_rows(stmt: &mut rusqlite::Statement<'_>, rows: &[ChainedRecord]) -> rusqlite::Result<()> {
    let mut i = 0;
    let mut bind = |value: &dyn rusqlite::ToSql| {
        i += 1;
        stmt.raw_bind_parameter(i, value)
    };
    for r in rows {
        let e = &r.entry;
        bind(&(r.seq as i64))?;
        bind(&e.ts_ms)?;
        bind(&e.request_id)?;
        bind(&e.org_id)?;
        bind(&e.team_id)?;
        bind(&e.user_id)?;
        bind(&e.device_id)?;
        bind(&e.key_id)?;
        bind(&e.app)?;
        bind(&e.provider)?;
        bind(&e.model)?;
        bind(&(e.status as i64))?;
        bind(&(e.cost_micros as i64))?;
        bind(&(e.input_tokens as i64))?;
        bind(&(e.output_tokens as i64))?;
        bind(&r.canonical)?;
        bind(&r.prev_hash)?;
        bind(&r.hash)?;
        bind(&r.mac)?;
        bind(&i64::from(r.imported))?;
    }
    Ok(())
}
