//! The guardrail engine on what the outside world sends and answers: the default policy
//! (and one that redacts with every built-in detector) scanning and redacting arbitrary
//! text, streamed in fuzzer-chosen deltas, and guarding every request and response body
//! shape; the gateway's output guard on arbitrary client-shaped streams.
//!
//! Checked, as `StreamScanner` documents and `shared/tests/guardrails.rs` tests: for any
//! split into deltas the stream gives exactly the whole-text redaction, and with the
//! default policy it blocks exactly when scanning the whole text does.
//!
//! The input is a cut spec and a payload (see `sluice_fuzz::split_spec`).
#![no_main]

use std::sync::{Arc, LazyLock};

use libfuzzer_sys::fuzz_target;
use sluice_fuzz::{pieces, split_spec, text_pieces};
use sluice_gateway::guardrails::stream::OutputGuard;
use sluice_gateway::request::ClientApi;
use sluice_shared::guardrails::{
    CompiledPolicy, Direction, Policy, ResponsesRequest, ResponsesResponse, Scope, StreamScanner,
    StreamStep, redact,
};
use sluice_shared::{anthropic, gemini, openai};

fn compile(policy: &Policy) -> Arc<CompiledPolicy> {
    Arc::new(CompiledPolicy::compile(policy).unwrap_or_else(|e| panic!("policy: {e:?}")))
}

static DEFAULT: LazyLock<Arc<CompiledPolicy>> = LazyLock::new(|| compile(&Policy::default()));

/// Every built-in detector set to `redact` and injection off (as in the guardrail
/// tests), so that every finding shows in the redacted text.
static REDACT_ALL: LazyLock<Arc<CompiledPolicy>> = LazyLock::new(|| {
    let mut toml = String::from("[detectors.prompt_injection]\nenabled = false\n");
    for rule in DEFAULT.rules() {
        let id = rule.id.to_string();
        if id != "prompt_injection" {
            toml.push_str(&format!("[detectors.{id}]\naction = \"redact\"\n"));
        }
    }
    let policy: Policy = toml::from_str(&toml).unwrap_or_else(|e| panic!("redact-all policy: {e}"));
    compile(&policy)
});

fn stream(policy: &Arc<CompiledPolicy>, deltas: &[&str]) -> Result<String, String> {
    let mut s =
        StreamScanner::with_direction(Arc::clone(policy), &Scope::default(), Direction::Input);
    let mut out = String::new();
    for delta in deltas {
        match s.push(delta) {
            StreamStep::Emit(t) => out.push_str(&t),
            StreamStep::Block { message, .. } => return Err(message),
        }
        let _ = s.held_back();
    }
    match s.finish() {
        StreamStep::Emit(t) => out.push_str(&t),
        StreamStep::Block { message, .. } => return Err(message),
    }
    let _ = (s.decisions(), s.injection_score());
    Ok(out)
}

fn guard_bodies(policy: &CompiledPolicy, body: &[u8]) {
    let scope = Scope::default();
    if let Ok(mut r) = serde_json::from_slice::<openai::ChatRequest>(body) {
        let _ = policy.guard(&mut r, &scope).is_blocked();
    }
    if let Ok(mut r) = serde_json::from_slice::<openai::ChatResponse>(body) {
        let _ = policy.guard(&mut r, &scope).is_blocked();
    }
    if let Ok(mut r) = serde_json::from_slice::<anthropic::MessagesRequest>(body) {
        let _ = policy.guard(&mut r, &scope).is_blocked();
    }
    if let Ok(mut r) = serde_json::from_slice::<anthropic::MessagesResponse>(body) {
        let _ = policy.guard(&mut r, &scope).is_blocked();
    }
    if let Ok(mut r) = serde_json::from_slice::<gemini::GenerateContentRequest>(body) {
        let _ = policy.guard(&mut r, &scope).is_blocked();
    }
    if let Ok(mut r) = serde_json::from_slice::<gemini::GenerateContentResponse>(body) {
        let _ = policy.guard(&mut r, &scope).is_blocked();
    }
    if let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(body) {
        let _ = policy.guard(&mut ResponsesRequest(&mut v.clone()), &scope);
        let _ = policy.guard(&mut ResponsesResponse(&mut v), &scope);
    }
}

fuzz_target!(|data: &[u8]| {
    let (lens, payload) = split_spec(data);
    let text = String::from_utf8_lossy(payload);
    let deltas = text_pieces(&text, lens);
    let scope = Scope::default();

    for direction in [Direction::Input, Direction::Output, Direction::Both] {
        let outcome = DEFAULT.scan(&text, direction, &scope);
        let _ = redact(&text, &outcome);
    }

    let redact_all = &*REDACT_ALL;
    let whole = redact(&text, &redact_all.scan(&text, Direction::Input, &scope));
    match stream(redact_all, &deltas) {
        Ok(streamed) => assert_eq!(streamed, whole, "stream and whole text differ"),
        Err(message) => panic!("a redact-only policy blocked: {message}"),
    }

    let outcome = DEFAULT.scan(&text, Direction::Input, &scope);
    match stream(&DEFAULT, &deltas) {
        Ok(streamed) => {
            assert!(
                !outcome.is_blocked(),
                "the stream passed what the whole text blocks"
            );
            assert_eq!(
                streamed,
                redact(&text, &outcome),
                "stream and whole text differ"
            );
        }
        Err(_) => assert!(
            outcome.is_blocked(),
            "the stream blocked what the whole text passes"
        ),
    }

    guard_bodies(&DEFAULT, payload);

    for api in [ClientApi::Chat, ClientApi::Messages, ClientApi::Responses] {
        if let Some(mut guard) = OutputGuard::new(api, Arc::clone(&DEFAULT), None, None) {
            for write in pieces(payload, lens) {
                if guard.filter(write).blocked.is_some() {
                    break;
                }
            }
            let _ = guard.decisions();
        }
    }
});
