//! Server-Sent Events framing.
//!
//! [`SseDecoder`] cuts a byte stream into events as the bytes arrive. Each event keeps
//! its raw bytes (including the blank line that ended it) so a proxy can forward an
//! event untouched, and its parsed `event:` and `data:` fields so the proxy can look
//! inside. Line endings may be `\n`, `\r\n` or `\r` (Gemini uses `\r\n`), and one event
//! may be split across any number of network reads.

use bytes::{Bytes, BytesMut};

/// One complete event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, if the event had one.
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
    /// The exact bytes of the event, up to and including its terminating blank line.
    pub raw: Bytes,
}

impl SseEvent {
    /// True for a block that only held comments (`: ping`) or ids: no data, no type.
    pub fn is_empty(&self) -> bool {
        self.event.is_none() && self.data.is_empty()
    }
}

/// Incremental decoder. Feed bytes with [`SseDecoder::push`], take events with
/// [`SseDecoder::next_event`].
#[derive(Debug, Default)]
pub struct SseDecoder {
    buf: BytesMut,
    /// Bytes of `buf` already scanned for line breaks without finding an event end.
    scanned: usize,
}

/// The largest event the decoder will hold while waiting for its end. A provider that
/// sends more than this without a blank line is not speaking SSE.
pub const MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;

/// What went wrong while decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseError {
    /// An event grew past [`MAX_EVENT_BYTES`] without ending.
    EventTooLarge,
}

impl std::fmt::Display for SseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SseError::EventTooLarge => {
                write!(
                    f,
                    "an SSE event exceeded {MAX_EVENT_BYTES} bytes without ending"
                )
            }
        }
    }
}

impl std::error::Error for SseError {}

impl SseDecoder {
    /// A decoder with an empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends bytes read from the network.
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), SseError> {
        self.buf.extend_from_slice(chunk);
        if self.buf.len() > MAX_EVENT_BYTES {
            return Err(SseError::EventTooLarge);
        }
        Ok(())
    }

    /// Bytes received but not yet part of a complete event.
    pub fn pending(&self) -> &[u8] {
        &self.buf
    }

    /// The next complete event, if the buffer holds one.
    pub fn next_event(&mut self) -> Option<SseEvent> {
        let end = self.find_event_end()?;
        let raw = self.buf.split_to(end).freeze();
        self.scanned = 0;
        Some(parse_block(raw))
    }

    /// Ends the stream: whatever is left is treated as a final event (some servers omit
    /// the last blank line).
    pub fn finish(&mut self) -> Option<SseEvent> {
        if self.buf.iter().all(|b| b.is_ascii_whitespace()) {
            self.buf.clear();
            return None;
        }
        let raw = self.buf.split().freeze();
        self.scanned = 0;
        let event = parse_block(raw);
        (!event.is_empty()).then_some(event)
    }

    /// Index just past the blank line that ends the first event, if any.
    ///
    /// `scanned` marks the start of the first line not yet known to be complete; every
    /// line before it was complete and non-empty (an empty one would have ended the event).
    fn find_event_end(&mut self) -> Option<usize> {
        let buf = &self.buf[..];
        let mut line = self.scanned;
        loop {
            let Some(offset) = buf[line..].iter().position(|b| matches!(b, b'\r' | b'\n')) else {
                self.scanned = line;
                return None;
            };
            let at = line + offset;
            let after = match (buf[at], buf.get(at + 1)) {
                (b'\r', Some(b'\n')) => at + 2,
                // A lone \r at the end may be the first half of \r\n: wait for more.
                (b'\r', None) => {
                    self.scanned = line;
                    return None;
                }
                _ => at + 1,
            };
            if at == line {
                return Some(after);
            }
            line = after;
        }
    }
}

fn parse_block(raw: Bytes) -> SseEvent {
    let text = String::from_utf8_lossy(&raw);
    let mut event = None;
    let mut data = String::new();
    let mut has_data = false;
    for line in text.split(['\n', '\r']) {
        if line.is_empty() || line.starts_with(':') {
            continue;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "event" => event = Some(value.to_owned()),
            "data" => {
                if has_data {
                    data.push('\n');
                }
                data.push_str(value);
                has_data = true;
            }
            _ => {}
        }
    }
    SseEvent { event, data, raw }
}

/// Encodes one event as `event: NAME\ndata: JSON\n\n` (or without the `event:` line).
pub fn encode(event: Option<&str>, data: &str) -> Bytes {
    let mut out = String::with_capacity(data.len() + 32);
    if let Some(name) = event {
        out.push_str("event: ");
        out.push_str(name);
        out.push('\n');
    }
    for line in data.split('\n') {
        out.push_str("data: ");
        out.push_str(line);
        out.push('\n');
    }
    out.push('\n');
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(decoder: &mut SseDecoder) -> Vec<SseEvent> {
        std::iter::from_fn(|| decoder.next_event()).collect()
    }

    #[test]
    fn splits_lf_events_and_keeps_raw_bytes() {
        let mut d = SseDecoder::new();
        d.push(b"event: a\ndata: 1\n\ndata: 2\ndata: 3\n\n")
            .unwrap();
        let events = all(&mut d);
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].event.as_deref(), Some("a"));
        assert_eq!(events[0].data, "1");
        assert_eq!(&events[0].raw[..], b"event: a\ndata: 1\n\n");
        assert_eq!(events[1].data, "2\n3");
        assert!(d.pending().is_empty());
    }

    #[test]
    fn handles_crlf_split_at_every_byte() {
        let input = b"data: {\"x\":1}\r\n\r\ndata: two\r\n\r\n";
        for cut in 0..input.len() {
            let mut d = SseDecoder::new();
            let mut events = Vec::new();
            d.push(&input[..cut]).unwrap();
            events.extend(all(&mut d));
            d.push(&input[cut..]).unwrap();
            events.extend(all(&mut d));
            let data: Vec<_> = events.iter().map(|e| e.data.as_str()).collect();
            assert_eq!(data, vec!["{\"x\":1}", "two"], "cut at {cut}");
        }
    }

    #[test]
    fn byte_by_byte_matches_whole() {
        let input = b": comment\nevent: message_start\ndata: {}\n\nevent: ping\ndata: {\"type\":\"ping\"}\n\n";
        let mut d = SseDecoder::new();
        let mut events = Vec::new();
        for b in input.iter() {
            d.push(&[*b]).unwrap();
            events.extend(all(&mut d));
        }
        assert_eq!(events.len(), 2);
        assert_eq!(events[1].event.as_deref(), Some("ping"));
        let joined: Vec<u8> = events.iter().flat_map(|e| e.raw.to_vec()).collect();
        assert_eq!(joined, input.to_vec());
    }

    #[test]
    fn finish_returns_unterminated_tail() {
        let mut d = SseDecoder::new();
        d.push(b"data: [DONE]\n").unwrap();
        assert!(d.next_event().is_none());
        assert_eq!(d.finish().map(|e| e.data), Some("[DONE]".to_owned()));
    }

    #[test]
    fn encode_round_trips() {
        let bytes = encode(Some("message_stop"), "{\"type\":\"message_stop\"}");
        let mut d = SseDecoder::new();
        d.push(&bytes).unwrap();
        let e = d.next_event().unwrap();
        assert_eq!(e.event.as_deref(), Some("message_stop"));
        assert_eq!(e.data, "{\"type\":\"message_stop\"}");
    }
}
