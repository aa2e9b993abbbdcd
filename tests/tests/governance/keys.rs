//! The admin token, virtual keys (required, checked, scoped) and their rotation.

use serde_json::{Value, json};

use crate::Gov;
use crate::common::header;

#[tokio::test]
async fn admin_api_requires_the_admin_token() {
    let g = Gov::start(&[], "").await;
    let url = g.gw.url("/api/v1/keys");
    let resp = g.gw.http.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let resp =
        g.gw.http
            .get(&url)
            .bearer_auth("wrong-token-0123456789")
            .send()
            .await
            .unwrap();
    assert_eq!(resp.status(), 401);
    g.hierarchy().await;
    let (key, _) = g.key(json!({})).await;
    let resp = g.gw.http.get(&url).bearer_auth(&key).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let v: Value = resp.json().await.unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not an admin token")
    );
    let (status, v) = g.admin(reqwest::Method::GET, "/keys", None).await;
    assert_eq!(status, 200);
    assert!(
        v["data"][0].get("secret_hash").is_none(),
        "hashes never leave the store: {v}"
    );
    let doc: Value = g.gw.get_json("/api/v1/openapi.json").await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"]["/api/v1/keys/{id}/rotate"]["post"].is_object());
}

#[tokio::test]
async fn keys_are_required_checked_and_scoped() {
    let g = Gov::start(&[], "").await;
    g.hierarchy().await;
    let (key, id) = g
        .key(json!({"policy": {"allow_models": ["oa/*"], "content_logging": "full"}}))
        .await;

    let resp =
        g.gw.post(
            "/v1/chat/completions",
            &json!({"model": "oa/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let resp = g
        .chat(
            "sk-sluice-aaaaaaaaaaaa-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "oa/gpt-4o-mini",
        )
        .await;
    assert_eq!(resp.status(), 401);
    let resp = g.chat("sk-proj-a-provider-key", "oa/gpt-4o-mini").await;
    let v: Value = resp.json().await.unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not a Sluice virtual key"),
        "{v}"
    );

    let resp = g.chat(&key, "oa/gpt-4o-mini").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-sluice-cost-usd"), "0.008000");
    // The provider got the provider key, never the virtual key.
    let recorded = g.mock.requests().await.unwrap();
    assert_eq!(
        recorded.last().unwrap()["headers"]["authorization"],
        "Bearer provider-secret"
    );

    // Anthropic SDKs send x-api-key; the Anthropic-shaped 403 names the model.
    let resp = g
        .gw
        .http
        .post(g.gw.url("/anthropic/v1/messages"))
        .header("x-api-key", &key)
        .json(&json!({"model": "an/claude-haiku-4-5", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["type"], "permission_error");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("an/claude-haiku-4-5"),
        "{v}"
    );

    // Blocked, then unblocked.
    let (s, _) = g
        .admin(
            reqwest::Method::PATCH,
            &format!("/keys/{id}"),
            Some(json!({"status": "blocked"})),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(g.chat(&key, "oa/gpt-4o-mini").await.status(), 403);
    g.admin(
        reqwest::Method::PATCH,
        &format!("/keys/{id}"),
        Some(json!({"status": "active"})),
    )
    .await;
    assert_eq!(g.chat(&key, "oa/gpt-4o-mini").await.status(), 200);

    // Expired keys say so.
    let (expired, _) = g.key(json!({"name": "old", "expires_ms": 1_000})).await;
    let resp = g.chat(&expired, "oa/gpt-4o-mini").await;
    assert_eq!(resp.status(), 401);
    let v: Value = resp.json().await.unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expired on 1970-01-01"),
        "{v}"
    );

    // Full content logging keeps the bodies; every refusal is in the audit log too.
    let records = g.audit_at_least(8).await;
    let ok = records
        .iter()
        .find(|r| r["key_id"] == id.as_str() && r["status"] == 200)
        .unwrap();
    assert!(
        ok["request_body"].as_str().unwrap().contains("\"hi\""),
        "{ok}"
    );
    assert!(
        ok["response_body"]
            .as_str()
            .unwrap()
            .contains("Hello from mock")
    );
    assert_eq!(ok["user_id"], "ann");
    assert_eq!(ok["team_id"], "eng");
    assert_eq!(ok["org_id"], "acme");
    assert_eq!(ok["cost_micros"], 8000);
    assert!(
        records
            .iter()
            .any(|r| r["status"] == 401 && r["outcome"] == "rejected")
    );
    assert!(
        records
            .iter()
            .any(|r| r["status"] == 403 && r["key_id"] == id.as_str())
    );
}

#[tokio::test]
async fn rotation_keeps_the_old_secret_for_its_grace_period() {
    let g = Gov::start(&[], "").await;
    g.hierarchy().await;
    let (first, id) = g.key(json!({})).await;
    let v = g
        .post_admin(&format!("/keys/{id}/rotate"), json!({"grace_secs": 3600}))
        .await;
    let second = v["secret"].as_str().unwrap().to_owned();
    assert_ne!(first, second);
    assert_eq!(
        g.chat(&first, "oa/gpt-4o-mini").await.status(),
        200,
        "old secret in its grace period"
    );
    assert_eq!(g.chat(&second, "oa/gpt-4o-mini").await.status(), 200);
    let v = g
        .post_admin(&format!("/keys/{id}/rotate"), json!({"grace_secs": 0}))
        .await;
    let third = v["secret"].as_str().unwrap().to_owned();
    assert_eq!(
        g.chat(&second, "oa/gpt-4o-mini").await.status(),
        401,
        "no grace: revoked at once"
    );
    assert_eq!(g.chat(&first, "oa/gpt-4o-mini").await.status(), 401);
    assert_eq!(g.chat(&third, "oa/gpt-4o-mini").await.status(), 200);
}
