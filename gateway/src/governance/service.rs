//! The governance runtime: start, reload after admin changes, authenticate.

use std::sync::Arc;

use arc_swap::ArcSwap;
use http::{HeaderMap, StatusCode};

use sluice_shared::audit::AuditEntry;

use super::audit;
use super::budget::{self, BudgetCounter, format_time, now_ms};
use super::counters::{Counters, lock};
use super::keys;
use super::model::{self, KeyStatus};
use super::refusal::err;
use super::snapshot::{Identity, PolicySnapshot};
use super::store::{Store, StoreError};
use crate::config::Mode;
use crate::error::{ErrorKind, GatewayError};
use crate::pricing::PriceTable;
use crate::secret::Secret;

/// `[governance]` settings the runtime needs.
#[derive(Debug, Clone)]
pub struct GovernanceSettings {
    pub mode: Mode,
    pub admin_token: Option<Secret>,
    /// Output tokens assumed for a request without `max_tokens` when estimating its cost.
    pub default_output_tokens: u64,
    /// `provider/model` patterns that may run unpriced under a budget.
    pub allow_unpriced_models: Vec<String>,
    /// Request/response bodies longer than this are cut in `full` audit records.
    pub max_body_bytes: usize,
}

#[derive(Debug)]
pub struct Governance {
    pub settings: GovernanceSettings,
    pub store: Arc<dyn Store>,
    pub(super) snapshot: ArcSwap<PolicySnapshot>,
    pub(super) counters: Counters,
    pub prices: Arc<PriceTable>,
    pub audit: audit::AuditSink,
}

/// The bearer token or API key a request presented, if any.
pub fn presented_token(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers.get("x-sluice-key").and_then(|v| v.to_str().ok()) {
        return Some(v.trim());
    }
    if let Some(v) = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        // A bare token without a scheme is taken as it is (some clients send one).
        return Some(keys::bearer_token(v).unwrap_or(v.trim()));
    }
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

impl Governance {
    /// Opens the store, loads the policy, rebuilds spend counters from the audit log and
    /// starts the audit writer (its task is spawned on `tasks`).
    pub async fn start(
        settings: GovernanceSettings,
        store: Arc<dyn Store>,
        prices: Arc<PriceTable>,
        audit_config: audit::AuditConfig,
        tasks: &tokio_util::task::TaskTracker,
    ) -> Result<Arc<Self>, StoreError> {
        let audit = audit::AuditSink::start(store.clone(), audit_config, tasks).await?;
        let rows = store.load_policy().await?;
        let gov = Arc::new(Governance {
            settings,
            store,
            snapshot: ArcSwap::from_pointee(PolicySnapshot::build(rows)),
            counters: Counters::default(),
            prices,
            audit,
        });
        gov.rebuild_budgets().await?;
        Ok(gov)
    }

    pub fn snapshot(&self) -> arc_swap::Guard<Arc<PolicySnapshot>> {
        self.snapshot.load()
    }

    /// Reloads the policy after an admin change; budget counters for new budgets are
    /// rebuilt from the audit log, existing ones keep their live state.
    pub async fn reload(&self) -> Result<(), StoreError> {
        let rows = self.store.load_policy().await?;
        self.snapshot.store(Arc::new(PolicySnapshot::build(rows)));
        self.rebuild_budgets().await
    }

    /// Makes the in-memory spend of every budget match the audit log (for budgets not yet
    /// tracked). Records still in the audit queue at a crash are the only spend a restart
    /// can forget: at most one batch (`audit.batch_max` records or `flush_interval_ms`),
    /// none in `strict` durability.
    async fn rebuild_budgets(&self) -> Result<(), StoreError> {
        let now = now_ms();
        let budgets = self.snapshot.load().rows.budgets.clone();
        let known: Vec<String> = lock(&self.counters.budgets).keys().cloned().collect();
        let live: std::collections::HashSet<&str> = budgets.iter().map(|b| b.id.as_str()).collect();
        lock(&self.counters.budgets).retain(|id, _| live.contains(id.as_str()));
        for b in budgets {
            if known.contains(&b.id) {
                continue;
            }
            let mut counter = BudgetCounter::new(b.clone());
            let (since, bucket) = counter.rebuild_range(now);
            for (ts, micros) in self
                .store
                .spend_buckets(b.scope_kind, b.scope_id.clone(), since, bucket)
                .await?
            {
                counter.add(ts.max(since), micros);
            }
            lock(&self.counters.budgets).insert(b.id.clone(), counter);
        }
        Ok(())
    }

    /// Resolves the caller. `Ok(None)`: no key, allowed in open mode.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Option<Arc<Identity>>, GatewayError> {
        let token = presented_token(headers).filter(|t| !t.is_empty());
        let parsed = token.and_then(keys::parse);
        let Some(presented) = parsed else {
            if self.settings.mode == Mode::Open {
                return Ok(None);
            }
            let message = match token {
                None => "this gateway requires a Sluice virtual key: send it as `Authorization: Bearer sk-sluice-…`, `x-api-key` or `x-sluice-key`; ask your admin for one".to_owned(),
                Some(_) => "the API key sent is not a Sluice virtual key (they start with `sk-sluice-`); use the key your admin issued, not a provider key".to_owned(),
            };
            return Err(err(
                ErrorKind::Unauthorized,
                StatusCode::UNAUTHORIZED,
                message,
            ));
        };
        let snapshot = self.snapshot.load();
        let shown = keys::display(presented.public_id);
        let invalid = || {
            err(
                ErrorKind::Unauthorized,
                StatusCode::UNAUTHORIZED,
                format!("virtual key {shown} is not valid (unknown, deleted or wrong secret)"),
            )
        };
        let Some(entry) = snapshot.keys.get(presented.public_id) else {
            return Err(invalid());
        };
        let key = &entry.key;
        let now = now_ms();
        let current = keys::secret_matches(presented.secret, &key.secret_hash);
        let previous = !current
            && key
                .previous_hash
                .as_deref()
                .is_some_and(|h| keys::secret_matches(presented.secret, h))
            && key.previous_expires_ms.is_some_and(|until| now < until);
        if !current && !previous {
            return Err(invalid());
        }
        if key.status == KeyStatus::Blocked {
            return Err(err(
                ErrorKind::Forbidden,
                StatusCode::FORBIDDEN,
                format!(
                    "virtual key {shown} ({}) is blocked; ask your admin to unblock it",
                    key.name
                ),
            ));
        }
        if let Some(expiry) = key.expires_ms.filter(|e| now >= *e) {
            return Err(err(
                ErrorKind::Unauthorized,
                StatusCode::UNAUTHORIZED,
                format!(
                    "virtual key {shown} ({}) expired on {}; ask your admin for a new key",
                    key.name,
                    format_time(expiry)
                ),
            ));
        }
        Ok(Some(entry.identity.clone()))
    }
}

impl Governance {
    /// Records a request refused before it reached the engine (bad key, bad body).
    pub fn record_rejection(
        &self,
        api: crate::request::ClientApi,
        identity: Option<&Arc<Identity>>,
        error: &GatewayError,
        request_id: String,
    ) {
        let id = identity.map(Arc::as_ref);
        let entry = AuditEntry {
            request_id,
            ts_ms: now_ms(),
            source: "gateway".into(),
            org_id: id.map(|i| i.org_id.clone()),
            team_id: id.map(|i| i.team_id.clone()),
            user_id: id.and_then(|i| i.user_id.clone()),
            device_id: id.and_then(|i| i.device_id.clone()),
            key_id: id.map(|i| i.key_id.clone()),
            api: api.label().to_owned(),
            status: error.status.as_u16(),
            outcome: "rejected".into(),
            error: Some(error.message.clone()),
            priced: true,
            ..Default::default()
        };
        let _ = self.audit.submit(entry);
    }

    /// Current spend of every budget (for the admin API).
    pub fn budget_states(&self) -> Vec<(model::Budget, budget::BudgetState)> {
        let now = now_ms();
        lock(&self.counters.budgets)
            .values_mut()
            .map(|c| (c.budget.clone(), c.state(now)))
            .collect()
    }
}
