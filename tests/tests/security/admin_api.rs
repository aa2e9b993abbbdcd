//! The admin API: its routes without the token, and secret references in what it is
//! given.

use reqwest::Method;
use serde_json::{Value, json};
use sluice_tests::bins;
use sluice_tests::harness::{Gateway, MockProvider};

use crate::common::PROVIDER_KEY;
use crate::{ADMIN, Answer, Sec, chat, message};

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
    let gw = Gateway::start_args(bins!(), &args, &envs, dir)
        .await
        .unwrap();
    let mock = MockProvider::start(bins!(), &[]).await.unwrap();
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
    let file = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../gateway/src/api/admin/mod.rs"
    );
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
    let target = MockProvider::start(bins!(), &[]).await.unwrap();
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
