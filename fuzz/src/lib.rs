//! Helpers shared by the fuzz targets in `fuzz_targets/`: how an input is cut into
//! network reads, the serde round trip every wire type must survive, and the gateway's
//! providers (one per protocol) that a parsed client body is prepared for.

use std::sync::LazyLock;
use std::time::Instant;

use serde::Serialize;
use serde::de::DeserializeOwned;
use sluice_gateway::config::Config;
use sluice_gateway::env::MapEnv;
use sluice_gateway::providers::{Prepared, Provider};
use sluice_gateway::request::Inbound;

/// Splits an input into cut lengths and a payload: the first byte says how many of the
/// following bytes (at most 31) are chunk lengths; the rest is the payload. A seed that
/// starts with `\0` is the payload pushed at once.
pub fn split_spec(data: &[u8]) -> (&[u8], &[u8]) {
    let Some((&n, rest)) = data.split_first() else {
        return (&[], &[]);
    };
    let n = usize::from(n % 32).min(rest.len());
    rest.split_at(n)
}

/// Cuts `payload` into consecutive pieces whose lengths cycle through `lens` (a zero
/// length is an empty read). With no non-zero length, the payload is one piece.
pub fn pieces<'a>(payload: &'a [u8], lens: &[u8]) -> Vec<&'a [u8]> {
    if lens.iter().all(|&l| l == 0) {
        return vec![payload];
    }
    let mut out = Vec::new();
    let mut at = 0;
    for &len in lens.iter().cycle() {
        if at >= payload.len() {
            break;
        }
        let end = (at + usize::from(len)).min(payload.len());
        out.push(&payload[at..end]);
        at = end;
    }
    out
}

/// As [`pieces`], for text: every cut is moved back to a char boundary.
pub fn text_pieces<'a>(text: &'a str, lens: &[u8]) -> Vec<&'a str> {
    let mut out = Vec::new();
    let (mut at, mut cut) = (0, 0);
    for piece in pieces(text.as_bytes(), lens) {
        cut += piece.len();
        let mut end = cut;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        if end > at {
            out.push(&text[at..end]);
            at = end;
        }
    }
    if at < text.len() || out.is_empty() {
        out.push(&text[at..]);
    }
    out
}

/// Whether [`round_trip`] compares floating-point numbers bit for bit. Off because
/// serde_json, as the workspace builds it (without its `float_roundtrip` feature), parses
/// floats to the nearest value only "best effort": `6.000000004e91` reads back as
/// `6.0000000039999995e91`, so a number a client sent in a pass-through field can reach
/// the provider changed in its last digit (seed `openai_chat_body/float_round_trip.json`).
/// Turn this on once that feature is enabled.
pub const EXACT_FLOATS: bool = false;

/// A value the gateway parsed must serialize, and what it serializes to must parse
/// again into the same JSON: the gateway forwards what it parsed, and the next hop
/// (another Sluice, or the provider) reads it back.
pub fn round_trip<T: Serialize + DeserializeOwned>(value: &T, what: &str) {
    let first = match serde_json::to_value(value) {
        Ok(v) => v,
        Err(e) => panic!("{what}: a parsed value does not serialize: {e}"),
    };
    let bytes = match serde_json::to_vec(value) {
        Ok(b) => b,
        Err(e) => panic!("{what}: a parsed value does not serialize: {e}"),
    };
    let again: T = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) => panic!(
            "{what}: re-serialized value does not parse: {e}\n{}",
            String::from_utf8_lossy(&bytes)
        ),
    };
    let second = match serde_json::to_value(&again) {
        Ok(v) => v,
        Err(e) => panic!("{what}: a re-parsed value does not serialize: {e}"),
    };
    assert!(
        same_json(&first, &second),
        "{what}: the round trip changed the value\n before: {first}\n after:  {second}"
    );
}

/// JSON equality; floats (both sides floats) may differ in their last bits unless
/// [`EXACT_FLOATS`].
fn same_json(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if !EXACT_FLOATS && x.is_f64() && y.is_f64() => {
            let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
            x == y || (x - y).abs() <= 1e-15 * x.abs().max(y.abs())
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}

/// One provider per protocol and per request-shaping quirk (OpenAI's
/// `max_completion_tokens`, Mistral without `stream_options`, a keyless
/// OpenAI-compatible server), built from config the way the gateway builds them.
const PROVIDERS_TOML: &str = r#"
[providers.openai]
kind = "openai"
keys = [{ value = "env:FUZZ_KEY" }]

[providers.azure]
kind = "azure"
base_url = "https://fuzz.openai.azure.com/openai"
keys = [{ value = "env:FUZZ_KEY" }]

[providers.anthropic]
kind = "anthropic"
keys = [{ value = "env:FUZZ_KEY" }]

[providers.gemini]
kind = "gemini"
keys = [{ value = "env:FUZZ_KEY" }]

[providers.mistral]
kind = "mistral"
keys = [{ value = "env:FUZZ_KEY" }]

[providers.local]
kind = "openai-compatible"
base_url = "http://127.0.0.1:9/v1"
"#;

static PROVIDERS: LazyLock<Vec<Provider>> = LazyLock::new(|| {
    let env = MapEnv::new([("FUZZ_KEY", "sk-fuzz-0123456789abcdef")]);
    let valid = Config::from_toml(PROVIDERS_TOML, "fuzz")
        .and_then(|c| c.validate(&env, "fuzz"))
        .unwrap_or_else(|e| panic!("fixture config: {e}"));
    let epoch = Instant::now();
    valid
        .providers
        .into_iter()
        .map(|p| Provider::new(p, epoch).unwrap_or_else(|e| panic!("fixture provider: {e}")))
        .collect()
});

/// Prepares `inbound` for every provider, as the engine does for each target: the model
/// the router hands a provider is the part after `provider/` (or the whole name).
pub fn prepare_everywhere(inbound: &Inbound) {
    let model = inbound.model.trim();
    let model = match model.split_once('/') {
        Some((_, rest)) if !rest.is_empty() => rest,
        _ => model,
    };
    if model.is_empty() {
        // The router refuses an empty model before any provider sees the request.
        return;
    }
    for provider in PROVIDERS.iter() {
        let mut inbound = inbound.clone();
        match provider.prepare(&mut inbound, model) {
            Ok(Prepared::Call(call)) => {
                assert!(
                    serde_json::from_slice::<serde::de::IgnoredAny>(&call.body).is_ok(),
                    "prepared body for {} is not JSON",
                    provider.name
                );
            }
            Ok(Prepared::Local(body)) => {
                assert!(
                    serde_json::from_slice::<serde::de::IgnoredAny>(&body).is_ok(),
                    "local answer for {} is not JSON",
                    provider.name
                );
            }
            Err(_) => {}
        }
    }
}

/// What the gateway does with a body's `fallbacks` field before anything else
/// (`api::take_fallbacks`, private): removes it, and refuses the request unless it is a
/// list of strings.
pub fn take_fallbacks(
    extra: &mut serde_json::Map<String, serde_json::Value>,
) -> Option<Vec<String>> {
    match extra.remove("fallbacks") {
        None => Some(Vec::new()),
        Some(value) => serde_json::from_value(value).ok(),
    }
}
