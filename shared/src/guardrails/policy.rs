//! The guardrail policy as an admin writes it (TOML or JSON), and the errors that
//! [`crate::guardrails::CompiledPolicy::compile`] reports for it. Every struct denies
//! unknown fields: a misspelt `acton = "block"` must fail loudly, not silently allow.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::hook::ExternalHookConfig;
use super::model::{Action, Direction, ScopeFilter, Severity};
use super::validators::Validator;

/// A complete guardrail policy. The default enables every built-in detector with its
/// default action.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Changes to built-in detectors, by id (`email`, `aws_access_key`,
    /// `prompt_injection`, …).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub detectors: BTreeMap<String, DetectorOverride>,
    /// The organisation's own rules: regexes and keyword lists.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<CustomRule>,
    #[serde(default)]
    pub injection: InjectionSettings,
    /// A customer's HTTP classifier, called by the gateway (this crate does no I/O).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_hook: Option<ExternalHookConfig>,
    #[serde(default)]
    pub stream: StreamSettings,
}

/// What a policy may change about a built-in detector; unset fields keep the default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectorOverride {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<Direction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<ScopeFilter>,
}

/// A named regex or keyword list from the policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomRule {
    /// Lowercase letters, digits, `_` and `-`; it appears in placeholders
    /// (`[REDACTED:project_codename_1]`), audit and metrics.
    pub id: String,
    /// What the rule finds, shown to a blocked user ("an internal project code name").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// A regex in the `regex` crate's syntax. A group named `value` limits redaction to
    /// that group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    /// Literal words or phrases; matched as whole words unless `whole_word = false`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keywords: Vec<String>,
    #[serde(default)]
    pub case_insensitive: bool,
    #[serde(default = "yes")]
    pub whole_word: bool,
    /// A checksum or structural check each match must pass (`luhn`, `mod97`, …); this
    /// is how a policy adds a national identifier without code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validator: Option<Validator>,
    #[serde(default = "medium")]
    pub severity: Severity,
    pub action: Action,
    #[serde(default)]
    pub direction: Direction,
    #[serde(default, skip_serializing_if = "ScopeFilter::is_everything")]
    pub scope: ScopeFilter,
    /// What a blocked user should do instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

fn medium() -> Severity {
    Severity::Medium
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InjectionSettings {
    /// Score in [0, 1] at or above which `prompt_injection` fires.
    #[serde(default = "default_threshold")]
    pub threshold: f32,
}

impl Default for InjectionSettings {
    fn default() -> Self {
        InjectionSettings {
            threshold: default_threshold(),
        }
    }
}

fn default_threshold() -> f32 {
    super::injection::DEFAULT_THRESHOLD
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamSettings {
    /// How long a streamed match may grow for a custom regex whose length is
    /// unbounded (`secret-.*`): the stream holds back at most this many bytes for it.
    /// Bounded regexes hold back only what they can still match.
    #[serde(default = "default_holdback")]
    pub max_holdback_bytes: usize,
}

impl Default for StreamSettings {
    fn default() -> Self {
        StreamSettings {
            max_holdback_bytes: default_holdback(),
        }
    }
}

fn default_holdback() -> usize {
    256
}

/// Why a policy cannot be used. `path` names the place in the policy
/// (`rules[2]`, `detectors.emial`) so the admin can find it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("guardrails {path} (rule `{rule}`): regex `{regex}` does not compile: {reason}")]
    Regex {
        path: String,
        rule: String,
        regex: String,
        reason: String,
    },
    #[error("guardrails {path}: {message}")]
    Invalid { path: String, message: String },
}

impl PolicyError {
    pub(crate) fn invalid(path: impl Into<String>, message: impl Into<String>) -> Self {
        PolicyError::Invalid {
            path: path.into(),
            message: message.into(),
        }
    }
}
