//! The fault queue: each kind of fault, and the grammar of fault specs.

use std::time::Duration;

use serde_json::{Value, json};
use sluice_tests::bins;
use sluice_tests::harness::MockProvider;
use sluice_tests::mock::{BodyFault, FaultSpec};

use crate::{
    DEADLINE, anthropic, chat_request, client, gemini, openai, parse_sse, sse_body, start,
};

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
    let mock = MockProvider::start(bins!(), &["--chunk-delay-ms", "50"])
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
