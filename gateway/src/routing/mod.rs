//! Routing: from the model string a client sent to an ordered list of targets
//! (`provider`, `model`) to try, and the retry policy between attempts.
//!
//! Model strings resolve in this order:
//! 1. an alias (`default`, `fast`, …): its targets in weighted-random order, then its
//!    fallbacks;
//! 2. `provider/model` where `provider` is configured (the model may itself contain
//!    slashes: `openrouter/meta-llama/llama-3.3-70b`);
//! 3. a bare model listed in some provider's `models`;
//! 4. a bare model on the surface's native provider: the first Anthropic provider for
//!    `/anthropic`, the first OpenAI-protocol provider for `/v1` (so Claude Code and the
//!    OpenAI SDKs work with their usual model names).
//!
//! The request's own `fallbacks` follow, duplicates are dropped (in linear time), the
//! list is cut at `routing.max_candidates`, and targets whose provider has every key out
//! of rotation move to the end (the engine skips them without a call while their
//! breaker is open).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::StatusCode;

use crate::config::kind::Protocol;
use crate::config::{AliasConfig, RoutingConfig, ValidConfig, list_or_none};
use crate::error::{ErrorKind, Flavor, GatewayError};
use crate::providers::Provider;
use crate::secret::Scrubber;

/// One place to send the request.
#[derive(Debug, Clone)]
pub struct Target {
    pub provider: Arc<Provider>,
    pub model: String,
}

/// An alias entry resolved against the providers when the router is built: the target,
/// or the model string that names no configured provider (an error when it is reached,
/// so that one stale alias entry does not take the gateway down).
#[derive(Debug)]
enum Resolved {
    Target(Target),
    Unknown(String),
}

#[derive(Debug)]
struct Alias {
    targets: Vec<(Resolved, f64)>,
    fallbacks: Vec<Resolved>,
}

#[derive(Debug)]
pub struct Router {
    providers: Vec<Arc<Provider>>,
    by_name: HashMap<String, Arc<Provider>>,
    aliases: HashMap<String, Alias>,
    pub retry: RoutingConfig,
    /// Every secret this table's providers hold (and the admin token), for scrubbing
    /// what leaves the process.
    pub scrubber: Arc<Scrubber>,
}

impl Router {
    /// The routing table for a validated config: one provider (HTTP client, limiter,
    /// key health) per `[providers.NAME]`, the aliases, and a scrubber that knows every
    /// configured secret.
    pub fn from_config(config: &ValidConfig) -> anyhow::Result<Router> {
        let epoch = Instant::now();
        let mut providers = Vec::with_capacity(config.providers.len());
        for p in &config.providers {
            let name = p.name.clone();
            let provider = Provider::new(p.clone(), epoch)
                .map_err(|e| anyhow::anyhow!("provider `{name}`: {e}"))?;
            providers.push(Arc::new(provider));
        }
        let secrets = config
            .providers
            .iter()
            .flat_map(|p| p.keys.iter().filter_map(|k| k.secret.as_ref()))
            .chain(
                config
                    .governance
                    .as_ref()
                    .and_then(|g| g.admin_token.as_ref()),
            );
        Ok(Router::new(
            providers,
            &config.aliases,
            config.routing.clone(),
            Scrubber::new(secrets),
        ))
    }

    pub fn new(
        providers: Vec<Arc<Provider>>,
        aliases: &std::collections::BTreeMap<String, AliasConfig>,
        retry: RoutingConfig,
        scrubber: Scrubber,
    ) -> Self {
        let by_name: HashMap<String, Arc<Provider>> = providers
            .iter()
            .map(|p| (p.name.clone(), p.clone()))
            .collect();
        let resolve = |model: &str| match model.split_once('/') {
            Some((provider, rest)) if !rest.is_empty() => match by_name.get(provider) {
                Some(p) => Resolved::Target(Target {
                    provider: p.clone(),
                    model: rest.to_owned(),
                }),
                None => Resolved::Unknown(model.to_owned()),
            },
            _ => Resolved::Unknown(model.to_owned()),
        };
        let aliases = aliases
            .iter()
            .map(|(name, a)| {
                let alias = Alias {
                    targets: a
                        .targets
                        .iter()
                        .map(|t| (resolve(&t.model), t.weight))
                        .collect(),
                    fallbacks: a.fallbacks.iter().map(|f| resolve(f)).collect(),
                };
                (name.clone(), alias)
            })
            .collect();
        Router {
            providers,
            by_name,
            aliases,
            retry,
            scrubber: Arc::new(scrubber),
        }
    }

    pub fn providers(&self) -> &[Arc<Provider>] {
        &self.providers
    }

    /// Alias names, sorted.
    pub fn alias_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.aliases.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// The ordered targets for a request.
    pub fn plan(
        &self,
        model: &str,
        fallbacks: &[String],
        surface: Flavor,
    ) -> Result<Vec<Target>, GatewayError> {
        let model = model.trim();
        if model.is_empty() {
            return Err(GatewayError::invalid(
                "missing `model`: name an alias or a `provider/model` string",
            )
            .with_param("model"));
        }
        let cap = self.retry.max_candidates;
        if fallbacks.len() > cap {
            return Err(GatewayError::invalid(format!(
                "`fallbacks` names {} models; at most {cap} targets are tried for one request (routing.max_candidates)",
                fallbacks.len()
            ))
            .with_param("fallbacks"));
        }
        let mut targets = Vec::new();
        self.expand(model, surface, &mut targets)?;
        for fallback in fallbacks {
            self.expand(fallback, surface, &mut targets)
                .map_err(|mut e| {
                    e.message = format!("in `fallbacks`: {}", e.message);
                    e.param = Some("fallbacks".into());
                    e
                })?;
        }
        // Linear: one hash-set probe per entry (a client controls how many there are, up
        // to the cap above times an alias's size).
        let mut seen: std::collections::HashSet<(*const Provider, &str)> =
            std::collections::HashSet::with_capacity(targets.len());
        let mut kept: Vec<Target> = Vec::with_capacity(targets.len().min(cap));
        for t in &targets {
            if kept.len() == cap {
                break;
            }
            if seen.insert((Arc::as_ptr(&t.provider), t.model.as_str())) {
                kept.push(t.clone());
            }
        }
        drop(seen);
        let mut targets = kept;
        let now = self.providers.first().map(|p| p.now_ms()).unwrap_or(0);
        // Stable: the healthy keep their order, the unhealthy keep theirs, after them.
        targets.sort_by_key(|t| !t.provider.has_available_key(now));
        Ok(targets)
    }

    fn expand(
        &self,
        model: &str,
        surface: Flavor,
        out: &mut Vec<Target>,
    ) -> Result<(), GatewayError> {
        if let Some(alias) = self.aliases.get(model) {
            // Weighted order without replacement: each pick among the entries not yet
            // taken, by weight.
            let mut pool: Vec<(&Resolved, f64)> =
                alias.targets.iter().map(|(r, w)| (r, *w)).collect();
            while !pool.is_empty() {
                let total: f64 = pool.iter().map(|(_, w)| *w).sum();
                let mut pick = fastrand::f64() * total;
                let mut chosen = pool.len() - 1;
                for (i, (_, w)) in pool.iter().enumerate() {
                    if pick < *w {
                        chosen = i;
                        break;
                    }
                    pick -= w;
                }
                let (target, _) = pool.remove(chosen);
                self.push_resolved(target, out)?;
            }
            for fallback in &alias.fallbacks {
                self.push_resolved(fallback, out)?;
            }
            return Ok(());
        }
        if let Some((provider, rest)) = model.split_once('/')
            && let (Some(p), false) = (self.by_name.get(provider), rest.is_empty())
        {
            out.push(Target {
                provider: p.clone(),
                model: rest.to_owned(),
            });
            return Ok(());
        }
        if let Some(p) = self
            .providers
            .iter()
            .find(|p| p.models.iter().any(|m| m == model))
        {
            out.push(Target {
                provider: p.clone(),
                model: model.to_owned(),
            });
            return Ok(());
        }
        let native = self.providers.iter().find(|p| match surface {
            Flavor::Anthropic => p.protocol == Protocol::Anthropic,
            Flavor::OpenAi => matches!(p.protocol, Protocol::OpenAi | Protocol::Azure),
        });
        if let (Some(p), false) = (native, model.contains('/')) {
            out.push(Target {
                provider: p.clone(),
                model: model.to_owned(),
            });
            return Ok(());
        }
        Err(self.unknown_model(model))
    }

    fn push_resolved(&self, entry: &Resolved, out: &mut Vec<Target>) -> Result<(), GatewayError> {
        match entry {
            Resolved::Target(target) => {
                out.push(target.clone());
                Ok(())
            }
            Resolved::Unknown(model) => Err(self.unknown_model(model)),
        }
    }

    fn unknown_model(&self, model: &str) -> GatewayError {
        let providers = list_or_none(
            self.by_name
                .keys()
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter(),
        );
        let aliases = self.alias_names().join(", ");
        let hint = if self.providers.is_empty() {
            "No provider is configured: set a provider API key (e.g. OPENAI_API_KEY) or start \
             the gateway with --config."
                .to_owned()
        } else {
            format!(
                "Use `provider/model` with a configured provider ({providers}) or an alias ({}).",
                if aliases.is_empty() {
                    "none defined"
                } else {
                    &aliases
                }
            )
        };
        GatewayError::new(
            ErrorKind::UnknownModel,
            StatusCode::NOT_FOUND,
            format!("model `{model}` does not match any alias or provider. {hint}"),
        )
        .with_param("model")
    }
}

/// The delay before retry number `attempt` (0-based): exponential with full jitter, or
/// the provider's `Retry-After` when that is longer.
pub fn backoff(cfg: &RoutingConfig, attempt: u32, retry_after: Option<Duration>) -> Duration {
    let ceiling = cfg
        .backoff_base_ms
        .saturating_mul(1u64 << attempt.min(20))
        .min(cfg.backoff_max_ms);
    let jittered = Duration::from_millis(fastrand::u64(0..=ceiling));
    match retry_after {
        Some(after) => after.max(jittered),
        None => jittered,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_bounded_and_honours_retry_after() {
        let cfg = RoutingConfig {
            backoff_base_ms: 100,
            backoff_max_ms: 400,
            ..Default::default()
        };
        for attempt in 0..10 {
            let d = backoff(&cfg, attempt, None);
            assert!(d <= Duration::from_millis(400), "{d:?}");
        }
        assert!(backoff(&cfg, 0, Some(Duration::from_secs(2))) >= Duration::from_secs(2));
    }
}
