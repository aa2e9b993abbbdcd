//! Provider protocols, one file each, all of one shape ([`adapter::Adapter`] and
//! [`adapter::StreamRead`]): how a client request becomes the provider's request, how a
//! key is sent, how an error body reads, how a whole or streamed answer becomes the
//! client's. This module dispatches statically on [`Protocol`]: a new protocol is one
//! file implementing the two traits plus an arm in each `match` here.

pub mod adapter;
pub mod anthropic;
pub mod gemini;
pub mod openai;

use bytes::{Bytes, BytesMut};
use http::header::InvalidHeaderValue;
use http::{HeaderMap, HeaderName, HeaderValue};

use sluice_shared::openai::Usage;
use sluice_shared::sse::SseEvent;
use sluice_shared::translate::ResponseMeta;
use sluice_shared::translate::stream::ChunkFactory;

use crate::config::kind::Protocol;
use crate::error::{Flavor, GatewayError};
use crate::request::Inbound;
use adapter::{Adapter, Endpoint, Plan, StreamError, StreamRead};

/// How to turn the provider's answer into the client's: the provider's protocol and,
/// within it, the client API served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decode {
    OpenAi(openai::Decode),
    Anthropic(anthropic::Decode),
    Gemini(gemini::Decode),
}

impl Decode {
    /// Every way any protocol's answer is read (for exhaustive tests and fuzzing).
    pub fn every() -> impl Iterator<Item = Decode> {
        let openai = openai::Decode::EVERY.into_iter().map(Decode::OpenAi);
        let anthropic = anthropic::Decode::EVERY.into_iter().map(Decode::Anthropic);
        let gemini = gemini::Decode::EVERY.into_iter().map(Decode::Gemini);
        openai.chain(anthropic).chain(gemini)
    }

    /// A complete (non-streamed) success body in the client's shape, with its usage.
    pub fn body(
        self,
        body: Bytes,
        meta: &ResponseMeta,
    ) -> Result<(Bytes, Option<Usage>), GatewayError> {
        match self {
            Decode::OpenAi(d) => openai::OpenAi::decode_body(d, body, meta),
            Decode::Anthropic(d) => anthropic::Anthropic::decode_body(d, body, meta),
            Decode::Gemini(d) => gemini::Gemini::decode_body(d, body, meta),
        }
    }

    /// The translator for a streamed answer (see [`Adapter::stream`]).
    pub fn stream(self, factory: ChunkFactory) -> StreamTranslator {
        match self {
            Decode::OpenAi(d) => StreamTranslator::OpenAi(openai::OpenAi::stream(d, factory)),
            Decode::Anthropic(d) => {
                StreamTranslator::Anthropic(anthropic::Anthropic::stream(d, factory))
            }
            Decode::Gemini(d) => StreamTranslator::Gemini(gemini::Gemini::stream(d, factory)),
        }
    }
}

/// A streamed answer on its way to the client, in the provider's protocol.
#[derive(Debug)]
pub enum StreamTranslator {
    OpenAi(openai::Stream),
    Anthropic(anthropic::Stream),
    Gemini(gemini::Stream),
}

/// `$body` with `$s` bound to the protocol's stream, whichever it is (static dispatch).
macro_rules! each_stream {
    ($translator:expr, $s:ident => $body:expr) => {
        match $translator {
            StreamTranslator::OpenAi($s) => $body,
            StreamTranslator::Anthropic($s) => $body,
            StreamTranslator::Gemini($s) => $body,
        }
    };
}

impl StreamTranslator {
    /// See [`StreamRead::on_event`].
    pub fn on_event(&mut self, event: SseEvent, out: &mut BytesMut) -> Result<(), StreamError> {
        each_stream!(self, s => s.on_event(event, out))
    }

    /// See [`StreamRead::finish`].
    pub fn finish(&mut self, out: &mut BytesMut) {
        each_stream!(self, s => s.finish(out));
    }

    /// See [`StreamRead::is_done`].
    pub fn is_done(&self) -> bool {
        each_stream!(self, s => s.is_done())
    }

    /// See [`StreamRead::may_end`].
    pub fn may_end(&self) -> bool {
        each_stream!(self, s => s.may_end())
    }

    /// See [`StreamRead::usage`].
    pub fn usage(&self) -> Option<Usage> {
        each_stream!(self, s => s.usage())
    }

    /// See [`StreamRead::carries_content`].
    pub fn carries_content(&self, event: &SseEvent) -> bool {
        each_stream!(self, s => s.carries_content(event))
    }
}

/// What one protocol plans, with the protocol's decode wrapped for dispatch.
fn wrap<D>(plan: Plan<D>, wrap: fn(D) -> Decode) -> Plan<Decode> {
    match plan {
        Plan::Call { url, body, decode } => Plan::Call {
            url,
            body,
            decode: wrap(decode),
        },
        Plan::Local(body) => Plan::Local(body),
    }
}

/// The provider's request for `inbound` in `protocol`, sent to `model` (see
/// [`Adapter::prepare`]).
pub fn prepare(
    protocol: Protocol,
    endpoint: &Endpoint,
    inbound: &mut Inbound,
    model: &str,
    headers: &mut HeaderMap,
) -> Result<Plan<Decode>, GatewayError> {
    Ok(match protocol {
        Protocol::OpenAi | Protocol::Azure => wrap(
            openai(protocol).prepare(endpoint, inbound, model, headers)?,
            Decode::OpenAi,
        ),
        Protocol::Anthropic => wrap(
            anthropic::Anthropic.prepare(endpoint, inbound, model, headers)?,
            Decode::Anthropic,
        ),
        Protocol::Gemini => wrap(
            gemini::Gemini.prepare(endpoint, inbound, model, headers)?,
            Decode::Gemini,
        ),
    })
}

fn openai(protocol: Protocol) -> openai::OpenAi {
    openai::OpenAi {
        azure: protocol == Protocol::Azure,
    }
}

/// The header that carries `secret` in `protocol`'s auth scheme, marked sensitive (kept
/// out of debug output and of HTTP/2 header compression tables). `Err` when the secret
/// cannot be sent in a header.
pub fn credential_header(
    protocol: Protocol,
    secret: &str,
) -> Result<(HeaderName, HeaderValue), InvalidHeaderValue> {
    let (name, value) = match protocol {
        Protocol::OpenAi | Protocol::Azure => openai(protocol).credential(secret),
        Protocol::Anthropic => anthropic::Anthropic.credential(secret),
        Protocol::Gemini => gemini::Gemini.credential(secret),
    };
    let mut value = HeaderValue::from_str(&value)?;
    value.set_sensitive(true);
    Ok((name, value))
}

/// The message inside a provider's error body in `protocol`; the raw text (shortened)
/// when it is not the expected JSON.
pub fn error_message(protocol: Protocol, body: &[u8]) -> String {
    let parsed = match protocol {
        Protocol::OpenAi | Protocol::Azure => openai(protocol).error_message(body),
        Protocol::Anthropic => anthropic::Anthropic.error_message(body),
        Protocol::Gemini => gemini::Gemini.error_message(body),
    };
    parsed.unwrap_or_else(|| {
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        if text.is_empty() {
            "(empty body)".into()
        } else {
            text.chars().take(300).collect()
        }
    })
}

/// The client API family that can receive `protocol`'s error bodies unchanged.
pub fn error_flavor(protocol: Protocol) -> Option<Flavor> {
    match protocol {
        Protocol::OpenAi | Protocol::Azure => openai(protocol).error_flavor(),
        Protocol::Anthropic => anthropic::Anthropic.error_flavor(),
        Protocol::Gemini => gemini::Gemini.error_flavor(),
    }
}

#[cfg(test)]
mod tests;
