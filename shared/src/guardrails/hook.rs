//! The external classifier hook: a customer's HTTP service that judges a text. The call
//! is I/O, so the gateway makes it; this module fixes the configuration, the JSON both
//! sides exchange, and what a result (or a failure) means, so the gateway and the edge
//! agent agree on fail-open and fail-closed.

use serde::{Deserialize, Serialize};

use super::model::{Action, Decision, DetectorKind, Direction, RuleId, ScopeFilter, Severity};

/// The id under which the hook's decisions are reported.
pub const HOOK_RULE_ID: &str = "external_classifier";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalHookConfig {
    /// `https://…` endpoint that accepts a [`ClassifierRequest`] as a JSON POST.
    pub url: String,
    /// Budget for the whole call; a slower answer counts as a failure.
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// On timeout or error: `true` lets the text through (logged), `false` blocks it.
    #[serde(default)]
    pub fail_open: bool,
    /// What a `flagged` answer does when the classifier names no action.
    #[serde(default = "default_action")]
    pub action: Action,
    #[serde(default)]
    pub direction: Direction,
    #[serde(default, skip_serializing_if = "ScopeFilter::is_everything")]
    pub scope: ScopeFilter,
}

fn default_timeout() -> u64 {
    300
}

fn default_action() -> Action {
    Action::Block
}

/// The body sent to the classifier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassifierRequest {
    pub direction: Direction,
    /// Every text field of the request or answer, in order.
    pub texts: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

/// The classifier's answer. Unknown fields are ignored so the customer can return more.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassifierResponse {
    pub flagged: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub categories: Vec<String>,
    /// Overrides the configured action for this answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    /// Shown to a blocked user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// What the gateway does with the hook's result: `None` means "nothing to record".
/// A failure (timeout, connection error, non-2xx, bad JSON) follows `fail_open`.
pub fn hook_decision(
    config: &ExternalHookConfig,
    result: Result<&ClassifierResponse, &str>,
) -> Option<(Decision, Option<String>)> {
    let decision = |action| Decision {
        rule_id: RuleId::new(HOOK_RULE_ID),
        kind: DetectorKind::Custom,
        action,
        severity: Severity::Medium,
        count: 1,
    };
    match result {
        Ok(answer) if answer.flagged => {
            let action = answer.action.unwrap_or(config.action);
            let message = (action == Action::Block).then(|| {
                answer.message.clone().unwrap_or_else(|| {
                    "Sluice blocked this request: the organisation's content classifier flagged it. Rephrase the request or ask your administrator.".to_string()
                })
            });
            Some((decision(action), message))
        }
        Ok(_) => None,
        Err(_) if config.fail_open => Some((decision(Action::Log), None)),
        Err(reason) => Some((
            decision(Action::Block),
            Some(format!(
                "Sluice blocked this request: the organisation's content classifier could not be reached ({reason}) and the policy fails closed. Try again shortly."
            )),
        )),
    }
}
