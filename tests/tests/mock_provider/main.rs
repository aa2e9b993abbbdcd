//! Tests of the mock provider itself (and the benchmark proxy): each test starts its own
//! `sluice-mock-provider` process through the harness and talks to it with reqwest.
//! One test target; the modules group the tests by what they exercise, and share the
//! helpers below.

#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test code: a failed unwrap or panic fails the test"
)]

mod apis;
mod chat_shapes;
mod errors;
mod faults;
mod recording;

use std::time::Duration;

use serde_json::{Value, json};
use sluice_tests::bins;
use sluice_tests::harness::MockProvider;

const DEADLINE: Duration = Duration::from_secs(10);

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

async fn start() -> MockProvider {
    MockProvider::start(bins!(), &[]).await.unwrap()
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
