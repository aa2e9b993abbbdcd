//! Guardrails on the gateway's request path: the shared engine
//! ([`sluice_shared::guardrails`]) applied to what clients send and what models answer.
//!
//! Where each part runs (the whole path is in `engine`'s docs):
//! 1. input — after authentication and parsing, before routing and admission, so a
//!    blocked request reaches no provider and reserves no budget:
//!    [`Guardrails::check_input`] guards the typed request in place (a redaction is what
//!    the provider receives), then asks the external classifier, if the policy has one;
//! 2. output, complete answers — [`Guardrails::check_output`] on the body in the
//!    client's shape, re-encoded only when something changed;
//! 3. output, streams — [`stream::OutputGuard`] over the client's SSE events, holding
//!    back only what a match could still span.
//!
//! Every decision (rule, action, count — never the matched text) goes into the request
//! record, and from there into the audit entry and `sluice_guardrail_decisions_total`.
//! Without a `[guardrails]` section none of this exists: the engine holds `None`.

pub mod hook;
pub mod stream;

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use serde::Serialize;
use serde_json::{Value, json};

use sluice_shared::guardrails::{
    Action, CompiledPolicy, Decision, Direction, GuardOutcome, GuardTarget, ResponsesRequest,
    ResponsesResponse, Scope, TextSlot,
};
use sluice_shared::{anthropic, openai};

use crate::error::{ErrorKind, GatewayError};
use crate::governance::Identity;
pub use crate::record::GuardrailDecision;
use crate::request::{ClientApi, ClientBody, Inbound};
use hook::ClassifierHook;

/// Response header naming what guardrails did to a request that was served:
/// `redacted`, `warned` or `blocked` (an answer replaced), comma-separated when several
/// apply. Streams carry what their output scan did as a final SSE comment instead,
/// since their headers leave before the answer is scanned.
pub const GUARDRAILS_HEADER: &str = "x-sluice-guardrails";

/// The compiled policy and what the gateway needs to apply it. Built once per
/// configuration and shared by every request.
#[derive(Debug)]
pub struct Guardrails {
    pub policy: Arc<CompiledPolicy>,
    hook: Option<ClassifierHook>,
}

/// The scope rules are filtered by, borrowed from the caller's identity.
pub fn scope<'a>(identity: Option<&'a Identity>, app: Option<&'a str>) -> Scope<'a> {
    Scope {
        org: identity.map(|i| i.org_id.as_str()),
        team: identity.map(|i| i.team_id.as_str()),
        key: identity.map(|i| i.key_id.as_str()),
        app,
    }
}

/// Adds `decisions` (one direction) to a record's list.
pub fn record(into: &mut Vec<GuardrailDecision>, decisions: &[Decision], direction: Direction) {
    into.extend(decisions.iter().map(|d| GuardrailDecision {
        rule_id: d.rule_id.clone(),
        action: d.action,
        count: d.count,
        direction,
    }));
}

/// What the gateway did, for [`GUARDRAILS_HEADER`]; `None` when nothing visible happened
/// (no rule fired, or only `log` rules did).
pub fn header_value(actions: impl IntoIterator<Item = Action>) -> Option<HeaderValue> {
    let (mut blocked, mut redacted, mut warned) = (false, false, false);
    for action in actions {
        match action {
            Action::Block => blocked = true,
            Action::Redact => redacted = true,
            Action::Warn => warned = true,
            Action::Log => {}
        }
    }
    let words: Vec<&str> = [
        (blocked, "blocked"),
        (redacted, "redacted"),
        (warned, "warned"),
    ]
    .into_iter()
    .filter_map(|(on, word)| on.then_some(word))
    .collect();
    if words.is_empty() {
        return None;
    }
    HeaderValue::from_str(&words.join(", ")).ok()
}

/// A refused request: 400 in the caller's API shape (`invalid_request_error`, code
/// `guardrail_blocked`). The request itself must change, so a 4xx that SDKs do not
/// retry is right; the message names the rule and what to do instead.
pub fn blocked_error(message: Option<String>) -> GatewayError {
    GatewayError::new(
        ErrorKind::GuardrailBlocked,
        StatusCode::BAD_REQUEST,
        message.unwrap_or_else(|| "Sluice blocked this request by guardrail policy.".into()),
    )
}

/// The request as it now stands (after redaction), for a full-content audit record.
pub fn request_json(body: &ClientBody) -> Option<Bytes> {
    let json = match body {
        ClientBody::Chat(r) => serde_json::to_vec(r),
        ClientBody::Messages(r) => serde_json::to_vec(r),
        ClientBody::Json(m) => serde_json::to_vec(m),
    };
    json.ok().map(Bytes::from)
}

fn observe_scan(direction: &'static str, started: Instant) {
    crate::metrics::guardrail_scan(direction, started.elapsed());
}

/// The text of one answer field, guarded on its own (a Responses stream's final events
/// repeat the text its deltas carried).
pub(crate) struct AnswerText<'a>(pub &'a mut String);

impl GuardTarget for AnswerText<'_> {
    const DIRECTION: Direction = Direction::Output;
    fn visit_texts(&mut self, visit: &mut dyn FnMut(TextSlot<'_>)) {
        visit(TextSlot::Text(self.0));
    }
}

/// One Responses-API output item, guarded like an item of a response's `output`.
pub(crate) fn guard_response_item(
    policy: &CompiledPolicy,
    item: &mut Value,
    scope: &Scope<'_>,
) -> GuardOutcome {
    let mut wrapper = json!({ "output": [item.take()] });
    let outcome = policy.guard(&mut ResponsesResponse(&mut wrapper), scope);
    if let Some(guarded) = wrapper.get_mut("output").and_then(|o| o.get_mut(0)) {
        *item = guarded.take();
    }
    outcome
}

impl Guardrails {
    pub fn new(policy: Arc<CompiledPolicy>) -> Result<Self, reqwest::Error> {
        let hook = match policy.external_hook() {
            Some(config) => Some(ClassifierHook::new(config.clone())?),
            None => None,
        };
        Ok(Guardrails { policy, hook })
    }

    /// Guards the request in place: redactions are applied to `inbound`, so the provider
    /// only ever sees the redacted text. Decisions are added to `decisions`. `Err` is the
    /// block to answer with. Returns whether the request was rewritten.
    pub async fn check_input(
        &self,
        inbound: &mut Inbound,
        scope: &Scope<'_>,
        decisions: &mut Vec<GuardrailDecision>,
    ) -> Result<bool, GatewayError> {
        let started = Instant::now();
        let model = inbound.model.clone();
        let outcome = match &mut inbound.body {
            ClientBody::Chat(req) => self.input(req, scope, &model, decisions).await,
            ClientBody::Messages(req) => self.input(req, scope, &model, decisions).await,
            ClientBody::Json(map) => {
                // The pass-through APIs keep their body as a JSON object; the Responses
                // walker reads `instructions` and `input`, which covers embeddings'
                // `input` (a string or a list of strings) too.
                let mut body = Value::Object(std::mem::take(map));
                let outcome = self
                    .input(&mut ResponsesRequest(&mut body), scope, &model, decisions)
                    .await;
                if let Value::Object(m) = body {
                    *map = m;
                }
                outcome
            }
        };
        observe_scan("input", started);
        outcome
    }

    async fn input<T: GuardTarget>(
        &self,
        target: &mut T,
        scope: &Scope<'_>,
        model: &str,
        decisions: &mut Vec<GuardrailDecision>,
    ) -> Result<bool, GatewayError> {
        let outcome = self.policy.guard(target, scope);
        record(decisions, &outcome.decisions, Direction::Input);
        if outcome.is_blocked() {
            return Err(blocked_error(outcome.block_message));
        }
        // The classifier sees the text after local redaction: a secret the policy keeps
        // from the provider is kept from a second service too.
        if let Some(hook) = &self.hook
            && hook.applies(Direction::Input, scope)
            && let Some(verdict) = hook.judge(target, scope, model).await
        {
            record(
                decisions,
                std::slice::from_ref(&verdict.decision),
                Direction::Input,
            );
            if verdict.decision.action == Action::Block {
                return Err(blocked_error(verdict.block_message));
            }
        }
        Ok(outcome.redacted_fields > 0)
    }

    /// Guards a complete answer in the client's shape. The body is re-encoded only when
    /// a rule redacted or blocked something; otherwise the provider's bytes go out as
    /// they came. On a block the answer is replaced (see [`replace_blocked`]) and the
    /// message is returned for the record.
    pub fn check_output(
        &self,
        api: ClientApi,
        body: Bytes,
        scope: &Scope<'_>,
        decisions: &mut Vec<GuardrailDecision>,
    ) -> (Bytes, Option<String>) {
        let started = Instant::now();
        let result = match api {
            ClientApi::Chat => self.output::<openai::ChatResponse>(body, scope, decisions),
            ClientApi::Messages => {
                self.output::<anthropic::MessagesResponse>(body, scope, decisions)
            }
            ClientApi::Responses => self.output_responses(body, scope, decisions),
            // Embeddings and token counts carry no text back.
            ClientApi::Embeddings | ClientApi::CountTokens => return (body, None),
        };
        observe_scan("output", started);
        result
    }

    fn output<T>(
        &self,
        body: Bytes,
        scope: &Scope<'_>,
        decisions: &mut Vec<GuardrailDecision>,
    ) -> (Bytes, Option<String>)
    where
        T: GuardTarget + BlockedAnswer + AnswerTexts + Serialize + serde::de::DeserializeOwned,
    {
        // The common answer is plain text that no rule rewrites: read its texts in place
        // (borrowed, nothing else decoded) and send the provider's bytes on. Anything a
        // rule would rewrite or block, and any answer with tool calls or structured
        // parts, takes the full path below.
        if let Some(texts) = T::plain_texts(&body) {
            let outcome =
                self.policy
                    .inspect(texts.iter().map(|t| t.as_ref()), Direction::Output, scope);
            if !outcome.is_blocked() && outcome.redacted_fields == 0 {
                record(decisions, &outcome.decisions, Direction::Output);
                return (body, None);
            }
        }
        let Ok(mut answer) = serde_json::from_slice::<T>(&body) else {
            // The body already passed the engine's own decoding as this type, so this
            // cannot happen for a provider answer; guard it as plain JSON anyway.
            return self.output_any_json(body, scope, decisions);
        };
        let outcome = self.policy.guard(&mut answer, scope);
        record(decisions, &outcome.decisions, Direction::Output);
        let blocked = outcome.is_blocked().then(|| {
            let message = outcome
                .block_message
                .clone()
                .unwrap_or_else(|| "Sluice stopped the answer by guardrail policy.".into());
            answer.replace_blocked(&message);
            message
        });
        if blocked.is_none() && outcome.redacted_fields == 0 {
            return (body, None);
        }
        match serde_json::to_vec(&answer) {
            Ok(json) => (Bytes::from(json), blocked),
            Err(_) => (Bytes::new(), blocked),
        }
    }

    fn output_responses(
        &self,
        body: Bytes,
        scope: &Scope<'_>,
        decisions: &mut Vec<GuardrailDecision>,
    ) -> (Bytes, Option<String>) {
        let Ok(mut answer) = serde_json::from_slice::<Value>(&body) else {
            return (body, None);
        };
        let outcome = self
            .policy
            .guard(&mut ResponsesResponse(&mut answer), scope);
        record(decisions, &outcome.decisions, Direction::Output);
        let blocked = outcome.is_blocked().then(|| {
            let message = outcome
                .block_message
                .clone()
                .unwrap_or_else(|| "Sluice stopped the answer by guardrail policy.".into());
            replace_blocked_responses(&mut answer, &message);
            message
        });
        if blocked.is_none() && outcome.redacted_fields == 0 {
            return (body, None);
        }
        (
            serde_json::to_vec(&answer)
                .map(Bytes::from)
                .unwrap_or_default(),
            blocked,
        )
    }

    /// Every string of the body scanned as JSON: the fallback for an answer that does
    /// not read as its API's type. A block empties the body rather than let it through.
    fn output_any_json(
        &self,
        body: Bytes,
        scope: &Scope<'_>,
        decisions: &mut Vec<GuardrailDecision>,
    ) -> (Bytes, Option<String>) {
        let Ok(mut value) = serde_json::from_slice::<Value>(&body) else {
            return (body, None);
        };
        let outcome = self.policy.guard(&mut AnyJson(&mut value), scope);
        record(decisions, &outcome.decisions, Direction::Output);
        if outcome.is_blocked() {
            let message = outcome.block_message.unwrap_or_default();
            return (Bytes::from_static(b"{}"), Some(message));
        }
        if outcome.redacted_fields == 0 {
            return (body, None);
        }
        (
            serde_json::to_vec(&value)
                .map(Bytes::from)
                .unwrap_or_default(),
            None,
        )
    }
}

/// The text fields of a complete answer read straight from its JSON, when they are all
/// plain text: exactly the fields its [`GuardTarget`] visits, as `TextSlot::Text`.
/// `None` when the answer has anything else to guard (tool calls, content parts, tool
/// inputs) or does not read as the type.
pub trait AnswerTexts {
    fn plain_texts(body: &[u8]) -> Option<Vec<Cow<'_, str>>>;
}

impl AnswerTexts for openai::ChatResponse {
    fn plain_texts(body: &[u8]) -> Option<Vec<Cow<'_, str>>> {
        #[derive(serde::Deserialize)]
        struct Answer<'a> {
            #[serde(borrow, default)]
            choices: Vec<Choice<'a>>,
        }
        #[derive(serde::Deserialize)]
        struct Choice<'a> {
            #[serde(borrow)]
            message: Message<'a>,
        }
        #[derive(serde::Deserialize)]
        struct Message<'a> {
            // A list of parts fails to read as a string: the full path handles it.
            #[serde(borrow, default)]
            content: Option<Cow<'a, str>>,
            #[serde(default)]
            tool_calls: Option<serde::de::IgnoredAny>,
        }
        let answer: Answer<'_> = serde_json::from_slice(body).ok()?;
        let mut texts = Vec::with_capacity(answer.choices.len());
        for choice in answer.choices {
            if choice.message.tool_calls.is_some() {
                return None;
            }
            texts.extend(choice.message.content);
        }
        Some(texts)
    }
}

impl AnswerTexts for anthropic::MessagesResponse {
    fn plain_texts(body: &[u8]) -> Option<Vec<Cow<'_, str>>> {
        #[derive(serde::Deserialize)]
        struct Answer<'a> {
            #[serde(borrow, default)]
            content: Vec<Block<'a>>,
        }
        #[derive(serde::Deserialize)]
        struct Block<'a> {
            #[serde(rename = "type", borrow)]
            kind: Cow<'a, str>,
            #[serde(borrow, default)]
            text: Option<Cow<'a, str>>,
        }
        let answer: Answer<'_> = serde_json::from_slice(body).ok()?;
        let mut texts = Vec::with_capacity(answer.content.len());
        for block in answer.content {
            match block.kind.as_ref() {
                "text" => texts.extend(block.text),
                // Blocks whose inputs, results or sources the full path guards.
                "tool_use" | "server_tool_use" | "tool_result" | "document" => return None,
                // Thinking and the rest are not guarded on either path.
                _ => {}
            }
        }
        Some(texts)
    }
}

struct AnyJson<'a>(&'a mut Value);

impl GuardTarget for AnyJson<'_> {
    const DIRECTION: Direction = Direction::Output;
    fn visit_texts(&mut self, visit: &mut dyn FnMut(TextSlot<'_>)) {
        visit(TextSlot::Json(self.0));
    }
}

/// How a complete answer that a `block` rule stopped is replaced.
///
/// The answer becomes a normal, successful (200) answer whose text is the block message
/// and whose stop reason says a filter ended it: OpenAI's `finish_reason:
/// "content_filter"` (what OpenAI and Azure OpenAI send for filtered output, and what
/// SDKs and frameworks already handle), Anthropic's `stop_reason: "refusal"`, the
/// Responses API's `status: "incomplete"` with `reason: "content_filter"`. An error
/// status would be wrong here: the request was fine, nothing the client changes in it
/// guarantees a different answer, and SDKs turn 4xx into exceptions that end an agent's
/// run. The usage stays, because the tokens were spent. (A stream, whose head has
/// already gone out, ends with an error event instead.)
pub trait BlockedAnswer {
    fn replace_blocked(&mut self, message: &str);
}

impl BlockedAnswer for openai::ChatResponse {
    fn replace_blocked(&mut self, message: &str) {
        for choice in &mut self.choices {
            choice.message = openai::ChatMessage::text(openai::Role::Assistant, message);
            choice.finish_reason = Some("content_filter".into());
            choice.logprobs = None;
        }
    }
}

impl BlockedAnswer for anthropic::MessagesResponse {
    fn replace_blocked(&mut self, message: &str) {
        self.content = vec![anthropic::ContentBlock::text(message)];
        self.stop_reason = Some("refusal".into());
        self.stop_sequence = None;
    }
}

fn replace_blocked_responses(answer: &mut Value, message: &str) {
    if let Value::Object(map) = answer {
        map.insert(
            "output".into(),
            json!([{
                "type": "message",
                "id": "msg_sluice_guardrail",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": message, "annotations": []}],
            }]),
        );
        map.insert("status".into(), json!("incomplete"));
        map.insert(
            "incomplete_details".into(),
            json!({"reason": "content_filter"}),
        );
    }
}

#[cfg(test)]
mod tests;
