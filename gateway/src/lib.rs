//! The Sluice gateway: an OpenAI- and Anthropic-compatible API in front of many model
//! providers, with routing, fallbacks, retries, load balancing and translation between
//! API shapes. `main.rs` is a thin CLI over this library.
//!
//! Modules by what they own: [`config`] (schema, validation, zero-config), [`api`] (HTTP
//! surfaces), [`engine`] (attempts, streaming, request records), [`routing`] (model
//! resolution, key health, concurrency limits, backoff), [`providers`] (per-protocol
//! requests and answers), [`governance`] (keys, budgets, audit), [`guardrails`] (the
//! shared guardrail engine on the request path), [`metrics`], [`server`].

pub mod api;
pub mod cli;
pub mod config;
pub mod conn_guard;
pub mod engine;
pub mod env;
pub mod error;
pub mod governance;
pub mod guardrails;
pub mod metrics;
pub mod pricing;
pub mod providers;
pub mod request;
pub mod record;
pub mod routing;
pub mod secret;
pub mod server;
