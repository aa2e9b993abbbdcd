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

use std::cell::RefCell;

use metrics::{Counter, Gauge, Histogram, counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use sluice_shared::guardrails::Direction;

use crate::record::{RequestOutcome, RequestRecord};

/// Installs the process-wide recorder and returns the handle `/metrics` renders from.
/// Called once, by `serve`.
pub fn install() -> anyhow::Result<PrometheusHandle> {
    // Overhead is measured in microseconds; latencies in milliseconds to minutes.
    // Fine enough below 100 µs that a p50 read off the buckets (the benchmark does) is
    // within a few microseconds.
    let fine = [
        0.000_005, 0.000_01, 0.000_015, 0.000_02, 0.000_03, 0.000_04, 0.000_05, 0.000_075, 0.000_1,
        0.000_15, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
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

/// Label values of one metric series, borrowed for lookups in [`HandleCache`].
#[derive(Hash, Clone, Copy)]
struct SeriesRef<'a> {
    name: &'static str,
    a: &'a str,
    b: &'a str,
    c: &'a str,
    n: u16,
}

/// The owned form of [`SeriesRef`]; hashes identically (a `Box<str>` hashes as its `str`).
#[derive(Hash, PartialEq, Eq)]
struct Series {
    name: &'static str,
    a: Box<str>,
    b: Box<str>,
    c: Box<str>,
    n: u16,
}

impl hashbrown::Equivalent<Series> for SeriesRef<'_> {
    fn equivalent(&self, key: &Series) -> bool {
        self.name == key.name
            && self.n == key.n
            && self.a == &*key.a
            && self.b == &*key.b
            && self.c == &*key.c
    }
}

/// Per-thread cache of registered metric handles, so the request path pays one hash
/// lookup per series instead of building label vectors and taking the registry's locks.
/// Bounded: cleared when it reaches [`HandleCache::MAX`] series (label values such as
/// model names come from requests).
#[derive(Default)]
struct HandleCache {
    counters: hashbrown::HashMap<Series, Counter>,
    histograms: hashbrown::HashMap<Series, Histogram>,
}

impl HandleCache {
    const MAX: usize = 4096;

    fn counter(&mut self, series: SeriesRef<'_>, register: impl FnOnce() -> Counter) -> &Counter {
        cached(&mut self.counters, series, register)
    }

    fn histogram(
        &mut self,
        series: SeriesRef<'_>,
        register: impl FnOnce() -> Histogram,
    ) -> &Histogram {
        cached(&mut self.histograms, series, register)
    }
}

/// The handle for `series`, registered on first use; the map is cleared when it reaches
/// [`HandleCache::MAX`] series.
fn cached<'m, H>(
    map: &'m mut hashbrown::HashMap<Series, H>,
    series: SeriesRef<'_>,
    register: impl FnOnce() -> H,
) -> &'m H {
    if map.len() >= HandleCache::MAX && !map.contains_key(&series) {
        map.clear();
    }
    map.entry_ref(&series).or_insert_with(register)
}

impl From<&SeriesRef<'_>> for Series {
    fn from(r: &SeriesRef<'_>) -> Self {
        Series {
            name: r.name,
            a: r.a.into(),
            b: r.b.into(),
            c: r.c.into(),
            n: r.n,
        }
    }
}

thread_local! {
    static HANDLES: RefCell<HandleCache> = RefCell::new(HandleCache::default());
    static IN_FLIGHT: Gauge = gauge!("sluice_requests_in_flight");
}

fn series<'a>(name: &'static str, a: &'a str, b: &'a str, c: &'a str, n: u16) -> SeriesRef<'a> {
    SeriesRef { name, a, b, c, n }
}

/// Time spent scanning with guardrails (`direction`: `input` or `output`).
pub fn guardrail_scan(direction: &'static str, elapsed: std::time::Duration) {
    HANDLES.with_borrow_mut(|cache| {
        cache
            .histogram(
                series("guardrail_scan", direction, "", "", 0),
                || histogram!("sluice_guardrail_scan_seconds", "direction" => direction),
            )
            .record(elapsed.as_secs_f64());
    });
}

/// Request started.
pub fn request_started() {
    IN_FLIGHT.with(|g| g.increment(1.0));
}

/// Request finished (the record is final).
pub fn request_finished(record: &RequestRecord) {
    IN_FLIGHT.with(|g| g.decrement(1.0));
    HANDLES.with_borrow_mut(|cache| finished(cache, record));
}

fn finished(cache: &mut HandleCache, record: &RequestRecord) {
    let (provider, model) = record
        .served_by
        .as_deref()
        .and_then(|s| s.split_once('/'))
        .unwrap_or(("none", ""));
    let api = record.api;
    cache
        .counter(series("requests", api, provider, "", record.status), || {
            counter!(
                "sluice_requests_total",
                "api" => api,
                "provider" => provider.to_owned(),
                "status" => record.status.to_string()
            )
        })
        .increment(1);
    match record.outcome {
        RequestOutcome::Error | RequestOutcome::StreamFailed => {
            let kind = record.error_kind.unwrap_or("unknown");
            counter!("sluice_request_errors_total", "api" => api, "kind" => kind).increment(1);
        }
        RequestOutcome::ClientDisconnected => {
            counter!("sluice_client_disconnects_total", "api" => api).increment(1);
        }
        RequestOutcome::Ok => {}
    }
    for attempt in &record.attempts {
        let outcome = attempt.outcome.label();
        cache
            .counter(
                series("attempts", &attempt.provider, outcome, "", 0),
                || {
                    counter!(
                        "sluice_attempts_total",
                        "provider" => attempt.provider.clone(),
                        "outcome" => outcome
                    )
                },
            )
            .increment(1);
        if !matches!(
            attempt.outcome,
            crate::record::AttemptOutcome::Skipped { .. }
        ) {
            cache
                .histogram(series("upstream", &attempt.provider, "", "", 0), || {
                    histogram!("sluice_upstream_latency_seconds", "provider" => attempt.provider.clone())
                })
                .record(attempt.duration.as_secs_f64());
        }
    }
    if let Some(usage) = &record.usage
        && record.served_by.is_some()
    {
        for (direction, tokens) in [
            ("input", usage.prompt_tokens),
            ("output", usage.completion_tokens),
        ] {
            cache
                .counter(series("tokens", provider, model, direction, 0), || {
                    counter!(
                        "sluice_tokens_total",
                        "provider" => provider.to_owned(),
                        "model" => model.to_owned(),
                        "direction" => direction
                    )
                })
                .increment(tokens);
        }
    }
    for d in &record.guardrails {
        counter!(
            "sluice_guardrail_decisions_total",
            "rule" => d.rule_id.to_string(),
            "action" => crate::record::action_label(d.action),
            "direction" => match d.direction {
                Direction::Input => "input",
                Direction::Output => "output",
                Direction::Both => "both",
            }
        )
        .increment(1);
    }
    if let Some(overhead) = record.overhead {
        cache
            .histogram(
                series("overhead", api, "", "", 0),
                || histogram!("sluice_gateway_overhead_seconds", "api" => api),
            )
            .record(overhead.as_secs_f64());
    }
    if let Some(ttft) = record.time_to_first_token {
        cache
            .histogram(series("ttft", provider, "", "", 0), || {
                histogram!("sluice_time_to_first_token_seconds", "provider" => provider.to_owned())
            })
            .record(ttft.as_secs_f64());
    }
}
