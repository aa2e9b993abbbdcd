//! Admission: the key's model policy over the plan, concurrency, RPM/TPM and budgets,
//! and settling what a request reserved once it is done.

use std::sync::Arc;

use http::StatusCode;

use super::budget::{Millis, now_ms};
use super::counters::{Admission, Measure, Meter, MeterRef, lock};
use super::keys;
use super::limits::try_take;
use super::model::{KeyPolicy, RateLimit, ScopeKind, glob_match};
use super::refusal::{budget_exceeded, err, rate_limited};
use super::scope::ScopedRef;
use super::service::Governance;
use super::snapshot::Identity;
use crate::error::{ErrorKind, GatewayError};
use crate::pricing::Cost;
use crate::routing::Target;

impl Governance {
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
    pub(super) fn settle(&self, admission: &mut Admission, cost: Cost, tokens: u64, ts: Millis) {
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
