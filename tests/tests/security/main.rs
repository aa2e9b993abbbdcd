//! End-to-end security: each class of hole closed in the gateway's security pass, kept
//! closed against the real binaries — admin routes without a token, secret references
//! through the admin API, model policy under every model-name form, unpriced models under
//! a budget, slow and idle clients, fallback bombs, provider keys echoed upstream, and
//! absurd numbers from upstream. One test target; the modules share [`Sec`] and [`Answer`].
#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed unwrap, expect or panic fails the test"
)]

#[path = "../common/mod.rs"]
mod common;

mod admin_api;
mod connections;
mod policy;
mod upstream;

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use sluice_tests::bins;
use sluice_tests::harness::{Gateway, MockProvider};

use common::PROVIDER_KEY;

const ADMIN: &str = "test-admin-token-0123456789";
/// What the gateway puts in place of a secret.
const SCRUBBED: &str = "[secret removed by sluice]";
/// Bound on every wait for the server to close a connection: far above the timeouts
/// configured below, so that only a limit that never fires fails it.
const CLOSE_DEADLINE: Duration = Duration::from_secs(10);

/// A governed gateway (open mode: requests without a key are served, a presented key is
/// enforced; admin token [`ADMIN`]) on the common config ([`common::config_with`]:
/// providers `oa` (OpenAI, priced here), `an` (Anthropic) and `ge` (Gemini) on one
/// mock), and the mock.
struct Sec {
    mock: MockProvider,
    gw: Gateway,
}

/// The price of `oa/gpt-4o-mini`, so that budgets apply to it.
const PRICED: &str = r#"
[prices."oa/gpt-4o-mini"]
input = 1000.0
output = 1000.0
"#;

impl Sec {
    /// `keys`: dotted keys added to the standard ones (`server.idle_timeout_ms = 600`);
    /// `tables`: whole tables after the standard ones, where `{mock}` stands for the
    /// mock's base URL; `envs`: added to the gateway's environment.
    async fn start(keys: &str, tables: &str, envs: &[(&str, &str)]) -> Sec {
        let mock = MockProvider::start(bins!(), &[]).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let keys = format!(
            "governance.database = \"{db}\"\n\
             governance.admin_token = \"env:ADMIN_TOKEN\"\n\
             governance.mode = \"open\"\n{keys}",
            db = dir.path().join("sluice.db").display(),
        );
        let tables = format!("{PRICED}\n{}", tables.replace("{mock}", mock.base_url()));
        let config = common::config_with(mock.base_url(), &keys, &tables);
        let path = dir.path().join("sluice.toml");
        std::fs::write(&path, config).unwrap();
        let path = path.to_string_lossy().into_owned();
        let mut all_envs = vec![("MOCK_KEY", PROVIDER_KEY), ("ADMIN_TOKEN", ADMIN)];
        all_envs.extend_from_slice(envs);
        let args = ["serve", "--config", &path];
        let gw = Gateway::start_args(bins!(), &args, &all_envs, dir)
            .await
            .unwrap();
        Sec { mock, gw }
    }

    async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = self.gw.url(&format!("/api/v1{path}"));
        let mut req = self.gw.http.request(method, url).bearer_auth(ADMIN);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn post_admin(&self, path: &str, body: Value) -> Value {
        let (status, v) = self.admin(Method::POST, path, Some(body)).await;
        assert!(status == 201 || status == 200, "{path}: {status} {v}");
        v
    }

    /// A key with `policy` for user `ann` of team `eng` of org `acme` (created the first
    /// time): (secret, public id).
    async fn key(&self, policy: Value) -> (String, String) {
        if self.admin(Method::GET, "/users", None).await.1["data"] == json!([]) {
            let org = json!({"name": "Acme", "id": "acme"});
            self.post_admin("/orgs", org).await;
            let team = json!({"org_id": "acme", "name": "Eng", "id": "eng"});
            self.post_admin("/teams", team).await;
            let user = json!({"team_id": "eng", "email": "ann@acme.test", "id": "ann"});
            self.post_admin("/users", user).await;
        }
        let key = json!({"name": "ann-laptop", "user_id": "ann", "policy": policy});
        let v = self.post_admin("/keys", key).await;
        let id = v["key"]["id"].as_str().unwrap().to_owned();
        (v["secret"].as_str().unwrap().to_owned(), id)
    }

    /// POSTs `body` to `path` with `key` (none when empty) and `headers`.
    async fn call(&self, path: &str, key: &str, headers: &[(&str, &str)], body: &Value) -> Answer {
        let mut req = self.gw.http.post(self.gw.url(path)).json(body);
        if !key.is_empty() {
            req = req.bearer_auth(key);
        }
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        Answer::read(req.send().await.unwrap()).await
    }

    async fn chat(&self, key: &str, body: &Value) -> Answer {
        self.call("/v1/chat/completions", key, &[], body).await
    }

    async fn upstream_calls(&self) -> u64 {
        let stats = self.mock.stats().await.unwrap();
        stats["requests_total"].as_u64().unwrap()
    }
}

/// A whole response.
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Answer {
    async fn read(resp: reqwest::Response) -> Answer {
        let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
        let body = resp.text().await.unwrap();
        Answer {
            status,
            headers,
            body,
        }
    }

    fn header(&self, name: &str) -> &str {
        let value = self.headers.get(name).and_then(|v| v.to_str().ok());
        value.unwrap_or_default()
    }

    /// The error message, which must be there.
    fn message(&self) -> String {
        let v: Value = serde_json::from_str(&self.body).unwrap_or_default();
        let text = message(&v).to_owned();
        assert!(!text.is_empty(), "no error message: {}", self.body);
        text
    }

    /// Panics if `secret` is in the body or in any header.
    fn assert_clean(&self, secret: &str, what: &str) {
        let mut headers = self
            .headers
            .values()
            .map(|v| String::from_utf8_lossy(v.as_bytes()));
        let leaked = headers.any(|v| v.contains(secret)) || self.body.contains(secret);
        assert!(!leaked, "{what} leaks: {}", self.body);
    }
}

/// The `error.message` of an error body, empty when there is none.
fn message(v: &Value) -> &str {
    v["error"]["message"].as_str().unwrap_or_default()
}

fn chat(model: &str) -> Value {
    json!({"model": model, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]})
}
