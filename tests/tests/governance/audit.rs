//! The audit log: its hash chain under tampering, and spilling to disk under overload.

use std::time::Duration;

use crate::{ADMIN, Gov};

#[tokio::test]
async fn audit_chain_verifies_and_names_tampering() {
    let g = Gov::start(&[], "mode = \"open\"\n").await;
    for _ in 0..5 {
        assert_eq!(
            g.chat("", "oa/gpt-4o-mini").await.status(),
            200,
            "open mode needs no key"
        );
    }
    g.audit_at_least(5).await;
    let (ok, out) = g.verify();
    assert!(ok, "{out}");
    assert!(out.contains("5 records"), "{out}");
    let (_, v) = g.admin(reqwest::Method::GET, "/audit/verify", None).await;
    assert_eq!(v["ok"], true);

    g.sql("UPDATE audit SET record = replace(record, '\"status\":200', '\"status\":500') WHERE seq = 3");
    let (ok, out) = g.verify();
    assert!(
        !ok && out.contains("record 3 does not match its hash"),
        "{out}"
    );
    g.sql("UPDATE audit SET status = 500 WHERE seq = 3");
    let (ok, out) = g.verify();
    assert!(!ok && out.contains("record 3"), "{out}");

    // Restore nothing; delete a middle record instead, on a fresh copy of the chain.
    let g = Gov::start(&[], "mode = \"open\"\n").await;
    for _ in 0..4 {
        g.chat("", "oa/gpt-4o-mini").await;
    }
    g.audit_at_least(4).await;
    g.sql("DELETE FROM audit WHERE seq = 2");
    let (ok, out) = g.verify();
    assert!(!ok && out.contains("records 2..=2 are missing"), "{out}");
    g.sql("DELETE FROM audit WHERE seq >= 2");
    let (ok, out) = g.verify();
    assert!(
        !ok && out.contains("records at the end were deleted"),
        "{out}"
    );

    // Export is JSON lines, one per record.
    let text =
        g.gw.http
            .get(g.gw.url("/api/v1/audit/export"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
    assert_eq!(text.lines().count(), 1);
}

#[tokio::test]
async fn overload_spills_to_disk_and_recovers_without_loss() {
    let g = Gov::start(
        &[],
        "mode = \"open\"\n[governance.audit]\nchannel_capacity = 2\nbatch_max = 1\n",
    )
    .await;
    // Warm up so the database exists, then hold its write lock from another process.
    g.chat("", "oa/gpt-4o-mini").await;
    g.audit_at_least(1).await;
    let mut locker = tokio::process::Command::new("python3")
        .args([
            "-c",
            "import sqlite3,sys; c=sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30); c.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); sys.stdin.read(); c.execute('ROLLBACK')",
        ])
        .arg(g.db())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use tokio::io::AsyncBufReadExt;
        let mut lines = tokio::io::BufReader::new(locker.stdout.take().unwrap()).lines();
        assert_eq!(lines.next_line().await.unwrap().as_deref(), Some("locked"));
    }
    // The database cannot take writes: requests are still served at once.
    for _ in 0..20 {
        let resp = tokio::time::timeout(Duration::from_secs(5), g.chat("", "oa/gpt-4o-mini"))
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    let metrics = g.gw.metrics().await.unwrap();
    let spilled: f64 = metrics
        .lines()
        .find(|l| l.starts_with("sluice_audit_spilled_total"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    assert!(spilled >= 15.0, "spilled {spilled}\n{metrics}");
    drop(locker.stdin.take());
    locker.wait().await.unwrap();
    // Everything arrives, in one intact chain.
    let records = g.audit_at_least(21).await;
    assert_eq!(records.len(), 21);
    let (ok, out) = g.verify();
    assert!(ok, "{out}");
    assert!(
        !metrics.contains("sluice_audit_lost_total"),
        "nothing lost: {metrics}"
    );
}

/// Every answer names its request, refusals included, with the id its audit record has;
/// an app a client names is recorded as the client's claim, never as a fact.
#[tokio::test]
async fn every_response_has_a_request_id_and_apps_are_recorded_as_claimed() {
    let g = Gov::start(&[], "mode = \"open\"\n").await;
    let id_of = |r: &reqwest::Response| {
        r.headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let served = g
        .gw
        .http
        .post(g.gw.url("/v1/chat/completions"))
        .header("x-sluice-app", "cursor")
        .json(&serde_json::json!({"model": "oa/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(served.status(), 200);
    let served_id = id_of(&served);
    let refused =
        g.gw.http
            .post(g.gw.url("/v1/chat/completions"))
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .await
            .unwrap();
    assert_eq!(refused.status(), 400);
    let refused_id = id_of(&refused);
    let unknown =
        g.gw.http
            .get(g.gw.url("/v1/nothing-here"))
            .send()
            .await
            .unwrap();
    assert_eq!(unknown.status(), 404);
    let admin =
        g.gw.http
            .get(g.gw.url("/api/v1/keys"))
            .send()
            .await
            .unwrap();
    assert_eq!(admin.status(), 401);
    let ids = [
        served_id.clone(),
        refused_id.clone(),
        id_of(&unknown),
        id_of(&admin),
    ];
    for id in &ids {
        assert_eq!(id.len(), 32, "every response carries a request id: {ids:?}");
    }
    let unique: std::collections::HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "{ids:?}");

    let records = g.audit_at_least(2).await;
    let record = |id: &str| {
        records
            .iter()
            .find(|r| r["request_id"] == id)
            .unwrap_or_else(|| panic!("no audit record {id} in {records:?}"))
    };
    let ok = record(&served_id);
    assert_eq!(ok["app"], "cursor", "{ok}");
    assert_eq!(ok["app_source"], "client", "{ok}");
    let rejected = record(&refused_id);
    assert_eq!(rejected["outcome"], "rejected", "{rejected}");
    assert!(
        rejected.get("app_source").is_none_or(|v| v.is_null()),
        "{rejected}"
    );
}
