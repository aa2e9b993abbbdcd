//! Usage and error bodies from providers: every usage shape the gateway bills from
//! (OpenAI `usage`, the usage probes on pass-through bodies and stream events, the
//! Responses API's usage, Anthropic and Gemini usage and their translation to OpenAI),
//! `Usage::clamp`, and the three providers' error bodies with the gateway's
//! `providers::protocol::error_message` for every protocol.
//!
//! Checked: after `clamp` no count exceeds `MAX_REPORTED_TOKENS`, it reports exactly the
//! counts it changed, and a second `clamp` changes nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_gateway::config::kind::Protocol;
use sluice_gateway::providers::protocol::{error_flavor, error_message};
use sluice_shared::openai::{self, MAX_REPORTED_TOKENS, Usage};
use sluice_shared::translate;
use sluice_shared::{anthropic, gemini};

fn counts(u: &Usage) -> Vec<u64> {
    let mut v = vec![u.prompt_tokens, u.completion_tokens, u.total_tokens];
    if let Some(c) = u
        .prompt_tokens_details
        .as_ref()
        .and_then(|d| d.cached_tokens)
    {
        v.push(c);
    }
    if let Some(d) = &u.completion_tokens_details {
        v.extend(
            [
                d.reasoning_tokens,
                d.audio_tokens,
                d.accepted_prediction_tokens,
                d.rejected_prediction_tokens,
            ]
            .into_iter()
            .flatten(),
        );
    }
    v
}

fn check_clamp(mut usage: Usage) {
    let over = counts(&usage)
        .iter()
        .filter(|&&c| c > MAX_REPORTED_TOKENS)
        .count();
    let changed = usage.clamp();
    assert_eq!(changed.len(), over, "clamp reported {changed:?}");
    assert!(
        counts(&usage).iter().all(|&c| c <= MAX_REPORTED_TOKENS),
        "clamp left {usage:?}"
    );
    assert!(usage.clamp().is_empty(), "a second clamp changed something");
    let _ = usage.cached_tokens();
    let _ = translate::anthropic::usage_from_openai(&usage);
}

fuzz_target!(|data: &[u8]| {
    if let Ok(u) = serde_json::from_slice::<Usage>(data) {
        check_clamp(u);
    }
    if let Ok(probe) = serde_json::from_slice::<openai::UsageProbe>(data) {
        if let Some(u) = probe.usage {
            check_clamp(u);
        }
        let _ = probe.choices.map(|c| c.is_empty());
    }
    if let Ok(probe) = serde_json::from_slice::<openai::ResponsesUsageProbe>(data)
        && let Some(u) = probe.into_usage()
    {
        check_clamp(u);
    }
    if let Ok(u) = serde_json::from_slice::<anthropic::Usage>(data) {
        check_clamp(translate::anthropic::usage_to_openai(&u));
    }
    if let Ok(probe) = serde_json::from_slice::<anthropic::UsageProbe>(data) {
        // As `decode_body` reads a pass-through Anthropic answer.
        if let Some(u) = probe.usage.or_else(|| probe.message.and_then(|m| m.usage)) {
            check_clamp(translate::anthropic::usage_to_openai(&anthropic::Usage {
                input_tokens: u.input_tokens.unwrap_or(0),
                output_tokens: u.output_tokens,
                cache_creation_input_tokens: u.cache_creation_input_tokens,
                cache_read_input_tokens: u.cache_read_input_tokens,
            }));
        }
    }
    if let Ok(u) = serde_json::from_slice::<gemini::UsageMetadata>(data) {
        check_clamp(translate::gemini::usage_to_openai(&u));
    }

    let _ = serde_json::from_slice::<openai::ErrorBody>(data);
    let _ = serde_json::from_slice::<anthropic::ErrorBody>(data);
    let _ = serde_json::from_slice::<gemini::ErrorBody>(data);
    for protocol in [
        Protocol::OpenAi,
        Protocol::Azure,
        Protocol::Anthropic,
        Protocol::Gemini,
    ] {
        let _ = error_message(protocol, data);
        let _ = error_flavor(protocol);
    }
});
