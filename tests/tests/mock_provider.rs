//! Tests of the mock provider itself (and the benchmark proxy): each test starts its own
//! `sluice-mock-provider` process through the harness and talks to it with reqwest.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};
use sluice_tests::harness::{ChildServer, MockProvider, bin_path};
use sluice_tests::mock::{BodyFault, FaultSpec};

const DEADLINE: Duration = Duration::from_secs(10);

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

async fn start() -> MockProvider {
    MockProvider::start(&[]).await.unwrap()
}

async fn openai(mock: &MockProvider, path: &str, body: &Value) -> reqwest::Response {
    client()
        .post(mock.url(path))
        .bearer_auth("sk-test")
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn anthropic(mock: &MockProvider, path: &str, body: &Value) -> reqwest::Response {
    client()
        .post(mock.url(path))
        .header("x-api-key", "sk-ant-test")
        .header("anthropic-version", "2023-06-01")
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn gemini(mock: &MockProvider, path_and_query: &str, body: &Value) -> reqwest::Response {
    client()
        .post(mock.url(path_and_query))
        .header("x-goog-api-key", "gemini-test")
        .json(body)
        .send()
        .await
        .unwrap()
}

/// One parsed SSE event: its `event:` name (if any) and its `data:` payload.
#[derive(Debug)]
struct Event {
    name: Option<String>,
    data: String,
}

impl Event {
    fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or_else(|error| panic!("{error}: {}", self.data))
    }
}

/// Splits an SSE body on `separator` ("\n\n", or "\r\n\r\n" for Gemini).
fn parse_sse(body: &str, separator: &str) -> Vec<Event> {
    let line_end = if separator == "\r\n\r\n" {
        "\r\n"
    } else {
        "\n"
    };
    assert!(
        body.ends_with(separator),
        "SSE body must end with a blank line: {body:?}"
    );
    body.split(separator)
        .filter(|block| !block.is_empty())
        .map(|block| {
            let mut event = Event {
                name: None,
                data: String::new(),
            };
            for line in block.split(line_end) {
                if let Some(name) = line.strip_prefix("event: ") {
                    event.name = Some(name.to_owned());
                } else if let Some(data) = line.strip_prefix("data: ") {
                    event.data = data.to_owned();
                } else {
                    panic!("unexpected SSE line {line:?} in {block:?}");
                }
            }
            event
        })
        .collect()
}

async fn sse_body(response: reqwest::Response) -> String {
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("text/event-stream"),
        "{content_type}"
    );
    response.text().await.unwrap()
}

fn chat_request(stream: bool) -> Value {
    json!({
        "model": "mock-gpt",
        "stream": stream,
        "messages": [
            {"role": "system", "content": "You are a test."},
            {"role": "user", "content": "Say hi"},
        ],
    })
}

const CHAT_TEXT: &str = "Hello from mock mock-gpt! You said: Say hi [system: You are a test.]";

#[tokio::test]
async fn openai_chat_non_stream_shape_and_usage() {
    let mock = start().await;
    let response = openai(&mock, "/v1/chat/completions", &chat_request(false)).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("x-request-id"));
    let body: Value = response.json().await.unwrap();
    assert!(body["id"].as_str().unwrap().starts_with("chatcmpl-mock-"));
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], "mock-gpt");
    assert_eq!(body["system_fingerprint"], "fp_mock");
    assert!(body["created"].as_u64().unwrap() > 1_700_000_000);
    let choice = &body["choices"][0];
    assert_eq!(choice["index"], 0);
    assert_eq!(choice["finish_reason"], "stop");
    assert_eq!(choice["logprobs"], Value::Null);
    assert_eq!(choice["message"]["role"], "assistant");
    assert_eq!(choice["message"]["content"], CHAT_TEXT);
    assert_eq!(choice["message"]["refusal"], Value::Null);
    assert!(choice["message"].get("tool_calls").is_none());
    // 21 characters of message text -> ceil(21 / 4) = 6; 13 words in the reply.
    assert_eq!(
        body["usage"],
        json!({
            "prompt_tokens": 6,
            "completion_tokens": 13,
            "total_tokens": 19,
            "prompt_tokens_details": {"cached_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0},
        })
    );
}

#[tokio::test]
async fn openai_content_parts_images_and_json_mode() {
    let mock = start().await;
    let request = json!({
        "model": "mock-gpt",
        "response_format": {"type": "json_object"},
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "Describe"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
        ]}],
    });
    let body: Value = openai(&mock, "/v1/chat/completions", &request)
        .await
        .json()
        .await
        .unwrap();
    let content = body["choices"][0]["message"]["content"].as_str().unwrap();
    let parsed: Value = serde_json::from_str(content).unwrap();
    assert_eq!(
        parsed["answer"],
        "Hello from mock mock-gpt! You said: Describe (2 images)"
    );
}

#[tokio::test]
async fn openai_chat_stream_framing() {
    let mock = start().await;
    let full: Value = openai(&mock, "/v1/chat/completions", &chat_request(false))
        .await
        .json()
        .await
        .unwrap();

    // Without include_usage: no usage anywhere, deltas concatenate to the full text.
    let body = sse_body(openai(&mock, "/v1/chat/completions", &chat_request(true)).await).await;
    assert!(body.ends_with("data: [DONE]\n\n"), "{body}");
    let events = parse_sse(&body, "\n\n");
    assert!(events.iter().all(|event| event.name.is_none()));
    let (done, chunks) = events.split_last().unwrap();
    assert_eq!(done.data, "[DONE]");
    let chunks: Vec<Value> = chunks.iter().map(Event::json).collect();
    assert_eq!(
        chunks[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": ""})
    );
    let mut text = String::new();
    for chunk in &chunks {
        assert_eq!(chunk["object"], "chat.completion.chunk");
        assert_eq!(chunk["model"], "mock-gpt");
        assert_eq!(chunk["system_fingerprint"], "fp_mock");
        assert!(chunk.get("usage").is_none(), "{chunk}");
        if let Some(piece) = chunk["choices"][0]["delta"]["content"].as_str() {
            text.push_str(piece);
        }
    }
    assert_eq!(
        text,
        full["choices"][0]["message"]["content"].as_str().unwrap()
    );
    // One chunk per word, plus the role chunk and the finish chunk.
    assert_eq!(chunks.len(), CHAT_TEXT.split_whitespace().count() + 2);
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"][0]["delta"], json!({}));
    assert_eq!(last["choices"][0]["finish_reason"], "stop");

    // With include_usage: `"usage": null` on every chunk, then a usage-only chunk.
    let mut request = chat_request(true);
    request["stream_options"] = json!({"include_usage": true});
    let body = sse_body(openai(&mock, "/v1/chat/completions", &request).await).await;
    let events = parse_sse(&body, "\n\n");
    let (done, chunks) = events.split_last().unwrap();
    assert_eq!(done.data, "[DONE]");
    let (usage_chunk, chunks) = chunks.split_last().unwrap();
    for chunk in chunks {
        assert_eq!(chunk.json()["usage"], Value::Null);
        assert!(chunk.json().get("usage").is_some());
    }
    let usage_chunk = usage_chunk.json();
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_eq!(usage_chunk["usage"], full["usage"]);
}

#[tokio::test]
async fn anthropic_message_and_stream_event_order() {
    let mock = start().await;
    let mut request = json!({
        "model": "claude-mock",
        "max_tokens": 100,
        "system": [{"type": "text", "text": "Answer briefly."}],
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is this?"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
        ]}],
    });
    let response = anthropic(&mock, "/v1/messages", &request).await;
    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("request-id"));
    let full: Value = response.json().await.unwrap();
    let expected =
        "Hello from mock claude-mock! You said: What is this? (1 images) [system: Answer briefly.]";
    assert!(full["id"].as_str().unwrap().starts_with("msg_mock_"));
    assert_eq!(full["type"], "message");
    assert_eq!(full["role"], "assistant");
    assert_eq!(full["content"], json!([{"type": "text", "text": expected}]));
    assert_eq!(full["stop_reason"], "end_turn");
    assert_eq!(full["stop_sequence"], Value::Null);
    assert_eq!(
        full["usage"],
        json!({
            "input_tokens": 7,
            "output_tokens": expected.split_whitespace().count(),
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        })
    );

    request["stream"] = json!(true);
    let body = sse_body(anthropic(&mock, "/v1/messages", &request).await).await;
    let events = parse_sse(&body, "\n\n");
    let names: Vec<&str> = events
        .iter()
        .map(|event| event.name.as_deref().unwrap())
        .collect();
    let words = expected.split_whitespace().count();
    let mut expected_names = vec!["message_start", "content_block_start", "ping"];
    expected_names.extend(std::iter::repeat_n("content_block_delta", words));
    expected_names.extend(["content_block_stop", "message_delta", "message_stop"]);
    assert_eq!(names, expected_names);
    for event in &events {
        assert_eq!(event.json()["type"], event.name.as_deref().unwrap());
    }
    let start = events[0].json();
    assert_eq!(start["message"]["content"], json!([]));
    assert_eq!(start["message"]["stop_reason"], Value::Null);
    assert_eq!(start["message"]["usage"]["input_tokens"], 7);
    assert_eq!(start["message"]["usage"]["output_tokens"], 1);
    assert_eq!(
        events[1].json()["content_block"],
        json!({"type": "text", "text": ""})
    );
    let text: String = events
        .iter()
        .filter(|event| event.name.as_deref() == Some("content_block_delta"))
        .map(|event| {
            let delta = event.json()["delta"].clone();
            assert_eq!(delta["type"], "text_delta");
            delta["text"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(text, expected);
    let delta = events[events.len() - 2].json();
    assert_eq!(
        delta["delta"],
        json!({"stop_reason": "end_turn", "stop_sequence": null})
    );
    assert_eq!(delta["usage"]["output_tokens"], words);
}

#[tokio::test]
async fn gemini_sse_uses_crlf() {
    let mock = start().await;
    let request = json!({
        "systemInstruction": {"parts": [{"text": "Be kind."}]},
        "contents": [{"role": "user", "parts": [{"text": "Hi Gemini"}]}],
    });
    let full: Value = gemini(
        &mock,
        "/v1beta/models/gemini-mock:generateContent",
        &request,
    )
    .await
    .json()
    .await
    .unwrap();
    let expected = "Hello from mock gemini-mock! You said: Hi Gemini [system: Be kind.]";
    let candidate = &full["candidates"][0];
    assert_eq!(candidate["content"]["parts"], json!([{"text": expected}]));
    assert_eq!(candidate["content"]["role"], "model");
    assert_eq!(candidate["finishReason"], "STOP");
    assert_eq!(full["modelVersion"], "gemini-mock");
    assert!(full["responseId"].as_str().unwrap().starts_with("mock-"));
    let words = expected.split_whitespace().count() as u64;
    assert_eq!(
        full["usageMetadata"],
        json!({"promptTokenCount": 5, "candidatesTokenCount": words, "totalTokenCount": 5 + words})
    );

    let body = sse_body(
        gemini(
            &mock,
            "/v1beta/models/gemini-mock:streamGenerateContent?alt=sse",
            &request,
        )
        .await,
    )
    .await;
    assert!(
        !body.replace("\r\n", "").contains('\n'),
        "every line ending is CRLF"
    );
    let events = parse_sse(&body, "\r\n\r\n");
    assert_eq!(events.len() as u64, words);
    let mut text = String::new();
    for (index, event) in events.iter().enumerate() {
        let chunk = event.json();
        text.push_str(
            chunk["candidates"][0]["content"]["parts"][0]["text"]
                .as_str()
                .unwrap(),
        );
        assert_eq!(
            chunk["usageMetadata"]["candidatesTokenCount"],
            index as u64 + 1
        );
        let is_last = index + 1 == events.len();
        assert_eq!(
            chunk["candidates"][0].get("finishReason").is_some(),
            is_last
        );
    }
    assert_eq!(text, expected);
    assert_eq!(
        events.last().unwrap().json()["candidates"][0]["finishReason"],
        "STOP"
    );

    // Without alt=sse the mock refuses, in Gemini's error shape.
    let response = gemini(
        &mock,
        "/v1beta/models/gemini-mock:streamGenerateContent",
        &request,
    )
    .await;
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["status"], "INVALID_ARGUMENT");
    assert_eq!(error["error"]["code"], 400);
}

#[tokio::test]
async fn tool_calls_in_each_shape() {
    let mock = start().await;

    // OpenAI, buffered and streamed.
    let mut request = json!({
        "model": "mock-gpt",
        "messages": [{"role": "user", "content": "weather in Paris"}],
        "tools": [
            {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}},
            {"type": "function", "function": {"name": "other"}},
        ],
    });
    let body: Value = openai(&mock, "/v1/chat/completions", &request)
        .await
        .json()
        .await
        .unwrap();
    let choice = &body["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(choice["message"]["content"], Value::Null);
    let call = &choice["message"]["tool_calls"][0];
    assert!(call["id"].as_str().unwrap().starts_with("call_mock_"));
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "get_weather");
    let arguments: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(arguments, json!({"query": "weather in Paris"}));
    assert_eq!(body["usage"]["completion_tokens"], 10);

    request["stream"] = json!(true);
    let body = sse_body(openai(&mock, "/v1/chat/completions", &request).await).await;
    let events = parse_sse(&body, "\n\n");
    let chunks: Vec<Value> = events[..events.len() - 1].iter().map(Event::json).collect();
    let first = &chunks[0]["choices"][0]["delta"]["tool_calls"][0];
    assert_eq!(first["index"], 0);
    assert_eq!(first["type"], "function");
    assert_eq!(
        first["function"],
        json!({"name": "get_weather", "arguments": ""})
    );
    let fragments: Vec<&str> = chunks[1..]
        .iter()
        .filter_map(|chunk| {
            chunk["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str()
        })
        .collect();
    assert!(fragments.len() >= 2, "{fragments:?}");
    let arguments: Value = serde_json::from_str(&fragments.concat()).unwrap();
    assert_eq!(arguments, json!({"query": "weather in Paris"}));
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "tool_calls"
    );

    // tool_choice "none" and a tool result both answer with text.
    request["stream"] = json!(false);
    request["tool_choice"] = json!("none");
    let body: Value = openai(&mock, "/v1/chat/completions", &request)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    let request = json!({
        "model": "mock-gpt",
        "tools": request["tools"],
        "messages": [
            {"role": "user", "content": "weather in Paris"},
            {"role": "assistant", "content": null, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": call["id"], "content": "sunny, 21C"},
        ],
    });
    let body: Value = openai(&mock, "/v1/chat/completions", &request)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "Tool said: sunny, 21C"
    );

    // Anthropic, buffered and streamed.
    let mut request = json!({
        "model": "claude-mock",
        "max_tokens": 50,
        "tools": [{"name": "lookup", "input_schema": {"type": "object"}}],
        "messages": [{"role": "user", "content": "find cats"}],
    });
    let body: Value = anthropic(&mock, "/v1/messages", &request)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["stop_reason"], "tool_use");
    let block = &body["content"][0];
    assert_eq!(block["type"], "tool_use");
    assert!(block["id"].as_str().unwrap().starts_with("toolu_mock_"));
    assert_eq!(block["name"], "lookup");
    assert_eq!(block["input"], json!({"query": "find cats"}));
    request["stream"] = json!(true);
    let body = sse_body(anthropic(&mock, "/v1/messages", &request).await).await;
    let events = parse_sse(&body, "\n\n");
    let start = events
        .iter()
        .find(|event| event.name.as_deref() == Some("content_block_start"))
        .unwrap()
        .json();
    assert_eq!(start["content_block"]["type"], "tool_use");
    assert_eq!(start["content_block"]["input"], json!({}));
    let fragments: Vec<String> = events
        .iter()
        .filter(|event| event.name.as_deref() == Some("content_block_delta"))
        .map(|event| {
            let delta = event.json()["delta"].clone();
            assert_eq!(delta["type"], "input_json_delta");
            delta["partial_json"].as_str().unwrap().to_owned()
        })
        .collect();
    assert!(fragments.len() >= 2);
    let input: Value = serde_json::from_str(&fragments.concat()).unwrap();
    assert_eq!(input, json!({"query": "find cats"}));
    let tool_result = json!({
        "model": "claude-mock",
        "max_tokens": 50,
        "tools": request["tools"],
        "messages": [
            {"role": "user", "content": "find cats"},
            {"role": "assistant", "content": [block]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": block["id"], "content": [{"type": "text", "text": "3 cats"}]},
            ]},
        ],
    });
    let body: Value = anthropic(&mock, "/v1/messages", &tool_result)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["content"][0]["text"], "Tool said: 3 cats");

    // Gemini.
    let request = json!({
        "contents": [{"role": "user", "parts": [{"text": "find dogs"}]}],
        "tools": [{"functionDeclarations": [{"name": "search_pets"}]}],
    });
    let body: Value = gemini(&mock, "/v1beta/models/g:generateContent", &request)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        body["candidates"][0]["content"]["parts"][0]["functionCall"],
        json!({"name": "search_pets", "args": {"query": "find dogs"}})
    );
    assert_eq!(body["candidates"][0]["finishReason"], "STOP");
    let request = json!({
        "contents": [
            {"role": "user", "parts": [{"text": "find dogs"}]},
            {"role": "model", "parts": [{"functionCall": {"name": "search_pets", "args": {}}}]},
            {"role": "user", "parts": [{"functionResponse": {"name": "search_pets", "response": {"count": 2}}}]},
        ],
        "tools": [{"functionDeclarations": [{"name": "search_pets"}]}],
    });
    let body: Value = gemini(&mock, "/v1beta/models/g:generateContent", &request)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        body["candidates"][0]["content"]["parts"][0]["text"],
        "Tool said: {\"count\":2}"
    );
}

#[tokio::test]
async fn responses_api_buffered_and_streamed() {
    let mock = start().await;
    let mut request = json!({
        "model": "mock-gpt",
        "instructions": "Be short.",
        "input": [{"role": "user", "content": [{"type": "input_text", "text": "Hello there"}]}],
    });
    let full: Value = openai(&mock, "/v1/responses", &request)
        .await
        .json()
        .await
        .unwrap();
    let expected = "Hello from mock mock-gpt! You said: Hello there [system: Be short.]";
    assert!(full["id"].as_str().unwrap().starts_with("resp_mock_"));
    assert_eq!(full["object"], "response");
    assert_eq!(full["status"], "completed");
    assert_eq!(full["instructions"], "Be short.");
    assert_eq!(full["error"], Value::Null);
    let item = &full["output"][0];
    assert_eq!(item["type"], "message");
    assert!(item["id"].as_str().unwrap().starts_with("msg_mock_"));
    assert_eq!(item["role"], "assistant");
    assert_eq!(item["content"][0]["type"], "output_text");
    assert_eq!(item["content"][0]["text"], expected);
    assert_eq!(item["content"][0]["annotations"], json!([]));
    let words = expected.split_whitespace().count();
    // "Be short." + "Hello there" = 20 characters -> 5 tokens.
    assert_eq!(full["usage"]["input_tokens"], 5);
    assert_eq!(full["usage"]["output_tokens"], words);
    assert_eq!(full["usage"]["total_tokens"], 5 + words);
    assert_eq!(full["usage"]["input_tokens_details"]["cached_tokens"], 0);
    assert_eq!(
        full["usage"]["output_tokens_details"]["reasoning_tokens"],
        0
    );

    request["stream"] = json!(true);
    let body = sse_body(openai(&mock, "/v1/responses", &request).await).await;
    let events = parse_sse(&body, "\n\n");
    let names: Vec<&str> = events
        .iter()
        .map(|event| event.name.as_deref().unwrap())
        .collect();
    let mut expected_names = vec![
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ];
    expected_names.extend(std::iter::repeat_n("response.output_text.delta", words));
    expected_names.extend([
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]);
    assert_eq!(names, expected_names);
    let mut text = String::new();
    for (index, event) in events.iter().enumerate() {
        let data = event.json();
        assert_eq!(data["type"], event.name.as_deref().unwrap());
        assert_eq!(data["sequence_number"], index);
        if event.name.as_deref() == Some("response.output_text.delta") {
            assert_eq!(data["output_index"], 0);
            assert_eq!(data["content_index"], 0);
            assert_eq!(data["item_id"], events[2].json()["item"]["id"]);
            text.push_str(data["delta"].as_str().unwrap());
        }
    }
    assert_eq!(text, expected);
    assert_eq!(events[0].json()["response"]["status"], "in_progress");
    assert_eq!(events[0].json()["response"]["output"], json!([]));
    let completed = events.last().unwrap().json();
    assert_eq!(completed["response"]["status"], "completed");
    assert_eq!(
        completed["response"]["output"][0]["content"][0]["text"],
        expected
    );
    assert_eq!(completed["response"]["usage"], full["usage"]);
}

#[tokio::test]
async fn embeddings_float_base64_and_gemini() {
    let mock = start().await;
    let request = json!({"model": "mock-embedding", "input": ["alpha", "beta"]});
    let floats: Value = openai(&mock, "/v1/embeddings", &request)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(floats["object"], "list");
    assert_eq!(floats["model"], "mock-embedding");
    // ceil(5 / 4) + ceil(4 / 4) = 3.
    assert_eq!(
        floats["usage"],
        json!({"prompt_tokens": 3, "total_tokens": 3})
    );
    let data = floats["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    assert_eq!(data[1]["object"], "embedding");
    assert_eq!(data[1]["index"], 1);
    let alpha: Vec<f32> = data[0]["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|value| value.as_f64().unwrap() as f32)
        .collect();
    assert_eq!(alpha.len(), 8);
    assert!(alpha.iter().all(|value| (-1.0..=1.0).contains(value)));
    assert_ne!(data[0]["embedding"], data[1]["embedding"]);

    let mut request = request.clone();
    request["encoding_format"] = json!("base64");
    let encoded: Value = openai(&mock, "/v1/embeddings", &request)
        .await
        .json()
        .await
        .unwrap();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded["data"][0]["embedding"].as_str().unwrap())
        .unwrap();
    let decoded: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|chunk| f32::from_le_bytes(chunk.try_into().unwrap()))
        .collect();
    assert_eq!(decoded, alpha);

    // Token arrays are inputs too.
    let tokens: Value = openai(
        &mock,
        "/v1/embeddings",
        &json!({"model": "m", "input": [[1, 2, 3], [4]]}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(tokens["data"].as_array().unwrap().len(), 2);
    assert_eq!(tokens["usage"]["prompt_tokens"], 4);

    let single: Value = gemini(
        &mock,
        "/v1beta/models/text-embedding-004:embedContent",
        &json!({"content": {"parts": [{"text": "alpha"}]}}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(single["embedding"]["values"], data[0]["embedding"]);
    let batch: Value = gemini(
        &mock,
        "/v1beta/models/text-embedding-004:batchEmbedContents",
        &json!({"requests": [
            {"model": "models/text-embedding-004", "content": {"parts": [{"text": "alpha"}]}},
            {"model": "models/text-embedding-004", "content": {"parts": [{"text": "beta"}]}},
        ]}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(batch["embeddings"][1]["values"], data[1]["embedding"]);
}

#[tokio::test]
async fn token_counts_and_model_list() {
    let mock = start().await;
    let counted: Value = anthropic(
        &mock,
        "/v1/messages/count_tokens",
        &json!({"model": "claude-mock", "messages": [{"role": "user", "content": "12345678"}]}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(counted, json!({"input_tokens": 2}));
    let counted: Value = gemini(
        &mock,
        "/v1beta/models/g:countTokens",
        &json!({"contents": [{"parts": [{"text": "123456789"}]}]}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(counted, json!({"totalTokens": 3}));
    let models: Value = client()
        .get(mock.url("/v1/models"))
        .bearer_auth("sk-test")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models["object"], "list");
    assert_eq!(
        models["data"][0],
        json!({"id": "mock-gpt", "object": "model", "created": 1_700_000_000, "owned_by": "mock"})
    );
}

#[tokio::test]
async fn azure_paths_require_api_version_and_api_key() {
    let mock = start().await;
    let path = "/openai/deployments/my-deploy/chat/completions";
    let request = json!({"messages": [{"role": "user", "content": "hi"}]});
    let ok: Value = client()
        .post(mock.url(&format!("{path}?api-version=2024-10-21")))
        .header("api-key", "azure-key")
        .json(&request)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ok["model"], "my-deploy");
    assert_eq!(
        ok["choices"][0]["message"]["content"],
        "Hello from mock my-deploy! You said: hi"
    );
    let no_version = client()
        .post(mock.url(path))
        .header("api-key", "azure-key")
        .json(&request)
        .send()
        .await
        .unwrap();
    assert_eq!(no_version.status(), 400);
    let no_key = client()
        .post(mock.url(&format!("{path}?api-version=2024-10-21")))
        .bearer_auth("not-the-azure-header")
        .json(&request)
        .send()
        .await
        .unwrap();
    assert_eq!(no_key.status(), 401);
    let embeddings: Value = client()
        .post(mock.url("/openai/deployments/embed-deploy/embeddings?api-version=2024-10-21"))
        .header("api-key", "azure-key")
        .json(&json!({"input": "x"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(embeddings["model"], "embed-deploy");
}

#[tokio::test]
async fn fault_queue_then_success() {
    let mock = start().await;
    mock.push_faults(&["status=503", "", "status=500"]).await;
    let first = openai(&mock, "/v1/chat/completions", &chat_request(false)).await;
    assert_eq!(first.status(), 503);
    let error: Value = first.json().await.unwrap();
    assert_eq!(error["error"]["type"], "server_error");
    assert_eq!(error["error"]["code"], Value::Null);
    assert_eq!(error["error"]["param"], Value::Null);
    assert!(error["error"]["message"].as_str().unwrap().contains("503"));
    // The empty spec means "no fault" for exactly one request.
    let second = openai(&mock, "/v1/chat/completions", &chat_request(false)).await;
    assert_eq!(second.status(), 200);
    // The next fault shapes its error for whichever API pops it.
    let third = anthropic(&mock, "/v1/messages", &json!({})).await;
    assert_eq!(third.status(), 500);
    let error: Value = third.json().await.unwrap();
    assert_eq!(
        error["error"]["type"], "api_error",
        "Anthropic-shaped: {error}"
    );
    assert_eq!(error["type"], "error");
    let fourth = openai(&mock, "/v1/chat/completions", &chat_request(false)).await;
    assert_eq!(fourth.status(), 200);

    // DELETE clears what is left; bad specs are refused whole.
    mock.push_faults(&["status=529", "status=529"]).await;
    mock.clear_faults().await.unwrap();
    let after_clear = anthropic(
        &mock,
        "/v1/messages",
        &json!({"model": "c", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(after_clear.status(), 200);
    let refused = mock.try_push_faults(&["status=503", "explode"]).await;
    assert!(refused.is_err());
    let still_ok = openai(&mock, "/v1/chat/completions", &chat_request(false)).await;
    assert_eq!(still_ok.status(), 200);
}

#[tokio::test]
async fn overloaded_anthropic_and_gemini_error_shapes() {
    let mock = start().await;
    mock.push_faults(&["status=529", "status=429"]).await;
    let response = anthropic(&mock, "/v1/messages", &json!({})).await;
    assert_eq!(response.status().as_u16(), 529);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["type"], "overloaded_error");
    let response = gemini(&mock, "/v1beta/models/g:generateContent", &json!({})).await;
    assert_eq!(response.status(), 429);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["code"], 429);
    assert_eq!(error["error"]["status"], "RESOURCE_EXHAUSTED");
}

#[tokio::test]
async fn retry_after_header() {
    let mock = start().await;
    mock.push_faults(&["status=429;retry_after=7"]).await;
    let response = openai(&mock, "/v1/chat/completions", &chat_request(false)).await;
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "7");
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["type"], "requests");
    assert_eq!(error["error"]["code"], "rate_limit_exceeded");

    // The header fault applies to every request that carries it.
    for _ in 0..2 {
        let response = client()
            .post(mock.url("/v1/chat/completions"))
            .bearer_auth("sk-test")
            .header("x-mock-fault", "status=503; retry_after=2")
            .json(&chat_request(false))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()["retry-after"], "2");
    }

    // A `limited-` key is a 429 with Retry-After: 1.
    let response = client()
        .post(mock.url("/v1/chat/completions"))
        .bearer_auth("limited-key")
        .json(&chat_request(false))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "1");
}

#[tokio::test]
async fn reset_after_yields_body_error() {
    let mock = start().await;
    let response = client()
        .post(mock.url("/v1/chat/completions"))
        .bearer_auth("sk-test")
        .header("x-mock-fault", "reset_after=2")
        .json(&chat_request(true))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut response = response;
    let mut received = Vec::new();
    let error = loop {
        match response.chunk().await {
            Ok(Some(chunk)) => received.extend_from_slice(&chunk),
            Ok(None) => panic!("body ended cleanly: {}", String::from_utf8_lossy(&received)),
            Err(error) => break error,
        }
    };
    assert!(
        error.is_body() || error.is_decode() || error.is_request(),
        "{error:?}"
    );
    let received = String::from_utf8(received).unwrap();
    assert!(received.contains("\"content\":\"Hello \""), "{received}");
    assert!(!received.contains("[DONE]"));
    assert!(
        !received.contains("\"content\":\"mock \""),
        "at most two words: {received}"
    );
    let stats = mock
        .wait_for(|stats| stats["in_flight"] == 0, DEADLINE)
        .await
        .unwrap();
    assert_eq!(stats["streams_aborted"], 1);
    assert_eq!(stats["streams_completed"], 0);

    // A buffered answer is cut after its headers.
    mock.push_faults(&["reset_after=1"]).await;
    let response = openai(&mock, "/v1/chat/completions", &chat_request(false)).await;
    assert_eq!(response.status(), 200);
    assert!(response.bytes().await.is_err());
}

#[tokio::test]
async fn error_event_after_ends_with_the_provider_error() {
    let mock = start().await;
    mock.push_faults(&[
        "error_event_after=1",
        "error_event_after=2",
        "error_event_after=0",
    ])
    .await;
    let mut request = json!({
        "model": "c", "max_tokens": 5, "stream": true,
        "messages": [{"role": "user", "content": "x"}],
    });
    let body = sse_body(anthropic(&mock, "/v1/messages", &request).await).await;
    let events = parse_sse(&body, "\n\n");
    let last = events.last().unwrap();
    assert_eq!(last.name.as_deref(), Some("error"));
    assert_eq!(
        last.json(),
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    );
    let deltas = events
        .iter()
        .filter(|event| event.name.as_deref() == Some("content_block_delta"))
        .count();
    assert_eq!(deltas, 1);

    request = chat_request(true);
    let body = sse_body(openai(&mock, "/v1/chat/completions", &request).await).await;
    let events = parse_sse(&body, "\n\n");
    let last = events.last().unwrap().json();
    assert_eq!(last["error"]["type"], "server_error");
    assert!(!body.contains("[DONE]"));

    let body = sse_body(
        gemini(
            &mock,
            "/v1beta/models/g:streamGenerateContent?alt=sse",
            &json!({"contents": [{"parts": [{"text": "x"}]}]}),
        )
        .await,
    )
    .await;
    let events = parse_sse(&body, "\r\n\r\n");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].json()["error"]["status"], "UNAVAILABLE");
}

#[tokio::test]
async fn cancelled_stream_is_counted() {
    let mock = MockProvider::start(&["--chunk-delay-ms", "50"])
        .await
        .unwrap();
    let mut response = openai(&mock, "/v1/chat/completions", &chat_request(true)).await;
    assert_eq!(response.status(), 200);
    let first = response.chunk().await.unwrap().unwrap();
    assert!(first.starts_with(b"data: "));
    let stats = mock.stats().await.unwrap();
    assert_eq!(stats["streams_started"], 1);
    assert_eq!(stats["in_flight"], 1);
    drop(response);
    let stats = mock
        .wait_for(
            |stats| stats["streams_cancelled"] == 1 && stats["in_flight"] == 0,
            DEADLINE,
        )
        .await
        .unwrap();
    assert_eq!(stats["streams_completed"], 0);
    assert_eq!(stats["max_in_flight"], 1);
}

#[tokio::test]
async fn stall_after_keeps_the_connection_open() {
    let mock = start().await;
    mock.push_faults(&["stall_after=1"]).await;
    let mut response = openai(&mock, "/v1/chat/completions", &chat_request(true)).await;
    let mut received = Vec::new();
    while !String::from_utf8_lossy(&received).contains("Hello ") {
        received.extend_from_slice(&response.chunk().await.unwrap().unwrap());
    }
    // Nothing more arrives while stalled (a bounded wait for an absence of data).
    let next = tokio::time::timeout(Duration::from_millis(300), response.chunk()).await;
    assert!(next.is_err(), "expected a stall, got {next:?}");
    drop(response);
    mock.wait_for(
        |stats| stats["streams_cancelled"] == 1 && stats["in_flight"] == 0,
        DEADLINE,
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn hang_is_dropped_when_the_client_leaves() {
    let mock = start().await;
    let started = client()
        .post(mock.url("/v1/chat/completions"))
        .bearer_auth("sk-test")
        .header("x-mock-fault", "hang")
        .timeout(Duration::from_millis(300))
        .json(&chat_request(false))
        .send()
        .await;
    assert!(started.unwrap_err().is_timeout());
    mock.wait_for(
        |stats| stats["in_flight"] == 0 && stats["requests_total"] == 1,
        DEADLINE,
    )
    .await
    .unwrap();
    // The mock is still healthy afterwards.
    let response = openai(&mock, "/v1/chat/completions", &chat_request(false)).await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn latency_fault_delays_headers() {
    let mock = start().await;
    mock.push_faults(&["latency_ms=300"]).await;
    let started = std::time::Instant::now();
    let response = openai(&mock, "/v1/chat/completions", &chat_request(false)).await;
    assert_eq!(response.status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn auth_errors_per_shape() {
    let mock = start().await;
    let chat = chat_request(false);

    let missing = client()
        .post(mock.url("/v1/chat/completions"))
        .json(&chat)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 401);
    let error: Value = missing.json().await.unwrap();
    assert_eq!(error["error"]["type"], "invalid_request_error");
    assert_eq!(error["error"]["code"], "invalid_api_key");
    for (key, status, code) in [
        ("bad-key", 401, "invalid_api_key"),
        ("forbidden-key", 403, "permission_denied"),
    ] {
        let response = client()
            .post(mock.url("/v1/chat/completions"))
            .bearer_auth(key)
            .json(&chat)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status);
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["code"], code);
    }

    let messages =
        json!({"model": "c", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]});
    let missing = client()
        .post(mock.url("/v1/messages"))
        .header("anthropic-version", "2023-06-01")
        .json(&messages)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 401);
    let error: Value = missing.json().await.unwrap();
    assert_eq!(
        error,
        json!({"type": "error", "error": {"type": "authentication_error", "message": "x-api-key header is required"}})
    );
    let no_version = client()
        .post(mock.url("/v1/messages"))
        .header("x-api-key", "k")
        .json(&messages)
        .send()
        .await
        .unwrap();
    assert_eq!(no_version.status(), 400);
    let error: Value = no_version.json().await.unwrap();
    assert_eq!(error["error"]["type"], "invalid_request_error");
    let forbidden = client()
        .post(mock.url("/v1/messages"))
        .header("x-api-key", "forbidden-k")
        .header("anthropic-version", "2023-06-01")
        .json(&messages)
        .send()
        .await
        .unwrap();
    assert_eq!(forbidden.status(), 403);
    let error: Value = forbidden.json().await.unwrap();
    assert_eq!(error["error"]["type"], "permission_error");

    let contents = json!({"contents": [{"parts": [{"text": "x"}]}]});
    let missing = client()
        .post(mock.url("/v1beta/models/g:generateContent"))
        .json(&contents)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 401);
    let error: Value = missing.json().await.unwrap();
    assert_eq!(error["error"]["code"], 401);
    assert_eq!(error["error"]["status"], "UNAUTHENTICATED");
    let by_query = client()
        .post(mock.url("/v1beta/models/g:generateContent?key=query-key"))
        .json(&contents)
        .send()
        .await
        .unwrap();
    assert_eq!(by_query.status(), 200);
    let bad = client()
        .post(mock.url("/v1beta/models/g:generateContent?key=bad-key"))
        .json(&contents)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
}

#[tokio::test]
async fn validation_errors_in_each_shape() {
    let mock = start().await;
    let malformed = client()
        .post(mock.url("/v1/chat/completions"))
        .bearer_auth("k")
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);
    let error: Value = malformed.json().await.unwrap();
    assert_eq!(error["error"]["type"], "invalid_request_error");

    let malformed = client()
        .post(mock.url("/v1/messages"))
        .header("x-api-key", "k")
        .header("anthropic-version", "2023-06-01")
        .body("[")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);
    let error: Value = malformed.json().await.unwrap();
    assert_eq!(error["error"]["type"], "invalid_request_error");

    let malformed = client()
        .post(mock.url("/v1beta/models/g:generateContent"))
        .header("x-goog-api-key", "k")
        .body("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), 400);
    let error: Value = malformed.json().await.unwrap();
    assert_eq!(error["error"]["status"], "INVALID_ARGUMENT");

    for body in [
        json!({"messages": [{"role": "user", "content": "x"}]}),
        json!({"model": "m"}),
        json!({"model": "m", "messages": []}),
    ] {
        let response = openai(&mock, "/v1/chat/completions", &body).await;
        assert_eq!(response.status(), 400, "{body}");
    }
    for body in [
        json!({"messages": [{"role": "user", "content": "x"}], "max_tokens": 5}),
        json!({"model": "m", "messages": [{"role": "user", "content": "x"}]}),
        json!({"model": "m", "messages": [], "max_tokens": 5}),
    ] {
        let response = anthropic(&mock, "/v1/messages", &body).await;
        assert_eq!(response.status(), 400, "{body}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["type"], "invalid_request_error");
    }
    let response = gemini(
        &mock,
        "/v1beta/models/g:generateContent",
        &json!({"contents": []}),
    )
    .await;
    assert_eq!(response.status(), 400);
    for body in [json!({"model": "m"}), json!({"model": "m", "input": []})] {
        let response = openai(&mock, "/v1/embeddings", &body).await;
        assert_eq!(response.status(), 400, "{body}");
        let response = openai(&mock, "/v1/responses", &body).await;
        assert_eq!(response.status(), 400, "{body}");
    }
}

#[tokio::test]
async fn requests_are_recorded_with_unknown_fields() {
    let mock = start().await;
    let mut request = chat_request(false);
    request["x_custom_field"] = json!({"nested": [1, 2]});
    let response = client()
        .post(mock.url("/v1/chat/completions?trace=1"))
        .bearer_auth("sk-test")
        .header("X-Custom-Header", "Value")
        .json(&request)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let _ = client().get(mock.url("/_mock/stats")).send().await.unwrap();
    let recorded = mock.requests().await.unwrap();
    assert_eq!(recorded.len(), 1, "/_mock/ calls are not recorded");
    let only = &recorded[0];
    assert_eq!(only["method"], "POST");
    assert_eq!(only["path"], "/v1/chat/completions");
    assert_eq!(only["query"], "trace=1");
    assert_eq!(only["headers"]["x-custom-header"], "Value");
    assert_eq!(only["headers"]["authorization"], "Bearer sk-test");
    assert_eq!(only["body"], request);

    let stats = mock.stats().await.unwrap();
    assert_eq!(stats["requests_total"], 1);
    assert_eq!(stats["by_path"], json!({"/v1/chat/completions": 1}));
    assert_eq!(stats["streams_started"], 0);

    mock.reset().await.unwrap();
    assert!(mock.requests().await.unwrap().is_empty());
    assert_eq!(mock.stats().await.unwrap()["requests_total"], 0);
}

#[tokio::test]
async fn unknown_paths_are_recorded_and_404() {
    let mock = start().await;
    let response = client()
        .post(mock.url("/v1/not-a-thing"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let error: Value = response.json().await.unwrap();
    assert!(error["error"]["message"].is_string());
    assert_eq!(mock.requests().await.unwrap()[0]["path"], "/v1/not-a-thing");
}

#[test]
fn fault_grammar() {
    let fault = FaultSpec::parse(" status=429 ; retry_after=2;latency_ms=5").unwrap();
    assert_eq!(fault.status.map(|status| status.as_u16()), Some(429));
    assert_eq!(fault.retry_after, Some(2));
    assert_eq!(fault.latency, Some(Duration::from_millis(5)));
    assert!(!fault.hang);
    assert_eq!(FaultSpec::parse("").unwrap(), FaultSpec::default());
    assert_eq!(FaultSpec::parse(" ; ").unwrap(), FaultSpec::default());
    assert!(FaultSpec::parse("hang").unwrap().hang);
    assert_eq!(
        FaultSpec::parse("chunk_delay_ms=7").unwrap().chunk_delay,
        Some(Duration::from_millis(7))
    );
    assert_eq!(
        FaultSpec::parse("reset_after=3").unwrap().body,
        Some(BodyFault::Reset { after: 3 })
    );
    assert_eq!(
        FaultSpec::parse("stall_after=0").unwrap().body,
        Some(BodyFault::Stall { after: 0 })
    );
    assert_eq!(
        FaultSpec::parse("error_event_after=1").unwrap().body,
        Some(BodyFault::ErrorEvent { after: 1 })
    );
    for bad in [
        "status=200",
        "status=abc",
        "explode=1",
        "latency_ms",
        "reset_after=1;stall_after=2",
    ] {
        assert!(FaultSpec::parse(bad).is_err(), "{bad}");
    }
}

#[tokio::test]
async fn bench_proxy_passes_streams_through() {
    let mock = MockProvider::start(&[]).await.unwrap();
    let proxy = ChildServer::spawn(
        &bin_path("sluice-bench-proxy").unwrap(),
        &["--listen", "127.0.0.1:0", "--upstream", mock.base_url()],
        &[],
    )
    .await
    .unwrap();
    let direct = sse_body(openai(&mock, "/v1/chat/completions", &chat_request(true)).await).await;
    let proxied = client()
        .post(proxy.url("/v1/chat/completions?via=proxy"))
        .bearer_auth("sk-test")
        .json(&chat_request(true))
        .send()
        .await
        .unwrap();
    let proxied = sse_body(proxied).await;
    // Ids and timestamps differ; the framing and the text do not.
    let text = |body: &str| -> String {
        parse_sse(body, "\n\n")
            .iter()
            .filter(|event| event.data != "[DONE]")
            .filter_map(|event| {
                event.json()["choices"][0]["delta"]["content"]
                    .as_str()
                    .map(str::to_owned)
            })
            .collect()
    };
    assert_eq!(text(&direct), text(&proxied));
    assert!(proxied.ends_with("data: [DONE]\n\n"));
    let recorded = mock.requests().await.unwrap();
    let last = recorded.last().unwrap();
    assert_eq!(last["query"], "via=proxy");
    assert_eq!(last["headers"]["host"], mock.addr().to_string());
    assert_eq!(last["headers"]["authorization"], "Bearer sk-test");
}
