//! Shared setup for the gateway end-to-end tests.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation is the failure"
)]

use serde_json::{Value, json};
use sluice_tests::bins;
use sluice_tests::harness::{Gateway, MockProvider};

/// The provider key the gateway holds (the mock records what it receives).
pub const PROVIDER_KEY: &str = "provider-secret";

/// A gateway config with three providers on one mock: `oa` (OpenAI), `an` (Anthropic),
/// `ge` (Gemini), fast backoff, plus `extra` TOML appended.
pub fn config(mock: &str, extra: &str) -> String {
    config_with(mock, "", extra)
}

/// [`config`] with `keys` too: dotted keys at the top level, before any table
/// (`server.idle_timeout_ms = 600`, `governance.mode = "open"`).
pub fn config_with(mock: &str, keys: &str, extra: &str) -> String {
    format!(
        r#"
server.listen = "127.0.0.1:0"
routing.backoff_base_ms = 5
routing.backoff_max_ms = 20
{keys}

[providers.oa]
kind = "openai"
base_url = "{mock}/v1"
keys = [{{ value = "env:MOCK_KEY" }}]
models = ["gpt-4o-mini"]

[providers.an]
kind = "anthropic"
base_url = "{mock}"
keys = [{{ value = "env:MOCK_KEY" }}]

[providers.ge]
kind = "gemini"
base_url = "{mock}/v1beta"
keys = [{{ value = "env:MOCK_KEY" }}]

{extra}
"#
    )
}

/// A mock and a gateway in front of it.
pub async fn start(extra: &str) -> (MockProvider, Gateway) {
    start_with(&[], extra).await
}

pub async fn start_with(mock_args: &[&str], extra: &str) -> (MockProvider, Gateway) {
    let mock = MockProvider::start(bins!(), mock_args).await.unwrap();
    let gw = Gateway::start(
        bins!(),
        &config(mock.base_url(), extra),
        &[("MOCK_KEY", PROVIDER_KEY)],
    )
    .await
    .unwrap();
    (mock, gw)
}

/// A gateway in front of an already running mock, with `extra` TOML appended (for
/// providers that point at the mock with their own settings).
pub async fn gateway_for(mock: &MockProvider, extra: &str) -> Gateway {
    Gateway::start(
        bins!(),
        &config(mock.base_url(), extra),
        &[("MOCK_KEY", PROVIDER_KEY)],
    )
    .await
    .unwrap()
}

pub fn chat(model: &str, text: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": text}]})
}

pub fn header(resp: &reqwest::Response, name: &str) -> String {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// The text of a streamed OpenAI chat: concatenated `delta.content`.
pub fn openai_stream_text(events: &[(Option<String>, String)]) -> String {
    events
        .iter()
        .filter(|(_, d)| d != "[DONE]")
        .filter_map(|(_, d)| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}

/// The text of a streamed Anthropic message: concatenated `text_delta`s.
pub fn anthropic_stream_text(events: &[(Option<String>, String)]) -> String {
    events
        .iter()
        .filter_map(|(_, d)| serde_json::from_str::<Value>(d).ok())
        .filter(|v| v["delta"]["type"] == "text_delta")
        .filter_map(|v| v["delta"]["text"].as_str().map(str::to_owned))
        .collect()
}
