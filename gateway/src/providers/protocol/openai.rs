//! The OpenAI protocol (OpenAI, the OpenAI-compatible kinds, and Azure OpenAI, which
//! differs only in its URLs and key header): chat completions, the Responses API and
//! embeddings pass through; Anthropic Messages clients are translated to and from chat
//! completions, and their token counts estimated locally (there is no counting endpoint).

use bytes::{BufMut as _, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, Uri};

use sluice_shared::anthropic;
use sluice_shared::openai::{self, ChatChunk, ChatRequest, StreamOptions, Usage};
use sluice_shared::sse::SseEvent;
use sluice_shared::translate::stream::{ChunkFactory, OpenAiToAnthropic};
use sluice_shared::translate::{self, ResponseMeta};

use super::adapter::{
    Adapter, Endpoint, Plan, StreamError, StreamRead, anthropic_id, counted, forward,
    openai_stream_error, parse_event, parse_url, path_segment, put_anthropic, request_json,
    response_json, unreadable, untranslatable,
};
use crate::error::{Flavor, GatewayError};
use crate::request::{ClientApi, ClientBody, Inbound};

/// The OpenAI protocol; `azure`: Azure OpenAI's deployment URLs and `api-key` header.
#[derive(Debug, Clone, Copy)]
pub struct OpenAi {
    pub azure: bool,
}

/// How an OpenAI-protocol answer is read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decode {
    /// Chat completions both sides. `strip_usage`: the gateway added `include_usage` to a
    /// stream the client did not ask usage for, so the usage-only chunk is removed.
    Chat { strip_usage: bool },
    /// The Responses API both sides.
    Responses,
    /// Embeddings both sides.
    Embeddings,
    /// An Anthropic Messages client.
    ToAnthropic,
}

impl Decode {
    /// Every way an OpenAI answer is read (for exhaustive tests and fuzzing).
    pub const EVERY: [Decode; 5] = [
        Decode::Chat { strip_usage: false },
        Decode::Chat { strip_usage: true },
        Decode::Responses,
        Decode::Embeddings,
        Decode::ToAnthropic,
    ];
}

impl OpenAi {
    fn url(&self, endpoint: &Endpoint, path: &str, model: &str) -> Result<Uri, GatewayError> {
        if !self.azure {
            return endpoint.url(path);
        }
        let url = if path == "responses" {
            format!(
                "{}/responses?api-version={}",
                endpoint.base_url(),
                endpoint.api_version()
            )
        } else {
            format!(
                "{}/deployments/{}/{path}?api-version={}",
                endpoint.base_url(),
                path_segment(model)?,
                endpoint.api_version()
            )
        };
        parse_url(&url)
    }
}

impl Adapter for OpenAi {
    type Decode = Decode;
    type Stream = Stream;

    fn credential(&self, secret: &str) -> (HeaderName, String) {
        if self.azure {
            (HeaderName::from_static("api-key"), secret.to_owned())
        } else {
            (http::header::AUTHORIZATION, format!("Bearer {secret}"))
        }
    }

    fn error_message(&self, body: &[u8]) -> Option<String> {
        serde_json::from_slice::<openai::ErrorBody>(body)
            .ok()
            .map(|b| b.error.message)
    }

    fn error_flavor(&self) -> Option<Flavor> {
        Some(Flavor::OpenAi)
    }

    fn prepare(
        &self,
        endpoint: &Endpoint,
        inbound: &mut Inbound,
        model: &str,
        headers: &mut HeaderMap,
    ) -> Result<Plan<Decode>, GatewayError> {
        forward(inbound, "openai-", headers);
        let stream = inbound.stream;
        let api = inbound.api;
        let (path, body, decode) = match &mut inbound.body {
            ClientBody::Chat(req) => {
                req.model = model.to_owned();
                if stream && endpoint.kind.accepts_stream_usage_option() {
                    // Always ask for usage so it can be counted; the extra chunk is removed
                    // again if the client did not ask for it.
                    req.stream_options
                        .get_or_insert_with(StreamOptions::default)
                        .include_usage = Some(true);
                }
                let strip_usage = stream && !inbound.wants_stream_usage;
                (
                    "chat/completions",
                    request_json(&*req)?,
                    Decode::Chat { strip_usage },
                )
            }
            ClientBody::Messages(req) => {
                if api == ClientApi::CountTokens {
                    return Ok(Plan::Local(estimate_tokens(req)));
                }
                let mut out =
                    translate::anthropic::request_to_openai(req.clone()).map_err(untranslatable)?;
                out.model = model.to_owned();
                fit_translated_request(endpoint, &mut out);
                ("chat/completions", request_json(&out)?, Decode::ToAnthropic)
            }
            ClientBody::Json(map) => {
                map.insert("model".into(), serde_json::Value::String(model.to_owned()));
                let (path, decode) = match api {
                    ClientApi::Responses => ("responses", Decode::Responses),
                    _ => ("embeddings", Decode::Embeddings),
                };
                (path, request_json(&*map)?, decode)
            }
        };
        Ok(Plan::Call {
            url: self.url(endpoint, path, model)?,
            body,
            decode,
        })
    }

    fn decode_body(
        decode: Decode,
        body: Bytes,
        meta: &ResponseMeta,
    ) -> Result<(Bytes, Option<Usage>), GatewayError> {
        match decode {
            Decode::Chat { .. } | Decode::Embeddings => {
                let probe: openai::UsageProbe =
                    serde_json::from_slice(&body).map_err(|e| unreadable("response", e))?;
                Ok((body, probe.usage))
            }
            Decode::Responses => {
                let probe: openai::ResponsesUsageProbe =
                    serde_json::from_slice(&body).map_err(|e| unreadable("response", e))?;
                Ok((body, probe.into_usage()))
            }
            Decode::ToAnthropic => {
                let resp: openai::ChatResponse =
                    serde_json::from_slice(&body).map_err(|e| unreadable("completion", e))?;
                let usage = resp.usage.clone();
                let out = translate::anthropic::response_from_openai(resp, meta);
                Ok((response_json(&out)?, usage))
            }
        }
    }

    fn stream(decode: Decode, factory: ChunkFactory) -> Stream {
        match decode {
            Decode::Chat { strip_usage } => Stream::Chat {
                strip_usage,
                usage: None,
                done: false,
            },
            // Embeddings are never streamed; a stream that claims to be is read as events.
            Decode::Responses | Decode::Embeddings => Stream::Responses {
                usage: None,
                done: false,
            },
            Decode::ToAnthropic => Stream::ToAnthropic {
                inner: OpenAiToAnthropic::new(anthropic_id(&factory.id), factory.model),
                usage: None,
                done: false,
            },
        }
    }
}

/// OpenAI-protocol quirks for a request translated from another shape.
fn fit_translated_request(endpoint: &Endpoint, req: &mut ChatRequest) {
    if endpoint.kind.prefers_max_completion_tokens()
        && let Some(max) = req.max_tokens.take()
    {
        req.max_completion_tokens = Some(max);
    }
    if req.is_stream() && !endpoint.kind.accepts_stream_usage_option() {
        req.stream_options = None;
    }
}

/// A streamed OpenAI-protocol answer.
#[derive(Debug)]
pub enum Stream {
    /// Chat chunks passed through; usage peeked at (and the usage-only chunk dropped
    /// when `strip_usage`).
    Chat {
        strip_usage: bool,
        usage: Option<Usage>,
        done: bool,
    },
    /// Responses API events passed through; usage read from the completion event.
    Responses { usage: Option<Usage>, done: bool },
    /// Chat chunks re-encoded as Anthropic Messages events; usage read from the chunks.
    ToAnthropic {
        inner: OpenAiToAnthropic,
        usage: Option<Usage>,
        done: bool,
    },
}

impl StreamRead for Stream {
    fn on_event(&mut self, event: SseEvent, out: &mut BytesMut) -> Result<(), StreamError> {
        if event.is_empty() {
            return Ok(());
        }
        match self {
            Stream::Chat {
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
                    let probe: openai::UsageProbe = parse_event(&event.data)?;
                    if let Some(error) = probe.error {
                        return Err(openai_stream_error(error));
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
            Stream::Responses { usage, done } => {
                match event.event.as_deref().unwrap_or_default() {
                    "response.completed" | "response.incomplete" => {
                        let probe: openai::ResponsesUsageProbe = parse_event(&event.data)?;
                        *usage = probe.into_usage();
                        *done = true;
                    }
                    "response.failed" | "error" => *done = true,
                    _ => {}
                }
                out.put(event.raw);
            }
            Stream::ToAnthropic { inner, usage, done } => {
                if event.data == "[DONE]" {
                    *done = true;
                    return Ok(());
                }
                let value: serde_json::Value = parse_event(&event.data)?;
                if let Some(error) = value.get("error") {
                    let text = |field: &str, default: &str| {
                        error
                            .get(field)
                            .and_then(|t| t.as_str())
                            .unwrap_or(default)
                            .to_owned()
                    };
                    return Err(openai_stream_error(openai::ErrorObject {
                        message: text("message", ""),
                        kind: text("type", "error"),
                        param: None,
                        code: None,
                    }));
                }
                let chunk: ChatChunk = serde_json::from_value(value)
                    .map_err(|e| StreamError::Protocol(e.to_string()))?;
                if chunk.usage.is_some() {
                    usage.clone_from(&chunk.usage);
                }
                for e in inner.on_chunk(chunk) {
                    put_anthropic(out, &e);
                }
            }
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut BytesMut) {
        if let Stream::ToAnthropic { inner, .. } = self {
            for e in inner.finish() {
                put_anthropic(out, &e);
            }
        }
    }

    fn is_done(&self) -> bool {
        match self {
            Stream::Chat { done, .. }
            | Stream::Responses { done, .. }
            | Stream::ToAnthropic { done, .. } => *done,
        }
    }

    fn usage(&self) -> Option<Usage> {
        match self {
            Stream::Chat { usage, .. } | Stream::Responses { usage, .. } => counted(usage.clone()),
            // As the provider reported it, zeros included.
            Stream::ToAnthropic { usage, .. } => usage.clone(),
        }
    }

    fn carries_content(&self, event: &SseEvent) -> bool {
        match self {
            Stream::Chat { .. } | Stream::ToAnthropic { .. } => chunk_carries_content(event),
            Stream::Responses { .. } => {
                let name = event.event.as_deref().unwrap_or_default();
                name.ends_with(".delta")
                    || matches!(
                        name,
                        "response.completed" | "response.incomplete" | "response.failed"
                    )
            }
        }
    }
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

fn chunk_carries_content(event: &SseEvent) -> bool {
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

/// A local estimate of input tokens (about four characters per token) for providers that
/// have no counting endpoint. Marked as an estimate in the response header.
fn estimate_tokens(req: &anthropic::MessagesRequest) -> Bytes {
    let mut chars = req
        .system
        .as_ref()
        .map(|s| s.joined_text().len())
        .unwrap_or(0);
    for m in &req.messages {
        chars += match &m.content {
            anthropic::Content::Text(t) => t.len(),
            anthropic::Content::Blocks(blocks) => blocks
                .iter()
                .map(|b| {
                    b.text.as_ref().map_or(0, String::len)
                        + b.input.as_ref().map_or(0, |v| v.to_string().len())
                        + b.content.as_ref().map_or(0, |c| c.joined_text().len())
                })
                .sum(),
        };
    }
    for t in req.tools.iter().flatten() {
        chars += t.name.len()
            + t.description.as_ref().map_or(0, String::len)
            + t.input_schema.as_ref().map_or(0, |s| s.to_string().len());
    }
    let tokens = chars.div_ceil(4).max(1) as u64;
    let body = anthropic::CountTokensResponse {
        input_tokens: tokens,
    };
    Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
}
