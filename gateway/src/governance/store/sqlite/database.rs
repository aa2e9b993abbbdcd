//! The store handle: opening the database (owner-only files, WAL, migrations) and the
//! connection settings the pool and the audit writer's connection share.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use sluice_shared::audit::ChainKey;

use super::migrations::MIGRATIONS;
use crate::governance::store::{StoreError, StoreResult};

pub(super) fn db(op: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| match &source {
        sqlx::Error::Database(e) if e.is_unique_violation() => {
            StoreError::Conflict(format!("{op}: {}", e.message()))
        }
        sqlx::Error::Database(e) if e.is_foreign_key_violation() => StoreError::Conflict(format!(
            "{op}: a referenced org, team or user does not exist"
        )),
        _ => StoreError::Db { op, source },
    }
}

/// Connection settings shared by the pool and the audit writer's own connection.
/// Audit appends are the bulk of writes: an 8 MiB page cache per connection keeps the
/// index pages hot without growing the process much, and checkpointing every ~16 MiB of
/// WAL instead of 4 MiB halves checkpoint stalls at high record rates.
pub(super) const CACHE_SIZE: &str = "-8192";
pub(super) const WAL_AUTOCHECKPOINT: &str = "4000";
pub(super) const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct SqliteStore {
    pub(super) pool: SqlitePool,
    pub(super) path: String,
    pub(super) strict_durability: bool,
    /// See [`Store::audit_key`](crate::governance::store::Store::audit_key); shared by
    /// clones.
    pub(super) audit_key: Arc<ArcSwapOption<ChainKey>>,
}

/// Unix milliseconds now, for the store's own bookkeeping (`applied_ms`, `updated_ms`).
/// Governance's clock lives in its root module, which the store (a child it imports
/// from) must not import from in turn.
pub(super) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Whether `path` names a file (not SQLite's in-memory database).
#[cfg(unix)]
fn is_file_path(path: &str) -> bool {
    !path.is_empty() && path != ":memory:" && !path.contains("mode=memory")
}

/// Creates the database file readable and writable by its owner only (0600, whatever
/// the umask) before SQLite opens it; SQLite itself would create it 0644 minus the umask.
/// An existing file keeps its mode (an operator may have granted a group on purpose), but
/// one that others can read is reported.
#[cfg(unix)]
fn create_private(path: &str) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        // The umask may have cleared bits of 0600 too (e.g. 0277): set it exactly.
        Ok(file) => file.set_permissions(std::fs::Permissions::from_mode(0o600)),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
            if mode & 0o007 != 0 {
                tracing::warn!(
                    database = path,
                    mode = format!("{mode:o}"),
                    "the governance database is accessible to every user of this machine; it holds the audit log and key hashes: chmod 600 it (its -wal and -shm follow)"
                );
            }
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Gives `-wal` and `-shm` no permission the database file lacks. SQLite creates them
/// with the database's mode, but reuses existing ones as they are: a `-wal` left from
/// before a `chmod 600` of the database would stay readable.
#[cfg(unix)]
fn restrict_sidecars(path: &str) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let db_mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
    for suffix in ["-wal", "-shm"] {
        let sidecar = format!("{path}{suffix}");
        let mode = match std::fs::metadata(&sidecar) {
            Ok(m) => m.permissions().mode() & 0o777,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if mode & !db_mode != 0 {
            std::fs::set_permissions(&sidecar, std::fs::Permissions::from_mode(mode & db_mode))?;
        }
    }
    Ok(())
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and applies migrations.
    /// `strict_durability`: fsync every commit (`synchronous=FULL`) instead of WAL's
    /// default (durable across process crashes, not necessarily power loss).
    pub async fn open(path: &str, strict_durability: bool) -> StoreResult<Self> {
        #[cfg(unix)]
        if is_file_path(path) {
            create_private(path).map_err(|source| StoreError::File {
                what: format!("cannot create the database file {path}"),
                source,
            })?;
        }
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{path}"))
            .map_err(db("open"))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(if strict_durability {
                SqliteSynchronous::Full
            } else {
                SqliteSynchronous::Normal
            })
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT)
            .pragma("cache_size", CACHE_SIZE)
            .pragma("wal_autocheckpoint", WAL_AUTOCHECKPOINT);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(db("open"))?;
        let store = SqliteStore {
            pool,
            path: path.to_owned(),
            strict_durability,
            audit_key: Arc::new(ArcSwapOption::empty()),
        };
        store.migrate().await?;
        #[cfg(unix)]
        if is_file_path(path) {
            restrict_sidecars(path).map_err(|source| StoreError::File {
                what: format!("cannot restrict the permissions of {path}-wal and -shm"),
                source,
            })?;
        }
        Ok(store)
    }

    async fn migrate(&self) -> StoreResult<()> {
        sqlx::query("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_ms INTEGER NOT NULL)")
            .execute(&self.pool)
            .await
            .map_err(db("migrate"))?;
        let current: i64 = sqlx::query("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
            .fetch_one(&self.pool)
            .await
            .and_then(|r| r.try_get(0))
            .map_err(db("migrate"))?;
        let latest = MIGRATIONS.last().map(|(v, _)| *v).unwrap_or(0);
        if current > latest {
            return Err(StoreError::Corrupt(format!(
                "the database schema is version {current}, newer than this gateway understands ({latest}); upgrade the gateway"
            )));
        }
        for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
            let mut tx = self.pool.begin().await.map_err(db("migrate"))?;
            sqlx::raw_sql(*sql)
                .execute(&mut *tx)
                .await
                .map_err(db("migrate"))?;
            sqlx::query("INSERT INTO schema_migrations (version, applied_ms) VALUES (?, ?)")
                .bind(version)
                .bind(now_ms())
                .execute(&mut *tx)
                .await
                .map_err(db("migrate"))?;
            tx.commit().await.map_err(db("migrate"))?;
        }
        Ok(())
    }

    /// The pool, for tests and tools that inspect the database directly.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}
