//! The audit record: one per request, from the gateway's API or the edge relay, and the
//! hash chain that makes the log tamper-evident.
//!
//! Each record carries the hash of its predecessor; its own hash covers that and every
//! field of the record, so editing, reordering or deleting a record breaks the chain at
//! that point. `hash = sha256(prev_hash ‖ 0x00 ‖ canonical_json(record))`, where the
//! canonical JSON is serde's rendering of [`AuditEntry`] (fields in declaration order).
//!
//! ## The seal (optional)
//!
//! The plain chain shows edits, deletions and reordering *inside* the chain, but anyone
//! who can write the database can delete its tail and point the head at the new last
//! record: what remains is a valid, shorter chain. With a key (`governance.audit.hmac_key`)
//! the writer also seals the chain with HMAC-SHA256, which only a holder of the key can
//! compute. The plain chain is unchanged, so a verifier without the key still checks it.
//!
//! * The **head** carries `HMAC(key, "sluice-audit-head-v1" ‖ 0 ‖ seq ‖ hash ‖ sealed_from)`
//!   (integers as 8 big-endian bytes), rewritten by every commit. The last record's hash
//!   covers every record before it, so a valid head MAC vouches for the whole chain; a
//!   truncated tail needs a new head, and a new head needs the key.
//! * Every **record** carries `HMAC(key, "sluice-audit-record-v1" ‖ 0 ‖ seq ‖ hash)`. Given
//!   the head MAC it adds no integrity, but it says how far the chain is authentic when
//!   the head is not (after a truncation, the records up to the cut still verify), and a
//!   record MAC stripped inside the seal is itself a finding. The two are domain-separated:
//!   a record's MAC cannot stand in for a head MAC at that record, which is exactly what a
//!   truncation would need.
//! * `sealed_from` is the first record the current seal covers: 1 on a chain keyed from
//!   the start, the next record when a key is configured on an existing chain. The writer
//!   never reseals over a head it cannot verify (that would launder a truncation made while
//!   the gateway was stopped): it starts a new seal after it, and since records before the
//!   new `sealed_from` then carry valid MACs, [`ChainVerifier::finish`] reports the restart
//!   ([`ChainBreak::SealRestarted`]).
//!
//! What a MAC cannot show: a database rolled back to an exact earlier state (a backup, or a
//! head and its MAC saved earlier) or emptied entirely, and a chain whose every MAC was
//! stripped before a restart (it then looks keyed only from that restart on, which
//! `audit verify` prints as `sealed_from`). Comparing the head `audit verify` prints with
//! one kept elsewhere covers those.

use hmac::{Hmac, KeyInit, Mac};
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
    /// Who named `app`: `client` when the caller's own `x-sluice-app` header did (an
    /// assertion, not a fact: any client can send any name); `device` when the edge
    /// agent's authenticated device channel did. Absent when no app is recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_source: Option<String>,
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

/// Parses lowercase or uppercase hex; `None` if it is not hex of whole bytes.
fn from_hex(hex: &str) -> Option<Vec<u8>> {
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let bytes = hex.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    bytes
        .chunks_exact(2)
        .map(|p| Some(digit(p[0])? << 4 | digit(p[1])?))
        .collect()
}

/// The shortest key accepted: HMAC-SHA256 gains nothing from more than 64 bytes, and a
/// key shorter than the hash (32 bytes) is weaker than the chain it seals.
pub const MIN_KEY_BYTES: usize = 32;

const RECORD_DOMAIN: &[u8] = b"sluice-audit-record-v1\0";
const HEAD_DOMAIN: &[u8] = b"sluice-audit-head-v1\0";

/// The key that seals the chain (see the module docs). Holds the keyed HMAC state, so
/// each MAC costs two SHA-256 blocks, not a fresh key schedule; never prints.
#[derive(Clone)]
pub struct ChainKey(Hmac<Sha256>);

impl std::fmt::Debug for ChainKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChainKey(****)")
    }
}

impl ChainKey {
    /// A key from secret bytes (at least [`MIN_KEY_BYTES`]). The error never contains them.
    pub fn new(secret: &[u8]) -> Result<Self, String> {
        if secret.len() < MIN_KEY_BYTES {
            return Err(format!(
                "is {} bytes long; an audit key needs at least {MIN_KEY_BYTES} (e.g. the output of `openssl rand -hex 32`)",
                secret.len()
            ));
        }
        Hmac::<Sha256>::new_from_slice(secret)
            .map(ChainKey)
            .map_err(|_| "cannot be used as an HMAC-SHA256 key".to_owned())
    }

    fn record_state(&self, seq: u64, hash: &str) -> Hmac<Sha256> {
        let mut mac = self.0.clone();
        mac.update(RECORD_DOMAIN);
        mac.update(&seq.to_be_bytes());
        mac.update(hash.as_bytes());
        mac
    }

    fn head_state(&self, seq: u64, hash: &str, sealed_from: u64) -> Hmac<Sha256> {
        let mut mac = self.0.clone();
        mac.update(HEAD_DOMAIN);
        mac.update(&seq.to_be_bytes());
        mac.update(hash.as_bytes());
        mac.update(&sealed_from.to_be_bytes());
        mac
    }

    /// The MAC stored with record `seq` whose chain hash is `hash`, in lowercase hex.
    pub fn record_mac(&self, seq: u64, hash: &str) -> String {
        to_hex(&self.record_state(seq, hash).finalize().into_bytes())
    }

    /// The MAC stored with the head `(seq, hash)` of a seal that starts at `sealed_from`.
    pub fn head_mac(&self, seq: u64, hash: &str, sealed_from: u64) -> String {
        to_hex(
            &self
                .head_state(seq, hash, sealed_from)
                .finalize()
                .into_bytes(),
        )
    }

    /// Whether `mac` is record `seq`'s MAC (compared in constant time).
    pub fn record_mac_matches(&self, seq: u64, hash: &str, mac: &str) -> bool {
        from_hex(mac).is_some_and(|tag| self.record_state(seq, hash).verify_slice(&tag).is_ok())
    }

    /// Whether `mac` is the head MAC of `(seq, hash, sealed_from)` (constant time).
    pub fn head_mac_matches(&self, seq: u64, hash: &str, sealed_from: u64, mac: &str) -> bool {
        from_hex(mac).is_some_and(|tag| {
            self.head_state(seq, hash, sealed_from)
                .verify_slice(&tag)
                .is_ok()
        })
    }
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
    /// The chain and the recorded head disagree: the tail was deleted (head left as it
    /// was) or the head was rewritten.
    HeadMismatch { chain_end: u64, head_seq: u64 },
    /// The record's MAC does not match (keyed check).
    Forged { seq: u64 },
    /// The record has no MAC although the current seal covers it (keyed check).
    Unsealed { seq: u64, sealed_from: u64 },
    /// The head has no MAC (keyed check); `last_sealed` is the last record whose MAC
    /// matched, 0 if none.
    HeadUnsealed { last_sealed: u64 },
    /// The head's MAC does not match (keyed check).
    HeadForged { last_sealed: u64 },
    /// The seal starts at `sealed_from`, yet record `last_sealed_before` before it carries
    /// a valid MAC: the writer found a head it could not verify when it started, and
    /// started a new seal rather than vouch for it (keyed check).
    SealRestarted {
        sealed_from: u64,
        last_sealed_before: u64,
    },
}

/// `"; the last record with a valid MAC is N"`, or nothing when none is.
fn last_sealed_note(last_sealed: u64) -> String {
    if last_sealed == 0 {
        String::new()
    } else {
        format!(" (the last record with a valid MAC is {last_sealed})")
    }
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
            ChainBreak::HeadMismatch {
                chain_end,
                head_seq,
            } => write!(
                f,
                "the chain ends at record {chain_end} but the recorded head is record {head_seq}: records at the end were deleted or the head was altered"
            ),
            ChainBreak::Forged { seq } => write!(
                f,
                "record {seq}'s MAC does not match: it was written by someone without the audit key (or sealed under another key)"
            ),
            ChainBreak::Unsealed { seq, sealed_from } => write!(
                f,
                "record {seq} carries no MAC although the seal covers every record from {sealed_from} on: its MAC was removed"
            ),
            ChainBreak::HeadUnsealed { last_sealed } => write!(
                f,
                "the chain head carries no MAC although an audit key is set: the head was rewritten, and records after it may have been deleted{}; or the key was configured after the last write (start the gateway once with the key to seal the chain)",
                last_sealed_note(*last_sealed)
            ),
            ChainBreak::HeadForged { last_sealed } => write!(
                f,
                "the chain head's MAC does not match: the head was rewritten by someone without the audit key, and records after it may have been deleted{}; or the chain was sealed under another key",
                last_sealed_note(*last_sealed)
            ),
            ChainBreak::SealRestarted {
                sealed_from,
                last_sealed_before,
            } => write!(
                f,
                "the seal restarts at record {sealed_from} although record {last_sealed_before} before it was sealed: when the gateway started, the head did not verify, so records after {last_sealed_before} may have been deleted (and the head rewritten) while it was stopped; or the audit key was changed, or removed for a while"
            ),
        }
    }
}

/// Incremental verifier: feed records in `seq` order, then the head to [`finish`].
/// Without a key it checks the plain chain and counts the records that carry a MAC; with
/// one it checks every MAC too (see the module docs).
///
/// [`finish`]: ChainVerifier::finish
#[derive(Debug, Clone)]
pub struct ChainVerifier {
    next_seq: u64,
    prev_hash: String,
    pub checked: u64,
    key: Option<ChainKey>,
    /// The first record the head's seal covers (`u64::MAX` when unknown or unkeyed).
    sealed_from: u64,
    /// Records that carry a MAC (matched, when there is a key).
    pub sealed: u64,
    /// The last record whose MAC matched, 0 if none.
    last_sealed: u64,
    /// The last record before `sealed_from` whose MAC matched, 0 if none.
    last_sealed_before: u64,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        ChainVerifier {
            next_seq: 1,
            prev_hash: GENESIS_HASH.to_owned(),
            checked: 0,
            key: None,
            sealed_from: u64::MAX,
            sealed: 0,
            last_sealed: 0,
            last_sealed_before: 0,
        }
    }
}

impl ChainVerifier {
    /// A verifier that checks MACs with `key`. `sealed_from` is the head's (read before
    /// the walk; `None` if the head has no seal): records from there on must carry a MAC.
    pub fn keyed(key: ChainKey, sealed_from: Option<u64>) -> Self {
        ChainVerifier {
            key: Some(key),
            sealed_from: sealed_from.unwrap_or(u64::MAX),
            ..ChainVerifier::default()
        }
    }

    /// Whether MACs are checked.
    pub fn is_keyed(&self) -> bool {
        self.key.is_some()
    }

    /// Checks one record given its stored canonical bytes (plain chain only).
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

    /// Checks one record and its MAC (`None`: the record has none).
    pub fn check_sealed(
        &mut self,
        seq: u64,
        prev_hash: &str,
        canonical: &[u8],
        hash: &str,
        mac: Option<&str>,
    ) -> Result<(), ChainBreak> {
        self.check(seq, prev_hash, canonical, hash)?;
        let Some(key) = &self.key else {
            self.sealed += u64::from(mac.is_some());
            return Ok(());
        };
        match mac {
            Some(mac) if key.record_mac_matches(seq, hash, mac) => {
                self.sealed += 1;
                self.last_sealed = seq;
                if seq < self.sealed_from {
                    self.last_sealed_before = seq;
                }
                Ok(())
            }
            Some(_) => Err(ChainBreak::Forged { seq }),
            None if seq >= self.sealed_from => Err(ChainBreak::Unsealed {
                seq,
                sealed_from: self.sealed_from,
            }),
            None => Ok(()),
        }
    }

    /// Checks the recorded head against the chain walked so far: it must be the last
    /// record, and with a key its seal (`(mac, sealed_from)`) must match and start where
    /// the walk was told it does.
    pub fn finish(
        &self,
        head_seq: u64,
        head_hash: &str,
        head_seal: Option<(&str, u64)>,
    ) -> Result<(), ChainBreak> {
        if head_seq != self.checked || head_hash != self.head() {
            return Err(ChainBreak::HeadMismatch {
                chain_end: self.checked,
                head_seq,
            });
        }
        let Some(key) = &self.key else {
            return Ok(());
        };
        if head_seq == 0 {
            return Ok(());
        }
        let last_sealed = self.last_sealed;
        let Some((mac, sealed_from)) = head_seal else {
            return Err(ChainBreak::HeadUnsealed { last_sealed });
        };
        if sealed_from != self.sealed_from
            || !key.head_mac_matches(head_seq, head_hash, sealed_from, mac)
        {
            return Err(ChainBreak::HeadForged { last_sealed });
        }
        if self.last_sealed_before > 0 {
            return Err(ChainBreak::SealRestarted {
                sealed_from,
                last_sealed_before: self.last_sealed_before,
            });
        }
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

    fn key(fill: u8) -> ChainKey {
        ChainKey::new(&[fill; 32]).unwrap()
    }

    /// `(seq, prev_hash, canonical, hash, mac)`.
    type SealedRow = (u64, String, Vec<u8>, String, Option<String>);

    /// A chain of `n` records, sealed with `key` from `sealed_from` on.
    fn sealed_chain(n: u64, key: &ChainKey, sealed_from: u64) -> Vec<SealedRow> {
        chain(n)
            .into_iter()
            .map(|(seq, prev, bytes, hash)| {
                let mac = (seq >= sealed_from).then(|| key.record_mac(seq, &hash));
                (seq, prev, bytes, hash, mac)
            })
            .collect()
    }

    fn walk(v: &mut ChainVerifier, rows: &[SealedRow]) -> Result<(), ChainBreak> {
        for (seq, prev, bytes, hash, mac) in rows {
            v.check_sealed(*seq, prev, bytes, hash, mac.as_deref())?;
        }
        Ok(())
    }

    #[test]
    fn keyed_chain_verifies_with_its_head_seal() {
        let k = key(7);
        let rows = sealed_chain(5, &k, 1);
        let (_, _, _, head, _) = rows[4].clone();
        let mut v = ChainVerifier::keyed(k.clone(), Some(1));
        walk(&mut v, &rows).unwrap();
        v.finish(5, &head, Some((&k.head_mac(5, &head, 1), 1)))
            .unwrap();
        assert_eq!((v.checked, v.sealed), (5, 5));
    }

    /// The review finding: delete the tail, point the head at the new last record. The
    /// plain chain cannot tell; the seal can, whatever the rewritten head carries.
    #[test]
    fn truncated_tail_and_rewritten_head_fail_only_the_keyed_check() {
        let k = key(7);
        let mut rows = sealed_chain(6, &k, 1);
        rows.truncate(4);
        let (_, _, _, head4, mac4) = rows[3].clone();

        let mut plain = ChainVerifier::default();
        walk(&mut plain, &rows).unwrap();
        plain.finish(4, &head4, None).unwrap();
        assert_eq!(plain.sealed, 4, "unkeyed: MACs are counted, not checked");

        let forged_heads = [
            None,
            // The record MAC of the new last record: domain separation refuses it.
            Some(mac4.clone().unwrap()),
            // A head MAC under another key.
            Some(key(8).head_mac(4, &head4, 1)),
        ];
        for forged in forged_heads {
            let mut v = ChainVerifier::keyed(k.clone(), forged.as_ref().map(|_| 1));
            walk(&mut v, &rows).unwrap();
            let err = v
                .finish(4, &head4, forged.as_deref().map(|m| (m, 1)))
                .unwrap_err();
            assert!(
                matches!(
                    err,
                    ChainBreak::HeadUnsealed { last_sealed: 4 }
                        | ChainBreak::HeadForged { last_sealed: 4 }
                ),
                "{err:?}"
            );
            assert!(
                err.to_string()
                    .contains("the last record with a valid MAC is 4"),
                "{err}"
            );
        }
    }

    #[test]
    fn forged_stripped_and_restarted_seals_are_named() {
        let k = key(7);
        // A record rewritten with a MAC under another key.
        let mut rows = sealed_chain(3, &k, 1);
        rows[1].4 = Some(key(8).record_mac(2, &rows[1].3));
        let mut v = ChainVerifier::keyed(k.clone(), Some(1));
        assert_eq!(walk(&mut v, &rows), Err(ChainBreak::Forged { seq: 2 }));

        // A MAC removed inside the seal.
        let mut rows = sealed_chain(3, &k, 1);
        rows[2].4 = None;
        let mut v = ChainVerifier::keyed(k.clone(), Some(1));
        assert_eq!(
            walk(&mut v, &rows),
            Err(ChainBreak::Unsealed {
                seq: 3,
                sealed_from: 1
            })
        );

        // Records 1..=3 written before the key was configured: a seal from 4 is fine.
        let rows = sealed_chain(5, &k, 4);
        let head = rows[4].3.clone();
        let mut v = ChainVerifier::keyed(k.clone(), Some(4));
        walk(&mut v, &rows).unwrap();
        v.finish(5, &head, Some((&k.head_mac(5, &head, 4), 4)))
            .unwrap();

        // But sealed records before the seal's start mean it was restarted.
        let rows = sealed_chain(5, &k, 1);
        let mut v = ChainVerifier::keyed(k.clone(), Some(4));
        walk(&mut v, &rows).unwrap();
        let err = v
            .finish(5, &head, Some((&k.head_mac(5, &head, 4), 4)))
            .unwrap_err();
        assert_eq!(
            err,
            ChainBreak::SealRestarted {
                sealed_from: 4,
                last_sealed_before: 3
            }
        );
    }

    #[test]
    fn chain_keys_are_long_and_never_print() {
        let err = ChainKey::new(b"short-key-value").unwrap_err();
        assert!(err.contains("at least 32"), "{err}");
        assert!(!err.contains("short-key-value"));
        assert_eq!(format!("{:?}", key(1)), "ChainKey(****)");
        let mac = key(1).record_mac(1, GENESIS_HASH);
        assert!(key(1).record_mac_matches(1, GENESIS_HASH, &mac));
        assert!(!key(1).record_mac_matches(2, GENESIS_HASH, &mac));
        assert!(!key(1).record_mac_matches(1, GENESIS_HASH, "not hex"));
    }
}
