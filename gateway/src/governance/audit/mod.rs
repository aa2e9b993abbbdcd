//! The audit writer: records go through a bounded channel to one batch writer that
//! chains them (hash of the predecessor) and appends them to the store in transactions.
//! The writer runs on its own thread (`sluice-audit`) with its own synchronous database
//! handle ([`AuditAppender`](crate::governance::store::AuditAppender)): chaining and the transaction never occupy a request
//! worker, and a batch costs one wake-up of one thread.
//!
//! * The request path never waits, never takes a lock and never touches a file: it does
//!   a `try_send`. When the channel is full, the record goes (another `try_send`) to a
//!   second bounded queue of the same size, drained by the overflow thread
//!   (`sluice-audit-spill`), which appends it to a local spill file and counts it in
//!   `sluice_audit_spilled_total`; the writer imports spill files (oldest first)
//!   whenever it has caught up, at start, as soon as something is spilled while it is
//!   idle, and every second while an import is still owed (one that failed is retried). A record is only ever lost if both queues
//!   refuse it, or the spill file does — then it is counted in `sluice_audit_lost_total`
//!   and logged at error level (one line per second at most, with the count).
//! * `strict` durability: a response completes only once its record is durable, or it
//!   fails. Each record carries an acknowledgement ([`AuditAck`]) that the writer
//!   answers `Ok` after its batch has committed (group commit, `synchronous=FULL`). If
//!   the database refuses the batch, the writer appends it to the spill file and fsyncs
//!   it (and its directory when new) before answering `Ok`; if that fails too, the
//!   answer is an [`AuditError`], and so it is for a record neither queue takes. A full
//!   channel makes the record wait for room (in a task on the tracker) instead of
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
//! * Spill files, like the database, are created 0600 (owner only) whatever the umask,
//!   in a directory created 0700 if it is missing.
//! * Shutdown: the writer closes and drains the channel, then stops the overflow thread
//!   (which drains its queue, including what the closed channel turned away) and waits
//!   for it, imports the spill files, logs the head it leaves (a checkpoint to compare
//!   `audit verify`'s head with), then exits. A record submitted after both queues have
//!   closed is lost (strict: its acknowledgement fails).

mod bench;

mod job;
mod loss;
mod overflow;
mod sink;
mod spill;
#[cfg(test)]
mod tests;
mod verify;
mod writer;

pub use crate::config::{AuditConfig, Durability};
pub use bench::bench;
pub use job::{AuditAck, AuditError};
pub use sink::AuditSink;
pub use verify::{DuplicateSummary, MacReport, VerifyReport, verify_chain};
