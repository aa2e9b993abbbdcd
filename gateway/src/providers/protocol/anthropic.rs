//! The Anthropic Messages protocol: Messages and token counting pass through (the
//! client's `anthropic-version` and `anthropic-beta` forwarded); OpenAI chat clients are
//! translated to and from Messages.

use bytes::{BufMut as _, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue};

use sluice_shared::anthropic::{self, StreamEvent};
use sluice_shared::openai::Usage;
use sluice_shared::sse::SseEvent;
use sluice_shared::translate::stream::{AnthropicToOpenAi, ChunkFactory, StreamFailure};
use sluice_shared::translate::{self, ResponseMeta};

use super::adapter::{
    Adapter, DONE, Endpoint, Plan, StreamError, StreamRead, anthropic_usage, counted, forward,
    parse_event, parse_url, put_chunk, request_json, response_json, unreadable, untranslatable,
};
use crate::error::{Flavor, GatewayError};
use crate::request::{ClientApi, ClientBody, Inbound};

/// The Anthropic Messages protocol.
#[derive(Debug, Clone, Copy)]
pub struct Anthropic;

/// How an Anthropic answer is read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decode {
    /// An Anthropic client (messages and count_tokens).
    Pass,
    /// An OpenAI chat client; `include_usage`: it asked for the usage chunk.
    ToOpenAi { include_usage: bool },
}

impl Decode {
    /// Every way an Anthropic answer is read (for exhaustive tests and fuzzing).
    pub const EVERY: [Decode; 3] = [
        Decode::Pass,
        Decode::ToOpenAi {
            include_usage: false,
        },
        Decode::ToOpenAi {
            include_usage: true,
        },
    ];
}

/// The client's `anthropic-*` headers (`anthropic-beta` lists repeated or not), and
/// `anthropic-version` (the client's, or the default).
fn version_headers(inbound: &Inbound, headers: &mut HeaderMap) {
    forward(inbound, "anthropic-", headers);
    if !headers.contains_key("anthropic-version") {
        headers.insert(
            "anthropic-version",
            HeaderValue::from_static(anthropic::DEFAULT_VERSION),
        );
    }
}

/// `path` below the base URL, with the client's query string (Claude Code's `beta=true`).
fn url_with_query(
    endpoint: &Endpoint,
    path: &str,
    query: Option<&str>,
) -> Result<http::Uri, GatewayError> {
    match query {
        None => endpoint.url(path),
        Some(query) => parse_url(&format!("{}/{path}?{query}", endpoint.base_url())),
    }
}

impl Adapter for Anthropic {
    type Decode = Decode;
    type Stream = Stream;

    fn credential(&self, secret: &str) -> (HeaderName, String) {
        (HeaderName::from_static("x-api-key"), secret.to_owned())
    }

    fn error_message(&self, body: &[u8]) -> Option<String> {
        serde_json::from_slice::<anthropic::ErrorBody>(body)
            .ok()
            .map(|b| format!("{}: {}", b.error.kind, b.error.message))
    }

    fn error_flavor(&self) -> Option<Flavor> {
        Some(Flavor::Anthropic)
    }

    fn prepare(
        &self,
        endpoint: &Endpoint,
        inbound: &mut Inbound,
        model: &str,
        headers: &mut HeaderMap,
    ) -> Result<Plan<Decode>, GatewayError> {
        version_headers(inbound, headers);
        match &mut inbound.body {
            ClientBody::Chat(req) => {
                let mut out = translate::anthropic::request_from_openai(req.clone())
                    .map_err(untranslatable)?;
                out.model = model.to_owned();
                out.stream = inbound.stream.then_some(true);
                Ok(Plan::Call {
                    url: endpoint.url("v1/messages")?,
                    body: request_json(&out)?,
                    decode: Decode::ToOpenAi {
                        include_usage: inbound.wants_stream_usage,
                    },
                })
            }
            ClientBody::Messages(req) => {
                req.model = model.to_owned();
                let path = if inbound.api == ClientApi::CountTokens {
                    "v1/messages/count_tokens"
                } else {
                    "v1/messages"
                };
                Ok(Plan::Call {
                    url: url_with_query(endpoint, path, inbound.query.as_deref())?,
                    body: request_json(&*req)?,
                    decode: Decode::Pass,
                })
            }
            ClientBody::Json(_) => Err(endpoint.unsupported_json_api(inbound.api)),
        }
    }

    fn decode_body(
        decode: Decode,
        body: Bytes,
        meta: &ResponseMeta,
    ) -> Result<(Bytes, Option<Usage>), GatewayError> {
        match decode {
            Decode::Pass => {
                let probe: anthropic::UsageProbe =
                    serde_json::from_slice(&body).map_err(|e| unreadable("response", e))?;
                Ok((body, probe.usage.map(anthropic_usage)))
            }
            Decode::ToOpenAi { .. } => {
                let resp: anthropic::MessagesResponse =
                    serde_json::from_slice(&body).map_err(|e| unreadable("message", e))?;
                let out = translate::anthropic::response_to_openai(resp, meta);
                let usage = out.usage.clone();
                Ok((response_json(&out)?, usage))
            }
        }
    }

    fn stream(decode: Decode, factory: ChunkFactory) -> Stream {
        match decode {
            Decode::Pass => Stream::Pass {
                usage: anthropic::Usage::default(),
                done: false,
            },
            Decode::ToOpenAi { include_usage } => Stream::ToOpenAi {
                inner: AnthropicToOpenAi::new(factory),
                include_usage,
                done: false,
            },
        }
    }
}

/// A streamed Anthropic answer.
#[derive(Debug)]
pub enum Stream {
    /// Events passed through; usage read from `message_start` and `message_delta`.
    Pass { usage: anthropic::Usage, done: bool },
    /// Events translated to OpenAI chat chunks.
    ToOpenAi {
        inner: AnthropicToOpenAi,
        include_usage: bool,
        done: bool,
    },
}

impl StreamRead for Stream {
    fn on_event(&mut self, event: SseEvent, out: &mut BytesMut) -> Result<(), StreamError> {
        if event.is_empty() {
            return Ok(());
        }
        match self {
            Stream::Pass { usage, done } => {
                match event.event.as_deref() {
                    Some("message_start") | Some("message_delta") => {
                        let probe: anthropic::UsageProbe = parse_event(&event.data)?;
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
                        let body: anthropic::ErrorBody = parse_event(&event.data)?;
                        return Err(StreamError::Provider(StreamFailure {
                            kind: body.error.kind,
                            message: body.error.message,
                        }));
                    }
                    _ => {}
                }
                out.put(event.raw);
            }
            Stream::ToOpenAi { inner, done, .. } => {
                let parsed: StreamEvent = match parse_event(&event.data) {
                    Ok(e) => e,
                    // Event types added to the API later are skipped, not fatal.
                    Err(_) if event.event.as_deref() != Some("error") => return Ok(()),
                    Err(e) => return Err(e),
                };
                if matches!(parsed, StreamEvent::MessageStop) {
                    *done = true;
                }
                for chunk in inner.on_event(parsed).map_err(StreamError::Provider)? {
                    put_chunk(out, &chunk);
                }
            }
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut BytesMut) {
        if let Stream::ToOpenAi {
            inner,
            include_usage,
            ..
        } = self
        {
            if *include_usage {
                put_chunk(out, &inner.factory().usage_chunk(inner.usage()));
            }
            out.put(DONE);
        }
    }

    fn is_done(&self) -> bool {
        match self {
            Stream::Pass { done, .. } | Stream::ToOpenAi { done, .. } => *done,
        }
    }

    fn usage(&self) -> Option<Usage> {
        counted(Some(match self {
            Stream::Pass { usage, .. } => translate::anthropic::usage_to_openai(usage),
            Stream::ToOpenAi { inner, .. } => inner.usage(),
        }))
    }

    fn carries_content(&self, event: &SseEvent) -> bool {
        matches!(
            event.event.as_deref().unwrap_or_default(),
            "content_block_delta" | "message_delta" | "message_stop"
        )
    }
}
