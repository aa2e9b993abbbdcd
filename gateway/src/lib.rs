//! The Sluice gateway: an OpenAI- and Anthropic-compatible API in front of many model
//! providers, with routing, fallbacks, retries, load balancing, translation between API
//! shapes, and governance (virtual keys, budgets, limits, guardrails, audit). `main.rs`
//! is a thin CLI over this library.
//!
//! Layers, top to bottom. A module imports only from layers below its own; modules on
//! one line do not import each other (`tests/tests/layers.rs` checks both, and that no
//! module anywhere is part of a cycle):
//!
//! ```text
//! cli                 | the command line: serve, check-config, audit tools, admin commands
//! server              | building, binding and serving the application
//! api                 | HTTP surfaces (/v1, /anthropic, /api/v1 admin), their shared state
//! engine              | one request: guardrails, plan, admission, attempts, the answer
//! guardrails          | the gateway side of the shared guardrail engine
//! governance          | keys, budgets, limits, the store and the audit log
//! routing             | aliases and routing plans over the providers
//! providers           | one upstream each: its protocol (one file each), key health, limits
//! metrics             | Prometheus counters and histograms
//! record              | what a request did (attempts, usage, cost, guardrail decisions)
//! pricing request     | the price table; the client request as the gateway holds it
//! config conn_guard   | the configuration schema and its checks; connection watchdogs
//! secret              | secret references, resolved and kept out of output
//! env error           | the process environment behind a trait; the gateway's error type
//! ```
//!
//! A request walks down once: `api` parses it into a [`request::Inbound`], the
//! [`engine`] asks [`routing`] for a plan, [`governance`] to admit it and the
//! [`providers`] for each attempt, then finishes its [`record::RequestRecord`] through
//! [`governance::Governance::finish`] and [`metrics`] on the way back up.

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
pub mod record;
pub mod request;
pub mod routing;
pub mod secret;
pub mod server;
