//! Providers: one runtime [`Provider`] per `[providers.NAME]`, dispatched statically on
//! its [`Protocol`].
//!
//! [`Provider::prepare`] turns a client request into the provider's request (URL, body,
//! protocol headers) and says how to read the answer ([`Decode`]); [`Provider::request`]
//! adds the chosen key's credentials (made once per key by `credential_header`) for one
//! attempt. Today a protocol's parts are spread out: `prepare` and `credential_header`
//! here, `decode_body` and `upstream_error_message` in [`wire`], its stream readers in
//! `engine::stream`. Giving each protocol one file is open work (issue 11).
pub mod health;
pub mod http;
pub mod limiter;
pub mod wire;

use std::time::{Duration, Instant};

use ::http::header::{CONTENT_TYPE, USER_AGENT};
use ::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use bytes::Bytes;

use sluice_shared::anthropic;
use sluice_shared::openai::{ChatRequest, StreamOptions};
use sluice_shared::translate::{self, TranslateError};

use crate::config::kind::{Protocol, ProviderKind};
use crate::config::{HealthConfig, ResolvedProvider};
use crate::error::{ErrorKind, GatewayError};
use crate::providers::health::KeyHealth;
use crate::providers::limiter::Limiter;
use crate::request::{ClientApi, ClientBody, Inbound};
pub use wire::Decode;

/// One API key of a provider, with its health.
#[derive(Debug)]
pub struct ProviderKey {
    pub id: String,
    /// The header that carries this key in the provider's scheme, marked sensitive.
    credential: Option<(HeaderName, HeaderValue)>,
    pub weight: f64,
    pub health: KeyHealth,
}

/// A configured provider at run time.
#[derive(Debug)]
pub struct Provider {
    pub name: String,
    pub kind: ProviderKind,
    pub protocol: Protocol,
    base_url: String,
    pub keys: Vec<ProviderKey>,
    pub models: Vec<String>,
    headers: Vec<(HeaderName, HeaderValue)>,
    api_version: String,
    pub header_timeout: Duration,
    pub stream_idle_timeout: Duration,
    pub max_retries: u32,
    pub limiter: Limiter,
    pub health: HealthConfig,
    /// The one HTTP client for this provider's calls (pooled connections, its connect
    /// timeout).
    pub client: http::HttpClient,
    /// Start of the clock that key health uses; shared by all providers of a gateway.
    epoch: Instant,
    /// Endpoints whose URL does not depend on the model, parsed once.
    fixed_urls: Vec<(&'static str, Uri)>,
}

const USER_AGENT_VALUE: &str = concat!("sluice-gateway/", env!("CARGO_PKG_VERSION"));

/// Paths below the base URL that OpenAI- and Anthropic-protocol providers serve.
const FIXED_PATHS: [&str; 5] = [
    "chat/completions",
    "responses",
    "embeddings",
    "v1/messages",
    "v1/messages/count_tokens",
];

/// What to send for one target.
#[derive(Debug)]
pub enum Prepared {
    /// An HTTP call to the provider.
    Call(UpstreamCall),
    /// Answered without calling anyone (a token count for a provider that has no
    /// counting endpoint): the body in the client's shape.
    Local(Bytes),
}

#[derive(Debug)]
pub struct UpstreamCall {
    pub url: Uri,
    pub body: Bytes,
    pub headers: HeaderMap,
    pub decode: Decode,
    pub stream: bool,
}

impl Provider {
    pub fn new(cfg: ResolvedProvider, epoch: Instant) -> Result<Self, String> {
        let client =
            http::HttpClient::new(cfg.connect_timeout, &cfg.ca_roots).map_err(|e| e.to_string())?;
        let protocol = cfg.kind.protocol();
        let base_url = cfg.base_url.as_str().trim_end_matches('/').to_owned();
        let fixed_urls = FIXED_PATHS
            .iter()
            .filter_map(|p| {
                format!("{base_url}/{p}")
                    .parse::<Uri>()
                    .ok()
                    .map(|u| (*p, u))
            })
            .collect();
        Ok(Provider {
            fixed_urls,
            name: cfg.name,
            kind: cfg.kind,
            protocol,
            base_url,
            keys: cfg
                .keys
                .into_iter()
                .map(|k| {
                    let credential = k
                        .secret
                        .as_ref()
                        .map(|s| credential_header(protocol, s.expose()))
                        .transpose()
                        .map_err(|()| {
                            format!(
                                "key `{}` contains characters that cannot be sent in an HTTP header",
                                k.id
                            )
                        })?;
                    Ok(ProviderKey {
                        id: k.id,
                        credential,
                        weight: k.weight,
                        health: KeyHealth::default(),
                    })
                })
                .collect::<Result<_, String>>()?,
            models: cfg.models,
            headers: cfg.headers,
            api_version: cfg.api_version,
            header_timeout: cfg.header_timeout,
            stream_idle_timeout: cfg.stream_idle_timeout,
            max_retries: cfg.max_retries,
            limiter: Limiter::new(cfg.max_concurrency, cfg.max_queue, cfg.queue_timeout),
            health: cfg.health,
            client,
            epoch,
        })
    }

    /// Milliseconds on the health clock.
    pub fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Whether some key is in rotation.
    pub fn has_available_key(&self, now_ms: u64) -> bool {
        self.keys.iter().any(|k| !k.health.is_open(now_ms))
    }

    /// Picks a key by weight among those in rotation and not `excluded` (keys this request
    /// already saw refused). `None` when no such key is left: every remaining key is out
    /// of rotation, so the provider's breaker is open and it gets no call until a key's
    /// cooldown ends (then it is tried again, at a ramping share).
    pub fn choose_key(&self, excluded: &[usize]) -> Option<usize> {
        let now = self.now_ms();
        let weights: Vec<f64> = self
            .keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                if excluded.contains(&i) {
                    0.0
                } else {
                    k.health.effective_weight(k.weight, now, &self.health)
                }
            })
            .collect();
        let total: f64 = weights.iter().sum();
        if total > 0.0 {
            let mut pick = fastrand::f64() * total;
            for (i, w) in weights.iter().enumerate() {
                if *w > 0.0 && pick < *w {
                    return Some(i);
                }
                pick -= w;
            }
            return weights.iter().rposition(|w| *w > 0.0);
        }
        None
    }

    /// How long until the first key out of rotation comes back (zero if one is in).
    pub fn reopens_in(&self) -> Duration {
        let now = self.now_ms();
        let soonest = self
            .keys
            .iter()
            .map(|k| k.health.open_until_ms())
            .min()
            .unwrap_or(0);
        Duration::from_millis(soonest.saturating_sub(now))
    }

    /// The complete HTTP request of one attempt: the prepared call with the key's
    /// credentials in the provider's scheme.
    pub fn request(
        &self,
        call: &UpstreamCall,
        key: usize,
    ) -> Result<::http::Request<http::RequestBody>, GatewayError> {
        let mut request = ::http::Request::post(call.url.clone())
            .body(http::RequestBody::new(call.body.clone()))
            .map_err(|e| {
                GatewayError::internal(format!("cannot build the provider request: {e}"))
            })?;
        let headers = request.headers_mut();
        headers.reserve(call.headers.len() + 3);
        for (name, value) in &call.headers {
            headers.insert(name, value.clone());
        }
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE));
        if let Some(credential) = self.keys.get(key).and_then(|k| k.credential.as_ref()) {
            headers.insert(credential.0.clone(), credential.1.clone());
        }
        Ok(request)
    }

    /// The provider's request for `inbound`, sent to `model`.
    pub fn prepare(&self, inbound: &mut Inbound, model: &str) -> Result<Prepared, GatewayError> {
        let stream = inbound.stream;
        let api = inbound.api;
        let wants_stream_usage = inbound.wants_stream_usage;
        let versions = (
            inbound.anthropic_version.clone(),
            inbound.anthropic_beta.clone(),
        );
        let mut headers = HeaderMap::new();
        for (name, value) in &self.headers {
            headers.insert(name.clone(), value.clone());
        }
        let unsupported = |what: &str| {
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
        };
        let (url, body, decode) = match (&mut inbound.body, self.protocol) {
            (ClientBody::Chat(req), Protocol::OpenAi | Protocol::Azure) => {
                req.model = model.to_owned();
                let strip_usage = stream && !wants_stream_usage;
                if stream && self.kind.accepts_stream_usage_option() {
                    // Always ask for usage so it can be counted; the extra chunk is removed
                    // again if the client did not ask for it.
                    req.stream_options
                        .get_or_insert_with(StreamOptions::default)
                        .include_usage = Some(true);
                }
                let decode = Decode::PassOpenAiChat { strip_usage };
                (
                    self.openai_url("chat/completions", model)?,
                    to_json(&*req)?,
                    decode,
                )
            }
            (ClientBody::Chat(req), Protocol::Anthropic) => {
                let mut out = translate::anthropic::request_from_openai(req.clone())
                    .map_err(unsupported_err)?;
                out.model = model.to_owned();
                out.stream = stream.then_some(true);
                self.anthropic_headers(&versions, &mut headers);
                let decode = Decode::AnthropicToOpenAi {
                    include_usage: wants_stream_usage,
                };
                (self.anthropic_url("v1/messages")?, to_json(&out)?, decode)
            }
            (ClientBody::Chat(req), Protocol::Gemini) => {
                let out =
                    translate::gemini::request_from_openai(req.clone()).map_err(unsupported_err)?;
                let decode = Decode::GeminiToOpenAi {
                    include_usage: wants_stream_usage,
                };
                (self.gemini_url(model, stream)?, to_json(&out)?, decode)
            }
            (ClientBody::Messages(req), Protocol::Anthropic) => {
                req.model = model.to_owned();
                self.anthropic_headers(&versions, &mut headers);
                let path = if api == ClientApi::CountTokens {
                    "v1/messages/count_tokens"
                } else {
                    "v1/messages"
                };
                (
                    self.anthropic_url(path)?,
                    to_json(&*req)?,
                    Decode::PassAnthropic,
                )
            }
            (ClientBody::Messages(req), Protocol::OpenAi | Protocol::Azure) => {
                if api == ClientApi::CountTokens {
                    return Ok(Prepared::Local(estimate_tokens(req)));
                }
                let mut out = translate::anthropic::request_to_openai(req.clone())
                    .map_err(unsupported_err)?;
                out.model = model.to_owned();
                self.fit_openai_request(&mut out);
                (
                    self.openai_url("chat/completions", model)?,
                    to_json(&out)?,
                    Decode::OpenAiToAnthropic,
                )
            }
            (ClientBody::Messages(req), Protocol::Gemini) => {
                let chat = translate::anthropic::request_to_openai(req.clone())
                    .map_err(unsupported_err)?;
                let out = translate::gemini::request_from_openai(chat).map_err(unsupported_err)?;
                if api == ClientApi::CountTokens {
                    let count = sluice_shared::gemini::CountTokensRequest {
                        contents: out.contents,
                    };
                    let url = parse_url(&format!(
                        "{}/models/{}:countTokens",
                        self.base_url,
                        path_segment(model)?
                    ))?;
                    (url, to_json(&count)?, Decode::GeminiCountToAnthropic)
                } else {
                    (
                        self.gemini_url(model, stream)?,
                        to_json(&out)?,
                        Decode::GeminiToAnthropic,
                    )
                }
            }
            (ClientBody::Json(map), Protocol::OpenAi | Protocol::Azure) => {
                map.insert("model".into(), serde_json::Value::String(model.to_owned()));
                let (path, decode) = match api {
                    ClientApi::Responses => ("responses", Decode::PassResponses),
                    _ => ("embeddings", Decode::PassEmbeddings),
                };
                (self.openai_url(path, model)?, to_json(&*map)?, decode)
            }
            (ClientBody::Json(_), _) => {
                let what = match api {
                    ClientApi::Responses => "the Responses API (/v1/responses)",
                    _ => "embeddings (/v1/embeddings)",
                };
                return Err(unsupported(what));
            }
        };
        Ok(Prepared::Call(UpstreamCall {
            url,
            body,
            headers,
            decode,
            stream,
        }))
    }

    /// OpenAI-protocol quirks for a request translated from another shape.
    fn fit_openai_request(&self, req: &mut ChatRequest) {
        if self.kind.prefers_max_completion_tokens()
            && let Some(max) = req.max_tokens.take()
        {
            req.max_completion_tokens = Some(max);
        }
        if req.is_stream() && !self.kind.accepts_stream_usage_option() {
            req.stream_options = None;
        }
    }

    /// `versions`: the client's `anthropic-version` and `anthropic-beta`, forwarded.
    fn anthropic_headers(
        &self,
        versions: &(Option<HeaderValue>, Option<HeaderValue>),
        headers: &mut HeaderMap,
    ) {
        let version = versions
            .0
            .clone()
            .unwrap_or_else(|| HeaderValue::from_static(anthropic::DEFAULT_VERSION));
        headers.insert("anthropic-version", version);
        if let Some(beta) = &versions.1 {
            headers.insert("anthropic-beta", beta.clone());
        }
    }

    fn openai_url(&self, path: &str, model: &str) -> Result<Uri, GatewayError> {
        let url = match self.protocol {
            Protocol::Azure if path == "responses" => {
                format!(
                    "{}/responses?api-version={}",
                    self.base_url, self.api_version
                )
            }
            Protocol::Azure => format!(
                "{}/deployments/{}/{path}?api-version={}",
                self.base_url,
                path_segment(model)?,
                self.api_version
            ),
            _ => return self.fixed_url(path),
        };
        parse_url(&url)
    }

    fn anthropic_url(&self, path: &str) -> Result<Uri, GatewayError> {
        self.fixed_url(path)
    }

    fn fixed_url(&self, path: &str) -> Result<Uri, GatewayError> {
        match self.fixed_urls.iter().find(|(p, _)| *p == path) {
            Some((_, url)) => Ok(url.clone()),
            None => parse_url(&format!("{}/{path}", self.base_url)),
        }
    }

    fn gemini_url(&self, model: &str, stream: bool) -> Result<Uri, GatewayError> {
        let model = path_segment(model.strip_prefix("models/").unwrap_or(model))?;
        let url = if stream {
            format!(
                "{}/models/{model}:streamGenerateContent?alt=sse",
                self.base_url
            )
        } else {
            format!("{}/models/{model}:generateContent", self.base_url)
        };
        parse_url(&url)
    }
}

/// The header that carries `secret` in `protocol`'s auth scheme, marked sensitive (kept
/// out of debug output and of HTTP/2 header compression tables).
fn credential_header(protocol: Protocol, secret: &str) -> Result<(HeaderName, HeaderValue), ()> {
    let (name, value) = match protocol {
        Protocol::OpenAi => (::http::header::AUTHORIZATION, format!("Bearer {secret}")),
        Protocol::Azure => (HeaderName::from_static("api-key"), secret.to_owned()),
        Protocol::Anthropic => (HeaderName::from_static("x-api-key"), secret.to_owned()),
        Protocol::Gemini => (HeaderName::from_static("x-goog-api-key"), secret.to_owned()),
    };
    let mut value = HeaderValue::from_str(&value).map_err(|_| ())?;
    value.set_sensitive(true);
    Ok((name, value))
}

fn parse_url(url: &str) -> Result<Uri, GatewayError> {
    url.parse::<Uri>()
        .map_err(|e| GatewayError::invalid(format!("cannot build the provider URL `{url}`: {e}")))
}

fn unsupported_err(e: TranslateError) -> GatewayError {
    GatewayError::new(
        ErrorKind::Unsupported,
        StatusCode::BAD_REQUEST,
        e.to_string(),
    )
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<Bytes, GatewayError> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|e| GatewayError::internal(format!("could not encode the provider request: {e}")))
}

/// Percent-encodes a model name for use as one URL path segment (Azure deployments,
/// Gemini models). `.`, `..` and the empty name are refused: as a segment they mean
/// "this folder" and "the folder above", so they would reach another endpoint of the
/// provider than the one the gateway meant to call.
fn path_segment(model: &str) -> Result<String, GatewayError> {
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
