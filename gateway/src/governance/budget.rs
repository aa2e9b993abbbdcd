//! Budget windows and spend counters.
//!
//! Calendar windows are aligned in UTC: the hour, the day, the ISO week (from Monday),
//! the month. Rolling windows cover the last hour, day, 7 days or 30 days and advance in
//! buckets (1 min, 30 min, 3 h, 12 h): spend leaves the window one bucket at a time.
//!
//! Admission and overspend: a request is admitted while `spent + reserved < limit`, where
//! `reserved` is the estimated cost of requests in flight (input at the input price plus
//! `max_tokens` — or the configured default — at the output price). Each admitted request
//! reserves its estimate; when it finishes, the reservation is replaced by its real cost.
//! So a budget is overspent by at most the real cost of the requests that were in flight
//! when it ran out beyond their estimates, plus the last admitted request's own cost.

use std::collections::VecDeque;

use chrono::{DateTime, Datelike, Duration as ChronoDuration, TimeZone, Timelike, Utc};

use super::model::{Budget, BudgetWindow};

/// A point in time as Unix milliseconds.
pub type Millis = i64;

/// Start of the calendar window containing `now`, and when it resets.
pub fn calendar_window(window: BudgetWindow, now: Millis) -> (Millis, Millis) {
    let t: DateTime<Utc> = Utc.timestamp_millis_opt(now).single().unwrap_or_default();
    let start = match window {
        BudgetWindow::Hour => t.date_naive().and_hms_opt(t.hour(), 0, 0),
        BudgetWindow::Day => t.date_naive().and_hms_opt(0, 0, 0),
        BudgetWindow::Week => {
            let monday =
                t.date_naive() - ChronoDuration::days(t.weekday().num_days_from_monday() as i64);
            monday.and_hms_opt(0, 0, 0)
        }
        BudgetWindow::Month => t
            .date_naive()
            .with_day(1)
            .and_then(|d| d.and_hms_opt(0, 0, 0)),
    }
    .map(|n| n.and_utc())
    .unwrap_or(t);
    let end = match window {
        BudgetWindow::Hour => start + ChronoDuration::hours(1),
        BudgetWindow::Day => start + ChronoDuration::days(1),
        BudgetWindow::Week => start + ChronoDuration::days(7),
        BudgetWindow::Month => {
            let (y, m) = if start.month() == 12 {
                (start.year() + 1, 1)
            } else {
                (start.year(), start.month() + 1)
            };
            Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0)
                .single()
                .unwrap_or(start + ChronoDuration::days(31))
        }
    };
    (start.timestamp_millis(), end.timestamp_millis())
}

/// Length and bucket size of a rolling window, in ms.
pub fn rolling_shape(window: BudgetWindow) -> (Millis, Millis) {
    const MIN: i64 = 60_000;
    match window {
        BudgetWindow::Hour => (60 * MIN, MIN),
        BudgetWindow::Day => (24 * 60 * MIN, 30 * MIN),
        BudgetWindow::Week => (7 * 24 * 60 * MIN, 180 * MIN),
        BudgetWindow::Month => (30 * 24 * 60 * MIN, 720 * MIN),
    }
}

/// Where a budget stands right now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetState {
    pub spent_micros: u64,
    pub reserved_micros: u64,
    pub limit_micros: u64,
    /// When the spend resets (calendar) or the oldest bucket leaves (rolling).
    pub resets_at: Millis,
}

/// Spend of one budget.
#[derive(Debug)]
pub struct BudgetCounter {
    pub budget: Budget,
    limit_micros: u64,
    /// Calendar: one entry for the current window. Rolling: one per bucket, oldest first.
    buckets: VecDeque<(Millis, u64)>,
    reserved: u64,
    /// The window (its start) for which the soft threshold has already been reported.
    soft_reported_for: Option<Millis>,
}

impl BudgetCounter {
    pub fn new(budget: Budget) -> Self {
        let limit_micros = (budget.limit_usd.max(0.0) * 1_000_000.0).round() as u64;
        BudgetCounter {
            budget,
            limit_micros,
            buckets: VecDeque::new(),
            reserved: 0,
            soft_reported_for: None,
        }
    }

    /// Bucket (or window) start that `ts` falls in.
    fn slot(&self, ts: Millis) -> Millis {
        if self.budget.rolling {
            let (_, bucket) = rolling_shape(self.budget.window);
            ts - ts.rem_euclid(bucket)
        } else {
            calendar_window(self.budget.window, ts).0
        }
    }

    /// The earliest bucket start whose spend still counts at `now`: a rolling bucket
    /// counts while any part of it lies within the last window length.
    fn horizon(&self, now: Millis) -> Millis {
        if self.budget.rolling {
            let (len, bucket) = rolling_shape(self.budget.window);
            now - len - bucket + 1
        } else {
            calendar_window(self.budget.window, now).0
        }
    }

    fn expire(&mut self, now: Millis) {
        let horizon = self.horizon(now);
        while self
            .buckets
            .front()
            .is_some_and(|(start, _)| *start < horizon)
        {
            self.buckets.pop_front();
        }
    }

    /// The state at `now`.
    pub fn state(&mut self, now: Millis) -> BudgetState {
        self.expire(now);
        let spent = self
            .buckets
            .iter()
            .fold(0u64, |sum, (_, m)| sum.saturating_add(*m));
        let resets_at = if self.budget.rolling {
            let (len, bucket) = rolling_shape(self.budget.window);
            self.buckets
                .front()
                .map(|(s, _)| s + bucket + len)
                .unwrap_or(now)
        } else {
            calendar_window(self.budget.window, now).1
        };
        BudgetState {
            spent_micros: spent,
            reserved_micros: self.reserved,
            limit_micros: self.limit_micros,
            resets_at,
        }
    }

    /// Whether a new request may start.
    pub fn has_room(&mut self, now: Millis) -> Result<(), BudgetState> {
        let s = self.state(now);
        if s.spent_micros.saturating_add(s.reserved_micros) >= s.limit_micros {
            Err(s)
        } else {
            Ok(())
        }
    }

    pub fn reserve(&mut self, micros: u64) {
        self.reserved = self.reserved.saturating_add(micros);
    }

    /// Replaces a reservation with the real cost, charged at `ts`. Returns true when this
    /// charge crossed the soft threshold for the first time in the window.
    pub fn settle(&mut self, reserved: u64, actual: u64, ts: Millis) -> bool {
        self.reserved = self.reserved.saturating_sub(reserved);
        self.add(ts, actual);
        let state = self.state(ts);
        let soft = (self.limit_micros as f64 * self.budget.soft_fraction) as u64;
        let window = self.slot(ts);
        if state.spent_micros >= soft && self.soft_reported_for != Some(window) {
            self.soft_reported_for = Some(window);
            return true;
        }
        false
    }

    /// Adds spend at `ts` (also used to rebuild counters from the audit log).
    pub fn add(&mut self, ts: Millis, micros: u64) {
        if micros == 0 {
            return;
        }
        let slot = self.slot(ts);
        match self.buckets.iter_mut().find(|(s, _)| *s == slot) {
            Some((_, m)) => *m = m.saturating_add(micros),
            None => {
                let at = self
                    .buckets
                    .iter()
                    .position(|(s, _)| *s > slot)
                    .unwrap_or(self.buckets.len());
                self.buckets.insert(at, (slot, micros));
            }
        }
    }

    /// Where the rebuild from the audit log must start reading, and its bucket size.
    pub fn rebuild_range(&self, now: Millis) -> (Millis, Millis) {
        if self.budget.rolling {
            let (_, bucket) = rolling_shape(self.budget.window);
            (self.horizon(now), bucket)
        } else {
            let (start, end) = calendar_window(self.budget.window, now);
            (start, end - start)
        }
    }
}

/// Dollars for messages: cents for ordinary amounts, more digits for tiny ones.
pub fn usd(amount: f64) -> String {
    if amount == 0.0 || amount.abs() >= 1.0 {
        format!("${amount:.2}")
    } else if amount.abs() >= 0.01 {
        format!("${amount:.4}")
    } else {
        format!("${amount:.6}")
    }
}

/// `2026-12-01 00:00 UTC`.
pub fn format_time(ms: Millis) -> String {
    Utc.timestamp_millis_opt(ms)
        .single()
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|| ms.to_string())
}

/// Unix milliseconds now.
pub fn now_ms() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::governance::model::ScopeKind;

    fn ms(s: &str) -> Millis {
        DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis()
    }

    fn budget(window: BudgetWindow, rolling: bool, usd: f64) -> Budget {
        Budget {
            id: "b".into(),
            scope_kind: ScopeKind::Key,
            scope_id: "k".into(),
            window,
            rolling,
            limit_usd: usd,
            soft_fraction: 0.5,
            created_ms: 0,
        }
    }

    #[test]
    fn calendar_windows_align_in_utc() {
        let now = ms("2026-11-21T15:42:10Z");
        assert_eq!(
            calendar_window(BudgetWindow::Hour, now),
            (ms("2026-11-21T15:00:00Z"), ms("2026-11-21T16:00:00Z"))
        );
        assert_eq!(
            calendar_window(BudgetWindow::Day, now).1,
            ms("2026-11-22T00:00:00Z")
        );
        assert_eq!(
            calendar_window(BudgetWindow::Week, now).0,
            ms("2026-11-16T00:00:00Z"),
            "Monday"
        );
        assert_eq!(
            calendar_window(BudgetWindow::Month, now),
            (ms("2026-11-01T00:00:00Z"), ms("2026-12-01T00:00:00Z"))
        );
        let dec = ms("2026-12-31T23:59:59Z");
        assert_eq!(
            calendar_window(BudgetWindow::Month, dec).1,
            ms("2027-01-01T00:00:00Z")
        );
    }

    #[test]
    fn reservations_count_until_settled_and_calendar_resets() {
        let mut c = BudgetCounter::new(budget(BudgetWindow::Hour, false, 1.0));
        let t = ms("2026-11-21T10:10:00Z");
        c.reserve(600_000);
        assert!(c.has_room(t).is_ok());
        c.reserve(400_000);
        assert!(
            c.has_room(t).is_err(),
            "in-flight estimates use up the budget"
        );
        assert!(
            c.settle(600_000, 550_000, t),
            "crossed the 50% soft threshold"
        );
        assert!(!c.settle(400_000, 100_000, t), "reported once per window");
        assert_eq!(c.state(t).spent_micros, 650_000);
        assert_eq!(
            c.state(ms("2026-11-21T11:00:00Z")).spent_micros,
            0,
            "new hour"
        );
    }

    #[test]
    fn rolling_windows_forget_gradually() {
        let mut c = BudgetCounter::new(budget(BudgetWindow::Hour, true, 1.0));
        let t = ms("2026-11-21T10:00:30Z");
        c.add(t, 300);
        c.add(t + 30 * 60_000, 200);
        assert_eq!(c.state(t + 59 * 60_000).spent_micros, 500);
        assert_eq!(
            c.state(t + 61 * 60_000).spent_micros,
            200,
            "the first bucket left the window"
        );
        assert_eq!(
            c.state(t + 61 * 60_000).resets_at,
            ms("2026-11-21T10:31:00Z") + 3_600_000
        );
    }
}
