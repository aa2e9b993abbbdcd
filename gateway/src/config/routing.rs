//! `[routing]` and `[aliases.NAME]`.

use serde::Deserialize;

use super::provider::default_weight;

/// `[routing]`: retry policy shared by every provider (each may override `max_retries`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingConfig {
    /// Retries per target after the first attempt, on connect errors, timeouts, 408,
    /// 429 and 5xx. Default 2. After the last retry the next fallback target is tried.
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
    /// First backoff delay; doubles each retry, with full jitter. Default 100 ms.
    #[serde(default = "default_backoff_base_ms")]
    pub backoff_base_ms: u64,
    /// Cap on one backoff delay. Default 2000 ms.
    #[serde(default = "default_backoff_max_ms")]
    pub backoff_max_ms: u64,
    /// A `Retry-After` longer than this is not waited for: the next target is tried
    /// instead. Default 30 s.
    #[serde(default = "default_max_retry_after_secs")]
    pub max_retry_after_secs: u64,
    /// Most targets one request may try: the routed model, its alias's targets and
    /// fallbacks, and the request's own `fallbacks` (after duplicates are dropped). A
    /// request that names more fallbacks than this is refused with a 400; an alias that
    /// expands to more is cut at this many. Default 16.
    #[serde(default = "default_max_candidates")]
    pub max_candidates: usize,
    /// Most provider calls one request may make, over all its targets, retries and key
    /// rotations: a request with many fallbacks to failing providers cannot turn into
    /// hundreds of upstream calls. Default 10.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// No retry or fallback attempt starts later than this after the request arrived
    /// (an attempt already running is not cut short; its own timeouts bound it), and a
    /// backoff never sleeps past it. Default 120000 ms.
    #[serde(default = "default_retry_deadline_ms")]
    pub retry_deadline_ms: u64,
    /// Largest complete (non-streamed) answer read from a provider, in bytes. A larger
    /// one is refused with a 502 that says so (no retry: it would be as large again).
    /// Streams are passed on event by event and are not limited by this. Default 32 MiB,
    /// room for an embeddings batch of about a thousand 3072-dimension vectors as JSON.
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: usize,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        RoutingConfig {
            max_retries: default_max_retries(),
            backoff_base_ms: default_backoff_base_ms(),
            backoff_max_ms: default_backoff_max_ms(),
            max_retry_after_secs: default_max_retry_after_secs(),
            max_candidates: default_max_candidates(),
            max_attempts: default_max_attempts(),
            retry_deadline_ms: default_retry_deadline_ms(),
            max_response_bytes: default_max_response_bytes(),
        }
    }
}

fn default_max_retries() -> u32 {
    2
}
fn default_backoff_base_ms() -> u64 {
    100
}
fn default_backoff_max_ms() -> u64 {
    2000
}
fn default_max_retry_after_secs() -> u64 {
    30
}
fn default_max_candidates() -> usize {
    16
}
fn default_max_attempts() -> u32 {
    10
}
fn default_retry_deadline_ms() -> u64 {
    120_000
}
fn default_max_response_bytes() -> usize {
    32 * 1024 * 1024
}

/// `[aliases.NAME]`
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct AliasConfig {
    /// Weighted `provider/model` targets; one is picked per request, the others become
    /// its first fallbacks.
    pub targets: Vec<AliasTarget>,
    /// `provider/model` strings tried, in order, after every target has failed.
    #[serde(default)]
    pub fallbacks: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct AliasTarget {
    pub model: String,
    #[serde(default = "default_weight")]
    pub weight: f64,
}
