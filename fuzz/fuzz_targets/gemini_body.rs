//! The Gemini wire bodies: `generateContent` / `countTokens` requests (what the gateway
//! sends, and what a Gemini-shaped body must survive) and `GenerateContentResponse`
//! (what Gemini answers, whole or as one stream event), each with its serde round trip,
//! and a response's translation to OpenAI and on to Anthropic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_fuzz::round_trip;
use sluice_shared::gemini::{
    CountTokensRequest, CountTokensResponse, GenerateContentRequest, GenerateContentResponse,
};
use sluice_shared::translate::{self, ResponseMeta};

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = serde_json::from_slice::<GenerateContentRequest>(data) {
        round_trip(&req, "GenerateContentRequest");
    }
    if let Ok(req) = serde_json::from_slice::<CountTokensRequest>(data) {
        round_trip(&req, "CountTokensRequest");
    }
    if let Ok(resp) = serde_json::from_slice::<CountTokensResponse>(data) {
        round_trip(&resp, "CountTokensResponse");
    }
    if let Ok(resp) = serde_json::from_slice::<GenerateContentResponse>(data) {
        round_trip(&resp, "GenerateContentResponse");
        let meta = ResponseMeta {
            id: "chatcmpl-fuzz".into(),
            created: 1,
            model: "gemini-fuzz".into(),
        };
        let chat = translate::gemini::response_to_openai(resp, &meta);
        let _ = serde_json::to_vec(&chat);
        let message = translate::anthropic::response_from_openai(chat, &meta);
        let _ = serde_json::to_vec(&message);
    }
});
