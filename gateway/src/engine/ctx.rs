//! The request under way: its record, what it holds from governance, and the headers
//! every answer carries. A record is submitted exactly once (see [`RequestCtx`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};

use crate::error::{ErrorKind, Flavor, GatewayError};
use crate::governance::audit::AuditAck;
use crate::governance::{Admission, Governance};
use crate::guardrails::{self as guard, GUARDRAILS_HEADER};
use crate::pricing::{Cost, PriceTable};
use crate::record::{AttemptOutcome, AttemptRecord, RequestOutcome, RequestRecord};
use crate::request::{ClientApi, stamp_request_id};
use crate::routing::Target;
use crate::secret::Scrubber;

/// The record under construction, submitted exactly once: explicitly when the response
/// is complete, or on drop — which means the client went away (the handler future or
/// the response body was dropped) and the upstream request was cancelled with it.
pub(super) struct RequestCtx {
    pub(super) record: RequestRecord,
    pub(super) started: Instant,
    /// Settles and audits the record when it is finished; `None` without `[governance]`.
    pub(super) governance: Option<Arc<Governance>>,
    /// Budget reservations and limit slots held for this request, settled with it.
    pub(super) admission: Option<Admission>,
    pub(super) submitted: bool,
    /// Strict audit: the writer's acknowledgement to wait for before the response ends.
    pub(super) ack: Option<AuditAck>,
    /// Removes configured secrets from upstream text before it is recorded or answered.
    pub(super) scrub: Arc<Scrubber>,
}

impl RequestCtx {
    pub(super) fn submit(&mut self, status: u16, outcome: RequestOutcome) {
        if self.submitted {
            return;
        }
        self.submitted = true;
        let mut record = std::mem::replace(
            &mut self.record,
            RequestRecord::new(String::new(), ClientApi::Chat, "", false),
        );
        record.status = status;
        record.outcome = outcome;
        record.latency = self.started.elapsed();
        record.upstream_time = record.attempts.iter().map(|a| a.duration).sum();
        crate::metrics::request_finished(&record);
        crate::record::log(&record);
        if let Some(governance) = &self.governance {
            self.ack = governance.finish(record, self.admission.take());
        }
    }

    /// Waits until the audit record is durable (strict mode; immediate otherwise). In
    /// strict mode a record that could not be made durable fails the answer: the
    /// caller gets a 503 (or an error event ending the stream) instead of a response
    /// the audit log would not show. The reason (paths, database errors) goes to the
    /// log, not to the client.
    pub(super) async fn durable(&mut self) -> Result<(), GatewayError> {
        let Some(ack) = self.ack.take() else {
            return Ok(());
        };
        ack.await.map_err(|e| {
            tracing::error!(request_id = %self.record.request_id, error = %e, "strict audit: the record is not durable; failing the response");
            GatewayError::new(
                ErrorKind::Internal,
                StatusCode::SERVICE_UNAVAILABLE,
                "the gateway could not record this request in its audit log (strict durability), so it does not answer it; retry later",
            )
        })
    }

    /// Costs the answer and returns the header value.
    pub(super) fn price(&mut self, prices: &PriceTable, target: &Target) -> HeaderValue {
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

    pub(super) fn attempt(
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

    pub(super) async fn error_response(
        &mut self,
        mut error: GatewayError,
        flavor: Flavor,
    ) -> Response {
        self.scrub_error(&mut error);
        self.record.error_kind = Some(error.kind.label());
        self.record.error_message = Some(error.message.clone());
        let status = error.status.as_u16();
        let mut response = error.into_response(flavor);
        self.stamp(&mut response);
        self.submit(status, RequestOutcome::Error);
        // Already an error answer: a failed audit acknowledgement is logged by `durable`.
        let _ = self.durable().await;
        response
    }

    /// What an error carries from upstream (its message, a forwarded body), scrubbed.
    pub(super) fn scrub_error(&self, error: &mut GatewayError) {
        self.scrub.string(&mut error.message);
        if let Some((_, body)) = &mut error.upstream_body {
            *body = self.scrub.bytes(std::mem::take(body));
        }
    }

    pub(super) fn stamp(&self, response: &mut Response) {
        self.stamp_into(response.headers_mut());
    }

    /// `x-request-id` and `x-sluice-attempts`, into any header map (a stream's headers
    /// are built before its response).
    pub(super) fn stamp_into(&self, headers: &mut http::HeaderMap) {
        stamp_request_id(headers, &self.record.request_id);
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
    pub(super) fn waited(&self) -> Duration {
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

impl RequestCtx {
    /// `x-sluice-guardrails` for an answer whose guardrail decisions are all made.
    pub(super) fn stamp_guardrails(&self, response: &mut Response) {
        if let Some(v) = guard::header_value(self.record.guardrails.iter().map(|d| d.action)) {
            response.headers_mut().insert(GUARDRAILS_HEADER, v);
        }
    }
}

pub(super) fn json_response(body: Bytes) -> Response {
    let mut response = Response::new(Body::from(body));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

pub(super) fn set_served_by(response: &mut Response, target: &Target) {
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&target.provider.name) {
        headers.insert("x-sluice-provider", v);
    }
    if let Ok(v) = HeaderValue::from_str(&target.model) {
        headers.insert("x-sluice-model", v);
    }
}

/// Response header with the request's cost in US dollars (`unknown` for an unpriced
/// model). Streams carry it as a final SSE comment instead.
pub const COST_HEADER: &str = "x-sluice-cost-usd";

pub(super) fn cost_header(cost: Cost) -> HeaderValue {
    if cost.priced {
        HeaderValue::from_str(&format!("{:.6}", cost.usd()))
            .unwrap_or(HeaderValue::from_static("unknown"))
    } else {
        HeaderValue::from_static("unknown")
    }
}
