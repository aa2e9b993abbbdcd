//! Typed translation between the OpenAI, Anthropic and Gemini shapes.
//!
//! OpenAI Chat Completions is the pivot: Anthropic ↔ OpenAI and Gemini ↔ OpenAI are
//! written out, and Anthropic ↔ Gemini goes through OpenAI. Requests, complete responses
//! and streams (see [`stream`]) are covered, including tool calls, images and usage.
//!
//! Translation only happens when the client's API and the provider's differ; a request
//! whose shapes match passes through untouched (unknown fields included). Fields that
//! have no counterpart in the target shape are dropped, except where dropping would
//! change the meaning of the request (a server-side tool, audio input, `n > 1` to a
//! provider without it): those are refused with [`TranslateError::Unsupported`].

pub mod anthropic;
pub mod gemini;
pub mod stream;

/// A request that cannot be expressed in the target shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TranslateError {
    /// Something in the request has no equivalent at the target provider. The message
    /// says what and what to do instead.
    Unsupported(String),
}

impl std::fmt::Display for TranslateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TranslateError::Unsupported(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for TranslateError {}

/// Identity of a translated response: ids and timestamps the target shape needs but the
/// source did not carry.
#[derive(Debug, Clone)]
pub struct ResponseMeta {
    pub id: String,
    pub created: u64,
    pub model: String,
}

/// Splits a `data:<mime>;base64,<payload>` URL into mime type and payload.
pub fn parse_data_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    let mime = meta.strip_suffix(";base64")?;
    Some((
        if mime.is_empty() {
            "application/octet-stream"
        } else {
            mime
        },
        data,
    ))
}

/// OpenAI `finish_reason` for an Anthropic `stop_reason`.
pub fn anthropic_stop_to_openai(stop: &str) -> &'static str {
    match stop {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        _ => "stop",
    }
}

/// Anthropic `stop_reason` for an OpenAI `finish_reason`.
pub fn openai_finish_to_anthropic(finish: &str) -> &'static str {
    match finish {
        "length" => "max_tokens",
        "tool_calls" | "function_call" => "tool_use",
        "content_filter" => "refusal",
        _ => "end_turn",
    }
}

/// OpenAI `finish_reason` for a Gemini `finishReason`.
pub fn gemini_finish_to_openai(finish: &str, called_tools: bool) -> &'static str {
    match finish {
        "MAX_TOKENS" => "length",
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY" => {
            "content_filter"
        }
        _ if called_tools => "tool_calls",
        _ => "stop",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_urls() {
        assert_eq!(
            parse_data_url("data:image/png;base64,iVBOR"),
            Some(("image/png", "iVBOR"))
        );
        assert_eq!(parse_data_url("https://x/y.png"), None);
        assert_eq!(parse_data_url("data:text/plain,hello"), None);
    }
}
