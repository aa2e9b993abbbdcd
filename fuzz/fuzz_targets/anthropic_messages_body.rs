//! `POST /anthropic/v1/messages` and `.../count_tokens`: the body as the gateway parses
//! it (`MessagesRequest`), its serde round trip, the translation to OpenAI (and on to
//! Gemini, as an Anthropic client reaching Gemini goes) and back, and the gateway's
//! request preparation for every provider protocol.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_fuzz::{prepare_everywhere, round_trip, take_fallbacks};
use sluice_gateway::request::{ClientApi, ClientBody, Inbound};
use sluice_shared::anthropic::MessagesRequest;
use sluice_shared::translate;

fuzz_target!(|data: &[u8]| {
    let Ok(mut req) = serde_json::from_slice::<MessagesRequest>(data) else {
        return;
    };
    round_trip(&req, "MessagesRequest");
    if let Some(system) = &req.system {
        let _ = system.joined_text();
    }
    for m in &req.messages {
        let _ = m.content.joined_text();
    }
    if let Ok(chat) = translate::anthropic::request_to_openai(req.clone()) {
        let _ = serde_json::to_vec(&chat);
        if let Ok(back) = translate::anthropic::request_from_openai(chat.clone()) {
            let _ = serde_json::to_vec(&back);
        }
        if let Ok(gemini) = translate::gemini::request_from_openai(chat) {
            let _ = serde_json::to_vec(&gemini);
        }
    }

    // What `api::parse_messages` accepts goes on to the providers.
    if req.messages.is_empty() {
        return;
    }
    let Some(fallbacks) = take_fallbacks(&mut req.extra) else {
        return;
    };
    for api in [ClientApi::Messages, ClientApi::CountTokens] {
        if api == ClientApi::Messages && req.max_tokens.is_none() {
            continue;
        }
        let inbound = Inbound {
            api,
            model: req.model.clone(),
            stream: api == ClientApi::Messages && req.is_stream(),
            wants_stream_usage: false,
            body: ClientBody::Messages(req.clone()),
            fallbacks: fallbacks.clone(),
            forward_headers: Vec::new(),
            query: None,
        };
        let _ = inbound.max_output_tokens();
        prepare_everywhere(&inbound);
    }
});
