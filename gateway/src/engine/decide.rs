//! The engine's pure decisions, apart from any I/O so that tables can test them: what
//! an upstream status means, what to do after a failure, how long a `Retry-After` is,
//! and which error a request that failed everywhere answers with.

use std::time::{Duration, SystemTime};

use http::{StatusCode, header};

use crate::error::{ErrorKind, GatewayError};
use crate::record::{AttemptOutcome, AttemptRecord};

/// What a provider's error status means for the key and for the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusClass {
    /// 401/403: the key is refused. Out of rotation; another key now, else the next
    /// target.
    KeyRefused,
    /// 429: the key is rate limited for its `Retry-After`; another key now, else wait.
    RateLimited,
    /// 408, 409, 5xx: worth another attempt after a backoff.
    Transient,
    /// Any other status: the same request would get the same answer; the client gets
    /// the provider's error.
    Final,
}

/// The class of an upstream error status (see the table in the module docs).
pub fn classify_status(status: u16) -> StatusClass {
    match status {
        401 | 403 => StatusClass::KeyRefused,
        429 => StatusClass::RateLimited,
        408 | 409 | 500..=599 => StatusClass::Transient,
        _ => StatusClass::Final,
    }
}

/// What to do after a failed attempt that is worth another one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Set this key aside and try another key of the same target at once.
    OtherKey,
    /// Back off (honouring the provider's `Retry-After`, if any) and try again.
    Backoff,
    /// Give up on this target and move to the next one in the plan.
    NextTarget,
}

/// The failure that a retry decision is made on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failure {
    /// The key was refused or rate limited: another key may do better.
    pub rotate: bool,
    /// The provider's `Retry-After`.
    pub retry_after: Option<Duration>,
    /// With no other key, this target is done (a refused key stays refused).
    pub give_up_target: bool,
}

/// Where one target's attempts stand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tries {
    /// Keys the provider has, and how many this request already set aside.
    pub keys: usize,
    pub excluded: usize,
    /// Retries made on this target so far, and how many it allows.
    pub retries: u32,
    pub max_retries: u32,
    /// The longest `Retry-After` worth waiting for (`routing.max_retry_after_secs`).
    pub max_retry_after: Duration,
}

/// The next step after `failure`. A refused key is set aside only while another key
/// remains; a lone rate-limited key is retried after its `Retry-After` instead, unless
/// that is longer than the caller is willing to wait.
pub fn next_step(failure: Failure, tries: Tries) -> Next {
    let other_key = failure.rotate && tries.keys > tries.excluded + 1;
    if !other_key && failure.give_up_target {
        return Next::NextTarget;
    }
    if tries.retries >= tries.max_retries {
        return Next::NextTarget;
    }
    if other_key {
        return Next::OtherKey;
    }
    if failure
        .retry_after
        .is_some_and(|after| after > tries.max_retry_after)
    {
        return Next::NextTarget;
    }
    Next::Backoff
}

/// The longest `Retry-After` believed from an upstream: a day. Larger values (`1e300`)
/// are clamped to it, so no duration or clock arithmetic downstream can overflow.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(86_400);

/// `Retry-After` in seconds or as an HTTP date; also OpenAI's `retry-after-ms`. Clamped
/// to [`MAX_RETRY_AFTER`]; negative, NaN or unparsable values are ignored.
pub fn parse_retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    let seconds = |secs: f64| {
        (secs.is_finite() && secs >= 0.0)
            .then(|| Duration::from_secs_f64(secs.min(MAX_RETRY_AFTER.as_secs_f64())))
    };
    if let Some(after) = headers
        .get("retry-after-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .and_then(|ms| seconds(ms / 1000.0))
    {
        return Some(after);
    }
    let value = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<f64>() {
        return seconds(secs);
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO)
            .min(MAX_RETRY_AFTER),
    )
}

/// The error for a request whose every target failed: the status of the most telling
/// failure, and a message listing what each attempt ran into.
pub fn final_error(errors: Vec<GatewayError>, attempts: &[AttemptRecord]) -> GatewayError {
    let summary: Vec<String> = attempts
        .iter()
        .map(|a| {
            let what = match &a.outcome {
                AttemptOutcome::Ok { status } => format!("{status}"),
                AttemptOutcome::Status { status, .. } => format!("{status}"),
                AttemptOutcome::Skipped { reason } => format!("skipped ({reason})"),
                other => other.label().replace('_', " "),
            };
            format!("{}/{}: {what}", a.provider, a.model)
        })
        .collect();
    let Some(mut last) = errors.into_iter().last() else {
        return GatewayError::new(
            ErrorKind::Internal,
            StatusCode::BAD_GATEWAY,
            "no target could be tried",
        );
    };
    // Skips alone mean the request itself cannot be served: keep the 400 and its reason.
    if attempts
        .iter()
        .all(|a| matches!(a.outcome, AttemptOutcome::Skipped { .. }))
    {
        return last;
    }
    let status = match last.kind {
        ErrorKind::UpstreamStatus
            if last.status.is_server_error() || last.status == StatusCode::TOO_MANY_REQUESTS =>
        {
            last.status
        }
        ErrorKind::UpstreamStatus => StatusCode::BAD_GATEWAY,
        _ => last.status,
    };
    last.status = status;
    last.upstream_body = None;
    last.message = format!(
        "all {} attempts failed ({}); last error: {}",
        attempts.len(),
        summary.join(", "),
        last.message
    );
    last
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn retry_after_from_an_upstream_is_clamped_whatever_its_form() {
        for value in [
            "1e300",
            "18446744073709551616",
            "inf",
            "1.7976931348623157e308",
        ] {
            let got = parse_retry_after(&headers(&[("retry-after", value)]));
            assert!(got.is_none_or(|d| d <= MAX_RETRY_AFTER), "{value}: {got:?}");
        }
        assert_eq!(
            parse_retry_after(&headers(&[("retry-after-ms", "1e300")])),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(parse_retry_after(&headers(&[("retry-after", "-5")])), None);
        assert_eq!(parse_retry_after(&headers(&[("retry-after", "NaN")])), None);
        assert_eq!(
            parse_retry_after(&headers(&[("retry-after", "2")])),
            Some(Duration::from_secs(2))
        );
        assert!(
            parse_retry_after(&headers(&[(
                "retry-after",
                "Fri, 31 Dec 9999 23:59:59 GMT"
            )]))
            .is_some_and(|d| d <= MAX_RETRY_AFTER)
        );
    }

    #[test]
    fn each_status_has_its_class() {
        let table = [
            (400, StatusClass::Final),
            (401, StatusClass::KeyRefused),
            (403, StatusClass::KeyRefused),
            (404, StatusClass::Final),
            (408, StatusClass::Transient),
            (409, StatusClass::Transient),
            (413, StatusClass::Final),
            (422, StatusClass::Final),
            (429, StatusClass::RateLimited),
            (499, StatusClass::Final),
            (500, StatusClass::Transient),
            (502, StatusClass::Transient),
            (503, StatusClass::Transient),
            (529, StatusClass::Transient),
            (599, StatusClass::Transient),
            (600, StatusClass::Final),
        ];
        for (status, class) in table {
            assert_eq!(classify_status(status), class, "status {status}");
        }
    }

    fn tries(keys: usize, excluded: usize, retries: u32) -> Tries {
        Tries {
            keys,
            excluded,
            retries,
            max_retries: 2,
            max_retry_after: Duration::from_secs(60),
        }
    }

    #[test]
    fn the_step_after_a_failure() {
        let refused = Failure {
            rotate: true,
            retry_after: None,
            give_up_target: true,
        };
        let limited = |after: Option<u64>| Failure {
            rotate: true,
            retry_after: after.map(Duration::from_secs),
            give_up_target: false,
        };
        let transient = Failure {
            rotate: false,
            retry_after: None,
            give_up_target: false,
        };
        let table = [
            // A refused key: another key while one remains, else the next target.
            (refused, tries(3, 0, 0), Next::OtherKey),
            (refused, tries(3, 1, 1), Next::OtherKey),
            (refused, tries(2, 1, 1), Next::NextTarget),
            (refused, tries(1, 0, 0), Next::NextTarget),
            // Rate limited: another key now; a lone key waits its Retry-After if short.
            (limited(Some(5)), tries(2, 0, 0), Next::OtherKey),
            (limited(Some(5)), tries(1, 0, 0), Next::Backoff),
            (limited(None), tries(1, 0, 0), Next::Backoff),
            (limited(Some(61)), tries(1, 0, 0), Next::NextTarget),
            (limited(Some(60)), tries(1, 0, 0), Next::Backoff),
            // Transient failures back off until the target's retries are spent.
            (transient, tries(1, 0, 0), Next::Backoff),
            (transient, tries(1, 0, 1), Next::Backoff),
            (transient, tries(1, 0, 2), Next::NextTarget),
            (transient, tries(4, 0, 2), Next::NextTarget),
            // Retries are spent even when other keys remain.
            (limited(Some(1)), tries(4, 0, 2), Next::NextTarget),
        ];
        for (failure, tries, next) in table {
            assert_eq!(next_step(failure, tries), next, "{failure:?} {tries:?}");
        }
    }

    fn attempt(outcome: AttemptOutcome) -> AttemptRecord {
        AttemptRecord {
            provider: "p".into(),
            model: "m".into(),
            key_id: String::new(),
            started_after: Duration::ZERO,
            duration: Duration::ZERO,
            outcome,
        }
    }

    fn upstream(status: StatusCode) -> GatewayError {
        GatewayError::new(ErrorKind::UpstreamStatus, status, "answered")
    }

    #[test]
    fn the_error_a_request_that_failed_everywhere_answers_with() {
        let status = |s: u16| {
            attempt(AttemptOutcome::Status {
                status: s,
                message: String::new(),
            })
        };
        let skipped = attempt(AttemptOutcome::Skipped {
            reason: "cannot translate".into(),
        });
        // (errors in order, attempts, expected status)
        let table: Vec<(Vec<GatewayError>, Vec<AttemptRecord>, StatusCode)> = vec![
            // The last failure's status when it is a server error or a 429.
            (
                vec![
                    upstream(StatusCode::BAD_REQUEST),
                    upstream(StatusCode::SERVICE_UNAVAILABLE),
                ],
                vec![status(400), status(503)],
                StatusCode::SERVICE_UNAVAILABLE,
            ),
            (
                vec![upstream(StatusCode::TOO_MANY_REQUESTS)],
                vec![status(429)],
                StatusCode::TOO_MANY_REQUESTS,
            ),
            // An upstream 4xx after retries is the gateway's 502, not the caller's fault.
            (
                vec![upstream(StatusCode::UNAUTHORIZED)],
                vec![status(401)],
                StatusCode::BAD_GATEWAY,
            ),
            // Skips alone keep their own status (the request cannot be served).
            (
                vec![GatewayError::invalid("cannot translate")],
                vec![skipped.clone()],
                StatusCode::BAD_REQUEST,
            ),
            // Nothing tried at all.
            (Vec::new(), Vec::new(), StatusCode::BAD_GATEWAY),
        ];
        for (errors, attempts, want) in table {
            let got = final_error(errors, &attempts);
            assert_eq!(got.status, want, "{}", got.message);
            assert!(
                got.upstream_body.is_none()
                    || attempts
                        .iter()
                        .all(|a| matches!(a.outcome, AttemptOutcome::Skipped { .. }))
            );
        }
        let mixed = final_error(
            vec![
                upstream(StatusCode::BAD_GATEWAY),
                upstream(StatusCode::GATEWAY_TIMEOUT),
            ],
            &[status(502), skipped],
        );
        assert!(
            mixed
                .message
                .starts_with("all 2 attempts failed (p/m: 502, p/m: skipped (cannot translate))"),
            "{}",
            mixed.message
        );
    }
}
