//! Counting and logging lost audit records.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// At most one loss line per this interval: an overload drops records by the thousand,
/// and one log line each would add to the overload. The line carries the count since
/// the previous one; the counter `sluice_audit_lost_total` has every record.
const LOG_EVERY: Duration = Duration::from_secs(1);

/// Lost records: counted at once, logged at most once per [`LOG_EVERY`]. Lock-free, so
/// the request path can report a loss without waiting on anything.
#[derive(Debug)]
pub(super) struct Losses {
    started: Instant,
    /// Lost since the last log line.
    unlogged: AtomicU64,
    /// When the last line was logged (ms since `started`); `u64::MAX` before the first.
    logged_at_ms: AtomicU64,
}

impl Default for Losses {
    fn default() -> Self {
        Losses {
            started: Instant::now(),
            unlogged: AtomicU64::new(0),
            logged_at_ms: AtomicU64::new(u64::MAX),
        }
    }
}

impl Losses {
    /// Counts `records` lost (`request_id`: one of them, for the log) and logs, unless
    /// a line was logged less than [`LOG_EVERY`] ago.
    pub(super) fn lost(&self, records: u64, request_id: &str, why: &str) {
        if records == 0 {
            return;
        }
        metrics::counter!("sluice_audit_lost_total").increment(records);
        self.unlogged.fetch_add(records, Ordering::Relaxed);
        let now = self.started.elapsed().as_millis() as u64;
        let last = self.logged_at_ms.load(Ordering::Relaxed);
        let due = last == u64::MAX || now.saturating_sub(last) >= LOG_EVERY.as_millis() as u64;
        // One caller wins the slot; the others' records go into its count or the next.
        if due
            && self
                .logged_at_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let records = self.unlogged.swap(0, Ordering::Relaxed);
            tracing::error!(
                records,
                request_id,
                "audit records lost: {why} (at most one line per second; sluice_audit_lost_total counts them all)"
            );
        }
    }

    /// Logs the losses no line has reported yet (at shutdown).
    pub(super) fn flush(&self) {
        let records = self.unlogged.swap(0, Ordering::Relaxed);
        if records > 0 {
            tracing::error!(
                records,
                "audit records lost since the last report (sluice_audit_lost_total counts them all)"
            );
        }
    }
}
