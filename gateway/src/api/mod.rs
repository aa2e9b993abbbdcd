//! HTTP surfaces. Each handler reads the body (bounded by `server.max_body_bytes`),
//! parses it into the API's typed request, checks what the provider would reject anyway
//! (so the client gets the error at once and no attempt is wasted), and hands it to the
//! engine. Every error is answered in the called API's own error shape.

pub mod admin;
mod models;
pub mod openapi;
pub mod state;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, StatusCode, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::de::DeserializeOwned;

use sluice_shared::anthropic::MessagesRequest;
use sluice_shared::openai::ChatRequest;

use crate::api::state::AppState;
use crate::conn_guard::BodyTimeout;
use crate::engine::{self, Caller};
use crate::error::{ErrorKind, Flavor, GatewayError};
use crate::request::{
    ClientApi, ClientBody, Inbound, REQUEST_ID_HEADER, forwarded_headers, stamp_request_id,
};

pub use models::list_models;

/// Header with extra fallbacks for one request: `x-sluice-fallbacks: a/b, c/d`.
pub const FALLBACKS_HEADER: &str = "x-sluice-fallbacks";

/// A UUIDv7 (time-ordered) request id. The random bits come from the thread-local
/// PRNG: ids need uniqueness, not secrecy, and the OS RNG costs a syscall per request.
fn request_id() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let mut random = [0u8; 10];
    fastrand::fill(&mut random);
    uuid::Builder::from_unix_timestamp_millis(now, &random)
        .into_uuid()
        .simple()
        .to_string()
}

async fn read_body(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
) -> Result<Bytes, GatewayError> {
    let limit = state.max_body_bytes;
    let too_large = || {
        GatewayError::new(
            ErrorKind::BodyTooLarge,
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "request body is larger than this gateway's limit of {limit} bytes (server.max_body_bytes); send less content or raise the limit"
            ),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Err(e) => {
            // The connection layer's body deadline, however deep axum wrapped it.
            let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e.as_ref());
            while let Some(c) = cause {
                if let Some(timeout) = c.downcast_ref::<BodyTimeout>() {
                    return Err(GatewayError::new(
                        ErrorKind::InvalidRequest,
                        StatusCode::REQUEST_TIMEOUT,
                        format!("{timeout}; send the body at once, or raise the limit"),
                    ));
                }
                cause = c.source();
            }
            Err(GatewayError::invalid(format!(
                "could not read the request body: {e}"
            )))
        }
    }
}

fn parse_json<T: DeserializeOwned>(body: &[u8], endpoint: &str) -> Result<T, GatewayError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(GatewayError::invalid(format!(
            "the request body for {endpoint} is empty; send a JSON object"
        )));
    }
    serde_json::from_slice(body).map_err(|e| {
        GatewayError::invalid(format!("the request body for {endpoint} is not valid: {e}"))
    })
}

/// Per-request fallbacks from the body's `fallbacks` field (removed before forwarding)
/// and from the `x-sluice-fallbacks` header.
fn take_fallbacks(
    extra: &mut serde_json::Map<String, serde_json::Value>,
    headers: &HeaderMap,
) -> Result<Vec<String>, GatewayError> {
    let mut out = Vec::new();
    if let Some(value) = extra.remove("fallbacks") {
        let list: Vec<String> = serde_json::from_value(value).map_err(|_| {
            GatewayError::invalid("`fallbacks` must be a list of model strings, e.g. [\"anthropic/claude-haiku-4-5\"]")
                .with_param("fallbacks")
        })?;
        out.extend(list);
    }
    if let Some(value) = headers.get(FALLBACKS_HEADER).and_then(|v| v.to_str().ok()) {
        out.extend(
            value
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
        );
    }
    Ok(out)
}

/// The id of one request, assigned by [`assign_request_id`] before any handler runs.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// The outermost layer: every request gets an id (in its extensions, for handlers and
/// the engine) and every response carries it as `x-request-id`. A response that a
/// handler did not stamp and that is an error (an unknown path, a wrong method, an admin
/// refusal, an extractor's rejection) is logged here, once; refusals on the model
/// endpoints are logged with their message by [`reject`], and answers from the engine
/// are in the audit log and metrics.
pub async fn assign_request_id(mut request: Request, next: axum::middleware::Next) -> Response {
    let id = request_id();
    let method = request.method().clone();
    let uri = request.uri().clone();
    request.extensions_mut().insert(RequestId(id.clone()));
    let mut response = next.run(request).await;
    if !response.headers().contains_key(REQUEST_ID_HEADER) {
        let status = response.status();
        if status.is_client_error() || status.is_server_error() {
            tracing::info!(request_id = %id, %method, path = uri.path(), status = status.as_u16(), "request refused");
        }
        stamp_request_id(response.headers_mut(), &id);
    }
    response
}

async fn run(
    state: Arc<AppState>,
    inbound: Inbound,
    request_id: String,
    caller: Caller,
) -> Response {
    let engine = state.engine.load_full();
    engine::execute(engine, inbound, request_id, caller).await
}

/// A refusal before the engine (a bad key, an unreadable body): counted, logged once at
/// info with what was wrong, and answered in the caller's API shape with its id.
fn reject(error: GatewayError, flavor: Flavor, api: ClientApi, request_id: &str) -> Response {
    let kind = error.kind.label();
    metrics::counter!("sluice_request_errors_total", "api" => "rejected", "kind" => kind)
        .increment(1);
    tracing::info!(
        request_id,
        api = api.label(),
        status = error.status.as_u16(),
        kind,
        "request refused: {}",
        error.message
    );
    let mut response = error.into_response(flavor);
    stamp_request_id(response.headers_mut(), request_id);
    response
}

/// The common path of every model endpoint: authenticate (before reading the body, so
/// an unauthenticated client costs nothing), read and parse, then run. Refusals are
/// recorded in the audit log like any other request.
async fn handle(
    state: Arc<AppState>,
    parts: http::request::Parts,
    body: Body,
    api: ClientApi,
) -> Response {
    let flavor = api.flavor();
    let headers = parts.headers;
    // Assigned by the outer layer; a fresh one only if this handler is mounted without it.
    let id = parts
        .extensions
        .get::<RequestId>()
        .map_or_else(request_id, |r| r.0.clone());
    let identity = match &state.governance {
        Some(gov) => match gov.authenticate(&headers) {
            Ok(identity) => identity,
            Err(e) => {
                gov.record_rejection(api, None, &e, id.clone());
                return reject(e, flavor, api, &id);
            }
        },
        None => None,
    };
    // Errors about the body name the path the client called (`/anthropic/v1/messages`,
    // not the provider's `/v1/messages`).
    let path = parts.uri.path();
    let parsed = async {
        let bytes = read_body(&state, &headers, body).await?;
        let inbound = match api {
            ClientApi::Chat => parse_chat(&bytes, &headers, path)?,
            ClientApi::Responses | ClientApi::Embeddings => {
                parse_passthrough(&bytes, &headers, api, path)?
            }
            ClientApi::Messages | ClientApi::CountTokens => {
                parse_messages(&bytes, &headers, api, path, parts.uri.query())?
            }
        };
        Ok::<_, GatewayError>((inbound, bytes))
    }
    .await;
    let (inbound, bytes) = match parsed {
        Ok(p) => p,
        Err(e) => {
            if let Some(gov) = &state.governance {
                gov.record_rejection(api, identity.as_ref(), &e, id.clone());
            }
            return reject(e, flavor, api, &id);
        }
    };
    let app = headers
        .get("x-sluice-app")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.chars().take(128).collect());
    run(
        state,
        inbound,
        id,
        Caller {
            identity,
            body: bytes,
            app,
        },
    )
    .await
}

/// `POST /v1/chat/completions`
pub async fn chat_completions(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    handle(state, parts, body, ClientApi::Chat).await
}

fn parse_chat(bytes: &[u8], headers: &HeaderMap, path: &str) -> Result<Inbound, GatewayError> {
    let mut req: ChatRequest = parse_json(bytes, path)?;
    if req.messages.is_empty() {
        return Err(
            GatewayError::invalid("`messages` must be a non-empty list").with_param("messages")
        );
    }
    let fallbacks = take_fallbacks(&mut req.extra, headers)?;
    Ok(Inbound {
        api: ClientApi::Chat,
        model: req.model.clone(),
        stream: req.is_stream(),
        wants_stream_usage: req.wants_stream_usage(),
        body: ClientBody::Chat(req),
        fallbacks,
        forward_headers: forwarded_headers(headers),
        query: None,
    })
}

/// `POST /v1/responses` and `POST /v1/embeddings`: pass-through APIs.
fn parse_passthrough(
    bytes: &[u8],
    headers: &HeaderMap,
    api: ClientApi,
    endpoint: &str,
) -> Result<Inbound, GatewayError> {
    let mut map: serde_json::Map<String, serde_json::Value> = parse_json(bytes, endpoint)?;
    let model = match map.get("model") {
        Some(serde_json::Value::String(m)) => m.clone(),
        Some(_) => {
            return Err(GatewayError::invalid("`model` must be a string").with_param("model"));
        }
        None => String::new(),
    };
    if !map.contains_key("input") {
        return Err(
            GatewayError::invalid(format!("`input` is required for {endpoint}"))
                .with_param("input"),
        );
    }
    let stream =
        api == ClientApi::Responses && map.get("stream").and_then(|v| v.as_bool()).unwrap_or(false);
    let fallbacks = take_fallbacks(&mut map, headers)?;
    Ok(Inbound {
        api,
        model,
        stream,
        wants_stream_usage: false,
        body: ClientBody::Json(map),
        fallbacks,
        forward_headers: forwarded_headers(headers),
        query: None,
    })
}

pub async fn responses(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    handle(state, parts, body, ClientApi::Responses).await
}

pub async fn embeddings(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    handle(state, parts, body, ClientApi::Embeddings).await
}

fn parse_messages(
    bytes: &[u8],
    headers: &HeaderMap,
    api: ClientApi,
    endpoint: &str,
    query: Option<&str>,
) -> Result<Inbound, GatewayError> {
    let mut req: MessagesRequest = parse_json(bytes, endpoint)?;
    if req.messages.is_empty() {
        return Err(
            GatewayError::invalid("messages: at least one message is required")
                .with_param("messages"),
        );
    }
    if api == ClientApi::Messages && req.max_tokens.is_none() {
        return Err(GatewayError::invalid("max_tokens: Field required").with_param("max_tokens"));
    }
    let fallbacks = take_fallbacks(&mut req.extra, headers)?;
    let stream = api == ClientApi::Messages && req.is_stream();
    Ok(Inbound {
        api,
        model: req.model.clone(),
        stream,
        wants_stream_usage: false,
        body: ClientBody::Messages(req),
        fallbacks,
        forward_headers: forwarded_headers(headers),
        query: query.filter(|q| !q.is_empty()).map(str::to_owned),
    })
}

/// `POST /anthropic/v1/messages`
pub async fn messages(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    handle(state, parts, body, ClientApi::Messages).await
}

/// `POST /anthropic/v1/messages/count_tokens`
pub async fn count_tokens(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    handle(state, parts, body, ClientApi::CountTokens).await
}

/// `GET /healthz`: the process is up.
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// `GET /readyz`: ready to take traffic (not shutting down).
pub async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if state.shutting_down.load(Ordering::Relaxed) {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    }
    let providers = state.engine.load().router.providers().len();
    axum::Json(serde_json::json!({ "status": "ready", "providers": providers })).into_response()
}

/// `GET /metrics`
pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    match &state.metrics {
        Some(handle) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            handle.render(),
        )
            .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            "metrics are not enabled in this process\n",
        )
            .into_response(),
    }
}

/// Unknown paths, in the shape of the API the path belongs to.
pub async fn not_found(uri: http::Uri) -> Response {
    let flavor = if uri.path().starts_with("/anthropic") {
        Flavor::Anthropic
    } else {
        Flavor::OpenAi
    };
    GatewayError::new(
        ErrorKind::NotFound,
        StatusCode::NOT_FOUND,
        format!(
            "no endpoint at {}; Sluice serves /v1/chat/completions, /v1/responses, /v1/embeddings, /v1/models, /anthropic/v1/messages and /anthropic/v1/messages/count_tokens",
            uri.path()
        ),
    )
    .into_response(flavor)
}

/// Known paths called with the wrong method.
pub async fn method_not_allowed(method: http::Method, uri: http::Uri) -> Response {
    let flavor = if uri.path().starts_with("/anthropic") {
        Flavor::Anthropic
    } else {
        Flavor::OpenAi
    };
    GatewayError::new(
        ErrorKind::InvalidRequest,
        StatusCode::METHOD_NOT_ALLOWED,
        format!("{} is not allowed on {}", method, uri.path()),
    )
    .into_response(flavor)
}
