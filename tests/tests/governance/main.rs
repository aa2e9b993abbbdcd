//! End-to-end governance: virtual keys, budgets, rate limits, the audit log and the admin
//! API, against the real gateway binary with a real SQLite file and the mock provider.
//! One test target; the modules share [`Gov`].
#![expect(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap fails the test"
)]

#[path = "../common/mod.rs"]
mod common;

mod admin;
mod audit;
mod keys;
mod limits;

use serde_json::{Value, json};
use sluice_tests::bins;
use sluice_tests::harness::{Gateway, MockProvider};

const ADMIN: &str = "test-admin-token-0123456789";

/// A gateway with governance on, its mock, and the files a restart needs.
struct Gov {
    mock: MockProvider,
    gw: Gateway,
    dir: tempfile::TempDir,
    config: String,
}

impl Gov {
    fn db(&self) -> String {
        self.dir
            .path()
            .join("sluice.db")
            .to_string_lossy()
            .into_owned()
    }

    async fn start(mock_args: &[&str], governance_extra: &str) -> Gov {
        let mock = MockProvider::start(bins!(), mock_args).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("sluice.db").to_string_lossy().into_owned();
        let config = format!(
            r#"
[server]
listen = "127.0.0.1:0"
shutdown_grace_secs = 5

[routing]
backoff_base_ms = 5
backoff_max_ms = 20

[providers.oa]
kind = "openai"
base_url = "{m}/v1"
keys = [{{ value = "env:MOCK_KEY" }}]

[providers.an]
kind = "anthropic"
base_url = "{m}"
keys = [{{ value = "env:MOCK_KEY" }}]

# One tenth of a cent per token, so a mock answer (about 8 tokens) costs about $0.008.
[prices."oa/gpt-4o-mini"]
input = 1000.0
output = 1000.0

[governance]
database = "{db}"
admin_token = "env:ADMIN_TOKEN"
{governance_extra}
"#,
            m = mock.base_url()
        );
        let gw = Self::spawn(&dir, &config).await;
        Gov {
            mock,
            gw,
            dir,
            config,
        }
    }

    async fn spawn(dir: &tempfile::TempDir, config: &str) -> Gateway {
        let path = dir.path().join("sluice.toml");
        std::fs::write(&path, config).unwrap();
        let path = path.to_string_lossy().into_owned();
        Gateway::start_args(
            bins!(),
            &["serve", "--config", &path],
            &[("MOCK_KEY", "provider-secret"), ("ADMIN_TOKEN", ADMIN)],
            tempfile::tempdir().unwrap(),
        )
        .await
        .unwrap()
    }

    async fn restart(&mut self) {
        self.gw = Self::spawn(&self.dir, &self.config).await;
    }

    async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .gw
            .http
            .request(method, self.gw.url(&format!("/api/v1{path}")))
            .bearer_auth(ADMIN);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn post_admin(&self, path: &str, body: Value) -> Value {
        let (status, v) = self.admin(reqwest::Method::POST, path, Some(body)).await;
        assert!(status == 201 || status == 200, "{path}: {status} {v}");
        v
    }

    /// org `acme` → team `eng` → user `ann`.
    async fn hierarchy(&self) {
        self.post_admin("/orgs", json!({"name": "Acme", "id": "acme"}))
            .await;
        self.post_admin(
            "/teams",
            json!({"org_id": "acme", "name": "Eng", "id": "eng"}),
        )
        .await;
        self.post_admin(
            "/users",
            json!({"team_id": "eng", "email": "ann@acme.test", "id": "ann"}),
        )
        .await;
    }

    /// A key for user `ann`: (secret, public id).
    async fn key(&self, extra: Value) -> (String, String) {
        let mut body = json!({"name": "ann-laptop", "user_id": "ann"});
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        let v = self.post_admin("/keys", body).await;
        (
            v["secret"].as_str().unwrap().to_owned(),
            v["key"]["id"].as_str().unwrap().to_owned(),
        )
    }

    async fn chat(&self, key: &str, model: &str) -> reqwest::Response {
        self.gw
            .http
            .post(self.gw.url("/v1/chat/completions"))
            .bearer_auth(key)
            .json(&json!({"model": model, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap()
    }

    /// Audit records, polling until at least `n` exist (the writer is asynchronous).
    async fn audit_at_least(&self, n: usize) -> Vec<Value> {
        self.gw.audit_at_least(ADMIN, n).await.unwrap()
    }

    fn verify(&self) -> (bool, String) {
        let config = self.dir.path().join("sluice.toml");
        let out = std::process::Command::new(bins!().gateway())
            .args(["audit", "verify", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    fn sql(&self, statement: &str) {
        let status = std::process::Command::new("python3")
            .args(["-c", "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute(sys.argv[2]); c.commit()"])
            .arg(self.db())
            .arg(statement)
            .status()
            .unwrap();
        assert!(status.success(), "{statement}");
    }
}
