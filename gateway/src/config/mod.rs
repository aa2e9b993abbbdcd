//! Gateway configuration: TOML with a schema.
//!
//! Parsing rejects unknown keys (`deny_unknown_fields`, so a typo is an error, not a
//! silently ignored setting); [`Config::validate`] then checks what types cannot (URLs,
//! references between providers and aliases, weights, secrets) and reports every problem
//! with its TOML path. Without a config file, [`Config::from_environment`] builds one
//! from the usual API-key variables.
//!
//! Every key is documented on its field below and in README.md ("Configuration").

mod audit;
mod file;
mod governance;
pub mod kind;
mod provider;
mod routing;
mod server;
#[cfg(test)]
mod tests;
mod validate;

pub use audit::{AuditConfig, Durability};
pub use file::{Config, Price};
pub use governance::{GovernanceConfig, Mode};
pub use provider::{HealthConfig, KeyConfig, ProviderConfig};
pub use routing::{AliasConfig, AliasTarget, RoutingConfig};
pub use server::ServerConfig;
pub use validate::{
    ConfigError, ConfigIssue, DEFAULT_AZURE_API_VERSION, MAX_NAME_LEN, ResolvedGovernance,
    ResolvedKey, ResolvedProvider, ValidConfig, alias_name, list_or_none, safe_name,
};
