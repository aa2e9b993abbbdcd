//! The gateway's one error type.
//!
//! Every error knows its HTTP status, a low-cardinality kind (for metrics and the
//! `x-sluice-error` header) and a message a user can act on. It renders in the shape of
//! the API the client called: the OpenAI error object on `/v1`, the Anthropic one on
//! `/anthropic`.

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};

use sluice_shared::{anthropic, openai};

/// Which error shape the client expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    OpenAi,
    Anthropic,
}

/// What went wrong, at the granularity metrics and clients need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The body is not valid JSON or misses a required field.
    InvalidRequest,
    /// The body is larger than `server.max_body_bytes`.
    BodyTooLarge,
    /// No alias or provider matches the model string.
    UnknownModel,
    /// The request cannot be expressed for any provider its model routes to.
    Unsupported,
    /// The provider answered with an error status.
    UpstreamStatus,
    /// Connecting, waiting for headers or waiting for the next stream event took too long.
    UpstreamTimeout,
    /// The provider could not be reached or the connection broke.
    UpstreamConnect,
    /// The provider answered with something that is not its API.
    UpstreamProtocol,
    /// The provider's concurrency limit and queue are full.
    Saturated,
    /// No route for this path.
    NotFound,
    /// No valid virtual key (missing, unknown, wrong secret, expired).
    Unauthorized,
    /// The key is blocked or may not use this model or provider.
    Forbidden,
    /// A budget the caller belongs to is used up.
    BudgetExceeded,
    /// A rate or concurrency limit is reached.
    RateLimited,
    /// A guardrail rule with action `block` matched the request (or, mid-stream, the
    /// answer); the message names the rule and what to do instead.
    GuardrailBlocked,
    /// A bug or an impossible state.
    Internal,
}

impl ErrorKind {
    /// Label for metrics and the `x-sluice-error` header.
    pub fn label(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest => "invalid_request",
            ErrorKind::BodyTooLarge => "body_too_large",
            ErrorKind::UnknownModel => "unknown_model",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::UpstreamStatus => "upstream_status",
            ErrorKind::UpstreamTimeout => "upstream_timeout",
            ErrorKind::UpstreamConnect => "upstream_connect",
            ErrorKind::UpstreamProtocol => "upstream_protocol",
            ErrorKind::Saturated => "saturated",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::BudgetExceeded => "budget_exceeded",
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::GuardrailBlocked => "guardrail_blocked",
            ErrorKind::Internal => "internal",
        }
    }
}

/// An error on its way to the client.
#[derive(Debug, Clone)]
pub struct GatewayError {
    pub kind: ErrorKind,
    pub status: StatusCode,
    pub message: String,
    /// The request field at fault, when there is one.
    pub param: Option<String>,
    /// Seconds for a `Retry-After` header.
    pub retry_after: Option<u64>,
    /// A provider's own error body, forwarded as-is when the provider speaks the
    /// client's API (so SDKs see exactly what the provider said).
    pub upstream_body: Option<(Flavor, Bytes)>,
}

impl GatewayError {
    pub fn new(kind: ErrorKind, status: StatusCode, message: impl Into<String>) -> Self {
        GatewayError {
            kind,
            status,
            message: message.into(),
            param: None,
            retry_after: None,
            upstream_body: None,
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidRequest, StatusCode::BAD_REQUEST, message)
    }

    pub fn with_param(mut self, param: &str) -> Self {
        self.param = Some(param.to_owned());
        self
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(
            ErrorKind::Internal,
            StatusCode::INTERNAL_SERVER_ERROR,
            message,
        )
    }

    /// The OpenAI error `type` for this error.
    fn openai_type(&self) -> &'static str {
        match self.status.as_u16() {
            400 | 404 | 405 | 413 | 422 => "invalid_request_error",
            401 => "authentication_error",
            402 => "insufficient_quota",
            403 => "permission_error",
            429 => "rate_limit_error",
            503 => "service_unavailable",
            _ => "server_error",
        }
    }

    /// The Anthropic error `type` for this error.
    fn anthropic_type(&self) -> &'static str {
        match self.status.as_u16() {
            400 | 405 | 422 => "invalid_request_error",
            401 => "authentication_error",
            402 => "billing_error",
            403 => "permission_error",
            404 => "not_found_error",
            413 => "request_too_large",
            429 => "rate_limit_error",
            503 | 529 => "overloaded_error",
            504 => "timeout_error",
            _ => "api_error",
        }
    }

    /// The JSON body in the client's shape.
    pub fn body(&self, flavor: Flavor) -> Bytes {
        if let Some((upstream_flavor, body)) = &self.upstream_body
            && *upstream_flavor == flavor
        {
            return body.clone();
        }
        let json = match flavor {
            Flavor::OpenAi => serde_json::to_vec(&openai::ErrorBody {
                error: openai::ErrorObject {
                    message: self.message.clone(),
                    kind: self.openai_type().into(),
                    param: self.param.clone(),
                    code: Some(serde_json::Value::String(self.kind.label().into())),
                },
            }),
            Flavor::Anthropic => serde_json::to_vec(&anthropic::ErrorBody::new(
                self.anthropic_type(),
                self.message.clone(),
            )),
        };
        // Serializing these plain structs cannot fail; fall back to a fixed body anyway.
        Bytes::from(
            json.unwrap_or_else(|_| b"{\"error\":{\"message\":\"internal error\"}}".to_vec()),
        )
    }

    /// A complete HTTP response in the client's shape.
    pub fn into_response(self, flavor: Flavor) -> Response {
        let body = self.body(flavor);
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(
            "x-sluice-error",
            HeaderValue::from_static(self.kind.label()),
        );
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }

    /// The event that ends a stream which fails after it started, in the client's framing.
    pub fn stream_event(&self, flavor: Flavor) -> Bytes {
        match flavor {
            Flavor::OpenAi => {
                let body = self.body(Flavor::OpenAi);
                let mut out = Vec::with_capacity(body.len() + 8);
                out.extend_from_slice(b"data: ");
                out.extend_from_slice(&body);
                out.extend_from_slice(b"\n\n");
                Bytes::from(out)
            }
            Flavor::Anthropic => {
                let body = self.body(Flavor::Anthropic);
                let mut out = Vec::with_capacity(body.len() + 24);
                out.extend_from_slice(b"event: error\ndata: ");
                out.extend_from_slice(&body);
                out.extend_from_slice(b"\n\n");
                Bytes::from(out)
            }
        }
    }
}

impl GatewayError {
    /// How a Responses API stream (`/v1/responses`) ends on this error: an `error` event,
    /// then `response.failed` with the error on the response, as OpenAI ends a failed
    /// stream; clients (the OpenAI SDKs, Codex CLI) read either.
    pub fn responses_stream_events(&self, response_id: &str) -> Bytes {
        let code = self.kind.label();
        let error = serde_json::json!({
            "type": "error",
            "code": code,
            "message": self.message,
            "param": self.param,
        });
        let failed = serde_json::json!({
            "type": "response.failed",
            "response": {
                "id": response_id,
                "object": "response",
                "status": "failed",
                "error": {"code": code, "message": self.message},
                "incomplete_details": null,
            },
        });
        let mut out = Vec::with_capacity(2 * self.message.len() + 256);
        for (name, value) in [("error", error), ("response.failed", failed)] {
            out.extend_from_slice(b"event: ");
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"\ndata: ");
            out.extend_from_slice(value.to_string().as_bytes());
            out.extend_from_slice(b"\n\n");
        }
        Bytes::from(out)
    }
}

impl std::fmt::Display for GatewayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.status.as_u16(),
            self.kind.label(),
            self.message
        )
    }
}

impl std::error::Error for GatewayError {}

/// An error with its causes, for messages ("error sending request: connection refused").
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_responses_stream_ends_with_error_and_response_failed() {
        let e = GatewayError::new(ErrorKind::UpstreamConnect, StatusCode::BAD_GATEWAY, "broke");
        let bytes = e.responses_stream_events("resp_1");
        let mut decoder = sluice_shared::sse::SseDecoder::new();
        decoder.push(&bytes).unwrap();
        let first = decoder.next_event().unwrap();
        let second = decoder.next_event().unwrap();
        assert_eq!(first.event.as_deref(), Some("error"));
        let v: serde_json::Value = serde_json::from_str(&first.data).unwrap();
        assert_eq!(
            (v["type"].as_str(), v["message"].as_str()),
            (Some("error"), Some("broke"))
        );
        assert_eq!(second.event.as_deref(), Some("response.failed"));
        let v: serde_json::Value = serde_json::from_str(&second.data).unwrap();
        assert_eq!(v["response"]["status"], "failed");
        assert_eq!(v["response"]["error"]["message"], "broke");
    }

    #[test]
    fn renders_in_both_shapes() {
        let e = GatewayError::new(
            ErrorKind::UnknownModel,
            StatusCode::NOT_FOUND,
            "no such model",
        )
        .with_param("model");
        let o: serde_json::Value = serde_json::from_slice(&e.body(Flavor::OpenAi)).unwrap();
        assert_eq!(o["error"]["type"], "invalid_request_error");
        assert_eq!(o["error"]["param"], "model");
        assert_eq!(o["error"]["code"], "unknown_model");
        let a: serde_json::Value = serde_json::from_slice(&e.body(Flavor::Anthropic)).unwrap();
        assert_eq!(a["type"], "error");
        assert_eq!(a["error"]["type"], "not_found_error");
    }

    #[test]
    fn forwards_upstream_body_only_in_the_same_shape() {
        let mut e = GatewayError::new(ErrorKind::UpstreamStatus, StatusCode::BAD_REQUEST, "bad");
        e.upstream_body = Some((
            Flavor::Anthropic,
            Bytes::from_static(b"{\"type\":\"error\"}"),
        ));
        assert_eq!(&e.body(Flavor::Anthropic)[..], b"{\"type\":\"error\"}");
        assert!(e.body(Flavor::OpenAi).starts_with(b"{\"error\""));
    }
}
