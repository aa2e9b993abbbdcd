//! Providers and aliases managed through the admin API.
//!
//! They are stored in the governance database and overlaid on the config file's (an API
//! entry with the same name wins). Every change is validated as a whole configuration
//! — the same checks as `check-config`, so an alias cannot point at a provider that is
//! not there — before it is stored; then a new routing table is built and swapped in.
//! Requests in flight keep the table they started with. Key health and concurrency
//! counters start fresh for the new table.
//!
//! A provider from the API may only use the secret references that
//! `governance.admin_secret_refs` allows (see [`check_api_provider`]): the admin token
//! is a credential to manage routing, not a way to read the gateway's environment or
//! files.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::config::{AliasConfig, Config, ProviderConfig};
use crate::env::{Environment, ProcessEnv};
use crate::governance::model::glob_match;
use crate::governance::store::{Store, StoreError};
use crate::secret;
use axum::Json;
use axum::extract::State;
use http::StatusCode;

use super::extract::{AdminError, AdminResult, Body, P, gov};
use crate::api::state::AppState;
use crate::routing::Router;

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
                let p: ProviderConfig = serde_json::from_str(&body).map_err(bad)?;
                // Stored before the allow-list changed: refused now, like a new entry.
                if let Err(m) = check_api_provider(&name, &p, allowed_refs(base), &ProcessEnv) {
                    tracing::error!(
                        "provider `{name}` defined through the admin API is not loaded: {m}"
                    );
                    continue;
                }
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
            config.providers.shift_remove(n);
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
    if let Change::PutProvider(name, provider) = &change {
        check_api_provider(name, provider, allowed_refs(base), &ProcessEnv)
            .map_err(RoutingError::Invalid)?;
    }
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
    let router = Router::from_config(&valid).map_err(|e| RoutingError::Invalid(e.to_string()))?;
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
    state
        .engine
        .store(Arc::new(state.engine.load().with_router(router)));
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
        Ok(valid) => match Router::from_config(&valid) {
            Ok(router) => state
                .engine
                .store(Arc::new(state.engine.load().with_router(router))),
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

fn allowed_refs(base: &Config) -> &[String] {
    base.governance
        .as_ref()
        .map(|g| g.admin_secret_refs.as_slice())
        .unwrap_or_default()
}

/// Checks a provider that the admin API is about to store (or load): its name is safe,
/// and every key reference and `ca_file` is one that `governance.admin_secret_refs`
/// allows and that resolves. The message names the field; it never echoes a value that
/// is not a reference (it may be a pasted secret) and never says whether a variable or
/// file exists.
pub fn check_api_provider(
    name: &str,
    provider: &ProviderConfig,
    allowed: &[String],
    env: &dyn Environment,
) -> Result<(), String> {
    if !crate::config::safe_name(name) {
        return Err(format!(
            "provider name `{}` may only use letters, digits, `-` and `_` ({} at most)",
            name.chars().take(80).collect::<String>(),
            crate::config::MAX_NAME_LEN
        ));
    }
    let hint = "list the reference in governance.admin_secret_refs in the config file, or define this provider there";
    for (i, key) in provider.keys.iter().enumerate() {
        let at = format!("providers.{name}.keys[{i}].value");
        let reference = key.value.trim();
        if !(reference.starts_with("env:") || reference.starts_with("file:")) {
            return Err(format!(
                "{at}: must be a reference such as `env:OPENAI_API_KEY`; literal secrets are not accepted"
            ));
        }
        if !reference_allowed(reference, allowed) {
            return Err(format!(
                "{at}: `{reference}` is not a reference the admin API may use; {hint}"
            ));
        }
        if secret::resolve(reference, env).is_err() {
            return Err(format!(
                "{at}: `{reference}` cannot be resolved (not set, empty or unreadable)"
            ));
        }
    }
    if let Some(path) = &provider.ca_file {
        let reference = format!("file:{}", path.display());
        if !reference_allowed(&reference, allowed) {
            return Err(format!(
                "providers.{name}.ca_file: `{reference}` is not a file the admin API may use; {hint}"
            ));
        }
    }
    Ok(())
}

/// Whether `reference` matches an allowed pattern. A `file:` path must be absolute and
/// free of `..`, so that `file:/run/secrets/*` cannot reach outside its folder.
fn reference_allowed(reference: &str, allowed: &[String]) -> bool {
    if let Some(path) = reference.strip_prefix("file:") {
        let path = std::path::Path::new(path);
        if !path.is_absolute()
            || path
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            return false;
        }
    }
    allowed.iter().any(|p| glob_match(p, reference))
}

/// Config structs always serialize.
fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

// ---- handlers ------------------------------------------------------------------------

pub(super) fn routing_error(e: RoutingError) -> AdminError {
    match e {
        RoutingError::Invalid(m) => AdminError(StatusCode::BAD_REQUEST, m),
        RoutingError::FromFile(m) => AdminError(StatusCode::CONFLICT, m),
        RoutingError::Store(e) => AdminError::from(e),
    }
}

pub(super) async fn describe_routing(s: &AppState) -> AdminResult<Value> {
    let g = gov(s)?;
    describe(s, g.store.as_ref()).await.map_err(routing_error)
}

pub(super) async fn list_providers(State(s): State<Arc<AppState>>) -> AdminResult<Json<Value>> {
    let d = describe_routing(&s).await?;
    Ok(Json(json!({"data": d["providers"]})))
}

pub(super) async fn list_aliases(State(s): State<Arc<AppState>>) -> AdminResult<Json<Value>> {
    let d = describe_routing(&s).await?;
    Ok(Json(json!({"data": d["aliases"]})))
}

pub(super) async fn change_routing(s: &AppState, change: Change) -> AdminResult<()> {
    let g = gov(s)?;
    apply(s, g.store.as_ref(), change)
        .await
        .map_err(routing_error)
}

/// Creates or replaces a provider (same fields as `[providers.NAME]` in the config file;
/// keys must be `env:`/`file:` references).
pub(super) async fn put_provider(
    State(s): State<Arc<AppState>>,
    P(name): P<String>,
    Body(body): Body<ProviderConfig>,
) -> AdminResult<Json<Value>> {
    change_routing(&s, Change::PutProvider(name.clone(), Box::new(body))).await?;
    Ok(Json(json!({"name": name, "source": "api"})))
}

pub(super) async fn delete_provider(
    State(s): State<Arc<AppState>>,
    P(name): P<String>,
) -> AdminResult<StatusCode> {
    change_routing(&s, Change::DeleteProvider(name)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Creates or replaces an alias (same fields as `[aliases.NAME]`).
pub(super) async fn put_alias(
    State(s): State<Arc<AppState>>,
    P(name): P<String>,
    Body(body): Body<AliasConfig>,
) -> AdminResult<Json<Value>> {
    change_routing(&s, Change::PutAlias(name.clone(), body)).await?;
    Ok(Json(json!({"name": name, "source": "api"})))
}

pub(super) async fn delete_alias(
    State(s): State<Arc<AppState>>,
    P(name): P<String>,
) -> AdminResult<StatusCode> {
    change_routing(&s, Change::DeleteAlias(name)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::KeyConfig;
    use crate::config::kind::ProviderKind;
    use crate::env::MapEnv;

    fn provider(keys: &[&str], ca: Option<&str>) -> ProviderConfig {
        let mut p = ProviderConfig::new(
            ProviderKind::Openai,
            None,
            keys.iter()
                .map(|k| KeyConfig {
                    value: (*k).to_owned(),
                    weight: 1.0,
                    id: None,
                })
                .collect(),
        );
        p.ca_file = ca.map(Into::into);
        p
    }

    #[test]
    fn api_providers_use_only_allowed_references() {
        let env = MapEnv::new([
            ("OPENAI_API_KEY", "sk-1"),
            ("SLUICE_ADMIN_TOKEN", "admin-token-0123456789"),
        ]);
        let allowed = vec!["env:OPENAI_*".to_owned(), "file:/run/secrets/*".to_owned()];
        assert!(
            check_api_provider(
                "p",
                &provider(&["env:OPENAI_API_KEY"], None),
                &allowed,
                &env
            )
            .is_ok()
        );
        for refused in [
            "env:SLUICE_ADMIN_TOKEN",
            "file:/etc/shadow",
            "file:/run/secrets/../../etc/shadow",
            "file:run/secrets/x",
        ] {
            let e =
                check_api_provider("p", &provider(&[refused], None), &allowed, &env).unwrap_err();
            assert!(e.contains("admin_secret_refs"), "{refused}: {e}");
        }
        // Nothing is allowed by default.
        assert!(
            check_api_provider("p", &provider(&["env:OPENAI_API_KEY"], None), &[], &env).is_err()
        );
        // A pasted secret is refused without being echoed.
        let e = check_api_provider("p", &provider(&["sk-live-pasted"], None), &allowed, &env)
            .unwrap_err();
        assert!(!e.contains("sk-live-pasted"), "{e}");
        // Allowed but missing and allowed but unreadable read the same.
        let missing =
            check_api_provider("p", &provider(&["env:OPENAI_NOPE"], None), &allowed, &env)
                .unwrap_err();
        let unreadable = check_api_provider(
            "p",
            &provider(&["file:/run/secrets/nope"], None),
            &allowed,
            &env,
        )
        .unwrap_err();
        assert!(
            missing.ends_with("cannot be resolved (not set, empty or unreadable)"),
            "{missing}"
        );
        assert!(
            unreadable.ends_with("cannot be resolved (not set, empty or unreadable)"),
            "{unreadable}"
        );
        // ca_file is a file reference too.
        assert!(
            check_api_provider(
                "p",
                &provider(&[], Some("/etc/ssl/private/key.pem")),
                &allowed,
                &env
            )
            .is_err()
        );
        // Names are a safe alphabet.
        for name in ["openapi.json", "a/b", "..", "", "a b"] {
            assert!(
                check_api_provider(name, &provider(&[], None), &allowed, &env).is_err(),
                "{name:?}"
            );
        }
    }
}
