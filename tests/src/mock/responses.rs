//! OpenAI Responses API: `POST /v1/responses`, buffered and streamed.

use bytes::Bytes;
use serde_json::{Value, json};

use super::error::{ApiError, ApiShape, stream_error_event};
use super::openai::content_text;
use super::outcome::Outcome;
use super::reply::{
    Generated, Prompt, Reply, argument_fragments, generate, str_field, unix_now, word_chunks,
};
use super::state::MockState;
use super::stream::{SseEvent, StreamPlan};

fn responses_prompt(body: &Value) -> Result<Prompt, ApiError> {
    let model = match body.get("model") {
        Some(Value::String(model)) if !model.is_empty() => model.clone(),
        _ => {
            return Err(
                ApiError::bad_request("Missing required parameter: 'model'.").with_param("model"),
            );
        }
    };
    let mut prompt = Prompt {
        model,
        ..Prompt::default()
    };
    if let Some(instructions) = str_field(body, "instructions") {
        prompt.add_system(instructions);
    }
    match body.get("input") {
        Some(Value::String(text)) if !text.is_empty() => {
            prompt.count(text);
            prompt.last_user_text = text.clone();
            prompt.last_is_user = true;
        }
        Some(Value::Array(items)) if !items.is_empty() => {
            for item in items {
                match (str_field(item, "type"), str_field(item, "role")) {
                    (Some("function_call_output"), _) => {
                        prompt.count(&content_text(item.get("output")).0);
                    }
                    (_, Some("system" | "developer")) => {
                        prompt.add_system(&content_text(item.get("content")).0);
                    }
                    (_, Some(_)) => prompt.count(&content_text(item.get("content")).0),
                    _ => {}
                }
            }
            if let Some(last) = items.last() {
                if str_field(last, "type") == Some("function_call_output") {
                    prompt.tool_result = Some(content_text(last.get("output")).0);
                } else if str_field(last, "role") == Some("user") {
                    prompt.last_is_user = true;
                }
            }
            if let Some(user) = items
                .iter()
                .rev()
                .find(|item| str_field(item, "role") == Some("user"))
            {
                (prompt.last_user_text, prompt.last_user_images) =
                    content_text(user.get("content"));
            }
        }
        None | Some(Value::Null) => {
            return Err(
                ApiError::bad_request("Missing required parameter: 'input'.").with_param("input"),
            );
        }
        Some(_) => {
            return Err(ApiError::bad_request(
                "Invalid 'input': expected a non-empty string or a non-empty array of input items.",
            )
            .with_param("input"));
        }
    }
    let first_tool = body
        .get("tools")
        .and_then(Value::as_array)
        .and_then(|tools| {
            tools
                .iter()
                .filter(|tool| str_field(tool, "type") == Some("function"))
                .find_map(|tool| str_field(tool, "name"))
        });
    prompt.tool_to_call = match body.get("tool_choice") {
        Some(Value::String(choice)) if choice == "none" => None,
        Some(choice @ Value::Object(_)) => {
            str_field(choice, "name").or(first_tool).map(str::to_owned)
        }
        _ => first_tool.map(str::to_owned),
    };
    prompt.json_mode = matches!(
        body.get("text")
            .and_then(|text| text.get("format"))
            .and_then(|format| str_field(format, "type")),
        Some("json_object" | "json_schema")
    );
    Ok(prompt)
}

/// Everything the response object echoes back or numbers, fixed for one request.
struct ResponseFrame<'a> {
    response_id: String,
    item_id: String,
    call_id: String,
    created_at: u64,
    model: &'a str,
    request: &'a Value,
}

impl ResponseFrame<'_> {
    fn response(&self, status: &str, output: Vec<Value>, usage: Option<&Generated>) -> Value {
        let usage = usage.map(|generated| {
            json!({
                "input_tokens": generated.input_tokens,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": generated.output_tokens,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": generated.total_tokens(),
            })
        });
        let echo = |field: &str, default: Value| {
            self.request
                .get(field)
                .filter(|value| !value.is_null())
                .cloned()
                .unwrap_or(default)
        };
        json!({
            "id": self.response_id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "error": null,
            "incomplete_details": null,
            "instructions": echo("instructions", Value::Null),
            "max_output_tokens": echo("max_output_tokens", Value::Null),
            "model": self.model,
            "output": output,
            "parallel_tool_calls": echo("parallel_tool_calls", Value::Bool(true)),
            "previous_response_id": echo("previous_response_id", Value::Null),
            "reasoning": {"effort": null, "summary": null},
            "store": echo("store", Value::Bool(true)),
            "temperature": echo("temperature", Value::from(1.0)),
            "text": echo("text", json!({"format": {"type": "text"}})),
            "tool_choice": echo("tool_choice", Value::from("auto")),
            "tools": echo("tools", json!([])),
            "top_p": echo("top_p", Value::from(1.0)),
            "truncation": echo("truncation", Value::from("disabled")),
            "usage": usage,
            "user": echo("user", Value::Null),
            "metadata": echo("metadata", json!({})),
        })
    }

    fn text_part(text: &str) -> Value {
        json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []})
    }

    fn message_item(&self, status: &str, content: Vec<Value>) -> Value {
        json!({
            "type": "message",
            "id": self.item_id,
            "status": status,
            "role": "assistant",
            "content": content,
        })
    }

    fn call_item(&self, status: &str, name: &str, arguments: &str) -> Value {
        json!({
            "type": "function_call",
            "id": self.item_id,
            "call_id": self.call_id,
            "name": name,
            "arguments": arguments,
            "status": status,
        })
    }

    fn output_item(&self, reply: &Reply) -> Value {
        match reply {
            Reply::Text(text) => self.message_item("completed", vec![Self::text_part(text)]),
            Reply::ToolCall { name, arguments } => {
                self.call_item("completed", name, &arguments.to_string())
            }
        }
    }
}

/// `POST /v1/responses`.
pub fn create_response(state: &MockState, body: &Value) -> Result<Outcome, ApiError> {
    let prompt = responses_prompt(body)?;
    let generated = generate(&prompt);
    let id = state.next_id();
    let frame = ResponseFrame {
        response_id: format!("resp_mock_{id}"),
        item_id: match generated.reply {
            Reply::Text(_) => format!("msg_mock_{id}"),
            Reply::ToolCall { .. } => format!("fc_mock_{id}"),
        },
        call_id: format!("call_mock_{id}"),
        created_at: unix_now(),
        model: &prompt.model,
        request: body,
    };
    if body.get("stream").and_then(Value::as_bool) == Some(true) {
        return Ok(Outcome::Stream(stream_plan(&frame, &generated)));
    }
    let output = vec![frame.output_item(&generated.reply)];
    Ok(Outcome::Json(frame.response(
        "completed",
        output,
        Some(&generated),
    )))
}

/// Frames Responses events, numbering them in order.
struct EventWriter {
    events: Vec<SseEvent>,
}

impl EventWriter {
    fn push(&mut self, kind: &str, mut event: Value, is_content: bool) {
        event["type"] = Value::from(kind);
        event["sequence_number"] = Value::from(self.events.len());
        let bytes = Bytes::from(format!("event: {kind}\ndata: {event}\n\n"));
        self.events.push(SseEvent { bytes, is_content });
    }
}

fn stream_plan(frame: &ResponseFrame<'_>, generated: &Generated) -> StreamPlan {
    let mut writer = EventWriter { events: Vec::new() };
    let in_progress = frame.response("in_progress", Vec::new(), None);
    writer.push("response.created", json!({"response": in_progress}), false);
    writer.push(
        "response.in_progress",
        json!({"response": in_progress}),
        false,
    );
    let item_id = &frame.item_id;
    match &generated.reply {
        Reply::Text(text) => {
            writer.push(
                "response.output_item.added",
                json!({"output_index": 0, "item": frame.message_item("in_progress", Vec::new())}),
                false,
            );
            writer.push(
                "response.content_part.added",
                json!({
                    "item_id": item_id,
                    "output_index": 0,
                    "content_index": 0,
                    "part": ResponseFrame::text_part(""),
                }),
                false,
            );
            for word in word_chunks(text) {
                writer.push(
                    "response.output_text.delta",
                    json!({
                        "item_id": item_id,
                        "output_index": 0,
                        "content_index": 0,
                        "delta": word,
                        "logprobs": [],
                    }),
                    true,
                );
            }
            writer.push(
                "response.output_text.done",
                json!({
                    "item_id": item_id,
                    "output_index": 0,
                    "content_index": 0,
                    "text": text,
                    "logprobs": [],
                }),
                false,
            );
            writer.push(
                "response.content_part.done",
                json!({
                    "item_id": item_id,
                    "output_index": 0,
                    "content_index": 0,
                    "part": ResponseFrame::text_part(text),
                }),
                false,
            );
        }
        Reply::ToolCall { name, arguments } => {
            let arguments = arguments.to_string();
            writer.push(
                "response.output_item.added",
                json!({"output_index": 0, "item": frame.call_item("in_progress", name, "")}),
                false,
            );
            for fragment in argument_fragments(&arguments) {
                writer.push(
                    "response.function_call_arguments.delta",
                    json!({"item_id": item_id, "output_index": 0, "delta": fragment}),
                    true,
                );
            }
            writer.push(
                "response.function_call_arguments.done",
                json!({
                    "item_id": item_id,
                    "output_index": 0,
                    "name": name,
                    "arguments": arguments,
                }),
                false,
            );
        }
    }
    let item = frame.output_item(&generated.reply);
    writer.push(
        "response.output_item.done",
        json!({"output_index": 0, "item": item}),
        false,
    );
    writer.push(
        "response.completed",
        json!({"response": frame.response("completed", vec![item], Some(generated))}),
        false,
    );
    StreamPlan {
        events: writer.events,
        error_event: |index| stream_error_event(ApiShape::OpenAi, Some(index)),
    }
}
