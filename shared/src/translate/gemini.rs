//! Gemini `generateContent` ↔ OpenAI Chat Completions.

use std::collections::HashMap;

use serde_json::{Value, json};

use super::{ResponseMeta, TranslateError, gemini_finish_to_openai, parse_data_url};
use crate::Extra;
use crate::gemini::{
    Blob, Content, FileData, FunctionCall, FunctionDeclaration, FunctionResponse,
    GenerateContentRequest, GenerateContentResponse, GenerationConfig, Part, Tool, UsageMetadata,
};
use crate::openai::{
    self, ChatMessage, ChatRequest, ChatResponse, Choice, MessageContent, Role, ToolCall,
};

/// An OpenAI chat request as a Gemini request. The model goes in the URL, not the body.
pub fn request_from_openai(req: ChatRequest) -> Result<GenerateContentRequest, TranslateError> {
    let mut system = Vec::new();
    let mut contents: Vec<Content> = Vec::with_capacity(req.messages.len());
    // Gemini's function responses name the function, OpenAI's tool messages name the call.
    let mut call_names: HashMap<String, String> = HashMap::new();
    for message in req.messages {
        let (role, parts) = match message.role {
            Role::System | Role::Developer => {
                system.push(Part::text(message.text_content()));
                continue;
            }
            Role::User => ("user", user_parts(message.content)?),
            Role::Assistant => {
                let mut parts = Vec::new();
                let text = message.text_content();
                if !text.is_empty() {
                    parts.push(Part::text(text));
                }
                for call in message.tool_calls.unwrap_or_default() {
                    let name = call.function.name.unwrap_or_default();
                    if let Some(id) = &call.id {
                        call_names.insert(id.clone(), name.clone());
                    }
                    let args = call
                        .function
                        .arguments
                        .as_deref()
                        .and_then(|a| serde_json::from_str(a).ok())
                        .unwrap_or_else(|| json!({}));
                    parts.push(Part {
                        function_call: Some(FunctionCall {
                            id: None,
                            name,
                            args,
                        }),
                        ..Default::default()
                    });
                }
                ("model", parts)
            }
            Role::Tool | Role::Function => {
                let name = message
                    .tool_call_id
                    .as_ref()
                    .and_then(|id| call_names.get(id).cloned())
                    .or(message.name.clone())
                    .ok_or_else(|| {
                        TranslateError::Unsupported(
                            "a tool message must answer a tool call made earlier in the \
                             conversation to be sent to Gemini"
                                .into(),
                        )
                    })?;
                let text = message.text_content();
                let response = match serde_json::from_str::<Value>(&text) {
                    Ok(v @ Value::Object(_)) => v,
                    _ => json!({ "content": text }),
                };
                let part = Part {
                    function_response: Some(FunctionResponse {
                        id: None,
                        name,
                        response,
                    }),
                    ..Default::default()
                };
                ("user", vec![part])
            }
        };
        match contents.last_mut() {
            Some(last) if last.role.as_deref() == Some(role) => last.parts.extend(parts),
            _ => contents.push(Content {
                role: Some(role.into()),
                parts,
            }),
        }
    }

    let mut declarations = Vec::new();
    for tool in req.tools.unwrap_or_default() {
        let Some(function) = tool.function.filter(|_| tool.kind == "function") else {
            return Err(TranslateError::Unsupported(format!(
                "tool type `{}` cannot be sent to Gemini; only function tools translate",
                tool.kind
            )));
        };
        declarations.push(FunctionDeclaration {
            name: function.name,
            description: function.description,
            parameters: function.parameters.map(sanitize_schema),
        });
    }

    let tool_config = req.tool_choice.as_ref().and_then(|choice| {
        let config = match choice {
            Value::String(mode) => match mode.as_str() {
                "none" => json!({"mode": "NONE"}),
                "required" => json!({"mode": "ANY"}),
                _ => json!({"mode": "AUTO"}),
            },
            Value::Object(_) => {
                let name = choice.pointer("/function/name").and_then(Value::as_str)?;
                json!({"mode": "ANY", "allowedFunctionNames": [name]})
            }
            _ => return None,
        };
        Some(json!({ "functionCallingConfig": config }))
    });

    let format = req.response_format.as_ref();
    let json_mode = matches!(
        format.and_then(|f| f.get("type")).and_then(Value::as_str),
        Some("json_object" | "json_schema")
    );
    let generation_config = GenerationConfig {
        temperature: req.temperature,
        top_p: req.top_p,
        top_k: None,
        max_output_tokens: req.max_completion_tokens.or(req.max_tokens),
        stop_sequences: req.stop.map(openai::Stop::into_vec),
        candidate_count: req.n,
        response_mime_type: json_mode.then(|| "application/json".into()),
        response_json_schema: format
            .and_then(|f| f.pointer("/json_schema/schema"))
            .cloned(),
        extra: Extra::new(),
    };

    Ok(GenerateContentRequest {
        contents,
        system_instruction: (!system.is_empty()).then_some(Content {
            role: None,
            parts: system,
        }),
        tools: (!declarations.is_empty()).then(|| {
            vec![Tool {
                function_declarations: Some(declarations),
                extra: Extra::new(),
            }]
        }),
        tool_config,
        generation_config: Some(generation_config),
        extra: Extra::new(),
    })
}

fn user_parts(content: Option<MessageContent>) -> Result<Vec<Part>, TranslateError> {
    match content {
        None => Ok(Vec::new()),
        Some(MessageContent::Text(text)) => Ok(vec![Part::text(text)]),
        Some(MessageContent::Parts(parts)) => parts
            .into_iter()
            .map(|part| match part.kind.as_str() {
                "text" => Ok(Part::text(part.text.unwrap_or_default())),
                "image_url" => {
                    let url = part.image_url.map(|i| i.url).unwrap_or_default();
                    Ok(match parse_data_url(&url) {
                        Some((mime, data)) => Part {
                            inline_data: Some(Blob {
                                mime_type: mime.into(),
                                data: data.into(),
                            }),
                            ..Default::default()
                        },
                        None => Part {
                            file_data: Some(FileData {
                                mime_type: None,
                                file_uri: url,
                            }),
                            ..Default::default()
                        },
                    })
                }
                other => Err(TranslateError::Unsupported(format!(
                    "content part type `{other}` cannot be sent to Gemini models"
                ))),
            })
            .collect(),
    }
}

/// Gemini's function `parameters` take an OpenAPI subset of JSON Schema and reject
/// keywords such as `additionalProperties` and `$schema` that OpenAI tools often carry.
fn sanitize_schema(mut schema: Value) -> Value {
    fn walk(v: &mut Value) {
        match v {
            Value::Object(map) => {
                for key in ["$schema", "$id", "additionalProperties", "strict"] {
                    map.remove(key);
                }
                map.values_mut().for_each(walk);
            }
            Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut schema);
    schema
}

/// Gemini usage as OpenAI usage; thinking tokens are billed as output.
pub fn usage_to_openai(usage: &UsageMetadata) -> openai::Usage {
    openai::Usage::new(
        usage.prompt_token_count,
        usage
            .candidates_token_count
            .saturating_add(usage.thoughts_token_count.unwrap_or(0)),
        usage.cached_content_token_count,
    )
}

/// A complete Gemini response as an OpenAI chat completion.
pub fn response_to_openai(resp: GenerateContentResponse, meta: &ResponseMeta) -> ChatResponse {
    let mut choices = Vec::with_capacity(resp.candidates.len());
    for (i, candidate) in resp.candidates.into_iter().enumerate() {
        let mut text = String::new();
        let mut reasoning = String::new();
        let mut tool_calls = Vec::new();
        for part in candidate.content.map(|c| c.parts).unwrap_or_default() {
            if let Some(t) = part.text {
                if part.thought == Some(true) {
                    reasoning.push_str(&t);
                } else {
                    text.push_str(&t);
                }
            }
            if let Some(call) = part.function_call {
                tool_calls.push(tool_call_from_gemini(call, i, tool_calls.len(), None));
            }
        }
        let finish = candidate.finish_reason.as_deref().unwrap_or("STOP");
        let finish_reason = gemini_finish_to_openai(finish, !tool_calls.is_empty());
        let mut message = ChatMessage {
            content: (!text.is_empty() || tool_calls.is_empty())
                .then_some(MessageContent::Text(text)),
            tool_calls: (!tool_calls.is_empty()).then_some(tool_calls),
            ..ChatMessage::text(Role::Assistant, "")
        };
        if !reasoning.is_empty() {
            message
                .extra
                .insert("reasoning_content".into(), Value::String(reasoning));
        }
        choices.push(Choice {
            index: candidate.index.unwrap_or(i as u32),
            message,
            finish_reason: Some(finish_reason.into()),
            logprobs: None,
        });
    }
    ChatResponse {
        id: meta.id.clone(),
        object: "chat.completion".into(),
        created: meta.created,
        model: resp.model_version.unwrap_or_else(|| meta.model.clone()),
        choices,
        usage: resp.usage_metadata.as_ref().map(usage_to_openai),
        system_fingerprint: None,
        extra: Extra::new(),
    }
}

/// One Gemini function call as an OpenAI tool call. Gemini ids are optional, so a stable
/// id is made from the candidate and call position when it has none.
pub fn tool_call_from_gemini(
    call: FunctionCall,
    candidate: usize,
    position: usize,
    index: Option<u32>,
) -> ToolCall {
    ToolCall {
        index,
        id: Some(
            call.id
                .unwrap_or_else(|| format!("call_{candidate}_{position}")),
        ),
        kind: Some("function".into()),
        function: openai::FunctionCall {
            name: Some(call.name),
            arguments: Some(call.args.to_string()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_maps_roles_tools_and_json_mode() {
        let req: ChatRequest = serde_json::from_value(json!({
            "model": "gemini-2.5-flash",
            "messages": [
                {"role": "system", "content": "sys"},
                {"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/"}}]},
                {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": "{\"q\":1}"}}]},
                {"role": "tool", "tool_call_id": "c1", "content": "done"}
            ],
            "tools": [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "additionalProperties": false, "properties": {"q": {"type": "integer"}}}}}],
            "response_format": {"type": "json_object"},
            "max_tokens": 50
        }))
        .unwrap();
        let g = request_from_openai(req).unwrap();
        assert_eq!(
            g.system_instruction.unwrap().parts[0].text.as_deref(),
            Some("sys")
        );
        assert_eq!(g.contents.len(), 3);
        assert_eq!(
            g.contents[0].parts[1]
                .inline_data
                .as_ref()
                .unwrap()
                .mime_type,
            "image/jpeg"
        );
        assert_eq!(g.contents[1].role.as_deref(), Some("model"));
        let fr = g.contents[2].parts[0].function_response.as_ref().unwrap();
        assert_eq!(fr.name, "lookup");
        assert_eq!(fr.response, json!({"content": "done"}));
        let params = g.tools.unwrap()[0].function_declarations.as_ref().unwrap()[0]
            .parameters
            .clone()
            .unwrap();
        assert!(params.get("additionalProperties").is_none());
        let config = g.generation_config.unwrap();
        assert_eq!(
            config.response_mime_type.as_deref(),
            Some("application/json")
        );
        assert_eq!(config.max_output_tokens, Some(50));
    }

    #[test]
    fn response_maps_function_calls_and_usage() {
        let resp: GenerateContentResponse = serde_json::from_value(json!({
            "candidates": [{"content": {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {"x": 1}}}]}, "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": 7, "candidatesTokenCount": 3, "totalTokenCount": 10, "thoughtsTokenCount": 2},
            "modelVersion": "gemini-2.5-flash"
        }))
        .unwrap();
        let meta = ResponseMeta {
            id: "chatcmpl-1".into(),
            created: 1,
            model: "g".into(),
        };
        let o = response_to_openai(resp, &meta);
        assert_eq!(o.choices[0].finish_reason.as_deref(), Some("tool_calls"));
        let call = &o.choices[0].message.tool_calls.as_ref().unwrap()[0];
        assert_eq!(call.function.arguments.as_deref(), Some("{\"x\":1}"));
        assert_eq!(o.usage.unwrap().completion_tokens, 5);
    }
}
