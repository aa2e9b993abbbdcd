//! OpenAI Chat Completions, Embeddings and Models (also served, with the deployment as the
//! model, under Azure OpenAI's `/openai/deployments/{deployment}/...` paths).

use bytes::Bytes;
use serde_json::{Value, json};

use super::error::{ApiError, ApiShape, stream_error_event};
use super::outcome::Outcome;
use super::reply::{
    Generated, Prompt, Reply, argument_fragments, embedding_json, generate, input_tokens_for_chars,
    str_field, unix_now, word_chunks,
};
use super::state::MockState;
use super::stream::{SseEvent, StreamPlan};

/// Models listed by `GET /v1/models`. The mock answers for any model name.
const LISTED_MODELS: [&str; 3] = ["mock-gpt", "mock-gpt-mini", "mock-embedding"];

/// The model a request is for: the Azure deployment when there is one, else `model`.
fn request_model(body: &Value, deployment: Option<&str>) -> Result<String, ApiError> {
    if let Some(deployment) = deployment {
        return Ok(deployment.to_owned());
    }
    match body.get("model") {
        Some(Value::String(model)) if !model.is_empty() => Ok(model.clone()),
        _ => Err(ApiError::bad_request("you must provide a model parameter").with_param("model")),
    }
}

/// Text and image count of OpenAI-style content: a string, null, or an array of parts
/// (`text`, `input_text`, `output_text`, `image_url`, `input_image`).
pub fn content_text(content: Option<&Value>) -> (String, usize) {
    match content {
        Some(Value::String(text)) => (text.clone(), 0),
        Some(Value::Array(parts)) => {
            let mut texts = Vec::new();
            let mut images = 0;
            for part in parts {
                match str_field(part, "type") {
                    Some("image_url" | "input_image" | "image") => images += 1,
                    _ => {
                        if let Some(text) = str_field(part, "text") {
                            texts.push(text);
                        }
                    }
                }
            }
            (texts.join(" "), images)
        }
        _ => (String::new(), 0),
    }
}

/// A non-empty array field, or the OpenAI-style error for it.
pub fn required_array<'a>(
    body: &'a Value,
    field: &'static str,
) -> Result<&'a Vec<Value>, ApiError> {
    match body.get(field) {
        None | Some(Value::Null) => Err(ApiError::bad_request(format!(
            "Missing required parameter: '{field}'."
        ))
        .with_param(field)),
        Some(Value::Array(items)) if items.is_empty() => Err(ApiError::bad_request(format!(
            "Invalid '{field}': empty array. Expected an array with minimum length 1, but got an empty array instead."
        ))
        .with_param(field)),
        Some(Value::Array(items)) => Ok(items),
        Some(_) => Err(ApiError::bad_request(format!(
            "Invalid type for '{field}': expected an array."
        ))
        .with_param(field)),
    }
}

fn chat_prompt(body: &Value, model: String) -> Result<Prompt, ApiError> {
    let messages = required_array(body, "messages")?;
    let mut prompt = Prompt {
        model,
        ..Prompt::default()
    };
    for message in messages {
        let (text, _) = content_text(message.get("content"));
        match str_field(message, "role") {
            Some("system" | "developer") => prompt.add_system(&text),
            _ => prompt.count(&text),
        }
    }
    if let Some(last) = messages.last() {
        match str_field(last, "role") {
            Some("tool" | "function") => {
                prompt.tool_result = Some(content_text(last.get("content")).0)
            }
            Some("user") => prompt.last_is_user = true,
            _ => {}
        }
    }
    if let Some(user) = messages
        .iter()
        .rev()
        .find(|m| str_field(m, "role") == Some("user"))
    {
        (prompt.last_user_text, prompt.last_user_images) = content_text(user.get("content"));
    }
    let first_tool = body
        .get("tools")
        .and_then(Value::as_array)
        .and_then(|tools| {
            tools
                .iter()
                .find_map(|tool| tool.get("function").and_then(|f| str_field(f, "name")))
        });
    prompt.tool_to_call = match body.get("tool_choice") {
        Some(Value::String(choice)) if choice == "none" => None,
        Some(choice @ Value::Object(_)) => choice
            .get("function")
            .and_then(|f| str_field(f, "name"))
            .or(first_tool)
            .map(str::to_owned),
        _ => first_tool.map(str::to_owned),
    };
    prompt.json_mode = matches!(
        body.get("response_format")
            .and_then(|f| str_field(f, "type")),
        Some("json_object" | "json_schema")
    );
    Ok(prompt)
}

fn chat_usage(generated: &Generated) -> Value {
    json!({
        "prompt_tokens": generated.input_tokens,
        "completion_tokens": generated.output_tokens,
        "total_tokens": generated.total_tokens(),
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    })
}

/// `POST /v1/chat/completions`, or Azure's deployment chat completions.
pub fn chat_completions(
    state: &MockState,
    body: &Value,
    deployment: Option<&str>,
) -> Result<Outcome, ApiError> {
    let model = request_model(body, deployment)?;
    let prompt = chat_prompt(body, model)?;
    let generated = generate(&prompt);
    let id = state.next_id();
    let completion_id = format!("chatcmpl-mock-{id}");
    let created = unix_now();
    if body.get("stream").and_then(Value::as_bool) == Some(true) {
        let include_usage = body
            .get("stream_options")
            .and_then(|options| options.get("include_usage"))
            .and_then(Value::as_bool)
            == Some(true);
        let stream = ChatStream {
            id: &completion_id,
            created,
            model: &prompt.model,
            include_usage,
        };
        return Ok(Outcome::Stream(stream.plan(&generated, id)));
    }
    let (message, finish_reason) = match &generated.reply {
        Reply::Text(text) => (
            json!({"role": "assistant", "content": text, "refusal": null, "annotations": []}),
            "stop",
        ),
        Reply::ToolCall { name, arguments } => (
            json!({
                "role": "assistant",
                "content": null,
                "refusal": null,
                "annotations": [],
                "tool_calls": [{
                    "id": format!("call_mock_{id}"),
                    "type": "function",
                    "function": {"name": name, "arguments": arguments.to_string()},
                }],
            }),
            "tool_calls",
        ),
    };
    Ok(Outcome::Json(json!({
        "id": completion_id,
        "object": "chat.completion",
        "created": created,
        "model": prompt.model,
        "system_fingerprint": "fp_mock",
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": finish_reason,
        }],
        "usage": chat_usage(&generated),
    })))
}

struct ChatStream<'a> {
    id: &'a str,
    created: u64,
    model: &'a str,
    include_usage: bool,
}

impl ChatStream<'_> {
    fn chunk(&self, delta: Value, finish_reason: Option<&str>) -> Bytes {
        let mut chunk = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": "fp_mock",
            "choices": [{
                "index": 0,
                "delta": delta,
                "logprobs": null,
                "finish_reason": finish_reason,
            }],
        });
        if self.include_usage {
            chunk["usage"] = Value::Null;
        }
        Bytes::from(format!("data: {chunk}\n\n"))
    }

    fn plan(&self, generated: &Generated, id: u64) -> StreamPlan {
        let mut events = Vec::new();
        let finish_reason = match &generated.reply {
            Reply::Text(text) => {
                events.push(SseEvent::control(
                    self.chunk(json!({"role": "assistant", "content": ""}), None),
                ));
                for word in word_chunks(text) {
                    events.push(SseEvent::content(
                        self.chunk(json!({"content": word}), None),
                    ));
                }
                "stop"
            }
            Reply::ToolCall { name, arguments } => {
                // Like the real API, the first chunk carries the role and the call's id and
                // name; the arguments follow in fragments.
                events.push(SseEvent::control(self.chunk(
                    json!({
                        "role": "assistant",
                        "content": null,
                        "tool_calls": [{
                            "index": 0,
                            "id": format!("call_mock_{id}"),
                            "type": "function",
                            "function": {"name": name, "arguments": ""},
                        }],
                    }),
                    None,
                )));
                let arguments = arguments.to_string();
                for fragment in argument_fragments(&arguments) {
                    events.push(SseEvent::content(self.chunk(
                        json!({"tool_calls": [{"index": 0, "function": {"arguments": fragment}}]}),
                        None,
                    )));
                }
                "tool_calls"
            }
        };
        events.push(SseEvent::control(
            self.chunk(json!({}), Some(finish_reason)),
        ));
        if self.include_usage {
            let chunk = json!({
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "system_fingerprint": "fp_mock",
                "choices": [],
                "usage": chat_usage(generated),
            });
            events.push(SseEvent::control(format!("data: {chunk}\n\n")));
        }
        events.push(SseEvent::control(Bytes::from_static(b"data: [DONE]\n\n")));
        StreamPlan {
            events,
            error_event: |_| stream_error_event(ApiShape::OpenAi, None),
        }
    }
}

/// One embeddings input: the text the vector is derived from, and its token count.
struct EmbeddingInput {
    text: String,
    tokens: u64,
}

fn invalid_input() -> ApiError {
    ApiError::bad_request(
        "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference.",
    )
    .with_param("input")
}

fn token_array(items: &[Value]) -> Option<EmbeddingInput> {
    let tokens: Option<Vec<u64>> = items.iter().map(Value::as_u64).collect();
    let tokens = tokens.filter(|tokens| !tokens.is_empty())?;
    let text = tokens
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(" ");
    Some(EmbeddingInput {
        text,
        tokens: u64::try_from(tokens.len()).unwrap_or(u64::MAX),
    })
}

fn text_input(text: &str) -> Option<EmbeddingInput> {
    (!text.is_empty()).then(|| EmbeddingInput {
        text: text.to_owned(),
        tokens: input_tokens_for_chars(text.chars().count()),
    })
}

/// Accepts every form OpenAI does: a string, an array of strings, one token array, or an
/// array of token arrays.
fn embedding_inputs(input: Option<&Value>) -> Result<Vec<EmbeddingInput>, ApiError> {
    match input {
        None | Some(Value::Null) => {
            Err(ApiError::bad_request("Missing required parameter: 'input'.").with_param("input"))
        }
        Some(Value::String(text)) => text_input(text)
            .map(|input| vec![input])
            .ok_or_else(invalid_input),
        Some(Value::Array(items)) if items.is_empty() => Err(invalid_input()),
        Some(Value::Array(items)) if items.iter().all(Value::is_number) => token_array(items)
            .map(|input| vec![input])
            .ok_or_else(invalid_input),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(text) => text_input(text),
                Value::Array(tokens) => token_array(tokens),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(invalid_input),
        Some(_) => Err(invalid_input()),
    }
}

/// `POST /v1/embeddings`, or Azure's deployment embeddings.
pub fn embeddings(body: &Value, deployment: Option<&str>) -> Result<Outcome, ApiError> {
    let model = request_model(body, deployment)?;
    let inputs = embedding_inputs(body.get("input"))?;
    let base64 = match body.get("encoding_format") {
        None | Some(Value::Null) => false,
        Some(Value::String(format)) if format == "float" => false,
        Some(Value::String(format)) if format == "base64" => true,
        Some(_) => {
            return Err(ApiError::bad_request(
                "Invalid value for 'encoding_format': expected 'float' or 'base64'.",
            )
            .with_param("encoding_format"));
        }
    };
    let tokens: u64 = inputs.iter().map(|input| input.tokens).sum();
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(index, input)| {
            json!({
                "object": "embedding",
                "index": index,
                "embedding": embedding_json(&input.text, base64),
            })
        })
        .collect();
    Ok(Outcome::Json(json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    })))
}

/// `GET /v1/models`.
pub fn models() -> Outcome {
    let data: Vec<Value> = LISTED_MODELS
        .iter()
        .map(
            |id| json!({"id": id, "object": "model", "created": 1_700_000_000, "owned_by": "mock"}),
        )
        .collect();
    Outcome::Json(json!({"object": "list", "data": data}))
}
