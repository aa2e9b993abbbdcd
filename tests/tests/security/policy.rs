//! Model policy under every model-name form, and unpriced models under a budget.

use serde_json::json;

use crate::{Answer, Sec, chat};

// ---- 3. model policy under every model-name form ------------------------------------

/// Provider `other` with its own key (so the mock's records tell it from `oa`), a model
/// only it lists, and an alias that leads to it.
const OTHER: &str = r#"
[providers.other]
kind = "openai"
base_url = "{mock}/v1"
keys = [{ value = "env:OTHER_KEY" }]
models = ["other-only-model"]

[aliases.sneaky]
targets = [{ model = "other/gpt-4o-mini" }]
"#;
const OTHER_KEY: &str = "other-provider-key-0123";

/// Not served by `other`: refused, or served (or failed) by `oa`.
fn assert_not_other(resp: &Answer, what: &str) {
    let provider = resp.header("x-sluice-provider");
    let ok = match resp.status {
        200 => provider == "oa",
        status => [403, 500].contains(&status) && provider != "other",
    };
    assert!(ok, "{what}: `{provider}`: {}", resp.body);
}

#[tokio::test]
async fn model_policy_holds_for_every_model_name_form() {
    let g = Sec::start("", OTHER, &[("OTHER_KEY", OTHER_KEY)]).await;
    let (key, _) = g.key(json!({"allow_models": ["oa/*"]})).await;
    let (free, _) = g.key(json!({})).await;

    // The first target fails (1 + max_retries 2 calls); the fallback is not the key's.
    let mut with_fallback = chat("oa/gpt-4o-mini");
    with_fallback["fallbacks"] = json!(["other/gpt-4o-mini"]);
    g.mock.push_faults(&["status=500"; 3]).await;
    assert_not_other(&g.chat(&key, &with_fallback).await, "body fallbacks");
    // A success in between, so that oa's key does not trip its breaker.
    assert_not_other(&g.chat(&key, &chat("oa/gpt-4o-mini")).await, "oa itself");
    g.mock.push_faults(&["status=500"; 3]).await;
    let header = [("x-sluice-fallbacks", "other/gpt-4o-mini")];
    let path = "/v1/chat/completions";
    let resp = g.call(path, &key, &header, &chat("oa/gpt-4o-mini")).await;
    assert_not_other(&resp, "header fallbacks");

    for model in [
        "other/oa/gpt-4o-mini",
        "other/gpt-4o-mini",
        "sneaky",
        "other-only-model",
    ] {
        let resp = g.chat(&key, &chat(model)).await;
        let named = resp.message().contains("may not use model");
        assert!(resp.status == 403 && named, "{model}: {}", resp.body);
        let anthropic = "/anthropic/v1/messages";
        let resp = g.call(anthropic, &key, &[], &chat(model)).await;
        assert_eq!(resp.status, 403, "{model} on /anthropic: {}", resp.body);
    }
    let other = format!("Bearer {OTHER_KEY}");
    let recorded = g.mock.requests().await.unwrap();
    let reached = recorded
        .iter()
        .any(|r| r["headers"]["authorization"] == other.as_str());
    assert!(!reached, "a request reached `other`");

    // With a key without policy the same forms do reach `other`.
    for model in ["other/gpt-4o-mini", "sneaky", "other-only-model"] {
        let resp = g.chat(&free, &chat(model)).await;
        let served = (resp.status, resp.header("x-sluice-provider"));
        assert_eq!(served, (200, "other"), "{model}");
    }
    g.mock.push_faults(&["status=500"; 3]).await;
    let resp = g.chat(&free, &with_fallback).await;
    assert_eq!(resp.header("x-sluice-provider"), "other", "{}", resp.body);
}

// ---- 4. unpriced models under a budget ----------------------------------------------

#[tokio::test]
async fn unpriced_models_are_refused_under_a_budget() {
    for allow in [
        "",
        r#"governance.allow_unpriced_models = ["oa/some-unpriced-*"]"#,
    ] {
        let g = Sec::start(allow, "", &[]).await;
        let (budgeted, id) = g.key(json!({})).await;
        let (unbudgeted, _) = g.key(json!({})).await;
        let budget =
            json!({"scope_kind": "key", "scope_id": id, "window": "day", "limit_usd": 10.0});
        g.post_admin("/budgets", budget).await;
        let priced = g.chat(&budgeted, &chat("oa/gpt-4o-mini")).await;
        assert_eq!(priced.status, 200, "{}", priced.body);
        let unpriced = chat("oa/some-unpriced-model");
        let resp = g.chat(&unbudgeted, &unpriced).await;
        assert_eq!(resp.status, 200, "no budget: {}", resp.body);
        let resp = g.chat(&budgeted, &unpriced).await;
        if allow.is_empty() {
            let named = resp.message().contains("has no price");
            assert!(resp.status == 403 && named, "{}", resp.body);
        } else {
            let unknown = resp.header("x-sluice-cost-usd") == "unknown";
            assert!(resp.status == 200 && unknown, "allowed: {}", resp.body);
        }
        let resp = g.chat(&budgeted, &chat("oa/another-unpriced-model")).await;
        assert_eq!(resp.status, 403, "not listed: {}", resp.body);
    }
}
