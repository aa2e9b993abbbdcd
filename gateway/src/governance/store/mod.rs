//! Persistent state behind one trait, so that PostgreSQL (and Redis for counters) can be
//! added for multi-replica deployments without touching the request path: nothing on the
//! request path calls the store — it reads the in-memory snapshot, and the audit writer
//! and admin API are the only callers.

pub mod sqlite;

use futures_util::future::BoxFuture;
use sluice_shared::audit::AuditRecord;

use super::model::{Budget, Device, Org, RateLimit, Team, User, VirtualKey};

/// A store failure, with the operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("database error during {op}: {source}")]
    Db {
        op: &'static str,
        #[source]
        source: sqlx::Error,
    },
    /// From the audit writer's own synchronous connection.
    #[error("database error during {op}: {source}")]
    Sqlite {
        op: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    /// The audit writer's thread could not be started.
    #[error("cannot start the audit writer thread: {0}")]
    WriterThread(std::io::Error),
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A record ready to store: its chain position, hashes, entry and the exact canonical
/// JSON its hash covers (serialized once, by the writer).
#[derive(Debug, Clone)]
pub struct ChainedRecord {
    pub seq: u64,
    pub prev_hash: String,
    pub hash: String,
    pub entry: sluice_shared::audit::AuditEntry,
    pub canonical: String,
}

/// Appends chained audit records; owned by the audit writer's thread, may block.
pub trait AuditAppender: Send {
    /// Appends records (already chained, consecutive `seq`) in one transaction and moves
    /// the chain head to the last one.
    fn append(&mut self, records: &[ChainedRecord]) -> StoreResult<()>;
}

/// A stored audit row as the verifier reads it: `(seq, prev_hash, canonical_json, hash)`.
pub type ChainRow = (u64, String, Vec<u8>, String);

/// Everything the policy snapshot is built from.
#[derive(Debug, Clone, Default)]
pub struct PolicyRows {
    pub orgs: Vec<Org>,
    pub teams: Vec<Team>,
    pub users: Vec<User>,
    pub devices: Vec<Device>,
    pub keys: Vec<VirtualKey>,
    pub budgets: Vec<Budget>,
    pub limits: Vec<RateLimit>,
}

/// Audit query filters; all optional, combined with AND.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditFilter {
    pub key_id: Option<String>,
    pub user_id: Option<String>,
    pub device_id: Option<String>,
    pub team_id: Option<String>,
    pub org_id: Option<String>,
    pub model: Option<String>,
    pub provider: Option<String>,
    pub app: Option<String>,
    pub status: Option<u16>,
    /// Unix ms, inclusive.
    pub from_ms: Option<i64>,
    /// Unix ms, exclusive.
    pub to_ms: Option<i64>,
    /// Return records with `seq` greater than this (the cursor from the previous page).
    pub after_seq: Option<u64>,
}

/// One row of a usage report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct UsageRow {
    pub group: String,
    /// `YYYY-MM-DD` (UTC) when grouped by day too.
    pub day: Option<String>,
    pub requests: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost_usd: f64,
}

/// What a usage report groups by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UsageGroup {
    Key,
    User,
    Device,
    Team,
    Org,
    Model,
    Provider,
    App,
}

impl UsageGroup {
    pub fn column(self) -> &'static str {
        match self {
            UsageGroup::Key => "key_id",
            UsageGroup::User => "user_id",
            UsageGroup::Device => "device_id",
            UsageGroup::Team => "team_id",
            UsageGroup::Org => "org_id",
            UsageGroup::Model => "model",
            UsageGroup::Provider => "provider",
            UsageGroup::App => "app",
        }
    }
}

/// The gateway's persistent state.
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Everything the policy snapshot needs, read at start and after each admin change.
    fn load_policy(&self) -> BoxFuture<'_, StoreResult<PolicyRows>>;

    fn insert_org(&self, org: Org) -> BoxFuture<'_, StoreResult<()>>;
    fn insert_team(&self, team: Team) -> BoxFuture<'_, StoreResult<()>>;
    fn insert_user(&self, user: User) -> BoxFuture<'_, StoreResult<()>>;
    fn insert_device(&self, device: Device) -> BoxFuture<'_, StoreResult<()>>;
    fn insert_key(&self, key: VirtualKey) -> BoxFuture<'_, StoreResult<()>>;
    /// Replaces a key's mutable fields (status, policy, expiry, secrets, name).
    fn update_key(&self, key: VirtualKey) -> BoxFuture<'_, StoreResult<()>>;
    fn insert_budget(&self, budget: Budget) -> BoxFuture<'_, StoreResult<()>>;
    fn insert_limit(&self, limit: RateLimit) -> BoxFuture<'_, StoreResult<()>>;
    /// Deletes a row of `table` (`orgs`, `teams`, `users`, `devices`, `keys`, `budgets`,
    /// `rate_limits`) by id.
    fn delete(&self, table: Entity, id: String) -> BoxFuture<'_, StoreResult<()>>;

    /// Providers and aliases defined through the admin API: `(kind, name, JSON body)`,
    /// kind `provider` or `alias`. They overlay the config file's.
    fn routing_entries(&self) -> BoxFuture<'_, StoreResult<Vec<(String, String, String)>>>;
    fn put_routing_entry(
        &self,
        kind: &'static str,
        name: String,
        body: String,
    ) -> BoxFuture<'_, StoreResult<()>>;
    fn delete_routing_entry(
        &self,
        kind: &'static str,
        name: String,
    ) -> BoxFuture<'_, StoreResult<()>>;

    /// The last record's `(seq, hash)`, or `(0, GENESIS_HASH)`.
    fn audit_head(&self) -> BoxFuture<'_, StoreResult<(u64, String)>>;
    /// The audit writer's own appender. The writer runs on a dedicated thread and
    /// appends every batch through this one handle, synchronously: a batch is one
    /// transaction with no hop to another thread per statement.
    fn audit_appender(&self) -> StoreResult<Box<dyn AuditAppender>>;
    /// Records matching `filter`, oldest first, at most `limit`.
    fn audit_page(
        &self,
        filter: AuditFilter,
        limit: u32,
    ) -> BoxFuture<'_, StoreResult<Vec<AuditRecord>>>;
    /// Raw rows for verification: `(seq, prev_hash, canonical_json, hash)` with
    /// `seq > after`, at most `limit`.
    fn audit_chain(&self, after: u64, limit: u32) -> BoxFuture<'_, StoreResult<Vec<ChainRow>>>;
    /// Summed cost (micro-dollars) by time bucket for records whose `column` equals `id`
    /// since `since_ms`: `(bucket_start_ms, micros)`.
    fn spend_buckets(
        &self,
        scope: super::model::ScopeKind,
        id: String,
        since_ms: i64,
        bucket_ms: i64,
    ) -> BoxFuture<'_, StoreResult<Vec<(i64, u64)>>>;
    fn usage(
        &self,
        group: UsageGroup,
        by_day: bool,
        from_ms: i64,
        to_ms: i64,
    ) -> BoxFuture<'_, StoreResult<Vec<UsageRow>>>;
}

/// Deletable entity kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entity {
    Org,
    Team,
    User,
    Device,
    Key,
    Budget,
    Limit,
}

impl Entity {
    pub fn table(self) -> &'static str {
        match self {
            Entity::Org => "orgs",
            Entity::Team => "teams",
            Entity::User => "users",
            Entity::Device => "devices",
            Entity::Key => "keys",
            Entity::Budget => "budgets",
            Entity::Limit => "rate_limits",
        }
    }
}
