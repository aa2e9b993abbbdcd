//! Applying a policy to every text-bearing field of the API shapes Sluice speaks:
//! system and developer prompts, user content parts, assistant text, tool-call
//! arguments and tool results. Images, audio and files are not text and are left alone;
//! reasoning blocks are skipped because providers sign them and reject edited ones.
//!
//! JSON arguments are scanned leaf by leaf, each string together with its key
//! (`"password": "…"`), so that escapes never hide a match and a redaction can never
//! break the JSON.

use serde_json::Value;

use super::compile::CompiledPolicy;
use super::model::{Decision, Direction, ScanOutcome, Scope, Verdict};
use super::redact::Redactor;
use crate::{anthropic, gemini, openai};

/// A text field handed to the guard.
#[derive(Debug)]
pub enum TextSlot<'a> {
    /// Plain text.
    Text(&'a mut String),
    /// A string that carries JSON (OpenAI tool-call arguments); scanned as JSON when it
    /// parses, as text otherwise.
    JsonText(&'a mut String),
    /// Structured arguments or results.
    Json(&'a mut Value),
}

/// A request or response whose text fields the guard can visit, in document order.
/// Implemented here for the wire types of [`crate::openai`], [`crate::anthropic`] and
/// [`crate::gemini`], and for Responses-API JSON through [`ResponsesRequest`] and
/// [`ResponsesResponse`].
pub trait GuardTarget {
    /// Requests are `Input`, complete responses `Output`.
    const DIRECTION: Direction;
    fn visit_texts(&mut self, visit: &mut dyn FnMut(TextSlot<'_>));
}

/// The result of guarding a whole request or response.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GuardOutcome {
    pub verdict: Verdict,
    /// Summed per rule over every field, for audit and metrics.
    pub decisions: Vec<Decision>,
    pub block_message: Option<String>,
    /// Highest injection score of any field.
    pub injection_score: f32,
    /// How many fields were rewritten.
    pub redacted_fields: usize,
}

impl GuardOutcome {
    pub fn is_blocked(&self) -> bool {
        self.verdict == Verdict::Block
    }

    /// A block always carries a message, generic if no rule supplied one.
    fn finished(mut self) -> Self {
        if self.verdict == Verdict::Block && self.block_message.is_none() {
            self.block_message = Some("Sluice blocked this request by guardrail policy.".into());
        }
        self
    }

    fn absorb(&mut self, o: &ScanOutcome) {
        self.verdict = self.verdict.max(o.verdict);
        self.injection_score = self.injection_score.max(o.injection_score);
        if self.block_message.is_none() {
            self.block_message.clone_from(&o.block_message);
        }
        for d in &o.decisions {
            match self.decisions.iter_mut().find(|x| x.rule_id == d.rule_id) {
                Some(x) => x.count += d.count,
                None => self.decisions.push(d.clone()),
            }
        }
    }
}

/// Responses-API request JSON (`POST /v1/responses`), guarded in place.
#[derive(Debug)]
pub struct ResponsesRequest<'a>(pub &'a mut Value);

/// Responses-API response JSON, guarded in place.
#[derive(Debug)]
pub struct ResponsesResponse<'a>(pub &'a mut Value);

impl CompiledPolicy {
    /// Scans every text field of `target`, redacts in place where the policy says so
    /// (one [`Redactor`] for the whole message, so a value keeps its placeholder across
    /// fields), and returns the combined decisions. On a block the caller must not
    /// forward the message; fields may already be partly redacted.
    pub fn guard<T: GuardTarget>(&self, target: &mut T, scope: &Scope<'_>) -> GuardOutcome {
        let mut redactor = Redactor::new();
        let mut outcome = GuardOutcome::default();
        target.visit_texts(&mut |slot| match slot {
            TextSlot::Text(s) => {
                self.guard_text(s, None, T::DIRECTION, scope, &mut redactor, &mut outcome)
            }
            TextSlot::JsonText(s) => match serde_json::from_str::<Value>(s) {
                Ok(mut v) if v.is_object() || v.is_array() => {
                    let before = outcome.redacted_fields;
                    self.guard_json(
                        &mut v,
                        None,
                        T::DIRECTION,
                        scope,
                        &mut redactor,
                        &mut outcome,
                    );
                    if outcome.redacted_fields != before {
                        *s = v.to_string();
                    }
                }
                _ => self.guard_text(s, None, T::DIRECTION, scope, &mut redactor, &mut outcome),
            },
            TextSlot::Json(v) => {
                self.guard_json(v, None, T::DIRECTION, scope, &mut redactor, &mut outcome)
            }
        });
        outcome.finished()
    }

    /// The decisions [`CompiledPolicy::guard`] makes for a target whose text fields are
    /// exactly `texts`, all plain text (no JSON), without rewriting anything: for answers
    /// read straight off the wire, which then go out as they came. `redacted_fields`
    /// counts the texts a rule would rewrite; when it is non-zero, or the verdict is a
    /// block, guard the owned target instead (that is what rewrites).
    pub fn inspect<'t>(
        &self,
        texts: impl IntoIterator<Item = &'t str>,
        direction: Direction,
        scope: &Scope<'_>,
    ) -> GuardOutcome {
        let mut outcome = GuardOutcome::default();
        for text in texts {
            let scanned = self.scan(text, direction, scope);
            outcome.absorb(&scanned);
            if scanned.needs_redaction() && !scanned.is_blocked() {
                outcome.redacted_fields += 1;
            }
        }
        outcome.finished()
    }

    /// Scans `s` (seen after `key`, for JSON leaves) and redacts it in place.
    fn guard_text(
        &self,
        s: &mut String,
        key: Option<&str>,
        direction: Direction,
        scope: &Scope<'_>,
        redactor: &mut Redactor,
        outcome: &mut GuardOutcome,
    ) {
        let Some(key) = key else {
            let scanned = self.scan(s, direction, scope);
            outcome.absorb(&scanned);
            if scanned.needs_redaction() && !scanned.is_blocked() {
                *s = redactor.redact(s, &scanned);
                outcome.redacted_fields += 1;
            }
            return;
        };
        // `"key": "value"` gives assignment-style rules their context; only the value
        // part is ever rewritten.
        let prefix = format!("\"{key}\": \"");
        let text = format!("{prefix}{s}\"");
        let mut scanned = self.scan(&text, direction, scope);
        outcome.absorb(&scanned);
        let value = prefix.len()..prefix.len() + s.len();
        scanned.findings.retain_mut(|f| {
            f.range.start = f.range.start.clamp(value.start, value.end);
            f.range.end = f.range.end.clamp(value.start, value.end);
            !f.range.is_empty()
        });
        if scanned.needs_redaction() && !scanned.is_blocked() {
            let redacted = redactor.redact(&text, &scanned);
            *s = redacted[prefix.len()..redacted.len() - 1].to_string();
            outcome.redacted_fields += 1;
        }
    }

    fn guard_json(
        &self,
        v: &mut Value,
        key: Option<&str>,
        direction: Direction,
        scope: &Scope<'_>,
        redactor: &mut Redactor,
        outcome: &mut GuardOutcome,
    ) {
        match v {
            Value::String(s) => self.guard_text(s, key, direction, scope, redactor, outcome),
            Value::Array(items) => {
                for item in items {
                    self.guard_json(item, key, direction, scope, redactor, outcome);
                }
            }
            Value::Object(map) => {
                for (k, item) in map.iter_mut() {
                    self.guard_json(item, Some(k), direction, scope, redactor, outcome);
                }
            }
            _ => {}
        }
    }
}

fn openai_message(m: &mut openai::ChatMessage, visit: &mut dyn FnMut(TextSlot<'_>)) {
    match &mut m.content {
        Some(openai::MessageContent::Text(s)) => visit(TextSlot::Text(s)),
        Some(openai::MessageContent::Parts(parts)) => {
            for part in parts {
                if let Some(t) = part.text.as_mut() {
                    visit(TextSlot::Text(t));
                }
            }
        }
        None => {}
    }
    for call in m.tool_calls.iter_mut().flatten() {
        if let Some(args) = call.function.arguments.as_mut() {
            visit(TextSlot::JsonText(args));
        }
    }
}

impl GuardTarget for openai::ChatRequest {
    const DIRECTION: Direction = Direction::Input;
    fn visit_texts(&mut self, visit: &mut dyn FnMut(TextSlot<'_>)) {
        for m in &mut self.messages {
            openai_message(m, visit);
        }
    }
}

impl GuardTarget for openai::ChatResponse {
    const DIRECTION: Direction = Direction::Output;
    fn visit_texts(&mut self, visit: &mut dyn FnMut(TextSlot<'_>)) {
        for c in &mut self.choices {
            openai_message(&mut c.message, visit);
        }
    }
}

fn anthropic_content(c: &mut anthropic::Content, visit: &mut dyn FnMut(TextSlot<'_>)) {
    match c {
        anthropic::Content::Text(s) => visit(TextSlot::Text(s)),
        anthropic::Content::Blocks(blocks) => {
            for b in blocks {
                anthropic_block(b, visit);
            }
        }
    }
}

fn anthropic_block(b: &mut anthropic::ContentBlock, visit: &mut dyn FnMut(TextSlot<'_>)) {
    match b.kind.as_str() {
        "text" => {
            if let Some(t) = b.text.as_mut() {
                visit(TextSlot::Text(t));
            }
        }
        "tool_use" | "server_tool_use" => {
            if let Some(input) = b.input.as_mut() {
                visit(TextSlot::Json(input));
            }
        }
        "tool_result" => {
            if let Some(content) = b.content.as_mut() {
                anthropic_content(content, visit);
            }
        }
        "document" => {
            // A plain-text document carries its text in `source.data`.
            if let Some(Value::Object(src)) = b.source.as_mut()
                && src.get("type").and_then(Value::as_str) == Some("text")
                && let Some(Value::String(data)) = src.get_mut("data")
            {
                visit(TextSlot::Text(data));
            }
        }
        _ => {}
    }
}

impl GuardTarget for anthropic::MessagesRequest {
    const DIRECTION: Direction = Direction::Input;
    fn visit_texts(&mut self, visit: &mut dyn FnMut(TextSlot<'_>)) {
        if let Some(system) = self.system.as_mut() {
            anthropic_content(system, visit);
        }
        for m in &mut self.messages {
            anthropic_content(&mut m.content, visit);
        }
    }
}

impl GuardTarget for anthropic::MessagesResponse {
    const DIRECTION: Direction = Direction::Output;
    fn visit_texts(&mut self, visit: &mut dyn FnMut(TextSlot<'_>)) {
        for b in &mut self.content {
            anthropic_block(b, visit);
        }
    }
}

fn gemini_content(c: &mut gemini::Content, visit: &mut dyn FnMut(TextSlot<'_>)) {
    for part in &mut c.parts {
        if part.thought == Some(true) {
            continue;
        }
        if let Some(t) = part.text.as_mut() {
            visit(TextSlot::Text(t));
        }
        if let Some(call) = part.function_call.as_mut() {
            visit(TextSlot::Json(&mut call.args));
        }
        if let Some(resp) = part.function_response.as_mut() {
            visit(TextSlot::Json(&mut resp.response));
        }
    }
}

impl GuardTarget for gemini::GenerateContentRequest {
    const DIRECTION: Direction = Direction::Input;
    fn visit_texts(&mut self, visit: &mut dyn FnMut(TextSlot<'_>)) {
        if let Some(system) = self.system_instruction.as_mut() {
            gemini_content(system, visit);
        }
        for c in &mut self.contents {
            gemini_content(c, visit);
        }
    }
}

impl GuardTarget for gemini::GenerateContentResponse {
    const DIRECTION: Direction = Direction::Output;
    fn visit_texts(&mut self, visit: &mut dyn FnMut(TextSlot<'_>)) {
        for cand in &mut self.candidates {
            if let Some(c) = cand.content.as_mut() {
                gemini_content(c, visit);
            }
        }
    }
}

/// One Responses-API item (`input[]` or `output[]`): messages with string or part
/// content, function calls and their outputs, custom tool calls.
fn responses_item(item: &mut Value, visit: &mut dyn FnMut(TextSlot<'_>)) {
    let Value::Object(map) = item else {
        if let Value::String(s) = item {
            visit(TextSlot::Text(s));
        }
        return;
    };
    let kind = map
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("message")
        .to_string();
    match kind.as_str() {
        "message" => match map.get_mut("content") {
            Some(Value::String(s)) => visit(TextSlot::Text(s)),
            Some(Value::Array(parts)) => responses_parts(parts, visit),
            _ => {}
        },
        "function_call" => {
            if let Some(Value::String(args)) = map.get_mut("arguments") {
                visit(TextSlot::JsonText(args));
            }
        }
        "function_call_output" | "custom_tool_call_output" => match map.get_mut("output") {
            Some(Value::String(s)) => visit(TextSlot::JsonText(s)),
            Some(Value::Array(parts)) => responses_parts(parts, visit),
            _ => {}
        },
        "custom_tool_call" => {
            if let Some(Value::String(s)) = map.get_mut("input") {
                visit(TextSlot::Text(s));
            }
        }
        _ => {}
    }
}

fn responses_parts(parts: &mut [Value], visit: &mut dyn FnMut(TextSlot<'_>)) {
    for part in parts {
        let is_text = matches!(
            part.get("type").and_then(Value::as_str),
            Some("input_text" | "output_text" | "text")
        );
        if is_text && let Some(Value::String(t)) = part.get_mut("text") {
            visit(TextSlot::Text(t));
        }
    }
}

impl GuardTarget for ResponsesRequest<'_> {
    const DIRECTION: Direction = Direction::Input;
    fn visit_texts(&mut self, visit: &mut dyn FnMut(TextSlot<'_>)) {
        if let Some(Value::String(s)) = self.0.get_mut("instructions") {
            visit(TextSlot::Text(s));
        }
        match self.0.get_mut("input") {
            Some(Value::String(s)) => visit(TextSlot::Text(s)),
            Some(Value::Array(items)) => {
                for item in items {
                    responses_item(item, visit);
                }
            }
            _ => {}
        }
    }
}

impl GuardTarget for ResponsesResponse<'_> {
    const DIRECTION: Direction = Direction::Output;
    fn visit_texts(&mut self, visit: &mut dyn FnMut(TextSlot<'_>)) {
        if let Some(Value::Array(items)) = self.0.get_mut("output") {
            for item in items {
                responses_item(item, visit);
            }
        }
    }
}
