//! Tool calls, the Responses API, embeddings, token counts, model lists and Azure paths.

use base64::Engine as _;
use serde_json::{Value, json};

use crate::{Event, anthropic, client, gemini, openai, parse_sse, sse_body, start};

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
