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

mod attempt;
mod ctx;
pub mod decide;
mod respond;
pub mod stream;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::response::Response;
use bytes::Bytes;
use http::{HeaderValue, StatusCode};

use sluice_shared::translate::ResponseMeta;

use crate::config::ValidConfig;
use crate::error::{ErrorKind, Flavor, GatewayError};
use crate::governance::{Admission, Governance, Identity};
use crate::guardrails::stream::OutputGuard;
use crate::guardrails::{self as guard, Guardrails};
use crate::pricing::PriceTable;
use crate::providers::Prepared;
use crate::providers::limiter::LimitError;
use crate::record::{AppSource, AttemptOutcome, RequestOutcome, RequestRecord};
use crate::request::Inbound;
use crate::routing::{Router, backoff};
use attempt::{Step, attempt_once};
use ctx::{COST_HEADER, RequestCtx, json_response, set_served_by};
use decide::{Failure, Next, Tries, final_error, next_step};
pub use decide::{MAX_RETRY_AFTER, parse_retry_after};
use respond::stream_response;

/// Everything a request needs, as one snapshot: the routing table, prices, governance
/// and guardrails. Immutable: a change (a provider or alias through the admin API)
/// builds a new engine with [`Engine::with_router`] and the server swaps it in whole, so
/// a request sees either the old engine or the new one, never a mix.
#[derive(Debug, Clone)]
pub struct Engine {
    pub router: Arc<Router>,
    pub prices: Arc<PriceTable>,
    pub governance: Option<Arc<Governance>>,
    /// The compiled `[guardrails]` policy; `None` without that section (then no
    /// guardrail code runs at all).
    pub guardrails: Option<Arc<Guardrails>>,
}

impl Engine {
    /// The engine for a validated config.
    pub fn new(
        config: &ValidConfig,
        prices: Arc<PriceTable>,
        governance: Option<Arc<Governance>>,
    ) -> anyhow::Result<Engine> {
        let router = Router::from_config(config)?;
        let guardrails = match &config.guardrails {
            Some(policy) => Some(Arc::new(Guardrails::new(policy.clone()).map_err(|e| {
                anyhow::anyhow!("guardrails.external_hook: cannot build its HTTP client: {e}")
            })?)),
            None => None,
        };
        Ok(Engine {
            router: Arc::new(router),
            prices,
            governance,
            guardrails,
        })
    }

    /// This engine with another routing table (everything else shared).
    pub fn with_router(&self, router: Router) -> Engine {
        Engine {
            router: Arc::new(router),
            ..self.clone()
        }
    }
}

/// Who sent the request and what it looked like on the wire (for admission and audit).
#[derive(Debug, Default)]
pub struct Caller {
    pub identity: Option<Arc<Identity>>,
    /// The raw request body.
    pub body: Bytes,
    /// The application the client says it is (`x-sluice-app`); recorded as the client's
    /// assertion ([`AppSource::Client`]), never as a fact.
    pub app: Option<String>,
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
    let router = engine.router.clone();
    let mut ctx = RequestCtx {
        record: RequestRecord::new(
            request_id.clone(),
            inbound.api,
            &inbound.model,
            inbound.stream,
        ),
        started: Instant::now(),
        governance: engine.governance.clone(),
        admission: None,
        submitted: false,
        ack: None,
        scrub: router.scrubber.clone(),
    };
    ctx.record.app_source = caller.app.is_some().then_some(AppSource::Client);
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
                ctx.admission = Some(Admission::for_identity(caller.identity.clone()));
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
            Ok(admission) => ctx.admission = Some(admission),
            Err(e) => {
                ctx.admission = Some(Admission::for_identity(caller.identity.clone()));
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
                if let Err(e) = ctx.durable().await {
                    return e.into_response(flavor);
                }
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
                    if let Err(e) = ctx.durable().await {
                        return e.into_response(flavor);
                    }
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
                    let failure = Failure {
                        rotate,
                        retry_after,
                        give_up_target,
                    };
                    let tries = Tries {
                        keys: provider.keys.len(),
                        excluded: excluded.len(),
                        retries: attempt,
                        max_retries: provider.max_retries,
                        max_retry_after,
                    };
                    match next_step(failure, tries) {
                        Next::NextTarget => break,
                        Next::OtherKey => {
                            // A different key is not rate limited by the first one's 429.
                            excluded.push(key);
                            attempt += 1;
                            continue;
                        }
                        Next::Backoff => attempt += 1,
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
