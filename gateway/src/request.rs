//! The client request as the gateway holds it: which surface was called, the parsed
//! body, and the few fields every layer below reads (model, stream, fallbacks, the
//! Anthropic version headers). Built by `api`, read by the engine, guardrails, routing
//! and the providers; it imports nothing of the gateway but [`crate::error::Flavor`].

use http::{HeaderName, HeaderValue};

use sluice_shared::anthropic;
use sluice_shared::openai::ChatRequest;

use crate::error::Flavor;

/// The response header that names a request (the same id as its audit record).
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Sets [`REQUEST_ID_HEADER`] to `id` (ids are hex, so this never fails in practice; an
/// id that is not a header value is left out rather than sent broken).
pub fn stamp_request_id(headers: &mut http::HeaderMap, id: &str) {
    if let Ok(v) = HeaderValue::from_str(id) {
        headers.insert(REQUEST_ID_HEADER, v);
    }
}

/// Which gateway surface the client called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientApi {
    /// `POST /v1/chat/completions`
    Chat,
    /// `POST /v1/responses`
    Responses,
    /// `POST /v1/embeddings`
    Embeddings,
    /// `POST /anthropic/v1/messages`
    Messages,
    /// `POST /anthropic/v1/messages/count_tokens`
    CountTokens,
}

impl ClientApi {
    pub fn flavor(self) -> Flavor {
        match self {
            ClientApi::Messages | ClientApi::CountTokens => Flavor::Anthropic,
            _ => Flavor::OpenAi,
        }
    }

    /// Label for metrics and records.
    pub fn label(self) -> &'static str {
        match self {
            ClientApi::Chat => "chat_completions",
            ClientApi::Responses => "responses",
            ClientApi::Embeddings => "embeddings",
            ClientApi::Messages => "messages",
            ClientApi::CountTokens => "count_tokens",
        }
    }
}

/// The parsed client body. Chat and Messages are typed because they translate; the
/// Responses and Embeddings APIs only pass through, so they stay JSON objects.
#[derive(Debug, Clone)]
pub enum ClientBody {
    Chat(ChatRequest),
    Messages(anthropic::MessagesRequest),
    Json(serde_json::Map<String, serde_json::Value>),
}

/// A client request on its way through the gateway.
#[derive(Debug, Clone)]
pub struct Inbound {
    pub api: ClientApi,
    pub body: ClientBody,
    /// The model string as the client sent it.
    pub model: String,
    pub stream: bool,
    /// OpenAI `stream_options.include_usage` as the client sent it.
    pub wants_stream_usage: bool,
    /// The request's own fallbacks (`fallbacks` body field or `x-sluice-fallbacks`).
    pub fallbacks: Vec<String>,
    /// The client's headers that select provider behaviour ([`is_forwarded_header`]):
    /// each protocol sends on its own (`anthropic-*` to Anthropic, `openai-beta` to
    /// OpenAI), never another protocol's.
    pub forward_headers: Vec<(HeaderName, HeaderValue)>,
    /// The query string the client sent (Claude Code sends `beta=true`), sent on to
    /// Anthropic providers of an Anthropic request.
    pub query: Option<String>,
}

/// Whether a client header is one that selects provider behaviour and is sent on:
/// `anthropic-version`, `anthropic-beta` and every other `anthropic-*`, and `openai-beta`.
/// Credentials never are (they are not among these).
pub fn is_forwarded_header(name: &HeaderName) -> bool {
    name.as_str().starts_with("anthropic-") || name == "openai-beta"
}

/// The client's forwarded headers ([`is_forwarded_header`]), in order.
pub fn forwarded_headers(headers: &http::HeaderMap) -> Vec<(HeaderName, HeaderValue)> {
    headers
        .iter()
        .filter(|(name, _)| is_forwarded_header(name))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect()
}

impl Inbound {
    /// The output-token cap the client set, if any (for cost estimates).
    pub fn max_output_tokens(&self) -> Option<u64> {
        match &self.body {
            ClientBody::Chat(r) => r.max_output_tokens().map(u64::from),
            ClientBody::Messages(r) => r.max_tokens.map(u64::from),
            ClientBody::Json(m) => m
                .get("max_output_tokens")
                .and_then(serde_json::Value::as_u64),
        }
    }
}
