//! Anthropic Messages ↔ OpenAI Chat Completions.

use serde_json::{Value, json};

use super::{
    ResponseMeta, TranslateError, anthropic_stop_to_openai, openai_finish_to_anthropic,
    parse_data_url,
};
use crate::anthropic::{
    Content, ContentBlock, Message, MessageRole, MessagesRequest, MessagesResponse, Tool, Usage,
};
use crate::openai::{
    ChatMessage, ChatRequest, ChatResponse, Choice, ContentPart, FunctionCall, FunctionDef,
    MessageContent, Role, Stop, StreamOptions, ToolCall,
};
use crate::{Extra, openai};

/// The `max_tokens` sent to Anthropic when an OpenAI client gave none (Anthropic
/// requires one; this is large enough not to cut ordinary answers short).
pub const DEFAULT_MAX_TOKENS: u32 = 4096;

/// An Anthropic request as an OpenAI chat request.
pub fn request_to_openai(req: MessagesRequest) -> Result<ChatRequest, TranslateError> {
    let stream = req.is_stream();
    let mut messages = Vec::with_capacity(req.messages.len() + 1);
    if let Some(system) = &req.system {
        let text = system.joined_text();
        if !text.is_empty() {
            messages.push(ChatMessage::text(Role::System, text));
        }
    }
    for message in req.messages {
        match message.role {
            MessageRole::User => user_to_openai(message.content, &mut messages)?,
            MessageRole::Assistant => messages.push(assistant_to_openai(message.content)),
            // In place: OpenAI chat takes system messages anywhere in the conversation.
            MessageRole::System => {
                let text = message.content.joined_text();
                if !text.is_empty() {
                    messages.push(ChatMessage::text(Role::System, text));
                }
            }
        }
    }

    let mut tools = Vec::new();
    for tool in req.tools.unwrap_or_default() {
        if let Some(kind) = tool.kind.as_deref().filter(|k| *k != "custom") {
            return Err(TranslateError::Unsupported(format!(
                "tool `{}` of type `{kind}` is run by Anthropic itself and cannot be sent to \
                 another provider; route this request to an Anthropic model",
                tool.name
            )));
        }
        tools.push(openai::Tool {
            kind: "function".into(),
            function: Some(FunctionDef {
                name: tool.name,
                description: tool.description,
                parameters: tool.input_schema,
                extra: Extra::new(),
            }),
            extra: Extra::new(),
        });
    }

    let mut parallel_tool_calls = None;
    let tool_choice = req.tool_choice.as_ref().and_then(|choice| {
        if choice
            .get("disable_parallel_tool_use")
            .and_then(Value::as_bool)
            == Some(true)
        {
            parallel_tool_calls = Some(false);
        }
        match choice.get("type").and_then(Value::as_str)? {
            "auto" => Some(json!("auto")),
            "any" => Some(json!("required")),
            "none" => Some(json!("none")),
            "tool" => {
                let name = choice.get("name").and_then(Value::as_str)?;
                Some(json!({"type": "function", "function": {"name": name}}))
            }
            _ => None,
        }
    });

    Ok(ChatRequest {
        model: req.model,
        messages,
        stream: req.stream,
        stream_options: stream.then(|| StreamOptions {
            include_usage: Some(true),
            extra: Extra::new(),
        }),
        max_tokens: req.max_tokens,
        temperature: req.temperature,
        top_p: req.top_p,
        stop: req.stop_sequences.map(Stop::Many),
        tools: (!tools.is_empty()).then_some(tools),
        tool_choice,
        parallel_tool_calls,
        user: req
            .metadata
            .as_ref()
            .and_then(|m| m.get("user_id"))
            .and_then(Value::as_str)
            .map(str::to_owned),
        ..Default::default()
    })
}

fn user_to_openai(content: Content, out: &mut Vec<ChatMessage>) -> Result<(), TranslateError> {
    let blocks = match content {
        Content::Text(text) => {
            out.push(ChatMessage::text(Role::User, text));
            return Ok(());
        }
        Content::Blocks(blocks) => blocks,
    };
    let mut parts = Vec::new();
    for block in blocks {
        match block.kind.as_str() {
            "text" => parts.push(ContentPart::text(block.text.unwrap_or_default())),
            "image" => parts.push(ContentPart::image(image_source_to_url(
                block.source.as_ref(),
            )?)),
            "document" => parts.push(document_to_openai(block.source.as_ref())?),
            "tool_result" => {
                let mut text = block.content.map(|c| c.joined_text()).unwrap_or_default();
                if block.is_error == Some(true) && !text.starts_with("Error") {
                    text = format!("Error: {text}");
                }
                let mut message = ChatMessage::text(Role::Tool, text);
                message.tool_call_id = block.tool_use_id;
                out.push(message);
            }
            other => {
                return Err(TranslateError::Unsupported(format!(
                    "content block type `{other}` has no equivalent outside Anthropic; \
                     route this request to an Anthropic model"
                )));
            }
        }
    }
    if parts.is_empty() {
        return Ok(());
    }
    let content = if parts.len() == 1 && parts[0].kind == "text" {
        MessageContent::Text(parts.remove(0).text.unwrap_or_default())
    } else {
        MessageContent::Parts(parts)
    };
    out.push(ChatMessage {
        content: Some(content),
        ..ChatMessage::text(Role::User, "")
    });
    Ok(())
}

fn assistant_to_openai(content: Content) -> ChatMessage {
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    for block in content.into_blocks() {
        match block.kind.as_str() {
            "text" => text.push_str(block.text.as_deref().unwrap_or_default()),
            "tool_use" => tool_calls.push(ToolCall {
                index: None,
                id: block.id,
                kind: Some("function".into()),
                function: FunctionCall {
                    name: block.name,
                    arguments: Some(
                        block
                            .input
                            .map(|v| v.to_string())
                            .unwrap_or_else(|| "{}".into()),
                    ),
                },
            }),
            // The model's own reasoning cannot be replayed to another provider; it is
            // not part of the conversation the next model needs.
            _ => {}
        }
    }
    ChatMessage {
        content: (!text.is_empty() || tool_calls.is_empty()).then_some(MessageContent::Text(text)),
        tool_calls: (!tool_calls.is_empty()).then_some(tool_calls),
        ..ChatMessage::text(Role::Assistant, "")
    }
}

fn image_source_to_url(source: Option<&Value>) -> Result<String, TranslateError> {
    let source = source.unwrap_or(&Value::Null);
    match source.get("type").and_then(Value::as_str) {
        Some("base64") => {
            let mime = source
                .get("media_type")
                .and_then(Value::as_str)
                .unwrap_or("image/png");
            let data = source
                .get("data")
                .and_then(Value::as_str)
                .unwrap_or_default();
            Ok(format!("data:{mime};base64,{data}"))
        }
        Some("url") => Ok(source
            .get("url")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()),
        other => Err(TranslateError::Unsupported(format!(
            "image source type `{}` cannot be sent to a non-Anthropic provider; use a base64 \
             or url source",
            other.unwrap_or("missing")
        ))),
    }
}

fn document_to_openai(source: Option<&Value>) -> Result<ContentPart, TranslateError> {
    let source = source.unwrap_or(&Value::Null);
    let mime = source.get("media_type").and_then(Value::as_str);
    match (source.get("type").and_then(Value::as_str), mime) {
        (Some("base64"), Some("application/pdf")) => {
            let data = source
                .get("data")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let mut part = ContentPart::text("");
            part.kind = "file".into();
            part.text = None;
            part.extra.insert(
                "file".into(),
                json!({"filename": "document.pdf", "file_data": format!("data:application/pdf;base64,{data}")}),
            );
            Ok(part)
        }
        (Some("text"), _) => Ok(ContentPart::text(
            source
                .get("data")
                .and_then(Value::as_str)
                .unwrap_or_default(),
        )),
        _ => Err(TranslateError::Unsupported(
            "only base64 PDF and plain-text documents can be sent to a non-Anthropic provider"
                .into(),
        )),
    }
}

/// An OpenAI chat request as an Anthropic request.
pub fn request_from_openai(req: ChatRequest) -> Result<MessagesRequest, TranslateError> {
    if req.n.unwrap_or(1) > 1 {
        return Err(TranslateError::Unsupported(
            "`n` greater than 1 is not supported by Anthropic models; send separate requests"
                .into(),
        ));
    }
    let mut system = Vec::new();
    let mut messages: Vec<Message> = Vec::with_capacity(req.messages.len());
    for message in req.messages {
        let (role, blocks) = match message.role {
            Role::System | Role::Developer => {
                system.push(message.text_content());
                continue;
            }
            Role::User => (MessageRole::User, user_blocks_from_openai(message.content)?),
            Role::Assistant => (
                MessageRole::Assistant,
                assistant_blocks_from_openai(message),
            ),
            Role::Tool | Role::Function => {
                let text = message.text_content();
                let Some(id) = message.tool_call_id else {
                    return Err(TranslateError::Unsupported(
                        "a tool message without `tool_call_id` cannot be sent to Anthropic".into(),
                    ));
                };
                let block = ContentBlock {
                    kind: "tool_result".into(),
                    tool_use_id: Some(id),
                    content: Some(Content::Text(text)),
                    ..Default::default()
                };
                (MessageRole::User, vec![block])
            }
        };
        // Anthropic wants user and assistant turns to alternate: merge neighbours.
        match messages.last_mut() {
            Some(last) if last.role == role => {
                let previous = std::mem::replace(&mut last.content, Content::Blocks(Vec::new()));
                let mut merged = previous.into_blocks();
                merged.extend(blocks);
                last.content = Content::Blocks(merged);
            }
            _ => messages.push(Message {
                role,
                content: Content::Blocks(blocks),
                extra: Extra::new(),
            }),
        }
    }

    match req
        .response_format
        .as_ref()
        .and_then(|f| f.get("type"))
        .and_then(Value::as_str)
    {
        Some("json_object") => {
            system.push("Respond with a single valid JSON object and nothing else.".into());
        }
        Some("json_schema") => {
            let schema = req
                .response_format
                .as_ref()
                .and_then(|f| f.pointer("/json_schema/schema"))
                .cloned()
                .unwrap_or(Value::Null);
            system.push(format!(
                "Respond with a single valid JSON value matching this JSON Schema and nothing else: {schema}"
            ));
        }
        _ => {}
    }

    let mut tools = Vec::new();
    for tool in req.tools.unwrap_or_default() {
        let Some(function) = tool.function.filter(|_| tool.kind == "function") else {
            return Err(TranslateError::Unsupported(format!(
                "tool type `{}` cannot be sent to Anthropic; only function tools translate",
                tool.kind
            )));
        };
        tools.push(Tool {
            kind: None,
            name: function.name,
            description: function.description,
            input_schema: Some(
                function
                    .parameters
                    .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
            ),
            extra: Extra::new(),
        });
    }

    let mut tool_choice = req.tool_choice.as_ref().and_then(|choice| match choice {
        Value::String(mode) => match mode.as_str() {
            "auto" => Some(json!({"type": "auto"})),
            "required" => Some(json!({"type": "any"})),
            "none" => Some(json!({"type": "none"})),
            _ => None,
        },
        Value::Object(_) => choice
            .pointer("/function/name")
            .and_then(Value::as_str)
            .map(|name| json!({"type": "tool", "name": name})),
        _ => None,
    });
    if req.parallel_tool_calls == Some(false) && !tools.is_empty() {
        let choice = tool_choice.get_or_insert_with(|| json!({"type": "auto"}));
        if let Some(obj) = choice.as_object_mut() {
            obj.insert("disable_parallel_tool_use".into(), Value::Bool(true));
        }
    }

    let max_tokens = req
        .max_completion_tokens
        .or(req.max_tokens)
        .unwrap_or(DEFAULT_MAX_TOKENS);
    Ok(MessagesRequest {
        model: req.model,
        messages,
        system: (!system.is_empty()).then(|| Content::Text(system.join("\n\n"))),
        max_tokens: Some(max_tokens),
        stream: req.stream,
        // Anthropic accepts 0..=1; OpenAI allows up to 2.
        temperature: req.temperature.map(|t| t.clamp(0.0, 1.0)),
        top_p: req.top_p,
        top_k: None,
        stop_sequences: req.stop.map(Stop::into_vec),
        tools: (!tools.is_empty()).then_some(tools),
        tool_choice,
        metadata: req.user.map(|u| json!({"user_id": u})),
        extra: Extra::new(),
    })
}

fn user_blocks_from_openai(
    content: Option<MessageContent>,
) -> Result<Vec<ContentBlock>, TranslateError> {
    match content {
        None => Ok(Vec::new()),
        Some(MessageContent::Text(text)) => Ok(vec![ContentBlock::text(text)]),
        Some(MessageContent::Parts(parts)) => parts
            .into_iter()
            .map(|part| match part.kind.as_str() {
                "text" => Ok(ContentBlock::text(part.text.unwrap_or_default())),
                "image_url" => {
                    let url = part.image_url.map(|i| i.url).unwrap_or_default();
                    let source = match parse_data_url(&url) {
                        Some((mime, data)) => {
                            json!({"type": "base64", "media_type": mime, "data": data})
                        }
                        None => json!({"type": "url", "url": url}),
                    };
                    Ok(ContentBlock {
                        kind: "image".into(),
                        source: Some(source),
                        ..Default::default()
                    })
                }
                "file" => {
                    let data = part
                        .extra
                        .get("file")
                        .and_then(|f| f.get("file_data"))
                        .and_then(Value::as_str)
                        .and_then(parse_data_url)
                        .filter(|(mime, _)| *mime == "application/pdf");
                    match data {
                        Some((mime, data)) => Ok(ContentBlock {
                            kind: "document".into(),
                            source: Some(
                                json!({"type": "base64", "media_type": mime, "data": data}),
                            ),
                            ..Default::default()
                        }),
                        None => Err(TranslateError::Unsupported(
                            "only inline PDF files (file_data) can be sent to Anthropic".into(),
                        )),
                    }
                }
                other => Err(TranslateError::Unsupported(format!(
                    "content part type `{other}` cannot be sent to Anthropic models"
                ))),
            })
            .collect(),
    }
}

fn assistant_blocks_from_openai(message: ChatMessage) -> Vec<ContentBlock> {
    let mut blocks = Vec::new();
    let text = message.text_content();
    if !text.is_empty() {
        blocks.push(ContentBlock::text(text));
    }
    for call in message.tool_calls.unwrap_or_default() {
        let arguments = call.function.arguments.unwrap_or_default();
        let input = match serde_json::from_str::<Value>(&arguments) {
            Ok(v @ Value::Object(_)) => v,
            Ok(Value::Null) | Err(_) if arguments.trim().is_empty() => json!({}),
            Ok(other) => json!({ "value": other }),
            Err(_) => json!({ "arguments": arguments }),
        };
        blocks.push(ContentBlock::tool_use(
            call.id.unwrap_or_default(),
            call.function.name.unwrap_or_default(),
            input,
        ));
    }
    blocks
}

/// Anthropic usage as OpenAI usage: OpenAI counts cached input inside `prompt_tokens`.
pub fn usage_to_openai(usage: &Usage) -> openai::Usage {
    let cache_read = usage.cache_read_input_tokens.unwrap_or(0);
    let cache_write = usage.cache_creation_input_tokens.unwrap_or(0);
    openai::Usage::new(
        usage
            .input_tokens
            .saturating_add(cache_read)
            .saturating_add(cache_write),
        usage.output_tokens,
        (cache_read > 0).then_some(cache_read),
    )
}

/// OpenAI usage as Anthropic usage.
pub fn usage_from_openai(usage: &openai::Usage) -> Usage {
    let cached = usage.cached_tokens();
    Usage {
        input_tokens: usage.prompt_tokens.saturating_sub(cached),
        output_tokens: usage.completion_tokens,
        cache_creation_input_tokens: None,
        cache_read_input_tokens: (cached > 0).then_some(cached),
    }
}

/// A complete Anthropic response as an OpenAI chat completion.
pub fn response_to_openai(resp: MessagesResponse, meta: &ResponseMeta) -> ChatResponse {
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut tool_calls = Vec::new();
    for block in resp.content {
        match block.kind.as_str() {
            "text" => text.push_str(block.text.as_deref().unwrap_or_default()),
            "thinking" => reasoning.push_str(block.thinking.as_deref().unwrap_or_default()),
            "tool_use" => tool_calls.push(ToolCall {
                index: None,
                id: block.id,
                kind: Some("function".into()),
                function: FunctionCall {
                    name: block.name,
                    arguments: Some(block.input.unwrap_or_else(|| json!({})).to_string()),
                },
            }),
            _ => {}
        }
    }
    let mut message = ChatMessage {
        content: (!text.is_empty() || tool_calls.is_empty()).then_some(MessageContent::Text(text)),
        tool_calls: (!tool_calls.is_empty()).then_some(tool_calls),
        ..ChatMessage::text(Role::Assistant, "")
    };
    if !reasoning.is_empty() {
        message
            .extra
            .insert("reasoning_content".into(), Value::String(reasoning));
    }
    ChatResponse {
        id: if resp.id.is_empty() {
            meta.id.clone()
        } else {
            resp.id
        },
        object: "chat.completion".into(),
        created: meta.created,
        model: if resp.model.is_empty() {
            meta.model.clone()
        } else {
            resp.model
        },
        choices: vec![Choice {
            index: 0,
            message,
            finish_reason: Some(
                anthropic_stop_to_openai(resp.stop_reason.as_deref().unwrap_or("end_turn")).into(),
            ),
            logprobs: None,
        }],
        usage: Some(usage_to_openai(&resp.usage)),
        system_fingerprint: None,
        extra: Extra::new(),
    }
}

/// A complete OpenAI chat completion as an Anthropic response (first choice).
pub fn response_from_openai(resp: ChatResponse, meta: &ResponseMeta) -> MessagesResponse {
    let mut content = Vec::new();
    let mut stop_reason = "end_turn";
    if let Some(choice) = resp.choices.into_iter().next() {
        stop_reason = openai_finish_to_anthropic(choice.finish_reason.as_deref().unwrap_or("stop"));
        content = assistant_blocks_from_openai(choice.message);
    }
    MessagesResponse {
        id: meta.id.clone(),
        kind: "message".into(),
        role: MessageRole::Assistant,
        model: if resp.model.is_empty() {
            meta.model.clone()
        } else {
            resp.model
        },
        content,
        stop_reason: Some(stop_reason.into()),
        stop_sequence: None,
        usage: resp
            .usage
            .as_ref()
            .map(usage_from_openai)
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> ResponseMeta {
        ResponseMeta {
            id: "msg_1".into(),
            created: 1,
            model: "m".into(),
        }
    }

    #[test]
    fn tool_round_trip_openai_to_anthropic_and_back() {
        let req: ChatRequest = serde_json::from_value(json!({
            "model": "x",
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "weather?"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
                {"role": "tool", "tool_call_id": "call_2", "content": "rainy"}
            ],
            "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
            "tool_choice": "required",
            "temperature": 1.7,
        }))
        .unwrap();
        let a = request_from_openai(req).unwrap();
        assert_eq!(
            a.system.as_ref().map(Content::joined_text).as_deref(),
            Some("be brief")
        );
        assert_eq!(a.max_tokens, Some(DEFAULT_MAX_TOKENS));
        assert_eq!(a.temperature, Some(1.0));
        assert_eq!(a.tool_choice, Some(json!({"type": "any"})));
        assert_eq!(
            a.messages.len(),
            3,
            "two tool results merge into one user turn"
        );
        let blocks = a.messages[0].content.clone().into_blocks();
        assert_eq!(blocks[1].kind, "image");
        assert_eq!(
            blocks[1].source.as_ref().unwrap()["media_type"],
            "image/png"
        );
        let call = &a.messages[1].content.clone().into_blocks()[0];
        assert_eq!(call.input, Some(json!({"city": "Paris"})));
        let results = a.messages[2].content.clone().into_blocks();
        assert_eq!(results.len(), 2);
        assert_eq!(results[1].tool_use_id.as_deref(), Some("call_2"));

        let back = request_to_openai(a).unwrap();
        let roles: Vec<Role> = back.messages.iter().map(|m| m.role).collect();
        assert_eq!(
            roles,
            vec![
                Role::System,
                Role::User,
                Role::Assistant,
                Role::Tool,
                Role::Tool
            ]
        );
        assert_eq!(back.tool_choice, Some(json!("required")));
    }

    #[test]
    fn server_tools_are_refused() {
        let req: MessagesRequest = serde_json::from_value(json!({
            "model": "x", "max_tokens": 5,
            "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"type": "web_search_20250305", "name": "web_search"}]
        }))
        .unwrap();
        let err = request_to_openai(req).unwrap_err();
        assert!(err.to_string().contains("web_search"));
    }

    #[test]
    fn response_translation_keeps_usage_and_tool_calls() {
        let resp: MessagesResponse = serde_json::from_value(json!({
            "id": "msg_9", "type": "message", "role": "assistant", "model": "claude",
            "content": [{"type": "text", "text": "ok"}, {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {"a": 1}}],
            "stop_reason": "tool_use",
            "usage": {"input_tokens": 10, "output_tokens": 5, "cache_read_input_tokens": 4}
        }))
        .unwrap();
        let o = response_to_openai(resp, &meta());
        assert_eq!(o.choices[0].finish_reason.as_deref(), Some("tool_calls"));
        let u = o.usage.clone().unwrap();
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, u.cached_tokens()),
            (14, 5, 4)
        );
        let back = response_from_openai(o, &meta());
        assert_eq!(back.stop_reason.as_deref(), Some("tool_use"));
        assert_eq!(back.usage.input_tokens, 10);
        assert_eq!(back.content[1].input, Some(json!({"a": 1})));
    }
}
