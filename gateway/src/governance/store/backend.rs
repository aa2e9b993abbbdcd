//! The trait every store backend implements.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use sluice_shared::audit::{AuditRecord, ChainKey};

use super::audit::{
    AuditAppender, AuditDuplicates, AuditFilter, AuditHead, ChainRow, UsageGroup, UsageRow,
};
use super::error::StoreResult;
use super::policy::{Entity, PolicyRows};
use crate::governance::model::{Budget, Device, Org, RateLimit, ScopeKind, Team, User, VirtualKey};

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
    fn audit_key(&self) -> Option<Arc<ChainKey>>;
    /// Sets (or clears) the key [`Store::audit_key`] returns.
    fn set_audit_key(&self, key: Option<Arc<ChainKey>>);
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
        scope: ScopeKind,
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
