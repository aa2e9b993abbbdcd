//! The embedded store: one SQLite file in WAL mode.
//!
//! Migrations are a numbered list applied in order inside transactions and recorded in
//! `schema_migrations`; a database newer than this binary is refused rather than guessed
//! at. The audit table keeps each record's canonical JSON (what its hash covers) next to
//! indexed copies of the columns queries filter on; `audit verify` checks both.

use std::str::FromStr;
use std::time::Duration;

use futures_util::future::BoxFuture;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, Row};

use sluice_shared::audit::{AuditEntry, AuditRecord, GENESIS_HASH};

use super::{
    AuditAppender, AuditFilter, ChainRow, ChainedRecord, Entity, PolicyRows, Store, StoreError,
    StoreResult, UsageGroup, UsageRow,
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
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and applies migrations.
    /// `strict_durability`: fsync every commit (`synchronous=FULL`) instead of WAL's
    /// default (durable across process crashes, not necessarily power loss).
    pub async fn open(path: &str, strict_durability: bool) -> StoreResult<Self> {
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
        };
        store.migrate().await?;
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

    fn audit_head(&self) -> BoxFuture<'_, StoreResult<(u64, String)>> {
        Box::pin(async move {
            let row = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
                .fetch_optional(&self.pool)
                .await
                .map_err(db("read audit head"))?;
            match row {
                Some(r) => {
                    let seq: i64 = r.try_get(0).map_err(db("read audit head"))?;
                    Ok((seq as u64, r.try_get(1).map_err(db("read audit head"))?))
                }
                None => Ok((0, GENESIS_HASH.to_owned())),
            }
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
                "SELECT seq, prev_hash, record, hash, ts_ms, key_id, team_id, model, status, cost_micros FROM audit WHERE seq > ? ORDER BY seq LIMIT ?",
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
                // altered record by handing the verifier bytes that cannot match.
                let entry: Option<AuditEntry> = serde_json::from_str(&record).ok();
                let consistent = entry.as_ref().is_some_and(|e| {
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
                out.push((
                    seq as u64,
                    r.try_get(1).map_err(get)?,
                    bytes,
                    r.try_get(3).map_err(get)?,
                ));
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
                "SELECT (ts_ms / ?) * ? AS bucket, SUM(cost_micros) FROM audit WHERE {} = ? AND ts_ms >= ? GROUP BY bucket",
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
                 FROM audit WHERE ts_ms >= ? AND ts_ms < ? GROUP BY g, d ORDER BY d, g"
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
    const ROW: &str = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
    let mut sql = String::from(
        "INSERT INTO audit (seq, ts_ms, request_id, org_id, team_id, user_id, device_id, key_id, app, provider, model, status, cost_micros, input_tokens, output_tokens, record, prev_hash, hash) VALUES ",
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
        })
    }

    /// One transaction: the records, then the chain head.
    fn append_tx(
        &mut self,
        records: &[ChainedRecord],
        last: &ChainedRecord,
    ) -> rusqlite::Result<()> {
        // IMMEDIATE takes the write lock up front, so a concurrent admin write makes
        // this wait (busy timeout) rather than fail when the read lock upgrades.
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        // Multi-row inserts: one statement per AUDIT_ROWS_PER_INSERT records cuts the
        // per-statement cost that dominates single-row inserts (18 columns × 48 rows
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
        tx.prepare_cached("INSERT INTO audit_head (id, seq, hash) VALUES (1, ?1, ?2) ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash")?
            .execute(rusqlite::params![last.seq as i64, last.hash])?;
        tx.commit()
    }
}

impl AuditAppender for SqliteAuditAppender {
    fn append(&mut self, records: &[ChainedRecord]) -> StoreResult<()> {
        match records.last() {
            Some(last) => self
                .append_tx(records, last)
                .map_err(sqlite_err("write audit")),
            None => Ok(()),
        }
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
    }
    Ok(())
}

fn status_str(s: KeyStatus) -> &'static str {
    match s {
        KeyStatus::Active => "active",
        KeyStatus::Blocked => "blocked",
    }
}
