//! What the store keeps for the audit log: chained records and their head, the
//! appender the audit writer owns, the rows the verifier reads, and audit queries.

use std::collections::HashMap;

use sluice_shared::audit::AuditEntry;

use super::error::StoreResult;

/// A record ready to store: its chain position, hashes, entry and the exact canonical
/// JSON its hash covers (serialized once, by the writer), and its MAC when the chain is
/// keyed (see `sluice_shared::audit`).
#[derive(Debug, Clone)]
pub struct ChainedRecord {
    pub seq: u64,
    pub prev_hash: String,
    pub hash: String,
    pub entry: AuditEntry,
    pub canonical: String,
    pub mac: Option<String>,
    /// Imported from a spill file (at most one such record per request id).
    pub imported: bool,
}

/// The head's seal on a keyed chain: its MAC and the first record the seal covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadSeal {
    pub mac: String,
    pub sealed_from: u64,
}

/// The chain head as stored: the last record's `(seq, hash)` (`(0, GENESIS_HASH)` for
/// an empty chain) and its seal, if it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditHead {
    pub seq: u64,
    pub hash: String,
    pub seal: Option<HeadSeal>,
}

/// Appends chained audit records; owned by the audit writer's thread, may block.
pub trait AuditAppender: Send {
    /// Appends records (already chained, consecutive `seq`) in one transaction and moves
    /// the chain head to the last one, with `seal` (`None`: the head is unsealed).
    /// [`StoreError::DuplicateRequestId`] if an imported record's request id already
    /// has an imported record; nothing is written then.
    fn append(&mut self, records: &[ChainedRecord], seal: Option<&HeadSeal>) -> StoreResult<()>;
    /// The head, and the MAC of the record it points at: what the writer checks when it
    /// starts on a keyed chain.
    fn head(&mut self) -> StoreResult<(AuditHead, Option<String>)>;
    /// Replaces the head's seal (the writer starting a new seal on an existing chain).
    fn seal_head(&mut self, seal: &HeadSeal) -> StoreResult<()>;
    /// The stored canonical JSON of the spill-imported record (or, on a database from
    /// before imports were idempotent, any record) for each `(request_id, ts_ms)` of
    /// `entries` that has one (the first, should an id have several). A spill import asks
    /// before chaining, so that what an interrupted import already committed is skipped
    /// without taking a chain position. Records written from the queue are not looked at:
    /// a spilled record never was one.
    fn stored_records(&mut self, entries: &[(&str, i64)]) -> StoreResult<HashMap<String, String>>;
}

/// A stored audit row as the verifier reads it.
#[derive(Debug, Clone)]
pub struct ChainRow {
    pub seq: u64,
    pub prev_hash: String,
    /// What the hash covers; replaced by bytes that cannot match when the row's indexed
    /// columns disagree with it.
    pub canonical: Vec<u8>,
    pub hash: String,
    pub mac: Option<String>,
}

/// Request ids recorded more than once (left by spill imports before imports skipped
/// what they had already committed). Only the first record of each counts toward spend
/// and usage (migration 3 marked the others).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditDuplicates {
    /// Request ids with more than one record.
    pub request_ids: u64,
    /// Records beyond the first of their request id.
    pub extra_records: u64,
    /// A few of those request ids, oldest first.
    pub examples: Vec<String>,
    /// Records marked as a duplicate (so left out of spend) although no earlier record
    /// has their request id: an edit that hides spend from budgets.
    pub unmatched: Vec<u64>,
}

/// Audit query filters; all optional, combined with AND.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditFilter {
    pub key_id: Option<String>,
    pub user_id: Option<String>,
    pub device_id: Option<String>,
    pub team_id: Option<String>,
    pub org_id: Option<String>,
    pub model: Option<String>,
    pub provider: Option<String>,
    pub app: Option<String>,
    pub status: Option<u16>,
    /// Unix ms, inclusive.
    pub from_ms: Option<i64>,
    /// Unix ms, exclusive.
    pub to_ms: Option<i64>,
    /// Return records with `seq` greater than this (the cursor from the previous page).
    pub after_seq: Option<u64>,
}

/// One row of a usage report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct UsageRow {
    pub group: String,
    /// `YYYY-MM-DD` (UTC) when grouped by day too.
    pub day: Option<String>,
    pub requests: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost_usd: f64,
}

/// What a usage report groups by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UsageGroup {
    Key,
    User,
    Device,
    Team,
    Org,
    Model,
    Provider,
    App,
}

impl UsageGroup {
    pub fn column(self) -> &'static str {
        match self {
            UsageGroup::Key => "key_id",
            UsageGroup::User => "user_id",
            UsageGroup::Device => "device_id",
            UsageGroup::Team => "team_id",
            UsageGroup::Org => "org_id",
            UsageGroup::Model => "model",
            UsageGroup::Provider => "provider",
            UsageGroup::App => "app",
        }
    }
}
