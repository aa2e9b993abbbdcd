//! What a provider's `Retry-After` decides, from the point where it becomes public: the
//! header is parsed by `engine::parse_retry_after` (fuzzed here on raw header bytes) into
//! a `Duration` that feeds `routing::backoff` (the delay before the next
//! attempt) and `KeyHealth::on_failure(RateLimited(..))` (how long the key is out of
//! rotation). Both get fuzzer-chosen durations and settings, in any sequence.
//!
//! Checked: a backoff is never shorter than the provider asked for, nor longer than
//! that or `backoff_max_ms`, whichever is longer; a rate-limited key is out at most
//! `max(max_cooldown_ms, 1)` ms from now; a key's share is between 0 and its weight.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use sluice_gateway::config::{HealthConfig, RoutingConfig};
use sluice_gateway::routing::backoff;
use sluice_gateway::providers::health::{KeyFailure, KeyHealth};

#[derive(Debug, Arbitrary)]
enum Step {
    Backoff {
        attempt: u32,
        retry_after: Option<(u64, u32)>,
    },
    RateLimited {
        retry_after: Option<(u64, u32)>,
        now_ms: u64,
    },
    Transient {
        now_ms: u64,
    },
    Auth {
        now_ms: u64,
    },
    Success {
        now_ms: u64,
    },
    Weight {
        weight: f64,
        now_ms: u64,
    },
}

#[derive(Debug, Arbitrary)]
struct Input {
    /// Raw `Retry-After` and `retry-after-ms` header values, as an upstream sends them.
    header: Vec<u8>,
    header_ms: Vec<u8>,
    backoff_base_ms: u64,
    backoff_max_ms: u64,
    failure_threshold: u32,
    cooldown_ms: u64,
    max_cooldown_ms: u64,
    ramp_ms: u64,
    steps: Vec<Step>,
}

fn duration((secs, nanos): (u64, u32)) -> Duration {
    // `Duration::new` carries nanos into seconds and panics past `Duration::MAX`.
    Duration::new(secs, nanos % 1_000_000_000)
}

fuzz_target!(|input: Input| {
    // The parser itself: whatever the header says, at most a day, never a panic.
    let mut headers = http::HeaderMap::new();
    for (name, raw) in [
        ("retry-after", &input.header),
        ("retry-after-ms", &input.header_ms),
    ] {
        if let Ok(v) = http::HeaderValue::from_bytes(raw) {
            headers.insert(name, v);
        }
    }
    if let Some(after) = sluice_gateway::engine::parse_retry_after(&headers) {
        assert!(
            after <= sluice_gateway::engine::MAX_RETRY_AFTER,
            "{after:?}"
        );
    }
    let routing = RoutingConfig {
        backoff_base_ms: input.backoff_base_ms,
        // `validate` refuses a base above the maximum.
        backoff_max_ms: input.backoff_max_ms.max(input.backoff_base_ms),
        ..RoutingConfig::default()
    };
    let health = HealthConfig {
        // `validate` refuses 0.
        failure_threshold: input.failure_threshold.max(1),
        cooldown_ms: input.cooldown_ms,
        max_cooldown_ms: input.max_cooldown_ms,
        ramp_ms: input.ramp_ms,
    };
    let key = KeyHealth::default();
    for step in input.steps {
        match step {
            Step::Backoff {
                attempt,
                retry_after,
            } => {
                let after = retry_after.map(duration);
                let delay = backoff(&routing, attempt, after);
                let cap = Duration::from_millis(routing.backoff_max_ms);
                if let Some(after) = after {
                    assert!(delay >= after, "{delay:?} < Retry-After {after:?}");
                    assert!(delay <= after.max(cap), "{delay:?} > {after:?} and {cap:?}");
                } else {
                    assert!(delay <= cap, "{delay:?} > {cap:?}");
                }
            }
            Step::RateLimited {
                retry_after,
                now_ms,
            } => {
                let before = key.open_until_ms();
                key.on_failure(
                    KeyFailure::RateLimited(retry_after.map(duration)),
                    now_ms,
                    &health,
                );
                let limit = now_ms.saturating_add(health.max_cooldown_ms.max(1));
                assert!(
                    key.open_until_ms() <= before.max(limit),
                    "out until {} > {limit}",
                    key.open_until_ms()
                );
            }
            Step::Transient { now_ms } => key.on_failure(KeyFailure::Transient, now_ms, &health),
            Step::Auth { now_ms } => key.on_failure(KeyFailure::Auth, now_ms, &health),
            Step::Success { now_ms } => key.on_success(now_ms, &health),
            Step::Weight { weight, now_ms } => {
                let _ = key.is_open(now_ms);
                let share = key.effective_weight(weight, now_ms, &health);
                if weight.is_finite() && weight > 0.0 {
                    assert!(
                        (0.0..=weight).contains(&share),
                        "share {share} of weight {weight}"
                    );
                }
            }
        }
    }
});
