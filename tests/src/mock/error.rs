//! Error bodies in each provider's own shape, for HTTP errors and in-stream error events.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};

/// The three error dialects. Azure OpenAI and the Responses API speak OpenAI's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApiShape {
    OpenAi,
    Anthropic,
    Gemini,
}

/// Anthropic's status for "overloaded"; not a standard status, so not in `StatusCode`'s consts.
pub const ANTHROPIC_OVERLOADED: u16 = 529;

/// An error response, rendered in the shape of the API that was called.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// OpenAI's `param` field: the request field at fault, where there is one.
    pub param: Option<&'static str>,
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            param: None,
            retry_after: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn with_param(mut self, param: &'static str) -> ApiError {
        self.param = Some(param);
        self
    }

    pub fn with_retry_after(mut self, retry_after: Option<u64>) -> ApiError {
        self.retry_after = retry_after;
        self
    }

    pub fn body(&self, shape: ApiShape) -> Value {
        let code = self.status.as_u16();
        match shape {
            ApiShape::OpenAi => {
                let (kind, code) = match code {
                    401 => ("invalid_request_error", Value::from("invalid_api_key")),
                    403 => ("invalid_request_error", Value::from("permission_denied")),
                    404 => ("invalid_request_error", Value::from("model_not_found")),
                    429 => ("requests", Value::from("rate_limit_exceeded")),
                    500.. => ("server_error", Value::Null),
                    _ => ("invalid_request_error", Value::Null),
                };
                json!({"error": {
                    "message": self.message,
                    "type": kind,
                    "param": self.param,
                    "code": code,
                }})
            }
            ApiShape::Anthropic => {
                let kind = match code {
                    401 => "authentication_error",
                    403 => "permission_error",
                    404 => "not_found_error",
                    413 => "request_too_large",
                    429 => "rate_limit_error",
                    503 | ANTHROPIC_OVERLOADED => "overloaded_error",
                    500.. => "api_error",
                    _ => "invalid_request_error",
                };
                json!({"type": "error", "error": {"type": kind, "message": self.message}})
            }
            ApiShape::Gemini => {
                let status = match code {
                    401 => "UNAUTHENTICATED",
                    403 => "PERMISSION_DENIED",
                    404 => "NOT_FOUND",
                    429 => "RESOURCE_EXHAUSTED",
                    503 => "UNAVAILABLE",
                    504 => "DEADLINE_EXCEEDED",
                    500.. => "INTERNAL",
                    _ => "INVALID_ARGUMENT",
                };
                json!({"error": {"code": code, "message": self.message, "status": status}})
            }
        }
    }

    pub fn into_response(self, shape: ApiShape) -> Response {
        let body = Bytes::from(self.body(shape).to_string());
        let mut response = (
            self.status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// The provider's in-stream error event, already framed, for `error_event_after`.
pub fn stream_error_event(shape: ApiShape, sequence_number: Option<usize>) -> Bytes {
    match (shape, sequence_number) {
        // The Responses API reports mid-stream failures as an `error` event.
        (ApiShape::OpenAi, Some(sequence_number)) => {
            let event = json!({
                "type": "error",
                "code": "server_error",
                "message": "The server had an error while processing your request. Sorry about that!",
                "param": null,
                "sequence_number": sequence_number,
            });
            Bytes::from(format!("event: error\ndata: {event}\n\n"))
        }
        (ApiShape::OpenAi, None) => {
            let event = json!({"error": {
                "message": "The server had an error while processing your request. Sorry about that!",
                "type": "server_error",
                "param": null,
                "code": null,
            }});
            Bytes::from(format!("data: {event}\n\n"))
        }
        (ApiShape::Anthropic, _) => Bytes::from_static(
            b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n",
        ),
        (ApiShape::Gemini, _) => {
            let event = json!({"error": {
                "code": 503,
                "message": "The model is overloaded. Please try again later.",
                "status": "UNAVAILABLE",
            }});
            Bytes::from(format!("data: {event}\r\n\r\n"))
        }
    }
}
