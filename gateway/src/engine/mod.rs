//! The request engine: for one client request, walk the routing plan, make attempts
//! with retries, key rotation and fallbacks, and produce the client's response.
//!
//! In order: input guardrails (a block answers at once; a redaction rewrites the request
//! every attempt sends), routing plan, admission (key policy, limits, budgets), attempts,
//! output guardrails (on the complete body, or event by event on a stream; see
//! [`crate::guardrails`]), the answer.
//!
//! Per target: prepare the provider's request (translating if the shapes differ), take a
//! concurrency slot, then attempt up to `1 + max_retries` times:
//!
//! | outcome | key | next step |
//! |---|---|---|
//! | 2xx (stream: first event received) | success | answer the client |
//! | 400/404/413/422 and other 4xx | – | answer the client with the provider's error |
//! | 401/403 | out of rotation | another key now, else the next target |
//! | 429 | out for its `Retry-After` | another key now, else wait `Retry-After` (if ≤ `max_retry_after_secs`) |
//! | 408, 5xx, connect error, header/idle timeout, broken or unreadable body | counts a failure | backoff, retry |
//!
//! A stream is only handed to the client once its first event has arrived, so a
//! provider that stalls or fails before its first token is retried or falls back like any
//! other failure; after that, a failure ends the stream with an error event in the
//! client's framing.
//!
//! Gateway overhead is defined as: non-streamed, total time minus time waiting on
//! providers, backoff and queues; streamed, time to the first event sent minus the same
//! waits up to the final provider's first event.

pub mod record;
pub mod stream;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use http::{HeaderValue, StatusCode, header};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use tokio::sync::OwnedSemaphorePermit;

use sluice_shared::openai::Usage;
use sluice_shared::translate::ResponseMeta;
use sluice_shared::translate::stream::ChunkFactory;

use crate::error::{ErrorKind, Flavor, GatewayError};
use crate::governance::pricing::{Cost, PriceTable};
use crate::governance::{Governance, Identity};
use crate::guardrails::stream::OutputGuard;
use crate::guardrails::{self as guard, GUARDRAILS_HEADER, Guardrails};
use crate::providers::kind::Protocol;
use crate::providers::wire::{decode_body, upstream_error_message};
use crate::providers::{Inbound, Prepared, UpstreamCall};
use crate::routing::health::KeyFailure;
use crate::routing::limiter::LimitError;
use crate::routing::{Router, Target, backoff};
use record::{AttemptOutcome, AttemptRecord, RecordSink, RequestOutcome, RequestRecord};
pub use stream::error_chain;
use stream::{StreamError, StreamTranslator, UpstreamStream};

/// Largest error body read from a provider (the rest is not needed for a message).
const MAX_ERROR_BODY: usize = 64 * 1024;

/// Routing table plus where records go. Immutable; swapped whole on config change.
#[derive(Debug)]
pub struct Engine {
    /// Swapped whole when providers or aliases change through the admin API.
    pub router: arc_swap::ArcSwap<Router>,
    pub sink: Arc<dyn RecordSink>,
    pub prices: Arc<PriceTable>,
    pub governance: Option<Arc<Governance>>,
    /// The compiled `[guardrails]` policy; `None` without that section (then no
    /// guardrail code runs at all).
    pub guardrails: Option<Arc<Guardrails>>,
}

/// Who sent the request and what it looked like on the wire (for admission and audit).
#[derive(Debug, Default)]
pub struct Caller {
    pub identity: Option<Arc<Identity>>,
    /// The raw request body.
    pub body: Bytes,
    pub app: Option<String>,
}

/// The record under construction, submitted exactly once: explicitly when the response
/// is complete, or on drop — which means the client went away (the handler future or
/// the response body was dropped) and the upstream request was cancelled with it.
struct RequestCtx {
    record: RequestRecord,
    started: Instant,
    sink: Arc<dyn RecordSink>,
    submitted: bool,
    /// Strict audit: the writer's acknowledgement to wait for before the response ends.
    ack: Option<crate::governance::audit::AuditAck>,
    /// Removes configured secrets from upstream text before it is recorded or answered.
    scrub: Arc<crate::secret::Scrubber>,
}

impl RequestCtx {
    fn submit(&mut self, status: u16, outcome: RequestOutcome) {
        if self.submitted {
            return;
        }
        self.submitted = true;
        let mut record = std::mem::replace(
            &mut self.record,
            RequestRecord::new(String::new(), crate::providers::ClientApi::Chat, "", false),
        );
        record.status = status;
        record.outcome = outcome;
        record.latency = self.started.elapsed();
        record.upstream_time = record.attempts.iter().map(|a| a.duration).sum();
        crate::metrics::request_finished(&record);
        self.ack = self.sink.submit(record);
    }

    /// Waits until the audit record is durable (strict mode; immediate otherwise).
    async fn durable(&mut self) {
        if let Some(ack) = self.ack.take() {
            let _ = ack.await;
        }
    }

    /// Costs the answer and returns the header value.
    fn price(&mut self, prices: &PriceTable, target: &Target) -> HeaderValue {
        if let Some(usage) = &mut self.record.usage {
            let clamped = usage.clamp();
            if !clamped.is_empty() {
                tracing::warn!(provider = %target.provider.name, "upstream reported absurd usage; clamped: {}", clamped.join(", "));
                self.record.anomalies.push(format!(
                    "usage reported by provider `{}` clamped to {} tokens: {}",
                    target.provider.name,
                    sluice_shared::openai::MAX_REPORTED_TOKENS,
                    clamped.join(", ")
                ));
            }
        }
        if let Some(usage) = &self.record.usage {
            self.record.cost = prices.cost(&target.provider.name, &target.model, usage);
        }
        cost_header(self.record.cost)
    }

    fn attempt(
        &mut self,
        target: &Target,
        key_id: &str,
        started: Instant,
        mut outcome: AttemptOutcome,
    ) {
        match &mut outcome {
            AttemptOutcome::Status { message, .. }
            | AttemptOutcome::Connect { message }
            | AttemptOutcome::Protocol { message }
            | AttemptOutcome::StreamError { message }
            | AttemptOutcome::Saturated { message } => self.scrub.string(message),
            AttemptOutcome::Skipped { reason } => self.scrub.string(reason),
            AttemptOutcome::Ok { .. }
            | AttemptOutcome::HeaderTimeout
            | AttemptOutcome::IdleTimeout => {}
        }
        self.record.attempts.push(AttemptRecord {
            provider: target.provider.name.clone(),
            model: target.model.clone(),
            key_id: key_id.to_owned(),
            started_after: started.saturating_duration_since(self.started),
            duration: started.elapsed(),
            outcome,
        });
    }

    async fn error_response(&mut self, mut error: GatewayError, flavor: Flavor) -> Response {
        self.scrub_error(&mut error);
        self.record.error_kind = Some(error.kind.label());
        self.record.error_message = Some(error.message.clone());
        let status = error.status.as_u16();
        let mut response = error.into_response(flavor);
        self.stamp(&mut response);
        self.submit(status, RequestOutcome::Error);
        self.durable().await;
        response
    }

    /// What an error carries from upstream (its message, a forwarded body), scrubbed.
    fn scrub_error(&self, error: &mut GatewayError) {
        self.scrub.string(&mut error.message);
        if let Some((_, body)) = &mut error.upstream_body {
            *body = self.scrub.bytes(std::mem::take(body));
        }
    }

    fn stamp(&self, response: &mut Response) {
        let headers = response.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&self.record.request_id) {
            headers.insert("x-request-id", v);
        }
        let calls = self
            .record
            .attempts
            .iter()
            .filter(|a| {
                !matches!(
                    a.outcome,
                    AttemptOutcome::Skipped { .. } | AttemptOutcome::Saturated { .. }
                )
            })
            .count();
        headers.insert("x-sluice-attempts", HeaderValue::from(calls));
    }

    /// Time spent waiting on providers and queues before the current moment.
    fn waited(&self) -> Duration {
        self.record.wait_time
            + self
                .record
                .attempts
                .iter()
                .map(|a| a.duration)
                .sum::<Duration>()
    }
}

impl Drop for RequestCtx {
    fn drop(&mut self) {
        if !self.submitted {
            // 499: nginx's convention for "client closed request".
            self.submit(499, RequestOutcome::ClientDisconnected);
        }
    }
}

/// What one attempt led to.
enum Step {
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
    fn retry(error: GatewayError) -> Step {
        Step::Retry {
            error,
            rotate: false,
            retry_after: None,
            give_up_target: false,
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Serves one client request.
pub async fn execute(
    engine: Arc<Engine>,
    mut inbound: Inbound,
    request_id: String,
    caller: Caller,
) -> Response {
    crate::metrics::request_started();
    let flavor = inbound.api.flavor();
    // The routing table may be replaced by the admin API at any time; this request keeps
    // the one it started with.
    let router = engine.router.load_full();
    let mut ctx = RequestCtx {
        record: RequestRecord::new(
            request_id.clone(),
            inbound.api,
            &inbound.model,
            inbound.stream,
        ),
        started: Instant::now(),
        sink: engine.sink.clone(),
        submitted: false,
        ack: None,
        scrub: router.scrubber.clone(),
    };
    ctx.record.app = caller.app;
    ctx.record.request_bytes = caller.body.len() as u64;
    let full_content = caller
        .identity
        .as_ref()
        .is_some_and(|i| i.policy.content_logging == sluice_shared::audit::ContentLogging::Full);
    if full_content {
        ctx.record.request_body = Some(caller.body.clone());
    }
    if let Some(guardrails) = &engine.guardrails {
        // Before routing and admission: a blocked request reaches no provider and
        // reserves no budget; a redacted one is what every attempt sends.
        let scope = guard::scope(caller.identity.as_deref(), ctx.record.app.as_deref());
        let checked = guardrails
            .check_input(&mut inbound, &scope, &mut ctx.record.guardrails)
            .await;
        match checked {
            Ok(rewritten) => {
                if full_content && rewritten {
                    // The audit log keeps what was sent on, not the redacted values.
                    ctx.record.request_body = guard::request_json(&inbound.body);
                }
            }
            Err(e) => {
                if full_content {
                    ctx.record.request_body = None;
                }
                ctx.record.admission = Some(crate::governance::Admission::for_identity(
                    caller.identity.clone(),
                ));
                return ctx.error_response(e, flavor).await;
            }
        }
    }
    let mut plan = match router.plan(&inbound.model, &inbound.fallbacks, flavor) {
        Ok(plan) => plan,
        Err(e) => return ctx.error_response(e, flavor).await,
    };
    if let Some(gov) = &engine.governance {
        // About four bytes of JSON per input token: a cheap upper-side estimate.
        let input_estimate = (caller.body.len() as u64).div_ceil(4);
        match gov.admit(
            caller.identity.as_ref(),
            &inbound.model,
            &mut plan,
            input_estimate,
            inbound.max_output_tokens(),
        ) {
            Ok(admission) => ctx.record.admission = Some(admission),
            Err(e) => {
                ctx.record.admission = Some(crate::governance::Admission::for_identity(
                    caller.identity.clone(),
                ));
                return ctx.error_response(e, flavor).await;
            }
        }
    }
    let retry = &router.retry;
    let max_retry_after = Duration::from_secs(retry.max_retry_after_secs);
    let mut errors: Vec<GatewayError> = Vec::new();
    // The request's attempt budget: calls over all targets, and a time after which no
    // new attempt starts. `stopped` says which ran out, for the final message.
    let deadline = ctx.started + Duration::from_millis(retry.retry_deadline_ms);
    let mut calls = 0u32;
    let mut stopped: Option<String> = None;

    'targets: for target in &plan {
        let provider = &target.provider;
        let prepare_start = Instant::now();
        if !provider.has_available_key(provider.now_ms()) {
            // Breaker open: every key is cooling down after failures. No call is made
            // until one comes back, however many requests or fallbacks name it.
            let wait = provider.reopens_in();
            let message = format!(
                "provider `{}` is skipped: every key is out of rotation after repeated failures (breaker open for {} ms more)",
                provider.name,
                wait.as_millis()
            );
            ctx.attempt(
                target,
                "",
                prepare_start,
                AttemptOutcome::Skipped {
                    reason: message.clone(),
                },
            );
            let mut e = GatewayError::new(
                ErrorKind::UpstreamConnect,
                StatusCode::SERVICE_UNAVAILABLE,
                message,
            );
            e.retry_after = Some(wait.as_secs().max(1));
            errors.push(e);
            continue;
        }
        let call = match provider.prepare(&mut inbound, &target.model) {
            Ok(Prepared::Call(call)) => call,
            Ok(Prepared::Local(body)) => {
                ctx.record.served_by = Some(format!("{}/{}", provider.name, target.model));
                ctx.record.overhead = Some(ctx.started.elapsed());
                ctx.record.response_bytes = body.len() as u64;
                let mut response = json_response(body);
                ctx.stamp(&mut response);
                ctx.stamp_guardrails(&mut response);
                ctx.submit(200, RequestOutcome::Ok);
                ctx.durable().await;
                set_served_by(&mut response, target);
                response.headers_mut().insert(
                    "x-sluice-token-count",
                    HeaderValue::from_static("estimated"),
                );
                return response;
            }
            Err(e) => {
                ctx.attempt(
                    target,
                    "",
                    prepare_start,
                    AttemptOutcome::Skipped {
                        reason: e.message.clone(),
                    },
                );
                errors.push(e);
                continue;
            }
        };
        let permit = match provider.limiter.acquire().await {
            Ok((permit, waited)) => {
                ctx.record.wait_time += waited;
                permit
            }
            Err(limit) => {
                let message = match limit {
                    LimitError::QueueFull {
                        max_concurrency,
                        max_queue,
                    } => format!(
                        "provider `{}` is at its concurrency limit ({max_concurrency} in flight, {max_queue} queued)",
                        provider.name
                    ),
                    LimitError::Timeout { waited } => format!(
                        "provider `{}` had no free slot within {} ms",
                        provider.name,
                        waited.as_millis()
                    ),
                };
                ctx.attempt(
                    target,
                    "",
                    prepare_start,
                    AttemptOutcome::Saturated {
                        message: message.clone(),
                    },
                );
                let mut e = GatewayError::new(
                    ErrorKind::Saturated,
                    StatusCode::SERVICE_UNAVAILABLE,
                    message,
                );
                e.retry_after = Some(1);
                errors.push(e);
                continue;
            }
        };

        let meta = ResponseMeta {
            id: match flavor {
                Flavor::OpenAi => format!("chatcmpl-{request_id}"),
                Flavor::Anthropic => format!("msg_{request_id}"),
            },
            created: unix_now(),
            model: target.model.clone(),
        };
        let mut excluded: Vec<usize> = Vec::new();
        let mut attempt = 0u32;
        while let Some(key) = provider.choose_key(&excluded) {
            if calls >= retry.max_attempts {
                stopped = Some(format!(
                    "stopped after {calls} provider calls (routing.max_attempts)"
                ));
                break 'targets;
            }
            if calls > 0 && Instant::now() >= deadline {
                stopped = Some(format!(
                    "no new attempt after {} ms (routing.retry_deadline_ms)",
                    retry.retry_deadline_ms
                ));
                break 'targets;
            }
            calls += 1;
            let attempt_start = Instant::now();
            let step = attempt_once(
                &mut ctx,
                target,
                key,
                &call,
                &meta,
                retry.max_response_bytes,
            )
            .await;
            match step {
                Step::Complete { mut body, usage } => {
                    ctx.record.served_by = Some(format!("{}/{}", provider.name, target.model));
                    ctx.record.usage = usage;
                    if let Some(guardrails) = &engine.guardrails {
                        let scope =
                            guard::scope(caller.identity.as_deref(), ctx.record.app.as_deref());
                        let (guarded, blocked) = guardrails.check_output(
                            inbound.api,
                            body,
                            &scope,
                            &mut ctx.record.guardrails,
                        );
                        body = guarded;
                        if let Some(message) = blocked {
                            ctx.record.error_kind = Some(ErrorKind::GuardrailBlocked.label());
                            ctx.record.error_message = Some(message);
                        }
                    }
                    let total = ctx.started.elapsed();
                    let waited = ctx.waited();
                    ctx.record.overhead = Some(total.saturating_sub(waited));
                    ctx.record.response_bytes = body.len() as u64;
                    if full_content {
                        ctx.record.response_body = Some(body.clone());
                    }
                    let cost = ctx.price(&engine.prices, target);
                    let mut response = json_response(body);
                    ctx.stamp(&mut response);
                    ctx.stamp_guardrails(&mut response);
                    response.headers_mut().insert(COST_HEADER, cost);
                    ctx.submit(200, RequestOutcome::Ok);
                    drop(permit);
                    ctx.durable().await;
                    set_served_by(&mut response, target);
                    return response;
                }
                Step::Stream {
                    upstream,
                    first,
                    upstream_ttft,
                } => {
                    ctx.record.served_by = Some(format!("{}/{}", provider.name, target.model));
                    // Everything before this attempt, plus the provider's own first-event time.
                    let prior = ctx.waited().saturating_sub(attempt_start.elapsed());
                    let guard = engine.guardrails.as_ref().and_then(|g| {
                        OutputGuard::new(
                            inbound.api,
                            g.policy.clone(),
                            caller.identity.clone(),
                            ctx.record.app.clone(),
                        )
                    });
                    let mut response = stream_response(
                        ctx,
                        upstream,
                        first,
                        permit,
                        flavor,
                        prior + upstream_ttft,
                        target,
                        engine.prices.clone(),
                        guard,
                    );
                    set_served_by(&mut response, target);
                    return response;
                }
                Step::Fatal(error) => return ctx.error_response(error, flavor).await,
                Step::Retry {
                    error,
                    rotate,
                    retry_after,
                    give_up_target,
                } => {
                    errors.push(error);
                    // A refused key is set aside only while another key remains; a lone
                    // rate-limited key is retried after its Retry-After instead.
                    let other_key = rotate && provider.keys.len() > excluded.len() + 1;
                    if other_key {
                        excluded.push(key);
                    } else if give_up_target {
                        break;
                    }
                    if attempt >= provider.max_retries {
                        break;
                    }
                    attempt += 1;
                    if other_key {
                        // A different key is not rate limited by the first one's 429.
                        continue;
                    }
                    if let Some(after) = retry_after
                        && after > max_retry_after
                    {
                        break;
                    }
                    let delay = backoff(retry, attempt - 1, retry_after)
                        .min(deadline.saturating_duration_since(Instant::now()));
                    tokio::time::sleep(delay).await;
                    ctx.record.wait_time += delay;
                }
            }
        }
        drop(permit);
    }

    let mut error = final_error(errors, &ctx.record.attempts);
    if let Some(why) = stopped {
        error.message = format!("{}; {why}", error.message);
    }
    ctx.error_response(error, flavor).await
}

async fn attempt_once(
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
        let message = upstream_error_message(provider.protocol, &body);
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
        let flavor = match provider.protocol {
            Protocol::OpenAi | Protocol::Azure => Some(Flavor::OpenAi),
            Protocol::Anthropic => Some(Flavor::Anthropic),
            Protocol::Gemini => None,
        };
        return match status.as_u16() {
            401 | 403 => {
                health(KeyFailure::Auth);
                Step::Retry {
                    error,
                    rotate: true,
                    retry_after: None,
                    give_up_target: true,
                }
            }
            429 => {
                health(KeyFailure::RateLimited(retry_after));
                error.retry_after = retry_after.map(|d| d.as_secs().max(1));
                Step::Retry {
                    error,
                    rotate: true,
                    retry_after,
                    give_up_target: false,
                }
            }
            408 | 409 | 500..=599 => {
                health(KeyFailure::Transient);
                Step::Retry {
                    error,
                    rotate: false,
                    retry_after,
                    give_up_target: false,
                }
            }
            _ => {
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
        let translator = StreamTranslator::new(call.decode, factory);
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
    match decode_body(call.decode, body, meta) {
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
async fn first_content(upstream: &mut UpstreamStream) -> Result<Option<Bytes>, StreamError> {
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

fn stream_failure(
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
async fn read_body(
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

/// The longest `Retry-After` believed from an upstream: a day. Larger values (`1e300`)
/// are clamped to it, so no duration or clock arithmetic downstream can overflow.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(86_400);

/// `Retry-After` in seconds or as an HTTP date; also OpenAI's `retry-after-ms`. Clamped
/// to [`MAX_RETRY_AFTER`]; negative, NaN or unparsable values are ignored.
pub fn parse_retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    let seconds = |secs: f64| {
        (secs.is_finite() && secs >= 0.0)
            .then(|| Duration::from_secs_f64(secs.min(MAX_RETRY_AFTER.as_secs_f64())))
    };
    if let Some(after) = headers
        .get("retry-after-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .and_then(|ms| seconds(ms / 1000.0))
    {
        return Some(after);
    }
    let value = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<f64>() {
        return seconds(secs);
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO)
            .min(MAX_RETRY_AFTER),
    )
}

/// The error for a request whose every target failed: the status of the most telling
/// failure, and a message listing what each attempt ran into.
fn final_error(errors: Vec<GatewayError>, attempts: &[AttemptRecord]) -> GatewayError {
    let summary: Vec<String> = attempts
        .iter()
        .map(|a| {
            let what = match &a.outcome {
                AttemptOutcome::Ok { status } => format!("{status}"),
                AttemptOutcome::Status { status, .. } => format!("{status}"),
                AttemptOutcome::Skipped { reason } => format!("skipped ({reason})"),
                other => other.label().replace('_', " "),
            };
            format!("{}/{}: {what}", a.provider, a.model)
        })
        .collect();
    let Some(mut last) = errors.into_iter().last() else {
        return GatewayError::new(
            ErrorKind::Internal,
            StatusCode::BAD_GATEWAY,
            "no target could be tried",
        );
    };
    // Skips alone mean the request itself cannot be served: keep the 400 and its reason.
    if attempts
        .iter()
        .all(|a| matches!(a.outcome, AttemptOutcome::Skipped { .. }))
    {
        return last;
    }
    let status = match last.kind {
        ErrorKind::UpstreamStatus
            if last.status.is_server_error() || last.status == StatusCode::TOO_MANY_REQUESTS =>
        {
            last.status
        }
        ErrorKind::UpstreamStatus => StatusCode::BAD_GATEWAY,
        _ => last.status,
    };
    last.status = status;
    last.upstream_body = None;
    last.message = format!(
        "all {} attempts failed ({}); last error: {}",
        attempts.len(),
        summary.join(", "),
        last.message
    );
    last
}

fn json_response(body: Bytes) -> Response {
    let mut response = Response::new(Body::from(body));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn set_served_by(response: &mut Response, target: &Target) {
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&target.provider.name) {
        headers.insert("x-sluice-provider", v);
    }
    if let Ok(v) = HeaderValue::from_str(&target.model) {
        headers.insert("x-sluice-model", v);
    }
}

/// State of a stream being delivered to the client.
struct ClientStream {
    ctx: RequestCtx,
    upstream: Box<UpstreamStream>,
    first: Option<Bytes>,
    /// Held until the stream ends: the provider's concurrency slot.
    _permit: OwnedSemaphorePermit,
    target: Target,
    prices: Arc<PriceTable>,
    flavor: Flavor,
    /// Waiting on providers and queues up to the final provider's first event.
    waited_to_first: Duration,
    /// The bytes sent, kept when the caller's key logs full content.
    capture: Option<BytesMut>,
    done: bool,
    /// Output guardrails over the client's events, when a policy is configured.
    guard: Option<OutputGuard>,
}

impl Drop for ClientStream {
    fn drop(&mut self) {
        // A client that leaves mid-stream still gets what the guard decided recorded,
        // and the usage seen so far priced (the governance sink charges at least the
        // reserved estimate on top of that).
        if !self.ctx.submitted {
            self.record_guard();
            self.ctx.record.usage = self.upstream.usage();
            let _ = self.ctx.price(&self.prices, &self.target);
        }
    }
}

impl ClientStream {
    /// Moves the output guard's decisions into the record (once).
    fn record_guard(&mut self) {
        if let Some(g) = self.guard.take() {
            guard::record(
                &mut self.ctx.record.guardrails,
                &g.decisions(),
                sluice_shared::guardrails::Direction::Output,
            );
            crate::metrics::guardrail_scan("output", g.scan_time());
        }
    }

    /// Passes client bytes through the output guard: `None` when everything is held
    /// back for now. On a block, the stream ends here (`done` is set and the record
    /// submitted, these bytes included): the events before the blocking one, then an
    /// error event in the client's framing, and nothing after it.
    async fn pass(&mut self, bytes: Bytes) -> Option<Bytes> {
        let Some(g) = self.guard.as_mut() else {
            return Some(bytes);
        };
        let filtered = g.filter(&bytes);
        let Some(message) = filtered.blocked else {
            return (!filtered.bytes.is_empty()).then_some(filtered.bytes);
        };
        self.done = true;
        self.sent(&filtered.bytes);
        self.record_guard();
        let error = guard::blocked_error(Some(message));
        self.ctx.record.error_kind = Some(error.kind.label());
        self.ctx.record.error_message = Some(error.message.clone());
        self.ctx.record.usage = self.upstream.usage();
        self.ctx.price(&self.prices, &self.target);
        self.ctx.record.response_body = self.capture.take().map(BytesMut::freeze);
        self.ctx.submit(200, RequestOutcome::StreamFailed);
        self.ctx.durable().await;
        let event = self.error_event(&error);
        let mut out = BytesMut::with_capacity(filtered.bytes.len() + event.len());
        out.extend_from_slice(&filtered.bytes);
        out.extend_from_slice(&event);
        Some(out.freeze())
    }

    /// The event that ends a failed stream, in the client's framing.
    fn error_event(&self, error: &GatewayError) -> Bytes {
        // A Responses stream ends with its own failure events.
        if self.ctx.record.api == crate::providers::ClientApi::Responses.label() {
            error.responses_stream_events(&format!("resp_{}", self.ctx.record.request_id))
        } else {
            error.stream_event(self.flavor)
        }
    }

    fn sent(&mut self, bytes: &Bytes) {
        self.ctx.record.response_bytes += bytes.len() as u64;
        if let Some(c) = &mut self.capture {
            c.extend_from_slice(bytes);
        }
    }

    /// Ends the stream: records it and returns the last bytes for the client — the cost
    /// as an SSE comment (ignored by SSE clients, readable by anyone who looks) after a
    /// complete stream, or an error event after a failed one.
    async fn finish(&mut self, error: Option<StreamError>) -> Option<Bytes> {
        self.done = true;
        // After a failure, text the guard still holds back is dropped with the stream.
        let output = self.guard.as_ref().map(|g| g.decisions());
        self.record_guard();
        self.ctx.record.usage = self.upstream.usage();
        let cost = self.ctx.price(&self.prices, &self.target);
        self.ctx.record.response_body = self.capture.take().map(BytesMut::freeze);
        match error {
            None => {
                self.ctx.submit(200, RequestOutcome::Ok);
                self.ctx.durable().await;
                let value = cost.to_str().unwrap_or("unknown");
                // What the output scan did cannot be a header any more: it rides along
                // with the cost, as a comment.
                let guarded = output
                    .and_then(|d| guard::header_value(d.iter().map(|d| d.action)))
                    .map(|v| format!(": {GUARDRAILS_HEADER}={}\n", v.to_str().unwrap_or_default()))
                    .unwrap_or_default();
                Some(Bytes::from(format!("{guarded}: {COST_HEADER}={value}\n\n")))
            }
            Some(e) => {
                let provider = &self.target.provider;
                let label = format!("provider `{}`", provider.name);
                let (_, mut error) = stream_failure(&label, &e, provider.stream_idle_timeout);
                self.ctx.scrub_error(&mut error);
                self.ctx.record.error_kind = Some(error.kind.label());
                self.ctx.record.error_message = Some(error.message.clone());
                self.ctx.submit(200, RequestOutcome::StreamFailed);
                self.ctx.durable().await;
                Some(self.error_event(&error))
            }
        }
    }
}

#[expect(
    clippy::too_many_arguments,
    reason = "one call site; a struct would only rename them"
)]
fn stream_response(
    ctx: RequestCtx,
    upstream: Box<UpstreamStream>,
    first: Bytes,
    permit: OwnedSemaphorePermit,
    flavor: Flavor,
    waited_to_first: Duration,
    target: &Target,
    prices: Arc<PriceTable>,
    guard: Option<OutputGuard>,
) -> Response {
    let capture = ctx.record.request_body.is_some().then(BytesMut::new);
    let state = ClientStream {
        ctx,
        upstream,
        first: Some(first),
        _permit: permit,
        target: target.clone(),
        prices,
        flavor,
        waited_to_first,
        capture,
        done: false,
        guard,
    };
    let mut headers = http::HeaderMap::new();
    state.ctx.stamp_into(&mut headers);
    // What the input scan did; the output scan's result ends the stream as a comment.
    if let Some(v) = guard::header_value(state.ctx.record.guardrails.iter().map(|d| d.action)) {
        headers.insert(GUARDRAILS_HEADER, v);
    }
    let body = futures_util::stream::unfold(state, |mut st| async move {
        if let Some(first) = st.first.take() {
            let ttft = st.ctx.started.elapsed();
            st.ctx.record.time_to_first_token = Some(ttft);
            st.ctx.record.overhead = Some(ttft.saturating_sub(st.waited_to_first));
            if let Some(first) = st.pass(first).await {
                if !st.done {
                    st.sent(&first);
                }
                return Some((Ok::<Bytes, Infallible>(first), st));
            }
        }
        // Loops only while the output guard holds everything back.
        loop {
            if st.done {
                return None;
            }
            match st.upstream.next_output().await {
                Ok(Some(bytes)) => {
                    if let Some(bytes) = st.pass(bytes).await {
                        if !st.done {
                            st.sent(&bytes);
                        }
                        return Some((Ok(bytes), st));
                    }
                }
                Ok(None) => return st.finish(None).await.map(|last| (Ok(last), st)),
                Err(e) => return st.finish(Some(e)).await.map(|event| (Ok(event), st)),
            }
        }
    });
    let mut response = Response::new(Body::from_stream(body));
    let h = response.headers_mut();
    h.extend(headers);
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// Response header with the request's cost in US dollars (`unknown` for an unpriced
/// model). Streams carry it as a final SSE comment instead.
pub const COST_HEADER: &str = "x-sluice-cost-usd";

fn cost_header(cost: Cost) -> HeaderValue {
    if cost.priced {
        HeaderValue::from_str(&format!("{:.6}", cost.usd()))
            .unwrap_or(HeaderValue::from_static("unknown"))
    } else {
        HeaderValue::from_static("unknown")
    }
}

impl RequestCtx {
    /// `x-sluice-guardrails` for an answer whose guardrail decisions are all made.
    fn stamp_guardrails(&self, response: &mut Response) {
        if let Some(v) = guard::header_value(self.record.guardrails.iter().map(|d| d.action)) {
            response.headers_mut().insert(GUARDRAILS_HEADER, v);
        }
    }

    fn stamp_into(&self, headers: &mut http::HeaderMap) {
        let mut response = Response::new(Body::empty());
        self.stamp(&mut response);
        headers.extend(response.headers().clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn retry_after_from_an_upstream_is_clamped_whatever_its_form() {
        for value in [
            "1e300",
            "18446744073709551616",
            "inf",
            "1.7976931348623157e308",
        ] {
            let got = parse_retry_after(&headers(&[("retry-after", value)]));
            assert!(got.is_none_or(|d| d <= MAX_RETRY_AFTER), "{value}: {got:?}");
        }
        assert_eq!(
            parse_retry_after(&headers(&[("retry-after-ms", "1e300")])),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(parse_retry_after(&headers(&[("retry-after", "-5")])), None);
        assert_eq!(parse_retry_after(&headers(&[("retry-after", "NaN")])), None);
        assert_eq!(
            parse_retry_after(&headers(&[("retry-after", "2")])),
            Some(Duration::from_secs(2))
        );
        assert!(
            parse_retry_after(&headers(&[(
                "retry-after",
                "Fri, 31 Dec 9999 23:59:59 GMT"
            )]))
            .is_some_and(|d| d <= MAX_RETRY_AFTER)
        );
    }
}
