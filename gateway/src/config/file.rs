//! The configuration file as written: the root table and `[prices]` entries.

use std::collections::BTreeMap;

use indexmap::IndexMap;
use serde::Deserialize;

use super::governance::GovernanceConfig;
use super::provider::ProviderConfig;
use super::routing::{AliasConfig, RoutingConfig};
use super::server::ServerConfig;

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
    pub prices: BTreeMap<String, Price>,
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

/// Dollars per one million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub input: f64,
    pub output: f64,
    /// Defaults to `input` when the provider has no cache discount.
    #[serde(default)]
    pub cached_input: Option<f64>,
}
