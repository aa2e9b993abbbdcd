//! The errors a refused request gets: what happened, the limit, and when it resets.

use http::StatusCode;

use super::budget::{self, format_time};
use super::keys;
use super::model::{self, ScopeKind};
use super::snapshot::Identity;
use crate::error::{ErrorKind, GatewayError};

pub(super) fn err(kind: ErrorKind, status: StatusCode, message: String) -> GatewayError {
    GatewayError::new(kind, status, message)
}

pub(super) fn rate_limited(
    kind: ScopeKind,
    id: &str,
    what: &str,
    retry_after: u64,
) -> GatewayError {
    let who = match kind {
        ScopeKind::Key => format!("virtual key {}", keys::display(id)),
        ScopeKind::Model => format!("model `{id}`"),
        other => format!("{} `{id}`", other.as_str()),
    };
    let mut e = err(
        ErrorKind::RateLimited,
        StatusCode::TOO_MANY_REQUESTS,
        format!("{who} is over its rate limit of {what}; retry after {retry_after} s"),
    );
    e.retry_after = Some(retry_after.max(1));
    e
}

pub(super) fn budget_exceeded(
    b: &model::Budget,
    id: &Identity,
    s: &budget::BudgetState,
) -> GatewayError {
    let who = match b.scope_kind {
        ScopeKind::Key => format!(
            "virtual key {} ({})",
            keys::display(&id.key_id),
            id.key_name
        ),
        other => format!("{} `{}`", other.as_str(), b.scope_id),
    };
    let period = if b.rolling {
        format!("rolling {}", b.window.as_str())
    } else {
        match b.window {
            model::BudgetWindow::Hour => "hourly".into(),
            model::BudgetWindow::Day => "daily".into(),
            model::BudgetWindow::Week => "weekly".into(),
            model::BudgetWindow::Month => "monthly".into(),
        }
    };
    let reserved = if s.reserved_micros > 0 {
        format!(
            ", {} reserved by requests in flight",
            budget::usd(s.reserved_micros as f64 / 1e6)
        )
    } else {
        String::new()
    };
    let reset = if b.rolling {
        "spend starts leaving the window"
    } else {
        "resets"
    };
    err(
        ErrorKind::BudgetExceeded,
        StatusCode::PAYMENT_REQUIRED,
        format!(
            "{who} exceeded its {period} budget of {} (spent {}{reserved}); {reset} {}",
            budget::usd(b.limit_usd),
            budget::usd(s.spent_micros as f64 / 1e6),
            format_time(s.resets_at)
        ),
    )
}
