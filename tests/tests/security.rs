//! End-to-end security: each class of hole closed in the gateway's security pass, kept
//! closed against the real binaries — admin routes without a token, secret references
//! through the admin API, model policy under every model-name form, unpriced models under
//! a budget, slow and idle clients, fallback bombs, provider keys echoed upstream, and
//! absurd numbers from upstream.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use sluice_tests::harness::{Gateway, MockProvider, poll_until};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

const ADMIN: &str = "test-admin-token-0123456789";
/// `MOCK_KEY`, the key of every standard provider.
const PROVIDER_KEY: &str = "provider-secret";
/// What the gateway puts in place of a secret.
const SCRUBBED: &str = "[secret removed by sluice]";
/// Bound on every wait for the server to close a connection: far above the timeouts
/// configured below, so that only a limit that never fires fails it.
const CLOSE_DEADLINE: Duration = Duration::from_secs(10);

/// A governed gateway (open mode: requests without a key are served, a presented key is
/// enforced; admin token [`ADMIN`]) with providers `oa` (OpenAI, priced) and `an`
/// (Anthropic) on one mock, and the mock.
struct Sec {
    mock: MockProvider,
    gw: Gateway,
}

impl Sec {
    /// `keys`: dotted keys added to the standard ones (`server.idle_timeout_ms = 600`);
    /// `tables`: whole tables after the standard ones, where `{mock}` stands for the
    /// mock's base URL; `envs`: added to the gateway's environment.
    async fn start(keys: &str, tables: &str, envs: &[(&str, &str)]) -> Sec {
        let mock = MockProvider::start(&[]).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            r#"
server.listen = "127.0.0.1:0"
routing.backoff_base_ms = 5
routing.backoff_max_ms = 20
governance.database = "{db}"
governance.admin_token = "env:ADMIN_TOKEN"
governance.mode = "open"
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

[prices."oa/gpt-4o-mini"]
input = 1000.0
output = 1000.0

{tables}
"#,
            db = dir.path().join("sluice.db").display(),
            mock = mock.base_url(),
            tables = tables.replace("{mock}", mock.base_url()),
        );
        let path = dir.path().join("sluice.toml");
        std::fs::write(&path, config).unwrap();
        let path = path.to_string_lossy().into_owned();
        let mut all_envs = vec![("MOCK_KEY", PROVIDER_KEY), ("ADMIN_TOKEN", ADMIN)];
        all_envs.extend_from_slice(envs);
        let args = ["serve", "--config", &path];
        let gw = Gateway::start_args(&args, &all_envs, dir).await.unwrap();
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

// ---- 1. admin routes without a token -------------------------------------------------

/// Every (method, path, template) of the admin API, from the description it serves, with
/// each path parameter filled once with `x1` and once with `openapi.json` (the public
/// route's name, which must not make a parameterized route public).
async fn described_routes(gw: &Gateway) -> Vec<(Method, String, String)> {
    let doc = gw.get_json("/api/v1/openapi.json").await.unwrap();
    let mut routes = Vec::new();
    for (template, item) in doc["paths"].as_object().unwrap() {
        let methods = item.as_object().unwrap().keys();
        for method in methods.filter(|m| *m != "parameters") {
            let method: Method = method.to_uppercase().parse().unwrap();
            for fill in ["x1", "openapi.json"] {
                let path = template.replace("{id}", fill).replace("{name}", fill);
                routes.push((method.clone(), path.clone(), template.clone()));
                if path == *template {
                    break;
                }
            }
        }
    }
    assert!(routes.len() >= 40, "too few routes described: {routes:?}");
    routes
}

/// A body that the route at `template` would act on: an entity with `id`.
fn entity(template: &str, id: &str, mock: &str) -> Value {
    match template.trim_start_matches("/api/v1") {
        "/orgs" => json!({"name": "Pwned", "id": id}),
        "/teams" => json!({"org_id": "acme", "name": "Pwned", "id": id}),
        "/users" => json!({"team_id": "eng", "email": "p@pwned.test", "id": id}),
        "/devices" => json!({"team_id": "eng", "hostname": "pwned", "id": id}),
        "/keys" => json!({"name": "pwned", "team_id": "eng"}),
        "/keys/{id}" => json!({"name": "pwned", "status": "blocked"}),
        "/budgets" => {
            json!({"scope_kind": "team", "scope_id": "eng", "window": "day", "limit_usd": 0.0, "id": id})
        }
        "/limits" => json!({"scope_kind": "team", "scope_id": "eng", "rpm": 1, "id": id}),
        "/providers/{name}" => {
            json!({"kind": "openai", "base_url": format!("{mock}/v1"), "models": ["pwned"]})
        }
        "/aliases/{name}" => json!({"targets": [{"model": "oa/gpt-4o-mini"}]}),
        _ => json!({}),
    }
}

/// Calls every described route as an outsider — no token, a wrong one (also with a
/// lowercase scheme), another scheme — with a body that would change something, expects
/// a JSON error, and hands (what, status, body) to `check`.
async fn call_as_outsider(gw: &Gateway, mock: &str, check: impl Fn(&str, u16, &Value)) {
    let wrong =
        "Bearer wrong-token-0123456789|bearer wrong-token-0123456789|Basic YWRtaW46YWRtaW4=";
    for (method, path, template) in described_routes(gw).await {
        for auth in [None].into_iter().chain(wrong.split('|').map(Some)) {
            let mut req = gw.http.request(method.clone(), gw.url(&path));
            if let Some(auth) = auth {
                req = req.header("authorization", auth);
            }
            if method != Method::GET && method != Method::DELETE {
                req = req.json(&entity(&template, "pwned", mock));
            }
            let resp = Answer::read(req.send().await.unwrap()).await;
            let what = format!("{method} {path} ({auth:?})");
            let body: Value = serde_json::from_str(&resp.body).unwrap_or_default();
            assert!(!message(&body).is_empty(), "{what}: {}", resp.body);
            check(&what, resp.status, &body);
        }
    }
}

/// `/v1/models` lists nothing an outsider tried to plant.
async fn assert_nothing_planted(gw: &Gateway) {
    let models = gw.get_json("/v1/models").await.unwrap().to_string();
    let planted = ["openapi.json", "pwned", "\"x1"];
    let planted = planted.iter().any(|p| models.contains(p));
    assert!(!planted, "{models}");
}

#[tokio::test]
async fn admin_routes_refuse_every_caller_without_the_token() {
    let g = Sec::start("", "", &[]).await;
    g.key(json!({})).await;
    // Something for every delete to remove, should one get through.
    for list in "/orgs /teams /users /devices /budgets /limits".split(' ') {
        g.post_admin(list, entity(list, "x1", "")).await;
    }
    let lists = "/orgs /teams /users /devices /keys /budgets /limits /providers /aliases";
    let mut before = Vec::new();
    for list in lists.split(' ') {
        before.push(g.admin(Method::GET, list, None).await);
    }
    call_as_outsider(&g.gw, g.mock.base_url(), |what, status, body| {
        let ok = status == 401 && body["error"]["type"] == "authentication_error";
        assert!(ok, "{what}: {status} {body}");
    })
    .await;
    for (list, before) in lists.split(' ').zip(before) {
        let now = g.admin(Method::GET, list, None).await;
        assert_eq!(now, before, "{list} changed");
    }
    assert_nothing_planted(&g.gw).await;
    assert_eq!(g.upstream_calls().await, 0);

    // The right token is accepted whatever the scheme's case.
    let keys = g.gw.http.get(g.gw.url("/api/v1/keys"));
    let keys = keys.header("authorization", format!("bearer {ADMIN}"));
    assert_eq!(keys.send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn zero_config_admin_routes_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("zero.db").to_string_lossy().into_owned();
    // No SLUICE_ADMIN_TOKEN: there is no token to accept.
    let envs = [
        ("ANTHROPIC_API_KEY", "sk-ant-test"),
        ("OPENAI_API_KEY", ""),
        ("GEMINI_API_KEY", ""),
        ("GOOGLE_API_KEY", ""),
        ("SLUICE_DATABASE", &db),
    ];
    let args = ["serve", "--listen", "127.0.0.1:0"];
    let gw = Gateway::start_args(&args, &envs, dir).await.unwrap();
    let mock = MockProvider::start(&[]).await.unwrap();
    call_as_outsider(&gw, mock.base_url(), |what, status, body| {
        assert!(status == 401 || status == 404, "{what}: {status} {body}");
    })
    .await;
    assert_nothing_planted(&gw).await;
    assert!(mock.requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn admin_api_answers_bad_input_in_json_and_keeps_ids_safe() {
    let g = Sec::start("", "", &[]).await;
    let bodies = [
        ("application/json", "{\"name\": "),
        ("application/json", "[1, 2"),
        ("text/plain", "{\"name\": \"x\"}"),
        ("application/json", "{\"name\": \"x\", \"admin\": true}"),
    ];
    for (content_type, body) in bodies {
        let req = g.gw.http.post(g.gw.url("/api/v1/orgs")).bearer_auth(ADMIN);
        let req = req.header("content-type", content_type).body(body);
        let resp = Answer::read(req.send().await.unwrap()).await;
        let ok = [400, 415, 422].contains(&resp.status);
        let ok = ok && resp.message().contains("bad request body");
        assert!(ok, "{body}: {}", resp.body);
    }
    for id in ["a.b", "a/b", "..", "openapi.json", "a b", "a%2Fb"] {
        let org = json!({"name": "x", "id": id});
        let (status, v) = g.admin(Method::POST, "/orgs", Some(org)).await;
        let named = message(&v).contains("may only use letters");
        assert!(status == 400 && named, "{id}: {status} {v}");
    }
    g.post_admin("/orgs", json!({"name": "Acme", "id": "acme"}))
        .await;
    let team = json!({"org_id": "acme", "name": "x", "id": "t.1"});
    assert_eq!(g.admin(Method::POST, "/teams", Some(team)).await.0, 400);
    let provider = Some(json!({"kind": "openai", "base_url": "http://127.0.0.1:9/v1"}));
    let (status, _) = g.admin(Method::PUT, "/providers/a.b", provider).await;
    assert_eq!(status, 400);
    let (_, orgs) = g.admin(Method::GET, "/orgs", None).await;
    assert_eq!(orgs["data"].as_array().unwrap().len(), 1, "{orgs}");
}

/// The description covers every route the admin router defines, read from the router's
/// source so that a route added without a description fails here. (`/openapi.json`, the
/// description itself, is the one route it does not list.)
#[tokio::test]
async fn openapi_describes_every_admin_route() {
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/../gateway/src/api/admin.rs");
    let source = std::fs::read_to_string(file).unwrap();
    let start = source.find("pub fn router(").unwrap();
    let router = &source[start..start + source[start..].find("\n}\n").unwrap()];
    let g = Sec::start("", "", &[]).await;
    let doc = g.gw.get_json("/api/v1/openapi.json").await.unwrap();
    let mut seen = 0;
    for segment in router.split(".route(").skip(1) {
        let segment = segment.trim_start().trim_start_matches('"');
        let (path, calls) = segment.split_once('"').unwrap();
        if path == "/openapi.json" {
            continue;
        }
        let item = &doc["paths"][format!("/api/v1{path}")];
        assert!(item.is_object(), "route {path} is not described");
        for method in ["get", "post", "put", "patch", "delete"] {
            let name_char = |c: char| c.is_alphanumeric() || c == '_';
            let call = format!("{method}(");
            let mut at = calls.match_indices(&call).map(|(at, _)| at);
            let routed = at.any(|at| !calls[..at].ends_with(name_char));
            assert_eq!(routed, item[method].is_object(), "{method} {path}");
        }
        seen += 1;
    }
    assert!(seen >= 20, "parsed only {seen} routes");
}

// ---- 2. secret references through the admin API -------------------------------------

/// PUTs provider `name` pointing at `target` with one key `reference`, expects a 400,
/// and returns its message with the reference replaced by `REF` (so messages compare).
async fn refused_reference(g: &Sec, target: &MockProvider, name: &str, reference: &str) -> String {
    let base_url = format!("{}/v1", target.base_url());
    let provider = json!({"kind": "openai", "base_url": base_url, "keys": [{"value": reference}]});
    let path = format!("/providers/{name}");
    let (status, v) = g.admin(Method::PUT, &path, Some(provider)).await;
    let text = message(&v);
    let leaks = text.contains(ADMIN) || text.contains("root:");
    assert!(status == 400 && !leaks, "{reference}: {status} {v}");
    text.replace(reference, "REF")
}

#[tokio::test]
async fn admin_api_providers_cannot_read_the_gateways_secrets() {
    let g = Sec::start("", "", &[]).await;
    let target = MockProvider::start(&[]).await.unwrap();
    // Existing and missing variables and files read the same: no existence oracle.
    let mut messages = Vec::new();
    for reference in [
        "env:ADMIN_TOKEN",
        "env:SLUICE_SECURITY_TEST_NO_SUCH_VARIABLE",
        "file:/etc/passwd",
        "file:/etc/sluice-security-test-no-such-file",
        "file:/run/../etc/passwd",
    ] {
        messages.push(refused_reference(&g, &target, "evil", reference).await);
    }
    let same = messages.iter().all(|m| m == &messages[0]);
    let ok = same && messages[0].contains("governance.admin_secret_refs");
    assert!(ok, "{messages:#?}");
    assert_eq!(g.chat("", &chat("evil/gpt-4o-mini")).await.status, 404);
    let (_, providers) = g.admin(Method::GET, "/providers", None).await;
    assert!(!providers.to_string().contains("evil"), "{providers}");
    assert!(target.requests().await.unwrap().is_empty(), "called");

    // An allowed reference works; allowed but unset and allowed but empty read the same.
    let allowed = r#"governance.admin_secret_refs = ["env:MOCK_KEY", "env:SLUICE_TEST_*"]"#;
    let g = Sec::start(allowed, "", &[("SLUICE_TEST_EMPTY", "")]).await;
    let base_url = format!("{}/v1", target.base_url());
    let keys = json!([{"value": "env:MOCK_KEY"}]);
    let provider = Some(json!({"kind": "openai", "base_url": base_url, "keys": keys}));
    let (status, v) = g.admin(Method::PUT, "/providers/evil", provider).await;
    assert_eq!(status, 200, "{v}");
    let resp = g.chat("", &chat("evil/gpt-4o-mini")).await;
    let served = (resp.status, resp.header("x-sluice-provider"));
    assert_eq!(served, (200, "evil"));
    let recorded = target.requests().await.unwrap();
    let auth = format!("Bearer {PROVIDER_KEY}");
    assert!(recorded.len() == 1 && recorded[0]["headers"]["authorization"] == auth.as_str());
    let unset = refused_reference(&g, &target, "evil2", "env:SLUICE_TEST_UNSET").await;
    let empty = refused_reference(&g, &target, "evil2", "env:SLUICE_TEST_EMPTY").await;
    let ok = unset == empty && unset.contains("cannot be resolved");
    assert!(ok, "{unset}\n{empty}");
    let admin = refused_reference(&g, &target, "evil2", "env:ADMIN_TOKEN").await;
    assert!(admin.contains("governance.admin_secret_refs"), "{admin}");
}

// ---- 3. model policy under every model-name form ------------------------------------

/// Provider `other` with its own key (so the mock's records tell it from `oa`), a model
/// only it lists, and an alias that leads to it.
const OTHER: &str = r#"
[providers.other]
kind = "openai"
base_url = "{mock}/v1"
keys = [{ value = "env:OTHER_KEY" }]
models = ["other-only-model"]

[aliases.sneaky]
targets = [{ model = "other/gpt-4o-mini" }]
"#;
const OTHER_KEY: &str = "other-provider-key-0123";

/// Not served by `other`: refused, or served (or failed) by `oa`.
fn assert_not_other(resp: &Answer, what: &str) {
    let provider = resp.header("x-sluice-provider");
    let ok = match resp.status {
        200 => provider == "oa",
        status => [403, 500].contains(&status) && provider != "other",
    };
    assert!(ok, "{what}: `{provider}`: {}", resp.body);
}

#[tokio::test]
async fn model_policy_holds_for_every_model_name_form() {
    let g = Sec::start("", OTHER, &[("OTHER_KEY", OTHER_KEY)]).await;
    let (key, _) = g.key(json!({"allow_models": ["oa/*"]})).await;
    let (free, _) = g.key(json!({})).await;

    // The first target fails (1 + max_retries 2 calls); the fallback is not the key's.
    let mut with_fallback = chat("oa/gpt-4o-mini");
    with_fallback["fallbacks"] = json!(["other/gpt-4o-mini"]);
    g.mock.push_faults(&["status=500"; 3]).await;
    assert_not_other(&g.chat(&key, &with_fallback).await, "body fallbacks");
    // A success in between, so that oa's key does not trip its breaker.
    assert_not_other(&g.chat(&key, &chat("oa/gpt-4o-mini")).await, "oa itself");
    g.mock.push_faults(&["status=500"; 3]).await;
    let header = [("x-sluice-fallbacks", "other/gpt-4o-mini")];
    let path = "/v1/chat/completions";
    let resp = g.call(path, &key, &header, &chat("oa/gpt-4o-mini")).await;
    assert_not_other(&resp, "header fallbacks");

    for model in [
        "other/oa/gpt-4o-mini",
        "other/gpt-4o-mini",
        "sneaky",
        "other-only-model",
    ] {
        let resp = g.chat(&key, &chat(model)).await;
        let named = resp.message().contains("may not use model");
        assert!(resp.status == 403 && named, "{model}: {}", resp.body);
        let anthropic = "/anthropic/v1/messages";
        let resp = g.call(anthropic, &key, &[], &chat(model)).await;
        assert_eq!(resp.status, 403, "{model} on /anthropic: {}", resp.body);
    }
    let other = format!("Bearer {OTHER_KEY}");
    let recorded = g.mock.requests().await.unwrap();
    let reached = recorded
        .iter()
        .any(|r| r["headers"]["authorization"] == other.as_str());
    assert!(!reached, "a request reached `other`");

    // With a key without policy the same forms do reach `other`.
    for model in ["other/gpt-4o-mini", "sneaky", "other-only-model"] {
        let resp = g.chat(&free, &chat(model)).await;
        let served = (resp.status, resp.header("x-sluice-provider"));
        assert_eq!(served, (200, "other"), "{model}");
    }
    g.mock.push_faults(&["status=500"; 3]).await;
    let resp = g.chat(&free, &with_fallback).await;
    assert_eq!(resp.header("x-sluice-provider"), "other", "{}", resp.body);
}

// ---- 4. unpriced models under a budget ----------------------------------------------

#[tokio::test]
async fn unpriced_models_are_refused_under_a_budget() {
    for allow in [
        "",
        r#"governance.allow_unpriced_models = ["oa/some-unpriced-*"]"#,
    ] {
        let g = Sec::start(allow, "", &[]).await;
        let (budgeted, id) = g.key(json!({})).await;
        let (unbudgeted, _) = g.key(json!({})).await;
        let budget =
            json!({"scope_kind": "key", "scope_id": id, "window": "day", "limit_usd": 10.0});
        g.post_admin("/budgets", budget).await;
        let priced = g.chat(&budgeted, &chat("oa/gpt-4o-mini")).await;
        assert_eq!(priced.status, 200, "{}", priced.body);
        let unpriced = chat("oa/some-unpriced-model");
        let resp = g.chat(&unbudgeted, &unpriced).await;
        assert_eq!(resp.status, 200, "no budget: {}", resp.body);
        let resp = g.chat(&budgeted, &unpriced).await;
        if allow.is_empty() {
            let named = resp.message().contains("has no price");
            assert!(resp.status == 403 && named, "{}", resp.body);
        } else {
            let unknown = resp.header("x-sluice-cost-usd") == "unknown";
            assert!(resp.status == 200 && unknown, "allowed: {}", resp.body);
        }
        let resp = g.chat(&budgeted, &chat("oa/another-unpriced-model")).await;
        assert_eq!(resp.status, 403, "not listed: {}", resp.body);
    }
}

// ---- 5. slow and idle connections ----------------------------------------------------

const TIGHT_SERVER: &str = "server.header_timeout_ms = 300\nserver.idle_timeout_ms = 600\n\
                            server.body_timeout_ms = 500\nserver.max_connections = 20";

/// Reads until the server closes the connection (end of stream or reset) and returns what
/// arrived; fails if it stays open past [`CLOSE_DEADLINE`].
async fn read_until_closed(stream: &mut TcpStream, what: &str) -> String {
    let read_all = async {
        let (mut out, mut buf) = (Vec::new(), [0u8; 4096]);
        while let Ok(n @ 1..) = stream.read(&mut buf).await {
            out.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    let read = tokio::time::timeout(CLOSE_DEADLINE, read_all).await;
    read.unwrap_or_else(|_| panic!("{what}: still open after {CLOSE_DEADLINE:?}"))
}

/// A connection that has sent `bytes`.
async fn connect_and_send(gw: &Gateway, bytes: &str) -> TcpStream {
    let mut stream = TcpStream::connect(gw.server.addr).await.unwrap();
    stream.write_all(bytes.as_bytes()).await.unwrap();
    stream
}

/// The error message in the JSON body of a raw HTTP/1.1 answer.
fn raw_message(answer: &str) -> String {
    let body = &answer[answer.find("\r\n\r\n").expect("no end of head")..];
    let json = &body[body.find('{').unwrap()..=body.rfind('}').unwrap()];
    let v: Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {answer}"));
    message(&v).to_owned()
}

#[tokio::test]
async fn slow_and_idle_clients_are_cut_off() {
    let g = Sec::start(TIGHT_SERVER, "", &[]).await;
    let half_head = "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConte";
    let mut slow_head = connect_and_send(&g.gw, half_head).await;
    read_until_closed(&mut slow_head, "half a request head").await;

    let mut idle = connect_and_send(&g.gw, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let answer = read_until_closed(&mut idle, "an idle keep-alive connection").await;
    let ok = answer.starts_with("HTTP/1.1 200") && answer.ends_with("ok\n");
    assert!(ok, "{answer}");

    let head = "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n\
                Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n";
    let mut slow_body = connect_and_send(&g.gw, &format!("{head}{{\"model\":\"")).await;
    let answer = read_until_closed(&mut slow_body, "a body that stops after 10 bytes").await;
    let named = answer.starts_with("HTTP/1.1 408")
        && raw_message(&answer).contains("server.body_timeout_ms");
    assert!(named, "{answer}");
    assert_eq!(g.upstream_calls().await, 0);
}

#[tokio::test]
async fn connection_cap_answers_503_and_recovers() {
    let g = Sec::start(TIGHT_SERVER, "", &[]).await;
    // The stalled connections time out 300 ms after their first byte: on a machine too
    // slow to open 21 connections in that window the 21st is served (and closed idle,
    // with nothing read), and the round is repeated.
    let mut rounds = 0;
    let (mut stalled, refused) = loop {
        let mut stalled = Vec::new();
        for _ in 0..20 {
            stalled.push(connect_and_send(&g.gw, "GET /healthz HTTP/1.1\r\nHo").await);
        }
        let mut extra = TcpStream::connect(g.gw.server.addr).await.unwrap();
        let answer = read_until_closed(&mut extra, "the connection over the cap").await;
        rounds += 1;
        if !answer.is_empty() || rounds == 5 {
            break (stalled, answer);
        }
    };
    let named =
        refused.starts_with("HTTP/1.1 503") && raw_message(&refused).contains("max_connections");
    assert!(named, "after {rounds} rounds: {refused:?}");
    for s in &mut stalled {
        read_until_closed(s, "a stalled connection").await;
    }
    let healthz = || async { Ok(g.gw.http.get(g.gw.url("/healthz")).send().await?.status()) };
    let recovered = poll_until(CLOSE_DEADLINE, healthz, |s| *s == 200).await;
    recovered.expect("/healthz did not recover");
}

// ---- 6. fallback bombs ---------------------------------------------------------------

/// Two providers that answer every call with a 500: `fail` never trips its breaker (so
/// only the attempt budget stops a request), `brk` trips after 5 failures in a row.
const FAILING: &str = r#"
[providers.fail]
kind = "openai"
base_url = "{mock}/v1"
keys = [{ value = "env:MOCK_KEY" }]
headers = { "x-mock-fault" = "status=500" }
health = { failure_threshold = 1000 }

[providers.brk]
kind = "openai"
base_url = "{mock}/v1"
keys = [{ value = "env:MOCK_KEY" }]
headers = { "x-mock-fault" = "status=500" }
health = { cooldown_ms = 600000, max_cooldown_ms = 600000 }
"#;

fn with_fallbacks(provider: &str, n: usize) -> Value {
    let mut body = chat(&format!("{provider}/m0"));
    body["fallbacks"] = (1..=n).map(|i| format!("{provider}/m{i}")).collect();
    body
}

#[tokio::test]
async fn fallback_bombs_are_bounded() {
    // Room for 51 candidates, so that the attempt budget (default 10) is what binds.
    let g = Sec::start("routing.max_candidates = 64", FAILING, &[]).await;
    let resp = g.chat("", &with_fallbacks("oa", 60_000)).await;
    let named = resp.message().contains("routing.max_candidates");
    assert!(resp.status == 400 && named, "{}", resp.body);
    assert_eq!(g.upstream_calls().await, 0);

    let resp = g.chat("", &with_fallbacks("fail", 50)).await;
    let named = resp.message().contains("routing.max_attempts");
    assert!(resp.status == 500 && named, "{}", resp.body);
    let calls = g.upstream_calls().await;
    assert!((1..=10).contains(&calls), "{calls} calls");

    g.mock.reset().await.unwrap();
    assert_ne!(g.chat("", &with_fallbacks("brk", 50)).await.status, 200);
    assert!(g.upstream_calls().await <= 10);
    g.mock.reset().await.unwrap();
    let resp = g.chat("", &with_fallbacks("brk", 50)).await;
    let named = resp.message().contains("breaker open");
    assert!(resp.status == 503 && named, "{}", resp.body);
    assert_eq!(g.upstream_calls().await, 0, "calls past an open breaker");
}

// ---- 7. secrets scrubbed from every error path --------------------------------------

/// Provider `rot` with two keys, for refusals that rotate.
const ROTATING: &str = r#"
[providers.rot]
kind = "openai"
base_url = "{mock}/v1"
keys = [{ value = "env:MOCK_KEY", id = "first" }, { value = "env:ROT_KEY", id = "second" }]
"#;
const ROT_KEY: &str = "rotation-key-0123456789";

#[tokio::test]
async fn provider_keys_echoed_upstream_never_leave_the_gateway() {
    let g = Sec::start("", ROTATING, &[("ROT_KEY", ROT_KEY)]).await;
    let (key, _) = g.key(json!({"content_logging": "full"})).await;
    let echo = format!("message=Incorrect API key provided: {PROVIDER_KEY} or {ROT_KEY}");
    // (fault, how many, model, streamed, status): the provider's 400 forwarded, a final
    // error after rotating keys and after retries, and mid-stream in both framings.
    let cases = [
        ("status=400", 1, "oa/gpt-4o-mini", false, 400),
        ("status=401", 2, "rot/gpt-4o-mini", false, 502),
        ("status=500", 3, "oa/gpt-4o-mini", false, 500),
        ("error_event_after=2", 1, "oa/gpt-4o-mini", true, 200),
        ("error_event_after=2", 1, "an/claude-haiku-4-5", true, 200),
    ];
    for (fault, n, model, stream, status) in cases {
        let fault = format!("{fault};{echo}");
        g.mock.push_faults(&vec![fault.as_str(); n]).await;
        let mut body = chat(model);
        body["stream"] = json!(stream);
        let (chat_path, anthropic) = ("/v1/chat/completions", "/anthropic/v1/messages");
        let path = if model.starts_with("an/") {
            anthropic
        } else {
            chat_path
        };
        let resp = g.call(path, &key, &[], &body).await;
        let what = format!("{fault} on {model}");
        let calls = resp.header("x-sluice-attempts").parse::<usize>();
        let got = (resp.status, calls.ok());
        assert_eq!(got, (status, Some(n)), "{what}: {}", resp.body);
        let echoed = resp.body.contains(SCRUBBED);
        assert!(echoed, "{what}: {}", resp.body);
        resp.assert_clean(PROVIDER_KEY, &what);
        resp.assert_clean(ROT_KEY, &what);
    }
    let records = g.gw.audit_at_least(ADMIN, cases.len()).await.unwrap();
    let text = serde_json::to_string(&records).unwrap();
    let leaks = text.contains(PROVIDER_KEY) || text.contains(ROT_KEY);
    let ok = text.contains("Incorrect API key provided") && !leaks;
    assert!(ok, "{text}");
    let export = g.gw.url("/api/v1/audit/export");
    let export = g.gw.http.get(export).bearer_auth(ADMIN);
    let export = export.send().await.unwrap().text().await.unwrap();
    let leaks = export.contains(PROVIDER_KEY) || export.contains(ROT_KEY);
    assert!(export.contains(SCRUBBED) && !leaks, "{export}");
}

// ---- 8. absurd upstream numbers ------------------------------------------------------

const SECOND_OPENAI: &str = r#"
[providers.oa2]
kind = "openai"
base_url = "{mock}/v1"
keys = [{ value = "env:MOCK_KEY" }]
"#;
const ABSURD_USAGE: &str = "usage_tokens=18446744073709551615";

#[tokio::test]
async fn absurd_upstream_numbers_are_clamped() {
    let g = Sec::start("", SECOND_OPENAI, &[]).await;
    let mut usage_stream = chat("oa/gpt-4o-mini");
    usage_stream["stream"] = json!(true);
    usage_stream["stream_options"] = json!({"include_usage": true});
    // u64::MAX tokens, buffered, streamed, and across the translation both ways.
    let cases = [
        ("/v1/chat/completions", chat("oa/gpt-4o-mini")),
        ("/v1/chat/completions", usage_stream),
        ("/anthropic/v1/messages", chat("oa/gpt-4o-mini")),
        ("/v1/chat/completions", chat("an/claude-haiku-4-5")),
    ];
    for (path, body) in &cases {
        g.mock.push_faults(&[ABSURD_USAGE]).await;
        let resp = g.call(path, "", &[], body).await;
        assert_eq!(resp.status, 200, "{path} {body}: {}", resp.body);
        if let Ok(cost) = resp.header("x-sluice-cost-usd").parse::<f64>() {
            assert!(cost.is_finite() && cost <= 1e6, "{cost}");
        }
    }
    g.mock
        .push_faults(&["status=429;retry_after_raw=1e300"])
        .await;
    let resp = g.chat("", &chat("oa2/gpt-4o-mini")).await;
    let retry_after = resp.header("retry-after").parse::<u64>();
    let ok = resp.status == 429 && retry_after.is_ok_and(|s| s <= 86_400);
    assert!(ok, "{}", resp.body);

    let healthz = g.gw.http.get(g.gw.url("/healthz")).send().await.unwrap();
    assert_eq!(healthz.status(), 200);
    let records = g.gw.audit_at_least(ADMIN, cases.len() + 1).await.unwrap();
    let note = "clamped to 100000000 tokens";
    let noted = |r: &&Value| r["error"].as_str().is_some_and(|e| e.contains(note));
    let clamped: Vec<&Value> = records.iter().filter(noted).collect();
    assert_eq!(clamped.len(), cases.len(), "{records:#?}");
    for r in clamped {
        let tokens = r["input_tokens"].as_u64().unwrap();
        assert!(tokens <= 100_000_000 && r["cost_micros"].is_u64(), "{r}");
    }
    let after = |r: &&Value| {
        r["error"]
            .as_str()
            .is_some_and(|e| e.contains("Retry-After `1e300`") && e.contains("clamped to 86400 s"))
    };
    assert!(records.iter().any(|r| after(&r)), "{records:#?}");
}
