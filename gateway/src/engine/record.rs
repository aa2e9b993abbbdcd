//! The record of one request: who asked for what, every attempt (provider, model, key,
//! outcome, timing), who finally served it, usage and timings. It is built on the request
//! path and handed to a [`RecordSink`] exactly once — when the response (or stream) is
//! complete, fails, or the client goes away. The governance work persists it; here it
//! feeds metrics and the debug log.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde::Serialize;
use sluice_shared::openai::Usage;

use crate::governance::Admission;
use crate::governance::pricing::Cost;
use crate::guardrails::GuardrailDecision;
use crate::providers::ClientApi;

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum AttemptOutcome {
    /// The provider answered with a success status.
    Ok { status: u16 },
    /// The provider answered with an error status.
    Status { status: u16, message: String },
    /// No response headers within `header_timeout_ms` (connect errors are `Connect`).
    HeaderTimeout,
    /// No stream event or body bytes within `stream_idle_timeout_ms`.
    IdleTimeout,
    /// The connection could not be opened, or broke.
    Connect { message: String },
    /// The provider answered with something that is not its API.
    Protocol { message: String },
    /// The provider's stream carried an error event before anything reached the client.
    StreamError { message: String },
    /// The provider's concurrency limit and queue were full, or the queue wait timed out.
    Saturated { message: String },
    /// The request cannot be sent to this target (translation not possible).
    Skipped { reason: String },
}

impl AttemptOutcome {
    /// Low-cardinality label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            AttemptOutcome::Ok { .. } => "ok",
            AttemptOutcome::Status { status: 429, .. } => "status_429",
            AttemptOutcome::Status { status, .. } if *status >= 500 => "status_5xx",
            AttemptOutcome::Status { .. } => "status_4xx",
            AttemptOutcome::HeaderTimeout => "header_timeout",
            AttemptOutcome::IdleTimeout => "idle_timeout",
            AttemptOutcome::Connect { .. } => "connect_error",
            AttemptOutcome::Protocol { .. } => "protocol_error",
            AttemptOutcome::StreamError { .. } => "stream_error",
            AttemptOutcome::Saturated { .. } => "saturated",
            AttemptOutcome::Skipped { .. } => "skipped",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct AttemptRecord {
    pub provider: String,
    pub model: String,
    /// The key's configured id (never its value); empty when no key was chosen.
    pub key_id: String,
    /// Since the request started.
    pub started_after: Duration,
    pub duration: Duration,
    pub outcome: AttemptOutcome,
}

/// How the request ended for the client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestOutcome {
    /// A complete answer was delivered.
    Ok,
    /// An error response was sent (see `error_kind`).
    Error,
    /// A stream started but ended with an error event.
    StreamFailed,
    /// The client went away first; the upstream request was cancelled.
    ClientDisconnected,
}

impl RequestOutcome {
    /// The snake_case name, as serialized.
    pub fn label(&self) -> &'static str {
        match self {
            RequestOutcome::Ok => "ok",
            RequestOutcome::Error => "error",
            RequestOutcome::StreamFailed => "stream_failed",
            RequestOutcome::ClientDisconnected => "client_disconnected",
        }
    }
}

#[derive(Debug, Serialize)]
pub struct RequestRecord {
    pub request_id: String,
    pub received_at: SystemTime,
    pub api: &'static str,
    pub requested_model: String,
    pub stream: bool,
    pub attempts: Vec<AttemptRecord>,
    /// `provider/model` that produced the answer.
    pub served_by: Option<String>,
    pub status: u16,
    pub outcome: RequestOutcome,
    pub error_kind: Option<&'static str>,
    pub error_message: Option<String>,
    pub usage: Option<Usage>,
    /// Whole request, as the gateway saw it.
    pub latency: Duration,
    /// Time spent waiting on providers (all attempts).
    pub upstream_time: Duration,
    /// Backoff sleeps and concurrency-queue waits.
    pub wait_time: Duration,
    /// Streams: from receipt to the first event sent to the client.
    pub time_to_first_token: Option<Duration>,
    /// What the gateway itself added (see `engine` docs for the definition).
    pub overhead: Option<Duration>,
    /// Cost of the answer at the served model's price.
    #[serde(skip)]
    pub cost: Cost,
    /// The application that sent the request, when the edge agent or client says so.
    pub app: Option<String>,
    pub request_bytes: u64,
    pub response_bytes: u64,
    /// Bodies, kept only when the caller's key logs full content.
    #[serde(skip)]
    pub request_body: Option<Bytes>,
    #[serde(skip)]
    pub response_body: Option<Bytes>,
    /// Budget reservations and limit slots held for this request (governance).
    #[serde(skip)]
    pub admission: Option<Admission>,
    /// What guardrail rules did, input then output: rule, action, count — never the
    /// matched text.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub guardrails: Vec<GuardrailDecision>,
    /// What the upstream reported that could not be believed and was corrected (usage
    /// counts clamped): kept in the audit record.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub anomalies: Vec<String>,
}

impl RequestRecord {
    pub fn new(request_id: String, api: ClientApi, model: &str, stream: bool) -> Self {
        RequestRecord {
            request_id,
            received_at: SystemTime::now(),
            api: api.label(),
            requested_model: model.to_owned(),
            stream,
            attempts: Vec::new(),
            served_by: None,
            status: 0,
            outcome: RequestOutcome::Error,
            error_kind: None,
            error_message: None,
            usage: None,
            latency: Duration::ZERO,
            upstream_time: Duration::ZERO,
            wait_time: Duration::ZERO,
            time_to_first_token: None,
            overhead: None,
            cost: Cost::default(),
            app: None,
            request_bytes: 0,
            response_bytes: 0,
            request_body: None,
            response_body: None,
            admission: None,
            guardrails: Vec::new(),
            anomalies: Vec::new(),
        }
    }
}

/// Where finished records go. Called once per request, on the request's task: an
/// implementation must not block (queue the record and return). It may return an
/// acknowledgement the engine waits for before completing the response (strict audit
/// durability).
pub trait RecordSink: Send + Sync + std::fmt::Debug {
    fn submit(&self, record: RequestRecord) -> Option<crate::governance::audit::AuditAck>;
}

/// The default sink: one structured debug line per request (`RUST_LOG=sluice=debug`).
#[derive(Debug, Default)]
pub struct LogSink;

impl LogSink {
    /// Logs the record as JSON at debug level (target `sluice::record`) when enabled.
    pub fn log(record: &RequestRecord) {
        if tracing::enabled!(target: "sluice::record", tracing::Level::DEBUG) {
            let json = serde_json::to_string(record).unwrap_or_default();
            tracing::debug!(target: "sluice::record", "{json}");
        }
    }
}

impl RecordSink for LogSink {
    fn submit(&self, record: RequestRecord) -> Option<crate::governance::audit::AuditAck> {
        LogSink::log(&record);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_labels_match_their_serialized_names() {
        for outcome in [
            RequestOutcome::Ok,
            RequestOutcome::Error,
            RequestOutcome::StreamFailed,
            RequestOutcome::ClientDisconnected,
        ] {
            let serialized = serde_json::to_value(&outcome).unwrap_or_default();
            assert_eq!(serialized.as_str(), Some(outcome.label()));
        }
    }
}
