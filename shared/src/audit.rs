//! The audit record: one per request, from the gateway's API or the edge relay, and the
//! hash chain that makes the log tamper-evident.
//!
//! Each record carries the hash of its predecessor; its own hash covers that and every
//! field of the record, so editing, reordering or deleting a record breaks the chain at
//! that point. `hash = sha256(prev_hash ‖ 0x00 ‖ canonical_json(record))`, where the
//! canonical JSON is serde's rendering of [`AuditEntry`] (fields in declaration order).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The hash before the first record.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// How much of a request's content goes into its record (per virtual key).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContentLogging {
    /// Accounting only: who, which model, tokens, cost, status, timing.
    Off,
    /// Plus what describes the content without containing it: sizes, message count.
    #[default]
    Metadata,
    /// Plus the request and response bodies (capped).
    Full,
}

/// One attempt at a provider, as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditAttempt {
    pub provider: String,
    pub model: String,
    pub key_id: String,
    pub duration_ms: f64,
    pub outcome: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// A guardrail decision: which rule, what it did, how often. Never the matched text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditDecision {
    pub rule_id: String,
    pub action: String,
    pub count: u32,
    /// `input` (the request) or `output` (the answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<String>,
}

/// Everything recorded about one request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub request_id: String,
    /// Receipt time, Unix milliseconds.
    pub ts_ms: i64,
    /// `gateway` or `edge`.
    pub source: String,
    pub org_id: Option<String>,
    pub team_id: Option<String>,
    pub user_id: Option<String>,
    pub device_id: Option<String>,
    /// Public id of the virtual key (never its secret).
    pub key_id: Option<String>,
    pub app: Option<String>,
    pub process: Option<String>,
    pub api: String,
    pub requested_model: String,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub attempts: Vec<AuditAttempt>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_tokens: u64,
    /// Cost in millionths of a US dollar (integers keep the hash exact).
    pub cost_micros: u64,
    /// Whether a price was known for the model (unpriced requests cost 0).
    pub priced: bool,
    pub latency_ms: f64,
    pub status: u16,
    pub outcome: String,
    pub error: Option<String>,
    pub guardrails: Vec<AuditDecision>,
    pub content: ContentLogging,
    pub request_bytes: Option<u64>,
    pub response_bytes: Option<u64>,
    pub request_body: Option<String>,
    pub response_body: Option<String>,
}

/// A record as stored: its place in the chain, the entry, and the two hashes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub seq: u64,
    pub prev_hash: String,
    pub hash: String,
    #[serde(flatten)]
    pub entry: AuditEntry,
}

/// The canonical bytes an entry is hashed over.
pub fn canonical_json(entry: &AuditEntry) -> Vec<u8> {
    // Serializing a struct of plain fields cannot fail; an empty body would still chain.
    serde_json::to_vec(entry).unwrap_or_default()
}

/// `sha256(prev_hash ‖ 0x00 ‖ canonical)` in lowercase hex.
pub fn chain_hash(prev_hash: &str, canonical: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(prev_hash.as_bytes());
    h.update([0u8]);
    h.update(canonical);
    to_hex(&h.finalize())
}

/// Lowercase hex.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 0xf) as usize] as char);
    }
    out
}

/// SHA-256 in lowercase hex.
pub fn sha256_hex(data: &[u8]) -> String {
    to_hex(&Sha256::digest(data))
}

/// Where a chain check found a problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainBreak {
    /// A sequence number is missing: records were deleted.
    Missing { expected_seq: u64, found_seq: u64 },
    /// The record's `prev_hash` is not its predecessor's hash.
    Relinked { seq: u64 },
    /// The record's content does not match its hash: it was edited.
    Altered { seq: u64 },
}

impl std::fmt::Display for ChainBreak {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChainBreak::Missing {
                expected_seq,
                found_seq,
            } if found_seq > expected_seq => write!(
                f,
                "records {expected_seq}..={} are missing (deleted?): the next record is {found_seq}",
                found_seq - 1
            ),
            ChainBreak::Missing {
                expected_seq,
                found_seq,
            } => {
                write!(
                    f,
                    "expected record {expected_seq}, found {found_seq} (reordered?)"
                )
            }
            ChainBreak::Relinked { seq } => {
                write!(
                    f,
                    "record {seq} does not point at its predecessor's hash (inserted or replaced)"
                )
            }
            ChainBreak::Altered { seq } => {
                write!(f, "record {seq} does not match its hash (edited)")
            }
        }
    }
}

/// Incremental verifier: feed records in `seq` order.
#[derive(Debug, Clone)]
pub struct ChainVerifier {
    next_seq: u64,
    prev_hash: String,
    pub checked: u64,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        ChainVerifier {
            next_seq: 1,
            prev_hash: GENESIS_HASH.to_owned(),
            checked: 0,
        }
    }
}

impl ChainVerifier {
    /// Checks one record given its stored canonical bytes.
    pub fn check(
        &mut self,
        seq: u64,
        prev_hash: &str,
        canonical: &[u8],
        hash: &str,
    ) -> Result<(), ChainBreak> {
        if seq != self.next_seq {
            return Err(ChainBreak::Missing {
                expected_seq: self.next_seq,
                found_seq: seq,
            });
        }
        if prev_hash != self.prev_hash {
            return Err(ChainBreak::Relinked { seq });
        }
        if chain_hash(prev_hash, canonical) != hash {
            return Err(ChainBreak::Altered { seq });
        }
        self.next_seq += 1;
        self.prev_hash = hash.to_owned();
        self.checked += 1;
        Ok(())
    }

    /// The hash of the last record checked.
    pub fn head(&self) -> &str {
        &self.prev_hash
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: u64) -> Vec<(u64, String, Vec<u8>, String)> {
        let mut prev = GENESIS_HASH.to_owned();
        (1..=n)
            .map(|seq| {
                let entry = AuditEntry {
                    request_id: format!("r{seq}"),
                    status: 200,
                    ..Default::default()
                };
                let bytes = canonical_json(&entry);
                let hash = chain_hash(&prev, &bytes);
                let row = (seq, prev.clone(), bytes, hash.clone());
                prev = hash;
                row
            })
            .collect()
    }

    #[test]
    fn intact_chain_verifies() {
        let mut v = ChainVerifier::default();
        for (seq, prev, bytes, hash) in chain(5) {
            v.check(seq, &prev, &bytes, &hash).unwrap();
        }
        assert_eq!(v.checked, 5);
    }

    #[test]
    fn edits_deletions_and_relinks_are_named() {
        let rows = chain(4);
        let mut v = ChainVerifier::default();
        let (s, p, b, h) = &rows[0];
        v.check(*s, p, b, h).unwrap();
        let (s, p, _, h) = &rows[1];
        let edited = br#"{"request_id":"r2","status":500}"#;
        assert_eq!(
            v.check(*s, p, edited, h),
            Err(ChainBreak::Altered { seq: 2 })
        );

        let mut v = ChainVerifier::default();
        let (s, p, b, h) = &rows[0];
        v.check(*s, p, b, h).unwrap();
        let (s, p, b, h) = &rows[2];
        let err = v.check(*s, p, b, h).unwrap_err();
        assert_eq!(
            err,
            ChainBreak::Missing {
                expected_seq: 2,
                found_seq: 3
            }
        );
        assert!(err.to_string().contains("records 2..=2 are missing"));
    }
}
