//! Budgets (under concurrent streams, across restarts, mid-stream), rate, concurrency
//! and token limits.

use std::time::Duration;

use serde_json::{Value, json};

use crate::Gov;
use crate::common::header;

#[tokio::test]
async fn budget_holds_under_concurrent_streams() {
    let g = Gov::start(&["--chunk-delay-ms", "20"], "").await;
    g.hierarchy().await;
    let (key, _) = g.key(json!({})).await;
    // About six requests' worth; each in-flight stream reserves its estimate.
    g.post_admin(
        "/budgets",
        json!({"scope_kind": "team", "scope_id": "eng", "window": "month", "limit_usd": 0.05}),
    )
    .await;
    let mut total_ok = 0;
    let mut refused = 0;
    for _wave in 0..4 {
        let mut tasks = Vec::new();
        for _ in 0..10 {
            let http = g.gw.http.clone();
            let url = g.gw.url("/v1/chat/completions");
            let key = key.clone();
            tasks.push(tokio::spawn(async move {
                let resp = http
                    .post(url)
                    .bearer_auth(key)
                    .json(&json!({"model": "oa/gpt-4o-mini", "max_tokens": 10, "stream": true, "messages": [{"role": "user", "content": "hi"}]}))
                    .send()
                    .await
                    .unwrap();
                let status = resp.status().as_u16();
                (status, resp.text().await.unwrap())
            }));
        }
        for t in tasks {
            let (status, body) = t.await.unwrap();
            match status {
                200 => {
                    total_ok += 1;
                    assert!(
                        body.trim_end().ends_with(": x-sluice-cost-usd=0.008000"),
                        "{body}"
                    );
                }
                402 => {
                    refused += 1;
                    let v: Value = serde_json::from_str(&body).unwrap();
                    let msg = v["error"]["message"].as_str().unwrap();
                    assert!(
                        msg.contains("team `eng` exceeded its monthly budget of $0.0500"),
                        "{msg}"
                    );
                    assert!(msg.contains("resets"), "{msg}");
                }
                other => panic!("{other}: {body}"),
            }
        }
    }
    assert!(
        total_ok >= 3 && refused > 0,
        "ok={total_ok} refused={refused}"
    );
    // Use up what is left, one request at a time, until the budget refuses.
    let mut extra = 0;
    while g.chat(&key, "oa/gpt-4o-mini").await.status() == 200 {
        extra += 1;
        assert!(extra < 10, "the budget never closed");
    }
    let records = g.audit_at_least(total_ok + refused + extra + 1).await;
    let spent: u64 = records
        .iter()
        .map(|r| r["cost_micros"].as_u64().unwrap())
        .sum();
    // A request is admitted while spent + in-flight estimates < limit, and estimates
    // (input + max_tokens at list price) cover the real cost here: so with ten streams
    // racing, the overspend is at most the last admitted request's own cost.
    assert!(
        spent <= 50_000 + 8_000,
        "spent {spent} micro-dollars of a 50000 budget"
    );
    assert!(
        spent >= 50_000,
        "the budget was used up before refusing: {spent}"
    );
    let (_, budgets) = g.admin(reqwest::Method::GET, "/budgets", None).await;
    assert_eq!(
        budgets["data"][0]["reserved_usd"], 0.0,
        "every reservation was settled: {budgets}"
    );
}

#[tokio::test]
async fn spend_survives_graceful_and_hard_restarts() {
    let mut g = Gov::start(&[], "").await;
    g.hierarchy().await;
    let (key, id) = g.key(json!({})).await;
    g.post_admin(
        "/budgets",
        json!({"scope_kind": "key", "scope_id": id, "window": "day", "limit_usd": 0.015}),
    )
    .await;
    assert_eq!(g.chat(&key, "oa/gpt-4o-mini").await.status(), 200);
    assert_eq!(g.chat(&key, "oa/gpt-4o-mini").await.status(), 200);
    let resp = g.chat(&key, "oa/gpt-4o-mini").await;
    assert_eq!(resp.status(), 402);
    let v: Value = resp.json().await.unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("spent $0.0160"),
        "{v}"
    );

    // kill -9 once the records are on disk: the spend comes back from the audit log.
    g.audit_at_least(3).await;
    g.gw.server.kill().await;
    g.restart().await;
    let resp = g.chat(&key, "oa/gpt-4o-mini").await;
    assert_eq!(
        resp.status(),
        402,
        "a hard restart must not hand out a fresh budget"
    );

    // Graceful stop drains the writer; the refusal above is recorded too.
    let pid = g.gw.server.pid().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let exit = tokio::time::timeout(Duration::from_secs(20), g.gw.server.child_mut().wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success());
    g.restart().await;
    assert_eq!(g.chat(&key, "oa/gpt-4o-mini").await.status(), 402);
    let records = g.audit_at_least(5).await;
    assert_eq!(records.iter().filter(|r| r["status"] == 402).count(), 3);
}

#[tokio::test]
async fn rate_and_concurrency_limits() {
    let g = Gov::start(&["--latency-ms", "300"], "").await;
    g.hierarchy().await;
    let (key, id) = g.key(json!({})).await;
    g.post_admin(
        "/limits",
        json!({"scope_kind": "key", "scope_id": id, "concurrency": 2}),
    )
    .await;
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let http = g.gw.http.clone();
        let url = g.gw.url("/v1/chat/completions");
        let key = key.clone();
        tasks.push(tokio::spawn(async move {
            let resp = http
                .post(url)
                .bearer_auth(key)
                .json(&json!({"model": "oa/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}))
                .send()
                .await
                .unwrap();
            (resp.status().as_u16(), header(&resp, "retry-after"))
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    let ok = statuses.iter().filter(|(s, _)| *s == 200).count();
    let limited: Vec<_> = statuses.iter().filter(|(s, _)| *s == 429).collect();
    assert_eq!(ok, 2, "{statuses:?}");
    assert_eq!(limited.len(), 4);
    assert!(limited.iter().all(|(_, ra)| ra == "1"));
    assert!(
        g.mock.stats().await.unwrap()["max_in_flight"]
            .as_u64()
            .unwrap()
            <= 2
    );

    // Requests per minute, on the team; the Anthropic surface answers in its own shape.
    g.post_admin(
        "/limits",
        json!({"scope_kind": "team", "scope_id": "eng", "rpm": 4}),
    )
    .await;
    let mut last = None;
    for _ in 0..5 {
        let resp = g
            .gw
            .http
            .post(g.gw.url("/anthropic/v1/messages"))
            .header("x-api-key", &key)
            .json(&json!({"model": "oa/gpt-4o-mini", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap();
        last = Some((
            resp.status().as_u16(),
            header(&resp, "retry-after"),
            resp.text().await.unwrap(),
        ));
    }
    let (status, retry_after, body) = last.unwrap();
    assert_eq!(status, 429, "{body}");
    assert!(retry_after.parse::<u64>().unwrap() >= 1);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["type"], "rate_limit_error");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("team `eng`"),
        "{v}"
    );
}

#[tokio::test]
async fn tokens_per_minute_limit() {
    let g = Gov::start(&[], "").await;
    g.hierarchy().await;
    let (key, id) = g.key(json!({})).await;
    g.post_admin(
        "/limits",
        json!({"scope_kind": "key", "scope_id": id, "tpm": 12}),
    )
    .await;
    assert_eq!(
        g.chat(&key, "oa/gpt-4o-mini").await.status(),
        200,
        "8 tokens used"
    );
    assert_eq!(
        g.chat(&key, "oa/gpt-4o-mini").await.status(),
        200,
        "under 12 when admitted"
    );
    let resp = g.chat(&key, "oa/gpt-4o-mini").await;
    assert_eq!(resp.status(), 429);
    let v: Value = resp.json().await.unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("12 tokens per minute")
    );
}

#[tokio::test]
async fn leaving_mid_stream_is_still_charged() {
    let g = Gov::start(&["--chunk-delay-ms", "50"], "").await;
    g.hierarchy().await;
    let (key, id) = g.key(json!({})).await;
    g.post_admin(
        "/budgets",
        json!({"scope_kind": "key", "scope_id": id, "window": "day", "limit_usd": 100.0}),
    )
    .await;
    let mut resp = g
        .gw
        .http
        .post(g.gw.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&json!({"model": "oa/gpt-4o-mini", "max_tokens": 10, "stream": true, "messages": [{"role": "user", "content": "one two three four five six seven eight"}]}))
        .send()
        .await
        .unwrap();
    assert!(resp.chunk().await.unwrap().is_some());
    drop(resp);
    let records = g.audit_at_least(1).await;
    let record = &records[0];
    assert_eq!(record["outcome"], "client_disconnected", "{record}");
    // OpenAI streams report usage only at their end, so the reserved estimate is charged:
    // input (body bytes / 4) plus max_tokens at $0.001 per token.
    let cost = record["cost_micros"].as_u64().unwrap();
    assert!(cost >= 10_000, "charged {cost} micro-dollars");
    let (_, budgets) = g.admin(reqwest::Method::GET, "/budgets", None).await;
    assert_eq!(
        budgets["data"][0]["spent_usd"].as_f64().unwrap() * 1e6,
        cost as f64
    );
    assert_eq!(budgets["data"][0]["reserved_usd"], 0.0);
}
