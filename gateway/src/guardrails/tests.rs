#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation is the failure"
)]

use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Value, json};
use sluice_shared::guardrails::{Action, CompiledPolicy, Direction, Policy, Scope};
use sluice_shared::sse::SseDecoder;

use super::stream::OutputGuard;
use super::{GuardrailDecision, Guardrails, header_value};
use crate::request::ClientApi;

/// A Luhn-valid card number that the default policy redacts; four words, so a word-by-word
/// stream splits it across four events.
const CARD: &str = "4539 1488 0343 6467";

fn policy(toml_text: &str) -> Arc<CompiledPolicy> {
    let policy: Policy = toml::from_str(toml_text).unwrap();
    Arc::new(CompiledPolicy::compile(&policy).unwrap())
}

fn events(bytes: &[u8]) -> Vec<(Option<String>, String)> {
    let mut d = SseDecoder::new();
    d.push(bytes).unwrap();
    let mut out = Vec::new();
    while let Some(e) = d.next_event() {
        out.push((e.event, e.data));
    }
    out
}

/// Feeds `events` one write at a time; returns everything sent and the block message.
fn run(guard: &mut OutputGuard, writes: &[Bytes]) -> (Vec<u8>, Option<String>) {
    let mut sent = Vec::new();
    for w in writes {
        let f = guard.filter(w);
        sent.extend_from_slice(&f.bytes);
        if f.blocked.is_some() {
            return (sent, f.blocked);
        }
    }
    (sent, None)
}

fn openai_chunk(content: Option<&str>, finish: Option<&str>) -> Bytes {
    let mut delta = json!({});
    if let Some(c) = content {
        delta["content"] = json!(c);
    }
    let chunk = json!({
        "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m",
        "service_tier": "default",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    });
    Bytes::from(format!("data: {chunk}\n\n"))
}

fn words(text: &str) -> Vec<String> {
    let mut out: Vec<String> = text.split_inclusive(' ').map(str::to_owned).collect();
    if out.is_empty() {
        out.push(String::new());
    }
    out
}

#[test]
fn openai_stream_redacts_a_value_split_across_events() {
    let p = policy("");
    let mut guard = OutputGuard::new(ClientApi::Chat, p, None, None).unwrap();
    let text = format!("The card {CARD} was refunded twice");
    let mut writes = vec![Bytes::from_static(
        b"data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":null}]}\n\n",
    )];
    writes.extend(words(&text).iter().map(|w| openai_chunk(Some(w), None)));
    writes.push(openai_chunk(None, Some("stop")));
    writes.push(Bytes::from_static(b"data: [DONE]\n\n"));
    let (sent, blocked) = run(&mut guard, &writes);
    assert!(blocked.is_none());
    let evs = events(&sent);
    let mut got = String::new();
    for (_, data) in &evs {
        if data == "[DONE]" {
            continue;
        }
        let v: Value = serde_json::from_str(data).unwrap();
        if let Some(c) = v["choices"][0]["delta"]["content"].as_str() {
            if !c.is_empty() {
                assert_eq!(v["service_tier"], "default", "unknown fields pass through");
            }
            got.push_str(c);
        }
    }
    assert_eq!(got, "The card [REDACTED:payment_card_1] was refunded twice");
    for digits in ["4539", "1488", "0343", "6467"] {
        assert!(
            !String::from_utf8_lossy(&sent).contains(digits),
            "{digits} leaked"
        );
    }
    let last_chunk: Value = serde_json::from_str(&evs[evs.len() - 2].1).unwrap();
    assert_eq!(last_chunk["choices"][0]["finish_reason"], "stop");
    assert_eq!(evs.last().unwrap().1, "[DONE]");
    let decisions = guard.decisions();
    let card = decisions
        .iter()
        .find(|d| d.rule_id.as_str() == "payment_card")
        .unwrap();
    assert_eq!(card.count, 1);
}

#[test]
fn openai_tool_call_arguments_are_scanned() {
    let p = policy("");
    let mut guard = OutputGuard::new(ClientApi::Chat, p, None, None).unwrap();
    let call = |args: &str, extra: Value| {
        let mut tc = json!({"index": 0, "function": {"arguments": args}});
        if let (Some(t), Some(e)) = (tc.as_object_mut(), extra.as_object()) {
            t.extend(e.clone());
        }
        Bytes::from(format!(
            "data: {}\n\n",
            json!({"id": "c", "choices": [{"index": 0, "delta": {"tool_calls": [tc]}, "finish_reason": null}]})
        ))
    };
    let writes = vec![
        call(
            "",
            json!({"id": "call_1", "type": "function", "function": {"name": "send", "arguments": ""}}),
        ),
        call("{\"to\": \"ann.lee@", json!({})),
        call("acme-corp.io\"}", json!({})),
        openai_chunk(None, Some("tool_calls")),
    ];
    let (sent, blocked) = run(&mut guard, &writes);
    assert!(blocked.is_none());
    let mut args = String::new();
    for (_, data) in events(&sent) {
        let v: Value = serde_json::from_str(&data).unwrap();
        if let Some(a) = v["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str()
        {
            args.push_str(a);
        }
    }
    assert_eq!(args, "{\"to\": \"[REDACTED:email_1]\"}");
}

#[test]
fn anthropic_stream_block_ends_before_message_stop() {
    let p = policy("");
    let mut guard = OutputGuard::new(ClientApi::Messages, p, None, None).unwrap();
    let ev = |name: &str, data: Value| Bytes::from(format!("event: {name}\ndata: {data}\n\n"));
    let delta = |t: &str| {
        ev(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": t}}),
        )
    };
    let writes = vec![
        ev(
            "message_start",
            json!({"type": "message_start", "message": {}}),
        ),
        ev(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
        delta("The key is "),
        delta("AKIA4QWE"),
        delta("RTYUIOPASDFG and more"),
        ev(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 0}),
        ),
        ev("message_stop", json!({"type": "message_stop"})),
    ];
    let (sent, blocked) = run(&mut guard, &writes);
    let message = blocked.expect("the AWS key blocks the stream");
    assert!(message.contains("aws_access_key"), "{message}");
    let text = String::from_utf8_lossy(&sent);
    assert!(!text.contains("AKIA"), "{text}");
    assert!(!text.contains("message_stop"), "{text}");
    assert!(
        text.contains("The key is"),
        "text before the key was released: {text}"
    );
}

#[test]
fn anthropic_stream_flushes_held_text_before_block_stop() {
    let p = policy("");
    let mut guard = OutputGuard::new(ClientApi::Messages, p, None, None).unwrap();
    let ev = |name: &str, data: Value| Bytes::from(format!("event: {name}\ndata: {data}\n\n"));
    let writes = vec![
        ev(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
        ev(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "mail bob@acme-corp.io"}}),
        ),
        ev(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 0}),
        ),
        ev("message_stop", json!({"type": "message_stop"})),
    ];
    let (sent, blocked) = run(&mut guard, &writes);
    assert!(blocked.is_none());
    let evs = events(&sent);
    let names: Vec<&str> = evs.iter().filter_map(|(n, _)| n.as_deref()).collect();
    let stop = names
        .iter()
        .position(|n| *n == "content_block_stop")
        .unwrap();
    let text: String = evs[..stop]
        .iter()
        .filter_map(|(_, d)| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| v["delta"]["text"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(text, "mail [REDACTED:email_1]");
    assert_eq!(names.last(), Some(&"message_stop"));
}

#[test]
fn responses_stream_redacts_deltas_and_final_events() {
    let p = policy("");
    let mut guard = OutputGuard::new(ClientApi::Responses, p, None, None).unwrap();
    let ev = |name: &str, data: Value| Bytes::from(format!("event: {name}\ndata: {data}\n\n"));
    let delta = |seq: u32, t: &str| {
        ev(
            "response.output_text.delta",
            json!({"type": "response.output_text.delta", "item_id": "msg_1", "output_index": 0, "content_index": 0, "delta": t, "sequence_number": seq}),
        )
    };
    let full = "write to carol@acme-corp.io";
    let writes = vec![
        delta(1, "write to "),
        delta(2, "carol@acme-corp.io"),
        ev(
            "response.output_text.done",
            json!({"type": "response.output_text.done", "item_id": "msg_1", "output_index": 0, "content_index": 0, "text": full, "sequence_number": 3}),
        ),
        ev(
            "response.completed",
            json!({"type": "response.completed", "sequence_number": 4, "response": {"output": [
                {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": full}]}
            ]}}),
        ),
    ];
    let (sent, blocked) = run(&mut guard, &writes);
    assert!(blocked.is_none());
    let text = String::from_utf8_lossy(&sent);
    assert!(!text.contains("carol@"), "{text}");
    let streamed: String = events(&sent)
        .iter()
        .filter(|(n, _)| n.as_deref() == Some("response.output_text.delta"))
        .filter_map(|(_, d)| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| v["delta"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(streamed, "write to [REDACTED:email_1]");
    assert!(
        text.contains("\"text\":\"write to [REDACTED:email_1]\""),
        "{text}"
    );
}

/// `check_output` on a complete answer, default scope: the body sent on, the block
/// message, and the decisions recorded.
fn check(
    g: &Guardrails,
    api: ClientApi,
    body: Bytes,
) -> (Bytes, Option<String>, Vec<GuardrailDecision>) {
    let mut decisions = Vec::new();
    let (out, blocked) = g.check_output(api, body, &Scope::default(), &mut decisions);
    (out, blocked, decisions)
}

#[test]
fn complete_answers_are_redacted_or_replaced() {
    let g = Guardrails::new(policy("")).unwrap();
    let body = json!({
        "id": "x", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "mail dan@acme-corp.io"}, "finish_reason": "stop"}],
    });
    let (out, blocked, decisions) = check(&g, ClientApi::Chat, Bytes::from(body.to_string()));
    assert!(blocked.is_none());
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "mail [REDACTED:email_1]"
    );
    assert_eq!(decisions[0].direction, Direction::Output);

    // Untouched answers go out as the exact bytes that came in.
    let clean = Bytes::from(body.to_string().replace("dan@acme-corp.io", "Dan"));
    let (out, _, _) = check(&g, ClientApi::Chat, clean.clone());
    assert_eq!(out, clean);

    let anthropic = json!({
        "id": "msg", "type": "message", "role": "assistant", "model": "m",
        "content": [{"type": "text", "text": "key AKIA4QWERTYUIOPASDFG"}],
        "stop_reason": "end_turn", "usage": {"input_tokens": 1, "output_tokens": 2},
    });
    let (out, blocked, _) = check(&g, ClientApi::Messages, Bytes::from(anthropic.to_string()));
    let message = blocked.unwrap();
    assert!(message.contains("aws_access_key"));
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["stop_reason"], "refusal");
    assert_eq!(v["content"][0]["text"], message.as_str());
    assert_eq!(v["usage"]["output_tokens"], 2);
    assert!(!String::from_utf8_lossy(&out).contains("AKIA"));
}

/// Plain-text answers are read in place: a `warn` rule is recorded and the bytes go out
/// untouched. Tool calls, content parts and tool inputs take the full path, which
/// still guards (and rewrites) them.
#[test]
fn plain_answers_are_inspected_in_place_and_the_rest_guarded_in_full() {
    let g = Guardrails::new(policy(
        "[detectors.email]\naction = \"warn\"\n[detectors.github_token]\naction = \"redact\"\n",
    ))
    .unwrap();
    let chat = |message: Value| {
        Bytes::from(
            json!({
                "id": "x", "object": "chat.completion", "created": 1, "model": "m",
                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            })
            .to_string(),
        )
    };
    let token = "ghp_Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4zAbCd";

    let warned = chat(json!({"role": "assistant", "content": "write to dan@acme-corp.io"}));
    let (out, blocked, decisions) = check(&g, ClientApi::Chat, warned.clone());
    assert!(blocked.is_none());
    assert_eq!(out, warned);
    assert_eq!(decisions.len(), 1);
    assert_eq!(decisions[0].rule_id.to_string(), "email");
    assert_eq!(decisions[0].action, Action::Warn);

    // A secret inside tool-call arguments: only the full path reads those.
    let tool = chat(json!({"role": "assistant", "content": null, "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "f", "arguments": format!("{{\"token\": \"{token}\"}}")}}
    ]}));
    let (out, _, decisions) = check(&g, ClientApi::Chat, tool);
    assert!(!String::from_utf8_lossy(&out).contains(token));
    assert_eq!(decisions[0].action, Action::Redact);

    // Content as a list of parts.
    let parts = chat(
        json!({"role": "assistant", "content": [{"type": "text", "text": format!("use {token}")}]}),
    );
    let (out, _, decisions) = check(&g, ClientApi::Chat, parts);
    assert!(!String::from_utf8_lossy(&out).contains(token));
    assert_eq!(decisions.len(), 1);

    // Anthropic: a text block with an escaped quote is read in place; a tool input is not.
    let text = Bytes::from(
        json!({"id": "m", "type": "message", "role": "assistant", "model": "m",
               "content": [{"type": "thinking", "thinking": "dan@acme-corp.io", "signature": "s"},
                           {"type": "text", "text": "say \"hi\" to dan@acme-corp.io"}],
               "stop_reason": "end_turn", "usage": {"input_tokens": 1, "output_tokens": 2}})
        .to_string(),
    );
    let (out, _, decisions) = check(&g, ClientApi::Messages, text.clone());
    assert_eq!(out, text);
    // The thinking block is not guarded on either path: one finding, in the text.
    assert_eq!(decisions.len(), 1);
    assert_eq!(decisions[0].count, 1);
    let tool_use = Bytes::from(
        json!({"id": "m", "type": "message", "role": "assistant", "model": "m",
               "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {"token": token}}],
               "stop_reason": "tool_use", "usage": {"input_tokens": 1, "output_tokens": 2}})
        .to_string(),
    );
    let (out, _, decisions) = check(&g, ClientApi::Messages, tool_use);
    assert!(!String::from_utf8_lossy(&out).contains(token));
    assert_eq!(decisions[0].action, Action::Redact);
}

#[test]
fn header_names_what_happened() {
    assert_eq!(header_value([Action::Log]), None);
    assert_eq!(header_value([]), None);
    assert_eq!(
        header_value([Action::Warn, Action::Redact, Action::Log]).unwrap(),
        "redacted, warned"
    );
}
