//! The embedded store: one SQLite file in WAL mode.
//!
//! Migrations are a numbered list applied in order inside transactions and recorded in
//! `schema_migrations`; a database newer than this binary is refused rather than guessed
//! at. The audit table keeps each record's canonical JSON (what its hash covers) next to
//! indexed copies of the columns queries filter on; `audit verify` checks both.
//!
//! The database and its `-wal`/`-shm` hold every audit record and key hash, so they are
//! readable by the gateway's user only: a new database file is created 0600 whatever the
//! umask, and SQLite's unix VFS gives the `-wal` and `-shm` it creates the main file's
//! permissions (a test below holds it to that).

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;

use futures_util::future::BoxFuture;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, Row};

use sluice_shared::audit::{AuditEntry, AuditRecord, ChainKey, GENESIS_HASH};

use super::{
    AuditAppender, AuditDuplicates, AuditFilter, AuditHead, ChainRow, ChainedRecord, Entity,
    HeadSeal, PolicyRows, Store, StoreError, StoreResult, UsageGroup, UsageRow,
};
use crate::governance::model::{
    Budget, BudgetWindow, Device, KeyPolicy, KeyStatus, Org, OwnerKind, RateLimit, ScopeKind, Team,
    User, VirtualKey,
};

const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        r#"
CREATE TABLE orgs (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, created_ms INTEGER NOT NULL);
CREATE TABLE teams (
    id TEXT PRIMARY KEY, org_id TEXT NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    name TEXT NOT NULL, created_ms INTEGER NOT NULL, UNIQUE (org_id, name));
CREATE TABLE users (
    id TEXT PRIMARY KEY, team_id TEXT NOT NULL REFERENCES teams(id) ON DELETE CASCADE,
    email TEXT NOT NULL UNIQUE, name TEXT, created_ms INTEGER NOT NULL);
CREATE TABLE devices (
    id TEXT PRIMARY KEY, team_id TEXT NOT NULL REFERENCES teams(id) ON DELETE CASCADE,
    user_id TEXT REFERENCES users(id) ON DELETE SET NULL, hostname TEXT NOT NULL, created_ms INTEGER NOT NULL);
CREATE TABLE keys (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, secret_hash TEXT NOT NULL,
    previous_hash TEXT, previous_expires_ms INTEGER,
    owner_kind TEXT NOT NULL CHECK (owner_kind IN ('user', 'device', 'team')), owner_id TEXT NOT NULL,
    team_id TEXT NOT NULL REFERENCES teams(id) ON DELETE CASCADE,
    status TEXT NOT NULL CHECK (status IN ('active', 'blocked')), expires_ms INTEGER,
    policy TEXT NOT NULL, created_ms INTEGER NOT NULL);
CREATE TABLE budgets (
    id TEXT PRIMARY KEY, scope_kind TEXT NOT NULL, scope_id TEXT NOT NULL,
    window TEXT NOT NULL, rolling INTEGER NOT NULL, limit_usd REAL NOT NULL,
    soft_fraction REAL NOT NULL, created_ms INTEGER NOT NULL);
CREATE TABLE rate_limits (
    id TEXT PRIMARY KEY, scope_kind TEXT NOT NULL, scope_id TEXT NOT NULL,
    rpm INTEGER, tpm INTEGER, concurrency INTEGER, created_ms INTEGER NOT NULL);
CREATE TABLE audit (
    seq INTEGER PRIMARY KEY, ts_ms INTEGER NOT NULL, request_id TEXT NOT NULL,
    org_id TEXT, team_id TEXT, user_id TEXT, device_id TEXT, key_id TEXT, app TEXT,
    provider TEXT, model TEXT, status INTEGER NOT NULL, cost_micros INTEGER NOT NULL,
    input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL,
    record TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL);
-- Every index is paid for on each audit append, the write that runs at request rate.
-- Time and key cover the hot reads (usage reports, budget rebuilds over the current
-- window, per-key queries); team/user filters scan the time range.
CREATE INDEX audit_ts ON audit (ts_ms);
CREATE INDEX audit_key_ts ON audit (key_id, ts_ms);
CREATE TABLE audit_head (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL, hash TEXT NOT NULL);
"#,
    ),
    (
        2,
        r#"
CREATE TABLE routing_entries (
    kind TEXT NOT NULL CHECK (kind IN ('provider', 'alias')), name TEXT NOT NULL,
    body TEXT NOT NULL, updated_ms INTEGER NOT NULL, PRIMARY KEY (kind, name));
"#,
    ),
    (
        3,
        r#"
-- One record per request id. A spill import interrupted after a commit (kill -9) used to
-- import those records again on restart; imports now skip what is already stored, found
-- by request id. A spilled record was never committed from the queue (it went to the
-- spill file instead, or its batch failed), so only imported records can be repeated:
-- the unique index covers those alone, and a write from the queue maintains no index
-- for it (it evaluates the partial index's WHERE, nothing more). `imported`: NULL for
-- records from before this migration (found by time instead), 0 from the queue, 1 from
-- a spill file.
ALTER TABLE audit ADD COLUMN imported INTEGER;
CREATE UNIQUE INDEX audit_imported_request_id ON audit (request_id) WHERE imported = 1;
-- Databases from before may already hold duplicates (which cannot be deleted without
-- breaking the chain): each request id keeps its first record with dup_seq 0, later ones
-- get dup_seq = their own seq, and spend and usage count only dup_seq 0. New records
-- always have dup_seq 0.
ALTER TABLE audit ADD COLUMN dup_seq INTEGER NOT NULL DEFAULT 0;
UPDATE audit SET dup_seq = seq WHERE seq NOT IN (SELECT MIN(seq) FROM audit GROUP BY request_id);
-- The optional seal (governance.audit.hmac_key): a MAC per record and one on the head.
ALTER TABLE audit ADD COLUMN mac TEXT;
ALTER TABLE audit_head ADD COLUMN mac TEXT;
ALTER TABLE audit_head ADD COLUMN sealed_from INTEGER;
"#,
    ),
];

fn db(op: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
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
const CACHE_SIZE: &str = "-8192";
const WAL_AUTOCHECKPOINT: &str = "4000";
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    path: String,
    strict_durability: bool,
    /// See [`Store::audit_key`]; shared by clones.
    audit_key: Arc<ArcSwapOption<ChainKey>>,
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
                .bind(crate::governance::now_ms())
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

fn corrupt(what: &str, value: &str) -> StoreError {
    StoreError::Corrupt(format!("unknown {what} `{value}`"))
}

fn key_from_row(r: &SqliteRow) -> StoreResult<VirtualKey> {
    let get = |e: sqlx::Error| StoreError::Db {
        op: "load keys",
        source: e,
    };
    let owner: String = r.try_get("owner_kind").map_err(get)?;
    let status: String = r.try_get("status").map_err(get)?;
    let policy: String = r.try_get("policy").map_err(get)?;
    Ok(VirtualKey {
        id: r.try_get("id").map_err(get)?,
        name: r.try_get("name").map_err(get)?,
        secret_hash: r.try_get("secret_hash").map_err(get)?,
        previous_hash: r.try_get("previous_hash").map_err(get)?,
        previous_expires_ms: r.try_get("previous_expires_ms").map_err(get)?,
        owner_kind: OwnerKind::parse(&owner).ok_or_else(|| corrupt("owner kind", &owner))?,
        owner_id: r.try_get("owner_id").map_err(get)?,
        team_id: r.try_get("team_id").map_err(get)?,
        status: match status.as_str() {
            "active" => KeyStatus::Active,
            "blocked" => KeyStatus::Blocked,
            other => return Err(corrupt("key status", other)),
        },
        expires_ms: r.try_get("expires_ms").map_err(get)?,
        policy: serde_json::from_str::<KeyPolicy>(&policy)
            .map_err(|e| StoreError::Corrupt(format!("key policy: {e}")))?,
        created_ms: r.try_get("created_ms").map_err(get)?,
    })
}

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

impl Store for SqliteStore {
    fn load_policy(&self) -> BoxFuture<'_, StoreResult<PolicyRows>> {
        Box::pin(async move {
            let p = &self.pool;
            let get = |e: sqlx::Error| StoreError::Db {
                op: "load policy",
                source: e,
            };
            let mut rows = PolicyRows::default();
            for r in sqlx::query("SELECT id, name, created_ms FROM orgs")
                .fetch_all(p)
                .await
                .map_err(get)?
            {
                rows.orgs.push(Org {
                    id: r.try_get(0).map_err(get)?,
                    name: r.try_get(1).map_err(get)?,
                    created_ms: r.try_get(2).map_err(get)?,
                });
            }
            for r in sqlx::query("SELECT id, org_id, name, created_ms FROM teams")
                .fetch_all(p)
                .await
                .map_err(get)?
            {
                rows.teams.push(Team {
                    id: r.try_get(0).map_err(get)?,
                    org_id: r.try_get(1).map_err(get)?,
                    name: r.try_get(2).map_err(get)?,
                    created_ms: r.try_get(3).map_err(get)?,
                });
            }
            for r in sqlx::query("SELECT id, team_id, email, name, created_ms FROM users")
                .fetch_all(p)
                .await
                .map_err(get)?
            {
                rows.users.push(User {
                    id: r.try_get(0).map_err(get)?,
                    team_id: r.try_get(1).map_err(get)?,
                    email: r.try_get(2).map_err(get)?,
                    name: r.try_get(3).map_err(get)?,
                    created_ms: r.try_get(4).map_err(get)?,
                });
            }
            for r in sqlx::query("SELECT id, team_id, user_id, hostname, created_ms FROM devices")
                .fetch_all(p)
                .await
                .map_err(get)?
            {
                rows.devices.push(Device {
                    id: r.try_get(0).map_err(get)?,
                    team_id: r.try_get(1).map_err(get)?,
                    user_id: r.try_get(2).map_err(get)?,
                    hostname: r.try_get(3).map_err(get)?,
                    created_ms: r.try_get(4).map_err(get)?,
                });
            }
            for r in sqlx::query("SELECT * FROM keys")
                .fetch_all(p)
                .await
                .map_err(get)?
            {
                rows.keys.push(key_from_row(&r)?);
            }
            for r in sqlx::query("SELECT id, scope_kind, scope_id, window, rolling, limit_usd, soft_fraction, created_ms FROM budgets")
                .fetch_all(p)
                .await
                .map_err(get)?
            {
                let scope: String = r.try_get(1).map_err(get)?;
                let window: String = r.try_get(3).map_err(get)?;
                rows.budgets.push(Budget {
                    id: r.try_get(0).map_err(get)?,
                    scope_kind: ScopeKind::parse(&scope).ok_or_else(|| corrupt("scope", &scope))?,
                    scope_id: r.try_get(2).map_err(get)?,
                    window: BudgetWindow::parse(&window).ok_or_else(|| corrupt("window", &window))?,
                    rolling: r.try_get::<i64, _>(4).map_err(get)? != 0,
                    limit_usd: r.try_get(5).map_err(get)?,
                    soft_fraction: r.try_get(6).map_err(get)?,
                    created_ms: r.try_get(7).map_err(get)?,
                });
            }
            for r in sqlx::query("SELECT id, scope_kind, scope_id, rpm, tpm, concurrency, created_ms FROM rate_limits")
                .fetch_all(p)
                .await
                .map_err(get)?
            {
                let scope: String = r.try_get(1).map_err(get)?;
                let opt = |i: usize| -> StoreResult<Option<u64>> {
                    Ok(r.try_get::<Option<i64>, _>(i).map_err(get)?.map(|v| v.max(0) as u64))
                };
                rows.limits.push(RateLimit {
                    id: r.try_get(0).map_err(get)?,
                    scope_kind: ScopeKind::parse(&scope).ok_or_else(|| corrupt("scope", &scope))?,
                    scope_id: r.try_get(2).map_err(get)?,
                    rpm: opt(3)?,
                    tpm: opt(4)?,
                    concurrency: opt(5)?,
                    created_ms: r.try_get(6).map_err(get)?,
                });
            }
            Ok(rows)
        })
    }

    fn insert_org(&self, org: Org) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(async move {
            sqlx::query("INSERT INTO orgs (id, name, created_ms) VALUES (?, ?, ?)")
                .bind(&org.id)
                .bind(&org.name)
                .bind(org.created_ms)
                .execute(&self.pool)
                .await
                .map_err(db("create org"))?;
            Ok(())
        })
    }

    fn insert_team(&self, team: Team) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(async move {
            sqlx::query("INSERT INTO teams (id, org_id, name, created_ms) VALUES (?, ?, ?, ?)")
                .bind(&team.id)
                .bind(&team.org_id)
                .bind(&team.name)
                .bind(team.created_ms)
                .execute(&self.pool)
                .await
                .map_err(db("create team"))?;
            Ok(())
        })
    }

    fn insert_user(&self, user: User) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(async move {
            sqlx::query(
                "INSERT INTO users (id, team_id, email, name, created_ms) VALUES (?, ?, ?, ?, ?)",
            )
            .bind(&user.id)
            .bind(&user.team_id)
            .bind(&user.email)
            .bind(&user.name)
            .bind(user.created_ms)
            .execute(&self.pool)
            .await
            .map_err(db("create user"))?;
            Ok(())
        })
    }

    fn insert_device(&self, device: Device) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(async move {
            sqlx::query("INSERT INTO devices (id, team_id, user_id, hostname, created_ms) VALUES (?, ?, ?, ?, ?)")
                .bind(&device.id)
                .bind(&device.team_id)
                .bind(&device.user_id)
                .bind(&device.hostname)
                .bind(device.created_ms)
                .execute(&self.pool)
                .await
                .map_err(db("create device"))?;
            Ok(())
        })
    }

    fn insert_key(&self, key: VirtualKey) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(async move {
            let policy = serde_json::to_string(&key.policy)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            sqlx::query(
                "INSERT INTO keys (id, name, secret_hash, previous_hash, previous_expires_ms, owner_kind, owner_id, team_id, status, expires_ms, policy, created_ms) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(&key.id)
            .bind(&key.name)
            .bind(&key.secret_hash)
            .bind(&key.previous_hash)
            .bind(key.previous_expires_ms)
            .bind(key.owner_kind.as_str())
            .bind(&key.owner_id)
            .bind(&key.team_id)
            .bind(status_str(key.status))
            .bind(key.expires_ms)
            .bind(policy)
            .bind(key.created_ms)
            .execute(&self.pool)
            .await
            .map_err(db("create key"))?;
            Ok(())
        })
    }

    fn update_key(&self, key: VirtualKey) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(async move {
            let policy = serde_json::to_string(&key.policy)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let done = sqlx::query(
                "UPDATE keys SET name = ?, secret_hash = ?, previous_hash = ?, previous_expires_ms = ?, status = ?, expires_ms = ?, policy = ? WHERE id = ?",
            )
            .bind(&key.name)
            .bind(&key.secret_hash)
            .bind(&key.previous_hash)
            .bind(key.previous_expires_ms)
            .bind(status_str(key.status))
            .bind(key.expires_ms)
            .bind(policy)
            .bind(&key.id)
            .execute(&self.pool)
            .await
            .map_err(db("update key"))?;
            if done.rows_affected() == 0 {
                return Err(StoreError::NotFound(format!("key {}", key.id)));
            }
            Ok(())
        })
    }

    fn insert_budget(&self, b: Budget) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(async move {
            sqlx::query(
                "INSERT INTO budgets (id, scope_kind, scope_id, window, rolling, limit_usd, soft_fraction, created_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(&b.id)
            .bind(b.scope_kind.as_str())
            .bind(&b.scope_id)
            .bind(b.window.as_str())
            .bind(b.rolling as i64)
            .bind(b.limit_usd)
            .bind(b.soft_fraction)
            .bind(b.created_ms)
            .execute(&self.pool)
            .await
            .map_err(db("create budget"))?;
            Ok(())
        })
    }

    fn insert_limit(&self, l: RateLimit) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(async move {
            sqlx::query(
                "INSERT INTO rate_limits (id, scope_kind, scope_id, rpm, tpm, concurrency, created_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(&l.id)
            .bind(l.scope_kind.as_str())
            .bind(&l.scope_id)
            .bind(l.rpm.map(|v| v as i64))
            .bind(l.tpm.map(|v| v as i64))
            .bind(l.concurrency.map(|v| v as i64))
            .bind(l.created_ms)
            .execute(&self.pool)
            .await
            .map_err(db("create rate limit"))?;
            Ok(())
        })
    }

    fn delete(&self, entity: Entity, id: String) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(async move {
            // The table name comes from a fixed enum, never from input.
            let sql = format!("DELETE FROM {} WHERE id = ?", entity.table());
            let done = sqlx::query(AssertSqlSafe(sql))
                .bind(&id)
                .execute(&self.pool)
                .await
                .map_err(db("delete"))?;
            if done.rows_affected() == 0 {
                return Err(StoreError::NotFound(format!(
                    "{} {id}",
                    entity.table().trim_end_matches('s')
                )));
            }
            Ok(())
        })
    }

    fn routing_entries(&self) -> BoxFuture<'_, StoreResult<Vec<(String, String, String)>>> {
        Box::pin(async move {
            let rows =
                sqlx::query("SELECT kind, name, body FROM routing_entries ORDER BY kind, name")
                    .fetch_all(&self.pool)
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
        })
    }

    fn put_routing_entry(
        &self,
        kind: &'static str,
        name: String,
        body: String,
    ) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(async move {
            sqlx::query(
                "INSERT INTO routing_entries (kind, name, body, updated_ms) VALUES (?, ?, ?, ?) \
                 ON CONFLICT (kind, name) DO UPDATE SET body = excluded.body, updated_ms = excluded.updated_ms",
            )
            .bind(kind)
            .bind(&name)
            .bind(&body)
            .bind(crate::governance::now_ms())
            .execute(&self.pool)
            .await
            .map_err(db("write routing"))?;
            Ok(())
        })
    }

    fn delete_routing_entry(
        &self,
        kind: &'static str,
        name: String,
    ) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(async move {
            let done = sqlx::query("DELETE FROM routing_entries WHERE kind = ? AND name = ?")
                .bind(kind)
                .bind(&name)
                .execute(&self.pool)
                .await
                .map_err(db("delete routing"))?;
            if done.rows_affected() == 0 {
                return Err(StoreError::NotFound(format!(
                    "{kind} `{name}` (defined through the admin API)"
                )));
            }
            Ok(())
        })
    }

    fn audit_head(&self) -> BoxFuture<'_, StoreResult<AuditHead>> {
        Box::pin(async move {
            let row =
                sqlx::query("SELECT seq, hash, mac, sealed_from FROM audit_head WHERE id = 1")
                    .fetch_optional(&self.pool)
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
        })
    }

    fn audit_key(&self) -> Option<Arc<ChainKey>> {
        self.audit_key.load_full()
    }

    fn set_audit_key(&self, key: Option<Arc<ChainKey>>) {
        self.audit_key.store(key);
    }

    fn audit_duplicates(&self, examples: u32) -> BoxFuture<'_, StoreResult<AuditDuplicates>> {
        Box::pin(async move {
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
            .fetch_all(&self.pool)
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
        })
    }

    fn audit_appender(&self) -> StoreResult<Box<dyn AuditAppender>> {
        Ok(Box::new(SqliteAuditAppender::open(
            &self.path,
            self.strict_durability,
        )?))
    }

    fn audit_page(
        &self,
        f: AuditFilter,
        limit: u32,
    ) -> BoxFuture<'_, StoreResult<Vec<AuditRecord>>> {
        Box::pin(async move {
            let mut sql =
                String::from("SELECT seq, record, prev_hash, hash FROM audit WHERE seq > ?");
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
                .fetch_all(&self.pool)
                .await
                .map_err(db("query audit"))?;
            rows.iter().map(record_from_row).collect()
        })
    }

    fn audit_chain(&self, after: u64, limit: u32) -> BoxFuture<'_, StoreResult<Vec<ChainRow>>> {
        Box::pin(async move {
            let rows = sqlx::query(
                "SELECT seq, prev_hash, record, hash, ts_ms, key_id, team_id, model, status, cost_micros, dup_seq, mac, imported FROM audit WHERE seq > ? ORDER BY seq LIMIT ?",
            )
            .bind(after as i64)
            .bind(limit as i64)
            .fetch_all(&self.pool)
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
        })
    }

    fn spend_buckets(
        &self,
        scope: ScopeKind,
        id: String,
        since_ms: i64,
        bucket_ms: i64,
    ) -> BoxFuture<'_, StoreResult<Vec<(i64, u64)>>> {
        Box::pin(async move {
            let sql = format!(
                "SELECT (ts_ms / ?) * ? AS bucket, SUM(cost_micros) FROM audit WHERE {} = ? AND ts_ms >= ? AND dup_seq = 0 GROUP BY bucket",
                scope_column(scope)
            );
            let rows = sqlx::query(AssertSqlSafe(sql))
                .bind(bucket_ms)
                .bind(bucket_ms)
                .bind(&id)
                .bind(since_ms)
                .fetch_all(&self.pool)
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
        })
    }

    fn usage(
        &self,
        group: UsageGroup,
        by_day: bool,
        from_ms: i64,
        to_ms: i64,
    ) -> BoxFuture<'_, StoreResult<Vec<UsageRow>>> {
        Box::pin(async move {
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
                .fetch_all(&self.pool)
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
        })
    }
}

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
struct SqliteAuditAppender {
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
    fn open(path: &str, strict_durability: bool) -> StoreResult<Self> {
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

fn status_str(s: KeyStatus) -> &'static str {
    match s {
        KeyStatus::Active => "active",
        KeyStatus::Blocked => "blocked",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use sluice_shared::audit::{canonical_json, chain_hash};

    fn entry(request_id: &str, cost_micros: u64) -> AuditEntry {
        AuditEntry {
            request_id: request_id.into(),
            ts_ms: 1_700_000_000_000,
            source: "gateway".into(),
            key_id: Some("key1".into()),
            api: "chat_completions".into(),
            status: 200,
            outcome: "ok".into(),
            cost_micros,
            priced: true,
            ..Default::default()
        }
    }

    #[cfg(unix)]
    fn mode(path: &str) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    /// The review finding: the database and its WAL were created 0644 (minus the umask).
    #[cfg(unix)]
    #[tokio::test]
    async fn database_wal_and_shm_are_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("g.db").to_string_lossy().into_owned();
        let store = SqliteStore::open(&db, false).await.unwrap();
        store
            .insert_org(crate::governance::model::Org {
                id: "o".into(),
                name: "o".into(),
                created_ms: 0,
            })
            .await
            .unwrap();
        for path in [db.clone(), format!("{db}-wal"), format!("{db}-shm")] {
            assert_eq!(mode(&path), 0o600, "{path}: {:o}", mode(&path));
        }
    }

    /// What the above relies on for WAL files SQLite creates later (after the last
    /// connection closed and removed them): SQLite's unix VFS creates `-wal` and `-shm`
    /// with the database file's permissions. 0640 differs from any umask-derived default.
    #[cfg(unix)]
    #[test]
    fn sqlite_gives_wal_and_shm_the_database_files_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("m.db").to_string_lossy().into_owned();
        std::fs::write(&db, b"").unwrap();
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o640)).unwrap();
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; CREATE TABLE t (x); INSERT INTO t VALUES (1);",
        )
        .unwrap();
        for path in [format!("{db}-wal"), format!("{db}-shm")] {
            assert_eq!(mode(&path), 0o640, "{path}: {:o}", mode(&path));
        }
    }

    /// SQLite reuses an existing `-wal` as it is: one left readable from before the
    /// database was `chmod 600`ed loses what the database lacks.
    #[cfg(unix)]
    #[tokio::test]
    async fn a_leftover_wal_loses_permissions_the_database_lacks() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("w.db").to_string_lossy().into_owned();
        std::fs::write(&db, b"").unwrap();
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
        // A connection kept open keeps its WAL (with content) in place.
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; CREATE TABLE t (x); INSERT INTO t VALUES (1);",
        )
        .unwrap();
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(mode(&format!("{db}-wal")), 0o644);
        let _store = SqliteStore::open(&db, false).await.unwrap();
        assert_eq!(mode(&format!("{db}-wal")), 0o600);
        assert_eq!(mode(&format!("{db}-shm")), 0o600);
        drop(conn);
    }

    /// A database from before migration 3 that already holds a request id twice (a spill
    /// import repeated after a crash): the migration must not fail on it, `audit verify`
    /// reports it, spend and usage count it once, and no further duplicate gets in.
    #[tokio::test]
    async fn migration_keeps_old_duplicates_out_of_spend_and_verify_reports_them() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("old.db").to_string_lossy().into_owned();
        {
            let conn = rusqlite::Connection::open(&db).unwrap();
            conn.execute_batch(
                "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_ms INTEGER NOT NULL); \
                 INSERT INTO schema_migrations VALUES (1, 0), (2, 0);",
            )
            .unwrap();
            for (_, sql) in &MIGRATIONS[..2] {
                conn.execute_batch(sql).unwrap();
            }
            let mut prev = GENESIS_HASH.to_owned();
            let rows = [
                entry("a", 100),
                entry("b", 10),
                entry("a", 100),
                entry("c", 1),
            ];
            for (i, e) in rows.iter().enumerate() {
                let canonical = String::from_utf8(canonical_json(e)).unwrap();
                let hash = chain_hash(&prev, canonical.as_bytes());
                conn.execute(
                    "INSERT INTO audit (seq, ts_ms, request_id, key_id, status, cost_micros, input_tokens, output_tokens, record, prev_hash, hash) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, 0, ?7, ?8, ?9)",
                    rusqlite::params![
                        i as i64 + 1,
                        e.ts_ms,
                        e.request_id,
                        e.key_id,
                        e.status as i64,
                        e.cost_micros as i64,
                        canonical,
                        prev,
                        hash
                    ],
                )
                .unwrap();
                prev = hash;
            }
            conn.execute(
                "INSERT INTO audit_head (id, seq, hash) VALUES (1, 4, ?1)",
                [&prev],
            )
            .unwrap();
        }

        let store = SqliteStore::open(&db, false).await.unwrap();
        let report = crate::api::admin::verify_chain(&store).await.unwrap();
        assert_eq!(report["ok"], true, "{report}");
        assert_eq!(report["checked"], 4, "{report}");
        assert_eq!(report["duplicates"]["request_ids"], 1, "{report}");
        assert_eq!(report["duplicates"]["extra_records"], 1, "{report}");
        assert_eq!(report["duplicates"]["examples"][0], "a", "{report}");

        let spend = store
            .spend_buckets(ScopeKind::Key, "key1".into(), 0, 86_400_000)
            .await
            .unwrap();
        assert_eq!(spend.iter().map(|(_, m)| m).sum::<u64>(), 111);
        let usage = store
            .usage(UsageGroup::Key, false, 0, i64::MAX)
            .await
            .unwrap();
        assert_eq!(usage[0].requests, 3);

        // Imports from now on: the unique index refuses a second imported record for an
        // id; lookups find imported records by id and older ones by time.
        let mut appender = store.audit_appender().unwrap();
        let chained = |e: AuditEntry, seq: u64, prev: &str| {
            let canonical = String::from_utf8(canonical_json(&e)).unwrap();
            ChainedRecord {
                seq,
                prev_hash: prev.to_owned(),
                hash: chain_hash(prev, canonical.as_bytes()),
                entry: e,
                canonical,
                mac: None,
                imported: true,
            }
        };
        let x = chained(entry("x", 5), 5, &prev_hash(&store).await);
        appender.append(std::slice::from_ref(&x), None).unwrap();
        let again = chained(entry("x", 5), 6, &x.hash);
        assert!(matches!(
            appender.append(&[again], None),
            Err(StoreError::DuplicateRequestId)
        ));
        let ts = entry("a", 0).ts_ms;
        let found = appender
            .stored_records(&[("a", ts), ("x", ts), ("zzz", ts)])
            .unwrap();
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(
            found["a"],
            String::from_utf8(canonical_json(&entry("a", 100))).unwrap()
        );
        assert_eq!(found["x"], x.canonical);
        let report = crate::api::admin::verify_chain(&store).await.unwrap();
        assert_eq!(report["ok"], true, "{report}");
        assert_eq!(report["checked"], 5, "{report}");

        // Marking the original as a duplicate too would hide its spend: verify says so.
        sqlx::query("UPDATE audit SET dup_seq = seq WHERE seq = 1")
            .execute(store.pool())
            .await
            .unwrap();
        let report = crate::api::admin::verify_chain(&store).await.unwrap();
        assert_eq!(report["ok"], false, "{report}");
        assert!(
            report["error"]
                .as_str()
                .unwrap()
                .contains("record 1 is marked as a duplicate"),
            "{report}"
        );
    }

    async fn prev_hash(store: &SqliteStore) -> String {
        store.audit_head().await.unwrap().hash
    }
}
