//! Turning a list of framed events into a response body, with pacing and body faults.

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use futures_util::stream;

use super::fault::{BodyFault, STALL_DURATION};
use super::state::{StreamEnd, StreamGuard};

/// One framed SSE event. Content events (a word, a tool-argument fragment) are the ones
/// the `*_after=N` faults count.
pub struct SseEvent {
    pub bytes: Bytes,
    pub is_content: bool,
}

impl SseEvent {
    pub fn content(bytes: impl Into<Bytes>) -> SseEvent {
        SseEvent {
            bytes: bytes.into(),
            is_content: true,
        }
    }

    pub fn control(bytes: impl Into<Bytes>) -> SseEvent {
        SseEvent {
            bytes: bytes.into(),
            is_content: false,
        }
    }
}

/// A stream to send, before faults are applied.
pub struct StreamPlan {
    pub events: Vec<SseEvent>,
    /// Frames the provider's in-stream error event, sent by `error_event_after` in place of
    /// the event at the given index (the Responses API numbers its events).
    pub error_event: fn(usize) -> Bytes,
}

struct BodyState {
    events: std::vec::IntoIter<SseEvent>,
    /// Index of the event at which the body fault fires, instead of sending that event.
    fault_at: Option<(usize, BodyFault)>,
    error_event: fn(usize) -> Bytes,
    next_index: usize,
    /// Set once the body has ended on purpose; the next poll ends the stream.
    ending: Option<StreamEnd>,
    delay: Duration,
    guard: StreamGuard,
}

/// Where a fault that fires "after N content events" happens: just before the (N+1)-th
/// content event, or right after the last one when there are no more, so the stream is
/// never seen to finish properly.
fn fault_index(events: &[SseEvent], after: usize) -> usize {
    let mut seen = 0;
    let mut after_last_content = 0;
    for (index, event) in events.iter().enumerate() {
        if event.is_content {
            if seen == after {
                return index;
            }
            seen += 1;
            after_last_content = index + 1;
        }
    }
    after_last_content
}

/// Builds the body stream: events paced by `delay`, the body fault applied at its point,
/// and the guard that counts how the stream ended when the body is dropped.
pub fn event_body(
    plan: StreamPlan,
    fault: Option<BodyFault>,
    delay: Duration,
    guard: StreamGuard,
) -> Body {
    let fault_at = fault.map(|fault| {
        let after = match fault {
            BodyFault::Reset { after }
            | BodyFault::Stall { after }
            | BodyFault::ErrorEvent { after } => after,
        };
        (fault_index(&plan.events, after), fault)
    });
    let state = BodyState {
        events: plan.events.into_iter(),
        fault_at,
        error_event: plan.error_event,
        next_index: 0,
        ending: None,
        delay,
        guard,
    };
    Body::from_stream(stream::unfold(state, |mut state| async move {
        if let Some(end) = state.ending {
            state.guard.finish(end);
            return None;
        }
        let index = state.next_index;
        state.next_index += 1;
        if index > 0 && !state.delay.is_zero() {
            tokio::time::sleep(state.delay).await;
        }
        if let Some((at, fault)) = state.fault_at
            && at == index
        {
            return Some(match fault {
                BodyFault::Reset { .. } => {
                    // Return Pending once first: hyper flushes what it has buffered only
                    // when the body is not ready, and drops the buffer when the body fails.
                    tokio::task::yield_now().await;
                    abort(state)
                }
                BodyFault::Stall { .. } => {
                    tokio::time::sleep(STALL_DURATION).await;
                    abort(state)
                }
                BodyFault::ErrorEvent { .. } => {
                    // The error event is the provider's proper end of the stream.
                    state.ending = Some(StreamEnd::Completed);
                    let event = (state.error_event)(index);
                    (Ok(event), state)
                }
            });
        }
        match state.events.next() {
            Some(event) => Some((Ok(event.bytes), state)),
            None => {
                state.guard.finish(StreamEnd::Completed);
                None
            }
        }
    }))
}

/// Yields the error that makes hyper cut the connection without terminating the body.
fn abort(mut state: BodyState) -> (Result<Bytes, std::io::Error>, BodyState) {
    state.guard.finish(StreamEnd::Aborted);
    state.ending = Some(StreamEnd::Aborted);
    let error = std::io::Error::new(
        std::io::ErrorKind::ConnectionAborted,
        "mock fault: body aborted",
    );
    (Err(error), state)
}

/// A 200 response streaming `body` as server-sent events.
pub fn sse_response(body: Body) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// A buffered JSON body split in two, for body faults on non-streaming responses: the
/// first half is the only "content event", so `reset_after=0` sends headers and nothing
/// more, `reset_after=1` sends half the JSON and then aborts.
pub fn split_json_plan(json: Bytes) -> StreamPlan {
    let middle = json.len() / 2;
    StreamPlan {
        events: vec![
            SseEvent::content(json.slice(..middle)),
            SseEvent::content(json.slice(middle..)),
        ],
        error_event: |_| Bytes::new(),
    }
}
