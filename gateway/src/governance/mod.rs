//! Governance: virtual keys, the org → team → user/device → key hierarchy, budgets, rate
//! limits, cost and the audit log.
//!
//! Request path (nothing here awaits the database):
//! 1. [`Governance::authenticate`] reads the key from `Authorization: Bearer`,
//!    `x-api-key` or `x-sluice-key` and checks it against the in-memory
//!    [`PolicySnapshot`] (swapped whole after every admin change);
//! 2. [`Governance::admit`] filters the routing plan by the key's model policy, takes
//!    concurrency slots, checks RPM/TPM and budgets, and reserves the estimated cost;
//! 3. when the request ends, [`GovernanceSink`] settles the reservation with the real
//!    cost, charges TPM, and queues the audit record for the batch writer.
//!
//! In `open` mode a request without a key is served (and recorded) without identity; a
//! request that presents a key is still held to it. In `enforce` mode a key is required.

pub mod audit;
pub mod budget;
pub mod keys;
pub mod limits;
pub mod model;
pub mod pricing;
pub mod store;

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use http::{HeaderMap, StatusCode};
use serde::Deserialize;

use sluice_shared::audit::{AuditAttempt, AuditDecision, AuditEntry, ContentLogging};

use crate::engine::record::{AttemptOutcome, RecordSink, RequestRecord};
use crate::error::{ErrorKind, GatewayError};
use crate::routing::Target;
use crate::secret::Secret;
use budget::{BudgetCounter, Millis, format_time};
use limits::{ConcurrencySlot, MinuteCounter, try_take};
use model::{KeyPolicy, KeyStatus, OwnerKind, RateLimit, ScopeKind, VirtualKey, glob_match};
use pricing::{Cost, PriceTable};
use store::{PolicyRows, Store, StoreError};

/// Unix milliseconds now.
pub fn now_ms() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// `open` or `enforce` (see the module docs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Open,
    #[default]
    Enforce,
}

/// Who is calling: resolved from a virtual key.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    pub key_id: String,
    pub key_name: String,
    pub team_id: String,
    pub org_id: String,
    pub user_id: Option<String>,
    pub device_id: Option<String>,
    pub policy: KeyPolicy,
}

impl Identity {
    /// The (scope, id) pairs budgets and limits may attach to, most specific first.
    fn scopes(&self) -> Vec<(ScopeKind, &str)> {
        let mut s = vec![(ScopeKind::Key, self.key_id.as_str())];
        if let Some(u) = &self.user_id {
            s.push((ScopeKind::User, u));
        }
        if let Some(d) = &self.device_id {
            s.push((ScopeKind::Device, d));
        }
        s.push((ScopeKind::Team, &self.team_id));
        s.push((ScopeKind::Org, &self.org_id));
        s
    }
}

#[derive(Debug)]
struct KeyEntry {
    key: VirtualKey,
    identity: Arc<Identity>,
}

/// The policy the request path reads: immutable, rebuilt from the store on change.
#[derive(Debug, Default)]
pub struct PolicySnapshot {
    keys: HashMap<String, KeyEntry>,
    budgets: hashbrown::HashMap<Scoped, Vec<String>>,
    limits: hashbrown::HashMap<Scoped, Vec<RateLimit>>,
    pub rows: PolicyRows,
}

impl PolicySnapshot {
    pub fn build(rows: PolicyRows) -> Self {
        let team_org: HashMap<&str, &str> = rows
            .teams
            .iter()
            .map(|t| (t.id.as_str(), t.org_id.as_str()))
            .collect();
        let device_user: HashMap<&str, Option<&str>> = rows
            .devices
            .iter()
            .map(|d| (d.id.as_str(), d.user_id.as_deref()))
            .collect();
        let mut keys = HashMap::new();
        for key in &rows.keys {
            let (user_id, device_id) = match key.owner_kind {
                OwnerKind::User => (Some(key.owner_id.clone()), None),
                OwnerKind::Device => (
                    device_user
                        .get(key.owner_id.as_str())
                        .copied()
                        .flatten()
                        .map(str::to_owned),
                    Some(key.owner_id.clone()),
                ),
                OwnerKind::Team => (None, None),
            };
            let identity = Identity {
                key_id: key.id.clone(),
                key_name: key.name.clone(),
                team_id: key.team_id.clone(),
                org_id: team_org
                    .get(key.team_id.as_str())
                    .map(|s| (*s).to_owned())
                    .unwrap_or_default(),
                user_id,
                device_id,
                policy: key.policy.clone(),
            };
            keys.insert(
                key.id.clone(),
                KeyEntry {
                    key: key.clone(),
                    identity: Arc::new(identity),
                },
            );
        }
        let mut budgets: hashbrown::HashMap<Scoped, Vec<String>> = hashbrown::HashMap::new();
        for b in &rows.budgets {
            budgets
                .entry_ref(&ScopedRef(b.scope_kind, &b.scope_id))
                .or_default()
                .push(b.id.clone());
        }
        let mut limits: hashbrown::HashMap<Scoped, Vec<RateLimit>> = hashbrown::HashMap::new();
        for l in &rows.limits {
            limits
                .entry_ref(&ScopedRef(l.scope_kind, &l.scope_id))
                .or_default()
                .push(l.clone());
        }
        PolicySnapshot {
            keys,
            budgets,
            limits,
            rows,
        }
    }
}

/// What a request holds while it runs: reservations to settle and slots to release.
#[derive(Debug, Default)]
pub struct Admission {
    pub identity: Option<Arc<Identity>>,
    reservations: Vec<(String, u64)>,
    tpm: Vec<Meter>,
    _slots: Vec<ConcurrencySlot>,
}

impl Admission {
    /// An admission that holds nothing but names the caller (for refused requests).
    pub fn for_identity(identity: Option<Arc<Identity>>) -> Self {
        Admission {
            identity,
            ..Default::default()
        }
    }
}

/// In-memory counters (Redis in cluster mode, later).
#[derive(Debug, Default)]
struct Counters {
    budgets: Mutex<HashMap<String, BudgetCounter>>,
    minutes: Mutex<hashbrown::HashMap<Meter, MinuteCounter>>,
    in_flight: Mutex<hashbrown::HashMap<Meter, Arc<AtomicU64>>>,
}

/// A scope a budget or limit attaches to: (level, id). Looked up without allocating
/// through [`ScopedRef`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Scoped(ScopeKind, Box<str>);

#[derive(Debug, Clone, Copy, Hash)]
struct ScopedRef<'a>(ScopeKind, &'a str);

impl hashbrown::Equivalent<Scoped> for ScopedRef<'_> {
    fn equivalent(&self, key: &Scoped) -> bool {
        self.0 == key.0 && self.1 == &*key.1
    }
}

impl From<&ScopedRef<'_>> for Scoped {
    fn from(r: &ScopedRef<'_>) -> Self {
        Scoped(r.0, r.1.into())
    }
}

/// What a rate-limit counter counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Measure {
    Requests,
    Tokens,
    Concurrent,
}

/// One rate-limit counter: a measure of a scope.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Meter(Measure, Scoped);

#[derive(Debug, Clone, Copy, Hash)]
struct MeterRef<'a>(Measure, ScopedRef<'a>);

impl hashbrown::Equivalent<Meter> for MeterRef<'_> {
    fn equivalent(&self, key: &Meter) -> bool {
        self.0 == key.0 && self.1.equivalent(&key.1)
    }
}

impl From<&MeterRef<'_>> for Meter {
    fn from(r: &MeterRef<'_>) -> Self {
        Meter(r.0, Scoped::from(&r.1))
    }
}

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
    snapshot: ArcSwap<PolicySnapshot>,
    counters: Counters,
    pub prices: Arc<PriceTable>,
    pub audit: audit::AuditSink,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these short locks cannot leave the maps half-updated
    // in a way that matters more than refusing all traffic would: keep serving.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
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

fn err(kind: ErrorKind, status: StatusCode, message: String) -> GatewayError {
    GatewayError::new(kind, status, message)
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

    /// Applies the key's model policy to the plan, then limits and budgets.
    pub fn admit(
        &self,
        identity: Option<&Arc<Identity>>,
        requested_model: &str,
        plan: &mut Vec<Target>,
        input_tokens_estimate: u64,
        max_output_tokens: Option<u64>,
    ) -> Result<Admission, GatewayError> {
        let snapshot = self.snapshot.load();
        if let Some(id) = identity {
            let allowed =
                |t: &Target| model_allowed(&id.policy, requested_model, &t.provider.name, &t.model);
            if !plan.iter().any(allowed) {
                let allowed = if id.policy.allow_models.is_empty() {
                    "any model not denied".to_owned()
                } else {
                    id.policy.allow_models.join(", ")
                };
                let planned: Vec<String> = plan
                    .iter()
                    .map(|t| format!("{}/{}", t.provider.name, t.model))
                    .collect();
                return Err(err(
                    ErrorKind::Forbidden,
                    StatusCode::FORBIDDEN,
                    format!(
                        "virtual key {} ({}) may not use model `{requested_model}` ({}); it may use: {allowed}",
                        keys::display(&id.key_id),
                        id.key_name,
                        planned.join(", ")
                    ),
                ));
            }
            plan.retain(allowed);
        }
        let now = now_ms();
        let mut admission = Admission {
            identity: identity.cloned(),
            ..Default::default()
        };

        // Rate limits: key, team, model (requested name and the first target).
        let served = plan
            .first()
            .map(|t| format!("{}/{}", t.provider.name, t.model))
            .filter(|s| s != requested_model);
        let mut scopes: Vec<ScopedRef<'_>> = Vec::with_capacity(4);
        if let Some(id) = identity {
            scopes.push(ScopedRef(ScopeKind::Key, &id.key_id));
            scopes.push(ScopedRef(ScopeKind::Team, &id.team_id));
        }
        scopes.push(ScopedRef(ScopeKind::Model, requested_model));
        if let Some(served) = &served {
            scopes.push(ScopedRef(ScopeKind::Model, served));
        }
        let limits: Vec<(ScopedRef<'_>, &RateLimit)> = scopes
            .iter()
            .flat_map(|scope| {
                snapshot
                    .limits
                    .get(scope)
                    .into_iter()
                    .flatten()
                    .map(move |l| (*scope, l))
            })
            .collect();
        if !limits.is_empty() {
            let mut minutes = lock(&self.counters.minutes);
            for (scope, limit) in &limits {
                if let Some(rpm) = limit.rpm {
                    let c = minutes
                        .entry_ref(&MeterRef(Measure::Requests, *scope))
                        .or_default();
                    if c.count(now) + 1 > rpm {
                        return Err(rate_limited(
                            scope.0,
                            scope.1,
                            &format!("{rpm} requests per minute"),
                            c.retry_after_secs(now, rpm),
                        ));
                    }
                }
                if let Some(tpm) = limit.tpm {
                    let c = minutes
                        .entry_ref(&MeterRef(Measure::Tokens, *scope))
                        .or_default();
                    if c.count(now) >= tpm {
                        return Err(rate_limited(
                            scope.0,
                            scope.1,
                            &format!("{tpm} tokens per minute"),
                            c.retry_after_secs(now, tpm),
                        ));
                    }
                }
            }
            for (scope, limit) in &limits {
                if limit.rpm.is_some() {
                    minutes
                        .entry_ref(&MeterRef(Measure::Requests, *scope))
                        .or_default()
                        .add(now, 1);
                }
                if limit.tpm.is_some() {
                    admission
                        .tpm
                        .push(Meter::from(&MeterRef(Measure::Tokens, *scope)));
                }
            }
            drop(minutes);
            if limits.iter().any(|(_, l)| l.concurrency.is_some()) {
                let mut in_flight = lock(&self.counters.in_flight);
                for (scope, limit) in &limits {
                    if let Some(max) = limit.concurrency {
                        let counter = in_flight
                            .entry_ref(&MeterRef(Measure::Concurrent, *scope))
                            .or_default()
                            .clone();
                        match try_take(&counter, max) {
                            Some(slot) => admission._slots.push(slot),
                            None => {
                                return Err(rate_limited(
                                    scope.0,
                                    scope.1,
                                    &format!("{max} concurrent requests"),
                                    1,
                                ));
                            }
                        }
                    }
                }
            }
        }

        // Budgets: every level the identity belongs to.
        if let Some(id) = identity {
            let budget_ids: Vec<&String> = id
                .scopes()
                .into_iter()
                .flat_map(|(k, v)| snapshot.budgets.get(&ScopedRef(k, v)).into_iter().flatten())
                .collect();
            if !budget_ids.is_empty() {
                // A model without a price would pass any budget at $0: under a budget it
                // is not a candidate unless config lets it run uncosted.
                let unpriced = |t: &Target| {
                    self.prices.lookup(&t.provider.name, &t.model).is_none()
                        && !self
                            .settings
                            .allow_unpriced_models
                            .iter()
                            .any(|p| glob_match(p, &format!("{}/{}", t.provider.name, t.model)))
                };
                if plan.iter().all(unpriced) {
                    let names: Vec<String> = plan
                        .iter()
                        .map(|t| format!("{}/{}", t.provider.name, t.model))
                        .collect();
                    return Err(err(
                        ErrorKind::Forbidden,
                        StatusCode::FORBIDDEN,
                        format!(
                            "model `{requested_model}` ({}) has no price, and a budget applies to virtual key {}: its spend could not be counted. Use a priced model, or ask your admin to add a price under [prices] or list it in governance.allow_unpriced_models",
                            names.join(", "),
                            keys::display(&id.key_id)
                        ),
                    )
                    .with_param("model"));
                }
                plan.retain(|t| !unpriced(t));
                let output = max_output_tokens.unwrap_or(self.settings.default_output_tokens);
                let estimate = plan
                    .iter()
                    .map(|t| {
                        self.prices
                            .estimate(&t.provider.name, &t.model, input_tokens_estimate, output)
                            .micros
                    })
                    .max()
                    .unwrap_or(0);
                let mut counters = lock(&self.counters.budgets);
                for bid in &budget_ids {
                    if let Some(c) = counters.get_mut(*bid)
                        && let Err(state) = c.has_room(now)
                    {
                        return Err(budget_exceeded(&c.budget, id, &state));
                    }
                }
                for bid in budget_ids {
                    if let Some(c) = counters.get_mut(bid) {
                        c.reserve(estimate);
                        admission.reservations.push((bid.clone(), estimate));
                    }
                }
            }
        }
        Ok(admission)
    }

    /// Settles a finished request: real cost replaces the reservations, tokens count
    /// toward TPM. Returns the audit entry's cost.
    fn settle(&self, admission: &mut Admission, cost: Cost, tokens: u64, ts: Millis) {
        if !admission.reservations.is_empty() {
            let mut counters = lock(&self.counters.budgets);
            for (bid, reserved) in admission.reservations.drain(..) {
                if let Some(c) = counters.get_mut(&bid)
                    && c.settle(reserved, cost.micros, ts)
                {
                    let b = &c.budget;
                    tracing::warn!(
                        budget = %b.id, scope = b.scope_kind.as_str(), scope_id = %b.scope_id,
                        limit_usd = b.limit_usd, "budget passed its soft threshold ({:.0} %)", b.soft_fraction * 100.0
                    );
                    metrics::counter!("sluice_budget_soft_threshold_total", "scope" => b.scope_kind.as_str()).increment(1);
                }
            }
        }
        if !admission.tpm.is_empty() && tokens > 0 {
            let mut minutes = lock(&self.counters.minutes);
            for k in admission.tpm.drain(..) {
                minutes.entry(k).or_default().add(ts, tokens);
            }
        }
    }

    /// Records a request refused before it reached the engine (bad key, bad body).
    pub fn record_rejection(
        &self,
        api: crate::providers::ClientApi,
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

/// Whether `policy` lets a request that asked for `requested` be served by `model` at
/// `provider` (one candidate of its plan). See [`KeyPolicy`] for how patterns match.
fn model_allowed(policy: &KeyPolicy, requested: &str, provider: &str, model: &str) -> bool {
    if policy.allow_models.is_empty()
        && policy.deny_models.is_empty()
        && policy.allow_providers.is_empty()
        && policy.deny_providers.is_empty()
    {
        return true;
    }
    let served = format!("{provider}/{model}");
    let denied = |pattern: &String| {
        glob_match(pattern, &served) || glob_match(pattern, model) || glob_match(pattern, requested)
    };
    if policy.deny_providers.iter().any(|p| p == provider) || policy.deny_models.iter().any(denied)
    {
        return false;
    }
    if !policy.allow_providers.is_empty() && !policy.allow_providers.iter().any(|p| p == provider) {
        return false;
    }
    let allowed = |pattern: &String| {
        if pattern.contains('/') {
            glob_match(pattern, &served)
        } else {
            glob_match(pattern, model)
        }
    };
    policy.allow_models.is_empty() || policy.allow_models.iter().any(allowed)
}

fn rate_limited(kind: ScopeKind, id: &str, what: &str, retry_after: u64) -> GatewayError {
    let who = match kind {
        ScopeKind::Key => format!("virtual key {}", keys::display(id)),
        ScopeKind::Model => format!("model `{id}`"),
        other => format!("{} `{id}`", other.as_str()),
    };
    let mut e = err(
        ErrorKind::RateLimited,
        StatusCode::TOO_MANY_REQUESTS,
        format!("{who} is over its rate limit of {what}; retry after {retry_after} s"),
    );
    e.retry_after = Some(retry_after.max(1));
    e
}

fn budget_exceeded(b: &model::Budget, id: &Identity, s: &budget::BudgetState) -> GatewayError {
    let who = match b.scope_kind {
        ScopeKind::Key => format!(
            "virtual key {} ({})",
            keys::display(&id.key_id),
            id.key_name
        ),
        other => format!("{} `{}`", other.as_str(), b.scope_id),
    };
    let period = if b.rolling {
        format!("rolling {}", b.window.as_str())
    } else {
        match b.window {
            model::BudgetWindow::Hour => "hourly".into(),
            model::BudgetWindow::Day => "daily".into(),
            model::BudgetWindow::Week => "weekly".into(),
            model::BudgetWindow::Month => "monthly".into(),
        }
    };
    let reserved = if s.reserved_micros > 0 {
        format!(
            ", {} reserved by requests in flight",
            budget::usd(s.reserved_micros as f64 / 1e6)
        )
    } else {
        String::new()
    };
    let reset = if b.rolling {
        "spend starts leaving the window"
    } else {
        "resets"
    };
    err(
        ErrorKind::BudgetExceeded,
        StatusCode::PAYMENT_REQUIRED,
        format!(
            "{who} exceeded its {period} budget of {} (spent {}{reserved}); {reset} {}",
            budget::usd(b.limit_usd),
            budget::usd(s.spent_micros as f64 / 1e6),
            format_time(s.resets_at)
        ),
    )
}

/// The record sink when governance is on: settle, then audit.
#[derive(Debug)]
pub struct GovernanceSink {
    pub governance: Arc<Governance>,
}

impl RecordSink for GovernanceSink {
    fn submit(&self, mut record: RequestRecord) -> Option<audit::AuditAck> {
        let gov = &self.governance;
        let ts = record
            .received_at
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let mut admission = record.admission.take().unwrap_or_default();
        // A client that leaves mid-answer still used the provider: without final usage
        // (OpenAI reports it only at the end of a stream), charge at least the estimate
        // that was reserved, so disconnecting early is never a way around a budget.
        if matches!(
            record.outcome,
            crate::engine::record::RequestOutcome::ClientDisconnected
                | crate::engine::record::RequestOutcome::StreamFailed
        ) && record.served_by.is_some()
        {
            let reserved = admission
                .reservations
                .iter()
                .map(|(_, m)| *m)
                .max()
                .unwrap_or(0);
            if reserved > record.cost.micros {
                record.cost = Cost {
                    micros: reserved,
                    priced: true,
                };
            }
        }
        let cost = record.cost;
        let tokens = record
            .usage
            .as_ref()
            .map(|u| u.prompt_tokens.saturating_add(u.completion_tokens))
            .unwrap_or(0);
        gov.settle(&mut admission, cost, tokens, now_ms());
        let identity = admission.identity.clone();
        drop(admission);
        crate::engine::record::LogSink::log(&record);
        let entry = audit_entry(record, identity.as_deref(), ts, gov.settings.max_body_bytes);
        gov.audit.submit(entry)
    }
}

/// `block`, `redact`, `warn` or `log`, as policies spell them.
pub fn action_label(action: sluice_shared::guardrails::Action) -> &'static str {
    use sluice_shared::guardrails::Action;
    match action {
        Action::Block => "block",
        Action::Redact => "redact",
        Action::Warn => "warn",
        Action::Log => "log",
    }
}

/// The audit entry for a finished request; consumes the record (its strings move).
fn audit_entry(r: RequestRecord, id: Option<&Identity>, ts_ms: i64, max_body: usize) -> AuditEntry {
    let content = id.map(|i| i.policy.content_logging).unwrap_or_default();
    let (provider, model) = match r.served_by.as_deref().and_then(|s| s.split_once('/')) {
        Some((p, m)) => (Some(p.to_owned()), Some(m.to_owned())),
        None => (None, None),
    };
    let usage = r.usage.unwrap_or_default();
    let cut = |b: &Option<bytes::Bytes>| {
        b.as_ref().map(|b| {
            let text = String::from_utf8_lossy(&b[..b.len().min(max_body)]).into_owned();
            if b.len() > max_body {
                format!("{text}…[{} bytes cut]", b.len() - max_body)
            } else {
                text
            }
        })
    };
    AuditEntry {
        request_id: r.request_id,
        ts_ms,
        source: "gateway".into(),
        org_id: id.map(|i| i.org_id.clone()),
        team_id: id.map(|i| i.team_id.clone()),
        user_id: id.and_then(|i| i.user_id.clone()),
        device_id: id.and_then(|i| i.device_id.clone()),
        key_id: id.map(|i| i.key_id.clone()),
        app: r.app,
        process: None,
        api: r.api.to_owned(),
        requested_model: r.requested_model,
        provider,
        model,
        attempts: r
            .attempts
            .into_iter()
            .map(|a| {
                let outcome = a.outcome.label().to_owned();
                let (status, detail) = match a.outcome {
                    AttemptOutcome::Ok { status } => (Some(status), None),
                    AttemptOutcome::Status { status, message } => (Some(status), Some(message)),
                    AttemptOutcome::Connect { message }
                    | AttemptOutcome::Protocol { message }
                    | AttemptOutcome::StreamError { message }
                    | AttemptOutcome::Saturated { message } => (None, Some(message)),
                    AttemptOutcome::Skipped { reason } => (None, Some(reason)),
                    AttemptOutcome::HeaderTimeout | AttemptOutcome::IdleTimeout => (None, None),
                };
                AuditAttempt {
                    provider: a.provider,
                    model: a.model,
                    key_id: a.key_id,
                    duration_ms: a.duration.as_secs_f64() * 1000.0,
                    outcome,
                    status,
                    detail,
                }
            })
            .collect(),
        input_tokens: usage.prompt_tokens,
        output_tokens: usage.completion_tokens,
        cached_tokens: usage.cached_tokens(),
        cost_micros: r.cost.micros,
        priced: r.cost.priced,
        latency_ms: r.latency.as_secs_f64() * 1000.0,
        status: r.status,
        outcome: r.outcome.label().to_owned(),
        // Corrected upstream numbers are kept with the error, or as the record's note.
        error: match (r.error_message, r.anomalies.is_empty()) {
            (e, true) => e,
            (None, false) => Some(r.anomalies.join("; ")),
            (Some(e), false) => Some(format!("{e}; {}", r.anomalies.join("; "))),
        },
        guardrails: r
            .guardrails
            .iter()
            .map(|d| AuditDecision {
                rule_id: d.rule_id.to_string(),
                action: action_label(d.action).to_owned(),
                count: d.count,
                direction: Some(
                    match d.direction {
                        sluice_shared::guardrails::Direction::Input => "input",
                        sluice_shared::guardrails::Direction::Output => "output",
                        sluice_shared::guardrails::Direction::Both => "both",
                    }
                    .to_owned(),
                ),
            })
            .collect(),
        content,
        request_bytes: (content != ContentLogging::Off).then_some(r.request_bytes),
        response_bytes: (content != ContentLogging::Off).then_some(r.response_bytes),
        request_body: if content == ContentLogging::Full {
            cut(&r.request_body)
        } else {
            None
        },
        response_body: if content == ContentLogging::Full {
            cut(&r.response_body)
        } else {
            None
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allow: &[&str], deny: &[&str]) -> KeyPolicy {
        KeyPolicy {
            allow_models: allow.iter().map(|s| (*s).to_owned()).collect(),
            deny_models: deny.iter().map(|s| (*s).to_owned()).collect(),
            ..KeyPolicy::default()
        }
    }

    #[test]
    fn allows_decide_on_the_served_provider_and_model_only() {
        let p = policy(&["openai/*"], &[]);
        assert!(model_allowed(&p, "openai/gpt-4o", "openai", "gpt-4o"));
        // Every other way of naming `openai/...` that another provider serves.
        for (requested, provider, model) in [
            ("other/openai/gpt-4o", "other", "openai/gpt-4o"),
            ("openai/gpt-4o", "other", "openai/gpt-4o"),
            ("openai/gpt-4o", "other", "gpt-4o"),
            ("openai-fast", "other", "gpt-4o"),
            ("gpt-4o", "openrouter", "openai/gpt-4o"),
        ] {
            assert!(
                !model_allowed(&p, requested, provider, model),
                "{requested} served by {provider}/{model}"
            );
        }
        let bare = policy(&["gpt-4o-mini"], &[]);
        assert!(model_allowed(&bare, "anything", "azure", "gpt-4o-mini"));
        assert!(!model_allowed(&bare, "gpt-4o-mini", "x", "gpt-4o"));
        assert!(!model_allowed(
            &bare,
            "gpt-4o-mini",
            "x",
            "openai/gpt-4o-mini"
        ));
    }

    #[test]
    fn denies_match_every_name_of_a_candidate() {
        let p = policy(&[], &["openai/gpt-4o"]);
        assert!(!model_allowed(&p, "x", "openai", "gpt-4o"));
        assert!(!model_allowed(&p, "x", "openrouter", "openai/gpt-4o"));
        assert!(!model_allowed(
            &p,
            "openai/gpt-4o",
            "azure",
            "my-deployment"
        ));
        assert!(model_allowed(&p, "x", "openai", "gpt-4o-mini"));
    }
}
