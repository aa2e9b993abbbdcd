//! Streaming responses.
//!
//! [`UpstreamStream`] reads the provider's SSE body with the idle timeout, cuts it into
//! events and hands each to a [`StreamTranslator`], which writes the client's bytes:
//! the event itself when both sides speak the same API (a pass-through that only peeks
//! at usage), or the translated events. Each network read produces at most one write to
//! the client: nothing is held back beyond an incomplete event.
//!
//! A stream that ends without its API's terminal event (`[DONE]`, `message_stop`,
//! `response.completed`, a Gemini `finishReason`) is truncated, and is reported as a
//! failure, never as a normal end.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;

use sluice_shared::openai::{self, ChatChunk, Usage};
use sluice_shared::sse::{self, SseDecoder, SseEvent};
use sluice_shared::translate::stream::{
    AnthropicToOpenAi, ChunkFactory, GeminiToOpenAi, OpenAiToAnthropic, StreamFailure,
};
use sluice_shared::{anthropic, gemini};

use crate::error::error_chain;
use crate::providers::Decode;

/// Why a stream stopped early.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamError {
    /// No bytes for `stream_idle_timeout_ms`.
    Idle,
    /// The connection broke.
    Read(String),
    /// The body ended without the terminal event.
    Truncated,
    /// The provider sent an error event.
    Provider(StreamFailure),
    /// Not SSE, or an event that does not parse.
    Protocol(String),
    /// A complete (non-streamed) answer longer than `routing.max_response_bytes`.
    TooLarge(usize),
}

impl std::fmt::Display for StreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StreamError::Idle => {
                f.write_str("the provider's stream went silent past the idle timeout")
            }
            StreamError::Read(e) => write!(f, "the provider's stream broke: {e}"),
            StreamError::Truncated => {
                f.write_str("the provider's stream ended before its final event")
            }
            StreamError::Provider(p) => write!(
                f,
                "the provider reported an error mid-stream: {}: {}",
                p.kind, p.message
            ),
            StreamError::Protocol(e) => write!(f, "the provider's stream could not be read: {e}"),
            StreamError::TooLarge(cap) => write!(
                f,
                "the provider's answer is larger than this gateway's limit of {cap} bytes (routing.max_response_bytes); ask for less (fewer inputs, a lower max_tokens) or raise the limit"
            ),
        }
    }
}

/// Per-stream translation state; see the module docs.
#[derive(Debug)]
pub enum StreamTranslator {
    PassOpenAi {
        strip_usage: bool,
        usage: Option<Usage>,
        done: bool,
    },
    PassResponses {
        usage: Option<Usage>,
        done: bool,
    },
    PassAnthropic {
        usage: anthropic::Usage,
        done: bool,
    },
    AnthropicToOpenAi {
        inner: AnthropicToOpenAi,
        include_usage: bool,
        done: bool,
    },
    GeminiToOpenAi {
        inner: GeminiToOpenAi,
        include_usage: bool,
        finished: bool,
    },
    OpenAiToAnthropic {
        inner: OpenAiToAnthropic,
        done: bool,
    },
    GeminiToAnthropic {
        inner: GeminiToOpenAi,
        encoder: OpenAiToAnthropic,
        finished: bool,
    },
}

fn parse<T: serde::de::DeserializeOwned>(data: &str) -> Result<T, StreamError> {
    serde_json::from_str(data).map_err(|e| StreamError::Protocol(e.to_string()))
}

fn put_chunk(out: &mut BytesMut, chunk: &ChatChunk) {
    if let Ok(json) = serde_json::to_string(chunk) {
        out.put(sse::encode(None, &json));
    }
}

fn put_anthropic(out: &mut BytesMut, event: &anthropic::StreamEvent) {
    if let Ok(json) = serde_json::to_string(event) {
        out.put(sse::encode(Some(event.name()), &json));
    }
}

impl StreamTranslator {
    /// `factory` names the chunks an OpenAI client sees when the provider is not OpenAI;
    /// `message_id`/`model` name the message an Anthropic client sees.
    pub fn new(decode: Decode, factory: ChunkFactory) -> Self {
        match decode {
            Decode::PassOpenAiChat { strip_usage } => StreamTranslator::PassOpenAi {
                strip_usage,
                usage: None,
                done: false,
            },
            Decode::PassResponses | Decode::PassEmbeddings => StreamTranslator::PassResponses {
                usage: None,
                done: false,
            },
            Decode::PassAnthropic | Decode::GeminiCountToAnthropic => {
                StreamTranslator::PassAnthropic {
                    usage: anthropic::Usage::default(),
                    done: false,
                }
            }
            Decode::AnthropicToOpenAi { include_usage } => StreamTranslator::AnthropicToOpenAi {
                inner: AnthropicToOpenAi::new(factory),
                include_usage,
                done: false,
            },
            Decode::GeminiToOpenAi { include_usage } => StreamTranslator::GeminiToOpenAi {
                inner: GeminiToOpenAi::new(factory),
                include_usage,
                finished: false,
            },
            Decode::OpenAiToAnthropic => StreamTranslator::OpenAiToAnthropic {
                inner: OpenAiToAnthropic::new(anthropic_id(&factory.id), factory.model),
                done: false,
            },
            Decode::GeminiToAnthropic => StreamTranslator::GeminiToAnthropic {
                encoder: OpenAiToAnthropic::new(anthropic_id(&factory.id), factory.model.clone()),
                inner: GeminiToOpenAi::new(factory),
                finished: false,
            },
        }
    }

    /// Whether the terminal event has been seen (the client stream can end now).
    fn is_done(&self) -> bool {
        match self {
            StreamTranslator::PassOpenAi { done, .. }
            | StreamTranslator::PassResponses { done, .. }
            | StreamTranslator::PassAnthropic { done, .. }
            | StreamTranslator::AnthropicToOpenAi { done, .. }
            | StreamTranslator::OpenAiToAnthropic { done, .. } => *done,
            // Gemini has no terminal event: its stream simply ends after `finishReason`.
            StreamTranslator::GeminiToOpenAi { .. }
            | StreamTranslator::GeminiToAnthropic { .. } => false,
        }
    }

    /// Whether the upstream body may end here without being truncated.
    fn may_end(&self) -> bool {
        match self {
            StreamTranslator::GeminiToOpenAi { finished, .. }
            | StreamTranslator::GeminiToAnthropic { finished, .. } => *finished,
            other => other.is_done(),
        }
    }

    /// Usage so far, in OpenAI terms.
    pub fn usage(&self) -> Option<Usage> {
        match self {
            StreamTranslator::PassOpenAi { usage, .. }
            | StreamTranslator::PassResponses { usage, .. } => usage.clone(),
            StreamTranslator::PassAnthropic { usage, .. } => {
                Some(sluice_shared::translate::anthropic::usage_to_openai(usage))
            }
            StreamTranslator::AnthropicToOpenAi { inner, .. } => Some(inner.usage()),
            StreamTranslator::GeminiToOpenAi { inner, .. }
            | StreamTranslator::GeminiToAnthropic { inner, .. } => Some(inner.usage()),
            StreamTranslator::OpenAiToAnthropic { .. } => None,
        }
        .filter(|u| u.total_tokens > 0 || u.prompt_tokens > 0 || u.completion_tokens > 0)
    }

    /// Handles one upstream event, appending the client's bytes to `out`.
    pub fn on_event(&mut self, event: SseEvent, out: &mut BytesMut) -> Result<(), StreamError> {
        if event.is_empty() {
            return Ok(());
        }
        match self {
            StreamTranslator::PassOpenAi {
                strip_usage,
                usage,
                done,
            } => {
                if event.data == "[DONE]" {
                    *done = true;
                    out.put(event.raw);
                    return Ok(());
                }
                if event.data.contains("\"usage\"") || event.data.contains("\"error\"") {
                    let probe: openai::UsageProbe = parse(&event.data)?;
                    if let Some(error) = probe.error {
                        return Err(StreamError::Provider(StreamFailure {
                            kind: error.kind,
                            message: error.message,
                        }));
                    }
                    if let Some(u) = probe.usage {
                        *usage = Some(u);
                        if *strip_usage && probe.choices.is_some_and(|c| c.is_empty()) {
                            return Ok(());
                        }
                    }
                }
                out.put(event.raw);
            }
            StreamTranslator::PassResponses { usage, done } => {
                let kind = event.event.as_deref().unwrap_or_default();
                match kind {
                    "response.completed" | "response.incomplete" => {
                        let probe: openai::ResponsesUsageProbe = parse(&event.data)?;
                        *usage = probe.into_usage();
                        *done = true;
                    }
                    "response.failed" | "error" => {
                        *done = true;
                    }
                    _ => {}
                }
                out.put(event.raw);
            }
            StreamTranslator::PassAnthropic { usage, done } => {
                match event.event.as_deref() {
                    Some("message_start") | Some("message_delta") => {
                        let probe: anthropic::UsageProbe = parse(&event.data)?;
                        let u = probe.usage.or_else(|| probe.message.and_then(|m| m.usage));
                        if let Some(u) = u {
                            if let Some(i) = u.input_tokens {
                                usage.input_tokens = i;
                            }
                            if u.output_tokens > 0 {
                                usage.output_tokens = u.output_tokens;
                            }
                            if u.cache_read_input_tokens.is_some() {
                                usage.cache_read_input_tokens = u.cache_read_input_tokens;
                            }
                            if u.cache_creation_input_tokens.is_some() {
                                usage.cache_creation_input_tokens = u.cache_creation_input_tokens;
                            }
                        }
                    }
                    Some("message_stop") => *done = true,
                    Some("error") => {
                        let body: anthropic::ErrorBody = parse(&event.data)?;
                        return Err(StreamError::Provider(StreamFailure {
                            kind: body.error.kind,
                            message: body.error.message,
                        }));
                    }
                    _ => {}
                }
                out.put(event.raw);
            }
            StreamTranslator::AnthropicToOpenAi { inner, done, .. } => {
                let parsed: anthropic::StreamEvent = match parse(&event.data) {
                    Ok(e) => e,
                    // Event types added to the API later are skipped, not fatal.
                    Err(_) if event.event.as_deref() != Some("error") => return Ok(()),
                    Err(e) => return Err(e),
                };
                if matches!(parsed, anthropic::StreamEvent::MessageStop) {
                    *done = true;
                }
                for chunk in inner.on_event(parsed).map_err(StreamError::Provider)? {
                    put_chunk(out, &chunk);
                }
            }
            StreamTranslator::GeminiToOpenAi {
                inner, finished, ..
            } => {
                let parsed: gemini::GenerateContentResponse = parse(&event.data)?;
                if parsed.candidates.iter().any(|c| c.finish_reason.is_some()) {
                    *finished = true;
                }
                for chunk in inner.on_event(parsed).map_err(StreamError::Provider)? {
                    put_chunk(out, &chunk);
                }
            }
            StreamTranslator::OpenAiToAnthropic { inner, done } => {
                if event.data == "[DONE]" {
                    *done = true;
                    return Ok(());
                }
                let value: serde_json::Value = parse(&event.data)?;
                if let Some(error) = value.get("error") {
                    return Err(StreamError::Provider(StreamFailure {
                        kind: error
                            .get("type")
                            .and_then(|t| t.as_str())
                            .unwrap_or("error")
                            .into(),
                        message: error
                            .get("message")
                            .and_then(|t| t.as_str())
                            .unwrap_or_default()
                            .into(),
                    }));
                }
                let chunk: ChatChunk = serde_json::from_value(value)
                    .map_err(|e| StreamError::Protocol(e.to_string()))?;
                for e in inner.on_chunk(chunk) {
                    put_anthropic(out, &e);
                }
            }
            StreamTranslator::GeminiToAnthropic {
                inner,
                encoder,
                finished,
            } => {
                let parsed: gemini::GenerateContentResponse = parse(&event.data)?;
                if parsed.candidates.iter().any(|c| c.finish_reason.is_some()) {
                    *finished = true;
                }
                for chunk in inner.on_event(parsed).map_err(StreamError::Provider)? {
                    for e in encoder.on_chunk(chunk) {
                        put_anthropic(out, &e);
                    }
                }
            }
        }
        Ok(())
    }

    /// The upstream finished properly: append the client's closing events.
    pub fn finish(&mut self, out: &mut BytesMut) {
        match self {
            StreamTranslator::PassOpenAi { .. }
            | StreamTranslator::PassResponses { .. }
            | StreamTranslator::PassAnthropic { .. } => {}
            StreamTranslator::AnthropicToOpenAi {
                inner,
                include_usage,
                ..
            } => {
                if *include_usage {
                    put_chunk(out, &inner.factory().usage_chunk(inner.usage()));
                }
                out.put(&b"data: [DONE]\n\n"[..]);
            }
            StreamTranslator::GeminiToOpenAi {
                inner,
                include_usage,
                ..
            } => {
                if *include_usage {
                    put_chunk(out, &inner.factory().usage_chunk(inner.usage()));
                }
                out.put(&b"data: [DONE]\n\n"[..]);
            }
            StreamTranslator::OpenAiToAnthropic { inner, .. } => {
                for e in inner.finish() {
                    put_anthropic(out, &e);
                }
            }
            StreamTranslator::GeminiToAnthropic { inner, encoder, .. } => {
                let usage = inner.usage();
                for e in encoder.on_chunk(inner.factory().usage_chunk(usage)) {
                    put_anthropic(out, &e);
                }
                for e in encoder.finish() {
                    put_anthropic(out, &e);
                }
            }
        }
    }

    /// Usage for the record when the translator itself does not track it
    /// (OpenAI → Anthropic reads it from the chunks it re-encodes).
    pub fn take_usage_from_encoder(&self) -> bool {
        matches!(self, StreamTranslator::OpenAiToAnthropic { .. })
    }
}

fn anthropic_id(id: &str) -> String {
    if id.starts_with("msg_") {
        id.to_owned()
    } else {
        format!("msg_{}", id.trim_start_matches("chatcmpl-"))
    }
}

/// The provider's body, read event by event.
pub struct UpstreamStream {
    body: Incoming,
    decoder: SseDecoder,
    pub translator: StreamTranslator,
    idle: Duration,
    ended: bool,
    /// Usage seen in OpenAI chunks on their way to an Anthropic client.
    pub usage_probe: Option<Usage>,
    content_seen: bool,
}

/// Which API the provider streams in, for recognising content-bearing events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UpstreamShape {
    OpenAiChat,
    Responses,
    Anthropic,
    Gemini,
}

/// The parts of an OpenAI chunk that show whether it carries content.
#[derive(Debug, Default, serde::Deserialize)]
struct ContentProbe {
    #[serde(default)]
    choices: Vec<ContentProbeChoice>,
}

#[derive(Debug, Default, serde::Deserialize)]
struct ContentProbeChoice {
    #[serde(default)]
    delta: ContentProbeDelta,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Debug, Default, serde::Deserialize)]
struct ContentProbeDelta {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    reasoning_content: Option<String>,
    #[serde(default)]
    refusal: Option<String>,
    #[serde(default)]
    tool_calls: Option<serde::de::IgnoredAny>,
}

fn carries_content(shape: UpstreamShape, event: &SseEvent) -> bool {
    let name = event.event.as_deref().unwrap_or_default();
    match shape {
        UpstreamShape::OpenAiChat => {
            if event.data == "[DONE]" {
                return true;
            }
            let Ok(probe) = serde_json::from_str::<ContentProbe>(&event.data) else {
                return false;
            };
            probe.choices.iter().any(|c| {
                let d = &c.delta;
                c.finish_reason.is_some()
                    || d.tool_calls.is_some()
                    || [&d.content, &d.reasoning_content, &d.refusal]
                        .iter()
                        .any(|t| t.as_deref().is_some_and(|t| !t.is_empty()))
            })
        }
        UpstreamShape::Responses => {
            name.ends_with(".delta")
                || matches!(
                    name,
                    "response.completed" | "response.incomplete" | "response.failed"
                )
        }
        UpstreamShape::Anthropic => {
            matches!(
                name,
                "content_block_delta" | "message_delta" | "message_stop"
            )
        }
        UpstreamShape::Gemini => true,
    }
}

impl StreamTranslator {
    fn upstream_shape(&self) -> UpstreamShape {
        match self {
            StreamTranslator::PassOpenAi { .. } | StreamTranslator::OpenAiToAnthropic { .. } => {
                UpstreamShape::OpenAiChat
            }
            StreamTranslator::PassResponses { .. } => UpstreamShape::Responses,
            StreamTranslator::PassAnthropic { .. } | StreamTranslator::AnthropicToOpenAi { .. } => {
                UpstreamShape::Anthropic
            }
            StreamTranslator::GeminiToOpenAi { .. }
            | StreamTranslator::GeminiToAnthropic { .. } => UpstreamShape::Gemini,
        }
    }
}

impl std::fmt::Debug for UpstreamStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamStream")
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl UpstreamStream {
    pub fn new(
        response: http::Response<Incoming>,
        translator: StreamTranslator,
        idle: Duration,
    ) -> Self {
        UpstreamStream {
            body: response.into_body(),
            decoder: SseDecoder::new(),
            translator,
            idle,
            ended: false,
            usage_probe: None,
            content_seen: false,
        }
    }

    /// The next bytes for the client; `Ok(None)` once the stream has ended properly.
    pub async fn next_output(&mut self) -> Result<Option<Bytes>, StreamError> {
        let mut out = BytesMut::new();
        if self.ended {
            self.drain().await;
            return Ok(None);
        }
        loop {
            if self.ended {
                return Ok((!out.is_empty()).then(|| out.freeze()));
            }
            while let Some(event) = self.decoder.next_event() {
                self.observe(&event);
                self.translator.on_event(event, &mut out)?;
                if self.translator.is_done() {
                    self.translator.finish(&mut out);
                    self.ended = true;
                    break;
                }
            }
            if !out.is_empty() {
                return Ok(Some(out.freeze()));
            }
            if self.ended {
                continue;
            }
            match tokio::time::timeout(self.idle, self.body.frame()).await {
                Err(_) => return Err(StreamError::Idle),
                Ok(Some(Ok(frame))) => {
                    if let Some(chunk) = frame.data_ref() {
                        self.decoder
                            .push(chunk)
                            .map_err(|e| StreamError::Protocol(e.to_string()))?;
                    }
                }
                Ok(Some(Err(e))) => return Err(StreamError::Read(error_chain(&e))),
                Ok(None) => {
                    if let Some(event) = self.decoder.finish() {
                        self.observe(&event);
                        self.translator.on_event(event, &mut out)?;
                    }
                    if !self.translator.may_end() {
                        return Err(StreamError::Truncated);
                    }
                    self.translator.finish(&mut out);
                    self.ended = true;
                }
            }
        }
    }

    /// After the terminal event, reads the rest of the body (normally just the end of the
    /// chunked encoding) so the connection goes back to the pool instead of being cut.
    /// Bounded in bytes and by the idle timeout; anything after the terminal event is
    /// not the client's.
    async fn drain(&mut self) {
        const MAX_TRAILING_BYTES: usize = 64 * 1024;
        let mut seen = 0;
        while seen < MAX_TRAILING_BYTES {
            match tokio::time::timeout(self.idle, self.body.frame()).await {
                Ok(Some(Ok(frame))) => seen += frame.data_ref().map_or(1, Bytes::len),
                _ => return,
            }
        }
    }

    /// Usage as far as it is known.
    pub fn usage(&self) -> Option<Usage> {
        self.translator.usage().or_else(|| self.usage_probe.clone())
    }

    /// Whether an event with content (not just framing) has been read.
    pub fn content_seen(&self) -> bool {
        self.content_seen
    }

    fn observe(&mut self, event: &SseEvent) {
        if !self.content_seen {
            self.content_seen = carries_content(self.translator.upstream_shape(), event);
        }
        if self.translator.take_usage_from_encoder()
            && event.data.contains("\"usage\"")
            && let Ok(probe) = serde_json::from_str::<openai::UsageProbe>(&event.data)
            && probe.usage.is_some()
        {
            self.usage_probe = probe.usage;
        }
    }
}
