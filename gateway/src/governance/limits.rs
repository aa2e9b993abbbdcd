//! Rate limits: requests per minute, tokens per minute and concurrent requests, per key,
//! team or model.
//!
//! RPM and TPM use a sliding minute approximated from two fixed minutes (the previous
//! minute's count weighted by how much of it still overlaps the last 60 s) — constant
//! memory per limit and accurate to a few percent. Tokens are only known after a request,
//! so TPM admits while the minute's tokens are under the limit and charges afterwards.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::budget::Millis;

const MINUTE: Millis = 60_000;

/// A sliding-minute counter.
#[derive(Debug, Default, Clone)]
pub struct MinuteCounter {
    minute: Millis,
    current: u64,
    previous: u64,
}

impl MinuteCounter {
    fn roll(&mut self, now: Millis) {
        let minute = now - now.rem_euclid(MINUTE);
        if minute == self.minute {
            return;
        }
        self.previous = if minute - self.minute == MINUTE {
            self.current
        } else {
            0
        };
        self.current = 0;
        self.minute = minute;
    }

    /// The count over the last 60 s.
    pub fn count(&mut self, now: Millis) -> u64 {
        self.roll(now);
        let into = (now - self.minute) as f64 / MINUTE as f64;
        ((self.previous as f64 * (1.0 - into)).round() as u64).saturating_add(self.current)
    }

    pub fn add(&mut self, now: Millis, n: u64) {
        self.roll(now);
        self.current = self.current.saturating_add(n);
    }

    /// Seconds until the count drops by at least `n` (for `Retry-After`).
    pub fn retry_after_secs(&mut self, now: Millis, limit: u64) -> u64 {
        let count = self.count(now);
        if count < limit {
            return 0;
        }
        if self.previous > 0 && self.current < limit {
            // The previous minute's share decays linearly: wait until enough has left.
            let need = (count.saturating_add(1) - limit) as f64;
            let per_ms = self.previous as f64 / MINUTE as f64;
            return ((need / per_ms) / 1000.0).ceil().max(1.0) as u64;
        }
        // The current minute alone is over: it must leave the window entirely.
        (((self.minute + 2 * MINUTE - now) as f64) / 1000.0)
            .ceil()
            .max(1.0) as u64
    }
}

/// A concurrency slot; released on drop (end of the request or stream, or disconnect).
#[derive(Debug)]
pub struct ConcurrencySlot(Arc<AtomicU64>);

impl Drop for ConcurrencySlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Takes a slot if fewer than `limit` are taken.
pub fn try_take(in_flight: &Arc<AtomicU64>, limit: u64) -> Option<ConcurrencySlot> {
    let mut current = in_flight.load(Ordering::Acquire);
    loop {
        if current >= limit {
            return None;
        }
        match in_flight.compare_exchange_weak(
            current,
            current + 1,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => return Some(ConcurrencySlot(in_flight.clone())),
            Err(actual) => current = actual,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sliding_minute_weights_the_previous_minute() {
        let mut c = MinuteCounter::default();
        let t0 = 10 * MINUTE;
        c.add(t0 + 1000, 60);
        assert_eq!(c.count(t0 + 59_000), 60);
        assert_eq!(
            c.count(t0 + MINUTE + 30_000),
            30,
            "half of the previous minute remains"
        );
        assert_eq!(c.count(t0 + 3 * MINUTE), 0);
    }

    #[test]
    fn retry_after_is_positive_when_full() {
        let mut c = MinuteCounter::default();
        let t0 = 10 * MINUTE;
        c.add(t0, 10);
        let wait = c.retry_after_secs(t0 + 5_000, 10);
        assert!((1..=115).contains(&wait), "{wait}");
        assert_eq!(c.retry_after_secs(t0 + 5_000, 11), 0);
    }

    #[test]
    fn concurrency_slots_are_bounded_and_released() {
        let n = Arc::new(AtomicU64::new(0));
        let a = try_take(&n, 2).unwrap();
        let _b = try_take(&n, 2).unwrap();
        assert!(try_take(&n, 2).is_none());
        drop(a);
        assert!(try_take(&n, 2).is_some());
    }
}
