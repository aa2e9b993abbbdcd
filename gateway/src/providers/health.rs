//! Health of one provider key: a key that keeps failing is taken out of rotation for a
//! cooldown that doubles each time it trips again, then re-admitted gradually — its share
//! of traffic ramps from 10 % back to its full weight — so a half-recovered key does not
//! receive a full share at once.
//!
//! Lock-free: a handful of atomics read on every key choice.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use crate::config::HealthConfig;

/// Why an attempt with this key failed, as far as the key's health is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFailure {
    /// Connect error, timeout, 5xx: counts toward `failure_threshold`.
    Transient,
    /// 401/403: the key itself is refused; out of rotation at once.
    Auth,
    /// 429: out of rotation until the provider's `Retry-After` (or one cooldown).
    RateLimited(Option<Duration>),
}

/// The smallest share a re-admitted key gets at the start of its ramp.
const RAMP_FLOOR: f64 = 0.1;

#[derive(Debug, Default)]
pub struct KeyHealth {
    consecutive_failures: AtomicU32,
    /// Milliseconds (on the provider's clock) until which the key is out of rotation.
    open_until_ms: AtomicU64,
    /// How many times the key tripped without a success since; scales the cooldown.
    trips: AtomicU32,
}

impl KeyHealth {
    /// The key's current share: 0 while out of rotation, ramping back after.
    pub fn effective_weight(&self, weight: f64, now_ms: u64, cfg: &HealthConfig) -> f64 {
        let open_until = self.open_until_ms.load(Ordering::Relaxed);
        if open_until == 0 {
            return weight;
        }
        if now_ms < open_until {
            return 0.0;
        }
        let since = now_ms.saturating_sub(open_until);
        if cfg.ramp_ms == 0 || since >= cfg.ramp_ms {
            return weight;
        }
        let progress = since as f64 / cfg.ramp_ms as f64;
        weight * (RAMP_FLOOR + (1.0 - RAMP_FLOOR) * progress)
    }

    /// Whether the key is out of rotation right now.
    pub fn is_open(&self, now_ms: u64) -> bool {
        now_ms < self.open_until_ms.load(Ordering::Relaxed)
    }

    /// When the key comes back, for choosing among keys that are all out.
    pub fn open_until_ms(&self) -> u64 {
        self.open_until_ms.load(Ordering::Relaxed)
    }

    pub fn on_success(&self, now_ms: u64, cfg: &HealthConfig) {
        self.consecutive_failures.store(0, Ordering::Relaxed);
        // A success after the ramp has finished forgets the history entirely.
        let open_until = self.open_until_ms.load(Ordering::Relaxed);
        if open_until != 0 && now_ms >= open_until.saturating_add(cfg.ramp_ms) {
            self.open_until_ms.store(0, Ordering::Relaxed);
            self.trips.store(0, Ordering::Relaxed);
        }
    }

    pub fn on_failure(&self, failure: KeyFailure, now_ms: u64, cfg: &HealthConfig) {
        let cooldown = match failure {
            KeyFailure::Transient => {
                let n = self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
                if n < cfg.failure_threshold {
                    return;
                }
                self.next_cooldown(cfg)
            }
            KeyFailure::Auth => cfg.max_cooldown_ms,
            // An upstream's Retry-After is believed up to the longest cooldown.
            KeyFailure::RateLimited(Some(after)) => u64::try_from(after.as_millis())
                .unwrap_or(u64::MAX)
                .clamp(1, cfg.max_cooldown_ms.max(1)),
            KeyFailure::RateLimited(None) => self.next_cooldown(cfg),
        };
        self.consecutive_failures.store(0, Ordering::Relaxed);
        self.open_until_ms
            .fetch_max(now_ms.saturating_add(cooldown), Ordering::Relaxed);
    }

    fn next_cooldown(&self, cfg: &HealthConfig) -> u64 {
        let trips = self.trips.fetch_add(1, Ordering::Relaxed).min(20);
        cfg.cooldown_ms
            .saturating_mul(1u64 << trips)
            .min(cfg.max_cooldown_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> HealthConfig {
        HealthConfig {
            failure_threshold: 3,
            cooldown_ms: 1000,
            max_cooldown_ms: 3000,
            ramp_ms: 1000,
        }
    }

    #[test]
    fn trips_after_threshold_then_ramps_back() {
        let h = KeyHealth::default();
        let c = cfg();
        h.on_failure(KeyFailure::Transient, 0, &c);
        h.on_failure(KeyFailure::Transient, 0, &c);
        assert_eq!(
            h.effective_weight(1.0, 0, &c),
            1.0,
            "two failures are below the threshold"
        );
        h.on_failure(KeyFailure::Transient, 0, &c);
        assert_eq!(h.effective_weight(1.0, 999, &c), 0.0);
        let start = h.effective_weight(1.0, 1000, &c);
        let mid = h.effective_weight(1.0, 1500, &c);
        assert!(
            (start - 0.1).abs() < 1e-9 && (mid - 0.55).abs() < 1e-9,
            "{start} {mid}"
        );
        assert_eq!(h.effective_weight(1.0, 2000, &c), 1.0);
    }

    #[test]
    fn cooldown_doubles_and_is_capped() {
        let h = KeyHealth::default();
        let c = HealthConfig {
            failure_threshold: 1,
            ..cfg()
        };
        h.on_failure(KeyFailure::Transient, 0, &c);
        assert_eq!(h.open_until_ms(), 1000);
        h.on_failure(KeyFailure::Transient, 1000, &c);
        assert_eq!(h.open_until_ms(), 3000);
        h.on_failure(KeyFailure::Transient, 3000, &c);
        assert_eq!(h.open_until_ms(), 6000, "capped at max_cooldown_ms");
    }

    #[test]
    fn auth_and_rate_limit_trip_at_once() {
        let c = cfg();
        let h = KeyHealth::default();
        h.on_failure(KeyFailure::Auth, 10, &c);
        assert!(h.is_open(10 + 2999));
        let h = KeyHealth::default();
        h.on_failure(KeyFailure::RateLimited(Some(Duration::from_secs(2))), 0, &c);
        assert!(h.is_open(1999) && !h.is_open(2000));
    }

    #[test]
    fn absurd_retry_after_is_capped_and_never_overflows() {
        let c = cfg();
        let h = KeyHealth::default();
        h.on_failure(
            KeyFailure::RateLimited(Some(Duration::MAX)),
            u64::MAX - 5,
            &c,
        );
        assert_eq!(h.open_until_ms(), u64::MAX);
        let h = KeyHealth::default();
        h.on_failure(
            KeyFailure::RateLimited(Some(Duration::from_secs(1 << 40))),
            10,
            &c,
        );
        assert_eq!(
            h.open_until_ms(),
            10 + c.max_cooldown_ms,
            "capped at max_cooldown_ms"
        );
        assert_eq!(h.effective_weight(1.0, u64::MAX, &c), 1.0);
    }

    #[test]
    fn success_after_ramp_forgets_history() {
        let c = HealthConfig {
            failure_threshold: 1,
            ..cfg()
        };
        let h = KeyHealth::default();
        h.on_failure(KeyFailure::Transient, 0, &c);
        h.on_success(5000, &c);
        h.on_failure(KeyFailure::Transient, 5000, &c);
        assert_eq!(
            h.open_until_ms(),
            6000,
            "cooldown starts again from the base"
        );
    }
}
