//! `[governance]`: virtual keys, budgets, limits and the audit log.

use serde::Deserialize;

/// `open` or `enforce` (see [`GovernanceConfig::mode`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Open,
    #[default]
    Enforce,
}

/// `[governance]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GovernanceConfig {
    /// `enforce` (default): every request needs a valid virtual key. `open`: requests
    /// without a key are served and recorded anonymously; a presented key is still
    /// enforced.
    #[serde(default)]
    pub mode: Mode,
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
    pub audit: super::audit::AuditConfig,
}

pub(super) fn default_database() -> String {
    "sluice.db".into()
}
pub(super) fn default_output_tokens() -> u64 {
    4096
}
