//! The admin API and CLI: usage reports, providers and aliases.

use serde_json::{Value, json};
use sluice_tests::bins;
use sluice_tests::harness::sse_events;

use crate::common::header;
use crate::{ADMIN, Gov};

#[tokio::test]
async fn usage_report_and_cli() {
    let g = Gov::start(&[], "").await;
    g.hierarchy().await;
    let bin = bins!().gateway();
    let out = std::process::Command::new(bin)
        .args([
            "keys",
            "create",
            "--name",
            "ci",
            "--team",
            "eng",
            "--models",
            "oa/*",
            "--url",
            &g.gw.server.base_url,
            "--admin-token",
            ADMIN,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let secret = stderr
        .split_whitespace()
        .find(|w| w.starts_with("sk-sluice-"))
        .unwrap()
        .to_owned();
    let created: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(created["key"]["owner_kind"], "team");
    assert_eq!(created["key"]["policy"]["allow_models"], json!(["oa/*"]));
    assert_eq!(g.chat(&secret, "oa/gpt-4o-mini").await.status(), 200);
    g.audit_at_least(1).await;
    let out = std::process::Command::new(bin)
        .args([
            "usage",
            "--group-by",
            "team",
            "--url",
            &g.gw.server.base_url,
            "--admin-token",
            ADMIN,
        ])
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["data"][0]["group"], "eng");
    assert_eq!(report["data"][0]["cost_usd"], 0.008);
    // A streamed answer carries its cost as a final SSE comment.
    let text = g
        .gw
        .http
        .post(g.gw.url("/v1/chat/completions"))
        .bearer_auth(&secret)
        .json(&json!({"model": "oa/gpt-4o-mini", "stream": true, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(sse_events(&text).iter().any(|(_, d)| d == "[DONE]"));
    assert!(text.contains(": x-sluice-cost-usd=0.008000"), "{text}");
}

#[tokio::test]
async fn providers_and_aliases_managed_through_the_api() {
    // The admin API may use only the key references the config allows.
    let mut g = Gov::start(
        &[],
        "mode = \"open\"\nadmin_secret_refs = [\"env:MOCK_KEY\"]\n",
    )
    .await;
    let put = |path: String, body: Value| {
        let http = g.gw.http.clone();
        let url = g.gw.url(&format!("/api/v1{path}"));
        async move {
            let resp = http
                .put(url)
                .bearer_auth(ADMIN)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let provider = json!({"kind": "openai", "base_url": format!("{}/v1", g.mock.base_url()), "keys": [{"value": "env:MOCK_KEY"}], "models": ["gpt-4o-mini"]});
    let (status, v) = put("/providers/extra".into(), provider.clone()).await;
    assert_eq!(status, 200, "{v}");
    let resp = g.chat("", "extra/gpt-4o-mini").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-sluice-provider"), "extra");

    let (status, _) = put(
        "/aliases/smart".into(),
        json!({"targets": [{"model": "extra/gpt-4o-mini"}], "fallbacks": ["oa/gpt-4o-mini"]}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        header(&g.chat("", "smart").await, "x-sluice-provider"),
        "extra"
    );
    let models: Value = g.gw.get_json("/v1/models").await.unwrap();
    assert!(
        models["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == "smart")
    );

    // Whole-config validation guards every change.
    let (status, v) = put(
        "/aliases/broken".into(),
        json!({"targets": [{"model": "ghost/x"}]}),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("aliases.broken.targets[0].model"),
        "{v}"
    );
    let (status, v) = put(
        "/providers/leaky".into(),
        json!({"kind": "openai", "keys": [{"value": "sk-live-pasted"}]}),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        !v.to_string().contains("sk-live-pasted"),
        "secrets are never echoed: {v}"
    );
    let (status, _) = g
        .admin(reqwest::Method::DELETE, "/providers/extra", None)
        .await;
    assert_eq!(status, 400, "alias `smart` still routes to it");
    let (status, _) = g
        .admin(reqwest::Method::DELETE, "/providers/oa", None)
        .await;
    assert_eq!(
        status, 409,
        "file-defined providers are changed in the file"
    );

    let (_, listed) = g.admin(reqwest::Method::GET, "/providers", None).await;
    let extra = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "extra")
        .unwrap()
        .clone();
    assert_eq!(extra["source"], "api");

    // Entries survive a restart.
    g.gw.server.kill().await;
    g.restart().await;
    assert_eq!(
        header(&g.chat("", "smart").await, "x-sluice-provider"),
        "extra"
    );
    let (status, _) = g
        .admin(reqwest::Method::DELETE, "/aliases/smart", None)
        .await;
    assert_eq!(status, 204);
    let (status, _) = g
        .admin(reqwest::Method::DELETE, "/providers/extra", None)
        .await;
    assert_eq!(status, 204);
    assert_eq!(g.chat("", "extra/gpt-4o-mini").await.status(), 404);
}

/// Routing changes that arrive together are applied one after another: each builds on
/// the one before, so none is lost from the live routing table (the store holding every
/// entry is not enough; the table traffic is routed by must too).
#[tokio::test]
async fn concurrent_routing_changes_are_all_live() {
    let g = Gov::start(&[], "mode = \"open\"\n").await;
    const WRITERS: usize = 32;
    // Open the connections first, so that the changes arrive together.
    let warm = (0..WRITERS).map(|_| {
        let request =
            g.gw.http
                .get(g.gw.url("/api/v1/aliases"))
                .bearer_auth(ADMIN);
        async move { request.send().await.unwrap().status().as_u16() }
    });
    futures_util::future::join_all(warm).await;
    let names: Vec<String> = (0..WRITERS).map(|i| format!("team-alias-{i}")).collect();
    let puts = names.iter().map(|name| {
        let request =
            g.gw.http
                .put(g.gw.url(&format!("/api/v1/aliases/{name}")))
                .bearer_auth(ADMIN)
                .json(&json!({"targets": [{"model": "oa/gpt-4o-mini"}]}));
        async move { request.send().await.unwrap().status().as_u16() }
    });
    let statuses = futures_util::future::join_all(puts).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    // The live routing table, as /v1/models lists it (no store read).
    let models: Value = g.gw.get_json("/v1/models").await.unwrap();
    let live: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    let lost: Vec<&String> = names
        .iter()
        .filter(|n| !live.contains(&n.as_str()))
        .collect();
    assert!(lost.is_empty(), "stored but not routed: {lost:?}");
}
