//! `audit verify`: walks the stored chain and reports the first broken or missing
//! record, whether MACs were checked, and request ids recorded more than once. The CLI
//! prints the report; the admin API returns it as JSON.

use serde::Serialize;
use serde::ser::SerializeStruct;

use sluice_shared::audit::{ChainKey, ChainVerifier};

use crate::governance::store::{Store, StoreError};

/// What `audit verify` found.
///
/// Serialized as the admin API's `GET /audit/verify` body. The fields are declared in
/// alphabetical order on purpose: the report used to be a `serde_json::Value`, whose
/// keys serialize sorted, and the JSON stays byte for byte what it was.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VerifyReport {
    /// Records verified, in order from the first, before the walk ended or broke.
    pub checked: u64,
    pub duplicates: DuplicateSummary,
    /// Why the chain is not intact (absent when it is).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The verified head's hash (absent when the chain is broken).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub head: Option<String>,
    /// The verified head's record (absent when the chain is broken).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub head_seq: Option<u64>,
    pub mac: MacReport,
    /// The chain and its head verify, and no record is hidden from spend.
    pub ok: bool,
}

/// Request ids recorded more than once (see
/// [`AuditDuplicates`](crate::governance::store::AuditDuplicates)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DuplicateSummary {
    /// A few of those request ids, oldest first.
    pub examples: Vec<String>,
    /// Records beyond the first of their request id.
    pub extra_records: u64,
    /// Request ids with more than one record.
    pub request_ids: u64,
}

/// Whether MACs were checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MacReport {
    /// With the key the store holds (`governance.audit.hmac_key`).
    Checked {
        /// Records whose MAC matched.
        sealed_records: u64,
        /// The first record the head's seal covers (`None`: the head has no seal).
        sealed_from: Option<u64>,
    },
    /// No key: a deleted tail with a rewritten head would go unnoticed.
    NotChecked {
        /// Records that carry a MAC all the same.
        records_with_mac: u64,
    },
}

impl MacReport {
    /// The admin API's explanation when MACs were not checked.
    pub const NOT_CHECKED_NOTE: &'static str = "no audit key (governance.audit.hmac_key) given: MACs were not checked, so a deleted tail with a rewritten head would go unnoticed";
}

impl Serialize for MacReport {
    /// `{"checked": true, "sealed_from", "sealed_records"}` or `{"checked": false,
    /// "note", "records_with_mac"}`, keys sorted as before (see [`VerifyReport`]).
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("MacReport", 3)?;
        match self {
            MacReport::Checked {
                sealed_records,
                sealed_from,
            } => {
                s.serialize_field("checked", &true)?;
                s.serialize_field("sealed_from", sealed_from)?;
                s.serialize_field("sealed_records", sealed_records)?;
            }
            MacReport::NotChecked { records_with_mac } => {
                s.serialize_field("checked", &false)?;
                s.serialize_field("note", Self::NOT_CHECKED_NOTE)?;
                s.serialize_field("records_with_mac", records_with_mac)?;
            }
        }
        s.end()
    }
}

/// Walks the whole chain; the report names the first broken or missing record, whether
/// MACs were checked (with the key the store holds, `governance.audit.hmac_key`), and
/// request ids recorded more than once. `Err` only when the store cannot be read.
pub async fn verify_chain(store: &dyn Store) -> Result<VerifyReport, StoreError> {
    // The seal's start is read before the walk: records from there on must carry a MAC.
    let start = store.audit_head().await?;
    let mut verifier = match store.audit_key() {
        Some(key) => ChainVerifier::keyed(
            ChainKey::clone(&key),
            start.seal.as_ref().map(|s| s.sealed_from),
        ),
        None => ChainVerifier::default(),
    };
    let mut after = 0;
    let mut rounds = 0;
    let outcome = 'verify: loop {
        loop {
            let rows = store.audit_chain(after, 2000).await?;
            if rows.is_empty() {
                break;
            }
            for row in &rows {
                if let Err(e) = verifier.check_sealed(
                    row.seq,
                    &row.prev_hash,
                    &row.canonical,
                    &row.hash,
                    row.mac.as_deref(),
                ) {
                    break 'verify Err(e);
                }
                after = row.seq;
            }
        }
        let head = store.audit_head().await?;
        rounds += 1;
        // A live writer that committed after the walk ended moved the head past it: walk
        // on to the new head (a few rounds, then whatever is missing is missing).
        if head.seq <= verifier.checked || rounds == 3 {
            let seal = head.seal.as_ref().map(|s| (s.mac.as_str(), s.sealed_from));
            break verifier.finish(head.seq, &head.hash, seal).map(|()| head);
        }
    };
    let dups = store.audit_duplicates(10).await?;
    let mac = if verifier.is_keyed() {
        MacReport::Checked {
            sealed_records: verifier.sealed,
            sealed_from: start.seal.as_ref().map(|s| s.sealed_from),
        }
    } else {
        MacReport::NotChecked {
            records_with_mac: verifier.sealed,
        }
    };
    let mut report = VerifyReport {
        checked: verifier.checked,
        duplicates: DuplicateSummary {
            examples: dups.examples,
            extra_records: dups.extra_records,
            request_ids: dups.request_ids,
        },
        error: None,
        head: None,
        head_seq: None,
        mac,
        ok: outcome.is_ok() && dups.unmatched.is_empty(),
    };
    match (outcome, dups.unmatched.first()) {
        (Err(e), _) => report.error = Some(e.to_string()),
        (Ok(_), Some(unmatched)) => {
            report.error = Some(format!(
                "record {unmatched} is marked as a duplicate (left out of spend) but no earlier record has its request id: the mark was edited to hide spend from budgets"
            ));
        }
        (Ok(head), None) => {
            report.head = Some(head.hash);
            report.head_seq = Some(head.seq);
        }
    }
    Ok(report)
}
