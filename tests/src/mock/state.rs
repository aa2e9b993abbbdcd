//! Per-instance state: counters, the recorded-requests ring and the fault queue.
//!
//! Counters are atomics; the by-path map, the ring and the queue sit behind std mutexes
//! that are only ever held for a push or a pop, never across an await.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::http::{HeaderMap, Method, Uri};
use serde_json::{Map, Value, json};

use super::fault::FaultSpec;

/// How many API requests `GET /_mock/requests` remembers: enough for any one test,
/// small enough that recording stays cheap under benchmark load.
const RECORDED_REQUESTS: usize = 200;

/// Settings from the command line that apply to every request unless a fault overrides them.
#[derive(Clone, Copy, Debug, Default)]
pub struct MockOptions {
    /// Sleep before sending response headers.
    pub latency: Duration,
    /// Sleep between streamed events.
    pub chunk_delay: Duration,
}

/// One API request as seen on the wire, for `GET /_mock/requests`.
struct RecordedRequest {
    method: String,
    path: String,
    query: String,
    headers: Map<String, Value>,
    body: Option<Arc<Value>>,
}

/// Everything one mock instance shares between requests.
pub struct MockState {
    pub options: MockOptions,
    next_id: AtomicU64,
    requests_total: AtomicU64,
    streams_started: AtomicU64,
    streams_completed: AtomicU64,
    streams_cancelled: AtomicU64,
    streams_aborted: AtomicU64,
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
    by_path: Mutex<HashMap<String, u64>>,
    recorded: Mutex<VecDeque<RecordedRequest>>,
    faults: Mutex<VecDeque<FaultSpec>>,
}

/// A poisoned mutex only means another handler panicked mid-push; the data is still usable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl MockState {
    pub fn new(options: MockOptions) -> MockState {
        MockState {
            options,
            next_id: AtomicU64::new(1),
            requests_total: AtomicU64::new(0),
            streams_started: AtomicU64::new(0),
            streams_completed: AtomicU64::new(0),
            streams_cancelled: AtomicU64::new(0),
            streams_aborted: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            max_in_flight: AtomicU64::new(0),
            by_path: Mutex::new(HashMap::new()),
            recorded: Mutex::new(VecDeque::with_capacity(RECORDED_REQUESTS)),
            faults: Mutex::new(VecDeque::new()),
        }
    }

    /// A number unique within this instance, for response and tool-call ids.
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Counts an API request and returns the guard that keeps it in `in_flight`.
    pub fn begin_request(self: &Arc<Self>, path: &str) -> InFlight {
        self.requests_total.fetch_add(1, Ordering::Relaxed);
        {
            let mut by_path = lock(&self.by_path);
            match by_path.get_mut(path) {
                Some(count) => *count += 1,
                None => {
                    by_path.insert(path.to_owned(), 1);
                }
            }
        }
        let now = self.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        self.max_in_flight.fetch_max(now, Ordering::Relaxed);
        InFlight {
            state: Arc::clone(self),
        }
    }

    pub fn record(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: Option<Arc<Value>>,
    ) {
        let mut header_map = Map::with_capacity(headers.len());
        for (name, value) in headers {
            let value = String::from_utf8_lossy(value.as_bytes());
            match header_map.get_mut(name.as_str()) {
                // Repeated headers are joined the way HTTP allows them to be folded.
                Some(Value::String(existing)) => {
                    existing.push_str(", ");
                    existing.push_str(&value);
                }
                _ => {
                    header_map.insert(name.as_str().to_owned(), Value::String(value.into_owned()));
                }
            }
        }
        let request = RecordedRequest {
            method: method.as_str().to_owned(),
            path: uri.path().to_owned(),
            query: uri.query().unwrap_or_default().to_owned(),
            headers: header_map,
            body,
        };
        let mut recorded = lock(&self.recorded);
        if recorded.len() == RECORDED_REQUESTS {
            recorded.pop_front();
        }
        recorded.push_back(request);
    }

    pub fn push_faults(&self, faults: Vec<FaultSpec>) -> usize {
        let mut queue = lock(&self.faults);
        queue.extend(faults);
        queue.len()
    }

    pub fn pop_fault(&self) -> Option<FaultSpec> {
        lock(&self.faults).pop_front()
    }

    pub fn clear_faults(&self) {
        lock(&self.faults).clear();
    }

    pub fn stream_started(&self) {
        self.streams_started.fetch_add(1, Ordering::Relaxed);
    }

    /// Clears counters, recorded requests and the fault queue. `in_flight` is live state
    /// (its guards are still out there), so it is kept and `max_in_flight` restarts from it.
    pub fn reset(&self) {
        self.requests_total.store(0, Ordering::Relaxed);
        self.streams_started.store(0, Ordering::Relaxed);
        self.streams_completed.store(0, Ordering::Relaxed);
        self.streams_cancelled.store(0, Ordering::Relaxed);
        self.streams_aborted.store(0, Ordering::Relaxed);
        self.max_in_flight
            .store(self.in_flight.load(Ordering::Relaxed), Ordering::Relaxed);
        lock(&self.by_path).clear();
        lock(&self.recorded).clear();
        self.clear_faults();
    }

    pub fn stats_json(&self) -> Value {
        let by_path: Map<String, Value> = lock(&self.by_path)
            .iter()
            .map(|(path, count)| (path.clone(), Value::from(*count)))
            .collect();
        json!({
            "requests_total": self.requests_total.load(Ordering::Relaxed),
            "by_path": by_path,
            "streams_started": self.streams_started.load(Ordering::Relaxed),
            "streams_completed": self.streams_completed.load(Ordering::Relaxed),
            "streams_cancelled": self.streams_cancelled.load(Ordering::Relaxed),
            "streams_aborted": self.streams_aborted.load(Ordering::Relaxed),
            "in_flight": self.in_flight.load(Ordering::Relaxed),
            "max_in_flight": self.max_in_flight.load(Ordering::Relaxed),
        })
    }

    pub fn requests_json(&self) -> Value {
        let recorded = lock(&self.recorded);
        Value::Array(
            recorded
                .iter()
                .map(|request| {
                    json!({
                        "method": request.method,
                        "path": request.path,
                        "query": request.query,
                        "headers": request.headers,
                        "body": request.body.as_deref().cloned().unwrap_or(Value::Null),
                    })
                })
                .collect(),
        )
    }
}

/// Keeps one API request counted in `in_flight` until it is dropped: at the end of the
/// handler for buffered responses, when the body stream ends or is dropped for streams.
pub struct InFlight {
    state: Arc<MockState>,
}

impl InFlight {
    pub fn state(&self) -> &Arc<MockState> {
        &self.state
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.state.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How a streamed body ended, decided when its guard is dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamEnd {
    /// Dropped before everything was sent: the client (or the gateway) went away.
    Cancelled,
    /// Every event, including the terminator or the injected error event, was sent.
    Completed,
    /// The mock cut the body on purpose (`reset_after`, or a `stall_after` that ran out).
    Aborted,
}

/// Lives inside a body stream; keeps the request in flight until the body is dropped and
/// then, for SSE bodies, counts how the stream ended.
pub struct StreamGuard {
    in_flight: InFlight,
    end: StreamEnd,
    /// False for a buffered answer cut by a body fault: not a stream in the stats.
    is_sse: bool,
}

impl StreamGuard {
    pub fn new(in_flight: InFlight, is_sse: bool) -> StreamGuard {
        StreamGuard {
            in_flight,
            end: StreamEnd::Cancelled,
            is_sse,
        }
    }

    pub fn finish(&mut self, end: StreamEnd) {
        self.end = end;
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        if !self.is_sse {
            return;
        }
        let state = self.in_flight.state();
        let counter = match self.end {
            StreamEnd::Cancelled => &state.streams_cancelled,
            StreamEnd::Completed => &state.streams_completed,
            StreamEnd::Aborted => &state.streams_aborted,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}
