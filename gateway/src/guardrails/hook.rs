//! The external classifier: a customer's HTTP service asked to judge a request's text.
//! The engine in `shared` fixes the JSON both sides exchange and what a result or a
//! failure means ([`hook_decision`]); this is the call itself.

use std::time::Duration;

use sluice_shared::guardrails::{
    Action, ClassifierRequest, ClassifierResponse, Decision, Direction, ExternalHookConfig,
    GuardTarget, Scope, TextSlot, hook_decision,
};

use crate::error::error_chain;

/// Largest classifier answer read; the answer is a verdict, not a document.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// The configured classifier and the one HTTP client used to call it (pooled
/// connections; the policy's `timeout_ms` bounds each whole call).
#[derive(Debug)]
pub struct ClassifierHook {
    config: ExternalHookConfig,
    client: reqwest::Client,
}

/// What the classifier decided about a request.
#[derive(Debug)]
pub struct HookVerdict {
    pub decision: Decision,
    /// For a block: the message for the user.
    pub block_message: Option<String>,
}

impl ClassifierHook {
    pub fn new(config: ExternalHookConfig) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.timeout_ms))
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .user_agent(concat!("sluice-gateway/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(ClassifierHook { config, client })
    }

    /// Whether the policy sends text of `direction` from `scope` to the classifier.
    pub fn applies(&self, direction: Direction, scope: &Scope<'_>) -> bool {
        self.config.direction.covers(direction) && self.config.scope.matches(scope)
    }

    /// Sends every text field of `target` and interprets the answer; `None` when there
    /// is nothing to record (not flagged). A failure (timeout, connection error, non-2xx,
    /// bad JSON) follows the policy's `fail_open`.
    pub async fn judge<T: GuardTarget>(
        &self,
        target: &mut T,
        scope: &Scope<'_>,
        model: &str,
    ) -> Option<HookVerdict> {
        let mut texts = Vec::new();
        target.visit_texts(&mut |slot| match slot {
            TextSlot::Text(s) | TextSlot::JsonText(s) => texts.push(s.clone()),
            TextSlot::Json(v) => texts.push(v.to_string()),
        });
        let request = ClassifierRequest {
            direction: T::DIRECTION,
            texts,
            org: scope.org.map(str::to_owned),
            team: scope.team.map(str::to_owned),
            key: scope.key.map(str::to_owned),
            app: scope.app.map(str::to_owned),
            model: (!model.is_empty()).then(|| model.to_owned()),
        };
        let answer = self.call(&request).await;
        if let Err(reason) = &answer {
            tracing::warn!(url = %self.config.url, %reason, fail_open = self.config.fail_open, "guardrail classifier call failed");
        }
        let (mut decision, mut block_message) =
            hook_decision(&self.config, answer.as_ref().map_err(String::as_str))?;
        if decision.action == Action::Redact {
            // A classifier judges the whole text and says nothing about which bytes to
            // replace, so "redact" cannot be carried out; refusing is the safe reading.
            decision.action = Action::Block;
            block_message = Some(
                "Sluice blocked this request: the organisation's content classifier flagged it. Rephrase the request or ask your administrator.".into(),
            );
        }
        Some(HookVerdict {
            decision,
            block_message,
        })
    }

    async fn call(&self, request: &ClassifierRequest) -> Result<ClassifierResponse, String> {
        let response = self
            .client
            .post(&self.config.url)
            .json(request)
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    format!("no answer within {} ms", self.config.timeout_ms)
                } else {
                    error_chain(&e)
                }
            })?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("it answered HTTP {}", status.as_u16()));
        }
        let body = response.bytes().await.map_err(|e| error_chain(&e))?;
        if body.len() > MAX_ANSWER_BYTES {
            return Err(format!(
                "its answer is larger than {MAX_ANSWER_BYTES} bytes"
            ));
        }
        serde_json::from_slice(&body).map_err(|e| format!("its answer is not valid JSON: {e}"))
    }
}
