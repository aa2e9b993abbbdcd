//! A streamed answer on its way to the client: output guardrails event by event, the
//! record finished when the stream ends, fails or the client leaves.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use http::{HeaderValue, header};
use tokio::sync::OwnedSemaphorePermit;

use super::attempt::stream_failure;
use super::ctx::{COST_HEADER, RequestCtx};
use super::stream::UpstreamStream;
use crate::error::{Flavor, GatewayError};
use crate::guardrails::stream::OutputGuard;
use crate::guardrails::{self as guard, GUARDRAILS_HEADER};
use crate::pricing::PriceTable;
use crate::providers::protocol::adapter::StreamError;
use crate::record::RequestOutcome;
use crate::request::ClientApi;
use crate::routing::Target;

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
        if let Err(e) = self.ctx.durable().await {
            return Some(self.error_event(&e));
        }
        let event = self.error_event(&error);
        let mut out = BytesMut::with_capacity(filtered.bytes.len() + event.len());
        out.extend_from_slice(&filtered.bytes);
        out.extend_from_slice(&event);
        Some(out.freeze())
    }

    /// The event that ends a failed stream, in the client's framing.
    fn error_event(&self, error: &GatewayError) -> Bytes {
        // A Responses stream ends with its own failure events.
        if self.ctx.record.api == ClientApi::Responses.label() {
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
                if let Err(e) = self.ctx.durable().await {
                    return Some(self.error_event(&e));
                }
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
                if let Err(e) = self.ctx.durable().await {
                    return Some(self.error_event(&e));
                }
                Some(self.error_event(&error))
            }
        }
    }
}

#[expect(
    clippy::too_many_arguments,
    reason = "one call site; a struct would only rename them"
)]
pub(super) fn stream_response(
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
