//! The optional HMAC seal (`hmac_key`).

use std::sync::Arc;

use super::support::{config, keyed, sql, start, stop, submit_committed, verify};
use crate::config::{AuditConfig, Durability};
use crate::governance::audit::bench::sample_entry;
use crate::governance::audit::verify::MacReport;
use crate::governance::store::Store;
use crate::governance::store::sqlite::SqliteStore;

/// Six sealed records, then the attack: the last two deleted and the head pointed at
/// record 4 (with record 4's own MAC, the best an attacker without the key has).
pub(super) async fn truncated_sealed_chain(
    dir: &tempfile::TempDir,
) -> (SqliteStore, Arc<dyn Store>) {
    let (sqlite, store, sink, tasks) = start(dir, keyed(dir)).await;
    for n in 0..6 {
        submit_committed(&sink, sample_entry(n)).await;
    }
    stop(sink, tasks).await;
    let report = verify(store.as_ref()).await;
    assert!(report.ok, "{report:?}");
    assert_eq!(
        report.mac,
        MacReport::Checked {
            sealed_records: 6,
            sealed_from: Some(1)
        },
        "{report:?}"
    );
    sql(
        &sqlite,
        "DELETE FROM audit WHERE seq > 4; \
         UPDATE audit_head SET seq = 4, hash = (SELECT hash FROM audit WHERE seq = 4), \
         mac = (SELECT mac FROM audit WHERE seq = 4)",
    )
    .await;
    (sqlite, store)
}

/// The review finding: a truncated tail with a rewritten head is a valid plain
/// chain; with the key, `audit verify` catches it, and without the key it says the
/// MACs were not checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hmac_key_detects_a_truncated_tail_and_rewritten_head() {
    let dir = tempfile::tempdir().unwrap();
    let (_, store) = truncated_sealed_chain(&dir).await;
    let report = verify(store.as_ref()).await;
    assert!(!report.ok, "{report:?}");
    let error = report.error.as_deref().unwrap();
    assert!(
        error.contains("head's MAC does not match")
            && error.contains("the last record with a valid MAC is 4"),
        "{error}"
    );

    store.set_audit_key(None);
    let report = verify(store.as_ref()).await;
    assert!(report.ok, "the plain chain is intact: {report:?}");
    assert_eq!(
        report.mac,
        MacReport::NotChecked {
            records_with_mac: 4
        },
        "{report:?}"
    );
}

/// Restarted on the truncated chain, the writer must not seal over it (which would
/// hide the truncation): it starts a new seal, and verify names the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_on_a_truncated_chain_does_not_reseal_it() {
    let dir = tempfile::tempdir().unwrap();
    let (_, _) = truncated_sealed_chain(&dir).await;
    let (_, store, sink, tasks) = start(&dir, keyed(&dir)).await;
    submit_committed(&sink, sample_entry(10)).await;
    stop(sink, tasks).await;
    let report = verify(store.as_ref()).await;
    assert!(!report.ok, "{report:?}");
    let error = report.error.as_deref().unwrap();
    assert!(
        error.contains("the seal restarts at record 5 although record 4 before it was sealed"),
        "{error}"
    );
}

/// A key configured on an existing chain seals it from the next record on; the
/// records before stay as they were and verify.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_configured_later_seals_the_chain_from_then_on() {
    let dir = tempfile::tempdir().unwrap();
    let (_, _, sink, tasks) = start(&dir, config(&dir, Durability::Strict, 0)).await;
    for n in 0..3 {
        submit_committed(&sink, sample_entry(n)).await;
    }
    stop(sink, tasks).await;
    let (_, store, sink, tasks) = start(&dir, keyed(&dir)).await;
    let report = verify(store.as_ref()).await;
    assert!(report.ok, "sealed at start: {report:?}");
    for n in 3..5 {
        submit_committed(&sink, sample_entry(n)).await;
    }
    stop(sink, tasks).await;
    let report = verify(store.as_ref()).await;
    assert!(report.ok, "{report:?}");
    assert_eq!(
        report.mac,
        MacReport::Checked {
            sealed_records: 2,
            sealed_from: Some(4)
        },
        "{report:?}"
    );
}

#[test]
fn hmac_key_is_a_secret_reference_of_at_least_32_bytes() {
    let env = crate::env::MapEnv::new([
        ("GOOD", "0123456789abcdef0123456789abcdef"),
        ("SHORT", "0123456789"),
    ]);
    let with = |r: &str| AuditConfig {
        hmac_key: Some(r.to_owned()),
        ..AuditConfig::default()
    };
    assert!(AuditConfig::default().chain_key(&env).unwrap().is_none());
    assert!(with("env:GOOD").chain_key(&env).unwrap().is_some());
    let err = with("pasted-0123456789abcdef0123456789abcdef")
        .chain_key(&env)
        .unwrap_err();
    assert!(
        err.starts_with("governance.audit.hmac_key") && !err.contains("pasted"),
        "{err}"
    );
    let err = with("env:SHORT").chain_key(&env).unwrap_err();
    assert!(
        err.contains("at least 32") && !err.contains("0123456789"),
        "{err}"
    );
    let parsed: AuditConfig = toml::from_str("hmac_key = \"env:GOOD\"").unwrap();
    assert_eq!(parsed.hmac_key.as_deref(), Some("env:GOOD"));
}
