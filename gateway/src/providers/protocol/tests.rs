//! Every protocol through the one dispatch: where each client API goes, how it reads
//! back, which key header it sends, how its error bodies read and when its streams end.

use bytes::{Bytes, BytesMut};
use http::HeaderMap;

use sluice_shared::sse::SseDecoder;
use sluice_shared::translate::ResponseMeta;
use sluice_shared::translate::stream::ChunkFactory;

use super::adapter::{Endpoint, Plan};
use super::*;
use crate::config::kind::ProviderKind;
use crate::request::{ClientApi, ClientBody};

fn endpoint(kind: ProviderKind) -> Endpoint {
    Endpoint::new(
        "p".into(),
        kind,
        "https://api.example.test/v1/",
        "2024-10-21".into(),
    )
}

fn inbound(api: ClientApi, stream: bool) -> Inbound {
    let body = match api {
        ClientApi::Chat => ClientBody::Chat(
            serde_json::from_str(r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#)
                .unwrap(),
        ),
        ClientApi::Messages | ClientApi::CountTokens => ClientBody::Messages(
            serde_json::from_str(
                r#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}"#,
            )
            .unwrap(),
        ),
        ClientApi::Responses | ClientApi::Embeddings => {
            ClientBody::Json(serde_json::from_str(r#"{"model":"m","input":"hi"}"#).unwrap())
        }
    };
    Inbound {
        api,
        body,
        model: "m".into(),
        stream,
        wants_stream_usage: false,
        fallbacks: Vec::new(),
        forward_headers: Vec::new(),
        query: None,
    }
}

/// (provider kind, client API, streamed) → the URL called and the decode, or the
/// start of the refusal.
#[test]
fn each_protocol_serves_each_client_api_at_its_endpoint() {
    use ClientApi::*;
    use ProviderKind::{Anthropic as A, Azure as Z, Gemini as G, Openai as O};
    let base = "https://api.example.test/v1";
    type Row = (
        ProviderKind,
        ClientApi,
        bool,
        Result<(&'static str, Decode), &'static str>,
    );
    let table: &[Row] = &[
        (
            O,
            Chat,
            false,
            Ok((
                "/chat/completions",
                Decode::OpenAi(openai::Decode::Chat { strip_usage: false }),
            )),
        ),
        (
            O,
            Chat,
            true,
            Ok((
                "/chat/completions",
                Decode::OpenAi(openai::Decode::Chat { strip_usage: true }),
            )),
        ),
        (
            O,
            Responses,
            false,
            Ok(("/responses", Decode::OpenAi(openai::Decode::Responses))),
        ),
        (
            O,
            Embeddings,
            false,
            Ok(("/embeddings", Decode::OpenAi(openai::Decode::Embeddings))),
        ),
        (
            O,
            Messages,
            true,
            Ok((
                "/chat/completions",
                Decode::OpenAi(openai::Decode::ToAnthropic),
            )),
        ),
        (O, CountTokens, false, Err("local")),
        (
            Z,
            Chat,
            false,
            Ok((
                "/deployments/m/chat/completions?api-version=2024-10-21",
                Decode::OpenAi(openai::Decode::Chat { strip_usage: false }),
            )),
        ),
        (
            Z,
            Responses,
            false,
            Ok((
                "/responses?api-version=2024-10-21",
                Decode::OpenAi(openai::Decode::Responses),
            )),
        ),
        (
            A,
            Chat,
            false,
            Ok((
                "/v1/messages",
                Decode::Anthropic(anthropic::Decode::ToOpenAi {
                    include_usage: false,
                }),
            )),
        ),
        (
            A,
            Messages,
            true,
            Ok(("/v1/messages", Decode::Anthropic(anthropic::Decode::Pass))),
        ),
        (
            A,
            CountTokens,
            false,
            Ok((
                "/v1/messages/count_tokens",
                Decode::Anthropic(anthropic::Decode::Pass),
            )),
        ),
        (
            A,
            Responses,
            false,
            Err(
                "the Responses API (/v1/responses) is not available on provider `p` (kind anthropic)",
            ),
        ),
        (
            A,
            Embeddings,
            false,
            Err("embeddings (/v1/embeddings) is not available on provider `p` (kind anthropic)"),
        ),
        (
            G,
            Chat,
            false,
            Ok((
                "/models/m:generateContent",
                Decode::Gemini(gemini::Decode::ToOpenAi {
                    include_usage: false,
                }),
            )),
        ),
        (
            G,
            Chat,
            true,
            Ok((
                "/models/m:streamGenerateContent?alt=sse",
                Decode::Gemini(gemini::Decode::ToOpenAi {
                    include_usage: false,
                }),
            )),
        ),
        (
            G,
            Messages,
            false,
            Ok((
                "/models/m:generateContent",
                Decode::Gemini(gemini::Decode::ToAnthropic),
            )),
        ),
        (
            G,
            CountTokens,
            false,
            Ok((
                "/models/m:countTokens",
                Decode::Gemini(gemini::Decode::CountToAnthropic),
            )),
        ),
        (
            G,
            Embeddings,
            false,
            Err("embeddings (/v1/embeddings) is not available on provider `p` (kind gemini)"),
        ),
    ];
    for (kind, api, stream, expected) in table {
        let mut request = inbound(*api, *stream);
        let mut headers = HeaderMap::new();
        let got = prepare(
            kind.protocol(),
            &endpoint(*kind),
            &mut request,
            "m",
            &mut headers,
        );
        let at = format!("{kind:?} {api:?} stream={stream}");
        match (got, expected) {
            (Ok(Plan::Call { url, decode, body }), Ok((path, want))) => {
                assert_eq!(url.to_string(), format!("{base}{path}"), "{at}");
                assert_eq!(decode, *want, "{at}");
                let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
                assert!(body.is_object(), "{at}");
            }
            (Ok(Plan::Local(body)), Err("local")) => {
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
                assert!(v["input_tokens"].as_u64().unwrap() >= 1, "{at}: {v}");
            }
            (Err(e), Err(message)) => {
                assert!(e.message.starts_with(message), "{at}: {}", e.message)
            }
            (got, _) => panic!("{at}: {got:?}"),
        }
        let anthropic_version = headers.get("anthropic-version").is_some();
        assert_eq!(
            anthropic_version,
            kind.protocol() == Protocol::Anthropic,
            "{at}: anthropic-version only to Anthropic"
        );
    }
}

#[test]
fn each_protocol_sends_its_key_in_its_own_header_marked_sensitive() {
    for (protocol, name, value) in [
        (Protocol::OpenAi, "authorization", "Bearer sk-1"),
        (Protocol::Azure, "api-key", "sk-1"),
        (Protocol::Anthropic, "x-api-key", "sk-1"),
        (Protocol::Gemini, "x-goog-api-key", "sk-1"),
    ] {
        let (header, v) = credential_header(protocol, "sk-1").unwrap();
        assert_eq!(header.as_str(), name, "{protocol:?}");
        assert_eq!(v.to_str().unwrap(), value, "{protocol:?}");
        assert!(v.is_sensitive(), "{protocol:?}");
        assert!(credential_header(protocol, "sk-1\r\nx: y").is_err());
    }
}

#[test]
fn each_protocol_reads_its_own_error_bodies_and_falls_back_to_the_text() {
    let openai = br#"{"error":{"message":"bad model","type":"invalid_request_error"}}"#;
    let anthropic = br#"{"type":"error","error":{"type":"overloaded_error","message":"busy"}}"#;
    let gemini = br#"{"error":{"code":400,"message":"no such model","status":"NOT_FOUND"}}"#;
    assert_eq!(error_message(Protocol::OpenAi, openai), "bad model");
    assert_eq!(error_message(Protocol::Azure, openai), "bad model");
    assert_eq!(
        error_message(Protocol::Anthropic, anthropic),
        "overloaded_error: busy"
    );
    assert_eq!(
        error_message(Protocol::Gemini, gemini),
        "NOT_FOUND: no such model"
    );
    assert_eq!(
        error_message(Protocol::Anthropic, b" 502 Bad Gateway \n"),
        "502 Bad Gateway"
    );
    assert_eq!(error_message(Protocol::Gemini, b"  \n"), "(empty body)");
    let long = "x".repeat(1000);
    assert_eq!(error_message(Protocol::OpenAi, long.as_bytes()).len(), 300);
    assert_eq!(error_flavor(Protocol::OpenAi), Some(Flavor::OpenAi));
    assert_eq!(error_flavor(Protocol::Azure), Some(Flavor::OpenAi));
    assert_eq!(error_flavor(Protocol::Anthropic), Some(Flavor::Anthropic));
    assert_eq!(error_flavor(Protocol::Gemini), None);
}

fn factory() -> ChunkFactory {
    ChunkFactory {
        id: "chatcmpl-1".into(),
        model: "m".into(),
        created: 1,
    }
}

/// Feeds a provider stream; returns the client's bytes and whether it may end.
fn run(translator: &mut StreamTranslator, stream: &str) -> Result<(String, bool), StreamError> {
    let mut decoder = SseDecoder::new();
    decoder.push(stream.as_bytes()).unwrap();
    let mut out = BytesMut::new();
    while let Some(event) = decoder.next_event() {
        translator.on_event(event, &mut out)?;
        if translator.is_done() {
            translator.finish(&mut out);
            return Ok((String::from_utf8(out.to_vec()).unwrap(), true));
        }
    }
    let may_end = translator.may_end();
    if may_end {
        translator.finish(&mut out);
    }
    Ok((String::from_utf8(out.to_vec()).unwrap(), may_end))
}

#[test]
fn no_stream_may_end_before_its_terminal_event() {
    for decode in Decode::every() {
        let translator = decode.stream(factory());
        assert!(
            !translator.may_end(),
            "{decode:?}: an empty stream is truncated"
        );
        assert!(!translator.is_done(), "{decode:?}");
        assert_eq!(translator.usage(), None, "{decode:?}");
    }
}

#[test]
fn streams_end_on_their_protocols_terminal_event_and_count_usage() {
    let openai = "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\n\
                  data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2,\"total_tokens\":5}}\n\n\
                  data: [DONE]\n\n";
    let anthropic = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"m\",\"content\":[],\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}}\n\n\
                     event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n\
                     event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"hi\"}}\n\n\
                     event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":2}}\n\n\
                     event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
    let gemini = "data: {\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":[{\"text\":\"hi\"}]},\"finishReason\":\"STOP\"}],\"usageMetadata\":{\"promptTokenCount\":3,\"candidatesTokenCount\":2,\"totalTokenCount\":5}}\n\n";
    let cases = [
        (
            Decode::OpenAi(openai::Decode::Chat { strip_usage: true }),
            openai,
            "data: [DONE]",
        ),
        (
            Decode::OpenAi(openai::Decode::ToAnthropic),
            openai,
            "event: message_stop",
        ),
        (
            Decode::Anthropic(anthropic::Decode::Pass),
            anthropic,
            "event: message_stop",
        ),
        (
            Decode::Anthropic(anthropic::Decode::ToOpenAi {
                include_usage: true,
            }),
            anthropic,
            "data: [DONE]",
        ),
        (
            Decode::Gemini(gemini::Decode::ToOpenAi {
                include_usage: false,
            }),
            gemini,
            "data: [DONE]",
        ),
        (
            Decode::Gemini(gemini::Decode::ToAnthropic),
            gemini,
            "event: message_stop",
        ),
    ];
    for (decode, upstream, last) in cases {
        let mut translator = decode.stream(factory());
        let (client, ended) = run(&mut translator, upstream).unwrap();
        assert!(ended, "{decode:?}");
        assert!(
            client.trim_end().ends_with(last) || client.contains(last),
            "{decode:?}: {client}"
        );
        let usage = translator
            .usage()
            .unwrap_or_else(|| panic!("{decode:?}: no usage"));
        assert_eq!(
            (usage.prompt_tokens, usage.completion_tokens),
            (3, 2),
            "{decode:?}"
        );
        // The same stream cut before its end is truncated.
        let cut = &upstream[..upstream.len() / 2];
        let cut = &cut[..cut.rfind("\n\n").map_or(0, |i| i + 2)];
        let mut translator = decode.stream(factory());
        if let Ok((_, ended)) = run(&mut translator, cut) {
            assert!(!ended, "{decode:?}: a cut stream may not end");
        }
    }
}

#[test]
fn whole_bodies_read_back_in_the_clients_shape() {
    let meta = ResponseMeta {
        id: "chatcmpl-1".into(),
        created: 1,
        model: "m".into(),
    };
    let anthropic = Bytes::from_static(br#"{"id":"msg_1","type":"message","role":"assistant","model":"m","content":[{"type":"text","text":"hi"}],"stop_reason":"end_turn","usage":{"input_tokens":3,"output_tokens":2}}"#);
    let (body, usage) = Decode::Anthropic(anthropic::Decode::ToOpenAi {
        include_usage: false,
    })
    .body(anthropic.clone(), &meta)
    .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "hi");
    assert_eq!(usage.unwrap().total_tokens, 5);
    let (body, usage) = Decode::Anthropic(anthropic::Decode::Pass)
        .body(anthropic.clone(), &meta)
        .unwrap();
    assert_eq!(body, anthropic, "a pass-through body is untouched");
    assert_eq!(usage.unwrap().prompt_tokens, 3);
    let err = Decode::Gemini(gemini::Decode::ToOpenAi {
        include_usage: false,
    })
    .body(Bytes::from_static(b"<html>"), &meta)
    .unwrap_err();
    assert!(err.message.contains("could not be read"), "{}", err.message);
}
