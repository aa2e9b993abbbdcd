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
    /// Replaces the error event's message (the `message=` fault).
    error_message: Option<String>,
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
/// `error_message` replaces the message of the provider's error event, if one is sent.
pub fn event_body(
    plan: StreamPlan,
    fault: Option<BodyFault>,
    delay: Duration,
    guard: StreamGuard,
    error_message: Option<String>,
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
        error_message,
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
                    let mut event = (state.error_event)(index);
                    if let Some(message) = &state.error_message {
                        event = rewrite_sse_json(&event, |value| set_error_message(value, message));
                    }
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

/// A framed SSE event with the JSON of its `data:` line changed by `change`, framing kept
/// (`\n` or `\r\n` line ends); an event without a JSON `data:` line (`[DONE]`) is returned
/// as it was.
pub fn rewrite_sse_json(event: &Bytes, change: impl FnOnce(&mut serde_json::Value)) -> Bytes {
    let Ok(text) = std::str::from_utf8(event) else {
        return event.clone();
    };
    let start = match text.find("data: ") {
        Some(at) if at == 0 || text[..at].ends_with('\n') => at + "data: ".len(),
        _ => return event.clone(),
    };
    let end = text[start..]
        .find(['\r', '\n'])
        .map_or(text.len(), |len| start + len);
    let Ok(mut value) = serde_json::from_str::<serde_json::Value>(&text[start..end]) else {
        return event.clone();
    };
    change(&mut value);
    Bytes::from(format!("{}{value}{}", &text[..start], &text[end..]))
}

/// Sets the message of an error body or error event in any provider's shape: OpenAI,
/// Anthropic and Gemini nest it under `error`; the Responses API's `error` event has it
/// at the top.
pub fn set_error_message(value: &mut serde_json::Value, message: &str) {
    if let Some(error) = value.get_mut("error").filter(|e| e.is_object()) {
        error["message"] = message.into();
    } else if value.get("message").is_some() {
        value["message"] = message.into();
    }
}

/// Sets every token count under a usage block (`usage`, Gemini's `usageMetadata`, and the
/// `usage` inside Anthropic's `message_start.message` and a Responses event's `response`)
/// to `tokens`, nested details included; a null usage (OpenAI's non-final stream chunks)
/// stays null.
pub fn set_usage_tokens(value: &mut serde_json::Value, tokens: u64) {
    fn set_counts(value: &mut serde_json::Value, tokens: u64) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, field) in map.iter_mut() {
                    if field.is_u64() && (key.ends_with("tokens") || key.ends_with("TokenCount")) {
                        *field = tokens.into();
                    } else {
                        set_counts(field, tokens);
                    }
                }
            }
            serde_json::Value::Array(items) => {
                items.iter_mut().for_each(|item| set_counts(item, tokens));
            }
            _ => {}
        }
    }
    let serde_json::Value::Object(map) = value else {
        return;
    };
    for (key, field) in map.iter_mut() {
        match key.as_str() {
            "usage" | "usageMetadata" => set_counts(field, tokens),
            "message" | "response" => set_usage_tokens(field, tokens),
            _ => {}
        }
    }
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
