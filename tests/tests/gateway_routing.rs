//! End-to-end: retries, fallbacks, key rotation, the three timeouts, concurrency limits,
//! health-aware routing, client disconnects, shutdown and the CLI, against the real
//! binaries with faults injected in the mock provider.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation is the failure"
)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use sluice_tests::bins;
use sluice_tests::harness::{Gateway, MockProvider, closed_port, sse_events};

#[tokio::test]
async fn retries_5xx_then_falls_back_across_providers() {
    let (mock, gw) = start("[aliases.default]\ntargets = [{ model = \"oa/gpt-4o-mini\" }]\nfallbacks = [\"an/claude-haiku-4-5\"]\n").await;
    // Two failures, then success on the same provider.
    mock.push_faults(&["status=503", "status=500"]).await;
    let resp = gw
        .post("/v1/chat/completions", &chat("default", "hi"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-sluice-provider"), "oa");
    assert_eq!(header(&resp, "x-sluice-attempts"), "3");

    // Three failures exhaust oa (1 + max_retries 2): the fallback serves it, translated.
    mock.push_faults(&["status=503", "status=503", "status=503"])
        .await;
    let resp = gw
        .post("/v1/chat/completions", &chat("default", "hi"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-sluice-provider"), "an");
    assert_eq!(header(&resp, "x-sluice-attempts"), "4");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["object"], "chat.completion");

    // Everything fails: the error names every attempt and keeps the provider's status.
    // oa's key trips its breaker on its fifth failure in a row (two here, after the
    // three above), so oa gets two calls, not three, and the fallback three.
    mock.push_faults(&["status=503"; 5]).await;
    let resp = gw
        .post("/v1/chat/completions", &chat("default", "hi"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    let v: Value = resp.json().await.unwrap();
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("all 5 attempts failed") && msg.contains("an/claude-haiku-4-5: 503"),
        "{msg}"
    );

    let metrics = gw.metrics().await.unwrap();
    assert!(
        metrics.contains("sluice_attempts_total{provider=\"oa\",outcome=\"status_5xx\"}"),
        "{metrics}"
    );
}

#[tokio::test]
async fn request_level_fallbacks_from_body_and_header() {
    let (mock, gw) = start("").await;
    mock.push_faults(&["status=502"; 3]).await;
    let mut body = chat("oa/gpt-4o-mini", "hi");
    body["fallbacks"] = json!(["ge/gemini-2.5-flash"]);
    let resp = gw.post("/v1/chat/completions", &body).await.unwrap();
    assert_eq!(header(&resp, "x-sluice-provider"), "ge");
    // `fallbacks` is the gateway's, not the provider's: it is not forwarded.
    let requests = mock.requests().await.unwrap();
    assert!(
        requests
            .iter()
            .all(|r| r["body"].get("fallbacks").is_none())
    );

    mock.push_faults(&["status=502"; 3]).await;
    let resp = gw
        .http
        .post(gw.url("/v1/chat/completions"))
        .header("x-sluice-fallbacks", "an/claude-haiku-4-5")
        .json(&chat("oa/gpt-4o-mini", "hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(header(&resp, "x-sluice-provider"), "an");
}

#[tokio::test]
async fn rate_limit_honours_retry_after() {
    let (mock, gw) = start("").await;
    mock.push_faults(&["status=429;retry_after=1"]).await;
    let started = Instant::now();
    let resp = gw
        .post("/v1/chat/completions", &chat("oa/gpt-4o-mini", "hi"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-sluice-attempts"), "2");
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "waited {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn retry_after_beyond_the_cap_moves_to_the_next_target_at_once() {
    let (mock, gw) = start("").await;
    mock.push_faults(&["status=429;retry_after=120"]).await;
    let mut body = chat("oa/gpt-4o-mini", "hi");
    body["fallbacks"] = json!(["an/claude-haiku-4-5"]);
    let started = Instant::now();
    let resp = gw.post("/v1/chat/completions", &body).await.unwrap();
    assert_eq!(header(&resp, "x-sluice-provider"), "an");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn refused_keys_rotate_and_leave_rotation() {
    let mock = MockProvider::start(bins!(), &[]).await.unwrap();
    let extra = format!(
        "[providers.multi]\nkind = \"openai\"\nbase_url = \"{}/v1\"\nkeys = [{{ value = \"env:BAD_KEY\", id = \"revoked\" }}, {{ value = \"env:GOOD_KEY\", id = \"live\" }}]\n",
        mock.base_url()
    );
    let gw = Gateway::start(
        bins!(),
        &config(mock.base_url(), &extra),
        &[
            ("MOCK_KEY", PROVIDER_KEY),
            ("BAD_KEY", "bad-revoked"),
            ("GOOD_KEY", "good-live"),
        ],
    )
    .await
    .unwrap();
    for _ in 0..12 {
        let resp = gw
            .post("/v1/chat/completions", &chat("multi/gpt-4o-mini", "hi"))
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    let keys: Vec<String> = mock
        .requests()
        .await
        .unwrap()
        .iter()
        .map(|r| {
            r["headers"]["authorization"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    let bad = keys.iter().filter(|k| k.ends_with("bad-revoked")).count();
    assert_eq!(
        bad, 1,
        "a 401 key is taken out after its first refusal: {keys:?}"
    );
    assert_eq!(keys.iter().filter(|k| k.ends_with("good-live")).count(), 12);

    // A rate-limited key rotates to the other key immediately (no backoff).
    let mock2 = MockProvider::start(bins!(), &[]).await.unwrap();
    let extra = format!(
        "[providers.rl]\nkind = \"anthropic\"\nbase_url = \"{}\"\nkeys = [{{ value = \"env:LIMITED\", weight = 1000 }}, {{ value = \"env:GOOD_KEY\", weight = 0.001 }}]\n",
        mock2.base_url()
    );
    let gw2 = Gateway::start(
        bins!(),
        &config(mock2.base_url(), &extra),
        &[
            ("MOCK_KEY", PROVIDER_KEY),
            ("LIMITED", "limited-1"),
            ("GOOD_KEY", "good-live"),
        ],
    )
    .await
    .unwrap();
    let body = json!({"model": "rl/claude-haiku-4-5", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]});
    let resp = gw2.post("/anthropic/v1/messages", &body).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-sluice-attempts"), "2");
}

#[tokio::test]
async fn header_timeout_fires_and_falls_back() {
    // Bifrost users report header timeouts that never fire; this one must.
    let mock = MockProvider::start(bins!(), &[]).await.unwrap();
    let extra = format!(
        "[providers.slow]\nkind = \"openai\"\nbase_url = \"{}/v1\"\nkeys = [{{ value = \"env:MOCK_KEY\" }}]\nheader_timeout_ms = 300\nmax_retries = 0\nheaders = {{ \"x-mock-fault\" = \"hang\" }}\n",
        mock.base_url()
    );
    let gw = gateway_for(&mock, &extra).await;
    let mut body = chat("slow/gpt-4o-mini", "hi");
    body["fallbacks"] = json!(["oa/gpt-4o-mini"]);
    let started = Instant::now();
    let resp = gw.post("/v1/chat/completions", &body).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-sluice-provider"), "oa");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    // Without a fallback: a 504 in the caller's shape that says which timeout fired.
    let resp = gw.post("/anthropic/v1/messages", &json!({"model": "slow/gpt-4o-mini", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})).await.unwrap();
    assert_eq!(resp.status(), 504);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["type"], "timeout_error");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no response headers within 300 ms"),
        "{v}"
    );
    let metrics = gw.metrics().await.unwrap();
    assert!(metrics.contains("outcome=\"header_timeout\""), "{metrics}");
}

#[tokio::test]
async fn stream_stall_before_first_token_falls_back_and_after_ends_with_error_event() {
    let mock = MockProvider::start(bins!(), &[]).await.unwrap();
    let extra = format!(
        "[providers.stall]\nkind = \"openai\"\nbase_url = \"{m}/v1\"\nkeys = [{{ value = \"env:MOCK_KEY\" }}]\nstream_idle_timeout_ms = 300\nmax_retries = 0\nheaders = {{ \"x-mock-fault\" = \"stall_after=0\" }}\n\n[providers.late]\nkind = \"anthropic\"\nbase_url = \"{m}\"\nkeys = [{{ value = \"env:MOCK_KEY\" }}]\nstream_idle_timeout_ms = 300\nmax_retries = 0\nheaders = {{ \"x-mock-fault\" = \"stall_after=3\" }}\n",
        m = mock.base_url()
    );
    let gw = gateway_for(&mock, &extra).await;
    let mut body = chat("stall/gpt-4o-mini", "a b c d e f");
    body["stream"] = json!(true);
    body["fallbacks"] = json!(["an/claude-haiku-4-5"]);
    let resp = gw.post("/v1/chat/completions", &body).await.unwrap();
    assert_eq!(header(&resp, "x-sluice-provider"), "an");
    let events = sse_events(&resp.text().await.unwrap());
    assert_eq!(events.last().unwrap().1, "[DONE]");
    assert!(openai_stream_text(&events).ends_with("a b c d e f"));

    // Stalls after three words: the client has them, then a well-formed error event.
    let body = json!({"model": "late/claude", "max_tokens": 50, "stream": true, "messages": [{"role": "user", "content": "a b c d e f"}]});
    let resp = gw.post("/anthropic/v1/messages", &body).await.unwrap();
    assert_eq!(resp.status(), 200);
    let events = sse_events(&resp.text().await.unwrap());
    let (name, data) = events.last().unwrap();
    assert_eq!(name.as_deref(), Some("error"));
    let v: Value = serde_json::from_str(data).unwrap();
    assert_eq!(v["error"]["type"], "timeout_error");
    assert!(!anthropic_stream_text(&events).is_empty());
    assert!(
        !events
            .iter()
            .any(|(n, _)| n.as_deref() == Some("message_stop"))
    );
}

#[tokio::test]
async fn reset_mid_stream_is_reported_not_passed_off_as_complete() {
    let (mock, gw) = start("").await;
    mock.push_faults(&["reset_after=2"]).await;
    let mut body = chat("oa/gpt-4o-mini", "one two three four five");
    body["stream"] = json!(true);
    let resp = gw.post("/v1/chat/completions", &body).await.unwrap();
    assert_eq!(resp.status(), 200);
    let events = sse_events(&resp.text().await.unwrap());
    let last: Value = serde_json::from_str(&events.last().unwrap().1).unwrap();
    assert!(
        last["error"]["message"]
            .as_str()
            .unwrap()
            .contains("stream"),
        "{last}"
    );
    assert!(!events.iter().any(|(_, d)| d == "[DONE]"));

    // A reset before the first event is retried instead.
    mock.push_faults(&["reset_after=0"]).await;
    let resp = gw.post("/v1/chat/completions", &body).await.unwrap();
    assert_eq!(header(&resp, "x-sluice-attempts"), "2");
    let events = sse_events(&resp.text().await.unwrap());
    assert_eq!(events.last().unwrap().1, "[DONE]");

    // A provider error event before the first token is retried too.
    let anthropic = json!({"model": "an/claude", "max_tokens": 50, "stream": true, "messages": [{"role": "user", "content": "x y"}]});
    mock.push_faults(&["error_event_after=0"]).await;
    let resp = gw.post("/anthropic/v1/messages", &anthropic).await.unwrap();
    assert_eq!(header(&resp, "x-sluice-attempts"), "2");
    let events = sse_events(&resp.text().await.unwrap());
    assert_eq!(events.last().unwrap().0.as_deref(), Some("message_stop"));
}

#[tokio::test]
async fn connect_errors_fall_back() {
    let mock = MockProvider::start(bins!(), &[]).await.unwrap();
    let port = closed_port().unwrap();
    let extra = format!(
        "[providers.down]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:{port}/v1\"\nkeys = [{{ value = \"env:MOCK_KEY\" }}]\nconnect_timeout_ms = 500\n\n[aliases.default]\ntargets = [{{ model = \"down/gpt-4o-mini\" }}]\nfallbacks = [\"oa/gpt-4o-mini\"]\n"
    );
    let gw = gateway_for(&mock, &extra).await;
    let resp = gw
        .post("/v1/chat/completions", &chat("default", "hi"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "x-sluice-provider"), "oa");
    assert_eq!(header(&resp, "x-sluice-attempts"), "4");
    let metrics = gw.metrics().await.unwrap();
    assert!(
        metrics.contains("sluice_attempts_total{provider=\"down\",outcome=\"connect_error\"} 3"),
        "{metrics}"
    );
}

#[tokio::test]
async fn failing_provider_leaves_rotation_and_healthy_target_goes_first() {
    let mock = MockProvider::start(bins!(), &[]).await.unwrap();
    let extra = format!(
        "[providers.flaky]\nkind = \"openai\"\nbase_url = \"{}/v1\"\nkeys = [{{ value = \"env:MOCK_KEY\" }}]\nmax_retries = 0\nheaders = {{ \"x-mock-fault\" = \"status=500\" }}\n[providers.flaky.health]\nfailure_threshold = 2\ncooldown_ms = 60000\n\n[aliases.default]\ntargets = [{{ model = \"flaky/m\", weight = 1000 }}, {{ model = \"oa/gpt-4o-mini\", weight = 0.001 }}]\n",
        mock.base_url()
    );
    let gw = gateway_for(&mock, &extra).await;
    for _ in 0..2 {
        let resp = gw
            .post("/v1/chat/completions", &chat("default", "hi"))
            .await
            .unwrap();
        assert_eq!(header(&resp, "x-sluice-provider"), "oa");
    }
    // The flaky key tripped after two failures: now the healthy target is tried first.
    for _ in 0..5 {
        let resp = gw
            .post("/v1/chat/completions", &chat("default", "hi"))
            .await
            .unwrap();
        assert_eq!(header(&resp, "x-sluice-attempts"), "1");
        assert_eq!(header(&resp, "x-sluice-provider"), "oa");
    }
}

#[tokio::test]
async fn concurrency_limit_queues_then_refuses_without_piling_up() {
    let mock = MockProvider::start(bins!(), &[]).await.unwrap();
    let extra = format!(
        "[providers.narrow]\nkind = \"openai\"\nbase_url = \"{}/v1\"\nkeys = [{{ value = \"env:MOCK_KEY\" }}]\nmax_concurrency = 2\nmax_queue = 2\nqueue_timeout_ms = 10000\nheaders = {{ \"x-mock-fault\" = \"latency_ms=300\" }}\n",
        mock.base_url()
    );
    let gw = gateway_for(&mock, &extra).await;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let http = gw.http.clone();
        let url = gw.url("/v1/chat/completions");
        tasks.push(tokio::spawn(async move {
            let resp = http
                .post(url)
                .json(&chat("narrow/m", "hi"))
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let retry_after = header(&resp, "retry-after");
            (status, retry_after, resp.text().await.unwrap())
        }));
    }
    let mut ok = 0;
    let mut refused = 0;
    for t in tasks {
        let (status, retry_after, body) = t.await.unwrap();
        match status {
            200 => ok += 1,
            503 => {
                refused += 1;
                assert_eq!(retry_after, "1");
                assert!(body.contains("concurrency limit"), "{body}");
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(ok + refused, 8);
    assert!(
        ok >= 4 && refused >= 1,
        "2 running + 2 queued succeed, the rest are refused: ok={ok} refused={refused}"
    );
    let stats = mock.stats().await.unwrap();
    assert!(stats["max_in_flight"].as_u64().unwrap() <= 2, "{stats}");
}

#[tokio::test]
async fn client_disconnect_cancels_the_upstream_stream() {
    let (mock, gw) = start_with(&["--chunk-delay-ms", "50"], "").await;
    let mut body = chat("oa/gpt-4o-mini", &"word ".repeat(200));
    body["stream"] = json!(true);
    let mut resp = gw.post("/v1/chat/completions", &body).await.unwrap();
    let first = resp.chunk().await.unwrap();
    assert!(first.is_some());
    drop(resp);
    let stats = mock
        .wait_for(
            |s| s["streams_cancelled"] == 1 && s["in_flight"] == 0,
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_eq!(stats["streams_completed"], 0);
    let metrics = gw.metrics().await.unwrap();
    assert!(
        metrics.contains("sluice_client_disconnects_total{api=\"chat_completions\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn graceful_shutdown_lets_streams_finish() {
    let (mock, mut gw) = start_with(&["--chunk-delay-ms", "20"], "").await;
    let mut body = chat("oa/gpt-4o-mini", &"w ".repeat(30));
    body["stream"] = json!(true);
    let mut resp = gw.post("/v1/chat/completions", &body).await.unwrap();
    assert!(resp.chunk().await.unwrap().is_some());
    let pid = gw.server.pid().unwrap().to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
    let mut rest = Vec::new();
    while let Some(chunk) = resp.chunk().await.unwrap() {
        rest.extend_from_slice(&chunk);
    }
    // The stream completed: [DONE], then the cost as a closing SSE comment.
    let rest = String::from_utf8_lossy(&rest);
    assert!(
        rest.contains("data: [DONE]\n\n: x-sluice-cost-usd="),
        "{rest}"
    );
    let exit = tokio::time::timeout(Duration::from_secs(20), gw.server.child_mut().wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "{exit:?}");
    mock.wait_for(|s| s["streams_completed"] == 1, Duration::from_secs(10))
        .await
        .unwrap();
}

#[tokio::test]
async fn zero_config_start_uses_key_variables() {
    let dir = tempfile::tempdir().unwrap();
    // Zero-config runs governance in open mode; keep its database out of the source tree.
    let db = dir.path().join("zero.db").to_string_lossy().into_owned();
    let gw = Gateway::start_args(
        bins!(),
        &["--listen", "127.0.0.1:0"],
        &[
            ("ANTHROPIC_API_KEY", "sk-ant-test"),
            ("OPENAI_API_KEY", ""),
            ("GEMINI_API_KEY", ""),
            ("GOOGLE_API_KEY", ""),
            ("SLUICE_DATABASE", &db),
        ],
        dir,
    )
    .await
    .unwrap();
    let ready: Value = gw.get_json("/readyz").await.unwrap();
    assert!(ready["providers"].as_u64().unwrap() >= 1, "{ready}");
    // An unknown provider prefix names what is configured.
    let resp = gw
        .post("/v1/chat/completions", &chat("nope/x", "hi"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let v: Value = resp.json().await.unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("anthropic"),
        "{v}"
    );
}

/// The gateway the harness starts is the one cargo built for this run from the current
/// source, not a `target/debug/sluice-gateway` left by an earlier build: it is this
/// workspace's version, and it was linked after the last change to any gateway or shared
/// source compiled into it (cargo rebuilds it on any such change, which a stale binary
/// predates).
#[test]
fn gateway_under_test_is_built_from_the_current_source() {
    let bin = bins!().gateway();
    let out = std::process::Command::new(bin)
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    // sluice-gateway inherits the workspace version, as this package does.
    let version = String::from_utf8_lossy(&out.stdout);
    let expected = format!("sluice-gateway {}", env!("CARGO_PKG_VERSION"));
    assert_eq!(version.trim(), expected);

    let built = std::fs::metadata(bin).unwrap().modified().unwrap();
    // The sources compiled into the libraries the binary links, as rustc's dep-info for
    // the newest build of each lists them (test-only modules are not among them: changing
    // one does not rebuild the binary).
    let deps = bin.parent().unwrap().join("deps");
    let mut sources = 0;
    for lib in ["sluice_gateway", "sluice_shared"] {
        let (dep_info, rlib_built) = newest_library_dep_info(&deps, lib);
        assert!(
            rlib_built <= built,
            "{lib} was rebuilt after {} was linked: the tests would run a stale gateway",
            bin.display()
        );
        let (_, listed) = dep_info.split_once(": ").unwrap();
        let listed = listed.lines().next().unwrap_or("").replace("\\ ", "\u{0}");
        for path in listed.split_whitespace().map(|p| p.replace('\u{0}', " ")) {
            // rustc writes workspace paths relative to the workspace root.
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join(path);
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            sources += 1;
            let changed = std::fs::metadata(&path).unwrap().modified().unwrap();
            assert!(
                changed <= built,
                "{} changed after {} was built: the tests would run a stale gateway",
                path.display(),
                bin.display()
            );
        }
    }
    assert!(sources > 10, "only {sources} gateway and shared sources");
}

/// The dep-info rustc wrote for the newest `lib<name>-<hash>.rlib` in `deps`, and when that
/// rlib was written. (`cargo test` writes no merged `<bin>.d` beside the binary, as
/// `cargo build` does; the binary's own dep-info lists only its `main`.)
fn newest_library_dep_info(deps: &std::path::Path, name: &str) -> (String, std::time::SystemTime) {
    let prefix = format!("lib{name}-");
    let mut newest: Option<(std::time::SystemTime, std::path::PathBuf)> = None;
    for entry in std::fs::read_dir(deps).unwrap() {
        let path = entry.unwrap().path();
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let Some(hash) = file
            .strip_prefix(&prefix)
            .and_then(|rest| rest.strip_suffix(".rlib"))
        else {
            continue;
        };
        let written = std::fs::metadata(&path).unwrap().modified().unwrap();
        if newest.as_ref().is_none_or(|(at, _)| written > *at) {
            newest = Some((written, deps.join(format!("{name}-{hash}.d"))));
        }
    }
    let (written, dep_info) =
        newest.unwrap_or_else(|| panic!("no {prefix}*.rlib in {}", deps.display()));
    let text = std::fs::read_to_string(&dep_info)
        .unwrap_or_else(|e| panic!("{}: {e}", dep_info.display()));
    (text, written)
}

#[tokio::test]
async fn check_config_reports_every_problem_with_its_path() {
    let bin = bins!().gateway();
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[providers.openai]\nkind = \"openai\"\nkeys = [{ value = \"sk-pasted-secret\" }]\n\n[aliases.default]\ntargets = [{ model = \"missing/model\" }]\n",
    )
    .unwrap();
    let out = std::process::Command::new(bin)
        .args(["check-config", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("providers.openai.keys[0].value"), "{err}");
    assert!(err.contains("aliases.default.targets[0].model"), "{err}");
    assert!(
        !err.contains("sk-pasted-secret"),
        "secrets are never echoed: {err}"
    );

    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../sluice.example.toml");
    let out = std::process::Command::new(bin)
        .args(["check-config", "--config", example])
        .envs([
            ("OPENAI_API_KEY", "a"),
            ("OPENAI_API_KEY_2", "b"),
            ("ANTHROPIC_API_KEY", "c"),
            ("GEMINI_API_KEY", "d"),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("alias default"), "{text}");
    assert!(!text.contains("\"a\""));
}

#[tokio::test]
async fn tls_handshake_failure_is_a_clean_upstream_error() {
    // https:// to a plaintext server exercises rustls (and its crypto provider) for real:
    // the handshake must fail with an error response, never a panic.
    let mock = MockProvider::start(bins!(), &[]).await.unwrap();
    let extra = format!(
        "[providers.tls]\nkind = \"openai\"\nbase_url = \"https://localhost:{}/v1\"\nkeys = [{{ value = \"env:MOCK_KEY\" }}]\nmax_retries = 0\n",
        mock.addr().port()
    );
    let gw = gateway_for(&mock, &extra).await;
    let resp = gw
        .post("/v1/chat/completions", &chat("tls/gpt-4o-mini", "hi"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 502);
    let v: Value = resp.json().await.unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("could not be reached"),
        "{v}"
    );
    // The gateway is still serving.
    let resp = gw
        .post("/v1/chat/completions", &chat("oa/gpt-4o-mini", "hi"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}
