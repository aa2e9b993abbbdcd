//! Types and engines that the Sluice gateway and edge agent share.
//!
//! * [`openai`], [`anthropic`], [`gemini`]: the wire types of the APIs Sluice speaks and
//!   reaches. Fields Sluice does not interpret are kept in an `extra` map so that a
//!   request passes through without losing what the client sent.
//! * [`sse`]: incremental Server-Sent Events framing, tolerant of `\n`, `\r\n` and `\r`.
//! * [`translate`]: typed translation between the three shapes, for requests, complete
//!   responses and streams, so one client API can reach any provider.
//!
//! * [`audit`]: the audit record both sides emit, and its hash chain.
//!
//! No I/O lives here.

pub mod anthropic;
pub mod audit;
pub mod gemini;
pub mod guardrails;
pub mod net;
pub mod openai;
pub mod sse;
pub mod translate;

/// Fields of a wire object that Sluice does not model, kept verbatim.
pub type Extra = serde_json::Map<String, serde_json::Value>;
