//! Stream translation.
//!
//! Provider streams are first turned into OpenAI chat chunks ([`AnthropicToOpenAi`],
//! [`GeminiToOpenAi`]); an Anthropic client then gets them re-encoded as Anthropic events
//! by [`OpenAiToAnthropic`]. Each translator is a small state machine fed one parsed
//! event at a time, so nothing is buffered beyond the event in hand.

use serde_json::json;

use super::{anthropic_stop_to_openai, gemini_finish_to_openai, openai_finish_to_anthropic};
use crate::anthropic::{
    self, BlockDelta, ContentBlock, DeltaUsage, MessageDeltaBody, MessageRole, MessagesResponse,
    StreamEvent,
};
use crate::gemini::GenerateContentResponse;
use crate::openai::{ChatChunk, ChunkChoice, Delta, FunctionCall, Role, ToolCall, Usage};
use crate::translate::gemini::{tool_call_from_gemini, usage_to_openai};

/// An error the provider reported inside its stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamFailure {
    /// The provider's error type (`overloaded_error`, `server_error`, `UNAVAILABLE`…).
    pub kind: String,
    pub message: String,
}

/// Builds OpenAI chunks that share one id, model and timestamp.
#[derive(Debug, Clone)]
pub struct ChunkFactory {
    pub id: String,
    pub model: String,
    pub created: u64,
}

impl ChunkFactory {
    pub fn chunk(&self, delta: Delta, finish_reason: Option<&str>) -> ChatChunk {
        ChatChunk {
            id: self.id.clone(),
            object: "chat.completion.chunk".into(),
            created: self.created,
            model: self.model.clone(),
            choices: vec![ChunkChoice {
                index: 0,
                delta,
                finish_reason: finish_reason.map(str::to_owned),
                logprobs: None,
            }],
            usage: None,
            system_fingerprint: None,
        }
    }

    /// The final `choices: []` chunk that carries usage (`stream_options.include_usage`).
    pub fn usage_chunk(&self, usage: Usage) -> ChatChunk {
        ChatChunk {
            choices: Vec::new(),
            usage: Some(usage),
            ..self.chunk(Delta::default(), None)
        }
    }
}

fn text_delta(text: String) -> Delta {
    Delta {
        content: Some(text),
        ..Default::default()
    }
}

/// Anthropic stream events → OpenAI chunks.
#[derive(Debug)]
pub struct AnthropicToOpenAi {
    factory: ChunkFactory,
    /// OpenAI tool-call index for each Anthropic content block index that is a tool use.
    tool_blocks: Vec<(u32, u32)>,
    usage: anthropic::Usage,
}

impl AnthropicToOpenAi {
    pub fn new(factory: ChunkFactory) -> Self {
        AnthropicToOpenAi {
            factory,
            tool_blocks: Vec::new(),
            usage: anthropic::Usage::default(),
        }
    }

    /// Usage seen so far, in OpenAI terms.
    pub fn usage(&self) -> Usage {
        super::anthropic::usage_to_openai(&self.usage)
    }

    pub fn factory(&self) -> &ChunkFactory {
        &self.factory
    }

    /// Translates one event. An `error` event becomes `Err`.
    pub fn on_event(&mut self, event: StreamEvent) -> Result<Vec<ChatChunk>, StreamFailure> {
        let f = &self.factory;
        Ok(match event {
            StreamEvent::MessageStart { message } => {
                self.usage = message.usage;
                if !message.id.is_empty() {
                    self.factory.id = message.id;
                }
                let delta = Delta {
                    role: Some(Role::Assistant),
                    content: Some(String::new()),
                    ..Default::default()
                };
                vec![self.factory.chunk(delta, None)]
            }
            StreamEvent::ContentBlockStart {
                index,
                content_block,
            } => match content_block.kind.as_str() {
                "tool_use" => {
                    let tool_index = self.tool_blocks.len() as u32;
                    self.tool_blocks.push((index, tool_index));
                    let call = ToolCall {
                        index: Some(tool_index),
                        id: content_block.id,
                        kind: Some("function".into()),
                        function: FunctionCall {
                            name: content_block.name,
                            arguments: Some(String::new()),
                        },
                    };
                    let delta = Delta {
                        tool_calls: Some(vec![call]),
                        ..Default::default()
                    };
                    vec![f.chunk(delta, None)]
                }
                "text" => match content_block.text.filter(|t| !t.is_empty()) {
                    Some(text) => vec![f.chunk(text_delta(text), None)],
                    None => Vec::new(),
                },
                _ => Vec::new(),
            },
            StreamEvent::ContentBlockDelta { index, delta } => match delta.kind.as_str() {
                "text_delta" => vec![f.chunk(text_delta(delta.text.unwrap_or_default()), None)],
                "thinking_delta" => {
                    let d = Delta {
                        reasoning_content: delta.thinking,
                        ..Default::default()
                    };
                    vec![f.chunk(d, None)]
                }
                "input_json_delta" => {
                    let Some(&(_, tool_index)) = self.tool_blocks.iter().find(|(b, _)| *b == index)
                    else {
                        return Ok(Vec::new());
                    };
                    let call = ToolCall {
                        index: Some(tool_index),
                        function: FunctionCall {
                            name: None,
                            arguments: delta.partial_json,
                        },
                        ..Default::default()
                    };
                    vec![f.chunk(
                        Delta {
                            tool_calls: Some(vec![call]),
                            ..Default::default()
                        },
                        None,
                    )]
                }
                _ => Vec::new(),
            },
            StreamEvent::MessageDelta { delta, usage } => {
                self.usage.output_tokens = usage.output_tokens;
                if let Some(input) = usage.input_tokens {
                    self.usage.input_tokens = input;
                }
                if let Some(c) = usage.cache_read_input_tokens {
                    self.usage.cache_read_input_tokens = Some(c);
                }
                if let Some(c) = usage.cache_creation_input_tokens {
                    self.usage.cache_creation_input_tokens = Some(c);
                }
                match delta.stop_reason {
                    Some(stop) => {
                        vec![f.chunk(Delta::default(), Some(anthropic_stop_to_openai(&stop)))]
                    }
                    None => Vec::new(),
                }
            }
            StreamEvent::Error { error } => {
                return Err(StreamFailure {
                    kind: error.kind,
                    message: error.message,
                });
            }
            StreamEvent::ContentBlockStop { .. } | StreamEvent::MessageStop | StreamEvent::Ping => {
                Vec::new()
            }
        })
    }
}

/// Gemini stream events (each a `GenerateContentResponse`) → OpenAI chunks.
#[derive(Debug)]
pub struct GeminiToOpenAi {
    factory: ChunkFactory,
    started: bool,
    tool_calls: u32,
    usage: Usage,
}

impl GeminiToOpenAi {
    pub fn new(factory: ChunkFactory) -> Self {
        GeminiToOpenAi {
            factory,
            started: false,
            tool_calls: 0,
            usage: Usage::default(),
        }
    }

    pub fn usage(&self) -> Usage {
        self.usage.clone()
    }

    pub fn factory(&self) -> &ChunkFactory {
        &self.factory
    }

    pub fn on_event(
        &mut self,
        event: GenerateContentResponse,
    ) -> Result<Vec<ChatChunk>, StreamFailure> {
        if let Some(error) = event.error {
            return Err(StreamFailure {
                kind: error.status,
                message: error.message,
            });
        }
        let mut out = Vec::new();
        if !self.started {
            self.started = true;
            let delta = Delta {
                role: Some(Role::Assistant),
                content: Some(String::new()),
                ..Default::default()
            };
            out.push(self.factory.chunk(delta, None));
        }
        if let Some(usage) = &event.usage_metadata {
            // Gemini repeats cumulative usage on every event; the last one is the total.
            self.usage = usage_to_openai(usage);
        }
        let Some(candidate) = event.candidates.into_iter().next() else {
            return Ok(out);
        };
        for part in candidate.content.map(|c| c.parts).unwrap_or_default() {
            if let Some(text) = part.text.filter(|t| !t.is_empty()) {
                let delta = if part.thought == Some(true) {
                    Delta {
                        reasoning_content: Some(text),
                        ..Default::default()
                    }
                } else {
                    text_delta(text)
                };
                out.push(self.factory.chunk(delta, None));
            }
            if let Some(call) = part.function_call {
                let index = self.tool_calls;
                self.tool_calls += 1;
                let call = tool_call_from_gemini(call, 0, index as usize, Some(index));
                let delta = Delta {
                    tool_calls: Some(vec![call]),
                    ..Default::default()
                };
                out.push(self.factory.chunk(delta, None));
            }
        }
        if let Some(finish) = candidate.finish_reason {
            let reason = gemini_finish_to_openai(&finish, self.tool_calls > 0);
            out.push(self.factory.chunk(Delta::default(), Some(reason)));
        }
        Ok(out)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpenBlock {
    None,
    Text,
    Thinking,
    /// A tool use, with the OpenAI tool-call index it came from.
    Tool(u32),
}

/// OpenAI chunks → Anthropic events, for an Anthropic client reaching another provider.
#[derive(Debug)]
pub struct OpenAiToAnthropic {
    id: String,
    model: String,
    started: bool,
    open: OpenBlock,
    next_block: u32,
    stop_reason: Option<&'static str>,
    usage: Option<Usage>,
}

impl OpenAiToAnthropic {
    /// `id` is the `msg_…` id to report; `model` the model to report until the provider
    /// names one.
    pub fn new(id: String, model: String) -> Self {
        OpenAiToAnthropic {
            id,
            model,
            started: false,
            open: OpenBlock::None,
            next_block: 0,
            stop_reason: None,
            usage: None,
        }
    }

    fn start(&mut self, out: &mut Vec<StreamEvent>) {
        if self.started {
            return;
        }
        self.started = true;
        let usage = self.usage.as_ref().map(super::anthropic::usage_from_openai);
        out.push(StreamEvent::MessageStart {
            message: MessagesResponse {
                id: self.id.clone(),
                kind: "message".into(),
                role: MessageRole::Assistant,
                model: self.model.clone(),
                content: Vec::new(),
                stop_reason: None,
                stop_sequence: None,
                usage: usage.unwrap_or_default(),
            },
        });
    }

    fn close_block(&mut self, out: &mut Vec<StreamEvent>) {
        if self.open != OpenBlock::None {
            out.push(StreamEvent::ContentBlockStop {
                index: self.next_block - 1,
            });
            self.open = OpenBlock::None;
        }
    }

    fn open_block(&mut self, kind: OpenBlock, block: ContentBlock, out: &mut Vec<StreamEvent>) {
        self.close_block(out);
        out.push(StreamEvent::ContentBlockStart {
            index: self.next_block,
            content_block: block,
        });
        self.next_block += 1;
        self.open = kind;
    }

    fn delta(&self, delta: BlockDelta) -> StreamEvent {
        StreamEvent::ContentBlockDelta {
            index: self.next_block.saturating_sub(1),
            delta,
        }
    }

    /// Translates one OpenAI chunk.
    pub fn on_chunk(&mut self, chunk: ChatChunk) -> Vec<StreamEvent> {
        let mut out = Vec::new();
        if !chunk.model.is_empty() {
            self.model = chunk.model;
        }
        if let Some(usage) = chunk.usage {
            self.usage = Some(usage);
        }
        self.start(&mut out);
        let Some(choice) = chunk.choices.into_iter().find(|c| c.index == 0) else {
            return out;
        };
        let delta = choice.delta;
        if let Some(thinking) = delta.reasoning_content.filter(|t| !t.is_empty()) {
            if self.open != OpenBlock::Thinking {
                let block = ContentBlock {
                    kind: "thinking".into(),
                    thinking: Some(String::new()),
                    ..Default::default()
                };
                self.open_block(OpenBlock::Thinking, block, &mut out);
            }
            out.push(self.delta(BlockDelta {
                kind: "thinking_delta".into(),
                thinking: Some(thinking),
                ..Default::default()
            }));
        }
        if let Some(text) = delta.content.filter(|t| !t.is_empty()) {
            if self.open != OpenBlock::Text {
                self.open_block(OpenBlock::Text, ContentBlock::text(""), &mut out);
            }
            out.push(self.delta(BlockDelta {
                kind: "text_delta".into(),
                text: Some(text),
                ..Default::default()
            }));
        }
        for call in delta.tool_calls.unwrap_or_default() {
            let index = call.index.unwrap_or(0);
            if self.open != OpenBlock::Tool(index) {
                let block = ContentBlock::tool_use(
                    call.id
                        .clone()
                        .unwrap_or_else(|| format!("toolu_{}_{index}", self.id)),
                    call.function.name.clone().unwrap_or_default(),
                    json!({}),
                );
                self.open_block(OpenBlock::Tool(index), block, &mut out);
            }
            if let Some(args) = call.function.arguments.filter(|a| !a.is_empty()) {
                out.push(self.delta(BlockDelta {
                    kind: "input_json_delta".into(),
                    partial_json: Some(args),
                    ..Default::default()
                }));
            }
        }
        if let Some(finish) = choice.finish_reason {
            self.stop_reason = Some(openai_finish_to_anthropic(&finish));
        }
        out
    }

    /// Ends the message: closes the open block and sends `message_delta` (stop reason and
    /// usage, which OpenAI only reports at the end) and `message_stop`.
    pub fn finish(&mut self) -> Vec<StreamEvent> {
        let mut out = Vec::new();
        self.start(&mut out);
        self.close_block(&mut out);
        let usage = self
            .usage
            .as_ref()
            .map(super::anthropic::usage_from_openai)
            .unwrap_or_default();
        out.push(StreamEvent::MessageDelta {
            delta: MessageDeltaBody {
                stop_reason: Some(self.stop_reason.unwrap_or("end_turn").into()),
                stop_sequence: None,
            },
            usage: DeltaUsage {
                output_tokens: usage.output_tokens,
                input_tokens: Some(usage.input_tokens),
                cache_creation_input_tokens: None,
                cache_read_input_tokens: usage.cache_read_input_tokens,
            },
        });
        out.push(StreamEvent::MessageStop);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn factory() -> ChunkFactory {
        ChunkFactory {
            id: "chatcmpl-1".into(),
            model: "m".into(),
            created: 1,
        }
    }

    fn ev(v: Value) -> StreamEvent {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn anthropic_tool_stream_becomes_openai_tool_chunks() {
        let mut t = AnthropicToOpenAi::new(factory());
        let mut chunks = Vec::new();
        for e in [
            json!({"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"c","content":[],"usage":{"input_tokens":9,"output_tokens":1}}}),
            json!({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}),
            json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Let me check."}}),
            json!({"type":"content_block_stop","index":0}),
            json!({"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_1","name":"get","input":{}}}),
            json!({"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"a\":"}}),
            json!({"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"1}"}}),
            json!({"type":"content_block_stop","index":1}),
            json!({"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":12}}),
            json!({"type":"message_stop"}),
        ] {
            chunks.extend(t.on_event(ev(e)).unwrap());
        }
        let args: String = chunks
            .iter()
            .flat_map(|c| c.choices.iter())
            .flat_map(|c| c.delta.tool_calls.iter().flatten())
            .filter_map(|tc| tc.function.arguments.clone())
            .collect();
        assert_eq!(args, "{\"a\":1}");
        assert_eq!(
            chunks.last().unwrap().choices[0].finish_reason.as_deref(),
            Some("tool_calls")
        );
        let u = t.usage();
        assert_eq!((u.prompt_tokens, u.completion_tokens), (9, 12));
        let err = t.on_event(ev(
            json!({"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}),
        ));
        assert_eq!(err.unwrap_err().kind, "overloaded_error");
    }

    #[test]
    fn openai_chunks_become_a_well_formed_anthropic_stream() {
        let f = factory();
        let mut t = OpenAiToAnthropic::new("msg_x".into(), "m".into());
        let mut events = Vec::new();
        let role = Delta {
            role: Some(Role::Assistant),
            content: Some(String::new()),
            ..Default::default()
        };
        events.extend(t.on_chunk(f.chunk(role, None)));
        events.extend(t.on_chunk(f.chunk(text_delta("Hi ".into()), None)));
        events.extend(t.on_chunk(f.chunk(text_delta("there".into()), None)));
        let call = ToolCall {
            index: Some(0),
            id: Some("call_1".into()),
            kind: Some("function".into()),
            function: FunctionCall {
                name: Some("f".into()),
                arguments: Some("{}".into()),
            },
        };
        events.extend(t.on_chunk(f.chunk(
            Delta {
                tool_calls: Some(vec![call]),
                ..Default::default()
            },
            None,
        )));
        events.extend(t.on_chunk(f.chunk(Delta::default(), Some("tool_calls"))));
        events.extend(t.on_chunk(f.usage_chunk(Usage::new(5, 7, None))));
        events.extend(t.finish());
        let names: Vec<&str> = events.iter().map(StreamEvent::name).collect();
        assert_eq!(
            names,
            vec![
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        match &events[8] {
            StreamEvent::MessageDelta { delta, usage } => {
                assert_eq!(delta.stop_reason.as_deref(), Some("tool_use"));
                assert_eq!((usage.input_tokens, usage.output_tokens), (Some(5), 7));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn gemini_events_become_openai_chunks_with_final_usage() {
        let mut t = GeminiToOpenAi::new(factory());
        let mut chunks = Vec::new();
        for e in [
            json!({"candidates":[{"content":{"role":"model","parts":[{"text":"Hel"}]}}],"usageMetadata":{"promptTokenCount":4,"candidatesTokenCount":1,"totalTokenCount":5}}),
            json!({"candidates":[{"content":{"role":"model","parts":[{"text":"lo"}]},"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":4,"candidatesTokenCount":2,"totalTokenCount":6}}),
        ] {
            chunks.extend(t.on_event(serde_json::from_value(e).unwrap()).unwrap());
        }
        let text: String = chunks
            .iter()
            .filter_map(|c| c.choices[0].delta.content.clone())
            .collect();
        assert_eq!(text, "Hello");
        assert_eq!(
            chunks.last().unwrap().choices[0].finish_reason.as_deref(),
            Some("stop")
        );
        assert_eq!(t.usage().total_tokens, 6);
    }
}
