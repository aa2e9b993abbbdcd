//! What comes back from upstream: fallback bombs, provider keys echoed in errors, and
//! absurd numbers.

use serde_json::{Value, json};

use crate::common::PROVIDER_KEY;
use crate::{ADMIN, SCRUBBED, Sec, chat};

// ---- 6. fallback bombs ---------------------------------------------------------------

/// Two providers that answer every call with a 500: `fail` never trips its breaker (so
/// only the attempt budget stops a request), `brk` trips after 5 failures in a row.
const FAILING: &str = r#"
[providers.fail]
kind = "openai"
base_url = "{mock}/v1"
keys = [{ value = "env:MOCK_KEY" }]
headers = { "x-mock-fault" = "status=500" }
health = { failure_threshold = 1000 }

[providers.brk]
kind = "openai"
base_url = "{mock}/v1"
keys = [{ value = "env:MOCK_KEY" }]
headers = { "x-mock-fault" = "status=500" }
health = { cooldown_ms = 600000, max_cooldown_ms = 600000 }
"#;

fn with_fallbacks(provider: &str, n: usize) -> Value {
    let mut body = chat(&format!("{provider}/m0"));
    body["fallbacks"] = (1..=n).map(|i| format!("{provider}/m{i}")).collect();
    body
}

#[tokio::test]
async fn fallback_bombs_are_bounded() {
    // Room for 51 candidates, so that the attempt budget (default 10) is what binds.
    let g = Sec::start("routing.max_candidates = 64", FAILING, &[]).await;
    let resp = g.chat("", &with_fallbacks("oa", 60_000)).await;
    let named = resp.message().contains("routing.max_candidates");
    assert!(resp.status == 400 && named, "{}", resp.body);
    assert_eq!(g.upstream_calls().await, 0);

    let resp = g.chat("", &with_fallbacks("fail", 50)).await;
    let named = resp.message().contains("routing.max_attempts");
    assert!(resp.status == 500 && named, "{}", resp.body);
    let calls = g.upstream_calls().await;
    assert!((1..=10).contains(&calls), "{calls} calls");

    g.mock.reset().await.unwrap();
    assert_ne!(g.chat("", &with_fallbacks("brk", 50)).await.status, 200);
    assert!(g.upstream_calls().await <= 10);
    g.mock.reset().await.unwrap();
    let resp = g.chat("", &with_fallbacks("brk", 50)).await;
    let named = resp.message().contains("breaker open");
    assert!(resp.status == 503 && named, "{}", resp.body);
    assert_eq!(g.upstream_calls().await, 0, "calls past an open breaker");
}

// ---- 7. secrets scrubbed from every error path --------------------------------------

/// Provider `rot` with two keys, for refusals that rotate.
const ROTATING: &str = r#"
[providers.rot]
kind = "openai"
base_url = "{mock}/v1"
keys = [{ value = "env:MOCK_KEY", id = "first" }, { value = "env:ROT_KEY", id = "second" }]
"#;
const ROT_KEY: &str = "rotation-key-0123456789";

#[tokio::test]
async fn provider_keys_echoed_upstream_never_leave_the_gateway() {
    let g = Sec::start("", ROTATING, &[("ROT_KEY", ROT_KEY)]).await;
    let (key, _) = g.key(json!({"content_logging": "full"})).await;
    let echo = format!("message=Incorrect API key provided: {PROVIDER_KEY} or {ROT_KEY}");
    // (fault, how many, model, streamed, status): the provider's 400 forwarded, a final
    // error after rotating keys and after retries, and mid-stream in both framings.
    let cases = [
        ("status=400", 1, "oa/gpt-4o-mini", false, 400),
        ("status=401", 2, "rot/gpt-4o-mini", false, 502),
        ("status=500", 3, "oa/gpt-4o-mini", false, 500),
        ("error_event_after=2", 1, "oa/gpt-4o-mini", true, 200),
        ("error_event_after=2", 1, "an/claude-haiku-4-5", true, 200),
    ];
    for (fault, n, model, stream, status) in cases {
        let fault = format!("{fault};{echo}");
        g.mock.push_faults(&vec![fault.as_str(); n]).await;
        let mut body = chat(model);
        body["stream"] = json!(stream);
        let (chat_path, anthropic) = ("/v1/chat/completions", "/anthropic/v1/messages");
        let path = if model.starts_with("an/") {
            anthropic
        } else {
            chat_path
        };
        let resp = g.call(path, &key, &[], &body).await;
        let what = format!("{fault} on {model}");
        let calls = resp.header("x-sluice-attempts").parse::<usize>();
        let got = (resp.status, calls.ok());
        assert_eq!(got, (status, Some(n)), "{what}: {}", resp.body);
        let echoed = resp.body.contains(SCRUBBED);
        assert!(echoed, "{what}: {}", resp.body);
        resp.assert_clean(PROVIDER_KEY, &what);
        resp.assert_clean(ROT_KEY, &what);
    }
    let records = g.gw.audit_at_least(ADMIN, cases.len()).await.unwrap();
    let text = serde_json::to_string(&records).unwrap();
    let leaks = text.contains(PROVIDER_KEY) || text.contains(ROT_KEY);
    let ok = text.contains("Incorrect API key provided") && !leaks;
    assert!(ok, "{text}");
    let export = g.gw.url("/api/v1/audit/export");
    let export = g.gw.http.get(export).bearer_auth(ADMIN);
    let export = export.send().await.unwrap().text().await.unwrap();
    let leaks = export.contains(PROVIDER_KEY) || export.contains(ROT_KEY);
    assert!(export.contains(SCRUBBED) && !leaks, "{export}");
}

// ---- 8. absurd upstream numbers ------------------------------------------------------

const SECOND_OPENAI: &str = r#"
[providers.oa2]
kind = "openai"
base_url = "{mock}/v1"
keys = [{ value = "env:MOCK_KEY" }]
"#;
const ABSURD_USAGE: &str = "usage_tokens=18446744073709551615";

#[tokio::test]
async fn absurd_upstream_numbers_are_clamped() {
    let g = Sec::start("", SECOND_OPENAI, &[]).await;
    let mut usage_stream = chat("oa/gpt-4o-mini");
    usage_stream["stream"] = json!(true);
    usage_stream["stream_options"] = json!({"include_usage": true});
    // u64::MAX tokens, buffered, streamed, and across the translation both ways.
    let cases = [
        ("/v1/chat/completions", chat("oa/gpt-4o-mini")),
        ("/v1/chat/completions", usage_stream),
        ("/anthropic/v1/messages", chat("oa/gpt-4o-mini")),
        ("/v1/chat/completions", chat("an/claude-haiku-4-5")),
    ];
    for (path, body) in &cases {
        g.mock.push_faults(&[ABSURD_USAGE]).await;
        let resp = g.call(path, "", &[], body).await;
        assert_eq!(resp.status, 200, "{path} {body}: {}", resp.body);
        if let Ok(cost) = resp.header("x-sluice-cost-usd").parse::<f64>() {
            assert!(cost.is_finite() && cost <= 1e6, "{cost}");
        }
    }
    g.mock
        .push_faults(&["status=429;retry_after_raw=1e300"])
        .await;
    let resp = g.chat("", &chat("oa2/gpt-4o-mini")).await;
    let retry_after = resp.header("retry-after").parse::<u64>();
    let ok = resp.status == 429 && retry_after.is_ok_and(|s| s <= 86_400);
    assert!(ok, "{}", resp.body);

    let healthz = g.gw.http.get(g.gw.url("/healthz")).send().await.unwrap();
    assert_eq!(healthz.status(), 200);
    let records = g.gw.audit_at_least(ADMIN, cases.len() + 1).await.unwrap();
    let note = "clamped to 100000000 tokens";
    let noted = |r: &&Value| r["error"].as_str().is_some_and(|e| e.contains(note));
    let clamped: Vec<&Value> = records.iter().filter(noted).collect();
    assert_eq!(clamped.len(), cases.len(), "{records:#?}");
    for r in clamped {
        let tokens = r["input_tokens"].as_u64().unwrap();
        assert!(tokens <= 100_000_000 && r["cost_micros"].is_u64(), "{r}");
    }
    let after = |r: &&Value| {
        r["error"]
            .as_str()
            .is_some_and(|e| e.contains("Retry-After `1e300`") && e.contains("clamped to 86400 s"))
    };
    assert!(records.iter().any(|r| after(&r)), "{records:#?}");
}
