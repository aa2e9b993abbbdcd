//! `POST /v1/chat/completions`: the body as the gateway parses it (`ChatRequest`), its
//! serde round trip, the translations to the Anthropic and Gemini request shapes, and
//! the gateway's request preparation for every provider protocol.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_fuzz::{prepare_everywhere, round_trip, take_fallbacks};
use sluice_gateway::request::{ClientApi, ClientBody, Inbound};
use sluice_shared::openai::ChatRequest;
use sluice_shared::translate;

fuzz_target!(|data: &[u8]| {
    let Ok(mut req) = serde_json::from_slice::<ChatRequest>(data) else {
        return;
    };
    round_trip(&req, "ChatRequest");
    let _ = (
        req.is_stream(),
        req.wants_stream_usage(),
        req.max_output_tokens(),
    );
    for m in &req.messages {
        let _ = m.text_content();
    }
    if let Ok(out) = translate::anthropic::request_from_openai(req.clone()) {
        let _ = serde_json::to_vec(&out);
        let _ = translate::anthropic::request_to_openai(out);
    }
    if let Ok(out) = translate::gemini::request_from_openai(req.clone()) {
        let _ = serde_json::to_vec(&out);
    }

    // What `api::parse_chat` accepts goes on to the providers.
    if req.messages.is_empty() {
        return;
    }
    let Some(fallbacks) = take_fallbacks(&mut req.extra) else {
        return;
    };
    let inbound = Inbound {
        api: ClientApi::Chat,
        model: req.model.clone(),
        stream: req.is_stream(),
        wants_stream_usage: req.wants_stream_usage(),
        body: ClientBody::Chat(req),
        fallbacks,
        forward_headers: Vec::new(),
        query: None,
    };
    let _ = inbound.max_output_tokens();
    prepare_everywhere(&inbound);
});
