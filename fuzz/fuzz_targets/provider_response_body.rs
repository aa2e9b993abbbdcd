//! A provider's complete (non-streamed) answer, read back into the client's shape by
//! the gateway (`providers::Decode::body`, each protocol's `decode_body`) for every pairing of client API and
//! provider protocol: usage probes on pass-through, typed parsing and translation
//! otherwise. What comes out must be JSON, with usage the gateway can bill.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sluice_gateway::providers::Decode;
use sluice_shared::translate::ResponseMeta;

fuzz_target!(|data: &[u8]| {
    let meta = ResponseMeta {
        id: "chatcmpl-fuzz".into(),
        created: 1,
        model: "fuzz-model".into(),
    };
    let body = Bytes::copy_from_slice(data);
    for decode in Decode::every() {
        let Ok((out, usage)) = decode.body(body.clone(), &meta) else {
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
