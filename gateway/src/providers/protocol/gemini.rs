//! The Gemini protocol (`generateContent`, `streamGenerateContent?alt=sse`,
//! `countTokens`): OpenAI chat and Anthropic Messages clients are translated to it
//! (Messages by way of chat), and its answers back.

use bytes::{BufMut as _, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, Uri};

use sluice_shared::anthropic;
use sluice_shared::gemini::{self, GenerateContentResponse};
use sluice_shared::openai::Usage;
use sluice_shared::sse::SseEvent;
use sluice_shared::translate::stream::{ChunkFactory, GeminiToOpenAi, OpenAiToAnthropic};
use sluice_shared::translate::{self, ResponseMeta};

use super::adapter::{
    Adapter, DONE, Endpoint, Plan, StreamError, StreamRead, anthropic_id, counted, parse_event,
    parse_url, path_segment, put_anthropic, put_chunk, request_json, response_json, unreadable,
    untranslatable,
};
use crate::error::{Flavor, GatewayError};
use crate::request::{ClientApi, ClientBody, Inbound};

/// The Gemini protocol.
#[derive(Debug, Clone, Copy)]
pub struct Gemini;

/// How a Gemini answer is read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decode {
    /// An OpenAI chat client; `include_usage`: it asked for the usage chunk.
    ToOpenAi { include_usage: bool },
    /// An Anthropic Messages client.
    ToAnthropic,
    /// Anthropic `count_tokens`, answered by `countTokens`.
    CountToAnthropic,
}

impl Decode {
    /// Every way a Gemini answer is read (for exhaustive tests and fuzzing).
    pub const EVERY: [Decode; 4] = [
        Decode::ToOpenAi {
            include_usage: false,
        },
        Decode::ToOpenAi {
            include_usage: true,
        },
        Decode::ToAnthropic,
        Decode::CountToAnthropic,
    ];
}

fn model_url(endpoint: &Endpoint, model: &str, method: &str) -> Result<Uri, GatewayError> {
    let model = path_segment(model.strip_prefix("models/").unwrap_or(model))?;
    parse_url(&format!("{}/models/{model}:{method}", endpoint.base_url()))
}

fn generate_url(endpoint: &Endpoint, model: &str, stream: bool) -> Result<Uri, GatewayError> {
    let method = if stream {
        "streamGenerateContent?alt=sse"
    } else {
        "generateContent"
    };
    model_url(endpoint, model, method)
}

impl Adapter for Gemini {
    type Decode = Decode;
    type Stream = Stream;

    fn credential(&self, secret: &str) -> (HeaderName, String) {
        (HeaderName::from_static("x-goog-api-key"), secret.to_owned())
    }

    fn error_message(&self, body: &[u8]) -> Option<String> {
        serde_json::from_slice::<gemini::ErrorBody>(body)
            .ok()
            .map(|b| format!("{}: {}", b.error.status, b.error.message))
    }

    /// No client surface speaks Gemini's error shape yet: its errors are always rewrapped.
    fn error_flavor(&self) -> Option<Flavor> {
        None
    }

    fn prepare(
        &self,
        endpoint: &Endpoint,
        inbound: &mut Inbound,
        model: &str,
        _headers: &mut HeaderMap,
    ) -> Result<Plan<Decode>, GatewayError> {
        let stream = inbound.stream;
        match &inbound.body {
            ClientBody::Chat(req) => {
                let out =
                    translate::gemini::request_from_openai(req.clone()).map_err(untranslatable)?;
                Ok(Plan::Call {
                    url: generate_url(endpoint, model, stream)?,
                    body: request_json(&out)?,
                    decode: Decode::ToOpenAi {
                        include_usage: inbound.wants_stream_usage,
                    },
                })
            }
            ClientBody::Messages(req) => {
                let chat =
                    translate::anthropic::request_to_openai(req.clone()).map_err(untranslatable)?;
                let out = translate::gemini::request_from_openai(chat).map_err(untranslatable)?;
                if inbound.api == ClientApi::CountTokens {
                    let count = gemini::CountTokensRequest {
                        contents: out.contents,
                    };
                    let url = model_url(endpoint, model, "countTokens")?;
                    return Ok(Plan::Call {
                        url,
                        body: request_json(&count)?,
                        decode: Decode::CountToAnthropic,
                    });
                }
                Ok(Plan::Call {
                    url: generate_url(endpoint, model, stream)?,
                    body: request_json(&out)?,
                    decode: Decode::ToAnthropic,
                })
            }
            ClientBody::Json(_) => Err(endpoint.unsupported_json_api(inbound.api)),
        }
    }

    fn decode_body(
        decode: Decode,
        body: Bytes,
        meta: &ResponseMeta,
    ) -> Result<(Bytes, Option<Usage>), GatewayError> {
        match decode {
            Decode::ToOpenAi { .. } => {
                let resp: GenerateContentResponse =
                    serde_json::from_slice(&body).map_err(|e| unreadable("response", e))?;
                let out = translate::gemini::response_to_openai(resp, meta);
                let usage = out.usage.clone();
                Ok((response_json(&out)?, usage))
            }
            Decode::ToAnthropic => {
                let resp: GenerateContentResponse =
                    serde_json::from_slice(&body).map_err(|e| unreadable("response", e))?;
                let chat = translate::gemini::response_to_openai(resp, meta);
                let usage = chat.usage.clone();
                let out = translate::anthropic::response_from_openai(chat, meta);
                Ok((response_json(&out)?, usage))
            }
            Decode::CountToAnthropic => {
                let resp: gemini::CountTokensResponse =
                    serde_json::from_slice(&body).map_err(|e| unreadable("token count", e))?;
                let out = anthropic::CountTokensResponse {
                    input_tokens: resp.total_tokens,
                };
                Ok((response_json(&out)?, None))
            }
        }
    }

    fn stream(decode: Decode, factory: ChunkFactory) -> Stream {
        match decode {
            Decode::ToOpenAi { include_usage } => Stream::ToOpenAi {
                inner: GeminiToOpenAi::new(factory),
                include_usage,
                finished: false,
            },
            // A token count is never streamed; were it, it would read as a message.
            Decode::ToAnthropic | Decode::CountToAnthropic => Stream::ToAnthropic {
                encoder: OpenAiToAnthropic::new(anthropic_id(&factory.id), factory.model.clone()),
                inner: GeminiToOpenAi::new(factory),
                finished: false,
            },
        }
    }
}

/// A streamed Gemini answer. Gemini has no terminal event: its stream simply ends after
/// a candidate's `finishReason`, so `finished` says whether it may end.
#[derive(Debug)]
pub enum Stream {
    /// Translated to OpenAI chat chunks.
    ToOpenAi {
        inner: GeminiToOpenAi,
        include_usage: bool,
        finished: bool,
    },
    /// Translated to OpenAI chat chunks, re-encoded as Anthropic Messages events.
    ToAnthropic {
        inner: GeminiToOpenAi,
        encoder: OpenAiToAnthropic,
        finished: bool,
    },
}

impl StreamRead for Stream {
    fn on_event(&mut self, event: SseEvent, out: &mut BytesMut) -> Result<(), StreamError> {
        if event.is_empty() {
            return Ok(());
        }
        let parsed: GenerateContentResponse = parse_event(&event.data)?;
        let finishes = parsed.candidates.iter().any(|c| c.finish_reason.is_some());
        match self {
            Stream::ToOpenAi {
                inner, finished, ..
            } => {
                *finished |= finishes;
                for chunk in inner.on_event(parsed).map_err(StreamError::Provider)? {
                    put_chunk(out, &chunk);
                }
            }
            Stream::ToAnthropic {
                inner,
                encoder,
                finished,
            } => {
                *finished |= finishes;
                for chunk in inner.on_event(parsed).map_err(StreamError::Provider)? {
                    for e in encoder.on_chunk(chunk) {
                        put_anthropic(out, &e);
                    }
                }
            }
        }
        Ok(())
    }

    fn finish(&mut self, out: &mut BytesMut) {
        match self {
            Stream::ToOpenAi {
                inner,
                include_usage,
                ..
            } => {
                if *include_usage {
                    put_chunk(out, &inner.factory().usage_chunk(inner.usage()));
                }
                out.put(DONE);
            }
            Stream::ToAnthropic { inner, encoder, .. } => {
                let usage = inner.usage();
                for e in encoder.on_chunk(inner.factory().usage_chunk(usage)) {
                    put_anthropic(out, &e);
                }
                for e in encoder.finish() {
                    put_anthropic(out, &e);
                }
            }
        }
    }

    /// Never: the body's end is the end (see [`Stream`]).
    fn is_done(&self) -> bool {
        false
    }

    fn may_end(&self) -> bool {
        match self {
            Stream::ToOpenAi { finished, .. } | Stream::ToAnthropic { finished, .. } => *finished,
        }
    }

    fn usage(&self) -> Option<Usage> {
        match self {
            Stream::ToOpenAi { inner, .. } | Stream::ToAnthropic { inner, .. } => {
                counted(Some(inner.usage()))
            }
        }
    }

    fn carries_content(&self, _event: &SseEvent) -> bool {
        true
    }
}
