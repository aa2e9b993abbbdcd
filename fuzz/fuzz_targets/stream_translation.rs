//! A provider's streamed answer through the gateway's stream path: framed by
//! `SseDecoder`, each event handed to `providers::protocol::StreamTranslator` for every
//! pairing of client API and provider protocol (pass-through usage probes, Anthropic →
//! OpenAI, Gemini → OpenAI, OpenAI → Anthropic, Gemini → Anthropic), then the client's
//! bytes through the output guardrails (`guardrails::stream::OutputGuard`).
//!
//! Checked: a pass-through forwards every event it accepted byte for byte; a translated
//! stream is well-framed SSE whose every event carries JSON (or `[DONE]`).
#![no_main]

use std::sync::{Arc, LazyLock};

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use sluice_gateway::guardrails::stream::OutputGuard;
use sluice_gateway::providers::protocol::{Decode, StreamTranslator, anthropic, gemini, openai};
use sluice_gateway::request::ClientApi;
use sluice_shared::guardrails::{CompiledPolicy, Policy};
use sluice_shared::sse::{SseDecoder, SseEvent};
use sluice_shared::translate::stream::ChunkFactory;

static POLICY: LazyLock<Arc<CompiledPolicy>> = LazyLock::new(|| {
    Arc::new(
        CompiledPolicy::compile(&Policy::default())
            .unwrap_or_else(|e| panic!("default policy: {e:?}")),
    )
});

/// The client API whose stream a decode writes.
fn client_api(decode: Decode) -> ClientApi {
    match decode {
        Decode::OpenAi(openai::Decode::Chat { .. })
        | Decode::Anthropic(anthropic::Decode::ToOpenAi { .. })
        | Decode::Gemini(gemini::Decode::ToOpenAi { .. }) => ClientApi::Chat,
        Decode::OpenAi(openai::Decode::Responses) => ClientApi::Responses,
        Decode::OpenAi(openai::Decode::Embeddings) => ClientApi::Embeddings,
        Decode::OpenAi(openai::Decode::ToAnthropic)
        | Decode::Anthropic(anthropic::Decode::Pass)
        | Decode::Gemini(gemini::Decode::ToAnthropic) => ClientApi::Messages,
        Decode::Gemini(gemini::Decode::CountToAnthropic) => ClientApi::CountTokens,
    }
}

/// Whether the decode passes the provider's events through untouched.
fn passes_through(decode: Decode) -> bool {
    matches!(
        decode,
        Decode::OpenAi(
            openai::Decode::Chat { strip_usage: false }
                | openai::Decode::Responses
                | openai::Decode::Embeddings
        ) | Decode::Anthropic(anthropic::Decode::Pass)
    )
}

fn events_of(bytes: &[u8]) -> (Vec<SseEvent>, Vec<u8>) {
    let mut d = SseDecoder::new();
    if d.push(bytes).is_err() {
        return (Vec::new(), bytes.to_vec());
    }
    let events = std::iter::from_fn(|| d.next_event()).collect();
    (events, d.pending().to_vec())
}

/// Runs the engine's loop (`UpstreamStream::next_output`) over the events: each event
/// to the translator until its terminal event, then `finish`; at the end of the body
/// the unterminated tail too, and `finish` only if the stream may end there. Returns
/// the client's bytes per write, and the raw bytes of the events the translator took.
fn translate(
    translator: &mut StreamTranslator,
    events: &[SseEvent],
    tail: Option<&SseEvent>,
) -> (Vec<BytesMut>, Vec<u8>) {
    let mut writes = Vec::new();
    let mut accepted = Vec::new();
    fn feed(
        translator: &mut StreamTranslator,
        event: &SseEvent,
        writes: &mut Vec<BytesMut>,
        accepted: &mut Vec<u8>,
    ) -> bool {
        let mut out = BytesMut::new();
        let ok = translator.on_event(event.clone(), &mut out).is_ok();
        if ok && !event.is_empty() {
            accepted.extend_from_slice(&event.raw);
        }
        writes.push(out);
        ok
    }
    for event in events {
        if !feed(translator, event, &mut writes, &mut accepted) {
            return (writes, accepted);
        }
        if translator.is_done() {
            let mut out = BytesMut::new();
            translator.finish(&mut out);
            writes.push(out);
            return (writes, accepted);
        }
    }
    if let Some(tail) = tail
        && !feed(translator, tail, &mut writes, &mut accepted)
    {
        return (writes, accepted);
    }
    if translator.may_end() {
        let mut out = BytesMut::new();
        translator.finish(&mut out);
        writes.push(out);
    }
    (writes, accepted)
}

fuzz_target!(|data: &[u8]| {
    let mut d = SseDecoder::new();
    if d.push(data).is_err() {
        return;
    }
    let events: Vec<SseEvent> = std::iter::from_fn(|| d.next_event()).collect();
    let tail = d.finish();

    for decode in Decode::every() {
        let api = client_api(decode);
        let factory = ChunkFactory {
            id: "chatcmpl-fuzz".into(),
            model: "fuzz-model".into(),
            created: 1,
        };
        let mut translator = decode.stream(factory);
        let (writes, accepted) = translate(&mut translator, &events, tail.as_ref());
        if let Some(mut usage) = translator.usage() {
            let _ = usage.clamp();
        }
        let out: Vec<u8> = writes.iter().flat_map(|w| w.iter().copied()).collect();

        if passes_through(decode) {
            assert_eq!(
                out, accepted,
                "{decode:?}: a pass-through must forward each accepted event untouched"
            );
        } else if decode != Decode::OpenAi(openai::Decode::Chat { strip_usage: true }) {
            let (client_events, pending) = events_of(&out);
            assert!(pending.is_empty(), "{decode:?}: an unterminated event");
            for e in &client_events {
                assert!(
                    e.data == "[DONE]" || serde_json::from_str::<serde::de::IgnoredAny>(&e.data).is_ok(),
                    "{decode:?}: an event that is not JSON: {:?}",
                    e.data
                );
            }
        }

        // The output guardrails read the client's bytes write by write.
        if let Some(mut guard) = OutputGuard::new(api, Arc::clone(&POLICY), None, None) {
            for write in &writes {
                if guard.filter(write).blocked.is_some() {
                    break;
                }
            }
            let _ = guard.decisions();
        }
    }
});
