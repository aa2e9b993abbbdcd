//! End-to-end governance: virtual keys, budgets, rate limits, the audit log and the admin
//! API, against the real gateway binary with a real SQLite file and the mock provider.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use serde_json::{Value, json};
use sluice_tests::harness::{Gateway, MockProvider, bin_path, sse_events};

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
        let mock = MockProvider::start(mock_args).await.unwrap();
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
        let out = std::process::Command::new(bin_path("sluice-gateway").unwrap())
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

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn admin_api_requires_the_admin_token() {
    let g = Gov::start(&[], "").await;
    let url = g.gw.url("/api/v1/keys");
    let resp = g.gw.http.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let resp =
        g.gw.http
            .get(&url)
            .bearer_auth("wrong-token-0123456789")
            .send()
            .await
            .unwrap();
    assert_eq!(resp.status(), 401);
    g.hierarchy().await;
    let (key, _) = g.key(json!({})).await;
    let resp = g.gw.http.get(&url).bearer_auth(&key).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let v: Value = resp.json().await.unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not an admin token")
    );
    let (status, v) = g.admin(reqwest::Method::GET, "/keys", None).await;
    assert_eq!(status, 200);
    assert!(
        v["data"][0].get("secret_hash").is_none(),
        "hashes never leave the store: {v}"
    );
    let doc: Value = g.gw.get_json("/api/v1/openapi.json").await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"]["/api/v1/keys/{id}/rotate"]["post"].is_object());
}

#[tokio::test]
async fn keys_are_required_checked_and_scoped() {
    let g = Gov::start(&[], "").await;
    g.hierarchy().await;
    let (key, id) = g
        .key(json!({"policy": {"allow_models": ["oa/*"], "content_logging": "full"}}))
        .await;

    let resp =
        g.gw.post(
            "/v1/chat/completions",
            &json!({"model": "oa/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let resp = g
        .chat(
            "sk-sluice-aaaaaaaaaaaa-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "oa/gpt-4o-mini",
        )
        .await;
    assert_eq!(resp.status(), 401);
    let resp = g.chat("sk-proj-a-provider-key", "oa/gpt-4o-mini").await;
    let v: Value = resp.json().await.unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not a Sluice virtual key"),
        "{v}"
    );

    let resp = g.chat(&key, "oa/gpt-4o-mini").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-sluice-cost-usd"), "0.008000");
    // The provider got the provider key, never the virtual key.
    let recorded = g.mock.requests().await.unwrap();
    assert_eq!(
        recorded.last().unwrap()["headers"]["authorization"],
        "Bearer provider-secret"
    );

    // Anthropic SDKs send x-api-key; the Anthropic-shaped 403 names the model.
    let resp = g
        .gw
        .http
        .post(g.gw.url("/anthropic/v1/messages"))
        .header("x-api-key", &key)
        .json(&json!({"model": "an/claude-haiku-4-5", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["type"], "permission_error");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("an/claude-haiku-4-5"),
        "{v}"
    );

    // Blocked, then unblocked.
    let (s, _) = g
        .admin(
            reqwest::Method::PATCH,
            &format!("/keys/{id}"),
            Some(json!({"status": "blocked"})),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(g.chat(&key, "oa/gpt-4o-mini").await.status(), 403);
    g.admin(
        reqwest::Method::PATCH,
        &format!("/keys/{id}"),
        Some(json!({"status": "active"})),
    )
    .await;
    assert_eq!(g.chat(&key, "oa/gpt-4o-mini").await.status(), 200);

    // Expired keys say so.
    let (expired, _) = g.key(json!({"name": "old", "expires_ms": 1_000})).await;
    let resp = g.chat(&expired, "oa/gpt-4o-mini").await;
    assert_eq!(resp.status(), 401);
    let v: Value = resp.json().await.unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expired on 1970-01-01"),
        "{v}"
    );

    // Full content logging keeps the bodies; every refusal is in the audit log too.
    let records = g.audit_at_least(8).await;
    let ok = records
        .iter()
        .find(|r| r["key_id"] == id.as_str() && r["status"] == 200)
        .unwrap();
    assert!(
        ok["request_body"].as_str().unwrap().contains("\"hi\""),
        "{ok}"
    );
    assert!(
        ok["response_body"]
            .as_str()
            .unwrap()
            .contains("Hello from mock")
    );
    assert_eq!(ok["user_id"], "ann");
    assert_eq!(ok["team_id"], "eng");
    assert_eq!(ok["org_id"], "acme");
    assert_eq!(ok["cost_micros"], 8000);
    assert!(
        records
            .iter()
            .any(|r| r["status"] == 401 && r["outcome"] == "rejected")
    );
    assert!(
        records
            .iter()
            .any(|r| r["status"] == 403 && r["key_id"] == id.as_str())
    );
}

#[tokio::test]
async fn rotation_keeps_the_old_secret_for_its_grace_period() {
    let g = Gov::start(&[], "").await;
    g.hierarchy().await;
    let (first, id) = g.key(json!({})).await;
    let v = g
        .post_admin(&format!("/keys/{id}/rotate"), json!({"grace_secs": 3600}))
        .await;
    let second = v["secret"].as_str().unwrap().to_owned();
    assert_ne!(first, second);
    assert_eq!(
        g.chat(&first, "oa/gpt-4o-mini").await.status(),
        200,
        "old secret in its grace period"
    );
    assert_eq!(g.chat(&second, "oa/gpt-4o-mini").await.status(), 200);
    let v = g
        .post_admin(&format!("/keys/{id}/rotate"), json!({"grace_secs": 0}))
        .await;
    let third = v["secret"].as_str().unwrap().to_owned();
    assert_eq!(
        g.chat(&second, "oa/gpt-4o-mini").await.status(),
        401,
        "no grace: revoked at once"
    );
    assert_eq!(g.chat(&first, "oa/gpt-4o-mini").await.status(), 401);
    assert_eq!(g.chat(&third, "oa/gpt-4o-mini").await.status(), 200);
}

#[tokio::test]
async fn budget_holds_under_concurrent_streams() {
    let g = Gov::start(&["--chunk-delay-ms", "20"], "").await;
    g.hierarchy().await;
    let (key, _) = g.key(json!({})).await;
    // About six requests' worth; each in-flight stream reserves its estimate.
    g.post_admin(
        "/budgets",
        json!({"scope_kind": "team", "scope_id": "eng", "window": "month", "limit_usd": 0.05}),
    )
    .await;
    let mut total_ok = 0;
    let mut refused = 0;
    for _wave in 0..4 {
        let mut tasks = Vec::new();
        for _ in 0..10 {
            let http = g.gw.http.clone();
            let url = g.gw.url("/v1/chat/completions");
            let key = key.clone();
            tasks.push(tokio::spawn(async move {
                let resp = http
                    .post(url)
                    .bearer_auth(key)
                    .json(&json!({"model": "oa/gpt-4o-mini", "max_tokens": 10, "stream": true, "messages": [{"role": "user", "content": "hi"}]}))
                    .send()
                    .await
                    .unwrap();
                let status = resp.status().as_u16();
                (status, resp.text().await.unwrap())
            }));
        }
        for t in tasks {
            let (status, body) = t.await.unwrap();
            match status {
                200 => {
                    total_ok += 1;
                    assert!(
                        body.trim_end().ends_with(": x-sluice-cost-usd=0.008000"),
                        "{body}"
                    );
                }
                402 => {
                    refused += 1;
                    let v: Value = serde_json::from_str(&body).unwrap();
                    let msg = v["error"]["message"].as_str().unwrap();
                    assert!(
                        msg.contains("team `eng` exceeded its monthly budget of $0.0500"),
                        "{msg}"
                    );
                    assert!(msg.contains("resets"), "{msg}");
                }
                other => panic!("{other}: {body}"),
            }
        }
    }
    assert!(
        total_ok >= 3 && refused > 0,
        "ok={total_ok} refused={refused}"
    );
    // Use up what is left, one request at a time, until the budget refuses.
    let mut extra = 0;
    while g.chat(&key, "oa/gpt-4o-mini").await.status() == 200 {
        extra += 1;
        assert!(extra < 10, "the budget never closed");
    }
    let records = g.audit_at_least(total_ok + refused + extra + 1).await;
    let spent: u64 = records
        .iter()
        .map(|r| r["cost_micros"].as_u64().unwrap())
        .sum();
    // A request is admitted while spent + in-flight estimates < limit, and estimates
    // (input + max_tokens at list price) cover the real cost here: so with ten streams
    // racing, the overspend is at most the last admitted request's own cost.
    assert!(
        spent <= 50_000 + 8_000,
        "spent {spent} micro-dollars of a 50000 budget"
    );
    assert!(
        spent >= 50_000,
        "the budget was used up before refusing: {spent}"
    );
    let (_, budgets) = g.admin(reqwest::Method::GET, "/budgets", None).await;
    assert_eq!(
        budgets["data"][0]["reserved_usd"], 0.0,
        "every reservation was settled: {budgets}"
    );
}

#[tokio::test]
async fn spend_survives_graceful_and_hard_restarts() {
    let mut g = Gov::start(&[], "").await;
    g.hierarchy().await;
    let (key, id) = g.key(json!({})).await;
    g.post_admin(
        "/budgets",
        json!({"scope_kind": "key", "scope_id": id, "window": "day", "limit_usd": 0.015}),
    )
    .await;
    assert_eq!(g.chat(&key, "oa/gpt-4o-mini").await.status(), 200);
    assert_eq!(g.chat(&key, "oa/gpt-4o-mini").await.status(), 200);
    let resp = g.chat(&key, "oa/gpt-4o-mini").await;
    assert_eq!(resp.status(), 402);
    let v: Value = resp.json().await.unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("spent $0.0160"),
        "{v}"
    );

    // kill -9 once the records are on disk: the spend comes back from the audit log.
    g.audit_at_least(3).await;
    g.gw.server.kill().await;
    g.restart().await;
    let resp = g.chat(&key, "oa/gpt-4o-mini").await;
    assert_eq!(
        resp.status(),
        402,
        "a hard restart must not hand out a fresh budget"
    );

    // Graceful stop drains the writer; the refusal above is recorded too.
    let pid = g.gw.server.pid().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let exit = tokio::time::timeout(Duration::from_secs(20), g.gw.server.child_mut().wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success());
    g.restart().await;
    assert_eq!(g.chat(&key, "oa/gpt-4o-mini").await.status(), 402);
    let records = g.audit_at_least(5).await;
    assert_eq!(records.iter().filter(|r| r["status"] == 402).count(), 3);
}

#[tokio::test]
async fn rate_and_concurrency_limits() {
    let g = Gov::start(&["--latency-ms", "300"], "").await;
    g.hierarchy().await;
    let (key, id) = g.key(json!({})).await;
    g.post_admin(
        "/limits",
        json!({"scope_kind": "key", "scope_id": id, "concurrency": 2}),
    )
    .await;
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let http = g.gw.http.clone();
        let url = g.gw.url("/v1/chat/completions");
        let key = key.clone();
        tasks.push(tokio::spawn(async move {
            let resp = http
                .post(url)
                .bearer_auth(key)
                .json(&json!({"model": "oa/gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}))
                .send()
                .await
                .unwrap();
            (resp.status().as_u16(), header(&resp, "retry-after"))
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    let ok = statuses.iter().filter(|(s, _)| *s == 200).count();
    let limited: Vec<_> = statuses.iter().filter(|(s, _)| *s == 429).collect();
    assert_eq!(ok, 2, "{statuses:?}");
    assert_eq!(limited.len(), 4);
    assert!(limited.iter().all(|(_, ra)| ra == "1"));
    assert!(
        g.mock.stats().await.unwrap()["max_in_flight"]
            .as_u64()
            .unwrap()
            <= 2
    );

    // Requests per minute, on the team; the Anthropic surface answers in its own shape.
    g.post_admin(
        "/limits",
        json!({"scope_kind": "team", "scope_id": "eng", "rpm": 4}),
    )
    .await;
    let mut last = None;
    for _ in 0..5 {
        let resp = g
            .gw
            .http
            .post(g.gw.url("/anthropic/v1/messages"))
            .header("x-api-key", &key)
            .json(&json!({"model": "oa/gpt-4o-mini", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .unwrap();
        last = Some((
            resp.status().as_u16(),
            header(&resp, "retry-after"),
            resp.text().await.unwrap(),
        ));
    }
    let (status, retry_after, body) = last.unwrap();
    assert_eq!(status, 429, "{body}");
    assert!(retry_after.parse::<u64>().unwrap() >= 1);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["type"], "rate_limit_error");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("team `eng`"),
        "{v}"
    );
}

#[tokio::test]
async fn tokens_per_minute_limit() {
    let g = Gov::start(&[], "").await;
    g.hierarchy().await;
    let (key, id) = g.key(json!({})).await;
    g.post_admin(
        "/limits",
        json!({"scope_kind": "key", "scope_id": id, "tpm": 12}),
    )
    .await;
    assert_eq!(
        g.chat(&key, "oa/gpt-4o-mini").await.status(),
        200,
        "8 tokens used"
    );
    assert_eq!(
        g.chat(&key, "oa/gpt-4o-mini").await.status(),
        200,
        "under 12 when admitted"
    );
    let resp = g.chat(&key, "oa/gpt-4o-mini").await;
    assert_eq!(resp.status(), 429);
    let v: Value = resp.json().await.unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("12 tokens per minute")
    );
}

#[tokio::test]
async fn audit_chain_verifies_and_names_tampering() {
    let g = Gov::start(&[], "mode = \"open\"\n").await;
    for _ in 0..5 {
        assert_eq!(
            g.chat("", "oa/gpt-4o-mini").await.status(),
            200,
            "open mode needs no key"
        );
    }
    g.audit_at_least(5).await;
    let (ok, out) = g.verify();
    assert!(ok, "{out}");
    assert!(out.contains("5 records"), "{out}");
    let (_, v) = g.admin(reqwest::Method::GET, "/audit/verify", None).await;
    assert_eq!(v["ok"], true);

    g.sql("UPDATE audit SET record = replace(record, '\"status\":200', '\"status\":500') WHERE seq = 3");
    let (ok, out) = g.verify();
    assert!(
        !ok && out.contains("record 3 does not match its hash"),
        "{out}"
    );
    g.sql("UPDATE audit SET status = 500 WHERE seq = 3");
    let (ok, out) = g.verify();
    assert!(!ok && out.contains("record 3"), "{out}");

    // Restore nothing; delete a middle record instead, on a fresh copy of the chain.
    let g = Gov::start(&[], "mode = \"open\"\n").await;
    for _ in 0..4 {
        g.chat("", "oa/gpt-4o-mini").await;
    }
    g.audit_at_least(4).await;
    g.sql("DELETE FROM audit WHERE seq = 2");
    let (ok, out) = g.verify();
    assert!(!ok && out.contains("records 2..=2 are missing"), "{out}");
    g.sql("DELETE FROM audit WHERE seq >= 2");
    let (ok, out) = g.verify();
    assert!(
        !ok && out.contains("records at the end were deleted"),
        "{out}"
    );

    // Export is JSON lines, one per record.
    let text =
        g.gw.http
            .get(g.gw.url("/api/v1/audit/export"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
    assert_eq!(text.lines().count(), 1);
}

#[tokio::test]
async fn overload_spills_to_disk_and_recovers_without_loss() {
    let g = Gov::start(
        &[],
        "mode = \"open\"\n[governance.audit]\nchannel_capacity = 2\nbatch_max = 1\n",
    )
    .await;
    // Warm up so the database exists, then hold its write lock from another process.
    g.chat("", "oa/gpt-4o-mini").await;
    g.audit_at_least(1).await;
    let mut locker = tokio::process::Command::new("python3")
        .args([
            "-c",
            "import sqlite3,sys; c=sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30); c.execute('BEGIN EXCLUSIVE'); print('locked', flush=True); sys.stdin.read(); c.execute('ROLLBACK')",
        ])
        .arg(g.db())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use tokio::io::AsyncBufReadExt;
        let mut lines = tokio::io::BufReader::new(locker.stdout.take().unwrap()).lines();
        assert_eq!(lines.next_line().await.unwrap().as_deref(), Some("locked"));
    }
    // The database cannot take writes: requests are still served at once.
    for _ in 0..20 {
        let resp = tokio::time::timeout(Duration::from_secs(5), g.chat("", "oa/gpt-4o-mini"))
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    let metrics = g.gw.metrics().await.unwrap();
    let spilled: f64 = metrics
        .lines()
        .find(|l| l.starts_with("sluice_audit_spilled_total"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    assert!(spilled >= 15.0, "spilled {spilled}\n{metrics}");
    drop(locker.stdin.take());
    locker.wait().await.unwrap();
    // Everything arrives, in one intact chain.
    let records = g.audit_at_least(21).await;
    assert_eq!(records.len(), 21);
    let (ok, out) = g.verify();
    assert!(ok, "{out}");
    assert!(
        !metrics.contains("sluice_audit_lost_total"),
        "nothing lost: {metrics}"
    );
}

#[tokio::test]
async fn usage_report_and_cli() {
    let g = Gov::start(&[], "").await;
    g.hierarchy().await;
    let bin = bin_path("sluice-gateway").unwrap();
    let out = std::process::Command::new(&bin)
        .args([
            "keys",
            "create",
            "--name",
            "ci",
            "--team",
            "eng",
            "--models",
            "oa/*",
            "--url",
            &g.gw.server.base_url,
            "--admin-token",
            ADMIN,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let secret = stderr
        .split_whitespace()
        .find(|w| w.starts_with("sk-sluice-"))
        .unwrap()
        .to_owned();
    let created: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(created["key"]["owner_kind"], "team");
    assert_eq!(created["key"]["policy"]["allow_models"], json!(["oa/*"]));
    assert_eq!(g.chat(&secret, "oa/gpt-4o-mini").await.status(), 200);
    g.audit_at_least(1).await;
    let out = std::process::Command::new(&bin)
        .args([
            "usage",
            "--group-by",
            "team",
            "--url",
            &g.gw.server.base_url,
            "--admin-token",
            ADMIN,
        ])
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["data"][0]["group"], "eng");
    assert_eq!(report["data"][0]["cost_usd"], 0.008);
    // A streamed answer carries its cost as a final SSE comment.
    let text = g
        .gw
        .http
        .post(g.gw.url("/v1/chat/completions"))
        .bearer_auth(&secret)
        .json(&json!({"model": "oa/gpt-4o-mini", "stream": true, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(sse_events(&text).iter().any(|(_, d)| d == "[DONE]"));
    assert!(text.contains(": x-sluice-cost-usd=0.008000"), "{text}");
}

#[tokio::test]
async fn providers_and_aliases_managed_through_the_api() {
    // The admin API may use only the key references the config allows.
    let mut g = Gov::start(
        &[],
        "mode = \"open\"\nadmin_secret_refs = [\"env:MOCK_KEY\"]\n",
    )
    .await;
    let put = |path: String, body: Value| {
        let http = g.gw.http.clone();
        let url = g.gw.url(&format!("/api/v1{path}"));
        async move {
            let resp = http
                .put(url)
                .bearer_auth(ADMIN)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let provider = json!({"kind": "openai", "base_url": format!("{}/v1", g.mock.base_url()), "keys": [{"value": "env:MOCK_KEY"}], "models": ["gpt-4o-mini"]});
    let (status, v) = put("/providers/extra".into(), provider.clone()).await;
    assert_eq!(status, 200, "{v}");
    let resp = g.chat("", "extra/gpt-4o-mini").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-sluice-provider"), "extra");

    let (status, _) = put(
        "/aliases/smart".into(),
        json!({"targets": [{"model": "extra/gpt-4o-mini"}], "fallbacks": ["oa/gpt-4o-mini"]}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        header(&g.chat("", "smart").await, "x-sluice-provider"),
        "extra"
    );
    let models: Value = g.gw.get_json("/v1/models").await.unwrap();
    assert!(
        models["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == "smart")
    );

    // Whole-config validation guards every change.
    let (status, v) = put(
        "/aliases/broken".into(),
        json!({"targets": [{"model": "ghost/x"}]}),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("aliases.broken.targets[0].model"),
        "{v}"
    );
    let (status, v) = put(
        "/providers/leaky".into(),
        json!({"kind": "openai", "keys": [{"value": "sk-live-pasted"}]}),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        !v.to_string().contains("sk-live-pasted"),
        "secrets are never echoed: {v}"
    );
    let (status, _) = g
        .admin(reqwest::Method::DELETE, "/providers/extra", None)
        .await;
    assert_eq!(status, 400, "alias `smart` still routes to it");
    let (status, _) = g
        .admin(reqwest::Method::DELETE, "/providers/oa", None)
        .await;
    assert_eq!(
        status, 409,
        "file-defined providers are changed in the file"
    );

    let (_, listed) = g.admin(reqwest::Method::GET, "/providers", None).await;
    let extra = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "extra")
        .unwrap()
        .clone();
    assert_eq!(extra["source"], "api");

    // Entries survive a restart.
    g.gw.server.kill().await;
    g.restart().await;
    assert_eq!(
        header(&g.chat("", "smart").await, "x-sluice-provider"),
        "extra"
    );
    let (status, _) = g
        .admin(reqwest::Method::DELETE, "/aliases/smart", None)
        .await;
    assert_eq!(status, 204);
    let (status, _) = g
        .admin(reqwest::Method::DELETE, "/providers/extra", None)
        .await;
    assert_eq!(status, 204);
    assert_eq!(g.chat("", "extra/gpt-4o-mini").await.status(), 404);
}

#[tokio::test]
async fn leaving_mid_stream_is_still_charged() {
    let g = Gov::start(&["--chunk-delay-ms", "50"], "").await;
    g.hierarchy().await;
    let (key, id) = g.key(json!({})).await;
    g.post_admin(
        "/budgets",
        json!({"scope_kind": "key", "scope_id": id, "window": "day", "limit_usd": 100.0}),
    )
    .await;
    let mut resp = g
        .gw
        .http
        .post(g.gw.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&json!({"model": "oa/gpt-4o-mini", "max_tokens": 10, "stream": true, "messages": [{"role": "user", "content": "one two three four five six seven eight"}]}))
        .send()
        .await
        .unwrap();
    assert!(resp.chunk().await.unwrap().is_some());
    drop(resp);
    let records = g.audit_at_least(1).await;
    let record = &records[0];
    assert_eq!(record["outcome"], "client_disconnected", "{record}");
    // OpenAI streams report usage only at their end, so the reserved estimate is charged:
    // input (body bytes / 4) plus max_tokens at $0.001 per token.
    let cost = record["cost_micros"].as_u64().unwrap();
    assert!(cost >= 10_000, "charged {cost} micro-dollars");
    let (_, budgets) = g.admin(reqwest::Method::GET, "/budgets", None).await;
    assert_eq!(
        budgets["data"][0]["spent_usd"].as_f64().unwrap() * 1e6,
        cost as f64
    );
    assert_eq!(budgets["data"][0]["reserved_usd"], 0.0);
}
