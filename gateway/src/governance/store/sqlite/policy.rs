//! Orgs, teams, users, devices, keys, budgets and rate limits: the rows the policy
//! snapshot is built from, and the admin API's changes to them.

use sqlx::sqlite::{SqlitePool, SqliteRow};
use sqlx::{AssertSqlSafe, Row};

use super::database::db;
use crate::governance::model::{
    Budget, BudgetWindow, Device, KeyPolicy, KeyStatus, Org, OwnerKind, RateLimit, ScopeKind, Team,
    User, VirtualKey,
};
use crate::governance::store::{Entity, PolicyRows, StoreError, StoreResult};

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

fn status_str(s: KeyStatus) -> &'static str {
    match s {
        KeyStatus::Active => "active",
        KeyStatus::Blocked => "blocked",
    }
}

pub(super) async fn load(pool: &SqlitePool) -> StoreResult<PolicyRows> {
    let get = |e: sqlx::Error| StoreError::Db {
        op: "load policy",
        source: e,
    };
    let mut rows = PolicyRows::default();
    for r in sqlx::query("SELECT id, name, created_ms FROM orgs")
        .fetch_all(pool)
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
        .fetch_all(pool)
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
        .fetch_all(pool)
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
        .fetch_all(pool)
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
        .fetch_all(pool)
        .await
        .map_err(get)?
    {
        rows.keys.push(key_from_row(&r)?);
    }
    for r in sqlx::query("SELECT id, scope_kind, scope_id, window, rolling, limit_usd, soft_fraction, created_ms FROM budgets")
        .fetch_all(pool)
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
    for r in sqlx::query(
        "SELECT id, scope_kind, scope_id, rpm, tpm, concurrency, created_ms FROM rate_limits",
    )
    .fetch_all(pool)
    .await
    .map_err(get)?
    {
        let scope: String = r.try_get(1).map_err(get)?;
        let opt = |i: usize| -> StoreResult<Option<u64>> {
            Ok(r.try_get::<Option<i64>, _>(i)
                .map_err(get)?
                .map(|v| v.max(0) as u64))
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
}

pub(super) async fn insert_org(pool: &SqlitePool, org: Org) -> StoreResult<()> {
    sqlx::query("INSERT INTO orgs (id, name, created_ms) VALUES (?, ?, ?)")
        .bind(&org.id)
        .bind(&org.name)
        .bind(org.created_ms)
        .execute(pool)
        .await
        .map_err(db("create org"))?;
    Ok(())
}

pub(super) async fn insert_team(pool: &SqlitePool, team: Team) -> StoreResult<()> {
    sqlx::query("INSERT INTO teams (id, org_id, name, created_ms) VALUES (?, ?, ?, ?)")
        .bind(&team.id)
        .bind(&team.org_id)
        .bind(&team.name)
        .bind(team.created_ms)
        .execute(pool)
        .await
        .map_err(db("create team"))?;
    Ok(())
}

pub(super) async fn insert_user(pool: &SqlitePool, user: User) -> StoreResult<()> {
    sqlx::query("INSERT INTO users (id, team_id, email, name, created_ms) VALUES (?, ?, ?, ?, ?)")
        .bind(&user.id)
        .bind(&user.team_id)
        .bind(&user.email)
        .bind(&user.name)
        .bind(user.created_ms)
        .execute(pool)
        .await
        .map_err(db("create user"))?;
    Ok(())
}

pub(super) async fn insert_device(pool: &SqlitePool, device: Device) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO devices (id, team_id, user_id, hostname, created_ms) VALUES (?, ?, ?, ?, ?)",
    )
    .bind(&device.id)
    .bind(&device.team_id)
    .bind(&device.user_id)
    .bind(&device.hostname)
    .bind(device.created_ms)
    .execute(pool)
    .await
    .map_err(db("create device"))?;
    Ok(())
}

pub(super) async fn insert_key(pool: &SqlitePool, key: VirtualKey) -> StoreResult<()> {
    let policy =
        serde_json::to_string(&key.policy).map_err(|e| StoreError::Corrupt(e.to_string()))?;
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
    .execute(pool)
    .await
    .map_err(db("create key"))?;
    Ok(())
}

pub(super) async fn update_key(pool: &SqlitePool, key: VirtualKey) -> StoreResult<()> {
    let policy =
        serde_json::to_string(&key.policy).map_err(|e| StoreError::Corrupt(e.to_string()))?;
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
    .execute(pool)
    .await
    .map_err(db("update key"))?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound(format!("key {}", key.id)));
    }
    Ok(())
}

pub(super) async fn insert_budget(pool: &SqlitePool, b: Budget) -> StoreResult<()> {
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
    .execute(pool)
    .await
    .map_err(db("create budget"))?;
    Ok(())
}

pub(super) async fn insert_limit(pool: &SqlitePool, l: RateLimit) -> StoreResult<()> {
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
    .execute(pool)
    .await
    .map_err(db("create rate limit"))?;
    Ok(())
}

pub(super) async fn delete(pool: &SqlitePool, entity: Entity, id: String) -> StoreResult<()> {
    // The table name comes from a fixed enum, never from input.
    let sql = format!("DELETE FROM {} WHERE id = ?", entity.table());
    let done = sqlx::query(AssertSqlSafe(sql))
        .bind(&id)
        .execute(pool)
        .await
        .map_err(db("delete"))?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound(format!(
            "{} {id}",
            entity.table().trim_end_matches('s')
        )));
    }
    Ok(())
}
