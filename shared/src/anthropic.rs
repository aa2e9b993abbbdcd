//! Anthropic Messages API wire types: request, response, stream events, usage and the
//! error object. Content blocks are one struct with a `type` tag and optional fields so
//! that block types Sluice does not translate (documents, server tools, citations…)
//! survive a pass-through unchanged.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Extra;

/// The `anthropic-version` Sluice sends when the client sent none.
pub const DEFAULT_VERSION: &str = "2023-06-01";

/// `POST /v1/messages` (and `/v1/messages/count_tokens`) body.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MessagesRequest {
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub messages: Vec<Message>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<Content>,
    /// Required by `/v1/messages`, absent from `count_tokens`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_k: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_sequences: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool>>,
    /// `{"type":"auto"|"any"|"none"}` or `{"type":"tool","name":..}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl MessagesRequest {
    pub fn is_stream(&self) -> bool {
        self.stream.unwrap_or(false)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Message {
    pub role: MessageRole,
    pub content: Content,
    /// Fields of a message Sluice does not read, kept for a pass-through.
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageRole {
    User,
    Assistant,
    /// A system message after the first turn (Claude Code sends these with the
    /// mid-conversation system messages beta); the top-level `system` is the first one.
    System,
}

/// Text or a list of blocks (used for message content, `system` and tool results).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Blocks(Vec<ContentBlock>),
}

impl Content {
    /// The text blocks joined with newlines.
    pub fn joined_text(&self) -> String {
        match self {
            Content::Text(s) => s.clone(),
            Content::Blocks(blocks) => blocks
                .iter()
                .filter_map(|b| b.text.as_deref())
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }

    /// The content as blocks, a plain string becoming one text block.
    pub fn into_blocks(self) -> Vec<ContentBlock> {
        match self {
            Content::Text(s) => vec![ContentBlock::text(s)],
            Content::Blocks(b) => b,
        }
    }
}

/// One content block: `text`, `image`, `tool_use`, `tool_result`, `thinking`,
/// `redacted_thinking`, `document`, … in one struct.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ContentBlock {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Image or document source, e.g. `{"type":"base64","media_type":..,"data":..}` or
    /// `{"type":"url","url":..}`; kept as JSON because documents have more source kinds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Value>,
    /// `tool_use` id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `tool_use` name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `tool_use` arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Value>,
    /// `tool_result` reference to its `tool_use`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_use_id: Option<String>,
    /// `tool_result` content: text or blocks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Content>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_error: Option<bool>,
    /// `thinking` text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl ContentBlock {
    pub fn text(text: impl Into<String>) -> Self {
        ContentBlock {
            kind: "text".into(),
            text: Some(text.into()),
            ..Default::default()
        }
    }

    pub fn tool_use(id: String, name: String, input: Value) -> Self {
        ContentBlock {
            kind: "tool_use".into(),
            id: Some(id),
            name: Some(name),
            input: Some(input),
            ..Default::default()
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ImageSource {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tool {
    /// Absent for client tools; set (`web_search_20250305`, `bash_20250124`, …) for
    /// Anthropic's own tools, which only Anthropic can run.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_schema: Option<Value>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// A complete message (non-streamed response, and the `message` of `message_start`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MessagesResponse {
    #[serde(default)]
    pub id: String,
    #[serde(rename = "type", default = "message_type")]
    pub kind: String,
    #[serde(default = "assistant_role")]
    pub role: MessageRole,
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub content: Vec<ContentBlock>,
    #[serde(default)]
    pub stop_reason: Option<String>,
    #[serde(default)]
    pub stop_sequence: Option<String>,
    #[serde(default)]
    pub usage: Usage,
}

fn message_type() -> String {
    "message".into()
}

fn assistant_role() -> MessageRole {
    MessageRole::Assistant
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    #[serde(default)]
    pub input_tokens: u64,
    #[serde(default)]
    pub output_tokens: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_creation_input_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_read_input_tokens: Option<u64>,
}

/// The usage of a `message_delta` event: cumulative output tokens, and (in newer API
/// versions) the input counts too.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DeltaUsage {
    #[serde(default)]
    pub output_tokens: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_creation_input_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_read_input_tokens: Option<u64>,
}

/// One stream event. The SSE `event:` line repeats the `type` tag.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StreamEvent {
    MessageStart {
        message: MessagesResponse,
    },
    ContentBlockStart {
        index: u32,
        content_block: ContentBlock,
    },
    ContentBlockDelta {
        index: u32,
        delta: BlockDelta,
    },
    ContentBlockStop {
        index: u32,
    },
    MessageDelta {
        delta: MessageDeltaBody,
        #[serde(default)]
        usage: DeltaUsage,
    },
    MessageStop,
    Ping,
    Error {
        error: ErrorObject,
    },
}

impl StreamEvent {
    /// The SSE event name, which equals the `type` tag.
    pub fn name(&self) -> &'static str {
        match self {
            StreamEvent::MessageStart { .. } => "message_start",
            StreamEvent::ContentBlockStart { .. } => "content_block_start",
            StreamEvent::ContentBlockDelta { .. } => "content_block_delta",
            StreamEvent::ContentBlockStop { .. } => "content_block_stop",
            StreamEvent::MessageDelta { .. } => "message_delta",
            StreamEvent::MessageStop => "message_stop",
            StreamEvent::Ping => "ping",
            StreamEvent::Error { .. } => "error",
        }
    }
}

/// `content_block_delta.delta`: `text_delta`, `input_json_delta`, `thinking_delta`,
/// `signature_delta`, `citations_delta`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BlockDelta {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partial_json: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thinking: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MessageDeltaBody {
    #[serde(default)]
    pub stop_reason: Option<String>,
    #[serde(default)]
    pub stop_sequence: Option<String>,
}

/// `{"type":"error","error":{"type":..,"message":..}}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    #[serde(rename = "type", default = "error_type")]
    pub kind: String,
    pub error: ErrorObject,
}

fn error_type() -> String {
    "error".into()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorObject {
    #[serde(rename = "type")]
    pub kind: String,
    pub message: String,
}

impl ErrorBody {
    pub fn new(kind: impl Into<String>, message: impl Into<String>) -> Self {
        ErrorBody {
            kind: "error".into(),
            error: ErrorObject {
                kind: kind.into(),
                message: message.into(),
            },
        }
    }
}

/// `count_tokens` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CountTokensResponse {
    pub input_tokens: u64,
}

/// What Sluice reads from a pass-through Anthropic body or stream event to find usage.
#[derive(Debug, Default, Deserialize)]
pub struct UsageProbe {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default)]
    pub usage: Option<DeltaUsage>,
    #[serde(default)]
    pub message: Option<Box<UsageProbe>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_blocks_and_fields_round_trip() {
        let body = r#"{"model":"claude","max_tokens":10,"system":[{"type":"text","text":"be brief","cache_control":{"type":"ephemeral"}}],"messages":[{"role":"user","content":[{"type":"document","source":{"type":"text","media_type":"text/plain","data":"x"},"citations":{"enabled":true}}]}],"thinking":{"type":"enabled","budget_tokens":1024}}"#;
        let req: MessagesRequest = serde_json::from_str(body).unwrap();
        let back = serde_json::to_value(&req).unwrap();
        let orig: Value = serde_json::from_str(body).unwrap();
        assert_eq!(back, orig);
    }

    #[test]
    fn system_messages_after_the_first_turn_and_unknown_message_fields_round_trip() {
        let body = r#"{"model":"claude","max_tokens":10,"messages":[{"role":"user","content":"hi"},{"role":"system","content":"plan mode","cache_control":{"type":"ephemeral"}},{"role":"user","content":[{"type":"text","text":"go"}],"future":true}],"thinking":{"type":"adaptive"},"context_management":{"edits":[]},"output_config":{"effort":"high"}}"#;
        let req: MessagesRequest = serde_json::from_str(body).unwrap();
        assert_eq!(req.messages[1].role, MessageRole::System);
        let back = serde_json::to_value(&req).unwrap();
        let orig: Value = serde_json::from_str(body).unwrap();
        assert_eq!(back, orig);
        let err = serde_json::from_str::<MessagesRequest>(
            r#"{"model":"c","messages":[{"role":"robot","content":"x"}]}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("robot"), "{err}");
    }

    #[test]
    fn parses_stream_events() {
        let e: StreamEvent = serde_json::from_str(
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"a\""}}"#,
        )
        .unwrap();
        match e {
            StreamEvent::ContentBlockDelta { index, delta } => {
                assert_eq!(index, 1);
                assert_eq!(delta.partial_json.as_deref(), Some("{\"a\""));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
