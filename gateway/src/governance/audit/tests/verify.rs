//! `audit verify`'s report: its JSON is the admin API's body, unchanged by the move
//! from `serde_json::Value` to a typed report.

use serde_json::{Value, json};

use super::seal::truncated_sealed_chain;
use super::support::{config, sql, start, stop, submit_committed, verify};
use crate::config::Durability;
use crate::governance::audit::bench::sample_entry;
use crate::governance::audit::verify::{MacReport, VerifyReport};

/// The report as the admin API built it before it was typed (`json!` into a `Value`,
/// copied from the old `api::admin::verify_chain`).
fn untyped(report: &VerifyReport) -> Value {
    let mac = match &report.mac {
        MacReport::Checked {
            sealed_records,
            sealed_from,
        } => json!({
            "checked": true,
            "sealed_records": sealed_records,
            "sealed_from": sealed_from,
        }),
        MacReport::NotChecked { records_with_mac } => json!({
            "checked": false,
            "records_with_mac": records_with_mac,
            "note": "no audit key (governance.audit.hmac_key) given: MACs were not checked, so a deleted tail with a rewritten head would go unnoticed",
        }),
    };
    let mut old = json!({
        "ok": report.ok,
        "checked": report.checked,
        "mac": mac,
        "duplicates": {
            "request_ids": report.duplicates.request_ids,
            "extra_records": report.duplicates.extra_records,
            "examples": report.duplicates.examples,
        },
    });
    match (&report.error, &report.head, report.head_seq) {
        (Some(error), _, _) => old["error"] = json!(error),
        (None, Some(head), Some(seq)) => {
            old["head"] = json!(head);
            old["head_seq"] = json!(seq);
        }
        other => panic!("a report has an error or a head: {other:?}"),
    }
    old
}

fn assert_same_bytes(report: &VerifyReport) {
    let typed = serde_json::to_string(report).unwrap();
    let old = serde_json::to_string(&untyped(report)).unwrap();
    assert_eq!(typed, old);
}

/// The admin API's `GET /audit/verify` body is byte for byte what it was, for an intact
/// unkeyed chain, a broken sealed one and a sealed one that verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_serializes_as_the_untyped_report_did() {
    let dir = tempfile::tempdir().unwrap();
    let (_, store, sink, tasks) = start(&dir, config(&dir, Durability::Strict, 0)).await;
    for n in 0..3 {
        submit_committed(&sink, sample_entry(n)).await;
    }
    stop(sink, tasks).await;
    let report = verify(store.as_ref()).await;
    assert!(report.ok, "{report:?}");
    assert_same_bytes(&report);
    let head = report.head.clone().unwrap();
    assert_eq!(
        serde_json::to_string(&report).unwrap(),
        format!(
            "{{\"checked\":3,\"duplicates\":{{\"examples\":[],\"extra_records\":0,\"request_ids\":0}},\"head\":\"{head}\",\"head_seq\":3,\"mac\":{{\"checked\":false,\"note\":\"{}\",\"records_with_mac\":0}},\"ok\":true}}",
            MacReport::NOT_CHECKED_NOTE
        )
    );

    let dir = tempfile::tempdir().unwrap();
    let (_, store) = truncated_sealed_chain(&dir).await;
    let report = verify(store.as_ref()).await;
    assert!(!report.ok && report.head.is_none(), "{report:?}");
    assert!(matches!(report.mac, MacReport::Checked { .. }));
    assert_same_bytes(&report);
    store.set_audit_key(None);
    assert_same_bytes(&verify(store.as_ref()).await);
}

/// A record marked as a duplicate although no earlier record has its request id hides
/// its spend from budgets: the chain itself verifies, the report does not. (The mark is
/// only consistent on a record from before migration 3, `imported` NULL; on a newer one
/// the verifier already reports the record as edited.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_mark_without_an_original_breaks_the_report() {
    let dir = tempfile::tempdir().unwrap();
    let (sqlite, store, sink, tasks) = start(&dir, config(&dir, Durability::Strict, 0)).await;
    for n in 0..3 {
        submit_committed(&sink, sample_entry(n)).await;
    }
    stop(sink, tasks).await;
    sql(
        &sqlite,
        "UPDATE audit SET dup_seq = seq, imported = NULL WHERE seq = 1",
    )
    .await;
    let report = verify(store.as_ref()).await;
    assert!(!report.ok, "{report:?}");
    assert_eq!(report.checked, 3, "{report:?}");
    assert!(report.head.is_none() && report.head_seq.is_none());
    let error = report.error.as_deref().unwrap();
    assert!(
        error.contains("record 1 is marked as a duplicate"),
        "{error}"
    );
    assert_same_bytes(&report);
}
