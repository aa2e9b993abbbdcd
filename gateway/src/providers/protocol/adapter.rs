//! The shape every provider protocol has ([`Adapter`], [`StreamRead`]) and what the
//! protocols share: where a provider is ([`Endpoint`]), what one protocol plans for a
//! request ([`Plan`]), why a stream stops ([`StreamError`]) and small encoders.

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, StatusCode, Uri};

use sluice_shared::openai::{ChatChunk, Usage};
use sluice_shared::sse::{self, SseEvent};
use sluice_shared::translate::stream::{ChunkFactory, StreamFailure};
use sluice_shared::translate::{ResponseMeta, TranslateError};
use sluice_shared::{anthropic, openai};

use crate::config::kind::ProviderKind;
use crate::error::{ErrorKind, Flavor, GatewayError};
use crate::request::{ClientApi, Inbound};

/// One provider protocol: how a client request becomes the provider's, how the provider's
/// answer (whole or streamed) becomes the client's, how a key is sent and how an error
/// body reads. Statically dispatched from [`super::Decode`] and [`super::StreamTranslator`].
pub trait Adapter {
    /// How an answer in this protocol is read back, one variant per client API served.
    type Decode: Copy + std::fmt::Debug + Eq;
    /// A streamed answer in this protocol on its way to the client.
    type Stream: StreamRead;

    /// The header that carries `secret` (name, unencoded value).
    fn credential(&self, secret: &str) -> (HeaderName, String);

    /// The message inside an error body of this protocol, if it is the expected JSON.
    fn error_message(&self, body: &[u8]) -> Option<String>;

    /// The client API family that can receive this protocol's error bodies unchanged.
    fn error_flavor(&self) -> Option<Flavor>;

    /// The provider's request for `inbound`, sent to `model`; protocol headers go into
    /// `headers` (which already holds the provider's configured headers).
    fn prepare(
        &self,
        endpoint: &Endpoint,
        inbound: &mut Inbound,
        model: &str,
        headers: &mut HeaderMap,
    ) -> Result<Plan<Self::Decode>, GatewayError>;

    /// A complete (non-streamed) success body in the client's shape, with its usage.
    fn decode_body(
        decode: Self::Decode,
        body: Bytes,
        meta: &ResponseMeta,
    ) -> Result<(Bytes, Option<Usage>), GatewayError>;

    /// The translator for a streamed answer; `factory` names the chunks an OpenAI client
    /// sees when the provider is not OpenAI (and the message an Anthropic client sees).
    fn stream(decode: Self::Decode, factory: ChunkFactory) -> Self::Stream;
}

/// Per-stream state of one protocol's translation: each upstream SSE event in, the
/// client's bytes out. A stream that ends without its terminal event is truncated.
pub trait StreamRead {
    /// Handles one upstream event, appending the client's bytes to `out`.
    fn on_event(&mut self, event: SseEvent, out: &mut BytesMut) -> Result<(), StreamError>;
    /// The upstream finished properly: append the client's closing events.
    fn finish(&mut self, out: &mut BytesMut);
    /// Whether the terminal event has been seen (the client stream can end now).
    fn is_done(&self) -> bool;
    /// Whether the upstream body may end here without being truncated.
    fn may_end(&self) -> bool {
        self.is_done()
    }
    /// Usage so far, in OpenAI terms.
    fn usage(&self) -> Option<Usage>;
    /// Whether `event` carries content (a token, a tool call, a finish), not just framing.
    fn carries_content(&self, event: &SseEvent) -> bool;
}

/// What one protocol plans for a request.
#[derive(Debug)]
pub enum Plan<D> {
    /// Call `url` with `body`; read the answer with `decode`.
    Call { url: Uri, body: Bytes, decode: D },
    /// Answered without calling anyone: the body in the client's shape.
    Local(Bytes),
}

/// Where a provider is and what kind it is: what a protocol needs to build its URLs.
#[derive(Debug)]
pub struct Endpoint {
    pub name: String,
    pub kind: ProviderKind,
    base_url: String,
    api_version: String,
    /// Endpoints whose URL does not depend on the model, parsed once.
    fixed_urls: Vec<(&'static str, Uri)>,
}

/// Paths below the base URL that OpenAI- and Anthropic-protocol providers serve.
const FIXED_PATHS: [&str; 5] = [
    "chat/completions",
    "responses",
    "embeddings",
    "v1/messages",
    "v1/messages/count_tokens",
];

impl Endpoint {
    pub fn new(name: String, kind: ProviderKind, base_url: &str, api_version: String) -> Self {
        let base_url = base_url.trim_end_matches('/').to_owned();
        let fixed_urls = FIXED_PATHS
            .iter()
            .filter_map(|p| {
                format!("{base_url}/{p}")
                    .parse::<Uri>()
                    .ok()
                    .map(|u| (*p, u))
            })
            .collect();
        Endpoint {
            name,
            kind,
            base_url,
            api_version,
            fixed_urls,
        }
    }

    /// The base URL, without a trailing `/`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Azure's `api-version`.
    pub fn api_version(&self) -> &str {
        &self.api_version
    }

    /// `{base_url}/{path}`, parsed once for the fixed paths.
    pub fn url(&self, path: &str) -> Result<Uri, GatewayError> {
        match self.fixed_urls.iter().find(|(p, _)| *p == path) {
            Some((_, url)) => Ok(url.clone()),
            None => parse_url(&format!("{}/{path}", self.base_url)),
        }
    }

    /// The Responses API or embeddings, which only OpenAI-protocol providers serve.
    pub fn unsupported_json_api(&self, api: ClientApi) -> GatewayError {
        self.unsupported(match api {
            ClientApi::Responses => "the Responses API (/v1/responses)",
            _ => "embeddings (/v1/embeddings)",
        })
    }

    /// "`what` is not available on provider …": a client API this provider cannot serve.
    fn unsupported(&self, what: &str) -> GatewayError {
        GatewayError::new(
            ErrorKind::Unsupported,
            StatusCode::BAD_REQUEST,
            format!(
                "{what} is not available on provider `{}` (kind {}); route this model to an \
                 OpenAI-compatible provider",
                self.name,
                self.kind.name()
            ),
        )
    }
}

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

pub fn parse_url(url: &str) -> Result<Uri, GatewayError> {
    url.parse::<Uri>()
        .map_err(|e| GatewayError::invalid(format!("cannot build the provider URL `{url}`: {e}")))
}

/// A request that cannot be translated into the provider's protocol.
pub fn untranslatable(e: TranslateError) -> GatewayError {
    GatewayError::new(
        ErrorKind::Unsupported,
        StatusCode::BAD_REQUEST,
        e.to_string(),
    )
}

/// The provider's request body.
pub fn request_json<T: serde::Serialize>(value: &T) -> Result<Bytes, GatewayError> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|e| GatewayError::internal(format!("could not encode the provider request: {e}")))
}

/// The client's response body.
pub fn response_json<T: serde::Serialize>(value: &T) -> Result<Bytes, GatewayError> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|e| GatewayError::internal(format!("could not encode the response: {e}")))
}

/// A provider's success body that does not read as `what`.
pub fn unreadable(what: &str, e: serde_json::Error) -> GatewayError {
    GatewayError::new(
        ErrorKind::UpstreamProtocol,
        StatusCode::BAD_GATEWAY,
        format!("the provider's {what} could not be read: {e}"),
    )
}

/// One stream event's JSON.
pub fn parse_event<T: serde::de::DeserializeOwned>(data: &str) -> Result<T, StreamError> {
    serde_json::from_str(data).map_err(|e| StreamError::Protocol(e.to_string()))
}

/// Appends an OpenAI chat chunk event.
pub fn put_chunk(out: &mut BytesMut, chunk: &ChatChunk) {
    if let Ok(json) = serde_json::to_string(chunk) {
        out.put(sse::encode(None, &json));
    }
}

/// Appends an Anthropic stream event.
pub fn put_anthropic(out: &mut BytesMut, event: &anthropic::StreamEvent) {
    if let Ok(json) = serde_json::to_string(event) {
        out.put(sse::encode(Some(event.name()), &json));
    }
}

/// The client's forwarded headers whose names start with `prefix` (this protocol's own),
/// replacing configured ones of the same name; repeated headers stay repeated.
pub fn forward(inbound: &Inbound, prefix: &str, headers: &mut HeaderMap) {
    let own = || {
        inbound
            .forward_headers
            .iter()
            .filter(|(name, _)| name.as_str().starts_with(prefix))
    };
    for (name, _) in own() {
        headers.remove(name);
    }
    for (name, value) in own() {
        headers.append(name.clone(), value.clone());
    }
}

/// OpenAI's stream terminator.
pub const DONE: &[u8] = b"data: [DONE]\n\n";

/// Usage worth reporting: some tokens were counted.
pub fn counted(usage: Option<Usage>) -> Option<Usage> {
    usage.filter(|u| u.total_tokens > 0 || u.prompt_tokens > 0 || u.completion_tokens > 0)
}

/// The message id an Anthropic client sees for a chat completion id.
pub fn anthropic_id(id: &str) -> String {
    if id.starts_with("msg_") {
        id.to_owned()
    } else {
        format!("msg_{}", id.trim_start_matches("chatcmpl-"))
    }
}

/// Usage of an Anthropic message in OpenAI terms.
pub fn anthropic_usage(u: anthropic::DeltaUsage) -> Usage {
    sluice_shared::translate::anthropic::usage_to_openai(&anthropic::Usage {
        input_tokens: u.input_tokens.unwrap_or(0),
        output_tokens: u.output_tokens,
        cache_creation_input_tokens: u.cache_creation_input_tokens,
        cache_read_input_tokens: u.cache_read_input_tokens,
    })
}

/// Percent-encodes a model name for use as one URL path segment (Azure deployments,
/// Gemini models). `.`, `..` and the empty name are refused: as a segment they mean
/// "this folder" and "the folder above", so they would reach another endpoint of the
/// provider than the one the gateway meant to call.
pub fn path_segment(model: &str) -> Result<String, GatewayError> {
    if model.is_empty() || model.bytes().all(|b| b == b'.') {
        return Err(GatewayError::invalid(format!(
            "`{model}` is not a model or deployment name (it would be read as a path)"
        ))
        .with_param("model"));
    }
    let mut out = String::with_capacity(model.len());
    for b in model.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'@' | b':') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    Ok(out)
}

/// A provider's error event (an OpenAI error object) as the stream's failure.
pub fn openai_stream_error(error: openai::ErrorObject) -> StreamError {
    StreamError::Provider(StreamFailure {
        kind: error.kind,
        message: error.message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(
            path_segment("gemini-2.5-flash").unwrap(),
            "gemini-2.5-flash"
        );
        assert_eq!(path_segment("a/b c").unwrap(), "a%2Fb%20c");
        assert_eq!(path_segment("../x").unwrap(), "..%2Fx");
        for dots in ["", ".", "..", "..."] {
            assert!(path_segment(dots).is_err(), "{dots:?}");
        }
    }
}
