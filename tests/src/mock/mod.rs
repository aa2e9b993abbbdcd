//! The mock model provider: a faithful stand-in for OpenAI (and Azure OpenAI), Anthropic
//! and Gemini wire formats, with fault injection and observation endpoints for tests.
//!
//! Every API request goes through [`serve_api`], in this order: count and record it, pick
//! its fault (queue, then `x-mock-fault` header, then the API key's prefix), sleep the
//! latency, apply `hang` / `status`, check auth and required headers, parse and validate
//! the body, then answer buffered or streamed. The per-shape modules only turn a parsed
//! body into an [`Outcome`]; they never touch the network or the clock.
//!
//! Observation endpoints (not counted or recorded): `GET /_mock/stats`,
//! `GET /_mock/requests`, `POST|DELETE /_mock/faults`, `POST /_mock/reset`.

mod anthropic;
mod error;
mod fault;
mod gemini;
mod openai;
mod outcome;
mod reply;
mod responses;
mod state;
mod stream;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use bytes::Bytes;
use serde_json::{Value, json};
use tokio::net::TcpListener;

pub use error::ApiShape;
pub use fault::{BodyFault, FaultParseError, FaultSpec};
pub use state::MockOptions;

use error::ApiError;
use outcome::{Outcome, query_param};
use state::{InFlight, MockState, StreamGuard};
use stream::{event_body, rewrite_sse_json, set_usage_tokens, split_json_plan, sse_response};

/// Largest request body read: room for a few inline images, a cap on runaway clients.
const MAX_REQUEST_BODY: usize = 64 * 1024 * 1024;

/// Which API a request is for; decides auth, error shape and the handler.
#[derive(Debug, Clone)]
enum Endpoint {
    OpenAiChat,
    OpenAiResponses,
    OpenAiEmbeddings,
    OpenAiModels,
    AzureChat {
        deployment: String,
    },
    AzureEmbeddings {
        deployment: String,
    },
    AnthropicMessages,
    AnthropicCountTokens,
    Gemini {
        model_and_method: String,
    },
    /// Any other path: counted and recorded (a mis-routing gateway shows up in
    /// `/_mock/requests`), then answered 404.
    Unknown {
        shape: ApiShape,
    },
}

impl Endpoint {
    fn shape(&self) -> ApiShape {
        match self {
            Endpoint::OpenAiChat
            | Endpoint::OpenAiResponses
            | Endpoint::OpenAiEmbeddings
            | Endpoint::OpenAiModels
            | Endpoint::AzureChat { .. }
            | Endpoint::AzureEmbeddings { .. } => ApiShape::OpenAi,
            Endpoint::AnthropicMessages | Endpoint::AnthropicCountTokens => ApiShape::Anthropic,
            Endpoint::Gemini { .. } => ApiShape::Gemini,
            Endpoint::Unknown { shape } => *shape,
        }
    }

    fn has_body(&self) -> bool {
        !matches!(self, Endpoint::OpenAiModels | Endpoint::Unknown { .. })
    }
}

/// Binds nothing itself: serves on `listener` until the process ends.
pub async fn serve(listener: TcpListener, options: MockOptions) -> std::io::Result<()> {
    let listener = listener.tap_io(|stream| {
        // Small SSE events must leave at once, not wait for Nagle.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "could not set TCP_NODELAY");
        }
    });
    axum::serve(listener, router(options)).await
}

/// Like [`serve`], over TLS with `tls` (real providers are HTTPS: this is how tests check
/// the gateway's certificate handling, e.g. a provider's `ca_file`). A client that fails
/// the handshake (an untrusted certificate) is dropped and the mock goes on serving.
pub async fn serve_tls(
    listener: TcpListener,
    options: MockOptions,
    tls: Arc<rustls::ServerConfig>,
) -> std::io::Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let service = hyper_util::service::TowerToHyperService::new(router(options));
    loop {
        let (tcp, peer) = crate::net::accept_nodelay(&listener).await;
        let acceptor = acceptor.clone();
        let service = service.clone();
        tokio::spawn(async move {
            let stream = match acceptor.accept(tcp).await {
                Ok(stream) => stream,
                Err(error) => {
                    tracing::info!(%peer, %error, "TLS handshake failed");
                    return;
                }
            };
            let builder =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            if let Err(error) = builder
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
        });
    }
}

/// A TLS server configuration from PEM files: the certificate chain (leaf first) and its
/// private key.
pub fn tls_config(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    use anyhow::Context as _;
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("cannot read certificates from {}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("cannot read a private key from {}", key.display()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Binds `addr` and returns the listener with its actual address (for port 0).
pub async fn bind(addr: SocketAddr) -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

/// The mock's routes, with fresh state.
pub fn router(options: MockOptions) -> Router {
    let state = Arc::new(MockState::new(options));
    Router::new()
        .route(
            "/v1/chat/completions",
            post(|State(state), request| serve_api(state, Endpoint::OpenAiChat, request)),
        )
        .route(
            "/v1/responses",
            post(|State(state), request| serve_api(state, Endpoint::OpenAiResponses, request)),
        )
        .route(
            "/v1/embeddings",
            post(|State(state), request| serve_api(state, Endpoint::OpenAiEmbeddings, request)),
        )
        .route(
            "/v1/models",
            get(|State(state), request| serve_api(state, Endpoint::OpenAiModels, request)),
        )
        .route(
            "/openai/deployments/{deployment}/chat/completions",
            post(|State(state), Path(deployment): Path<String>, request| {
                serve_api(state, Endpoint::AzureChat { deployment }, request)
            }),
        )
        .route(
            "/openai/deployments/{deployment}/embeddings",
            post(|State(state), Path(deployment): Path<String>, request| {
                serve_api(state, Endpoint::AzureEmbeddings { deployment }, request)
            }),
        )
        .route(
            "/v1/messages",
            post(|State(state), request| serve_api(state, Endpoint::AnthropicMessages, request)),
        )
        .route(
            "/v1/messages/count_tokens",
            post(|State(state), request| serve_api(state, Endpoint::AnthropicCountTokens, request)),
        )
        .route("/v1beta/models/{*model_and_method}", post(gemini_route))
        .route("/v1/models/{*model_and_method}", post(gemini_route))
        .route("/_mock/stats", get(stats))
        .route("/_mock/requests", get(requests))
        .route("/_mock/faults", post(push_faults).delete(clear_faults))
        .route("/_mock/reset", post(reset))
        .fallback(unknown_route)
        .with_state(state)
}

async fn gemini_route(
    State(state): State<Arc<MockState>>,
    Path(model_and_method): Path<String>,
    request: Request,
) -> Response {
    serve_api(state, Endpoint::Gemini { model_and_method }, request).await
}

async fn unknown_route(State(state): State<Arc<MockState>>, request: Request) -> Response {
    let path = request.uri().path();
    let shape = if path.starts_with("/v1/messages") {
        ApiShape::Anthropic
    } else if path.starts_with("/v1beta/") {
        ApiShape::Gemini
    } else {
        ApiShape::OpenAi
    };
    serve_api(state, Endpoint::Unknown { shape }, request).await
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::trim)
        .filter(|value| !value.is_empty())
}

/// The API key the request carries, in the place its API expects it.
fn api_key<'a>(endpoint: &Endpoint, headers: &'a HeaderMap, query: &'a str) -> Option<&'a str> {
    match endpoint {
        Endpoint::AzureChat { .. } | Endpoint::AzureEmbeddings { .. } => {
            header_str(headers, "api-key")
        }
        Endpoint::AnthropicMessages | Endpoint::AnthropicCountTokens => {
            header_str(headers, "x-api-key")
        }
        Endpoint::Gemini { .. } => header_str(headers, "x-goog-api-key")
            .or_else(|| query_param(query, "key").filter(|key| !key.is_empty())),
        Endpoint::OpenAiChat
        | Endpoint::OpenAiResponses
        | Endpoint::OpenAiEmbeddings
        | Endpoint::OpenAiModels => header_str(headers, "authorization").and_then(|value| {
            let (scheme, key) = value.split_once(' ')?;
            let key = key.trim();
            (scheme.eq_ignore_ascii_case("bearer") && !key.is_empty()).then_some(key)
        }),
        Endpoint::Unknown { .. } => None,
    }
}

/// Auth as the real APIs do it, plus the key-prefix faults (`bad-`, `forbidden-`, `limited-`).
fn check_auth(endpoint: &Endpoint, headers: &HeaderMap, query: &str) -> Result<(), ApiError> {
    if matches!(endpoint, Endpoint::Unknown { .. }) {
        return Ok(());
    }
    let shape = endpoint.shape();
    let Some(key) = api_key(endpoint, headers, query) else {
        let message = match endpoint {
            Endpoint::AzureChat { .. } | Endpoint::AzureEmbeddings { .. } => {
                "Access denied due to missing subscription key. Make sure to include the \
                 `api-key` header when making requests to an API."
            }
            _ => match shape {
                ApiShape::OpenAi => {
                    "You didn't provide an API key. You need to provide your API key in an \
                     Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
                }
                ApiShape::Anthropic => "x-api-key header is required",
                ApiShape::Gemini => {
                    "Method doesn't allow unregistered callers (callers without established \
                     identity). Please use API Key or other form of API consumer identity to \
                     call this API."
                }
            },
        };
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, message));
    };
    if key.starts_with("bad-") {
        let message = match shape {
            ApiShape::OpenAi => format!("Incorrect API key provided: {key}."),
            ApiShape::Anthropic => "invalid x-api-key".to_owned(),
            ApiShape::Gemini => "API key not valid. Please pass a valid API key.".to_owned(),
        };
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, message));
    }
    if key.starts_with("forbidden-") {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "Your API key does not have permission to use the specified resource.",
        ));
    }
    if key.starts_with("limited-") {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "Rate limit reached for requests (mock: API key starts with `limited-`).",
        )
        .with_retry_after(Some(1)));
    }
    Ok(())
}

/// Headers and query parameters the real APIs insist on besides the key.
fn check_required_params(
    endpoint: &Endpoint,
    headers: &HeaderMap,
    query: &str,
) -> Result<(), ApiError> {
    match endpoint {
        Endpoint::AnthropicMessages | Endpoint::AnthropicCountTokens
            if header_str(headers, "anthropic-version").is_none() =>
        {
            Err(ApiError::bad_request(
                "anthropic-version: header is required",
            ))
        }
        Endpoint::AzureChat { .. } | Endpoint::AzureEmbeddings { .. }
            if query_param(query, "api-version").is_none_or(str::is_empty) =>
        {
            Err(ApiError::bad_request(
                "Missing required query parameter `api-version` (for example ?api-version=2024-10-21).",
            ))
        }
        _ => Ok(()),
    }
}

fn malformed_json(shape: ApiShape) -> ApiError {
    ApiError::bad_request(match shape {
        ApiShape::OpenAi => {
            "We could not parse the JSON body of your request. (HINT: This likely means you \
             aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, \
             but what was sent was not valid JSON.)"
        }
        ApiShape::Anthropic => {
            "There was an error parsing the body of your request: it is not a JSON object."
        }
        ApiShape::Gemini => "Invalid JSON payload received. Expected a JSON object.",
    })
}

fn dispatch(
    state: &MockState,
    endpoint: &Endpoint,
    body: &Value,
    query: &str,
) -> Result<Outcome, ApiError> {
    match endpoint {
        Endpoint::OpenAiChat => openai::chat_completions(state, body, None),
        Endpoint::AzureChat { deployment } => {
            openai::chat_completions(state, body, Some(deployment))
        }
        Endpoint::OpenAiEmbeddings => openai::embeddings(body, None),
        Endpoint::AzureEmbeddings { deployment } => openai::embeddings(body, Some(deployment)),
        Endpoint::OpenAiModels => Ok(openai::models()),
        Endpoint::OpenAiResponses => responses::create_response(state, body),
        Endpoint::AnthropicMessages => anthropic::messages(state, body),
        Endpoint::AnthropicCountTokens => anthropic::count_tokens(body),
        Endpoint::Gemini { model_and_method } => {
            gemini::models_call(state, body, model_and_method, query)
        }
        Endpoint::Unknown { .. } => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "This mock provider has no such endpoint.",
        )),
    }
}

/// The fault for this request: the next queued one, else the `x-mock-fault` header.
fn request_fault(state: &MockState, headers: &HeaderMap) -> Result<FaultSpec, FaultParseError> {
    if let Some(fault) = state.pop_fault() {
        return Ok(fault);
    }
    match headers
        .get("x-mock-fault")
        .and_then(|value| value.to_str().ok())
    {
        Some(spec) => FaultSpec::parse(spec),
        None => Ok(FaultSpec::default()),
    }
}

fn fault_message(status: StatusCode) -> String {
    let reason = status.canonical_reason().unwrap_or(match status.as_u16() {
        error::ANTHROPIC_OVERLOADED => "Overloaded",
        _ => "Error",
    });
    format!(
        "{reason} (injected by mock fault status={})",
        status.as_u16()
    )
}

/// The whole life of one API request; see the module docs for the order of steps.
async fn serve_api(state: Arc<MockState>, endpoint: Endpoint, request: Request) -> Response {
    let shape = endpoint.shape();
    let in_flight = state.begin_request(request.uri().path());
    let (parts, body) = request.into_parts();
    let bytes = to_bytes(body, MAX_REQUEST_BODY).await;
    let json = match &bytes {
        Ok(bytes) if !bytes.is_empty() => serde_json::from_slice::<Value>(bytes).ok().map(Arc::new),
        _ => None,
    };
    state.record(&parts.method, &parts.uri, &parts.headers, json.clone());
    let query = parts.uri.query().unwrap_or_default();

    let fault = match request_fault(&state, &parts.headers) {
        Ok(fault) => fault,
        Err(error) => {
            return ApiError::bad_request(format!("invalid x-mock-fault header: {error}"))
                .into_response(shape);
        }
    };
    let latency = fault.latency.unwrap_or(state.options.latency);
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if fault.hang {
        // If the client goes away first, hyper drops this future and the guard with it.
        tokio::time::sleep(fault::STALL_DURATION).await;
        return ApiError::new(StatusCode::GATEWAY_TIMEOUT, "mock fault `hang` ran out")
            .into_response(shape);
    }
    if let Some(status) = fault.status {
        let message = fault
            .message
            .clone()
            .unwrap_or_else(|| fault_message(status));
        let mut response = ApiError::new(status, message)
            .with_retry_after(fault.retry_after)
            .into_response(shape);
        raw_retry_after(&mut response, &fault);
        return response;
    }

    let outcome = check_auth(&endpoint, &parts.headers, query)
        .and_then(|()| check_required_params(&endpoint, &parts.headers, query))
        .and_then(|()| match (&bytes, &json) {
            (Err(_), _) => Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request body too large or unreadable",
            )),
            (Ok(_), Some(body)) if body.is_object() => dispatch(&state, &endpoint, body, query),
            (Ok(_), _) if !endpoint.has_body() => dispatch(&state, &endpoint, &Value::Null, query),
            (Ok(_), _) => Err(malformed_json(shape)),
        });
    let outcome = match (outcome, fault.usage_tokens) {
        (Ok(Outcome::Json(mut value)), Some(tokens)) => {
            set_usage_tokens(&mut value, tokens);
            Ok(Outcome::Json(value))
        }
        (Ok(Outcome::Stream(mut plan)), Some(tokens)) => {
            for event in &mut plan.events {
                event.bytes = rewrite_sse_json(&event.bytes, |v| set_usage_tokens(v, tokens));
            }
            Ok(Outcome::Stream(plan))
        }
        (outcome, _) => outcome,
    };
    let delay = fault.chunk_delay.unwrap_or(state.options.chunk_delay);
    let mut response = match outcome {
        Err(error) => {
            let retry_after = error.retry_after.or(fault.retry_after);
            error.with_retry_after(retry_after).into_response(shape)
        }
        Ok(Outcome::Json(value)) => json_response(value, fault.body, delay, in_flight),
        Ok(Outcome::Stream(plan)) => {
            state.stream_started();
            sse_response(event_body(
                plan,
                fault.body,
                delay,
                StreamGuard::new(in_flight, true),
                fault.message.clone(),
            ))
        }
    };
    let headers = response.headers_mut();
    if let Some(seconds) = fault.retry_after
        && !headers.contains_key(header::RETRY_AFTER)
    {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    let request_id = match shape {
        ApiShape::OpenAi => Some("x-request-id"),
        ApiShape::Anthropic => Some("request-id"),
        ApiShape::Gemini => None,
    };
    if let Some(name) = request_id
        && let Ok(value) = HeaderValue::from_str(&format!("req_mock_{}", state.next_id()))
    {
        headers.insert(HeaderName::from_static(name), value);
    }
    raw_retry_after(&mut response, &fault);
    response
}

/// The `retry_after_raw` fault: the header exactly as the spec wrote it.
fn raw_retry_after(response: &mut Response, fault: &FaultSpec) {
    if let Some(raw) = &fault.retry_after_raw
        && let Ok(value) = HeaderValue::from_str(raw)
    {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
}

/// A buffered JSON answer. `reset_after` / `stall_after` still apply: headers go out, then
/// the body is cut (or stalls) part-way. `error_event_after` has no buffered meaning.
fn json_response(
    value: Value,
    body_fault: Option<BodyFault>,
    delay: std::time::Duration,
    in_flight: InFlight,
) -> Response {
    let bytes = Bytes::from(value.to_string());
    let content_type = [(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    )];
    match body_fault {
        Some(fault @ (BodyFault::Reset { .. } | BodyFault::Stall { .. })) => {
            let body = event_body(
                split_json_plan(bytes),
                Some(fault),
                delay,
                StreamGuard::new(in_flight, false),
                None,
            );
            (content_type, body).into_response()
        }
        _ => (content_type, Body::from(bytes)).into_response(),
    }
}

async fn stats(State(state): State<Arc<MockState>>) -> Response {
    axum::Json(state.stats_json()).into_response()
}

async fn requests(State(state): State<Arc<MockState>>) -> Response {
    axum::Json(state.requests_json()).into_response()
}

fn admin_error(message: String) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({"error": message})),
    )
        .into_response()
}

/// `POST /_mock/faults` with `{"faults": ["status=503", "", ...]}`: validates every spec,
/// then appends them all (or none) to the queue.
async fn push_faults(State(state): State<Arc<MockState>>, body: Bytes) -> Response {
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return admin_error("body must be JSON: {\"faults\": [\"status=503\", ...]}".to_owned());
    };
    let Some(specs) = body.get("faults").and_then(Value::as_array) else {
        return admin_error("body must have a `faults` array of fault spec strings".to_owned());
    };
    let mut faults = Vec::with_capacity(specs.len());
    for spec in specs {
        let Some(spec) = spec.as_str() else {
            return admin_error(format!("fault {spec} is not a string"));
        };
        match FaultSpec::parse(spec) {
            Ok(fault) => faults.push(fault),
            Err(error) => return admin_error(error.to_string()),
        }
    }
    let queued = state.push_faults(faults);
    axum::Json(json!({"queued": queued})).into_response()
}

async fn clear_faults(State(state): State<Arc<MockState>>) -> Response {
    state.clear_faults();
    axum::Json(json!({"queued": 0})).into_response()
}

async fn reset(State(state): State<Arc<MockState>>) -> Response {
    state.reset();
    axum::Json(json!({"reset": true})).into_response()
}
