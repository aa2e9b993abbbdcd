//! Support code for Sluice's end-to-end tests: the mock model provider, and helpers that
//! start real binaries on port 0 and wait for them to be ready.

pub mod harness;
pub mod mock;
pub mod net;
