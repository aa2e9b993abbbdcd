//! What the mock records, and the benchmark proxy in front of it.

use serde_json::{Value, json};
use sluice_tests::bins;
use sluice_tests::harness::{ChildServer, MockProvider};

use crate::{chat_request, client, openai, parse_sse, sse_body, start};

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

#[tokio::test]
async fn bench_proxy_passes_streams_through() {
    let mock = MockProvider::start(bins!(), &[]).await.unwrap();
    let proxy = ChildServer::spawn(
        bins!().bench_proxy(),
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
