//! Gemini: `POST /v1beta/models/{model}:{method}` for generateContent,
//! streamGenerateContent (`?alt=sse` only), countTokens, embedContent and
//! batchEmbedContents.

use axum::http::StatusCode;
use bytes::Bytes;
use serde_json::{Value, json};

use super::error::{ApiError, ApiShape, stream_error_event};
use super::outcome::Outcome;
use super::outcome::query_param;
use super::reply::{Generated, Prompt, Reply, embedding, generate, str_field, word_chunks};
use super::state::MockState;
use super::stream::{SseEvent, StreamPlan};

/// A field by its proto-JSON name or its snake_case name; the real API accepts both.
fn field<'a>(value: &'a Value, camel: &str, snake: &str) -> Option<&'a Value> {
    value.get(camel).or_else(|| value.get(snake))
}

fn function_response(part: &Value) -> Option<&Value> {
    field(part, "functionResponse", "function_response")
}

fn is_image(part: &Value) -> bool {
    field(part, "inlineData", "inline_data").is_some()
        || field(part, "fileData", "file_data").is_some()
}

/// Text of a content's text parts (joined with a space) and its image count.
fn parts_text(content: &Value) -> (String, usize) {
    let mut texts = Vec::new();
    let mut images = 0;
    for part in content
        .get("parts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if is_image(part) {
            images += 1;
        } else if let Some(text) = str_field(part, "text") {
            texts.push(text);
        }
    }
    (texts.join(" "), images)
}

fn function_response_text(part: &Value) -> Option<String> {
    let response = function_response(part)?;
    Some(response.get("response").unwrap_or(response).to_string())
}

fn contents_not_specified() -> ApiError {
    ApiError::bad_request("* GenerateContentRequest.contents: contents is not specified")
}

fn generate_prompt(body: &Value, model: &str) -> Result<Prompt, ApiError> {
    let contents = match body.get("contents") {
        Some(Value::Array(contents)) if !contents.is_empty() => contents,
        _ => return Err(contents_not_specified()),
    };
    let mut prompt = Prompt {
        model: model.to_owned(),
        ..Prompt::default()
    };
    if let Some(system) = field(body, "systemInstruction", "system_instruction") {
        prompt.add_system(&parts_text(system).0);
    }
    let is_user = |content: &Value| matches!(str_field(content, "role"), None | Some("user"));
    for content in contents {
        prompt.count(&parts_text(content).0);
        for part in content
            .get("parts")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(text) = function_response_text(part) {
                prompt.count(&text);
            }
        }
    }
    if let Some(last) = contents.last() {
        let last_response = last
            .get("parts")
            .and_then(Value::as_array)
            .and_then(|parts| parts.iter().rev().find_map(function_response_text));
        match last_response {
            Some(text) => prompt.tool_result = Some(text),
            None => prompt.last_is_user = is_user(last),
        }
    }
    if let Some(user) = contents.iter().rev().find(|content| is_user(content)) {
        (prompt.last_user_text, prompt.last_user_images) = parts_text(user);
    }
    let first_tool = body
        .get("tools")
        .and_then(Value::as_array)
        .and_then(|tools| {
            tools.iter().find_map(|tool| {
                field(tool, "functionDeclarations", "function_declarations")
                    .and_then(Value::as_array)
                    .and_then(|declarations| declarations.iter().find_map(|d| str_field(d, "name")))
            })
        });
    let mode = field(body, "toolConfig", "tool_config")
        .and_then(|config| field(config, "functionCallingConfig", "function_calling_config"))
        .and_then(|config| str_field(config, "mode"));
    prompt.tool_to_call = match mode {
        Some("NONE") => None,
        _ => first_tool.map(str::to_owned),
    };
    prompt.json_mode = field(body, "generationConfig", "generation_config")
        .and_then(|config| field(config, "responseMimeType", "response_mime_type"))
        .and_then(Value::as_str)
        == Some("application/json");
    Ok(prompt)
}

fn usage_metadata(generated: &Generated, candidates_tokens: u64) -> Value {
    json!({
        "promptTokenCount": generated.input_tokens,
        "candidatesTokenCount": candidates_tokens,
        "totalTokenCount": generated.input_tokens + candidates_tokens,
    })
}

fn response(parts: Value, finished: bool, usage: Value, model: &str, response_id: &str) -> Value {
    let mut candidate = json!({"content": {"parts": parts, "role": "model"}, "index": 0});
    if finished {
        candidate["finishReason"] = Value::from("STOP");
    }
    json!({
        "candidates": [candidate],
        "usageMetadata": usage,
        "modelVersion": model,
        "responseId": response_id,
    })
}

fn reply_parts(reply: &Reply) -> Value {
    match reply {
        Reply::Text(text) => json!([{"text": text}]),
        Reply::ToolCall { name, arguments } => {
            json!([{"functionCall": {"name": name, "args": arguments}}])
        }
    }
}

fn sse_event(data: &Value) -> Bytes {
    // Gemini frames its events with CRLF line endings.
    Bytes::from(format!("data: {data}\r\n\r\n"))
}

fn stream_plan(model: &str, response_id: &str, generated: &Generated) -> StreamPlan {
    let events = match &generated.reply {
        Reply::Text(text) => {
            let words = word_chunks(text);
            let last = words.len().saturating_sub(1);
            words
                .iter()
                .enumerate()
                .map(|(index, word)| {
                    let so_far = u64::try_from(index + 1).unwrap_or(u64::MAX);
                    SseEvent::content(sse_event(&response(
                        json!([{"text": word}]),
                        index == last,
                        usage_metadata(generated, so_far),
                        model,
                        response_id,
                    )))
                })
                .collect()
        }
        // Gemini never splits a function call across events.
        reply @ Reply::ToolCall { .. } => vec![SseEvent::content(sse_event(&response(
            reply_parts(reply),
            true,
            usage_metadata(generated, generated.output_tokens),
            model,
            response_id,
        )))],
    };
    StreamPlan {
        events,
        error_event: |_| stream_error_event(ApiShape::Gemini, None),
    }
}

fn embed_values(content: Option<&Value>) -> Result<Value, ApiError> {
    let text = content
        .map(|content| parts_text(content).0)
        .unwrap_or_default();
    if text.is_empty() {
        return Err(ApiError::bad_request(
            "* EmbedContentRequest.content: contents is not specified",
        ));
    }
    let values: Vec<f64> = embedding(&text)
        .iter()
        .map(|value| f64::from(*value))
        .collect();
    Ok(json!({"values": values}))
}

/// Dispatches `{model}:{method}` (the part of the path after `/models/`).
pub fn models_call(
    state: &MockState,
    body: &Value,
    model_and_method: &str,
    query: &str,
) -> Result<Outcome, ApiError> {
    let Some((model, method)) = model_and_method.rsplit_once(':') else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "models/{model_and_method} is not found: expected `models/{{model}}:{{method}}`"
            ),
        ));
    };
    match method {
        "generateContent" | "streamGenerateContent" => {
            let streaming = method == "streamGenerateContent";
            if streaming && query_param(query, "alt") != Some("sse") {
                return Err(ApiError::bad_request(
                    "this mock only supports streamGenerateContent with ?alt=sse",
                ));
            }
            let prompt = generate_prompt(body, model)?;
            let generated = generate(&prompt);
            let response_id = format!("mock-{}", state.next_id());
            if streaming {
                return Ok(Outcome::Stream(stream_plan(
                    model,
                    &response_id,
                    &generated,
                )));
            }
            Ok(Outcome::Json(response(
                reply_parts(&generated.reply),
                true,
                usage_metadata(&generated, generated.output_tokens),
                model,
                &response_id,
            )))
        }
        "countTokens" => {
            let request =
                field(body, "generateContentRequest", "generate_content_request").unwrap_or(body);
            let prompt = generate_prompt(request, model)?;
            Ok(Outcome::Json(json!({"totalTokens": prompt.input_tokens()})))
        }
        "embedContent" => Ok(Outcome::Json(
            json!({"embedding": embed_values(body.get("content"))?}),
        )),
        "batchEmbedContents" => {
            let requests = match body.get("requests") {
                Some(Value::Array(requests)) if !requests.is_empty() => requests,
                _ => {
                    return Err(ApiError::bad_request(
                        "* BatchEmbedContentsRequest.requests: requests is not specified",
                    ));
                }
            };
            let embeddings = requests
                .iter()
                .map(|request| embed_values(request.get("content")))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Outcome::Json(json!({"embeddings": embeddings})))
        }
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("method `{method}` is not supported by models/{model}"),
        )),
    }
}
