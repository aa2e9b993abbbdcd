//! `sluice_shared::sse::SseDecoder`, which frames every provider stream (and the
//! client's own stream again, for output guardrails). The input is a cut spec and a
//! byte stream (see `sluice_fuzz::split_spec`); the stream is pushed in those pieces,
//! in one piece and byte by byte. Checked, as the decoder documents:
//!
//! * the raw bytes of the events taken, then `pending()`, are exactly the bytes pushed
//!   ("each event keeps its raw bytes … so a proxy can forward an event untouched");
//! * every split gives the same events and the same final event ("one event may be
//!   split across any number of network reads");
//! * an event's raw bytes end with its blank line, and `finish` returns what was
//!   pending, leaving nothing behind;
//! * the framing is the reference framing the decoder's own tests keep (a blank line
//!   after `\n`, `\r\n` or `\r` ends an event).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_fuzz::{pieces, split_spec};
use sluice_shared::sse::{SseDecoder, SseEvent};

/// Events and the final (unterminated) event, pushing `chunks` one at a time and taking
/// events after each push, as the gateway does.
fn decode(payload: &[u8], chunks: &[&[u8]]) -> (Vec<SseEvent>, Option<SseEvent>) {
    let mut d = SseDecoder::new();
    let mut events = Vec::new();
    for chunk in chunks {
        if let Err(e) = d.push(chunk) {
            // The limits are megabytes; fuzz inputs are far below them.
            panic!("push refused {} bytes: {e}", payload.len());
        }
        while let Some(event) = d.next_event() {
            events.push(event);
        }
    }
    let mut joined: Vec<u8> = events.iter().flat_map(|e| e.raw.iter().copied()).collect();
    let pending = d.pending().to_vec();
    joined.extend_from_slice(&pending);
    assert_eq!(joined, payload, "events + pending != input");
    for e in &events {
        assert!(
            matches!(e.raw.last(), Some(b'\n' | b'\r')),
            "an event's raw bytes must end with its blank line: {:?}",
            e.raw
        );
        assert!(
            !e.data.contains('\r'),
            "data keeps a line break: {:?}",
            e.data
        );
        if let Some(name) = &e.event {
            assert!(
                !name.contains(['\n', '\r']),
                "event name keeps a line break"
            );
        }
    }
    let tail = d.finish();
    assert!(d.pending().is_empty(), "finish left bytes behind");
    if let Some(tail) = &tail {
        assert_eq!(&tail.raw[..], &pending[..], "finish returned other bytes");
        assert!(!tail.is_empty());
    }
    assert!(d.next_event().is_none());
    (events, tail)
}

/// End offsets of the complete events of `buf`, framed as the decoder's reference (the
/// old rescanning decoder, kept in its tests) frames them.
fn reference_ends(buf: &[u8]) -> Vec<usize> {
    let mut ends = Vec::new();
    let mut start = 0;
    'events: loop {
        let mut line = start;
        loop {
            let Some(offset) = buf[line..].iter().position(|b| matches!(b, b'\r' | b'\n')) else {
                break 'events;
            };
            let at = line + offset;
            let after = match (buf[at], buf.get(at + 1)) {
                (b'\r', Some(b'\n')) => at + 2,
                (b'\r', None) => break 'events,
                _ => at + 1,
            };
            if at == line {
                ends.push(after);
                start = after;
                continue 'events;
            }
            line = after;
        }
    }
    ends
}

fuzz_target!(|data: &[u8]| {
    let (lens, payload) = split_spec(data);
    let whole = decode(payload, &[payload]);
    let split = decode(payload, &pieces(payload, lens));
    assert_eq!(whole, split, "a split changed the events");
    let bytes: Vec<&[u8]> = payload.chunks(1).collect();
    let byte_by_byte = decode(payload, &bytes);
    assert_eq!(
        whole, byte_by_byte,
        "byte-by-byte pushes changed the events"
    );

    let mut end = 0;
    let ends: Vec<usize> = whole
        .0
        .iter()
        .map(|e| {
            end += e.raw.len();
            end
        })
        .collect();
    assert_eq!(
        ends,
        reference_ends(payload),
        "framing differs from the reference"
    );
});
