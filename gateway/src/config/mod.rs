//! Gateway configuration: TOML with a schema.
//!
//! Parsing rejects unknown keys (`deny_unknown_fields`, so a typo is an error, not a
//! silently ignored setting); [`Config::validate`] then checks what types cannot (URLs,
//! references between providers and aliases, weights, secrets) and reports every problem
//! with its TOML path. Without a config file, [`Config::from_environment`] builds one
//! from the usual API-key variables.
//!
//! Every key is documented on its field below and in README.md ("Configuration").

mod env;

use std::collections::BTreeMap;

use indexmap::IndexMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use serde::Deserialize;

pub use env::{Environment, MapEnv, ProcessEnv};

use sluice_shared::guardrails::{CompiledPolicy, PolicyError};

use crate::providers::kind::{ALL_KINDS, ProviderKind};
use crate::secret::{self, Secret};

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub routing: RoutingConfig,
    /// `[providers.NAME]`: NAME is what model strings use (`NAME/model`). Kept in the
    /// file's order: a bare model name that no provider lists goes to the first provider
    /// of the surface's protocol (providers added through the admin API come after the
    /// file's).
    #[serde(default)]
    pub providers: IndexMap<String, ProviderConfig>,
    /// `[aliases.NAME]`: a model name clients may use instead of `provider/model`.
    #[serde(default)]
    pub aliases: BTreeMap<String, AliasConfig>,
    /// `[governance]`: virtual keys, budgets, rate limits and the audit log. Without this
    /// section the gateway only routes (no keys, no audit).
    #[serde(default)]
    pub governance: Option<GovernanceConfig>,
    /// `[prices."provider/model"]` or `[prices."model"]`: dollars per 1M tokens
    /// (`input`, `output`, `cached_input`), overriding the shipped price table.
    #[serde(default)]
    pub prices: BTreeMap<String, crate::governance::pricing::Price>,
    /// `[guardrails]`: the guardrail policy — secrets, personal data, custom rules,
    /// prompt-injection heuristics and an optional external classifier — applied to
    /// every request and answer (see [`sluice_shared::guardrails::Policy`] for every key).
    /// Without this section no guardrail runs and requests pay nothing for them. With an
    /// empty section every built-in detector runs with its default action. The keys:
    ///
    /// * `[guardrails.detectors.ID]` — change a built-in detector (`email`,
    ///   `aws_access_key`, `prompt_injection`, …): `enabled`, `action` (`block`,
    ///   `redact`, `warn`, `log`), `severity`, `direction` (`input`, `output`, `both`),
    ///   `scope` (`{ org = [..], team = [..], key = [..], app = [..] }`);
    /// * `[[guardrails.rules]]` — the organisation's own rules: `id`, `regex` or
    ///   `keywords`, `action`, and optionally `description`, `message` (what a blocked
    ///   user should do instead), `case_insensitive`, `whole_word`, `validator`,
    ///   `severity`, `direction`, `scope`, `enabled`;
    /// * `[guardrails.injection] threshold` — prompt-injection score (0, 1] that fires;
    /// * `[guardrails.external_hook]` — `url`, `timeout_ms`, `fail_open`, `action`,
    ///   `direction`, `scope`: a customer's HTTP classifier, called on request text;
    /// * `[guardrails.stream] max_holdback_bytes` — how far a streamed match of an
    ///   unbounded custom regex may grow before it is released.
    #[serde(default)]
    pub guardrails: Option<sluice_shared::guardrails::Policy>,
}

/// `[governance]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GovernanceConfig {
    /// `enforce` (default): every request needs a valid virtual key. `open`: requests
    /// without a key are served and recorded anonymously; a presented key is still
    /// enforced.
    #[serde(default)]
    pub mode: crate::governance::Mode,
    /// SQLite database file (created if missing). Default `sluice.db`.
    #[serde(default = "default_database")]
    pub database: String,
    /// Bearer token for `/api/v1` (a secret reference: `env:SLUICE_ADMIN_TOKEN`). Without
    /// it the admin API answers 404.
    #[serde(default)]
    pub admin_token: Option<String>,
    /// The secret references that providers created or replaced through the admin API
    /// (`PUT /api/v1/providers/NAME`) may use in `keys` and `ca_file`, as patterns where
    /// `*` matches any run of characters: `["env:OPENAI_API_KEY*", "file:/run/secrets/sluice/*"]`.
    /// Default: none, so the admin API can define key-less providers only, and a stolen
    /// admin token cannot make the gateway read the admin token, a database password or
    /// any file. A `file:` path must be absolute and may not contain `..`; `ca_file`
    /// is matched as `file:PATH`. Resolution errors for API-defined providers do not say
    /// whether a variable or file exists.
    #[serde(default)]
    pub admin_secret_refs: Vec<String>,
    /// Output tokens assumed, when a request sets no `max_tokens`, to estimate its cost
    /// before it runs. Default 4096.
    #[serde(default = "default_output_tokens")]
    pub default_output_tokens: u64,
    /// `provider/model` patterns (`*` matches any run of characters: `ollama/*`) that may
    /// be served without a price when a budget applies to the caller. Any other model
    /// without a price (in `[prices]` or the shipped table) is refused under a budget,
    /// since its spend could not be counted; give it a price instead where you can.
    /// Default: none.
    #[serde(default)]
    pub allow_unpriced_models: Vec<String>,
    #[serde(default)]
    pub audit: crate::governance::audit::AuditConfig,
}

fn default_database() -> String {
    "sluice.db".into()
}
fn default_output_tokens() -> u64 {
    4096
}

/// `[server]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on. Default `127.0.0.1:8080`; port 0 picks a free port (the
    /// chosen address is printed as `listening on http://…`).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Largest request body accepted, in bytes. Default 32 MiB (room for a few base64
    /// images); larger bodies get a 413 in the caller's API shape.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// On SIGTERM/Ctrl-C, how long in-flight requests (streams included) may take to
    /// finish before the process exits. Default 30.
    #[serde(default = "default_shutdown_grace_secs")]
    pub shutdown_grace_secs: u64,
    /// Time a client has to send a complete request head (request line and headers, or
    /// an HTTP/2 stream's headers), counted from its first byte. Slower connections are
    /// closed. Default 10000 ms.
    #[serde(default = "default_header_timeout_ms")]
    pub header_timeout_ms: u64,
    /// How long a keep-alive connection with no request in flight is kept without a byte
    /// from the client; also the longest a response may wait for a client that does not
    /// read it. A request waiting on a provider is not idle. Default 60000 ms.
    #[serde(default = "default_idle_timeout_ms")]
    pub idle_timeout_ms: u64,
    /// Time a request's body has to arrive completely, from its head; slower bodies get
    /// a 408 in the API's error shape. Default 60000 ms.
    #[serde(default = "default_body_timeout_ms")]
    pub body_timeout_ms: u64,
    /// Client connections open at once. Past it, a new connection is answered with a
    /// 503 (`x-sluice-error: saturated`) and closed, so the gateway keeps file
    /// descriptors for the connections it serves and for its providers. Default: three
    /// quarters of the process's open-file limit (raised to its hard limit at start),
    /// at most 65536.
    #[serde(default)]
    pub max_connections: Option<usize>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: default_listen(),
            max_body_bytes: default_max_body_bytes(),
            shutdown_grace_secs: default_shutdown_grace_secs(),
            header_timeout_ms: default_header_timeout_ms(),
            idle_timeout_ms: default_idle_timeout_ms(),
            body_timeout_ms: default_body_timeout_ms(),
            max_connections: None,
        }
    }
}

fn default_header_timeout_ms() -> u64 {
    10_000
}
fn default_idle_timeout_ms() -> u64 {
    60_000
}
fn default_body_timeout_ms() -> u64 {
    60_000
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_max_body_bytes() -> usize {
    32 * 1024 * 1024
}
fn default_shutdown_grace_secs() -> u64 {
    30
}

/// `[routing]`: retry policy shared by every provider (each may override `max_retries`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingConfig {
    /// Retries per target after the first attempt, on connect errors, timeouts, 408,
    /// 429 and 5xx. Default 2. After the last retry the next fallback target is tried.
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// First backoff delay; doubles each retry, with full jitter. Default 100 ms.
    #[serde(default = "default_backoff_base_ms")]
    pub backoff_base_ms: u64,
    /// Cap on one backoff delay. Default 2000 ms.
    #[serde(default = "default_backoff_max_ms")]
    pub backoff_max_ms: u64,
    /// A `Retry-After` longer than this is not waited for: the next target is tried
    /// instead. Default 30 s.
    #[serde(default = "default_max_retry_after_secs")]
    pub max_retry_after_secs: u64,
    /// Most targets one request may try: the routed model, its alias's targets and
    /// fallbacks, and the request's own `fallbacks` (after duplicates are dropped). A
    /// request that names more fallbacks than this is refused with a 400; an alias that
    /// expands to more is cut at this many. Default 16.
    #[serde(default = "default_max_candidates")]
    pub max_candidates: usize,
    /// Most provider calls one request may make, over all its targets, retries and key
    /// rotations: a request with many fallbacks to failing providers cannot turn into
    /// hundreds of upstream calls. Default 10.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// No retry or fallback attempt starts later than this after the request arrived
    /// (an attempt already running is not cut short; its own timeouts bound it), and a
    /// backoff never sleeps past it. Default 120000 ms.
    #[serde(default = "default_retry_deadline_ms")]
    pub retry_deadline_ms: u64,
    /// Largest complete (non-streamed) answer read from a provider, in bytes. A larger
    /// one is refused with a 502 that says so (no retry: it would be as large again).
    /// Streams are passed on event by event and are not limited by this. Default 32 MiB,
    /// room for an embeddings batch of about a thousand 3072-dimension vectors as JSON.
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: usize,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        RoutingConfig {
            max_retries: default_max_retries(),
            backoff_base_ms: default_backoff_base_ms(),
            backoff_max_ms: default_backoff_max_ms(),
            max_retry_after_secs: default_max_retry_after_secs(),
            max_candidates: default_max_candidates(),
            max_attempts: default_max_attempts(),
            retry_deadline_ms: default_retry_deadline_ms(),
            max_response_bytes: default_max_response_bytes(),
        }
    }
}

fn default_max_retries() -> u32 {
    2
}
fn default_backoff_base_ms() -> u64 {
    100
}
fn default_backoff_max_ms() -> u64 {
    2000
}
fn default_max_retry_after_secs() -> u64 {
    30
}
fn default_max_candidates() -> usize {
    16
}
fn default_max_attempts() -> u32 {
    10
}
fn default_retry_deadline_ms() -> u64 {
    120_000
}
fn default_max_response_bytes() -> usize {
    32 * 1024 * 1024
}

/// `[providers.NAME]`
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// Which API the provider speaks: openai, azure, anthropic, gemini, mistral, groq,
    /// together, deepseek, openrouter, xai, fireworks, ollama, vllm, openai-compatible.
    pub kind: ProviderKind,
    /// Overrides the kind's public endpoint. Required for `azure`
    /// (`https://RESOURCE.openai.azure.com/openai`) and `openai-compatible`.
    #[serde(default)]
    pub base_url: Option<String>,
    /// API keys, chosen by weight; a key that fails is rotated out for a while.
    #[serde(default)]
    pub keys: Vec<KeyConfig>,
    /// Models listed by `GET /v1/models` as `NAME/model`, and matched when a client sends
    /// a bare model name (see README "Model names").
    #[serde(default)]
    pub models: Vec<String>,
    /// Extra headers sent with every request to this provider (e.g. OpenRouter's
    /// `HTTP-Referer`). Not secret: use `keys` for credentials.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Azure only: the `api-version` query parameter. Default `2024-10-21`.
    #[serde(default)]
    pub api_version: Option<String>,
    /// A PEM file of CA certificates to trust for this provider in addition to the
    /// operating system's trust store: a self-hosted endpoint (vLLM, Ollama, an internal
    /// proxy) whose certificate an internal CA issued. Only for an `https://` base URL;
    /// read when the configuration is loaded.
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
    /// Time allowed to open a connection: DNS, TCP and the TLS handshake together.
    /// Default 5000 ms.
    #[serde(default)]
    pub connect_timeout_ms: Option<u64>,
    /// Time allowed from sending the request to receiving response headers. For
    /// non-streamed requests providers send headers only when the answer is complete, so
    /// this bounds the whole generation. Default 300000 ms (5 min).
    #[serde(default)]
    pub header_timeout_ms: Option<u64>,
    /// Longest silence allowed between two reads of a response body (stream events or
    /// body bytes). Before the first event reaches the client this triggers a retry or
    /// fallback; after it, the stream ends with an error event. Default 60000 ms.
    #[serde(default)]
    pub stream_idle_timeout_ms: Option<u64>,
    /// Requests in flight to this provider at once. Default 512.
    #[serde(default)]
    pub max_concurrency: Option<usize>,
    /// Requests allowed to wait for a free slot when `max_concurrency` is reached; beyond
    /// that a request moves to its next fallback or gets a 503. Default 1024.
    #[serde(default)]
    pub max_queue: Option<usize>,
    /// Longest wait in that queue. Default 10000 ms.
    #[serde(default)]
    pub queue_timeout_ms: Option<u64>,
    /// Overrides `routing.max_retries` for this provider.
    #[serde(default)]
    pub max_retries: Option<u32>,
    /// Taking failing keys out of rotation.
    #[serde(default)]
    pub health: HealthConfig,
}

/// `keys = [{ value = "env:…", weight = 1.0, id = "primary" }]`
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// `env:VAR` or `file:/path`. Literal keys are refused.
    pub value: String,
    /// Relative share of traffic. Default 1.0.
    #[serde(default = "default_weight")]
    pub weight: f64,
    /// A name for logs, metrics and audit records. Default `key<N>`.
    #[serde(default)]
    pub id: Option<String>,
}

fn default_weight() -> f64 {
    1.0
}

/// `[providers.NAME.health]`
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    /// Consecutive failures (connect errors, timeouts, 5xx) that take a key out of
    /// rotation. Default 5. A 401/403 takes it out at once; a 429 for its Retry-After.
    #[serde(default = "default_failure_threshold")]
    pub failure_threshold: u32,
    /// How long a key stays out the first time; doubles each time it trips again, up to
    /// `max_cooldown_ms`. Default 5000 ms.
    #[serde(default = "default_cooldown_ms")]
    pub cooldown_ms: u64,
    /// Default 300000 ms.
    #[serde(default = "default_max_cooldown_ms")]
    pub max_cooldown_ms: u64,
    /// After a cooldown the key's share of traffic ramps from 10 % back to full over this
    /// long. Default 30000 ms.
    #[serde(default = "default_ramp_ms")]
    pub ramp_ms: u64,
}

impl Default for HealthConfig {
    fn default() -> Self {
        HealthConfig {
            failure_threshold: default_failure_threshold(),
            cooldown_ms: default_cooldown_ms(),
            max_cooldown_ms: default_max_cooldown_ms(),
            ramp_ms: default_ramp_ms(),
        }
    }
}

fn default_failure_threshold() -> u32 {
    5
}
fn default_cooldown_ms() -> u64 {
    5_000
}
fn default_max_cooldown_ms() -> u64 {
    300_000
}
fn default_ramp_ms() -> u64 {
    30_000
}

/// `[aliases.NAME]`
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct AliasConfig {
    /// Weighted `provider/model` targets; one is picked per request, the others become
    /// its first fallbacks.
    pub targets: Vec<AliasTarget>,
    /// `provider/model` strings tried, in order, after every target has failed.
    #[serde(default)]
    pub fallbacks: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct AliasTarget {
    pub model: String,
    #[serde(default = "default_weight")]
    pub weight: f64,
}

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
    pub prices: BTreeMap<String, crate::governance::pricing::Price>,
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
            mode: crate::governance::Mode::Open,
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

impl ProviderConfig {
    /// A provider with every optional setting at its default.
    pub fn new(kind: ProviderKind, base_url: Option<String>, keys: Vec<KeyConfig>) -> Self {
        ProviderConfig {
            kind,
            base_url,
            keys,
            models: Vec::new(),
            headers: BTreeMap::new(),
            api_version: None,
            ca_file: None,
            connect_timeout_ms: None,
            header_timeout_ms: None,
            stream_idle_timeout_ms: None,
            max_concurrency: None,
            max_queue: None,
            queue_timeout_ms: None,
            max_retries: None,
            health: HealthConfig::default(),
        }
    }
}

/// Reads a provider's `ca_file`: every certificate in a PEM file.
fn load_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject as _;
    let shown = path.display();
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read `{shown}`: {e}"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("`{shown}` is not a PEM certificate file: {e}"))?;
    if certs.is_empty() {
        return Err(format!(
            "`{shown}` holds no certificate (expected PEM blocks starting with -----BEGIN CERTIFICATE-----)"
        ));
    }
    Ok(certs)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn validate(text: &str, env: &MapEnv) -> Result<ValidConfig, ConfigError> {
        Config::from_toml(text, "test.toml")?.validate(env, "test.toml")
    }

    #[test]
    fn example_file_is_valid() {
        let text = include_str!("../../../sluice.example.toml");
        let env = MapEnv::new([
            ("OPENAI_API_KEY", "a"),
            ("OPENAI_API_KEY_2", "b"),
            ("ANTHROPIC_API_KEY", "c"),
            ("GEMINI_API_KEY", "d"),
        ]);
        let cfg = validate(text, &env).unwrap();
        assert!(cfg.providers.iter().any(|p| p.name == "anthropic"));

        // The commented guardrails example is valid once uncommented.
        let start = text.find("# [guardrails]\n").unwrap();
        let guardrails: String = text[start..]
            .lines()
            .map(|l| l.strip_prefix("# ").unwrap_or(l.trim_start_matches('#')))
            .map(|l| format!("{l}\n"))
            .collect();
        let cfg = validate(&format!("{text}\n{guardrails}"), &env).unwrap();
        let policy = cfg.guardrails.unwrap();
        assert!(policy.rules().any(|r| r.id.as_str() == "project_codename"));
        assert!(policy.external_hook().is_some());
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_name() {
        let err = validate(
            "[server]\nlisten = \"127.0.0.1:1\"\nlisen = 1\n",
            &MapEnv::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("lisen"), "{err}");
    }

    #[test]
    fn every_issue_is_reported_with_its_path() {
        let text = r#"
[providers.openai]
kind = "openai"
keys = [{ value = "sk-literal", weight = -1 }]

[providers.azure]
kind = "azure"
keys = [{ value = "env:AZ" }]

[aliases.default]
targets = [{ model = "nope/gpt" }, { model = "gpt-4o" }]
"#;
        let err = validate(text, &MapEnv::new([("AZ", "x")])).unwrap_err();
        let paths: Vec<&str> = err.issues.iter().map(|i| i.path.as_str()).collect();
        assert!(
            paths.contains(&"providers.openai.keys[0].weight"),
            "{paths:?}"
        );
        assert!(
            paths.contains(&"providers.openai.keys[0].value"),
            "{paths:?}"
        );
        assert!(paths.contains(&"providers.azure.base_url"), "{paths:?}");
        assert!(
            paths.contains(&"aliases.default.targets[0].model"),
            "{paths:?}"
        );
        assert!(
            paths.contains(&"aliases.default.targets[1].model"),
            "{paths:?}"
        );
        assert!(
            !err.to_string().contains("sk-literal"),
            "secrets are never echoed"
        );
    }

    #[test]
    fn guardrails_compile_at_load_and_errors_name_their_path() {
        let env = MapEnv::default();
        assert!(validate("", &env).unwrap().guardrails.is_none());
        let ok = validate(
            "[guardrails.detectors.email]\naction = \"block\"\n\n[[guardrails.rules]]\nid = \"codename\"\nkeywords = [\"bluebird\"]\naction = \"redact\"\n",
            &env,
        )
        .unwrap();
        assert!(ok.guardrails.is_some());

        let err = validate(
            "[[guardrails.rules]]\nid = \"codename\"\nregex = \"(unclosed\"\naction = \"block\"\n",
            &env,
        )
        .unwrap_err();
        assert_eq!(err.issues[0].path, "guardrails.rules[0]", "{err}");
        assert!(err.to_string().contains("codename"), "{err}");

        let err = validate("[guardrails.detectors.emial]\naction = \"block\"\n", &env).unwrap_err();
        assert_eq!(err.issues[0].path, "guardrails.detectors.emial", "{err}");

        let err = validate("[guardrails.detectors.email]\nacton = \"block\"\n", &env).unwrap_err();
        assert!(err.to_string().contains("acton"), "{err}");
    }

    #[test]
    fn ca_file_is_read_at_load_and_errors_name_their_path() {
        let env = MapEnv::default();
        let dir = tempfile::tempdir().unwrap();
        let provider = |base: &str, file: &std::path::Path| {
            format!(
                "[providers.local]\nkind = \"vllm\"\nbase_url = \"{base}\"\nca_file = \"{}\"\n",
                file.display()
            )
        };
        let missing = dir.path().join("missing.pem");
        let err = validate(&provider("https://vllm.internal/v1", &missing), &env).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("providers.local.ca_file") && text.contains("cannot read"),
            "{text}"
        );

        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not a certificate\n").unwrap();
        let text = validate(&provider("https://vllm.internal/v1", &garbage), &env)
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("providers.local.ca_file") && text.contains("holds no certificate"),
            "{text}"
        );

        // A well-formed PEM block is loaded (whether it is a usable root is the TLS
        // client's check when the provider is built).
        let pem = dir.path().join("ca.pem");
        std::fs::write(
            &pem,
            "-----BEGIN CERTIFICATE-----\nMAMCAQA=\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let cfg = validate(&provider("https://vllm.internal/v1", &pem), &env).unwrap();
        assert_eq!(cfg.providers[0].ca_roots.len(), 1);

        let text = validate(&provider("http://vllm.internal/v1", &pem), &env)
            .unwrap_err()
            .to_string();
        assert!(
            text.contains("applies only to an https:// base_url"),
            "{text}"
        );
    }

    #[test]
    fn zero_config_picks_up_key_variables() {
        let env = MapEnv::new([
            ("OPENAI_API_KEY", "a"),
            ("GOOGLE_API_KEY", "g"),
            ("AZURE_OPENAI_API_KEY", "z"),
            ("OLLAMA_HOST", "127.0.0.1:11434"),
        ]);
        let cfg = Config::from_environment(&env);
        let names: Vec<&String> = cfg.providers.keys().collect();
        assert_eq!(
            names,
            vec!["openai", "gemini", "ollama"],
            "azure needs its endpoint too; the order is the kinds' order"
        );
        let valid = cfg.validate(&env, "environment").unwrap();
        let gemini = valid.providers.iter().find(|p| p.name == "gemini").unwrap();
        assert_eq!(gemini.keys[0].secret.as_ref().unwrap().expose(), "g");
        assert_eq!(valid.server.listen.to_string(), "127.0.0.1:8080");
    }
}
