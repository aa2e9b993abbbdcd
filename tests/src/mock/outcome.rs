//! What an endpoint produced, and a query-string helper the endpoints share.

use serde_json::Value;

use super::stream::StreamPlan;

/// What an endpoint produced, before faults and framing are applied.
pub(crate) enum Outcome {
    Json(Value),
    Stream(StreamPlan),
}

/// The value of `name` in a raw query string (not percent-decoded: keys and versions
/// used by these APIs never need it).
pub(crate) fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .find_map(|(key, value)| (key == name).then_some(value))
}
