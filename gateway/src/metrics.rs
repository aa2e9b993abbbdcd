//! Prometheus metrics, rendered at `GET /metrics`.
//!
//! | metric | labels | meaning |
//! |---|---|---|
//! | `sluice_requests_total` | api, provider, status | requests answered |
//! | `sluice_request_errors_total` | api, kind | error responses and failed streams, by kind |
//! | `sluice_attempts_total` | provider, outcome | upstream attempts, by outcome |
//! | `sluice_tokens_total` | provider, model, direction (`input`/`output`) | tokens used |
//! | `sluice_upstream_latency_seconds` | provider | attempt time: to headers for streams, to the full body otherwise |
//! | `sluice_gateway_overhead_seconds` | api | request time minus upstream time, backoff and queueing |
//! | `sluice_time_to_first_token_seconds` | provider | streams: receipt to first event sent |
//! | `sluice_requests_in_flight` | – | requests being served (streams until they end) |
//! | `sluice_client_disconnects_total` | api | clients that left before the answer was complete |
//! | `sluice_guardrail_decisions_total` | rule, action, direction (`input`/`output`) | guardrail rules that fired: one per rule, side and request |
//! | `sluice_guardrail_scan_seconds` | direction | time spent scanning: per request for input and complete answers, per stream (summed over its events) for streams |

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use sluice_shared::guardrails::Direction;

use crate::engine::record::{RequestOutcome, RequestRecord};

/// Installs the process-wide recorder and returns the handle `/metrics` renders from.
/// Called once, by `serve`.
pub fn install() -> anyhow::Result<PrometheusHandle> {
    // Overhead is measured in microseconds; latencies in milliseconds to minutes.
    let fine = [
        0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01,
        0.025, 0.05, 0.1,
    ];
    let coarse = [
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
    ];
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("sluice_gateway_overhead_seconds".into()),
            &fine,
        )?
        .set_buckets_for_metric(Matcher::Full("sluice_guardrail_scan_seconds".into()), &fine)?
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &coarse)?
        .install_recorder()?;
    Ok(handle)
}

/// Request started.
pub fn request_started() {
    gauge!("sluice_requests_in_flight").increment(1.0);
}

/// Request finished (the record is final).
pub fn request_finished(record: &RequestRecord) {
    gauge!("sluice_requests_in_flight").decrement(1.0);
    let provider = record
        .served_by
        .as_deref()
        .and_then(|s| s.split_once('/'))
        .map(|(p, _)| p.to_owned())
        .unwrap_or_else(|| "none".into());
    counter!(
        "sluice_requests_total",
        "api" => record.api,
        "provider" => provider.clone(),
        "status" => record.status.to_string()
    )
    .increment(1);
    match record.outcome {
        RequestOutcome::Error | RequestOutcome::StreamFailed => {
            let kind = record.error_kind.unwrap_or("unknown");
            counter!("sluice_request_errors_total", "api" => record.api, "kind" => kind)
                .increment(1);
        }
        RequestOutcome::ClientDisconnected => {
            counter!("sluice_client_disconnects_total", "api" => record.api).increment(1);
        }
        RequestOutcome::Ok => {}
    }
    for attempt in &record.attempts {
        counter!(
            "sluice_attempts_total",
            "provider" => attempt.provider.clone(),
            "outcome" => attempt.outcome.label()
        )
        .increment(1);
        if !matches!(
            attempt.outcome,
            crate::engine::record::AttemptOutcome::Skipped { .. }
        ) {
            histogram!("sluice_upstream_latency_seconds", "provider" => attempt.provider.clone())
                .record(attempt.duration.as_secs_f64());
        }
    }
    if let (Some(usage), Some(served)) = (&record.usage, &record.served_by) {
        let model = served
            .split_once('/')
            .map(|(_, m)| m)
            .unwrap_or(served)
            .to_owned();
        counter!("sluice_tokens_total", "provider" => provider.clone(), "model" => model.clone(), "direction" => "input")
            .increment(usage.prompt_tokens);
        counter!("sluice_tokens_total", "provider" => provider.clone(), "model" => model, "direction" => "output")
            .increment(usage.completion_tokens);
    }
    for d in &record.guardrails {
        counter!(
            "sluice_guardrail_decisions_total",
            "rule" => d.rule_id.to_string(),
            "action" => crate::governance::action_label(d.action),
            "direction" => match d.direction {
                Direction::Input => "input",
                Direction::Output => "output",
                Direction::Both => "both",
            }
        )
        .increment(1);
    }
    if let Some(overhead) = record.overhead {
        histogram!("sluice_gateway_overhead_seconds", "api" => record.api)
            .record(overhead.as_secs_f64());
    }
    if let Some(ttft) = record.time_to_first_token {
        histogram!("sluice_time_to_first_token_seconds", "provider" => provider)
            .record(ttft.as_secs_f64());
    }
}
