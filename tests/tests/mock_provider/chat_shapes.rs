//! Chat answers in each provider's shape, buffered and streamed.

use serde_json::{Value, json};

use crate::{
    CHAT_TEXT, Event, anthropic, chat_request, gemini, openai, parse_sse, sse_body, start,
};

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
