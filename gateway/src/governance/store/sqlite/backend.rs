//! [`SqliteStore`] as a [`Store`]: each method hands its work to the module that owns
//! that part of the schema.

use std::sync::Arc;

use futures_util::future::BoxFuture;

use sluice_shared::audit::{AuditRecord, ChainKey};

use super::appender::SqliteAuditAppender;
use super::database::SqliteStore;
use crate::governance::model::{Budget, Device, Org, RateLimit, ScopeKind, Team, User, VirtualKey};
use crate::governance::store::{
    AuditAppender, AuditDuplicates, AuditFilter, AuditHead, ChainRow, Entity, PolicyRows, Store,
    StoreResult, UsageGroup, UsageRow,
};

impl Store for SqliteStore {
    fn load_policy(&self) -> BoxFuture<'_, StoreResult<PolicyRows>> {
        Box::pin(super::policy::load(&self.pool))
    }

    fn insert_org(&self, org: Org) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(super::policy::insert_org(&self.pool, org))
    }

    fn insert_team(&self, team: Team) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(super::policy::insert_team(&self.pool, team))
    }

    fn insert_user(&self, user: User) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(super::policy::insert_user(&self.pool, user))
    }

    fn insert_device(&self, device: Device) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(super::policy::insert_device(&self.pool, device))
    }

    fn insert_key(&self, key: VirtualKey) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(super::policy::insert_key(&self.pool, key))
    }

    fn update_key(&self, key: VirtualKey) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(super::policy::update_key(&self.pool, key))
    }

    fn insert_budget(&self, budget: Budget) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(super::policy::insert_budget(&self.pool, budget))
    }

    fn insert_limit(&self, limit: RateLimit) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(super::policy::insert_limit(&self.pool, limit))
    }

    fn delete(&self, entity: Entity, id: String) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(super::policy::delete(&self.pool, entity, id))
    }

    fn routing_entries(&self) -> BoxFuture<'_, StoreResult<Vec<(String, String, String)>>> {
        Box::pin(super::routing::entries(&self.pool))
    }

    fn put_routing_entry(
        &self,
        kind: &'static str,
        name: String,
        body: String,
    ) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(super::routing::put(&self.pool, kind, name, body))
    }

    fn delete_routing_entry(
        &self,
        kind: &'static str,
        name: String,
    ) -> BoxFuture<'_, StoreResult<()>> {
        Box::pin(super::routing::delete(&self.pool, kind, name))
    }

    fn audit_head(&self) -> BoxFuture<'_, StoreResult<AuditHead>> {
        Box::pin(super::audit::head(&self.pool))
    }

    fn audit_key(&self) -> Option<Arc<ChainKey>> {
        self.audit_key.load_full()
    }

    fn set_audit_key(&self, key: Option<Arc<ChainKey>>) {
        self.audit_key.store(key);
    }

    fn audit_duplicates(&self, examples: u32) -> BoxFuture<'_, StoreResult<AuditDuplicates>> {
        Box::pin(super::audit::duplicates(&self.pool, examples))
    }

    fn audit_appender(&self) -> StoreResult<Box<dyn AuditAppender>> {
        Ok(Box::new(SqliteAuditAppender::open(
            &self.path,
            self.strict_durability,
        )?))
    }

    fn audit_page(
        &self,
        filter: AuditFilter,
        limit: u32,
    ) -> BoxFuture<'_, StoreResult<Vec<AuditRecord>>> {
        Box::pin(super::audit::page(&self.pool, filter, limit))
    }

    fn audit_chain(&self, after: u64, limit: u32) -> BoxFuture<'_, StoreResult<Vec<ChainRow>>> {
        Box::pin(super::audit::chain(&self.pool, after, limit))
    }

    fn spend_buckets(
        &self,
        scope: ScopeKind,
        id: String,
        since_ms: i64,
        bucket_ms: i64,
    ) -> BoxFuture<'_, StoreResult<Vec<(i64, u64)>>> {
        Box::pin(super::audit::spend_buckets(
            &self.pool, scope, id, since_ms, bucket_ms,
        ))
    }

    fn usage(
        &self,
        group: UsageGroup,
        by_day: bool,
        from_ms: i64,
        to_ms: i64,
    ) -> BoxFuture<'_, StoreResult<Vec<UsageRow>>> {
        Box::pin(super::audit::usage(
            &self.pool, group, by_day, from_ms, to_ms,
        ))
    }
}
