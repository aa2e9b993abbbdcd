//! Output guardrails on a streamed answer.
//!
//! [`OutputGuard`] sits between the engine's stream translator and the client: it reads
//! the client's own SSE events (so it works the same for a pass-through and for a
//! translated stream), feeds every text delta and tool-call argument delta to a
//! [`StreamScanner`] for its channel (one per choice, tool call, content block or output
//! part), and rewrites the event with the text the scanner releases. Nothing is
//! accumulated: a scanner holds back only the tail a match could still span, usually the
//! current word. An event whose text is entirely held back is dropped (Responses events
//! are kept with an empty delta, because clients number them); held-back text is
//! released in the event that closes its channel (a chunk with `finish_reason`,
//! `content_block_stop`, `response.output_text.done`) or just before the stream's
//! terminal event.
//!
//! On a block the guard stops: the events before the blocking one are sent, the caller
//! ends the stream with an error event in the client's framing, and nothing else
//! follows (no `[DONE]`, no `message_stop`).
//!
//! Not scanned: reasoning text (`thinking`, `reasoning_content`, reasoning summaries —
//! providers sign it, and it is not the answer) and OpenAI `refusal` deltas. Anthropic
//! `input_json_delta` and OpenAI argument deltas are scanned as the raw JSON text they
//! are, so a match is found through the JSON's quoting only when it needs no escapes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use sluice_shared::guardrails::{
    CompiledPolicy, Decision, ResponsesResponse, StreamScanner, StreamStep,
};
use sluice_shared::sse::{self, SseDecoder, SseEvent};

use super::{AnswerText, guard_response_item, scope};
use crate::governance::Identity;
use crate::request::ClientApi;

/// The client's stream format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Chat,
    Messages,
    Responses,
}

/// One text channel of an answer, with its own scanner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Channel {
    /// OpenAI chat: choice `.0`'s content. Responses: output `.0`, content part `.1`.
    Text(u32, u32),
    /// OpenAI chat: choice `.0`, tool call `.1`'s arguments. Responses: output `.0`'s
    /// function-call arguments.
    Args(u32, u32),
    /// Anthropic: content block `.0` (text or tool input).
    Block(u32),
}

struct OpenChannel {
    channel: Channel,
    /// Anthropic: the block streams `input_json_delta` (tool input), not `text_delta`.
    json: bool,
    /// Responses: the first delta event, less its text, to frame released text in.
    template: Option<Map<String, Value>>,
    scanner: StreamScanner,
}

/// Why the stream must stop: the message for the client's error event.
#[derive(Debug)]
struct Blocked(String);

/// What [`OutputGuard::filter`] produced.
#[derive(Debug)]
pub struct Filtered {
    /// Bytes for the client.
    pub bytes: Bytes,
    /// Set when a block rule fired: `bytes` are the events before it, and the stream
    /// must now end with an error event carrying this message.
    pub blocked: Option<String>,
}

/// Per-stream output guard; see the module docs.
pub struct OutputGuard {
    policy: Arc<CompiledPolicy>,
    identity: Option<Arc<Identity>>,
    app: Option<String>,
    shape: Shape,
    decoder: SseDecoder,
    open: Vec<OpenChannel>,
    /// Decisions of channels already closed.
    closed: Vec<Decision>,
    /// OpenAI chat: the stream's `id`, `object`, `created` and `model`, for a chunk the
    /// guard adds itself.
    envelope: Map<String, Value>,
    scan_time: Duration,
}

impl std::fmt::Debug for OutputGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutputGuard")
            .field("shape", &self.shape)
            .field("open_channels", &self.open.len())
            .finish_non_exhaustive()
    }
}

impl OutputGuard {
    /// A guard for a stream of `api`, or `None` for an API whose stream carries no text.
    pub fn new(
        api: ClientApi,
        policy: Arc<CompiledPolicy>,
        identity: Option<Arc<Identity>>,
        app: Option<String>,
    ) -> Option<Self> {
        let shape = match api {
            ClientApi::Chat => Shape::Chat,
            ClientApi::Messages => Shape::Messages,
            ClientApi::Responses => Shape::Responses,
            ClientApi::Embeddings | ClientApi::CountTokens => return None,
        };
        Some(OutputGuard {
            policy,
            identity,
            app,
            shape,
            decoder: SseDecoder::new(),
            open: Vec::new(),
            closed: Vec::new(),
            envelope: Map::new(),
            scan_time: Duration::ZERO,
        })
    }

    /// Filters one write of client bytes (whole events, as the translator writes them).
    pub fn filter(&mut self, bytes: &[u8]) -> Filtered {
        let mut out = BytesMut::with_capacity(bytes.len() + 64);
        if self.decoder.push(bytes).is_err() {
            return Filtered {
                bytes: Bytes::new(),
                blocked: Some(
                    "Sluice stopped the answer: an event was too large to inspect.".into(),
                ),
            };
        }
        while let Some(event) = self.decoder.next_event() {
            if event.is_empty() {
                out.put(event.raw);
                continue;
            }
            let result = match self.shape {
                Shape::Chat => self.on_chat(event, &mut out),
                Shape::Messages => self.on_messages(event, &mut out),
                Shape::Responses => self.on_responses(event, &mut out),
            };
            if let Err(Blocked(message)) = result {
                return Filtered {
                    bytes: out.freeze(),
                    blocked: Some(message),
                };
            }
        }
        Filtered {
            bytes: out.freeze(),
            blocked: None,
        }
    }

    /// Every rule that fired so far, summed per rule and action (complete once the
    /// stream has ended).
    pub fn decisions(&self) -> Vec<Decision> {
        let mut out: Vec<Decision> = Vec::new();
        let open = self.open.iter().flat_map(|o| o.scanner.decisions());
        for d in self.closed.iter().cloned().chain(open) {
            match out
                .iter_mut()
                .find(|x| x.rule_id == d.rule_id && x.action == d.action)
            {
                Some(x) => x.count += d.count,
                None => out.push(d),
            }
        }
        out
    }

    /// Time spent scanning, for `sluice_guardrail_scan_seconds{direction="output"}`.
    pub fn scan_time(&self) -> Duration {
        self.scan_time
    }

    /// Feeds `text` to `channel`'s scanner (opening it on first use); returns what may
    /// be sent now.
    fn push(&mut self, channel: Channel, json: bool, text: &str) -> Result<String, Blocked> {
        let started = Instant::now();
        let index = match self.open.iter().position(|o| o.channel == channel) {
            Some(i) => i,
            None => {
                let scope = scope(self.identity.as_deref(), self.app.as_deref());
                self.open.push(OpenChannel {
                    channel,
                    json,
                    template: None,
                    scanner: StreamScanner::new(self.policy.clone(), &scope),
                });
                self.open.len() - 1
            }
        };
        let step = self.open[index].scanner.push(text);
        self.scan_time += started.elapsed();
        match step {
            StreamStep::Emit(released) => Ok(released),
            StreamStep::Block { message, .. } => Err(Blocked(message)),
        }
    }

    /// Ends `channel`: its held-back text, decided, with the channel's framing facts.
    fn close(&mut self, channel: Channel) -> Result<Option<(String, OpenChannel)>, Blocked> {
        let Some(index) = self.open.iter().position(|o| o.channel == channel) else {
            return Ok(None);
        };
        let mut open = self.open.remove(index);
        let started = Instant::now();
        let step = open.scanner.finish();
        self.scan_time += started.elapsed();
        self.closed.extend(open.scanner.decisions());
        match step {
            StreamStep::Emit(released) => Ok(Some((released, open))),
            StreamStep::Block { message, .. } => Err(Blocked(message)),
        }
    }

    fn open_channels(&self, keep: impl Fn(Channel) -> bool) -> Vec<Channel> {
        self.open
            .iter()
            .map(|o| o.channel)
            .filter(|c| keep(*c))
            .collect()
    }

    // ---- OpenAI chat completions -------------------------------------------------

    fn on_chat(&mut self, event: SseEvent, out: &mut BytesMut) -> Result<(), Blocked> {
        if event.data == "[DONE]" {
            self.flush_chat(out)?;
            out.put(event.raw);
            return Ok(());
        }
        let Ok(mut chunk) = serde_json::from_str::<Chunk>(&event.data) else {
            out.put(event.raw);
            return Ok(());
        };
        if self.envelope.is_empty() {
            for key in ["id", "object", "created", "model"] {
                if let Some(v) = chunk.rest.get(key) {
                    self.envelope.insert(key.into(), v.clone());
                }
            }
        }
        let mut changed = false;
        for choice in chunk.choices.iter_mut().flatten() {
            let i = choice.index;
            if let Some(delta) = choice.delta.as_mut() {
                if let Some(text) = delta.content.take() {
                    let released = self.push(Channel::Text(i, 0), false, &text)?;
                    changed |= released != text;
                    delta.content = Some(released);
                }
                for call in delta.tool_calls.iter_mut().flatten() {
                    if let Some(args) = call.function.as_mut().and_then(|f| f.arguments.as_mut()) {
                        let released = self.push(Channel::Args(i, call.index), false, args)?;
                        changed |= released != *args;
                        *args = released;
                    }
                }
            }
            if choice.finish_reason.is_some() {
                // The choice ends here: what its channels still hold goes out in this
                // same chunk, ahead of the finish reason.
                for channel in self.open_channels(
                    |c| matches!(c, Channel::Text(x, _) | Channel::Args(x, _) if x == i),
                ) {
                    if let Some((text, _)) = self.close(channel)?
                        && !text.is_empty()
                    {
                        changed = true;
                        choice
                            .delta
                            .get_or_insert_with(ChunkDelta::default)
                            .append(channel, &text);
                    }
                }
            }
        }
        if !changed {
            out.put(event.raw);
            return Ok(());
        }
        if chunk.prune() {
            return Ok(());
        }
        put_json(out, None, &chunk);
        Ok(())
    }

    /// Releases every open channel in chunks of its own, before `[DONE]` (a stream
    /// whose choices ended without a finish reason).
    fn flush_chat(&mut self, out: &mut BytesMut) -> Result<(), Blocked> {
        for channel in self.open_channels(|_| true) {
            let Some((text, _)) = self.close(channel)? else {
                continue;
            };
            if text.is_empty() {
                continue;
            }
            let (Channel::Text(i, _) | Channel::Args(i, _) | Channel::Block(i)) = channel;
            let mut delta = ChunkDelta::default();
            delta.append(channel, &text);
            let chunk = Chunk {
                choices: Some(vec![ChunkChoice {
                    index: i,
                    delta: Some(delta),
                    finish_reason: None,
                    rest: Map::new(),
                }]),
                rest: self.envelope.clone(),
            };
            put_json(out, None, &chunk);
        }
        Ok(())
    }

    // ---- Anthropic messages ------------------------------------------------------

    fn on_messages(&mut self, event: SseEvent, out: &mut BytesMut) -> Result<(), Blocked> {
        match event.event.as_deref() {
            Some("content_block_start") => {
                let Ok(mut start) = serde_json::from_str::<BlockStart>(&event.data) else {
                    out.put(event.raw);
                    return Ok(());
                };
                let json = matches!(
                    start.content_block.kind.as_str(),
                    "tool_use" | "server_tool_use"
                );
                // A text block usually starts empty; if not, its first text is scanned
                // like a delta.
                if start.content_block.kind == "text"
                    && let Some(text) = start.content_block.text.as_mut()
                    && !text.is_empty()
                {
                    let released = self.push(Channel::Block(start.index), false, text)?;
                    if released != *text {
                        *text = released;
                        put_json(out, Some("content_block_start"), &start);
                        return Ok(());
                    }
                } else if start.content_block.kind == "text" || json {
                    // Open the channel now so that its kind is known when it closes.
                    self.push(Channel::Block(start.index), json, "")?;
                }
                out.put(event.raw);
            }
            Some("content_block_delta") => {
                let Ok(mut delta) = serde_json::from_str::<BlockDeltaEvent>(&event.data) else {
                    out.put(event.raw);
                    return Ok(());
                };
                let channel = Channel::Block(delta.index);
                let (slot, json) = match delta.delta.kind.as_str() {
                    "text_delta" => (delta.delta.text.as_mut(), false),
                    "input_json_delta" => (delta.delta.partial_json.as_mut(), true),
                    // Thinking, signatures and citations are not the answer's text.
                    _ => (None, false),
                };
                let Some(text) = slot else {
                    out.put(event.raw);
                    return Ok(());
                };
                let released = self.push(channel, json, text)?;
                if released == *text {
                    out.put(event.raw);
                } else if !released.is_empty() {
                    *text = released;
                    put_json(out, Some("content_block_delta"), &delta);
                }
            }
            Some("content_block_stop") => {
                if let Ok(stop) = serde_json::from_str::<BlockStop>(&event.data) {
                    self.flush_block(Channel::Block(stop.index), out)?;
                }
                out.put(event.raw);
            }
            Some("message_stop") => {
                for channel in self.open_channels(|_| true) {
                    self.flush_block(channel, out)?;
                }
                out.put(event.raw);
            }
            _ => out.put(event.raw),
        }
        Ok(())
    }

    /// Closes an Anthropic block, sending what it held back as one more delta.
    fn flush_block(&mut self, channel: Channel, out: &mut BytesMut) -> Result<(), Blocked> {
        let Some((text, open)) = self.close(channel)? else {
            return Ok(());
        };
        if text.is_empty() {
            return Ok(());
        }
        let Channel::Block(index) = channel else {
            return Ok(());
        };
        let delta = if open.json {
            serde_json::json!({"type": "input_json_delta", "partial_json": text})
        } else {
            serde_json::json!({"type": "text_delta", "text": text})
        };
        let event =
            serde_json::json!({"type": "content_block_delta", "index": index, "delta": delta});
        put_json(out, Some("content_block_delta"), &event);
        Ok(())
    }

    // ---- OpenAI Responses --------------------------------------------------------

    fn on_responses(&mut self, event: SseEvent, out: &mut BytesMut) -> Result<(), Blocked> {
        let name = event.event.as_deref().unwrap_or_default();
        match name {
            "response.output_text.delta" | "response.function_call_arguments.delta" => {
                let Ok(mut delta) = serde_json::from_str::<ResponsesDelta>(&event.data) else {
                    out.put(event.raw);
                    return Ok(());
                };
                let o = delta.output_index.unwrap_or(0);
                let channel = if name == "response.output_text.delta" {
                    Channel::Text(o, delta.content_index.unwrap_or(0))
                } else {
                    Channel::Args(o, 0)
                };
                let released = self.push(channel, false, &delta.delta)?;
                if let Some(open) = self.open.iter_mut().find(|c| c.channel == channel)
                    && open.template.is_none()
                {
                    let mut template = delta.rest.clone();
                    template.insert("type".into(), Value::String(name.to_owned()));
                    open.template = Some(template);
                }
                if released == delta.delta {
                    out.put(event.raw);
                } else {
                    // Kept even when empty: Responses events carry sequence numbers.
                    delta.delta = released;
                    put_json(out, Some(name), &delta);
                }
            }
            "response.output_text.done" | "response.function_call_arguments.done" => {
                let Ok(mut done) = serde_json::from_str::<Value>(&event.data) else {
                    out.put(event.raw);
                    return Ok(());
                };
                let index = |key: &str| {
                    done.get(key)
                        .and_then(Value::as_u64)
                        .and_then(|n| u32::try_from(n).ok())
                        .unwrap_or(0)
                };
                let (channel, field) = if name == "response.output_text.done" {
                    (
                        Channel::Text(index("output_index"), index("content_index")),
                        "text",
                    )
                } else {
                    (Channel::Args(index("output_index"), 0), "arguments")
                };
                self.flush_responses(channel, out)?;
                // The final event repeats the whole text; guard it the same way.
                let changed = match done.get_mut(field) {
                    Some(Value::String(text)) => self.guard_text(text)?,
                    _ => false,
                };
                self.put_guarded(out, name, &event, &done, changed);
            }
            "response.content_part.done" => {
                let Ok(mut done) = serde_json::from_str::<Value>(&event.data) else {
                    out.put(event.raw);
                    return Ok(());
                };
                let changed = match done.get_mut("part").and_then(|p| p.get_mut("text")) {
                    Some(Value::String(text)) => self.guard_text(text)?,
                    _ => false,
                };
                self.put_guarded(out, name, &event, &done, changed);
            }
            "response.output_item.done" => {
                let Ok(mut done) = serde_json::from_str::<Value>(&event.data) else {
                    out.put(event.raw);
                    return Ok(());
                };
                let changed = match done.get_mut("item") {
                    Some(item) => {
                        let scope = scope(self.identity.as_deref(), self.app.as_deref());
                        let outcome = guard_response_item(&self.policy, item, &scope);
                        if outcome.is_blocked() {
                            return Err(Blocked(outcome.block_message.unwrap_or_default()));
                        }
                        outcome.redacted_fields > 0
                    }
                    None => false,
                };
                self.put_guarded(out, name, &event, &done, changed);
            }
            "response.completed" | "response.incomplete" | "response.failed" => {
                for channel in self.open_channels(|_| true) {
                    self.flush_responses(channel, out)?;
                }
                let Ok(mut done) = serde_json::from_str::<Value>(&event.data) else {
                    out.put(event.raw);
                    return Ok(());
                };
                let changed = match done.get_mut("response") {
                    Some(response) => {
                        let scope = scope(self.identity.as_deref(), self.app.as_deref());
                        let outcome = self.policy.guard(&mut ResponsesResponse(response), &scope);
                        if outcome.is_blocked() {
                            return Err(Blocked(outcome.block_message.unwrap_or_default()));
                        }
                        outcome.redacted_fields > 0
                    }
                    None => false,
                };
                self.put_guarded(out, name, &event, &done, changed);
            }
            _ => out.put(event.raw),
        }
        Ok(())
    }

    /// Closes a Responses channel, sending what it held back as one more delta event.
    fn flush_responses(&mut self, channel: Channel, out: &mut BytesMut) -> Result<(), Blocked> {
        let Some((text, open)) = self.close(channel)? else {
            return Ok(());
        };
        if text.is_empty() {
            return Ok(());
        }
        let Some(mut event) = open.template else {
            return Ok(());
        };
        let name = event
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("response.output_text.delta")
            .to_owned();
        match channel {
            Channel::Text(o, c) => {
                event.insert("output_index".into(), o.into());
                event.insert("content_index".into(), c.into());
            }
            Channel::Args(o, _) | Channel::Block(o) => {
                event.insert("output_index".into(), o.into());
            }
        }
        event.insert("delta".into(), Value::String(text));
        put_json(out, Some(&name), &event);
        Ok(())
    }

    /// Redacts a whole text in place; `Ok(true)` when it changed.
    fn guard_text(&self, text: &mut String) -> Result<bool, Blocked> {
        let scope = scope(self.identity.as_deref(), self.app.as_deref());
        let outcome = self.policy.guard(&mut AnswerText(text), &scope);
        if outcome.is_blocked() {
            return Err(Blocked(outcome.block_message.unwrap_or_default()));
        }
        Ok(outcome.redacted_fields > 0)
    }

    fn put_guarded(
        &self,
        out: &mut BytesMut,
        name: &str,
        event: &SseEvent,
        value: &Value,
        changed: bool,
    ) {
        if changed {
            put_json(out, Some(name), value);
        } else {
            out.put(event.raw.clone());
        }
    }
}

fn put_json<T: Serialize>(out: &mut BytesMut, name: Option<&str>, value: &T) {
    if let Ok(json) = serde_json::to_string(value) {
        out.put(sse::encode(name, &json));
    }
}

fn has_values(map: &Map<String, Value>) -> bool {
    map.values().any(|v| !v.is_null())
}

// The parts of the client's events the guard reads or rewrites. Everything else is
// carried through `rest` untouched, so unknown fields reach the client as they came.

/// An OpenAI `chat.completion.chunk`.
#[derive(Debug, Default, Deserialize, Serialize)]
struct Chunk {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    choices: Option<Vec<ChunkChoice>>,
    #[serde(flatten)]
    rest: Map<String, Value>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
struct ChunkChoice {
    #[serde(default)]
    index: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    delta: Option<ChunkDelta>,
    #[serde(default)]
    finish_reason: Option<String>,
    #[serde(flatten)]
    rest: Map<String, Value>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
struct ChunkDelta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tool_calls: Option<Vec<ToolCallDelta>>,
    #[serde(flatten)]
    rest: Map<String, Value>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
struct ToolCallDelta {
    #[serde(default)]
    index: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    function: Option<FunctionDelta>,
    #[serde(flatten)]
    rest: Map<String, Value>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
struct FunctionDelta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    arguments: Option<String>,
    #[serde(flatten)]
    rest: Map<String, Value>,
}

impl ChunkDelta {
    /// Adds released text to the delta of `channel`.
    fn append(&mut self, channel: Channel, text: &str) {
        match channel {
            Channel::Args(_, tool) => {
                let calls = self.tool_calls.get_or_insert_with(Vec::new);
                let call = match calls.iter().position(|c| c.index == tool) {
                    Some(i) => &mut calls[i],
                    None => {
                        calls.push(ToolCallDelta {
                            index: tool,
                            ..Default::default()
                        });
                        let last = calls.len() - 1;
                        &mut calls[last]
                    }
                };
                call.function
                    .get_or_insert_with(FunctionDelta::default)
                    .arguments
                    .get_or_insert_with(String::new)
                    .push_str(text);
            }
            Channel::Text(..) | Channel::Block(_) => {
                self.content.get_or_insert_with(String::new).push_str(text);
            }
        }
    }

    /// Drops text fields left empty; true when nothing is left.
    fn prune(&mut self) -> bool {
        if self.content.as_deref() == Some("") {
            self.content = None;
        }
        if let Some(calls) = &mut self.tool_calls {
            calls.retain(|c| {
                has_values(&c.rest)
                    || c.function.as_ref().is_some_and(|f| {
                        has_values(&f.rest) || f.arguments.as_deref().is_some_and(|a| !a.is_empty())
                    })
            });
            if calls.is_empty() {
                self.tool_calls = None;
            }
        }
        self.content.is_none() && self.tool_calls.is_none() && !has_values(&self.rest)
    }
}

impl Chunk {
    /// Removes what holding text back left empty; true when the chunk carries nothing
    /// any more and is not worth sending.
    fn prune(&mut self) -> bool {
        // The envelope (`id`, `model`, …) repeats in every chunk; only usage counts.
        let mut hollow = self.rest.get("usage").is_none_or(Value::is_null);
        for choice in self.choices.iter_mut().flatten() {
            let delta_empty = choice.delta.as_mut().is_none_or(ChunkDelta::prune);
            hollow &= delta_empty && choice.finish_reason.is_none() && !has_values(&choice.rest);
        }
        hollow && self.choices.as_ref().is_some_and(|c| !c.is_empty())
    }
}

/// Anthropic `content_block_start`.
#[derive(Debug, Deserialize, Serialize)]
struct BlockStart {
    #[serde(default)]
    index: u32,
    content_block: BlockHead,
    #[serde(flatten)]
    rest: Map<String, Value>,
}

#[derive(Debug, Deserialize, Serialize)]
struct BlockHead {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    text: Option<String>,
    #[serde(flatten)]
    rest: Map<String, Value>,
}

/// Anthropic `content_block_delta`.
#[derive(Debug, Deserialize, Serialize)]
struct BlockDeltaEvent {
    #[serde(default)]
    index: u32,
    delta: BlockDelta,
    #[serde(flatten)]
    rest: Map<String, Value>,
}

#[derive(Debug, Deserialize, Serialize)]
struct BlockDelta {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    partial_json: Option<String>,
    #[serde(flatten)]
    rest: Map<String, Value>,
}

/// Anthropic `content_block_stop`.
#[derive(Debug, Deserialize)]
struct BlockStop {
    #[serde(default)]
    index: u32,
}

/// Responses `response.output_text.delta` and `response.function_call_arguments.delta`.
#[derive(Debug, Deserialize, Serialize)]
struct ResponsesDelta {
    #[serde(default)]
    delta: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    output_index: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    content_index: Option<u32>,
    #[serde(flatten)]
    rest: Map<String, Value>,
}
