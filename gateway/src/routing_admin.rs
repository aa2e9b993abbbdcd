//! Providers and aliases managed through the admin API.
//!
//! They are stored in the governance database and overlaid on the config file's (an API
//! entry with the same name wins). Every change is validated as a whole configuration
//! — the same checks as `check-config`, so an alias cannot point at a provider that is
//! not there — before it is stored; then a new routing table is built and swapped in.
//! Requests in flight keep the table they started with. Key health and concurrency
//! counters start fresh for the new table.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::config::{AliasConfig, Config, ProcessEnv, ProviderConfig};
use crate::governance::store::{Store, StoreError};
use crate::server::{AppState, build_router};

/// `provider` or `alias`, as stored.
pub const PROVIDER: &str = "provider";
pub const ALIAS: &str = "alias";

/// Why a routing change was refused.
#[derive(Debug)]
pub enum RoutingError {
    /// The change would make the configuration invalid; the message lists why.
    Invalid(String),
    /// The entry comes from the config file and can only be changed there.
    FromFile(String),
    Store(StoreError),
}

impl From<StoreError> for RoutingError {
    fn from(e: StoreError) -> Self {
        RoutingError::Store(e)
    }
}

/// A change to apply before validating.
#[derive(Debug)]
pub enum Change {
    PutProvider(String, Box<ProviderConfig>),
    PutAlias(String, AliasConfig),
    DeleteProvider(String),
    DeleteAlias(String),
}

/// The file's configuration with the API's entries (and `change`) laid over it.
async fn overlay(
    base: &Config,
    store: &dyn Store,
    change: Option<&Change>,
) -> Result<Config, RoutingError> {
    let mut config = base.clone();
    for (kind, name, body) in store.routing_entries().await? {
        let skip = match change {
            Some(Change::DeleteProvider(n)) => kind == PROVIDER && &name == n,
            Some(Change::DeleteAlias(n)) => kind == ALIAS && &name == n,
            _ => false,
        };
        if skip {
            continue;
        }
        let bad = |e: serde_json::Error| {
            RoutingError::Store(StoreError::Corrupt(format!("{kind} `{name}`: {e}")))
        };
        match kind.as_str() {
            PROVIDER => {
                let p = serde_json::from_str(&body).map_err(bad)?;
                config.providers.insert(name, p);
            }
            ALIAS => {
                let a = serde_json::from_str(&body).map_err(bad)?;
                config.aliases.insert(name, a);
            }
            _ => {}
        }
    }
    match change {
        Some(Change::PutProvider(n, p)) => {
            config.providers.insert(n.clone(), (**p).clone());
        }
        Some(Change::PutAlias(n, a)) => {
            config.aliases.insert(n.clone(), a.clone());
        }
        Some(Change::DeleteProvider(n)) => {
            config.providers.remove(n);
        }
        Some(Change::DeleteAlias(n)) => {
            config.aliases.remove(n);
        }
        None => {}
    }
    Ok(config)
}

/// Validates `change` against the whole configuration, stores it, and swaps in the new
/// routing table.
pub async fn apply(
    state: &AppState,
    store: &dyn Store,
    change: Change,
) -> Result<(), RoutingError> {
    let base = &state.routing_base;
    match &change {
        Change::DeleteProvider(n) if base.providers.contains_key(n) => {
            return Err(RoutingError::FromFile(format!(
                "provider `{n}` is defined in {}; change it there",
                state.routing_source
            )));
        }
        Change::DeleteAlias(n) if base.aliases.contains_key(n) => {
            return Err(RoutingError::FromFile(format!(
                "alias `{n}` is defined in {}; change it there",
                state.routing_source
            )));
        }
        _ => {}
    }
    let merged = overlay(base, store, Some(&change)).await?;
    let valid = merged
        .validate(&ProcessEnv, "the configuration with this change")
        .map_err(|e| RoutingError::Invalid(e.to_string()))?;
    let router = build_router(&valid).map_err(|e| RoutingError::Invalid(e.to_string()))?;
    match &change {
        Change::PutProvider(n, p) => {
            store
                .put_routing_entry(PROVIDER, n.clone(), to_json(p.as_ref()))
                .await?
        }
        Change::PutAlias(n, a) => {
            store
                .put_routing_entry(ALIAS, n.clone(), to_json(a))
                .await?
        }
        Change::DeleteProvider(n) => store.delete_routing_entry(PROVIDER, n.clone()).await?,
        Change::DeleteAlias(n) => store.delete_routing_entry(ALIAS, n.clone()).await?,
    }
    state.engine.load().router.store(Arc::new(router));
    Ok(())
}

/// Applies the stored entries at start. An entry that no longer validates (say, its key
/// variable is gone) is reported and the file's routing is kept.
pub async fn load_at_start(state: &AppState, store: &dyn Store) {
    let merged = match overlay(&state.routing_base, store, None).await {
        Ok(m) => m,
        Err(e) => {
            tracing::error!(error = ?e, "cannot read providers and aliases defined through the admin API");
            return;
        }
    };
    if merged.providers.len() == state.routing_base.providers.len()
        && merged.aliases.len() == state.routing_base.aliases.len()
        && store
            .routing_entries()
            .await
            .map(|e| e.is_empty())
            .unwrap_or(true)
    {
        return;
    }
    match merged.validate(&ProcessEnv, "the configuration with admin-API entries") {
        Ok(valid) => match build_router(&valid) {
            Ok(router) => state.engine.load().router.store(Arc::new(router)),
            Err(e) => {
                tracing::error!(error = %e, "cannot build the routing table from admin-API entries")
            }
        },
        Err(e) => tracing::error!(
            "providers or aliases defined through the admin API are invalid; serving the config file's routing only:\n{e}"
        ),
    }
}

/// Providers and aliases in force, with where each comes from. Key references (`env:…`)
/// are shown; they are names, not secrets.
pub async fn describe(state: &AppState, store: &dyn Store) -> Result<Value, RoutingError> {
    let merged = overlay(&state.routing_base, store, None).await?;
    let api: Vec<(String, String)> = store
        .routing_entries()
        .await?
        .into_iter()
        .map(|(k, n, _)| (k, n))
        .collect();
    let source = |kind: &str, name: &String| {
        if api.iter().any(|(k, n)| k == kind && n == name) {
            "api"
        } else {
            "file"
        }
    };
    let providers: Vec<Value> = merged
        .providers
        .iter()
        .map(|(name, p)| json!({"name": name, "source": source(PROVIDER, name), "config": p}))
        .collect();
    let aliases: Vec<Value> = merged
        .aliases
        .iter()
        .map(|(name, a)| json!({"name": name, "source": source(ALIAS, name), "config": a}))
        .collect();
    Ok(json!({"providers": providers, "aliases": aliases}))
}

/// Config structs always serialize.
fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}
