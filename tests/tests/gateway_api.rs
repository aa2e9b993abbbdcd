//! End-to-end: the real `sluice-gateway` binary in front of the mock provider, over real
//! sockets. Surfaces, pass-through, translation between API shapes, and bad input.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation is the failure"
)]

mod common;

use common::*;
use serde_json::{Value, json};
use sluice_tests::bins;
use sluice_tests::harness::{Gateway, sse_events};

#[tokio::test]
async fn openai_chat_passes_through_with_provider_key_and_unknown_fields() {
    let (mock, gw) = start("").await;
    let mut body = chat("oa/gpt-4o-mini", "hello there");
    body["seed"] = json!(7);
    body["x_custom"] = json!({"a": [1, 2]});
    let resp = gw
        .http
        .post(gw.url("/v1/chat/completions"))
        .bearer_auth("client-key-must-not-leak")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-sluice-provider"), "oa");
    assert_eq!(header(&resp, "x-sluice-model"), "gpt-4o-mini");
    assert_eq!(header(&resp, "x-sluice-attempts"), "1");
    assert_eq!(header(&resp, "x-request-id").len(), 32);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Hello from mock gpt-4o-mini! You said: hello there"
    );
    assert!(v["usage"]["total_tokens"].as_u64().unwrap() > 0);

    let recorded = mock.requests().await.unwrap();
    let last = recorded.last().unwrap();
    assert_eq!(last["path"], "/v1/chat/completions");
    assert_eq!(
        last["headers"]["authorization"],
        format!("Bearer {PROVIDER_KEY}")
    );
    assert_eq!(last["body"]["seed"], 7);
    assert_eq!(last["body"]["x_custom"], json!({"a": [1, 2]}));
    assert_eq!(last["body"]["model"], "gpt-4o-mini");
}

#[tokio::test]
async fn openai_stream_adds_usage_upstream_but_only_returns_it_when_asked() {
    let (mock, gw) = start("").await;
    let mut body = chat("oa/gpt-4o-mini", "one two three");
    body["stream"] = json!(true);
    let resp = gw.post("/v1/chat/completions", &body).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "content-type"), "text/event-stream");
    let events = sse_events(&resp.text().await.unwrap());
    assert_eq!(events.last().unwrap().1, "[DONE]");
    assert_eq!(
        openai_stream_text(&events),
        "Hello from mock gpt-4o-mini! You said: one two three"
    );
    assert!(
        !events.iter().any(|(_, d)| d.contains("\"choices\":[]")),
        "no usage chunk unless asked"
    );
    let upstream = mock.requests().await.unwrap();
    assert_eq!(
        upstream.last().unwrap()["body"]["stream_options"]["include_usage"],
        true
    );

    body["stream_options"] = json!({"include_usage": true});
    let text = gw
        .post("/v1/chat/completions", &body)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let events = sse_events(&text);
    let usage: Vec<Value> = events
        .iter()
        .filter_map(|(_, d)| serde_json::from_str::<Value>(d).ok())
        .filter(|v| v["choices"] == json!([]))
        .collect();
    assert_eq!(usage.len(), 1);
    assert!(usage[0]["usage"]["completion_tokens"].as_u64().unwrap() > 0);

    let metrics = gw.metrics().await.unwrap();
    assert!(
        metrics.contains(
            "sluice_tokens_total{provider=\"oa\",model=\"gpt-4o-mini\",direction=\"output\"}"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("sluice_time_to_first_token_seconds_bucket"),
        "{metrics}"
    );
    assert!(
        metrics.contains("sluice_gateway_overhead_seconds_bucket"),
        "{metrics}"
    );
}

#[tokio::test]
async fn openai_client_reaches_anthropic_and_gemini_with_tools() {
    let (mock, gw) = start("").await;
    let tools = json!([{"type": "function", "function": {"name": "lookup", "description": "find", "parameters": {"type": "object", "properties": {"query": {"type": "string"}}}}}]);
    for model in ["an/claude-haiku-4-5", "ge/gemini-2.5-flash"] {
        let body = json!({"model": model, "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "weather in Paris"}], "tools": tools});
        let resp = gw.post("/v1/chat/completions", &body).await.unwrap();
        assert_eq!(resp.status(), 200, "{model}");
        let v: Value = resp.json().await.unwrap();
        let call = &v["choices"][0]["message"]["tool_calls"][0];
        assert_eq!(call["function"]["name"], "lookup", "{model}: {v}");
        let args: Value =
            serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
        assert_eq!(args["query"], "weather in Paris");
        assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");

        // Send the tool result back: the provider must see it as its own tool-result shape.
        let follow = json!({"model": model, "messages": [
            {"role": "user", "content": "weather in Paris"},
            {"role": "assistant", "content": null, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": call["id"], "content": "sunny"}
        ], "tools": tools, "stream": true, "stream_options": {"include_usage": true}});
        let text = gw
            .post("/v1/chat/completions", &follow)
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let events = sse_events(&text);
        // Gemini function responses are objects: the gateway wraps plain text as
        // {"content": ...}, which the mock echoes.
        let said = openai_stream_text(&events);
        assert!(
            said.starts_with("Tool said: ") && said.contains("sunny"),
            "{model}: {said}"
        );
        assert_eq!(events.last().unwrap().1, "[DONE]");
    }
    let recorded = mock.requests().await.unwrap();
    let anthropic = recorded
        .iter()
        .find(|r| r["path"] == "/v1/messages")
        .unwrap();
    assert_eq!(anthropic["headers"]["x-api-key"], PROVIDER_KEY);
    assert_eq!(anthropic["headers"]["anthropic-version"], "2023-06-01");
    assert_eq!(anthropic["body"]["system"], "be brief");
    assert_eq!(anthropic["body"]["max_tokens"], 4096);
    let gemini = recorded
        .iter()
        .find(|r| r["path"].as_str().unwrap().ends_with(":generateContent"))
        .unwrap();
    assert_eq!(gemini["headers"]["x-goog-api-key"], PROVIDER_KEY);
    assert_eq!(
        gemini["body"]["systemInstruction"]["parts"][0]["text"],
        "be brief"
    );
}

#[tokio::test]
async fn anthropic_surface_passes_through_and_translates_streams() {
    let (mock, gw) = start("").await;
    // Pass-through: the client's anthropic-version and anthropic-beta reach the provider.
    let body = json!({"model": "an/claude-haiku-4-5", "max_tokens": 50, "stream": true, "messages": [{"role": "user", "content": "hi claude"}], "thinking": {"type": "enabled", "budget_tokens": 1024}});
    let resp = gw
        .http
        .post(gw.url("/anthropic/v1/messages"))
        .header("anthropic-version", "2023-06-01")
        .header("anthropic-beta", "interleaved-thinking-2025-05-14")
        .header("x-api-key", "client-key")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let events = sse_events(&resp.text().await.unwrap());
    assert_eq!(events.first().unwrap().0.as_deref(), Some("message_start"));
    assert_eq!(events.last().unwrap().0.as_deref(), Some("message_stop"));
    assert_eq!(
        anthropic_stream_text(&events),
        "Hello from mock claude-haiku-4-5! You said: hi claude"
    );
    let last = mock.requests().await.unwrap().pop().unwrap();
    assert_eq!(
        last["headers"]["anthropic-beta"],
        "interleaved-thinking-2025-05-14"
    );
    assert_eq!(last["headers"]["x-api-key"], PROVIDER_KEY);
    assert_eq!(
        last["body"]["thinking"]["budget_tokens"], 1024,
        "unknown fields pass through"
    );

    // Translated: the same client reaching OpenAI and Gemini providers.
    for (model, expected) in [
        ("oa/gpt-4o-mini", "gpt-4o-mini"),
        ("ge/gemini-2.5-flash", "gemini-2.5-flash"),
    ] {
        let body = json!({"model": model, "max_tokens": 50, "stream": true, "messages": [{"role": "user", "content": "hi"}]});
        let text = gw
            .post("/anthropic/v1/messages", &body)
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let events = sse_events(&text);
        let names: Vec<&str> = events.iter().filter_map(|(e, _)| e.as_deref()).collect();
        assert_eq!(names.first(), Some(&"message_start"), "{model}");
        assert_eq!(
            &names[names.len() - 2..],
            &["message_delta", "message_stop"],
            "{model}"
        );
        assert_eq!(
            anthropic_stream_text(&events),
            format!("Hello from mock {expected}! You said: hi")
        );
        let delta: Value = serde_json::from_str(&events[events.len() - 2].1).unwrap();
        assert!(
            delta["usage"]["output_tokens"].as_u64().unwrap() > 0,
            "{model}: {delta}"
        );

        let body = json!({"model": model, "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}], "tools": [{"name": "lookup", "input_schema": {"type": "object"}}]});
        let v: Value = gw
            .post("/anthropic/v1/messages", &body)
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(v["type"], "message");
        assert_eq!(v["stop_reason"], "tool_use", "{model}: {v}");
        assert_eq!(v["content"][0]["type"], "tool_use");
        assert_eq!(v["content"][0]["input"]["query"], "hi");
    }
}

/// A request shaped like Claude Code 2.1's on its newest models: `?beta=true`, a list of
/// betas, system messages after the first turn, adaptive thinking, context management,
/// output config, tools with cache control, unknown message fields.
fn claude_code_request(model: &str) -> Value {
    json!({
        "model": model,
        "max_tokens": 32000,
        "stream": true,
        "system": [{"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "list the files"}]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "I should look.", "signature": "sig-1"},
                {"type": "text", "text": "Looking."}
            ]},
            {"role": "system", "content": "The user switched to plan mode."},
            {"role": "user", "content": [{"type": "text", "text": "go on", "cache_control": {"type": "ephemeral"}}], "future_field": 1}
        ],
        "thinking": {"type": "adaptive"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "output_config": {"effort": "high"},
        "tools": [
            {"name": "Bash", "description": "Run a command", "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}}},
            {"name": "Read", "description": "Read a file", "input_schema": {"type": "object"}, "cache_control": {"type": "ephemeral"}}
        ],
        "tool_choice": {"type": "none"},
        "metadata": {"user_id": "user_abc"}
    })
}

#[tokio::test]
async fn claude_code_requests_reach_anthropic_byte_faithfully_and_translate_elsewhere() {
    let (mock, gw) = start("").await;
    let betas = "claude-code-20250219,interleaved-thinking-2025-05-14,context-management-2025-06-27,mid-conversation-system-2026-01-01";
    let body = claude_code_request("an/claude-haiku-4-5");
    let resp = gw
        .http
        .post(gw.url("/anthropic/v1/messages?beta=true"))
        .header("anthropic-version", "2023-06-01")
        .header("anthropic-beta", betas)
        .header("anthropic-dangerous-direct-browser-access", "true")
        .header("x-api-key", "client-key")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let events = sse_events(&resp.text().await.unwrap());
    assert_eq!(events.last().unwrap().0.as_deref(), Some("message_stop"));
    let seen = mock.requests().await.unwrap().pop().unwrap();
    assert_eq!(seen["path"], "/v1/messages");
    assert_eq!(seen["query"], "beta=true", "the client's query goes on");
    assert_eq!(seen["headers"]["anthropic-beta"], betas);
    assert_eq!(
        seen["headers"]["anthropic-dangerous-direct-browser-access"],
        "true"
    );
    assert_eq!(
        seen["headers"]["x-api-key"], PROVIDER_KEY,
        "the client's key never goes on"
    );
    let mut expected = body.clone();
    expected["model"] = json!("claude-haiku-4-5");
    assert_eq!(
        seen["body"], expected,
        "everything else is the client's, as sent"
    );

    // Token counting, as Claude Code calls it.
    let mut count = body.clone();
    for field in ["max_tokens", "stream", "metadata"] {
        count.as_object_mut().unwrap().remove(field);
    }
    let resp = gw
        .http
        .post(gw.url("/anthropic/v1/messages/count_tokens?beta=true"))
        .header("anthropic-beta", betas)
        .json(&count)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = mock.requests().await.unwrap().pop().unwrap();
    assert_eq!(seen["path"], "/v1/messages/count_tokens");
    assert_eq!(seen["query"], "beta=true");

    // To an OpenAI-protocol model the system message stays where it was.
    let resp = gw
        .post(
            "/anthropic/v1/messages?beta=true",
            &claude_code_request("oa/gpt-4o-mini"),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let events = sse_events(&resp.text().await.unwrap());
    assert_eq!(events.last().unwrap().0.as_deref(), Some("message_stop"));
    let seen = mock.requests().await.unwrap().pop().unwrap();
    assert_eq!(seen["path"], "/v1/chat/completions");
    assert_eq!(
        seen["query"], "",
        "a query for Anthropic is not sent to OpenAI"
    );
    assert!(seen["headers"].get("anthropic-beta").is_none());
    let roles: Vec<&str> = seen["body"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["system", "user", "assistant", "system", "user"]);
    assert_eq!(
        seen["body"]["messages"][3]["content"],
        "The user switched to plan mode."
    );
}

#[tokio::test]
async fn count_tokens_on_anthropic_gemini_and_estimated_elsewhere() {
    let (_mock, gw) = start("").await;
    let body = |model: &str| json!({"model": model, "messages": [{"role": "user", "content": "count these words please"}]});
    for model in [
        "an/claude-haiku-4-5",
        "ge/gemini-2.5-flash",
        "oa/gpt-4o-mini",
    ] {
        let resp = gw
            .post("/anthropic/v1/messages/count_tokens", &body(model))
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{model}");
        let estimated = header(&resp, "x-sluice-token-count") == "estimated";
        assert_eq!(estimated, model.starts_with("oa/"), "{model}");
        let v: Value = resp.json().await.unwrap();
        assert!(v["input_tokens"].as_u64().unwrap() > 0, "{model}: {v}");
    }
}

#[tokio::test]
async fn responses_and_embeddings_pass_through() {
    let (mock, gw) = start("").await;
    let v: Value = gw
        .http
        .post(gw.url("/v1/responses"))
        .header("openai-beta", "responses=experimental")
        .header("anthropic-beta", "not-for-openai")
        .header("x-api-key", "client-key")
        .json(&json!({"model": "oa/gpt-4o-mini", "input": "hello responses"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["object"], "response");
    let seen = mock.requests().await.unwrap().pop().unwrap();
    assert_eq!(seen["headers"]["openai-beta"], "responses=experimental");
    assert!(
        seen["headers"].get("anthropic-beta").is_none(),
        "another protocol's header is not sent: {seen}"
    );
    assert!(seen["headers"].get("x-api-key").is_none(), "{seen}");
    assert!(
        v["output"][0]["content"][0]["text"]
            .as_str()
            .unwrap()
            .ends_with("hello responses")
    );

    let text = gw
        .post(
            "/v1/responses",
            &json!({"model": "oa/gpt-4o-mini", "input": "streamed", "stream": true}),
        )
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let events = sse_events(&text);
    assert_eq!(
        events.last().unwrap().0.as_deref(),
        Some("response.completed")
    );
    assert!(
        events
            .iter()
            .any(|(e, _)| e.as_deref() == Some("response.output_text.delta"))
    );

    let resp = gw
        .post(
            "/v1/responses",
            &json!({"model": "an/claude-haiku-4-5", "input": "x"}),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Responses API"),
        "{v}"
    );

    let v: Value = gw
        .post(
            "/v1/embeddings",
            &json!({"model": "oa/text-embedding-3-small", "input": ["a", "b"]}),
        )
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    assert_eq!(v["data"][0]["embedding"].as_array().unwrap().len(), 8);
}

#[tokio::test]
async fn models_lists_aliases_and_provider_models() {
    let (_mock, gw) =
        start("[aliases.smart]\ntargets = [{ model = \"an/claude-sonnet-4-5\" }]\n").await;
    let v: Value = gw.get_json("/v1/models").await.unwrap();
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&"smart") && ids.contains(&"oa/gpt-4o-mini"),
        "{ids:?}"
    );
    let ready: Value = gw.get_json("/readyz").await.unwrap();
    assert_eq!(ready["providers"], 3);
    assert_eq!(
        gw.http
            .get(gw.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn bad_input_gets_clear_errors_in_the_callers_shape() {
    let (mock, gw) = start("").await;
    let raw = |path: &'static str, body: &'static str| {
        gw.http
            .post(gw.url(path))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };

    let resp = raw("/v1/chat/completions", "{not json").await.unwrap();
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not valid"),
        "{v}"
    );

    // Each error names the path the client called, not the provider's.
    for path in [
        "/anthropic/v1/messages",
        "/anthropic/v1/messages/count_tokens",
        "/v1/chat/completions",
        "/v1/responses",
        "/v1/embeddings",
    ] {
        let resp = raw(path, "[1,2").await.unwrap();
        assert_eq!(resp.status(), 400, "{path}");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["error"]["type"], "invalid_request_error", "{path}: {v}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("the request body for {path} is not valid")),
            "{path}: {message}"
        );
        if path.starts_with("/anthropic") {
            assert_eq!(v["type"], "error");
        }
    }

    let resp = gw
        .post(
            "/anthropic/v1/messages",
            &json!({"model": "an/x", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_tokens"),
        "{v}"
    );

    let resp = gw
        .post(
            "/v1/chat/completions",
            &json!({"messages": [{"role": "user", "content": "hi"}]}),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["param"], "model");

    // A bare model name goes to the surface's native provider (what SDKs and Claude Code
    // send), so it is not an error here.
    let resp = gw
        .post("/v1/chat/completions", &chat("gpt-5-bare", "hi"))
        .await
        .unwrap();
    assert_eq!(header(&resp, "x-sluice-provider"), "oa");
    let resp = gw.post("/anthropic/v1/messages", &json!({"model": "claude-bare", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})).await.unwrap();
    assert_eq!(header(&resp, "x-sluice-provider"), "an");

    let resp = gw
        .post("/v1/chat/completions", &chat("nope/some-model", "hi"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let v: Value = resp.json().await.unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("an, ge, oa"),
        "{v}"
    );

    let resp = gw
        .post(
            "/v1/chat/completions",
            &json!({"model": "oa/x", "messages": []}),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);

    let resp = gw.post("/v1/chat/completions", &json!({"model": "oa/x", "messages": [{"role": "user", "content": "hi"}], "fallbacks": "not-a-list"})).await.unwrap();
    assert_eq!(resp.status(), 400);

    let resp = gw
        .http
        .get(gw.url("/v1/chat/completions"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    let resp = gw
        .http
        .get(gw.url("/anthropic/v1/nothing"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["type"], "not_found_error");

    // A provider's own 400 comes back as the provider said it (same API shape).
    mock.push_faults(&["status=400"]).await;
    let resp = gw
        .post("/v1/chat/completions", &chat("oa/gpt-4o-mini", "hi"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(
        header(&resp, "x-sluice-attempts"),
        "1",
        "4xx is not retried"
    );
    let v: Value = resp.json().await.unwrap();
    assert!(v["error"]["message"].is_string());

    // None of the refused requests reached the provider (only the two bare-model
    // requests and the one answered with the injected 400 did).
    let stats = mock.stats().await.unwrap();
    assert_eq!(stats["requests_total"], 3, "{stats}");
}

#[tokio::test]
async fn oversized_bodies_are_refused_with_413() {
    let mock = sluice_tests::harness::MockProvider::start(bins!(), &[])
        .await
        .unwrap();
    let cfg = config_with(mock.base_url(), "server.max_body_bytes = 1024", "");
    let gw = Gateway::start(bins!(), &cfg, &[("MOCK_KEY", PROVIDER_KEY)])
        .await
        .unwrap();
    let big = "x".repeat(4096);
    let resp = gw
        .post("/v1/chat/completions", &chat("oa/gpt-4o-mini", &big))
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    let v: Value = resp.json().await.unwrap();
    assert!(
        v["error"]["message"].as_str().unwrap().contains("1024"),
        "{v}"
    );
    // Chunked upload without a Content-Length is bounded too.
    let stream =
        futures_util::stream::iter((0..8).map(|_| Ok::<_, std::io::Error>(vec![b' '; 512])));
    let resp = gw
        .http
        .post(gw.url("/anthropic/v1/messages"))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["type"], "request_too_large");
    assert_eq!(mock.stats().await.unwrap()["requests_total"], 0);
}

#[tokio::test]
async fn azure_layout_and_header() {
    let mock = sluice_tests::harness::MockProvider::start(bins!(), &[])
        .await
        .unwrap();
    let extra = format!(
        "[providers.az]\nkind = \"azure\"\nbase_url = \"{}/openai\"\napi_version = \"2024-10-21\"\nkeys = [{{ value = \"env:MOCK_KEY\" }}]\n",
        mock.base_url()
    );
    let gw = gateway_for(&mock, &extra).await;
    let resp = gw
        .post(
            "/v1/chat/completions",
            &chat("az/my-deployment", "hi azure"),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let last = mock.requests().await.unwrap().pop().unwrap();
    assert_eq!(
        last["path"],
        "/openai/deployments/my-deployment/chat/completions"
    );
    assert_eq!(last["query"], "api-version=2024-10-21");
    assert_eq!(last["headers"]["api-key"], PROVIDER_KEY);
}
