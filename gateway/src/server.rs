//! Building and serving the HTTP application.
//!
//! Request path, in order (the whole middleware story is here, nowhere else):
//! 1. hyper accepts the connection (HTTP/1.1 or h2c; `TCP_NODELAY` on);
//! 2. axum routes by path and method (unknown path → 404, wrong method → 405, both in
//!    the API's error shape);
//! 3. the handler reads the body up to `server.max_body_bytes` and parses it;
//! 4. the engine routes, attempts, translates and answers (see `engine`);
//! 5. the request record is finalized when the response or stream ends.
//!
//! Authentication, budgets and guardrails slot in between 3 and 4 (later work).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use axum::Router;
use axum::routing::{get, post};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;

use crate::api;
use crate::config::ValidConfig;
use crate::engine::Engine;
use crate::engine::record::RecordSink;
use crate::providers::Provider;
use crate::routing;

/// Shared by every handler.
#[derive(Debug)]
pub struct AppState {
    /// Routing table and sinks; replaced whole, never mutated.
    pub engine: ArcSwap<Engine>,
    pub max_body_bytes: usize,
    pub metrics: Option<PrometheusHandle>,
    pub shutting_down: AtomicBool,
}

/// Builds the engine from a validated config.
pub fn build_engine(config: &ValidConfig, sink: Arc<dyn RecordSink>) -> anyhow::Result<Engine> {
    let epoch = Instant::now();
    let mut providers = Vec::with_capacity(config.providers.len());
    for p in &config.providers {
        let name = p.name.clone();
        let provider = Provider::new(p.clone(), epoch)
            .map_err(|e| anyhow::anyhow!("provider `{name}`: cannot build its HTTP client: {e}"))?;
        providers.push(Arc::new(provider));
    }
    let router = routing::Router::new(providers, &config.aliases, config.routing.clone());
    Ok(Engine { router, sink })
}

/// The axum application.
pub fn app(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(api::chat_completions))
        .route("/v1/responses", post(api::responses))
        .route("/v1/embeddings", post(api::embeddings))
        .route("/v1/models", get(api::list_models))
        .route("/anthropic/v1/messages", post(api::messages))
        .route(
            "/anthropic/v1/messages/count_tokens",
            post(api::count_tokens),
        )
        .route("/healthz", get(api::healthz))
        .route("/readyz", get(api::readyz))
        .route("/metrics", get(api::metrics))
        .fallback(api::not_found)
        .method_not_allowed_fallback(api::method_not_allowed)
        .with_state(state)
}

/// Binds, prints `listening on http://ADDR` (tests and scripts read it), and serves until
/// SIGINT/SIGTERM; then stops accepting, lets in-flight requests finish for up to
/// `server.shutdown_grace_secs`, and returns.
pub async fn serve(
    config: ValidConfig,
    sink: Arc<dyn RecordSink>,
    metrics: Option<PrometheusHandle>,
) -> anyhow::Result<()> {
    let engine = build_engine(&config, sink)?;
    let listener = TcpListener::bind(config.server.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.server.listen))?;
    let addr = listener.local_addr()?;
    let state = Arc::new(AppState {
        engine: ArcSwap::from_pointee(engine),
        max_body_bytes: config.server.max_body_bytes,
        metrics,
        shutting_down: AtomicBool::new(false),
    });
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on http://{addr}")?;
        out.flush()?;
    }
    tracing::info!(%addr, providers = config.providers.len(), "sluice gateway ready");

    let grace = Duration::from_secs(config.server.shutdown_grace_secs);
    let stop = Arc::new(tokio::sync::Notify::new());
    let app = app(state.clone());
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let server = axum::serve(listener, app).with_graceful_shutdown({
        let stop = stop.clone();
        let state = state.clone();
        async move {
            shutdown_signal().await;
            state.shutting_down.store(true, Ordering::Relaxed);
            tracing::info!("shutting down: no new connections; waiting for in-flight requests");
            stop.notify_one();
        }
    });
    tokio::select! {
        result = server.into_future() => result.map_err(Into::into),
        _ = async { stop.notified().await; tokio::time::sleep(grace).await } => {
            tracing::warn!(grace_secs = grace.as_secs(), "grace period over; closing remaining connections");
            Ok(())
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
