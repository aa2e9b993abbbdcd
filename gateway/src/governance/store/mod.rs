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
    /// An audit record's request id is already stored (the unique index refused it).
    #[error("an audit record with one of these request ids is already stored")]
    DuplicateRequestId,
    /// A setting the store needs is unusable (the message names it).
    #[error("{0}")]
    Config(String),
    /// A file next to the database (the database itself, its `-wal`/`-shm`) could not be
    /// created or restricted.
    #[error("{what}: {source}")]
    File {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The audit writer's thread could not be started.
    #[error("cannot start the audit writer thread: {0}")]
    WriterThread(std::io::Error),
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A record ready to store: its chain position, hashes, entry and the exact canonical
/// JSON its hash covers (serialized once, by the writer), and its MAC when the chain is
/// keyed (see `sluice_shared::audit`).
#[derive(Debug, Clone)]
pub struct ChainedRecord {
    pub seq: u64,
    pub prev_hash: String,
    pub hash: String,
    pub entry: sluice_shared::audit::AuditEntry,
    pub canonical: String,
    pub mac: Option<String>,
    /// Imported from a spill file (at most one such record per request id).
    pub imported: bool,
}

/// The head's seal on a keyed chain: its MAC and the first record the seal covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadSeal {
    pub mac: String,
    pub sealed_from: u64,
}

/// The chain head as stored: the last record's `(seq, hash)` (`(0, GENESIS_HASH)` for
/// an empty chain) and its seal, if it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditHead {
    pub seq: u64,
    pub hash: String,
    pub seal: Option<HeadSeal>,
}

/// Appends chained audit records; owned by the audit writer's thread, may block.
pub trait AuditAppender: Send {
    /// Appends records (already chained, consecutive `seq`) in one transaction and moves
    /// the chain head to the last one, with `seal` (`None`: the head is unsealed).
    /// [`StoreError::DuplicateRequestId`] if an imported record's request id already
    /// has an imported record; nothing is written then.
    fn append(&mut self, records: &[ChainedRecord], seal: Option<&HeadSeal>) -> StoreResult<()>;
    /// The head, and the MAC of the record it points at: what the writer checks when it
    /// starts on a keyed chain.
    fn head(&mut self) -> StoreResult<(AuditHead, Option<String>)>;
    /// Replaces the head's seal (the writer starting a new seal on an existing chain).
    fn seal_head(&mut self, seal: &HeadSeal) -> StoreResult<()>;
    /// The stored canonical JSON of the spill-imported record (or, on a database from
    /// before imports were idempotent, any record) for each `(request_id, ts_ms)` of
    /// `entries` that has one (the first, should an id have several). A spill import asks
    /// before chaining, so that what an interrupted import already committed is skipped
    /// without taking a chain position. Records written from the queue are not looked at:
    /// a spilled record never was one.
    fn stored_records(
        &mut self,
        entries: &[(&str, i64)],
    ) -> StoreResult<std::collections::HashMap<String, String>>;
}

/// A stored audit row as the verifier reads it.
#[derive(Debug, Clone)]
pub struct ChainRow {
    pub seq: u64,
    pub prev_hash: String,
    /// What the hash covers; replaced by bytes that cannot match when the row's indexed
    /// columns disagree with it.
    pub canonical: Vec<u8>,
    pub hash: String,
    pub mac: Option<String>,
}

/// Request ids recorded more than once (left by spill imports before imports skipped
/// what they had already committed). Only the first record of each counts toward spend
/// and usage (migration 3 marked the others).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditDuplicates {
    /// Request ids with more than one record.
    pub request_ids: u64,
    /// Records beyond the first of their request id.
    pub extra_records: u64,
    /// A few of those request ids, oldest first.
    pub examples: Vec<String>,
    /// Records marked as a duplicate (so left out of spend) although no earlier record
    /// has their request id: an edit that hides spend from budgets.
    pub unmatched: Vec<u64>,
}

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

    /// The chain head (see [`AuditHead`]).
    fn audit_head(&self) -> BoxFuture<'_, StoreResult<AuditHead>>;
    /// The key that seals the audit chain (`governance.audit.hmac_key`), once the audit
    /// writer (or `audit verify`) has set it: the admin API's `audit verify` reaches the
    /// store only, and checks MACs with this.
    fn audit_key(&self) -> Option<std::sync::Arc<sluice_shared::audit::ChainKey>>;
    /// Sets (or clears) the key [`Store::audit_key`] returns.
    fn set_audit_key(&self, key: Option<std::sync::Arc<sluice_shared::audit::ChainKey>>);
    /// Request ids recorded more than once, with at most `examples` of them.
    fn audit_duplicates(&self, examples: u32) -> BoxFuture<'_, StoreResult<AuditDuplicates>>;
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
    /// Raw rows for verification with `seq > after`, at most `limit`.
    fn audit_chain(&self, after: u64, limit: u32) -> BoxFuture<'_, StoreResult<Vec<ChainRow>>>;
    /// Summed cost (micro-dollars) by time bucket for records whose `column` equals `id`
    /// since `since_ms`: `(bucket_start_ms, micros)`. A request id recorded more than once
    /// (see [`AuditDuplicates`]) counts once, here and in [`Store::usage`].
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
