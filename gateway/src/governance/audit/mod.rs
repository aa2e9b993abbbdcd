//! The audit writer: records go through a bounded channel to one batch writer that
//! chains them (hash of the predecessor) and appends them to the store in transactions.
//! The writer runs on its own thread (`sluice-audit`) with its own synchronous database
//! handle ([`AuditAppender`]): chaining and the transaction never occupy a request
//! worker, and a batch costs one wake-up of one thread.
//!
//! * The request path never waits (`try_send`). When the channel is full, the record is
//!   appended to a local spill file instead and counted in
//!   `sluice_audit_spilled_total`; the writer imports spill files (oldest first) whenever
//!   it has caught up, and at start. A record is only ever lost if both the channel and
//!   the spill file refuse it — then it is logged at error level and counted in
//!   `sluice_audit_lost_total`.
//! * `strict` durability: each record carries an acknowledgement that the writer sends
//!   after its batch has committed (group commit, `synchronous=FULL`); the response does
//!   not complete until then, and a full channel makes the request wait instead of
//!   spilling.
//! * Import is idempotent. A spill file is imported in chunks, one transaction each, and
//!   deleted after the last; a crash in between leaves it to be imported again. Every
//!   request has its own request id (a fresh UUIDv7, rejected requests included): before
//!   chaining a chunk, the import drops the records whose id is already stored, so a
//!   re-import adds nothing, takes no chain position and charges no budget twice. A
//!   spilled record never was written from the queue (it went to the spill file instead,
//!   or its batch failed), so only imported records need looking at: they alone are in
//!   a unique index on the request id, which also refuses a repeat the lookup missed (the
//!   batch is then filtered and retried). A write from the queue maintains no index for
//!   this, and is as fast as before.
//! * Sealing (optional, `hmac_key`): each record and the chain head also carry an
//!   HMAC-SHA256 under the key, so that `audit verify` with the key detects a truncated
//!   tail with a rewritten head, which the plain chain cannot (design and limits:
//!   `sluice_shared::audit`). Starting on a keyed chain, the writer checks the head's seal;
//!   one that does not verify is never resealed (that would launder a truncation made
//!   while the gateway was stopped): it is logged, and a new seal starts after it, which
//!   `audit verify` reports.
//! * Spill files, like the database, are created 0600 (owner only) whatever the umask.
//! * Shutdown: the writer drains the channel and the spill file, logs the head it leaves
//!   (a checkpoint to compare `audit verify`'s head with), then exits.

mod bench;
mod config;
mod job;
mod sink;
mod spill;
#[cfg(test)]
mod tests;
mod verify;
mod writer;

pub use bench::bench;
pub use config::{AuditConfig, Durability};
pub use sink::AuditSink;
pub use verify::{DuplicateSummary, MacReport, VerifyReport, verify_chain};
