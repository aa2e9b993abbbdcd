//! A provider's complete (non-streamed) answer, read back into the client's shape by
//! the gateway (`providers::wire::decode_body`) for every pairing of client API and
//! provider protocol: usage probes on pass-through, typed parsing and translation
//! otherwise. What comes out must be JSON, with usage the gateway can bill.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sluice_gateway::providers::Decode;
use sluice_gateway::providers::wire::decode_body;
use sluice_shared::translate::ResponseMeta;

const DECODES: [Decode; 12] = [
    Decode::PassOpenAiChat { strip_usage: false },
    Decode::PassOpenAiChat { strip_usage: true },
    Decode::PassResponses,
    Decode::PassEmbeddings,
    Decode::PassAnthropic,
    Decode::AnthropicToOpenAi {
        include_usage: false,
    },
    Decode::AnthropicToOpenAi {
        include_usage: true,
    },
    Decode::GeminiToOpenAi {
        include_usage: false,
    },
    Decode::GeminiToOpenAi {
        include_usage: true,
    },
    Decode::OpenAiToAnthropic,
    Decode::GeminiToAnthropic,
    Decode::GeminiCountToAnthropic,
];

fuzz_target!(|data: &[u8]| {
    let meta = ResponseMeta {
        id: "chatcmpl-fuzz".into(),
        created: 1,
        model: "fuzz-model".into(),
    };
    let body = Bytes::copy_from_slice(data);
    for decode in DECODES {
        let _ = decode.upstream_flavor();
        let Ok((out, usage)) = decode_body(decode, body.clone(), &meta) else {
            continue;
        };
        assert!(
            serde_json::from_slice::<serde::de::IgnoredAny>(&out).is_ok(),
            "{decode:?}: the client's body is not JSON"
        );
        if let Some(mut usage) = usage {
            let _ = usage.clamp();
        }
    }
});
