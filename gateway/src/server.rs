//! Building and serving the HTTP application.
//!
//! Request path, in order (the whole middleware story is here, nowhere else):
//! 1. hyper accepts the connection (HTTP/1.1 or h2c; `TCP_NODELAY` on);
//! 2. axum routes by path and method (unknown path → 404, wrong method → 405, both in
//!    the API's error shape);
//! 3. the handler authenticates the virtual key (governance), then reads the body up to
//!    `server.max_body_bytes` and parses it;
//! 4. the engine runs input guardrails (block, redact), routes, admits (budgets, rate
//!    limits), attempts, translates, runs output guardrails and answers (see `engine`);
//! 5. the request record is finalized when the response or stream ends.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::Router;
use axum::routing::{get, post};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;

use crate::api;
use crate::api::state::AppState;
use crate::config::Durability;
use crate::config::{ResolvedGovernance, ValidConfig};
use crate::engine::Engine;
use crate::governance::store::sqlite::SqliteStore;
use crate::governance::{Governance, GovernanceSettings};
use crate::pricing::PriceTable;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

mod self_wake;
use crate::conn_guard::{self, Activity, Clock, ConnectionSlot, Limits, Tracked, Watched};
use self_wake::CoalesceSelfWakes;

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
        .nest("/api/v1", api::admin::router(state.clone()))
        .fallback(api::not_found)
        .method_not_allowed_fallback(api::method_not_allowed)
        .layer(axum::middleware::from_fn(api::assign_request_id))
        .with_state(state)
}

/// Binds, prints `listening on http://ADDR` (tests and scripts read it), and serves until
/// SIGINT/SIGTERM; then stops accepting, lets in-flight requests finish for up to
/// `server.shutdown_grace_secs`, and returns.
pub async fn serve(config: ValidConfig, metrics: Option<PrometheusHandle>) -> anyhow::Result<()> {
    let tasks = TaskTracker::new();
    let prices = Arc::new(PriceTable::new(&config.prices).map_err(|e| anyhow::anyhow!(e))?);
    let governance = match &config.governance {
        Some(g) => Some(start_governance(g, prices.clone(), &tasks).await?),
        None => None,
    };
    let engine = Engine::new(&config, prices, governance.clone())?;
    // Cancelled when the grace period is over: connections still open are closed, and
    // the metrics upkeep stops, so the task tracker drains.
    let stop = CancellationToken::new();
    if let Some(handle) = metrics.clone() {
        // The exporter buffers histogram samples until they are folded into buckets;
        // without this upkeep an unscraped /metrics would grow memory without bound.
        let stop = stop.clone();
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tokio::select! {
                    _ = tick.tick() => handle.run_upkeep(),
                    () = stop.cancelled() => return,
                }
            }
        });
    }
    let listener = TcpListener::bind(config.server.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.server.listen))?;
    let addr = listener.local_addr()?;
    let state = Arc::new(AppState {
        engine: ArcSwap::from_pointee(engine),
        max_body_bytes: config.server.max_body_bytes,
        metrics,
        shutting_down: AtomicBool::new(false),
        governance: governance.clone(),
        routing_base: config.raw.clone(),
        routing_source: config.source_name.clone(),
        admin_writes: tokio::sync::Mutex::new(()),
    });
    if let Some(g) = &governance {
        api::admin::routing::load_at_start(&state, g.store.as_ref()).await;
    }
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on http://{addr}")?;
        out.flush()?;
    }
    tracing::info!(%addr, providers = config.providers.len(), "sluice gateway ready");

    let grace = Duration::from_secs(config.server.shutdown_grace_secs);
    let connections = hyper_util::server::graceful::GracefulShutdown::new();
    let service = hyper_util::service::TowerToHyperService::new(app(state.clone()));
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    // Streams per HTTP/2 connection: each is a request the gateway works on.
    builder.http2().max_concurrent_streams(256);
    let limits = Limits {
        header: Duration::from_millis(config.server.header_timeout_ms),
        idle: Duration::from_millis(config.server.idle_timeout_ms),
        body: Duration::from_millis(config.server.body_timeout_ms),
    };
    let max_connections = config
        .server
        .max_connections
        .unwrap_or_else(default_max_connections);
    tracing::debug!(max_connections, "connection limit");
    let open = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let clock = Clock::new();
    let mut signal = std::pin::pin!(shutdown_signal());
    loop {
        let tcp = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(error) if sluice_shared::net::peer_gave_up(&error) => continue,
                Err(error) => {
                    // Usually out of file descriptors: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut signal => break,
        };
        let Some(slot) = ConnectionSlot::take(&open, max_connections) else {
            // One non-blocking write into the fresh socket's empty buffer, then close: a
            // clear answer that costs no task and no waiting.
            let _ = tcp.try_write(conn_guard::OVER_CAPACITY);
            metrics::counter!("sluice_connections_refused_total").increment(1);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let activity = Activity::new(clock);
        let tracked = Tracked {
            inner: service.clone(),
            activity: activity.clone(),
            body_timeout: limits.body,
        };
        let connection = builder
            .serve_connection_with_upgrades(
                TokioIo::new(Watched::new(tcp, activity.clone())),
                tracked,
            )
            .into_owned();
        let connection = connections.watch(connection);
        let stop = stop.clone();
        tasks.spawn(async move {
            let _slot = slot;
            let mut connection = std::pin::pin!(CoalesceSelfWakes::new(connection));
            loop {
                let check_at = match activity.verdict(&limits) {
                    Ok(at) => at,
                    Err(why) => {
                        tracing::debug!(reason = why.label(), "closing a client connection");
                        metrics::counter!("sluice_connections_closed_total", "reason" => why.label()).increment(1);
                        return;
                    }
                };
                tokio::select! {
                    ended = &mut connection => {
                        if let Err(error) = ended {
                            tracing::trace!(%error, "connection ended with an error");
                        }
                        return;
                    }
                    () = tokio::time::sleep_until(check_at.into()) => {}
                    () = stop.cancelled() => return,
                }
            }
        });
    }
    drop(listener);
    state.shutting_down.store(true, Ordering::Relaxed);
    tracing::info!("shutting down: no new connections; waiting for in-flight requests");
    tokio::select! {
        () = connections.shutdown() => {}
        () = tokio::time::sleep(grace) => {
            tracing::warn!(grace_secs = grace.as_secs(), "grace period over; closing remaining connections");
        }
    }
    stop.cancel();
    // Drain the audit writer: everything answered is recorded before the process exits.
    if let Some(g) = &governance {
        g.audit.shutdown();
    }
    tasks.close();
    if tokio::time::timeout(grace.max(Duration::from_secs(5)), tasks.wait())
        .await
        .is_err()
    {
        tracing::error!(
            "background tasks did not finish in time; unwritten audit records remain in the spill file"
        );
    }
    Ok(())
}

/// Opens the governance store and starts its audit writer.
pub async fn start_governance(
    g: &ResolvedGovernance,
    prices: Arc<PriceTable>,
    tasks: &TaskTracker,
) -> anyhow::Result<Arc<Governance>> {
    let cfg = &g.config;
    let strict = cfg.audit.durability == Durability::Strict;
    let store = SqliteStore::open(&cfg.database, strict)
        .await
        .map_err(|e| anyhow::anyhow!("governance database {}: {e}", cfg.database))?;
    let mut audit = cfg.audit.clone();
    if audit.spill_path.is_none() {
        audit.spill_path = Some(format!("{}.spill.jsonl", cfg.database));
    }
    let settings = GovernanceSettings {
        mode: cfg.mode,
        admin_token: g.admin_token.clone(),
        default_output_tokens: cfg.default_output_tokens,
        allow_unpriced_models: cfg.allow_unpriced_models.clone(),
        max_body_bytes: cfg.audit.max_body_bytes,
    };
    let gov = Governance::start(settings, Arc::new(store), prices, audit, tasks)
        .await
        .map_err(|e| anyhow::anyhow!("governance: {e}"))?;
    tracing::info!(database = %cfg.database, mode = ?cfg.mode, "governance on");
    Ok(gov)
}

/// Three quarters of the open-file limit, after raising the soft limit to the hard one
/// (the remaining quarter is for provider connections, the database and the spill file).
fn default_max_connections() -> usize {
    #[cfg(target_os = "linux")]
    {
        use rustix::process::{Resource, getrlimit, setrlimit};
        let mut limit = getrlimit(Resource::Nofile);
        if limit.current < limit.maximum {
            limit.current = limit.maximum;
            if setrlimit(Resource::Nofile, limit).is_err() {
                limit = getrlimit(Resource::Nofile);
            }
        }
        if let Some(soft) = limit.current {
            return usize::try_from(soft / 4 * 3)
                .unwrap_or(65_536)
                .clamp(64, 65_536);
        }
        65_536
    }
    #[cfg(not(target_os = "linux"))]
    {
        768
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
