//! The state every handler shares.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use arc_swap::ArcSwap;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::config::Config;
use crate::engine::Engine;
use crate::governance::Governance;

/// Shared by every handler.
#[derive(Debug)]
pub struct AppState {
    /// The engine snapshot: each request loads it once and keeps it to the end. Replaced
    /// whole (never mutated) when routing changes through the admin API.
    pub engine: ArcSwap<Engine>,
    pub max_body_bytes: usize,
    pub metrics: Option<PrometheusHandle>,
    pub shutting_down: AtomicBool,
    /// Keys, budgets, limits and audit; `None` when `[governance]` is not configured.
    pub governance: Option<Arc<Governance>>,
    /// The configuration as read, which admin-API providers and aliases overlay.
    pub routing_base: Config,
    /// Where `routing_base` came from (file path or "environment"), for messages.
    pub routing_source: String,
    /// Held by every admin change (any `/api/v1` request that is not a read) from its
    /// first read to its last swap: one writer at a time, so no change is validated
    /// against a version another change is replacing, and none is lost.
    pub admin_writes: tokio::sync::Mutex<()>,
}
