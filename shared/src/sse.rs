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
///
/// Framing is linear in the bytes received, however they are split into reads: `push`
/// examines each new byte once (a `\r` that ends a read is looked at again by the next
/// `push`, to see whether a `\n` follows) and remembers where it stopped, and
/// `next_event` walks only the lines of the event it returns. An unterminated line is
/// never rescanned from its start.
///
/// `push` enforces [`MAX_LINE_BYTES`] and [`MAX_EVENT_BYTES`] on the bytes it has just
/// appended, so an over-size line or event is refused by the `push` that crosses the
/// limit: the decoder then holds at most the limit plus that one chunk (plus any complete
/// events the caller has not taken yet). After an error the decoder drops what it holds
/// and refuses all further input with the same error.
#[derive(Debug, Default)]
pub struct SseDecoder {
    /// Bytes from the start of the first event not yet taken.
    buf: BytesMut,
    /// How many complete events sit at the front of `buf`, in `buf[..event_start]`.
    complete: usize,
    /// Where the first incomplete event starts in `buf`.
    event_start: usize,
    /// Where the current, not yet terminated, line starts in `buf`.
    line_start: usize,
    /// Where the search for the current line's break resumes: `buf[line_start..scanned]`
    /// holds no line break. Either `buf.len()` or the index of a `\r` that ends `buf`.
    scanned: usize,
    /// The limit that was crossed, once one was: the decoder is then finished.
    failed: Option<SseError>,
    /// Bytes examined for line breaks so far (tests check that framing is linear).
    #[cfg(test)]
    examined: usize,
}

/// The largest event the decoder accepts, counting every byte of the event up to and
/// including its blank line; it bounds what the decoder holds while waiting for an event
/// to end. A provider that sends more than this without a blank line is not speaking SSE.
pub const MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;

/// The longest line (not counting its line break) the decoder accepts.
///
/// Providers put each event's whole JSON payload on one `data:` line, so this is in
/// effect the cap on one payload: the proxy parses each payload into a JSON value and
/// the guardrails scan it, and that work and memory grow with the payload, not with the
/// event. Text deltas and tool-call fragments are tiny; the big payloads are base64
/// images (an image-generation result, repeated in the final `response.completed`), and
/// 8 MiB holds about 6 MB of image. It is half of [`MAX_EVENT_BYTES`], so a stream that
/// never sends a line break is refused after 8 MiB rather than 16.
pub const MAX_LINE_BYTES: usize = 8 * 1024 * 1024;

/// What went wrong while decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseError {
    /// An event grew past [`MAX_EVENT_BYTES`].
    EventTooLarge,
    /// A line grew past [`MAX_LINE_BYTES`].
    LineTooLong,
}

impl std::fmt::Display for SseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SseError::EventTooLarge => write!(
                f,
                "an SSE event exceeded the limit of {MAX_EVENT_BYTES} bytes"
            ),
            SseError::LineTooLong => write!(
                f,
                "an SSE line exceeded the limit of {MAX_LINE_BYTES} bytes"
            ),
        }
    }
}

impl std::error::Error for SseError {}

/// The outcome of looking for the next line break.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Break {
    /// A line break starts at `at`; the next line starts at `after`.
    Found { at: usize, after: usize },
    /// No complete line break: the search should resume at `resume`, which is the end of
    /// the buffer or the index of a `\r` that ends it (it may be the first half of
    /// `\r\n`, so the line break is not known yet).
    Incomplete { resume: usize },
}

/// Looks for the first line break in `buf[from..]`: `\n`, `\r\n` or `\r`.
fn find_break(buf: &[u8], from: usize) -> Break {
    let Some(offset) = buf[from..].iter().position(|&b| b == b'\n' || b == b'\r') else {
        return Break::Incomplete { resume: buf.len() };
    };
    let at = from + offset;
    let after = match (buf[at], buf.get(at + 1)) {
        (b'\r', Some(b'\n')) => at + 2,
        (b'\r', None) => return Break::Incomplete { resume: at },
        _ => at + 1,
    };
    Break::Found { at, after }
}

/// How many bytes [`find_break`] looked at to produce `found`: every byte up to the line
/// break, plus the one after a `\r` (to tell `\r\n` from `\r`).
#[cfg(test)]
fn examined_by(buf: &[u8], from: usize, found: Break) -> usize {
    match found {
        Break::Found { at, .. } => at + 1 - from + usize::from(buf[at] == b'\r'),
        Break::Incomplete { .. } => buf.len() - from,
    }
}

impl SseDecoder {
    /// A decoder with an empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends bytes read from the network.
    ///
    /// Fails as soon as a line grows past [`MAX_LINE_BYTES`] or an event past
    /// [`MAX_EVENT_BYTES`], whether or not it has ended within `chunk`; the decoder is
    /// then emptied and every later call fails the same way.
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), SseError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        self.buf.extend_from_slice(chunk);
        if let Err(error) = self.scan() {
            self.reset();
            self.failed = Some(error.clone());
            return Err(error);
        }
        Ok(())
    }

    /// Bytes received but not yet taken as events.
    pub fn pending(&self) -> &[u8] {
        &self.buf
    }

    /// The next complete event, if the buffer holds one.
    pub fn next_event(&mut self) -> Option<SseEvent> {
        if self.complete == 0 {
            return None;
        }
        let end = self.first_event_end();
        debug_assert!(end <= self.event_start);
        let raw = self.buf.split_to(end).freeze();
        self.complete -= 1;
        self.event_start -= end;
        self.line_start -= end;
        self.scanned -= end;
        Some(parse_block(raw))
    }

    /// Ends the stream: whatever is left is treated as a final event (some servers omit
    /// the last blank line).
    pub fn finish(&mut self) -> Option<SseEvent> {
        let rest = std::mem::take(&mut self.buf);
        self.reset();
        if rest.iter().all(|b| b.is_ascii_whitespace()) {
            return None;
        }
        let event = parse_block(rest.freeze());
        (!event.is_empty()).then_some(event)
    }

    /// Forgets everything buffered (but not a failure).
    fn reset(&mut self) {
        self.buf = BytesMut::new();
        self.complete = 0;
        self.event_start = 0;
        self.line_start = 0;
        self.scanned = 0;
    }

    /// Scans the bytes appended since the last call: counts the events they complete and
    /// checks the limits. Resumes where the previous call stopped, so every byte is
    /// examined once (a trailing `\r` twice).
    fn scan(&mut self) -> Result<(), SseError> {
        loop {
            let from = self.scanned;
            let found = find_break(&self.buf, from);
            #[cfg(test)]
            {
                self.examined += examined_by(&self.buf, from, found);
            }
            match found {
                Break::Found { at, after } => {
                    self.check(at, after)?;
                    if at == self.line_start {
                        // An empty line: it ends the event.
                        self.complete += 1;
                        self.event_start = after;
                    }
                    self.line_start = after;
                    self.scanned = after;
                }
                Break::Incomplete { resume } => {
                    self.check(resume, self.buf.len())?;
                    self.scanned = resume;
                    return Ok(());
                }
            }
        }
    }

    /// Checks the limits against the current line, known to run at least to `line_end`
    /// (exclusive, without its line break), and the current event, known to run at least
    /// to `event_end`. When both are over, the one crossed first in the stream wins, so
    /// the error does not depend on how the stream was split into reads.
    fn check(&self, line_end: usize, event_end: usize) -> Result<(), SseError> {
        let line_over = line_end - self.line_start > MAX_LINE_BYTES;
        let event_over = event_end - self.event_start > MAX_EVENT_BYTES;
        match (line_over, event_over) {
            (false, false) => Ok(()),
            (true, false) => Err(SseError::LineTooLong),
            (false, true) => Err(SseError::EventTooLarge),
            (true, true) => {
                if self.line_start + MAX_LINE_BYTES < self.event_start + MAX_EVENT_BYTES {
                    Err(SseError::LineTooLong)
                } else {
                    Err(SseError::EventTooLarge)
                }
            }
        }
    }

    /// Index just past the blank line that ends the first event. Only called when `scan`
    /// has counted a complete event, so the walk always finds one and stops there: it
    /// looks only at the bytes of the event it is about to return.
    fn first_event_end(&mut self) -> usize {
        let mut line = 0;
        loop {
            let found = find_break(&self.buf, line);
            #[cfg(test)]
            {
                self.examined += examined_by(&self.buf, line, found);
            }
            match found {
                Break::Found { at, after } if at == line => return after,
                Break::Found { after, .. } => line = after,
                // Unreachable: `scan` counted a complete event in `buf[..event_start]`.
                Break::Incomplete { .. } => return self.event_start,
            }
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

    /// The decoder as it was before framing was made incremental: it rescans the buffer
    /// from the start on every call. Kept as the reference for the framing semantics.
    fn reference(input: &[u8]) -> (Vec<SseEvent>, Option<SseEvent>) {
        fn event_end(buf: &[u8]) -> Option<usize> {
            let mut line = 0;
            loop {
                let offset = buf[line..]
                    .iter()
                    .position(|b| matches!(b, b'\r' | b'\n'))?;
                let at = line + offset;
                let after = match (buf[at], buf.get(at + 1)) {
                    (b'\r', Some(b'\n')) => at + 2,
                    (b'\r', None) => return None,
                    _ => at + 1,
                };
                if at == line {
                    return Some(after);
                }
                line = after;
            }
        }
        let mut buf = BytesMut::from(input);
        let mut events = Vec::new();
        while let Some(end) = event_end(&buf) {
            events.push(parse_block(buf.split_to(end).freeze()));
        }
        let tail = if buf.iter().all(|b| b.is_ascii_whitespace()) {
            None
        } else {
            Some(parse_block(buf.freeze())).filter(|e| !e.is_empty())
        };
        (events, tail)
    }

    /// Feeds `pieces` one push at a time, taking events after each push, then finishes.
    fn decode<'a>(pieces: impl IntoIterator<Item = &'a [u8]>) -> (Vec<SseEvent>, Option<SseEvent>) {
        let mut d = SseDecoder::new();
        let mut events = Vec::new();
        for piece in pieces {
            d.push(piece).unwrap();
            events.extend(all(&mut d));
        }
        let tail = d.finish();
        assert!(d.pending().is_empty());
        (events, tail)
    }

    /// Every kind of line ending, including `\r` at the end of a line followed by a blank
    /// `\n` or `\r\n` line, and a `\r` blank line followed by the next event's text.
    const SAMPLE: &[u8] = b"\n: comment\nevent: message_start\ndata: {\"a\":1}\n\n\
        id: 7\r\nevent:ping\r\ndata:  two spaces\r\ndata\r\ndata: last\r\n\r\n\
        data: cr\rretry: 10\runknown: x\r:\r\r\
        data: a\r\r\ndata: b\n\r\ndata: c\r\n\rdata: d\n\n\
        data: \xc3\xa9\xe6\x97\xa5 \xff\r\n\r\n\r\n\
        event: tail\ndata: tail\r";

    #[test]
    fn sample_decodes_as_before() {
        let (events, tail) = decode([SAMPLE]);
        assert_eq!((events.clone(), tail.clone()), reference(SAMPLE));
        let fields: Vec<_> = events
            .iter()
            .map(|e| (e.event.as_deref(), e.data.as_str()))
            .collect();
        assert_eq!(
            fields,
            vec![
                (None, ""),
                (Some("message_start"), "{\"a\":1}"),
                (Some("ping"), " two spaces\n\nlast"),
                (None, "cr"),
                (None, "a"),
                (None, "b"),
                (None, "c"),
                (None, "d"),
                (None, "\u{e9}\u{65e5} \u{fffd}"),
                (None, ""),
            ]
        );
        assert_eq!(
            &events[2].raw[..],
            b"id: 7\r\nevent:ping\r\ndata:  two spaces\r\ndata\r\ndata: last\r\n\r\n"
        );
        assert_eq!(&events[4].raw[..], b"data: a\r\r\n");
        assert_eq!(&events[6].raw[..], b"data: c\r\n\r");
        let tail = tail.unwrap();
        assert_eq!(
            (tail.event.as_deref(), tail.data.as_str()),
            (Some("tail"), "tail")
        );
        let mut joined: Vec<u8> = events.iter().flat_map(|e| e.raw.to_vec()).collect();
        joined.extend_from_slice(&tail.raw);
        assert_eq!(joined, SAMPLE);
    }

    #[test]
    fn same_events_for_every_split() {
        let expected = reference(SAMPLE);
        assert_eq!(decode(SAMPLE.chunks(1)), expected, "1-byte pushes");
        for first in 0..=SAMPLE.len() {
            let (a, rest) = SAMPLE.split_at(first);
            assert_eq!(decode([a, rest]), expected, "cut at {first}");
            for second in 0..=rest.len() {
                let (b, c) = rest.split_at(second);
                assert_eq!(
                    decode([a, b, c]),
                    expected,
                    "cuts at {first}, {}",
                    first + second
                );
            }
        }
    }

    proptest::proptest! {
        /// Random streams built from SSE's building blocks, pushed in random pieces, give
        /// what the old decoder gave for the whole stream.
        #[test]
        fn random_streams_and_splits_decode_as_before(
            parts in proptest::collection::vec(proptest::sample::select(vec![
                &b"\n"[..], b"\r", b"\r\n", b"data:", b"data: ", b"event: ", b":", b" ",
                b"x", b"id: 1", b"\xff",
            ]), 0..60),
            cuts in proptest::collection::vec(0usize..400, 0..8),
        ) {
            let input = parts.concat();
            let mut cuts: Vec<usize> = cuts.into_iter().filter(|&c| c <= input.len()).collect();
            cuts.sort_unstable();
            let mut pieces = Vec::new();
            let mut start = 0;
            for cut in cuts {
                pieces.push(&input[start..cut]);
                start = cut;
            }
            pieces.push(&input[start..]);
            proptest::prop_assert_eq!(decode(pieces), reference(&input));
        }
    }

    #[test]
    fn unterminated_line_is_examined_once() {
        // The longest line allowed, one byte per push, asking for an event after each
        // push as the gateway does. The old decoder examined ~n²/2 bytes here.
        let n = MAX_LINE_BYTES;
        let mut d = SseDecoder::new();
        d.push(b"data: ").unwrap();
        for _ in 6..n {
            d.push(b"x").unwrap();
            assert!(d.next_event().is_none());
        }
        assert!(d.examined <= 2 * n, "examined {} for {n} bytes", d.examined);
        d.push(b"\n\n").unwrap();
        let event = d.next_event().unwrap();
        assert_eq!(event.data.len(), n - 6);
        assert!(d.examined <= 3 * n, "examined {} for {n} bytes", d.examined);
    }

    #[test]
    fn unterminated_event_is_examined_once() {
        // 8 MiB of one event without its blank line (64 KiB lines, some ending in a `\r`
        // that lands at the end of a push), 64 bytes per push.
        let line = [b"data: ".as_slice(), &[b'x'; 64 * 1024 - 8], b"\r\n"].concat();
        let input = line.repeat(8 * 1024 * 1024 / line.len());
        let mut d = SseDecoder::new();
        for piece in input.chunks(64) {
            d.push(piece).unwrap();
            assert!(d.next_event().is_none());
        }
        let n = input.len();
        assert!(d.examined <= 2 * n, "examined {} for {n} bytes", d.examined);
        d.push(b"\n").unwrap();
        assert!(d.next_event().is_some());
        assert!(d.examined <= 3 * n, "examined {} for {n} bytes", d.examined);
    }

    #[test]
    fn many_small_events_are_examined_a_bounded_number_of_times() {
        let input = b"data: 1\r\r: c\r\rdata: 2\r\n\r\n\n\r".repeat(20_000);
        let mut d = SseDecoder::new();
        let mut count = 0;
        for piece in input.chunks(1) {
            d.push(piece).unwrap();
            count += all(&mut d).len();
        }
        assert_eq!(count, 20_000 * 5 - 1);
        let n = input.len();
        assert!(d.examined <= 4 * n, "examined {} for {n} bytes", d.examined);
    }

    /// Pushes `prefix` and then `filler` repeatedly, taking events after each push, until
    /// a push fails. Returns the error and how many bytes the decoder held when it failed
    /// (everything pushed, minus the events taken).
    fn push_until_error(prefix: &[u8], filler: &[u8]) -> (SseError, usize) {
        let mut d = SseDecoder::new();
        let mut held = 0;
        for piece in std::iter::once(prefix).chain(std::iter::repeat(filler)) {
            held += piece.len();
            if let Err(e) = d.push(piece) {
                assert!(d.pending().is_empty(), "the buffer is released");
                assert_eq!(d.push(b"\n\n"), Err(e.clone()), "the error sticks");
                assert!(d.next_event().is_none());
                assert!(d.finish().is_none());
                return (e, held);
            }
            held -= all(&mut d).iter().map(|e| e.raw.len()).sum::<usize>();
            assert!(held <= MAX_EVENT_BYTES);
        }
        unreachable!()
    }

    #[test]
    fn over_long_line_fails_as_soon_as_it_crosses_the_limit() {
        let chunk = [b'x'; 4096];
        let (error, held) = push_until_error(b"data: a\n\ndata: ", &chunk);
        assert_eq!(error, SseError::LineTooLong);
        // The held bytes are the unterminated line: the first push that takes it past
        // the limit fails.
        assert!(held > MAX_LINE_BYTES, "held {held}");
        assert!(held <= MAX_LINE_BYTES + chunk.len(), "held {held}");
    }

    #[test]
    fn over_large_event_fails_as_soon_as_it_crosses_the_limit() {
        let line = [b"data: ".as_slice(), &[b'x'; 1000], b"\n"].concat();
        let chunk = line.repeat(64);
        let (error, held) = push_until_error(b"\r\r", &chunk);
        assert_eq!(error, SseError::EventTooLarge);
        assert!(held > MAX_EVENT_BYTES, "held {held}");
        assert!(held <= MAX_EVENT_BYTES + chunk.len(), "held {held}");
    }

    /// An event of exactly `len` bytes: 1 MiB lines, a shorter last line, a blank line.
    fn event_of(len: usize) -> Vec<u8> {
        let mib = 1024 * 1024;
        let mut out = Vec::with_capacity(len);
        while len - out.len() > 1 {
            let line = (len - out.len() - 1).min(mib);
            out.extend_from_slice(b"data: ");
            out.resize(out.len() + line - 7, b'x');
            out.push(b'\n');
        }
        out.push(b'\n');
        assert_eq!(out.len(), len);
        out
    }

    #[test]
    fn limits_are_inclusive_and_apply_within_one_push() {
        let line_at_limit = [b"data: ".as_slice(), &vec![b'x'; MAX_LINE_BYTES - 6]].concat();
        let mut d = SseDecoder::new();
        d.push(&[&line_at_limit[..], b"\r\n\r\n"].concat()).unwrap();
        assert_eq!(d.next_event().unwrap().data.len(), MAX_LINE_BYTES - 6);

        let mut d = SseDecoder::new();
        let over = [&line_at_limit[..], b"x\n\n"].concat();
        assert_eq!(d.push(&over), Err(SseError::LineTooLong));

        let mut d = SseDecoder::new();
        d.push(&event_of(MAX_EVENT_BYTES)).unwrap();
        assert_eq!(d.next_event().unwrap().raw.len(), MAX_EVENT_BYTES);
        d.push(b"\r").unwrap();
        assert!(d.next_event().is_none());
        assert!(d.finish().is_none());

        let mut d = SseDecoder::new();
        assert_eq!(
            d.push(&event_of(MAX_EVENT_BYTES + 1)),
            Err(SseError::EventTooLarge)
        );
        // The limit is on one event, not on one push: many small events may come at once.
        let mut d = SseDecoder::new();
        d.push(&b"data: 1\n\n".repeat(MAX_EVENT_BYTES / 4)).unwrap();
        assert_eq!(all(&mut d).len(), MAX_EVENT_BYTES / 4);
    }

    #[test]
    fn the_limit_crossed_first_is_reported_however_the_stream_is_split() {
        let long_line = [
            b"data: ".as_slice(),
            &vec![b'x'; MAX_LINE_BYTES + 100],
            b"\n\n",
        ]
        .concat();
        // 15.5 MiB of short lines, then a long one: the event limit is crossed first.
        let event_first = [
            &event_of(MAX_EVENT_BYTES - 512 * 1024)[..MAX_EVENT_BYTES - 512 * 1024 - 1],
            &long_line,
        ]
        .concat();
        // A long line at the start of an event: the line limit is crossed first.
        let line_first = [b"data: a\n".as_slice(), &long_line].concat();
        for (input, error) in [
            (event_first, SseError::EventTooLarge),
            (line_first, SseError::LineTooLong),
        ] {
            for size in [input.len(), 1024 * 1024, 4096] {
                let mut d = SseDecoder::new();
                let got = input.chunks(size).find_map(|piece| d.push(piece).err());
                assert_eq!(got, Some(error.clone()), "pushes of {size}");
            }
        }
    }

    #[test]
    fn errors_say_what_happened_and_the_limit() {
        assert_eq!(
            SseError::LineTooLong.to_string(),
            "an SSE line exceeded the limit of 8388608 bytes"
        );
        assert_eq!(
            SseError::EventTooLarge.to_string(),
            "an SSE event exceeded the limit of 16777216 bytes"
        );
    }
}
