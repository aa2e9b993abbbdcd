//! One attempt: send the prepared call with one key, read the answer (a body, or a
//! stream up to its first content), record what happened and say what comes next.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::{StatusCode, header};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;

use sluice_shared::openai::Usage;
use sluice_shared::translate::ResponseMeta;
use sluice_shared::translate::stream::ChunkFactory;

use super::ctx::RequestCtx;
use super::decide::{MAX_RETRY_AFTER, StatusClass, classify_status, parse_retry_after};
use super::stream::UpstreamStream;
use crate::error::{ErrorKind, GatewayError, error_chain};
use crate::providers::UpstreamCall;
use crate::providers::health::KeyFailure;
use crate::providers::protocol::adapter::StreamError;
use crate::providers::protocol::{error_flavor, error_message};
use crate::record::AttemptOutcome;
use crate::routing::Target;

/// Largest error body read from a provider (the rest is not needed for a message).
const MAX_ERROR_BODY: usize = 64 * 1024;

/// What one attempt led to.
pub(super) enum Step {
    /// A complete body in the client's shape.
    Complete { body: Bytes, usage: Option<Usage> },
    /// A stream whose first client bytes are ready.
    Stream {
        upstream: Box<UpstreamStream>,
        first: Bytes,
        upstream_ttft: Duration,
    },
    /// Answer the client with this error; no retry or fallback helps.
    Fatal(GatewayError),
    /// Worth another attempt. `rotate`: this key was refused, try another one now.
    Retry {
        error: GatewayError,
        rotate: bool,
        retry_after: Option<Duration>,
        give_up_target: bool,
    },
}

impl Step {
    /// A transient failure: back off and try again (same key or another by weight).
    pub(super) fn retry(error: GatewayError) -> Step {
        Step::Retry {
            error,
            rotate: false,
            retry_after: None,
            give_up_target: false,
        }
    }
}

pub(super) async fn attempt_once(
    ctx: &mut RequestCtx,
    target: &Target,
    key: usize,
    call: &UpstreamCall,
    meta: &ResponseMeta,
    max_response: usize,
) -> Step {
    let provider = &target.provider;
    let key_id = provider
        .keys
        .get(key)
        .map(|k| k.id.as_str())
        .unwrap_or_default()
        .to_owned();
    let started = Instant::now();
    let request = match provider.request(call, key) {
        Ok(request) => request,
        Err(error) => return Step::Fatal(error),
    };
    let health = |failure: KeyFailure| {
        if let Some(k) = provider.keys.get(key) {
            k.health
                .on_failure(failure, provider.now_ms(), &provider.health);
        }
    };
    let label = AttemptLabel {
        provider: &provider.name,
        model: &target.model,
    };

    let response =
        match tokio::time::timeout(provider.header_timeout, provider.client.send(request)).await {
            Err(_) => {
                ctx.attempt(target, &key_id, started, AttemptOutcome::HeaderTimeout);
                health(KeyFailure::Transient);
                let error = GatewayError::new(
                    ErrorKind::UpstreamTimeout,
                    StatusCode::GATEWAY_TIMEOUT,
                    format!(
                        "{label} sent no response headers within {} ms",
                        provider.header_timeout.as_millis()
                    ),
                );
                return Step::retry(error);
            }
            Ok(Err(e)) => {
                let message = e.to_string();
                ctx.attempt(
                    target,
                    &key_id,
                    started,
                    AttemptOutcome::Connect {
                        message: message.clone(),
                    },
                );
                health(KeyFailure::Transient);
                let (kind, status) = if e.is_timeout() {
                    (ErrorKind::UpstreamTimeout, StatusCode::GATEWAY_TIMEOUT)
                } else {
                    (ErrorKind::UpstreamConnect, StatusCode::BAD_GATEWAY)
                };
                let error = GatewayError::new(
                    kind,
                    status,
                    format!("{label} could not be reached: {message}"),
                );
                return Step::retry(error);
            }
            Ok(Ok(response)) => response,
        };

    let status = response.status();
    if !status.is_success() {
        let retry_after = parse_retry_after(response.headers());
        if retry_after == Some(MAX_RETRY_AFTER) {
            let raw: String = ["retry-after-ms", "retry-after"]
                .iter()
                .filter_map(|h| response.headers().get(*h))
                .filter_map(|v| v.to_str().ok())
                .collect::<Vec<_>>()
                .join(", ")
                .chars()
                .take(64)
                .collect();
            ctx.record.anomalies.push(format!(
                "Retry-After `{raw}` from provider `{}` clamped to {} s",
                provider.name,
                MAX_RETRY_AFTER.as_secs()
            ));
        }
        let body = read_body(response, MAX_ERROR_BODY, provider.stream_idle_timeout)
            .await
            .unwrap_or_default();
        let message = error_message(provider.protocol, &body);
        ctx.attempt(
            target,
            &key_id,
            started,
            AttemptOutcome::Status {
                status: status.as_u16(),
                message: message.clone(),
            },
        );
        let mut error = GatewayError::new(
            ErrorKind::UpstreamStatus,
            status,
            format!("{label} answered {}: {message}", status.as_u16()),
        );
        let flavor = error_flavor(provider.protocol);
        return match classify_status(status.as_u16()) {
            StatusClass::KeyRefused => {
                health(KeyFailure::Auth);
                Step::Retry {
                    error,
                    rotate: true,
                    retry_after: None,
                    give_up_target: true,
                }
            }
            StatusClass::RateLimited => {
                health(KeyFailure::RateLimited(retry_after));
                error.retry_after = retry_after.map(|d| d.as_secs().max(1));
                Step::Retry {
                    error,
                    rotate: true,
                    retry_after,
                    give_up_target: false,
                }
            }
            StatusClass::Transient => {
                health(KeyFailure::Transient);
                Step::Retry {
                    error,
                    rotate: false,
                    retry_after,
                    give_up_target: false,
                }
            }
            StatusClass::Final => {
                if let Some(f) = flavor {
                    error.upstream_body = Some((f, body));
                }
                Step::Fatal(error)
            }
        };
    }

    if call.stream {
        let is_sse = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if !is_sse {
            let message = "asked for a stream but the answer is not text/event-stream".to_owned();
            ctx.attempt(
                target,
                &key_id,
                started,
                AttemptOutcome::Protocol {
                    message: message.clone(),
                },
            );
            health(KeyFailure::Transient);
            let error = GatewayError::new(
                ErrorKind::UpstreamProtocol,
                StatusCode::BAD_GATEWAY,
                format!("{label} {message}"),
            );
            return Step::retry(error);
        }
        let factory = ChunkFactory {
            id: meta.id.clone(),
            model: meta.model.clone(),
            created: meta.created,
        };
        let translator = call.decode.stream(factory);
        let mut upstream = UpstreamStream::new(response, translator, provider.stream_idle_timeout);
        return match first_content(&mut upstream).await {
            Ok(Some(first)) => {
                let upstream_ttft = started.elapsed();
                ctx.attempt(
                    target,
                    &key_id,
                    started,
                    AttemptOutcome::Ok {
                        status: status.as_u16(),
                    },
                );
                if let Some(k) = provider.keys.get(key) {
                    k.health.on_success(provider.now_ms(), &provider.health);
                }
                Step::Stream {
                    upstream: Box::new(upstream),
                    first,
                    upstream_ttft,
                }
            }
            Ok(None) => {
                let message = "the stream ended without any event".to_owned();
                ctx.attempt(
                    target,
                    &key_id,
                    started,
                    AttemptOutcome::Protocol {
                        message: message.clone(),
                    },
                );
                health(KeyFailure::Transient);
                let error = GatewayError::new(
                    ErrorKind::UpstreamProtocol,
                    StatusCode::BAD_GATEWAY,
                    format!("{label}: {message}"),
                );
                Step::retry(error)
            }
            Err(e) => {
                let (outcome, error) = stream_failure(&label, &e, provider.stream_idle_timeout);
                ctx.attempt(target, &key_id, started, outcome);
                health(KeyFailure::Transient);
                Step::retry(error)
            }
        };
    }

    let body = match read_body(response, max_response, provider.stream_idle_timeout).await {
        Ok(body) => body,
        Err(e @ StreamError::TooLarge(_)) => {
            // The same request would get the same answer: no retry, no fallback.
            let (outcome, error) = stream_failure(&label, &e, provider.stream_idle_timeout);
            ctx.attempt(target, &key_id, started, outcome);
            return Step::Fatal(error);
        }
        Err(e) => {
            let (outcome, error) = stream_failure(&label, &e, provider.stream_idle_timeout);
            ctx.attempt(target, &key_id, started, outcome);
            health(KeyFailure::Transient);
            return Step::retry(error);
        }
    };
    match call.decode.body(body, meta) {
        Ok((body, usage)) => {
            ctx.attempt(
                target,
                &key_id,
                started,
                AttemptOutcome::Ok {
                    status: status.as_u16(),
                },
            );
            if let Some(k) = provider.keys.get(key) {
                k.health.on_success(provider.now_ms(), &provider.health);
            }
            Step::Complete { body, usage }
        }
        Err(mut error) => {
            ctx.attempt(
                target,
                &key_id,
                started,
                AttemptOutcome::Protocol {
                    message: error.message.clone(),
                },
            );
            health(KeyFailure::Transient);
            error.message = format!("{label}: {}", error.message);
            Step::retry(error)
        }
    }
}

/// Reads until the first event that carries content (a token, a tool call, a finish) or
/// the end, returning everything read. Events before it (OpenAI's role-only chunk,
/// Anthropic's `message_start` and `ping`) are held back so that a provider that
/// connects but fails before its first token can still be retried or fall back.
pub(super) async fn first_content(
    upstream: &mut UpstreamStream,
) -> Result<Option<Bytes>, StreamError> {
    let mut held = BytesMut::new();
    loop {
        match upstream.next_output().await? {
            Some(bytes) => {
                held.extend_from_slice(&bytes);
                if upstream.content_seen() {
                    return Ok(Some(held.freeze()));
                }
            }
            None => return Ok((!held.is_empty()).then(|| held.freeze())),
        }
    }
}

/// Names an attempt in error messages: "provider `openai` (model `gpt-4o`)". Formatted
/// only when a message is actually built.
struct AttemptLabel<'a> {
    provider: &'a str,
    model: &'a str,
}

impl std::fmt::Display for AttemptLabel<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "provider `{}` (model `{}`)", self.provider, self.model)
    }
}

pub(super) fn stream_failure(
    label: &dyn std::fmt::Display,
    e: &StreamError,
    idle: Duration,
) -> (AttemptOutcome, GatewayError) {
    match e {
        StreamError::Idle => (
            AttemptOutcome::IdleTimeout,
            GatewayError::new(
                ErrorKind::UpstreamTimeout,
                StatusCode::GATEWAY_TIMEOUT,
                format!(
                    "{label} went silent for {} ms (stream idle timeout)",
                    idle.as_millis()
                ),
            ),
        ),
        StreamError::Read(m) => (
            AttemptOutcome::Connect { message: m.clone() },
            GatewayError::new(
                ErrorKind::UpstreamConnect,
                StatusCode::BAD_GATEWAY,
                format!("{label}: {e}"),
            ),
        ),
        StreamError::Provider(p) => (
            AttemptOutcome::StreamError {
                message: format!("{}: {}", p.kind, p.message),
            },
            GatewayError::new(
                ErrorKind::UpstreamStatus,
                StatusCode::BAD_GATEWAY,
                format!("{label}: {e}"),
            ),
        ),
        StreamError::Truncated | StreamError::Protocol(_) | StreamError::TooLarge(_) => (
            AttemptOutcome::Protocol {
                message: e.to_string(),
            },
            GatewayError::new(
                ErrorKind::UpstreamProtocol,
                StatusCode::BAD_GATEWAY,
                format!("{label}: {e}"),
            ),
        ),
    }
}

/// Reads a whole body, with the idle timeout between reads and a size cap.
pub(super) async fn read_body(
    response: http::Response<Incoming>,
    cap: usize,
    idle: Duration,
) -> Result<Bytes, StreamError> {
    let mut body = response.into_body();
    // The usual answer is one data frame: hand it on without copying.
    let mut first: Option<Bytes> = None;
    let mut out = BytesMut::new();
    loop {
        let frame = match tokio::time::timeout(idle, body.frame()).await {
            Err(_) => return Err(StreamError::Idle),
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(StreamError::Read(error_chain(&e))),
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(chunk) = frame.into_data() else {
            continue; // trailers
        };
        let held = first.as_ref().map_or(0, Bytes::len) + out.len();
        if held + chunk.len() > cap {
            return Err(StreamError::TooLarge(cap));
        }
        match first.take() {
            None if out.is_empty() => first = Some(chunk),
            None => out.extend_from_slice(&chunk),
            Some(previous) => {
                out.extend_from_slice(&previous);
                out.extend_from_slice(&chunk);
            }
        }
    }
    Ok(first.unwrap_or_else(|| out.freeze()))
}
