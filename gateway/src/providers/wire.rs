//! How a provider's answer is read back into the client's shape ([`Decode`]).

use bytes::Bytes;
use http::StatusCode;

use sluice_shared::openai::{self, Usage};
use sluice_shared::translate::{self, ResponseMeta};
use sluice_shared::{anthropic, gemini};

use crate::config::kind::Protocol;
use crate::error::{ErrorKind, Flavor, GatewayError};

/// How to turn the provider's answer into the client's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decode {
    /// OpenAI chat both sides. `strip_usage`: the gateway added `include_usage` to a
    /// stream the client did not ask usage for, so the usage-only chunk is removed.
    PassOpenAiChat {
        strip_usage: bool,
    },
    PassResponses,
    PassEmbeddings,
    /// Anthropic both sides (messages and count_tokens).
    PassAnthropic,
    /// OpenAI client, Anthropic provider.
    AnthropicToOpenAi {
        include_usage: bool,
    },
    /// OpenAI client, Gemini provider.
    GeminiToOpenAi {
        include_usage: bool,
    },
    /// Anthropic client, OpenAI-protocol provider.
    OpenAiToAnthropic,
    /// Anthropic client, Gemini provider.
    GeminiToAnthropic,
    /// Anthropic `count_tokens`, answered by Gemini's `countTokens`.
    GeminiCountToAnthropic,
}

impl Decode {
    /// The protocol the provider answers in.
    pub fn upstream_flavor(self) -> Option<Flavor> {
        match self {
            Decode::PassOpenAiChat { .. }
            | Decode::PassResponses
            | Decode::PassEmbeddings
            | Decode::OpenAiToAnthropic => Some(Flavor::OpenAi),
            Decode::PassAnthropic | Decode::AnthropicToOpenAi { .. } => Some(Flavor::Anthropic),
            Decode::GeminiToOpenAi { .. }
            | Decode::GeminiToAnthropic
            | Decode::GeminiCountToAnthropic => None,
        }
    }
}

fn protocol_error(what: &str, e: serde_json::Error) -> GatewayError {
    GatewayError::new(
        ErrorKind::UpstreamProtocol,
        StatusCode::BAD_GATEWAY,
        format!("the provider's {what} could not be read: {e}"),
    )
}

fn encode<T: serde::Serialize>(value: &T) -> Result<Bytes, GatewayError> {
    serde_json::to_vec(value)
        .map(Bytes::from)
        .map_err(|e| GatewayError::internal(format!("could not encode the response: {e}")))
}

/// A complete (non-streamed) success body, read into the client's shape, with its usage.
pub fn decode_body(
    decode: Decode,
    body: Bytes,
    meta: &ResponseMeta,
) -> Result<(Bytes, Option<Usage>), GatewayError> {
    match decode {
        Decode::PassOpenAiChat { .. } | Decode::PassEmbeddings => {
            let probe: openai::UsageProbe =
                serde_json::from_slice(&body).map_err(|e| protocol_error("response", e))?;
            Ok((body, probe.usage))
        }
        Decode::PassResponses => {
            let probe: openai::ResponsesUsageProbe =
                serde_json::from_slice(&body).map_err(|e| protocol_error("response", e))?;
            Ok((body, probe.into_usage()))
        }
        Decode::PassAnthropic => {
            let probe: anthropic::UsageProbe =
                serde_json::from_slice(&body).map_err(|e| protocol_error("response", e))?;
            let usage = probe.usage.map(|u| {
                translate::anthropic::usage_to_openai(&anthropic::Usage {
                    input_tokens: u.input_tokens.unwrap_or(0),
                    output_tokens: u.output_tokens,
                    cache_creation_input_tokens: u.cache_creation_input_tokens,
                    cache_read_input_tokens: u.cache_read_input_tokens,
                })
            });
            Ok((body, usage))
        }
        Decode::AnthropicToOpenAi { .. } => {
            let resp: anthropic::MessagesResponse =
                serde_json::from_slice(&body).map_err(|e| protocol_error("message", e))?;
            let out = translate::anthropic::response_to_openai(resp, meta);
            let usage = out.usage.clone();
            Ok((encode(&out)?, usage))
        }
        Decode::GeminiToOpenAi { .. } => {
            let resp: gemini::GenerateContentResponse =
                serde_json::from_slice(&body).map_err(|e| protocol_error("response", e))?;
            let out = translate::gemini::response_to_openai(resp, meta);
            let usage = out.usage.clone();
            Ok((encode(&out)?, usage))
        }
        Decode::OpenAiToAnthropic => {
            let resp: openai::ChatResponse =
                serde_json::from_slice(&body).map_err(|e| protocol_error("completion", e))?;
            let usage = resp.usage.clone();
            let out = translate::anthropic::response_from_openai(resp, meta);
            Ok((encode(&out)?, usage))
        }
        Decode::GeminiToAnthropic => {
            let resp: gemini::GenerateContentResponse =
                serde_json::from_slice(&body).map_err(|e| protocol_error("response", e))?;
            let chat = translate::gemini::response_to_openai(resp, meta);
            let usage = chat.usage.clone();
            let out = translate::anthropic::response_from_openai(chat, meta);
            Ok((encode(&out)?, usage))
        }
        Decode::GeminiCountToAnthropic => {
            let resp: gemini::CountTokensResponse =
                serde_json::from_slice(&body).map_err(|e| protocol_error("token count", e))?;
            let out = anthropic::CountTokensResponse {
                input_tokens: resp.total_tokens,
            };
            Ok((encode(&out)?, None))
        }
    }
}

/// The message inside a provider's error body, whatever its protocol; the raw text
/// (shortened) when it is not the expected JSON.
pub fn upstream_error_message(protocol: Protocol, body: &[u8]) -> String {
    let parsed = match protocol {
        Protocol::OpenAi | Protocol::Azure => serde_json::from_slice::<openai::ErrorBody>(body)
            .ok()
            .map(|b| b.error.message),
        Protocol::Anthropic => serde_json::from_slice::<anthropic::ErrorBody>(body)
            .ok()
            .map(|b| format!("{}: {}", b.error.kind, b.error.message)),
        Protocol::Gemini => serde_json::from_slice::<gemini::ErrorBody>(body)
            .ok()
            .map(|b| format!("{}: {}", b.error.status, b.error.message)),
    };
    parsed.unwrap_or_else(|| {
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        if text.is_empty() {
            "(empty body)".into()
        } else {
            text.chars().take(300).collect()
        }
    })
}
