//! Governance: virtual keys, the org → team → user/device → key hierarchy, budgets, rate
//! limits, cost and the audit log.
//!
//! Request path (nothing here awaits the database):
//! 1. [`Governance::authenticate`] reads the key from `Authorization: Bearer`,
//!    `x-api-key` or `x-sluice-key` and checks it against the in-memory
//!    [`PolicySnapshot`] (swapped whole after every admin change);
//! 2. [`Governance::admit`] filters the routing plan by the key's model policy, takes
//!    concurrency slots, checks RPM/TPM and budgets, and reserves the estimated cost;
//! 3. when the request ends, [`Governance::finish`] settles the reservation with the real
//!    cost, charges TPM, and queues the audit record for the batch writer.
//!
//! In `open` mode a request without a key is served (and recorded) without identity; a
//! request that presents a key is still held to it. In `enforce` mode a key is required.

mod admit;
pub mod audit;
pub mod budget;
mod counters;
mod finish;
pub mod keys;
pub mod limits;
pub mod model;
mod refusal;
mod scope;
mod service;
mod snapshot;
pub mod store;

pub use budget::now_ms;
pub use counters::Admission;
pub use service::{Governance, GovernanceSettings, presented_token};
pub use snapshot::{Identity, PolicySnapshot};
