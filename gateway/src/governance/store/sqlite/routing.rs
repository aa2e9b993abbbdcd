//! Providers and aliases defined through the admin API.

use sqlx::Row;
use sqlx::sqlite::SqlitePool;

use super::database::{db, now_ms};
use crate::governance::store::{StoreError, StoreResult};

pub(super) async fn entries(pool: &SqlitePool) -> StoreResult<Vec<(String, String, String)>> {
    let rows = sqlx::query("SELECT kind, name, body FROM routing_entries ORDER BY kind, name")
        .fetch_all(pool)
        .await
        .map_err(db("read routing"))?;
    let get = |e: sqlx::Error| StoreError::Db {
        op: "read routing",
        source: e,
    };
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get(0).map_err(get)?,
                r.try_get(1).map_err(get)?,
                r.try_get(2).map_err(get)?,
            ))
        })
        .collect()
}

pub(super) async fn put(
    pool: &SqlitePool,
    kind: &'static str,
    name: String,
    body: String,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO routing_entries (kind, name, body, updated_ms) VALUES (?, ?, ?, ?) \
         ON CONFLICT (kind, name) DO UPDATE SET body = excluded.body, updated_ms = excluded.updated_ms",
    )
    .bind(kind)
    .bind(&name)
    .bind(&body)
    .bind(now_ms())
    .execute(pool)
    .await
    .map_err(db("write routing"))?;
    Ok(())
}

pub(super) async fn delete(pool: &SqlitePool, kind: &'static str, name: String) -> StoreResult<()> {
    let done = sqlx::query("DELETE FROM routing_entries WHERE kind = ? AND name = ?")
        .bind(kind)
        .bind(&name)
        .execute(pool)
        .await
        .map_err(db("delete routing"))?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound(format!(
            "{kind} `{name}` (defined through the admin API)"
        )));
    }
    Ok(())
}
