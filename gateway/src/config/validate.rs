//! The second pass over a parsed [`Config`]: every check types cannot make, reported
//! together with TOML paths, and the resolved [`ValidConfig`] the gateway runs on.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use indexmap::IndexMap;
use rustls::pki_types::CertificateDer;

use sluice_shared::guardrails::{CompiledPolicy, PolicyError};

use super::file::{Config, Price};
use super::governance::{GovernanceConfig, Mode, default_database, default_output_tokens};
use super::kind::{ALL_KINDS, ProviderKind};
use super::provider::{HealthConfig, KeyConfig, ProviderConfig, load_ca_file};
use super::routing::{AliasConfig, RoutingConfig};
use super::server::ServerConfig;
use crate::env::Environment;
use crate::secret::{self, Secret};

/// One problem found while loading or validating, with the TOML path it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    pub path: String,
    pub message: String,
}

/// Everything wrong with a config, reported together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub source_name: String,
    pub issues: Vec<ConfigIssue>,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "invalid configuration in {}:", self.source_name)?;
        for issue in &self.issues {
            if issue.path.is_empty() {
                writeln!(f, "  - {}", issue.message)?;
            } else {
                writeln!(f, "  - {}: {}", issue.path, issue.message)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// A validated provider, secrets resolved.
#[derive(Debug, Clone)]
pub struct ResolvedProvider {
    pub name: String,
    pub kind: ProviderKind,
    pub base_url: reqwest::Url,
    pub keys: Vec<ResolvedKey>,
    pub models: Vec<String>,
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
    pub api_version: String,
    /// Extra trusted roots from `ca_file` (empty: the operating system's store only).
    pub ca_roots: Vec<CertificateDer<'static>>,
    pub connect_timeout: Duration,
    pub header_timeout: Duration,
    pub stream_idle_timeout: Duration,
    pub max_concurrency: usize,
    pub max_queue: usize,
    pub queue_timeout: Duration,
    pub max_retries: u32,
    pub health: HealthConfig,
}

#[derive(Debug, Clone)]
pub struct ResolvedKey {
    pub id: String,
    pub secret: Option<Secret>,
    pub weight: f64,
}

/// The checked configuration the gateway runs on.
#[derive(Debug, Clone)]
pub struct ValidConfig {
    pub server: ServerConfig,
    pub routing: RoutingConfig,
    pub providers: Vec<ResolvedProvider>,
    pub aliases: BTreeMap<String, AliasConfig>,
    pub governance: Option<ResolvedGovernance>,
    pub prices: BTreeMap<String, Price>,
    /// `[guardrails]`, compiled once; `None` when the section is absent.
    pub guardrails: Option<Arc<CompiledPolicy>>,
    /// The configuration as read (before validation), which providers and aliases
    /// defined through the admin API are overlaid on.
    pub raw: Config,
    pub source_name: String,
}

/// `[governance]` with its admin token resolved.
#[derive(Debug, Clone)]
pub struct ResolvedGovernance {
    pub config: GovernanceConfig,
    pub admin_token: Option<Secret>,
}

/// Azure's GA data-plane API version at the time of writing.
pub const DEFAULT_AZURE_API_VERSION: &str = "2024-10-21";

impl Config {
    /// Reads and parses a TOML file (syntax and types only; call [`Config::validate`]).
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            source_name: name.clone(),
            issues: vec![ConfigIssue {
                path: String::new(),
                message: format!("cannot read: {e}"),
            }],
        })?;
        Config::from_toml(&text, &name)
    }

    pub fn from_toml(text: &str, source_name: &str) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError {
            source_name: source_name.to_owned(),
            issues: vec![ConfigIssue {
                path: String::new(),
                message: e.to_string(),
            }],
        })
    }

    /// The zero-config start: one provider per usual API-key variable that is set
    /// (`OPENAI_API_KEY` → provider `openai`, …), listening on 127.0.0.1:8080.
    pub fn from_environment(env: &dyn Environment) -> Config {
        let mut providers = IndexMap::new();
        for kind in ALL_KINDS {
            let Some(var) = kind.api_key_env() else {
                continue;
            };
            let var = match kind {
                ProviderKind::Gemini
                    if env.var(var).is_none() && env.var("GOOGLE_API_KEY").is_some() =>
                {
                    "GOOGLE_API_KEY"
                }
                _ => var,
            };
            if env.var(var).is_none_or(|v| v.trim().is_empty()) {
                continue;
            }
            let base_url = match kind {
                ProviderKind::Azure => match env.var("AZURE_OPENAI_ENDPOINT") {
                    Some(endpoint) => Some(format!("{}/openai", endpoint.trim_end_matches('/'))),
                    None => continue,
                },
                _ => None,
            };
            providers.insert(
                kind.name().to_owned(),
                ProviderConfig::new(
                    kind,
                    base_url,
                    vec![KeyConfig {
                        value: format!("env:{var}"),
                        weight: 1.0,
                        id: None,
                    }],
                ),
            );
        }
        if let Some(host) = env.var("OLLAMA_HOST").filter(|h| !h.trim().is_empty()) {
            let host = host.trim().trim_end_matches('/');
            let host = if host.contains("://") {
                host.to_owned()
            } else {
                format!("http://{host}")
            };
            providers.insert(
                "ollama".into(),
                ProviderConfig::new(ProviderKind::Ollama, Some(format!("{host}/v1")), Vec::new()),
            );
        }
        // Open mode: no keys needed for a first try, but every request is still costed
        // and recorded in the audit log. The admin API comes up if a token is set.
        let governance = GovernanceConfig {
            mode: Mode::Open,
            database: env
                .var("SLUICE_DATABASE")
                .filter(|d| !d.trim().is_empty())
                .unwrap_or_else(default_database),
            admin_token: env
                .var("SLUICE_ADMIN_TOKEN")
                .is_some()
                .then(|| "env:SLUICE_ADMIN_TOKEN".to_owned()),
            admin_secret_refs: Vec::new(),
            default_output_tokens: default_output_tokens(),
            allow_unpriced_models: Vec::new(),
            audit: Default::default(),
        };
        Config {
            providers,
            governance: Some(governance),
            ..Config::default()
        }
    }

    /// Checks everything and resolves secrets. Returns every problem at once.
    pub fn validate(
        &self,
        env: &dyn Environment,
        source_name: &str,
    ) -> Result<ValidConfig, ConfigError> {
        let mut issues = Vec::new();
        let mut issue = |path: String, message: String| issues.push(ConfigIssue { path, message });

        for (field, zero) in [
            ("header_timeout_ms", self.server.header_timeout_ms == 0),
            ("idle_timeout_ms", self.server.idle_timeout_ms == 0),
            ("body_timeout_ms", self.server.body_timeout_ms == 0),
            ("max_connections", self.server.max_connections == Some(0)),
        ] {
            if zero {
                issue(format!("server.{field}"), "must be greater than 0".into());
            }
        }
        if self.server.max_body_bytes == 0 {
            issue(
                "server.max_body_bytes".into(),
                "must be greater than 0".into(),
            );
        }
        for (field, zero) in [
            ("max_candidates", self.routing.max_candidates == 0),
            ("max_attempts", self.routing.max_attempts == 0),
            ("retry_deadline_ms", self.routing.retry_deadline_ms == 0),
            ("max_response_bytes", self.routing.max_response_bytes == 0),
        ] {
            if zero {
                issue(format!("routing.{field}"), "must be greater than 0".into());
            }
        }
        if self.routing.backoff_base_ms > self.routing.backoff_max_ms {
            issue(
                "routing.backoff_base_ms".into(),
                format!(
                    "{} is greater than routing.backoff_max_ms ({})",
                    self.routing.backoff_base_ms, self.routing.backoff_max_ms
                ),
            );
        }

        let mut providers = Vec::new();
        for (name, p) in &self.providers {
            let at = format!("providers.{name}");
            if !safe_name(name) {
                issue(
                    at.clone(),
                    format!(
                        "`{name}` is not a valid provider name: use letters, digits, `-` and `_` ({MAX_NAME_LEN} at most)"
                    ),
                );
            }
            let base = match p.base_url.as_deref().or(p.kind.default_base_url()) {
                Some(url) => match reqwest::Url::parse(url) {
                    Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
                        Some(u)
                    }
                    Ok(_) => {
                        issue(
                            format!("{at}.base_url"),
                            format!("`{url}` must be an http:// or https:// URL"),
                        );
                        None
                    }
                    Err(e) => {
                        issue(
                            format!("{at}.base_url"),
                            format!("`{url}` is not a URL: {e}"),
                        );
                        None
                    }
                },
                None => {
                    issue(
                        format!("{at}.base_url"),
                        format!("is required for kind `{}`", p.kind.name()),
                    );
                    None
                }
            };
            if p.keys.is_empty() && p.kind.requires_key() {
                issue(
                    format!("{at}.keys"),
                    format!(
                        "at least one key is required for kind `{}`, e.g. keys = [{{ value = \"env:{}\" }}]",
                        p.kind.name(),
                        p.kind.api_key_env().unwrap_or("API_KEY")
                    ),
                );
            }
            let mut keys = Vec::new();
            for (i, k) in p.keys.iter().enumerate() {
                let kat = format!("{at}.keys[{i}]");
                if !(k.weight.is_finite() && k.weight > 0.0) {
                    issue(
                        format!("{kat}.weight"),
                        format!("{} must be a positive number", k.weight),
                    );
                }
                match secret::resolve(&k.value, env) {
                    Ok(s) => keys.push(ResolvedKey {
                        id: k.id.clone().unwrap_or_else(|| format!("key{i}")),
                        secret: Some(s),
                        weight: k.weight,
                    }),
                    Err(m) => issue(format!("{kat}.value"), m),
                }
            }
            if keys.is_empty() && !p.kind.requires_key() {
                keys.push(ResolvedKey {
                    id: "none".into(),
                    secret: None,
                    weight: 1.0,
                });
            }
            let mut headers = Vec::new();
            for (hname, hvalue) in &p.headers {
                match (
                    http::HeaderName::from_bytes(hname.as_bytes()),
                    http::HeaderValue::from_str(hvalue),
                ) {
                    (Ok(n), Ok(v)) => headers.push((n, v)),
                    _ => issue(
                        format!("{at}.headers.{hname}"),
                        "is not a valid HTTP header".into(),
                    ),
                }
            }
            let mut ca_roots = Vec::new();
            if let Some(path) = &p.ca_file {
                match load_ca_file(path) {
                    Ok(roots) => ca_roots = roots,
                    Err(m) => issue(format!("{at}.ca_file"), m),
                }
                if base.as_ref().is_some_and(|u| u.scheme() != "https") {
                    issue(
                        format!("{at}.ca_file"),
                        "applies only to an https:// base_url".into(),
                    );
                }
            }
            for (field, value) in [
                ("connect_timeout_ms", p.connect_timeout_ms),
                ("header_timeout_ms", p.header_timeout_ms),
                ("stream_idle_timeout_ms", p.stream_idle_timeout_ms),
                ("queue_timeout_ms", p.queue_timeout_ms),
            ] {
                if value == Some(0) {
                    issue(format!("{at}.{field}"), "must be greater than 0".into());
                }
            }
            if p.max_concurrency == Some(0) {
                issue(
                    format!("{at}.max_concurrency"),
                    "must be greater than 0".into(),
                );
            }
            if p.health.failure_threshold == 0 {
                issue(
                    format!("{at}.health.failure_threshold"),
                    "must be greater than 0".into(),
                );
            }
            if p.api_version.is_some() && p.kind != ProviderKind::Azure {
                issue(
                    format!("{at}.api_version"),
                    "only applies to kind `azure`".into(),
                );
            }
            if let Some(base_url) = base {
                providers.push(ResolvedProvider {
                    name: name.clone(),
                    kind: p.kind,
                    base_url,
                    keys,
                    models: p.models.clone(),
                    headers,
                    api_version: p
                        .api_version
                        .clone()
                        .unwrap_or_else(|| DEFAULT_AZURE_API_VERSION.into()),
                    ca_roots,
                    connect_timeout: Duration::from_millis(p.connect_timeout_ms.unwrap_or(5_000)),
                    header_timeout: Duration::from_millis(p.header_timeout_ms.unwrap_or(300_000)),
                    stream_idle_timeout: Duration::from_millis(
                        p.stream_idle_timeout_ms.unwrap_or(60_000),
                    ),
                    max_concurrency: p.max_concurrency.unwrap_or(512),
                    max_queue: p.max_queue.unwrap_or(1024),
                    queue_timeout: Duration::from_millis(p.queue_timeout_ms.unwrap_or(10_000)),
                    max_retries: p.max_retries.unwrap_or(self.routing.max_retries),
                    health: p.health.clone(),
                });
            }
        }

        for (name, alias) in &self.aliases {
            let at = format!("aliases.{name}");
            if !alias_name(name) {
                issue(
                    at.clone(),
                    format!(
                        "`{name}` is not a valid alias name: start with a letter or digit, then use letters, digits, `-`, `_` and `.` ({MAX_NAME_LEN} at most)"
                    ),
                );
            }
            if self.providers.contains_key(name) {
                issue(
                    at.clone(),
                    format!("`{name}` is also a provider name; pick another alias name"),
                );
            }
            if alias.targets.is_empty() {
                issue(format!("{at}.targets"), "needs at least one target".into());
            }
            for (i, t) in alias.targets.iter().enumerate() {
                if let Err(m) = self.check_model_ref(&t.model) {
                    issue(format!("{at}.targets[{i}].model"), m);
                }
                if !(t.weight.is_finite() && t.weight > 0.0) {
                    issue(
                        format!("{at}.targets[{i}].weight"),
                        format!("{} must be a positive number", t.weight),
                    );
                }
            }
            for (i, f) in alias.fallbacks.iter().enumerate() {
                if let Err(m) = self.check_model_ref(f) {
                    issue(format!("{at}.fallbacks[{i}]"), m);
                }
            }
        }

        let mut governance = None;
        if let Some(g) = &self.governance {
            let admin_token = match &g.admin_token {
                Some(reference) => match secret::resolve(reference, env) {
                    Ok(t) if t.expose().len() >= 16 => Some(t),
                    Ok(_) => {
                        issue(
                            "governance.admin_token".into(),
                            "must be at least 16 characters".into(),
                        );
                        None
                    }
                    Err(m) => {
                        issue("governance.admin_token".into(), m);
                        None
                    }
                },
                None => None,
            };
            if g.database.trim().is_empty() {
                issue("governance.database".into(), "must name a file".into());
            }
            if let Err(m) = g.audit.resolve_chain_key(env) {
                issue("governance.audit.hmac_key".into(), m);
            }
            if g.audit.channel_capacity == 0 {
                issue(
                    "governance.audit.channel_capacity".into(),
                    "must be greater than 0".into(),
                );
            }
            governance = Some(ResolvedGovernance {
                config: g.clone(),
                admin_token,
            });
        }
        for (model, price) in &self.prices {
            for (field, v) in [
                ("input", Some(price.input)),
                ("output", Some(price.output)),
                ("cached_input", price.cached_input),
            ] {
                if let Some(v) = v.filter(|v| !(v.is_finite() && *v >= 0.0)) {
                    issue(
                        format!("prices.\"{model}\".{field}"),
                        format!("{v} must be a non-negative number"),
                    );
                }
            }
        }

        // Compiled here, once, so that a bad regex stops the gateway at start (and
        // `check-config` reports it) instead of at the first request.
        let guardrails = match self.guardrails.as_ref().map(CompiledPolicy::compile) {
            None => None,
            Some(Ok(policy)) => Some(Arc::new(policy)),
            Some(Err(e)) => {
                let (path, message) = match e {
                    PolicyError::Regex {
                        path,
                        rule,
                        regex,
                        reason,
                    } => (
                        path,
                        format!("rule `{rule}`: regex `{regex}` does not compile: {reason}"),
                    ),
                    PolicyError::Invalid { path, message } => (path, message),
                };
                issue(format!("guardrails.{path}"), message);
                None
            }
        };

        if issues.is_empty() {
            Ok(ValidConfig {
                guardrails,
                raw: self.clone(),
                source_name: source_name.to_owned(),
                governance,
                prices: self.prices.clone(),
                server: self.server.clone(),
                routing: self.routing.clone(),
                providers,
                aliases: self.aliases.clone(),
            })
        } else {
            Err(ConfigError {
                source_name: source_name.to_owned(),
                issues,
            })
        }
    }

    fn check_model_ref(&self, model: &str) -> Result<(), String> {
        match model.split_once('/') {
            Some((provider, m)) if !m.is_empty() => {
                if self.providers.contains_key(provider) {
                    Ok(())
                } else {
                    Err(format!(
                        "`{model}` names provider `{provider}`, which is not configured (configured: {})",
                        list_or_none(self.providers.keys())
                    ))
                }
            }
            _ => Err(format!(
                "`{model}` must be `provider/model`, e.g. `openai/gpt-4o-mini`"
            )),
        }
    }
}

/// Longest provider, alias or entity name.
pub const MAX_NAME_LEN: usize = 64;

/// A provider name or an admin-API id: letters, digits, `-` and `_`, 1 to 64 characters.
/// Such names appear in URL paths (`/api/v1/providers/{name}`), model strings
/// (`name/model`), metric labels and audit records, so they carry nothing that a path,
/// a parser or a log reader could read as structure.
pub fn safe_name(name: &str) -> bool {
    (1..=MAX_NAME_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_'))
}

/// An alias name: as [`safe_name`], and dots after the first character (`gpt-4.1-fast`).
pub fn alias_name(name: &str) -> bool {
    (1..=MAX_NAME_LEN).contains(&name.len())
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// `a, b, c` or `none`.
pub fn list_or_none<'a>(items: impl Iterator<Item = &'a String>) -> String {
    let v: Vec<&str> = items.map(String::as_str).collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}
