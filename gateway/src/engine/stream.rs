//! Streaming responses.
//!
//! [`UpstreamStream`] reads the provider's SSE body with the idle timeout, cuts it into
//! events and hands each to the protocol's [`StreamTranslator`], which writes the client's
//! bytes: the event itself when both sides speak the same API (a pass-through that only
//! peeks at usage), or the translated events. Each network read produces at most one
//! write to the client: nothing is held back beyond an incomplete event.
//!
//! A stream that ends without its API's terminal event (`[DONE]`, `message_stop`,
//! `response.completed`, a Gemini `finishReason`) is truncated, and is reported as a
//! failure, never as a normal end.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;

use sluice_shared::openai::Usage;
use sluice_shared::sse::{SseDecoder, SseEvent};

use crate::error::error_chain;
use crate::providers::protocol::StreamTranslator;
use crate::providers::protocol::adapter::StreamError;

/// The provider's body, read event by event.
pub struct UpstreamStream {
    body: Incoming,
    decoder: SseDecoder,
    pub translator: StreamTranslator,
    idle: Duration,
    ended: bool,
    content_seen: bool,
}

impl std::fmt::Debug for UpstreamStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamStream")
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl UpstreamStream {
    pub fn new(
        response: http::Response<Incoming>,
        translator: StreamTranslator,
        idle: Duration,
    ) -> Self {
        UpstreamStream {
            body: response.into_body(),
            decoder: SseDecoder::new(),
            translator,
            idle,
            ended: false,
            content_seen: false,
        }
    }

    /// The next bytes for the client; `Ok(None)` once the stream has ended properly.
    pub async fn next_output(&mut self) -> Result<Option<Bytes>, StreamError> {
        let mut out = BytesMut::new();
        if self.ended {
            self.drain().await;
            return Ok(None);
        }
        loop {
            if self.ended {
                return Ok((!out.is_empty()).then(|| out.freeze()));
            }
            while let Some(event) = self.decoder.next_event() {
                self.observe(&event);
                self.translator.on_event(event, &mut out)?;
                if self.translator.is_done() {
                    self.translator.finish(&mut out);
                    self.ended = true;
                    break;
                }
            }
            if !out.is_empty() {
                return Ok(Some(out.freeze()));
            }
            if self.ended {
                continue;
            }
            match tokio::time::timeout(self.idle, self.body.frame()).await {
                Err(_) => return Err(StreamError::Idle),
                Ok(Some(Ok(frame))) => {
                    if let Some(chunk) = frame.data_ref() {
                        self.decoder
                            .push(chunk)
                            .map_err(|e| StreamError::Protocol(e.to_string()))?;
                    }
                }
                Ok(Some(Err(e))) => return Err(StreamError::Read(error_chain(&e))),
                Ok(None) => {
                    if let Some(event) = self.decoder.finish() {
                        self.observe(&event);
                        self.translator.on_event(event, &mut out)?;
                    }
                    if !self.translator.may_end() {
                        return Err(StreamError::Truncated);
                    }
                    self.translator.finish(&mut out);
                    self.ended = true;
                }
            }
        }
    }

    /// After the terminal event, reads the rest of the body (normally just the end of the
    /// chunked encoding) so the connection goes back to the pool instead of being cut.
    /// Bounded in bytes and by the idle timeout; anything after the terminal event is
    /// not the client's.
    async fn drain(&mut self) {
        const MAX_TRAILING_BYTES: usize = 64 * 1024;
        let mut seen = 0;
        while seen < MAX_TRAILING_BYTES {
            match tokio::time::timeout(self.idle, self.body.frame()).await {
                Ok(Some(Ok(frame))) => seen += frame.data_ref().map_or(1, Bytes::len),
                _ => return,
            }
        }
    }

    /// Usage as far as it is known.
    pub fn usage(&self) -> Option<Usage> {
        self.translator.usage()
    }

    /// Whether an event with content (not just framing) has been read.
    pub fn content_seen(&self) -> bool {
        self.content_seen
    }

    fn observe(&mut self, event: &SseEvent) {
        if !self.content_seen {
            self.content_seen = self.translator.carries_content(event);
        }
    }
}
