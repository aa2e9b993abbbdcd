//! Anthropic Messages: `POST /v1/messages` (buffered and streamed) and
//! `POST /v1/messages/count_tokens`.

use bytes::Bytes;
use serde_json::{Value, json};

use super::error::{ApiError, ApiShape, stream_error_event};
use super::outcome::Outcome;
use super::reply::{
    Generated, Prompt, Reply, argument_fragments, generate, str_field, word_chunks,
};
use super::state::MockState;
use super::stream::{SseEvent, StreamPlan};

/// Text of Anthropic content (a string or an array of blocks), and how many image blocks
/// it holds. Tool results count as text, so they are billed as input.
fn content_text(content: Option<&Value>) -> (String, usize) {
    match content {
        Some(Value::String(text)) => (text.clone(), 0),
        Some(Value::Array(blocks)) => {
            let mut texts = Vec::new();
            let mut images = 0;
            for block in blocks {
                match str_field(block, "type") {
                    Some("image") => images += 1,
                    Some("tool_result") => texts.push(content_text(block.get("content")).0),
                    _ => {
                        if let Some(text) = str_field(block, "text") {
                            texts.push(text.to_owned());
                        }
                    }
                }
            }
            (texts.join(" "), images)
        }
        _ => (String::new(), 0),
    }
}

/// Text of the last user message's own text blocks (tool results excluded) and its images.
fn user_text(content: Option<&Value>) -> (String, usize) {
    match content {
        Some(Value::Array(blocks)) => {
            let own: Vec<Value> = blocks
                .iter()
                .filter(|block| str_field(block, "type") != Some("tool_result"))
                .cloned()
                .collect();
            content_text(Some(&Value::Array(own)))
        }
        other => content_text(other),
    }
}

fn field_required(field: &str) -> ApiError {
    ApiError::bad_request(format!("{field}: Field required"))
}

fn messages_prompt(body: &Value) -> Result<Prompt, ApiError> {
    let model = match body.get("model") {
        Some(Value::String(model)) if !model.is_empty() => model.clone(),
        _ => return Err(field_required("model")),
    };
    let messages = match body.get("messages") {
        None | Some(Value::Null) => return Err(field_required("messages")),
        Some(Value::Array(messages)) if messages.is_empty() => {
            return Err(ApiError::bad_request(
                "messages: at least one message is required",
            ));
        }
        Some(Value::Array(messages)) => messages,
        Some(_) => {
            return Err(ApiError::bad_request(
                "messages: Input should be a valid list",
            ));
        }
    };
    let mut prompt = Prompt {
        model,
        ..Prompt::default()
    };
    match body.get("system") {
        None | Some(Value::Null) => {}
        system => {
            let (text, _) = content_text(system);
            prompt.add_system(&text);
        }
    }
    for message in messages {
        prompt.count(&content_text(message.get("content")).0);
    }
    if let Some(last) = messages.last()
        && str_field(last, "role") == Some("user")
    {
        let last_tool_result = last
            .get("content")
            .and_then(Value::as_array)
            .and_then(|blocks| {
                blocks
                    .iter()
                    .rev()
                    .find(|block| str_field(block, "type") == Some("tool_result"))
            });
        match last_tool_result {
            Some(result) => prompt.tool_result = Some(content_text(result.get("content")).0),
            None => prompt.last_is_user = true,
        }
    }
    if let Some(user) = messages
        .iter()
        .rev()
        .find(|message| str_field(message, "role") == Some("user"))
    {
        (prompt.last_user_text, prompt.last_user_images) = user_text(user.get("content"));
    }
    let first_tool = body
        .get("tools")
        .and_then(Value::as_array)
        .and_then(|tools| tools.iter().find_map(|tool| str_field(tool, "name")));
    let choice = body.get("tool_choice");
    prompt.tool_to_call = match choice.and_then(|choice| str_field(choice, "type")) {
        Some("none") => None,
        Some("tool") => choice
            .and_then(|choice| str_field(choice, "name"))
            .or(first_tool)
            .map(str::to_owned),
        _ => first_tool.map(str::to_owned),
    };
    Ok(prompt)
}

fn usage(generated: &Generated, output_tokens: u64) -> Value {
    json!({
        "input_tokens": generated.input_tokens,
        "output_tokens": output_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    })
}

/// `POST /v1/messages`.
pub fn messages(state: &MockState, body: &Value) -> Result<Outcome, ApiError> {
    let prompt = messages_prompt(body)?;
    if body.get("max_tokens").is_none_or(Value::is_null) {
        return Err(field_required("max_tokens"));
    }
    let generated = generate(&prompt);
    let id = state.next_id();
    let message_id = format!("msg_mock_{id}");
    let tool_use_id = format!("toolu_mock_{id}");
    if body.get("stream").and_then(Value::as_bool) == Some(true) {
        return Ok(Outcome::Stream(stream_plan(
            &message_id,
            &tool_use_id,
            &prompt.model,
            &generated,
        )));
    }
    let (content, stop_reason) = match &generated.reply {
        Reply::Text(text) => (json!([{"type": "text", "text": text}]), "end_turn"),
        Reply::ToolCall { name, arguments } => (
            json!([{"type": "tool_use", "id": tool_use_id, "name": name, "input": arguments}]),
            "tool_use",
        ),
    };
    Ok(Outcome::Json(json!({
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": prompt.model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": null,
        "usage": usage(&generated, generated.output_tokens),
    })))
}

fn event(kind: &str, data: &Value) -> Bytes {
    Bytes::from(format!("event: {kind}\ndata: {data}\n\n"))
}

fn stream_plan(
    message_id: &str,
    tool_use_id: &str,
    model: &str,
    generated: &Generated,
) -> StreamPlan {
    let mut events = vec![SseEvent::control(event(
        "message_start",
        &json!({"type": "message_start", "message": {
            "id": message_id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": null,
            "stop_sequence": null,
            // The real API reports one output token before any content is generated.
            "usage": usage(generated, 1),
        }}),
    ))];
    let (block, deltas, stop_reason) = match &generated.reply {
        Reply::Text(text) => (
            json!({"type": "text", "text": ""}),
            word_chunks(text)
                .into_iter()
                .map(|word| json!({"type": "text_delta", "text": word}))
                .collect::<Vec<_>>(),
            "end_turn",
        ),
        Reply::ToolCall { name, arguments } => (
            json!({"type": "tool_use", "id": tool_use_id, "name": name, "input": {}}),
            argument_fragments(&arguments.to_string())
                .into_iter()
                .map(|fragment| json!({"type": "input_json_delta", "partial_json": fragment}))
                .collect(),
            "tool_use",
        ),
    };
    events.push(SseEvent::control(event(
        "content_block_start",
        &json!({"type": "content_block_start", "index": 0, "content_block": block}),
    )));
    events.push(SseEvent::control(event("ping", &json!({"type": "ping"}))));
    for delta in deltas {
        events.push(SseEvent::content(event(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": 0, "delta": delta}),
        )));
    }
    events.push(SseEvent::control(event(
        "content_block_stop",
        &json!({"type": "content_block_stop", "index": 0}),
    )));
    events.push(SseEvent::control(event(
        "message_delta",
        &json!({
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": null},
            "usage": {"output_tokens": generated.output_tokens},
        }),
    )));
    events.push(SseEvent::control(event(
        "message_stop",
        &json!({"type": "message_stop"}),
    )));
    StreamPlan {
        events,
        error_event: |_| stream_error_event(ApiShape::Anthropic, None),
    }
}

/// `POST /v1/messages/count_tokens`.
pub fn count_tokens(body: &Value) -> Result<Outcome, ApiError> {
    let prompt = messages_prompt(body)?;
    Ok(Outcome::Json(
        json!({"input_tokens": prompt.input_tokens()}),
    ))
}
