//! End-to-end guardrails: the real gateway binary with a `[guardrails]` policy in front of
//! the mock provider. Blocks and redactions on the way in (the mock's recorded requests
//! show what a provider would have seen), redaction and blocking of complete and streamed
//! answers (the mock streams its reply one word per SSE event, so a value with spaces is
//! split across events), audit records, metrics and scopes.
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
use sluice_tests::harness::{Gateway, MockProvider, sse_events};

/// An AWS access key id that is not the documentation example (which is allowed).
const AWS_KEY: &str = "AKIA4QWERTYUIOPASDFG";
/// A Luhn-valid card number: four words, so four SSE events in the mock's stream.
const CARD: &str = "4539 1488 0343 6467";

/// Output-only detectors, so the provider receives the value and echoes it back.
const OUTPUT_ONLY: &str = r#"
[guardrails.detectors.payment_card]
direction = "output"
[guardrails.detectors.in_aadhaar]
direction = "output"
[guardrails.detectors.email]
direction = "output"
"#;

fn anthropic_body(model: &str, text: &str) -> Value {
    json!({"model": model, "max_tokens": 50, "messages": [{"role": "user", "content": text}]})
}

fn text_of(recorded: &Value) -> String {
    recorded["body"].to_string()
}

#[tokio::test]
async fn an_aws_key_is_blocked_on_both_surfaces_before_any_provider_call() {
    let (mock, gw) = start("[guardrails]\n").await;
    let prompt = format!("deploy with {AWS_KEY} please");

    let resp = gw
        .post("/v1/chat/completions", &chat("oa/gpt-4o-mini", &prompt))
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(header(&resp, "x-sluice-error"), "guardrail_blocked");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert_eq!(v["error"]["code"], "guardrail_blocked");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("guardrail `aws_access_key`"), "{message}");
    assert!(
        message.contains("secrets manager"),
        "says what to do: {message}"
    );
    assert!(
        !message.contains(AWS_KEY),
        "never echoes the secret: {message}"
    );

    let resp = gw
        .post(
            "/anthropic/v1/messages",
            &anthropic_body("an/claude-haiku-4-5", &prompt),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("aws_access_key")
    );

    // Streamed requests are refused the same way, before any stream starts.
    let mut body = chat("an/claude-haiku-4-5", &prompt);
    body["stream"] = json!(true);
    let resp = gw.post("/v1/chat/completions", &body).await.unwrap();
    assert_eq!(resp.status(), 400);

    assert!(
        mock.requests().await.unwrap().is_empty(),
        "no provider saw the request"
    );
}

#[tokio::test]
async fn emails_are_redacted_in_every_text_field_before_the_provider_sees_them() {
    let (mock, gw) = start("[guardrails]\n").await;
    let body = json!({
        "model": "oa/gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "Escalate to ann.lee@acme-corp.io when unsure."},
            {"role": "user", "content": "Send the report to ann.lee@acme-corp.io."},
            {"role": "assistant", "content": null, "tool_calls": [{
                "id": "call_1", "type": "function",
                "function": {"name": "send_mail", "arguments": "{\"to\": \"ann.lee@acme-corp.io\", \"cc\": \"bob.kim@acme-corp.io\"}"}
            }]},
            {"role": "tool", "tool_call_id": "call_1", "content": "delivered to bob.kim@acme-corp.io"},
            {"role": "user", "content": [{"type": "text", "text": "Now mail ann.lee@acme-corp.io and bob.kim@acme-corp.io again"}]},
        ],
    });
    let resp = gw.post("/v1/chat/completions", &body).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-sluice-guardrails"), "redacted");
    let answer: Value = resp.json().await.unwrap();

    let recorded = mock.requests().await.unwrap();
    let sent = text_of(recorded.last().unwrap());
    assert!(!sent.contains("ann.lee@"), "{sent}");
    assert!(!sent.contains("bob.kim@"), "{sent}");
    let messages = &recorded.last().unwrap()["body"]["messages"];
    assert_eq!(
        messages[0]["content"],
        "Escalate to [REDACTED:email_1] when unsure."
    );
    assert_eq!(
        messages[1]["content"],
        "Send the report to [REDACTED:email_1]."
    );
    let args: Value = serde_json::from_str(
        messages[2]["tool_calls"][0]["function"]["arguments"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        args,
        json!({"to": "[REDACTED:email_1]", "cc": "[REDACTED:email_2]"})
    );
    assert_eq!(messages[3]["content"], "delivered to [REDACTED:email_2]");
    assert_eq!(
        messages[4]["content"][0]["text"],
        "Now mail [REDACTED:email_1] and [REDACTED:email_2] again"
    );
    // The mock echoes what it received: the answer carries the placeholders.
    assert!(
        answer["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .contains("[REDACTED:email_1] and [REDACTED:email_2]")
    );

    // Anthropic: the system prompt and a tool_use input, translated to an OpenAI provider.
    let body = json!({
        "model": "oa/gpt-4o-mini", "max_tokens": 50,
        "system": [{"type": "text", "text": "Owner: carla.diaz@acme-corp.io"}],
        "messages": [
            {"role": "user", "content": "who owns this?"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "lookup", "input": {"email": "carla.diaz@acme-corp.io"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "carla.diaz@acme-corp.io owns it"}]},
        ],
    });
    let resp = gw.post("/anthropic/v1/messages", &body).await.unwrap();
    assert_eq!(resp.status(), 200);
    let sent = text_of(mock.requests().await.unwrap().last().unwrap());
    assert!(!sent.contains("carla.diaz@"), "{sent}");
    assert!(sent.contains("[REDACTED:email_1]"), "{sent}");

    // Responses and embeddings are pass-through JSON, guarded all the same.
    let resp = gw
        .post(
            "/v1/responses",
            &json!({"model": "oa/gpt-4o-mini", "instructions": "cc dora@acme-corp.io", "input": "hi dora@acme-corp.io"}),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let last = mock.requests().await.unwrap().last().cloned().unwrap();
    assert_eq!(last["body"]["instructions"], "cc [REDACTED:email_1]");
    assert_eq!(last["body"]["input"], "hi [REDACTED:email_1]");
    let resp = gw
        .post(
            "/v1/embeddings",
            &json!({"model": "oa/text-embedding-3-small", "input": ["eve@acme-corp.io", "plain"]}),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let last = mock.requests().await.unwrap().last().cloned().unwrap();
    assert_eq!(
        last["body"]["input"],
        json!(["[REDACTED:email_1]", "plain"])
    );
}

#[tokio::test]
async fn complete_answers_are_redacted_and_blocked_answers_replaced() {
    let extra = format!(
        "{OUTPUT_ONLY}\n[[guardrails.rules]]\nid = \"codename\"\ndescription = \"an internal project code name\"\nkeywords = [\"blue falcon\"]\naction = \"block\"\ndirection = \"output\"\n"
    );
    let (mock, gw) = start(&extra).await;

    let prompt = format!("charge {CARD} and mail fay@acme-corp.io");
    let resp = gw
        .post("/v1/chat/completions", &chat("oa/gpt-4o-mini", &prompt))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-sluice-guardrails"), "redacted");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Hello from mock gpt-4o-mini! You said: charge [REDACTED:payment_card_1] and mail [REDACTED:email_1]"
    );
    // Output-only rules leave the request alone: the provider got the real values.
    assert!(text_of(mock.requests().await.unwrap().last().unwrap()).contains(CARD));

    // Translated answers (Anthropic client, OpenAI provider) are guarded in the
    // client's shape.
    let resp = gw
        .post(
            "/anthropic/v1/messages",
            &anthropic_body("oa/gpt-4o-mini", &prompt),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    let text = v["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("[REDACTED:payment_card_1]"), "{text}");
    assert!(!text.contains("4539"), "{text}");

    // A block replaces the answer: 200, finish_reason content_filter, the message.
    let resp = gw
        .post(
            "/v1/chat/completions",
            &chat("oa/gpt-4o-mini", "status of blue falcon?"),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-sluice-guardrails"), "blocked");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "content_filter");
    let content = v["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(content.contains("guardrail `codename`"), "{content}");
    assert!(!content.contains("falcon"), "{content}");
    assert!(v["usage"]["total_tokens"].as_u64().unwrap() > 0);

    let resp = gw
        .post(
            "/anthropic/v1/messages",
            &anthropic_body("an/claude-haiku-4-5", "status of blue falcon?"),
        )
        .await
        .unwrap();
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["stop_reason"], "refusal");
    assert!(
        v["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("codename")
    );
}

/// Streams `body` to `path` and returns the SSE events.
async fn stream(
    gw: &Gateway,
    path: &str,
    mut body: Value,
) -> (String, Vec<(Option<String>, String)>) {
    body["stream"] = json!(true);
    let resp = gw.post(path, &body).await.unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    let events = sse_events(&text);
    (text, events)
}

#[tokio::test]
async fn streamed_answers_are_redacted_even_when_the_value_spans_many_events() {
    let (_mock, gw) = start(OUTPUT_ONLY).await;
    let prompt = format!("please charge {CARD} today");
    let expected =
        "Hello from mock gpt-4o-mini! You said: please charge [REDACTED:payment_card_1] today";

    // OpenAI client: pass-through (oa), translated from Anthropic (an) and Gemini (ge).
    for model in ["oa/gpt-4o-mini", "an/gpt-4o-mini", "ge/gpt-4o-mini"] {
        let (raw, events) = stream(&gw, "/v1/chat/completions", chat(model, &prompt)).await;
        assert!(
            !raw.contains("4539") && !raw.contains("6467"),
            "{model}: {raw}"
        );
        assert_eq!(openai_stream_text(&events), expected, "{model}");
        assert_eq!(events.last().unwrap().1, "[DONE]", "{model}");
        assert!(
            raw.contains(": x-sluice-guardrails=redacted\n"),
            "{model}: {raw}"
        );
    }
    // Anthropic client: pass-through (an) and translated from OpenAI (oa).
    for model in ["an/gpt-4o-mini", "oa/gpt-4o-mini"] {
        let (raw, events) = stream(
            &gw,
            "/anthropic/v1/messages",
            anthropic_body(model, &prompt),
        )
        .await;
        assert!(
            !raw.contains("4539") && !raw.contains("6467"),
            "{model}: {raw}"
        );
        assert_eq!(anthropic_stream_text(&events), expected, "{model}");
        assert_eq!(
            events.last().unwrap().0.as_deref(),
            Some("message_stop"),
            "{model}"
        );
    }
    // Responses API: deltas, and the final events that repeat the whole text.
    let (raw, events) = stream(
        &gw,
        "/v1/responses",
        json!({"model": "oa/gpt-4o-mini", "input": prompt}),
    )
    .await;
    assert!(!raw.contains("4539") && !raw.contains("6467"), "{raw}");
    let deltas: String = events
        .iter()
        .filter(|(n, _)| n.as_deref() == Some("response.output_text.delta"))
        .filter_map(|(_, d)| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| v["delta"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(deltas, expected);
    assert!(raw.contains("response.completed"));
}

#[tokio::test]
async fn streamed_tool_call_arguments_are_scanned() {
    let (_mock, gw) = start(OUTPUT_ONLY).await;
    let mut body = chat("oa/gpt-4o-mini", "look up gina.rossi@acme-corp.io now");
    body["tools"] = json!([{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]);
    let (raw, events) = stream(&gw, "/v1/chat/completions", body).await;
    assert!(!raw.contains("gina.rossi@"), "{raw}");
    let args: String = events
        .iter()
        .filter_map(|(_, d)| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    let args: Value = serde_json::from_str(&args).unwrap();
    assert_eq!(args, json!({"query": "look up [REDACTED:email_1] now"}));

    // Anthropic client: input_json_delta fragments.
    let mut body = anthropic_body("an/claude-haiku-4-5", "look up gina.rossi@acme-corp.io now");
    body["tools"] = json!([{"name": "lookup", "input_schema": {"type": "object"}}]);
    let (raw, events) = stream(&gw, "/anthropic/v1/messages", body).await;
    assert!(!raw.contains("gina.rossi@"), "{raw}");
    let args: String = events
        .iter()
        .filter_map(|(_, d)| serde_json::from_str::<Value>(d).ok())
        .filter(|v| v["delta"]["type"] == "input_json_delta")
        .filter_map(|v| v["delta"]["partial_json"].as_str().map(str::to_owned))
        .collect();
    let args: Value = serde_json::from_str(&args).unwrap();
    assert_eq!(args, json!({"query": "look up [REDACTED:email_1] now"}));
}

#[tokio::test]
async fn a_block_mid_stream_ends_it_with_an_error_event_and_nothing_after() {
    let extra = "[[guardrails.rules]]\nid = \"codename\"\ndescription = \"an internal project code name\"\nkeywords = [\"blue falcon\"]\naction = \"block\"\ndirection = \"output\"\n";
    let (_mock, gw) = start(extra).await;
    let prompt = "what is the plan for blue falcon next week";

    let (raw, events) = stream(&gw, "/v1/chat/completions", chat("oa/gpt-4o-mini", prompt)).await;
    assert!(!raw.contains("falcon"), "{raw}");
    assert!(!raw.contains("[DONE]"), "{raw}");
    let last: Value = serde_json::from_str(&events.last().unwrap().1).unwrap();
    assert_eq!(last["error"]["code"], "guardrail_blocked");
    assert!(
        last["error"]["message"]
            .as_str()
            .unwrap()
            .contains("guardrail `codename`")
    );
    assert!(
        openai_stream_text(&events)
            .starts_with("Hello from mock gpt-4o-mini! You said: what is the plan for"),
        "text before the match is delivered"
    );

    let (raw, events) = stream(
        &gw,
        "/anthropic/v1/messages",
        anthropic_body("an/claude-haiku-4-5", prompt),
    )
    .await;
    assert!(!raw.contains("falcon"), "{raw}");
    assert!(!raw.contains("message_stop"), "{raw}");
    let (name, data) = events.last().unwrap();
    assert_eq!(name.as_deref(), Some("error"));
    let last: Value = serde_json::from_str(data).unwrap();
    assert_eq!(last["type"], "error");
    assert!(
        last["error"]["message"]
            .as_str()
            .unwrap()
            .contains("codename")
    );

    let metrics = gw.metrics().await.unwrap();
    let line = metrics
        .lines()
        .find(|l| {
            l.starts_with("sluice_guardrail_decisions_total")
                && l.contains("rule=\"codename\"")
                && l.contains("action=\"block\"")
                && l.contains("direction=\"output\"")
        })
        .unwrap_or_else(|| panic!("no decision metric in:\n{metrics}"));
    assert!(line.ends_with(" 2"), "{line}");
    assert!(metrics.contains("sluice_guardrail_scan_seconds_bucket"));
}

/// A gateway with governance on: org `acme` with teams `eng` and `sales`, one key each.
struct Governed {
    _mock: MockProvider,
    gw: Gateway,
    _dir: tempfile::TempDir,
    eng_key: String,
    sales_key: String,
}

const ADMIN: &str = "test-admin-token-0123456789";

impl Governed {
    async fn start(guardrails: &str) -> Governed {
        let mock = MockProvider::start(bins!(), &[]).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("sluice.db").to_string_lossy().into_owned();
        let extra = format!(
            "[governance]\ndatabase = \"{db}\"\nadmin_token = \"env:ADMIN_TOKEN\"\n\n{guardrails}"
        );
        let gw = Gateway::start(
            bins!(),
            &config(mock.base_url(), &extra),
            &[("MOCK_KEY", PROVIDER_KEY), ("ADMIN_TOKEN", ADMIN)],
        )
        .await
        .unwrap();
        let mut g = Governed {
            _mock: mock,
            gw,
            _dir: dir,
            eng_key: String::new(),
            sales_key: String::new(),
        };
        g.admin("/orgs", json!({"name": "Acme", "id": "acme"}))
            .await;
        for team in ["eng", "sales"] {
            g.admin(
                "/teams",
                json!({"org_id": "acme", "name": team, "id": team}),
            )
            .await;
        }
        let key = |team: &str| json!({"name": format!("{team}-key"), "team_id": team, "policy": {"content_logging": "full"}});
        g.eng_key = g.admin("/keys", key("eng")).await["secret"]
            .as_str()
            .unwrap()
            .to_owned();
        g.sales_key = g.admin("/keys", key("sales")).await["secret"]
            .as_str()
            .unwrap()
            .to_owned();
        g
    }

    async fn admin(&self, path: &str, body: Value) -> Value {
        let resp = self
            .gw
            .http
            .post(self.gw.url(&format!("/api/v1{path}")))
            .bearer_auth(ADMIN)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let v: Value = resp.json().await.unwrap();
        assert!(status.is_success(), "{path}: {status} {v}");
        v
    }

    async fn chat(&self, key: &str, text: &str) -> reqwest::Response {
        self.gw
            .http
            .post(self.gw.url("/v1/chat/completions"))
            .bearer_auth(key)
            .json(&chat("oa/gpt-4o-mini", text))
            .send()
            .await
            .unwrap()
    }

    /// Audit records, polling until at least `n` exist (the writer is asynchronous).
    async fn audit_at_least(&self, n: usize) -> Vec<Value> {
        self.gw.audit_at_least(ADMIN, n).await.unwrap()
    }
}

#[tokio::test]
async fn audit_records_decisions_and_scopes_limit_rules_to_their_team() {
    let policy = "[guardrails]\n\n[[guardrails.rules]]\nid = \"codename\"\nkeywords = [\"bluebird\"]\naction = \"block\"\nmessage = \"call it 'the project' instead\"\nscope = { team = [\"eng\"] }\n";
    let g = Governed::start(policy).await;

    // The rule is scoped to team `eng`: it blocks eng's key and not sales'.
    let resp = g.chat(&g.eng_key, "how is bluebird going?").await;
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("guardrail `codename`"), "{message}");
    assert!(
        message.contains("call it 'the project' instead"),
        "{message}"
    );
    let resp = g.chat(&g.sales_key, "how is bluebird going?").await;
    assert_eq!(resp.status(), 200);

    let resp = g
        .chat(&g.sales_key, "mail hugo@acme-corp.io and hugo@acme-corp.io")
        .await;
    assert_eq!(resp.status(), 200);
    let resp = g.chat(&g.sales_key, &format!("key {AWS_KEY}")).await;
    assert_eq!(resp.status(), 400);

    let records = g.audit_at_least(4).await;
    let all = serde_json::to_string(&records).unwrap();
    assert!(!all.contains("hugo@"), "audit never holds a redacted value");
    assert!(!all.contains(AWS_KEY), "audit never holds a blocked secret");
    let by_team_and_error = |team: &str, pick: &dyn Fn(&Value) -> bool| {
        records
            .iter()
            .find(|r| r["team_id"] == team && pick(r))
            .cloned()
            .unwrap_or_else(|| panic!("no record for {team}: {all}"))
    };
    let blocked = by_team_and_error("eng", &|r| r["status"] == 400);
    assert_eq!(
        blocked["guardrails"],
        json!([{"rule_id": "codename", "action": "block", "count": 1, "direction": "input"}])
    );
    let redacted = by_team_and_error("sales", &|r| {
        r["guardrails"]
            .as_array()
            .is_some_and(|g| g.iter().any(|d| d["rule_id"] == "email"))
    });
    assert_eq!(
        redacted["guardrails"],
        json!([{"rule_id": "email", "action": "redact", "count": 2, "direction": "input"}])
    );
    // Full content logging keeps the request as it was sent on: redacted.
    let body = redacted["request_body"].as_str().unwrap();
    assert!(
        body.contains("[REDACTED:email_1] and [REDACTED:email_1]"),
        "{body}"
    );
    let key_block = by_team_and_error("sales", &|r| r["status"] == 400);
    assert_eq!(
        key_block["guardrails"],
        json!([{"rule_id": "aws_access_key", "action": "block", "count": 1, "direction": "input"}])
    );
    assert!(key_block["request_body"].is_null());
    let clean = by_team_and_error("sales", &|r| {
        r["status"] == 200 && r["guardrails"].as_array().is_some_and(Vec::is_empty)
    });
    assert!(clean["error"].is_null());
}

/// A stand-in for a customer's classifier: flags any text mentioning "forbidden topic"
/// and remembers what it was sent.
async fn classifier() -> (String, std::sync::Arc<std::sync::Mutex<Vec<Value>>>) {
    use axum::Json;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    let app = axum::Router::new().route(
        "/classify",
        axum::routing::post(move |Json(req): Json<Value>| {
            let log = log.clone();
            async move {
                let flagged = req["texts"].to_string().contains("forbidden topic");
                log.lock().unwrap().push(req);
                Json(json!({"flagged": flagged, "message": "The classifier refused: pick another topic."}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/classify"), seen)
}

#[tokio::test]
async fn the_external_classifier_sees_redacted_text_and_can_block() {
    let (url, seen) = classifier().await;
    let policy = format!("[guardrails.external_hook]\nurl = \"{url}\"\ntimeout_ms = 2000\n");
    let (mock, gw) = start(&policy).await;

    let resp = gw
        .post(
            "/v1/chat/completions",
            &chat("oa/gpt-4o-mini", "ask ivan@acme-corp.io about the weather"),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let sent = seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(sent["direction"], "input");
    assert_eq!(sent["model"], "oa/gpt-4o-mini");
    assert_eq!(
        sent["texts"],
        json!(["ask [REDACTED:email_1] about the weather"])
    );

    let before = mock.requests().await.unwrap().len();
    let resp = gw
        .post(
            "/anthropic/v1/messages",
            &anthropic_body("an/claude-haiku-4-5", "let us discuss the forbidden topic"),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        v["error"]["message"],
        "The classifier refused: pick another topic."
    );
    assert_eq!(mock.requests().await.unwrap().len(), before);
}

#[tokio::test]
async fn an_unreachable_classifier_fails_closed_or_open_as_configured() {
    let port = sluice_tests::harness::closed_port().unwrap();
    let hook = |fail_open: bool| {
        format!(
            "[guardrails.external_hook]\nurl = \"http://127.0.0.1:{port}/classify\"\ntimeout_ms = 500\nfail_open = {fail_open}\n"
        )
    };
    let (mock, gw) = start(&hook(false)).await;
    let resp = gw
        .post("/v1/chat/completions", &chat("oa/gpt-4o-mini", "hello"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("could not be reached"), "{message}");
    assert!(mock.requests().await.unwrap().is_empty());

    let (_mock, gw) = start(&hook(true)).await;
    let resp = gw
        .post("/v1/chat/completions", &chat("oa/gpt-4o-mini", "hello"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}
