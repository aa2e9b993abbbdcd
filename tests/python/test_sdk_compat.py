"""Sluice through the official OpenAI and Anthropic Python SDKs.

The SDK clients run with ``max_retries=0`` so every retry seen here is the gateway's.
The mock provider answers deterministically (see tests/src/mock/reply.rs):
``Hello from mock <model>! You said: <last user text>``; with tools it calls the first
tool with ``{"query": <last user text>}``; after a tool result it says ``Tool said: <r>``.
"""

from __future__ import annotations

import json
import time

import anthropic
import httpx
import openai
import pytest

from conftest import CLIENT_KEY, MOCK_KEY

# model string at the gateway -> model name the provider sees (and echoes back)
OA = "oa/gpt-4o-mini"
AN = "an/claude-haiku-4-5"
GE = "ge/gemini-2.5-flash"
UPSTREAM = {OA: "gpt-4o-mini", AN: "claude-haiku-4-5", GE: "gemini-2.5-flash"}
PROVIDER = {OA: "oa", AN: "an", GE: "ge"}
# path the mock sees for a buffered call to each provider
UPSTREAM_PATH = {
    OA: "/v1/chat/completions",
    AN: "/v1/messages",
    GE: "/v1beta/models/gemini-2.5-flash:generateContent",
}
ALL_MODELS = [OA, AN, GE]


def hello(model: str, text: str) -> str:
    return f"Hello from mock {UPSTREAM[model]}! You said: {text}"


OPENAI_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "lookup",
            "description": "Look something up.",
            "parameters": {
                "type": "object",
                "properties": {"query": {"type": "string"}},
                "required": ["query"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "unused",
            "description": "Never called by the mock (it calls the first tool).",
            "parameters": {"type": "object", "properties": {}},
        },
    },
]

ANTHROPIC_TOOLS = [
    {
        "name": "lookup",
        "description": "Look something up.",
        "input_schema": {
            "type": "object",
            "properties": {"query": {"type": "string"}},
            "required": ["query"],
        },
    },
    {
        "name": "unused",
        "description": "Never called by the mock (it calls the first tool).",
        "input_schema": {"type": "object", "properties": {}},
    },
]


def assert_no_client_key(recorded: list[dict]) -> None:
    """The client's key must never reach the provider; the gateway's key must."""
    assert recorded, "the mock recorded no request"
    for req in recorded:
        headers = json.dumps(req["headers"])
        assert CLIENT_KEY not in headers, f"client key leaked upstream: {req['headers']}"
        assert CLIENT_KEY not in req["query"], f"client key leaked upstream: {req['query']}"


def provider_key(req: dict) -> str | None:
    headers = req["headers"]
    if "x-api-key" in headers:
        return headers["x-api-key"]
    if "x-goog-api-key" in headers:
        return headers["x-goog-api-key"]
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:]
    for pair in req["query"].split("&"):
        if pair.startswith("key="):
            return pair[4:]
    return None


def last_request(mock, path: str) -> dict:
    recorded = mock.requests(path)
    assert recorded, f"the mock got no request on {path}"
    return recorded[-1]


def function_responses(req: dict) -> list[dict]:
    """The Gemini functionResponse parts of a recorded generateContent request."""
    return [
        part["functionResponse"]
        for content in req["body"]["contents"]
        for part in content.get("parts", [])
        if "functionResponse" in part
    ]


def expected_tool_reply(model: str, mock, result: str) -> str:
    """What the mock answers after a tool result.

    OpenAI and Anthropic carry the result as text. Gemini's functionResponse.response
    must be an object, so the gateway wraps the text; the mock echoes that object as
    compact JSON. Check the wrapping carries the result and names the called function.
    """
    if model != GE:
        return f"Tool said: {result}"
    req = last_request(mock, UPSTREAM_PATH[GE])
    [response] = function_responses(req)
    assert response["name"] == "lookup"
    assert isinstance(response["response"], dict)
    assert result in response["response"].values()
    return "Tool said: " + json.dumps(response["response"], separators=(",", ":"), sort_keys=True)


# ---------------------------------------------------------------------------
# 1. Chat completions, buffered and streamed


@pytest.mark.parametrize("model", ALL_MODELS)
def test_chat_non_stream(oai: openai.OpenAI, model: str) -> None:
    raw = oai.chat.completions.with_raw_response.create(
        model=model,
        messages=[
            {"role": "user", "content": "first question"},
            {"role": "assistant", "content": "first answer"},
            {"role": "user", "content": "What is Sluice?"},
        ],
    )
    assert raw.headers["x-sluice-provider"] == PROVIDER[model]
    assert raw.headers["x-sluice-model"] == UPSTREAM[model]
    completion = raw.parse()
    assert completion.object == "chat.completion"
    assert len(completion.choices) == 1
    choice = completion.choices[0]
    assert choice.index == 0
    assert choice.finish_reason == "stop"
    assert choice.message.role == "assistant"
    assert choice.message.content == hello(model, "What is Sluice?")
    assert not choice.message.tool_calls
    assert completion.usage is not None
    assert completion.usage.prompt_tokens > 0
    # the mock bills one output token per word
    assert completion.usage.completion_tokens == len(choice.message.content.split())
    assert (
        completion.usage.total_tokens
        == completion.usage.prompt_tokens + completion.usage.completion_tokens
    )


@pytest.mark.parametrize("model", ALL_MODELS)
def test_chat_stream_with_usage(oai: openai.OpenAI, model: str) -> None:
    stream = oai.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "stream me a reply"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks, "no chunks"
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1, "all chunks of one completion share an id"
    text = "".join(
        c.choices[0].delta.content or "" for c in chunks if c.choices
    )
    assert text == hello(model, "stream me a reply")
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == ["stop"]
    # exactly one usage chunk, the last, with no choices
    usage_chunks = [c for c in chunks if c.usage is not None]
    assert len(usage_chunks) == 1, [c.usage for c in chunks]
    last = chunks[-1]
    assert last is usage_chunks[0]
    assert last.choices == []
    assert last.usage.prompt_tokens > 0
    assert last.usage.completion_tokens == len(text.split())
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens


@pytest.mark.parametrize("model", ALL_MODELS)
def test_chat_stream_without_usage(oai: openai.OpenAI, model: str) -> None:
    stream = oai.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "no usage please"}],
        stream=True,
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == hello(model, "no usage please")
    assert [c.usage for c in chunks if c.usage is not None] == []
    assert all(c.choices for c in chunks), "a chunk without choices was sent"


def test_chat_default_alias_routes_to_first_target(oai: openai.OpenAI) -> None:
    raw = oai.chat.completions.with_raw_response.create(
        model="default", messages=[{"role": "user", "content": "alias"}]
    )
    assert raw.headers["x-sluice-provider"] == "oa"
    assert raw.parse().choices[0].message.content == hello(OA, "alias")


# ---------------------------------------------------------------------------
# 2. Tool calling through the OpenAI SDK


@pytest.mark.parametrize("model", ALL_MODELS)
def test_chat_tool_call_round_trip(oai: openai.OpenAI, mock, model: str) -> None:
    messages: list[dict] = [{"role": "user", "content": "weather in Paris"}]
    first = oai.chat.completions.create(model=model, messages=messages, tools=OPENAI_TOOLS)
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls and len(choice.message.tool_calls) == 1
    call = choice.message.tool_calls[0]
    assert call.type == "function"
    assert call.id, "tool call has no id"
    assert call.function.name == "lookup"
    assert json.loads(call.function.arguments) == {"query": "weather in Paris"}

    messages.append(choice.message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": call.id, "content": "sunny, 21C"})
    second = oai.chat.completions.create(model=model, messages=messages, tools=OPENAI_TOOLS)
    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.content == expected_tool_reply(model, mock, "sunny, 21C")
    assert not second.choices[0].message.tool_calls


@pytest.mark.parametrize("model", ALL_MODELS)
def test_chat_tool_call_stream(oai: openai.OpenAI, model: str) -> None:
    stream = oai.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "streamed tool"}],
        tools=OPENAI_TOOLS,
        stream=True,
    )
    calls: dict[int, dict] = {}
    finish = []
    for chunk in stream:
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        for tc in delta.tool_calls or []:
            slot = calls.setdefault(tc.index, {"id": None, "name": "", "arguments": ""})
            if tc.id:
                slot["id"] = tc.id
            if tc.function and tc.function.name:
                slot["name"] += tc.function.name
            if tc.function and tc.function.arguments:
                slot["arguments"] += tc.function.arguments
        if chunk.choices[0].finish_reason:
            finish.append(chunk.choices[0].finish_reason)
    assert finish == ["tool_calls"]
    assert list(calls) == [0]
    assert calls[0]["id"]
    assert calls[0]["name"] == "lookup"
    assert json.loads(calls[0]["arguments"]) == {"query": "streamed tool"}


# ---------------------------------------------------------------------------
# 3. Responses API


def test_responses_non_stream(oai: openai.OpenAI) -> None:
    raw = oai.responses.with_raw_response.create(model=OA, input="respond please")
    assert raw.headers["x-sluice-provider"] == "oa"
    response = raw.parse()
    assert response.object == "response"
    assert response.status == "completed"
    assert response.output_text == hello(OA, "respond please")
    assert response.usage is not None
    assert response.usage.input_tokens > 0
    assert response.usage.output_tokens == len(response.output_text.split())


def test_responses_stream(oai: openai.OpenAI) -> None:
    stream = oai.responses.create(model=OA, input="stream a response", stream=True)
    events = list(stream)
    types = [e.type for e in events]
    assert types[0] == "response.created"
    assert types[-1] == "response.completed"
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert len(deltas) > 1, "expected the text in several deltas"
    assert "".join(deltas) == hello(OA, "stream a response")
    completed = events[-1].response
    assert completed.status == "completed"
    assert completed.output_text == hello(OA, "stream a response")
    assert completed.usage is not None
    assert completed.usage.input_tokens > 0
    assert completed.usage.output_tokens > 0


# ---------------------------------------------------------------------------
# 4. Embeddings


def test_embeddings_base64_default(oai: openai.OpenAI) -> None:
    result = oai.embeddings.create(
        model="oa/text-embedding-3-small", input=["alpha", "beta gamma"]
    )
    assert result.object == "list"
    assert [d.index for d in result.data] == [0, 1]
    for item in result.data:
        assert isinstance(item.embedding, list)
        assert len(item.embedding) == 8
        assert all(isinstance(v, float) and -1.0 <= v <= 1.0 for v in item.embedding)
    assert result.data[0].embedding != result.data[1].embedding
    assert result.usage.prompt_tokens > 0
    assert result.usage.total_tokens == result.usage.prompt_tokens

    # the same text in float format gives the same vector (the SDK decoded base64 right)
    floats = oai.embeddings.create(
        model="oa/text-embedding-3-small", input="alpha", encoding_format="float"
    )
    assert floats.data[0].embedding == pytest.approx(result.data[0].embedding, abs=1e-6)


def test_embeddings_request_reaches_provider_as_base64(fresh_oai, fresh_mock) -> None:
    fresh_oai.embeddings.create(model="oa/text-embedding-3-small", input="delta")
    [req] = fresh_mock.requests("/v1/embeddings")
    assert req["body"]["encoding_format"] == "base64"
    assert req["body"]["model"] == "text-embedding-3-small"
    assert req["body"]["input"] == "delta"
    assert provider_key(req) == MOCK_KEY
    assert_no_client_key([req])


# ---------------------------------------------------------------------------
# 5. Models


def test_models_list(oai: openai.OpenAI) -> None:
    ids = [m.id for m in oai.models.list()]
    assert "default" in ids
    assert OA in ids
    assert AN in ids
    assert GE in ids
    assert len(ids) == len(set(ids)), f"duplicate model ids: {ids}"


# ---------------------------------------------------------------------------
# 6. Anthropic SDK messages, pass-through and translated


@pytest.mark.parametrize("model", ALL_MODELS)
def test_anthropic_messages_create(ant: anthropic.Anthropic, model: str) -> None:
    raw = ant.messages.with_raw_response.create(
        model=model,
        max_tokens=256,
        system="Be brief.",
        messages=[
            {"role": "user", "content": "earlier"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": [{"type": "text", "text": "Anthropic hello"}]},
        ],
    )
    assert raw.headers["x-sluice-provider"] == PROVIDER[model]
    message = raw.parse()
    assert message.type == "message"
    assert message.role == "assistant"
    assert message.stop_reason == "end_turn"
    assert len(message.content) == 1
    block = message.content[0]
    assert block.type == "text"
    assert block.text == hello(model, "Anthropic hello") + " [system: Be brief.]"
    assert message.usage.input_tokens > 0
    assert message.usage.output_tokens == len(block.text.split())


@pytest.mark.parametrize("model", ALL_MODELS)
def test_anthropic_messages_stream(ant: anthropic.Anthropic, model: str) -> None:
    with ant.messages.stream(
        model=model,
        max_tokens=256,
        messages=[{"role": "user", "content": "stream from anthropic sdk"}],
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    expected = hello(model, "stream from anthropic sdk")
    assert text == expected
    assert final.stop_reason == "end_turn"
    assert [b.type for b in final.content] == ["text"]
    assert final.content[0].text == expected
    assert final.usage.input_tokens > 0
    assert final.usage.output_tokens > 0


def test_anthropic_passthrough_headers(fresh_ant: anthropic.Anthropic, fresh_mock) -> None:
    raw = fresh_ant.messages.with_raw_response.create(
        model=AN,
        max_tokens=64,
        messages=[{"role": "user", "content": "check my headers"}],
        extra_body={"metadata": {"user_id": "u-1"}},
        extra_headers={"anthropic-beta": "test-beta-2025-01-01"},
    )
    assert raw.parse().content[0].text == hello(AN, "check my headers")
    sent_version = raw.http_request.headers["anthropic-version"]
    assert sent_version, "the SDK sent no anthropic-version"
    recorded = fresh_mock.requests()
    assert [r["path"] for r in recorded] == ["/v1/messages"]
    req = recorded[0]
    # the client's version and beta flags are forwarded as sent
    assert req["headers"].get("anthropic-version") == sent_version
    assert req["headers"].get("anthropic-beta") == "test-beta-2025-01-01"
    assert req["headers"].get("x-api-key") == MOCK_KEY
    assert "authorization" not in req["headers"]
    assert_no_client_key(recorded)
    assert req["body"]["model"] == "claude-haiku-4-5"
    assert req["body"]["max_tokens"] == 64
    assert req["body"]["metadata"] == {"user_id": "u-1"}
    assert req["body"]["messages"][-1]["role"] == "user"


@pytest.mark.parametrize("model", [OA, GE])
def test_anthropic_translated_uses_provider_key(
    fresh_ant: anthropic.Anthropic, fresh_mock, model: str
) -> None:
    message = fresh_ant.messages.create(
        model=model, max_tokens=64, messages=[{"role": "user", "content": "translate"}]
    )
    assert message.content[0].text == hello(model, "translate")
    recorded = fresh_mock.requests()
    assert [r["path"] for r in recorded] == [UPSTREAM_PATH[model]]
    assert provider_key(recorded[0]) == MOCK_KEY
    assert_no_client_key(recorded)
    assert "anthropic-version" not in recorded[0]["headers"]


# ---------------------------------------------------------------------------
# 7. Anthropic SDK tool use


@pytest.mark.parametrize("model", ALL_MODELS)
def test_anthropic_tool_use_round_trip(ant: anthropic.Anthropic, mock, model: str) -> None:
    messages: list[dict] = [{"role": "user", "content": "find the docs"}]
    first = ant.messages.create(
        model=model, max_tokens=256, tools=ANTHROPIC_TOOLS, messages=messages
    )
    assert first.stop_reason == "tool_use"
    tool_uses = [b for b in first.content if b.type == "tool_use"]
    assert len(tool_uses) == 1
    use = tool_uses[0]
    assert use.id
    assert use.name == "lookup"
    assert use.input == {"query": "find the docs"}

    messages.append({"role": "assistant", "content": [b.model_dump() for b in first.content]})
    messages.append(
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": use.id, "content": "docs are at /docs"}
            ],
        }
    )
    second = ant.messages.create(
        model=model, max_tokens=256, tools=ANTHROPIC_TOOLS, messages=messages
    )
    assert second.stop_reason == "end_turn"
    assert [b.type for b in second.content] == ["text"]
    assert second.content[0].text == expected_tool_reply(model, mock, "docs are at /docs")


@pytest.mark.parametrize("model", ALL_MODELS)
def test_anthropic_tool_use_stream(ant: anthropic.Anthropic, model: str) -> None:
    with ant.messages.stream(
        model=model,
        max_tokens=256,
        tools=ANTHROPIC_TOOLS,
        messages=[{"role": "user", "content": "stream a tool call"}],
    ) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    uses = [b for b in final.content if b.type == "tool_use"]
    assert len(uses) == 1
    assert uses[0].name == "lookup"
    assert uses[0].input == {"query": "stream a tool call"}


# ---------------------------------------------------------------------------
# 8. count_tokens


def test_anthropic_count_tokens(ant: anthropic.Anthropic) -> None:
    messages = [{"role": "user", "content": "how many tokens is this sentence?"}]
    counted = ant.messages.count_tokens(model=AN, messages=messages)
    assert counted.input_tokens > 0
    created = ant.messages.create(model=AN, max_tokens=16, messages=messages)
    assert counted.input_tokens == created.usage.input_tokens


# ---------------------------------------------------------------------------
# 9. Error shapes


# A bare model name is not unknown: it goes to the surface's native provider (see
# gateway/src/routing/mod.rs), tested below. Unknown means an unconfigured provider.
@pytest.mark.parametrize("model", ["nosuch/provider-model", "oa-typo/gpt-4o-mini"])
def test_openai_unknown_model(oai: openai.OpenAI, model: str) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        oai.chat.completions.create(model=model, messages=[{"role": "user", "content": "x"}])
    err = info.value
    assert err.status_code == 404
    assert model in err.message
    body = err.response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) >= {"message", "type", "param", "code"}
    assert model in body["error"]["message"]
    assert isinstance(body["error"]["type"], str) and body["error"]["type"]


def test_openai_unknown_model_stream(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        oai.chat.completions.create(
            model="nosuch/model-x",
            messages=[{"role": "user", "content": "x"}],
            stream=True,
        )
    assert "nosuch/model-x" in info.value.message


@pytest.mark.parametrize("model", ["nosuch/provider-model", "an-typo/claude-haiku-4-5"])
def test_anthropic_unknown_model(ant: anthropic.Anthropic, model: str) -> None:
    with pytest.raises(anthropic.NotFoundError) as info:
        ant.messages.create(
            model=model, max_tokens=16, messages=[{"role": "user", "content": "x"}]
        )
    err = info.value
    assert err.status_code == 404
    assert model in err.message
    body = err.response.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == "not_found_error"
    assert model in body["error"]["message"]


@pytest.mark.parametrize(
    ("model", "provider", "upstream"),
    [
        ("gpt-4o-mini", "oa", "gpt-4o-mini"),  # listed in oa's models
        ("gemini-2.5-flash", "ge", "gemini-2.5-flash"),  # listed in ge's models
        ("some-unlisted-model", "oa", "some-unlisted-model"),  # native provider of /v1
    ],
)
def test_openai_bare_model_names(oai: openai.OpenAI, model: str, provider: str, upstream: str) -> None:
    raw = oai.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": "bare"}]
    )
    assert raw.headers["x-sluice-provider"] == provider
    assert raw.parse().choices[0].message.content == f"Hello from mock {upstream}! You said: bare"


@pytest.mark.parametrize(
    ("model", "provider"),
    [("claude-haiku-4-5", "an"), ("claude-unlisted-9", "an"), ("gpt-4o-mini", "oa")],
)
def test_anthropic_bare_model_names(ant: anthropic.Anthropic, model: str, provider: str) -> None:
    raw = ant.messages.with_raw_response.create(
        model=model, max_tokens=32, messages=[{"role": "user", "content": "bare"}]
    )
    assert raw.headers["x-sluice-provider"] == provider
    assert raw.parse().content[0].text == f"Hello from mock {model}! You said: bare"


def test_anthropic_missing_max_tokens_is_400(gateway) -> None:
    r = httpx.post(
        gateway.url + "/anthropic/v1/messages",
        headers={"x-api-key": CLIENT_KEY, "anthropic-version": "2023-06-01"},
        json={"model": AN, "messages": [{"role": "user", "content": "hi"}]},
        timeout=10,
    )
    assert r.status_code == 400
    body = r.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in body["error"]["message"]


def test_anthropic_invalid_json_is_400(gateway) -> None:
    r = httpx.post(
        gateway.url + "/anthropic/v1/messages",
        headers={"content-type": "application/json", "anthropic-version": "2023-06-01"},
        content=b"{not json",
        timeout=10,
    )
    assert r.status_code == 400
    body = r.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"


def test_openai_bad_request_shape(oai: openai.OpenAI, gateway) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        oai.chat.completions.create(model=OA, messages=[])
    body = info.value.response.json()
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["param"] == "messages"
    assert set(body["error"]) >= {"message", "type", "param", "code"}

    r = httpx.post(
        gateway.url + "/v1/chat/completions",
        headers={"content-type": "application/json"},
        content=b"{not json",
        timeout=10,
    )
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "invalid_request_error"


# ---------------------------------------------------------------------------
# 10. Retries and fallbacks, seen through the SDK


def test_fallback_after_three_503s(fresh_oai: openai.OpenAI, fresh_mock) -> None:
    fresh_mock.push_faults(["status=503", "status=503", "status=503"])
    raw = fresh_oai.chat.completions.with_raw_response.create(
        model="default", messages=[{"role": "user", "content": "survive this"}]
    )
    assert raw.status_code == 200
    assert raw.headers["x-sluice-provider"] == "an"
    assert raw.headers["x-sluice-model"] == "claude-haiku-4-5"
    completion = raw.parse()
    assert completion.choices[0].message.content == hello(AN, "survive this")
    paths = [r["path"] for r in fresh_mock.requests()]
    assert paths == ["/v1/chat/completions"] * 3 + ["/v1/messages"]


def test_fallback_after_three_503s_stream(fresh_oai: openai.OpenAI, fresh_mock) -> None:
    fresh_mock.push_faults(["status=503", "status=503", "status=503"])
    raw = fresh_oai.chat.completions.with_raw_response.create(
        model="default",
        messages=[{"role": "user", "content": "stream survives"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    assert raw.headers["x-sluice-provider"] == "an"
    chunks = list(raw.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == hello(AN, "stream survives")
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    paths = [r["path"] for r in fresh_mock.requests()]
    assert paths == ["/v1/chat/completions"] * 3 + ["/v1/messages"]


def test_anthropic_sdk_fallback_after_three_503s(fresh_ant: anthropic.Anthropic, fresh_mock) -> None:
    fresh_mock.push_faults(["status=503", "status=503", "status=503"])
    raw = fresh_ant.messages.with_raw_response.create(
        model="default", max_tokens=64, messages=[{"role": "user", "content": "fall back"}]
    )
    assert raw.headers["x-sluice-provider"] == "an"
    assert raw.parse().content[0].text == hello(AN, "fall back")
    paths = [r["path"] for r in fresh_mock.requests()]
    assert paths == ["/v1/chat/completions"] * 3 + ["/v1/messages"]


def test_retry_after_429_same_provider(fresh_oai: openai.OpenAI, fresh_mock) -> None:
    fresh_mock.push_faults(["status=429;retry_after=1"])
    started = time.monotonic()
    raw = fresh_oai.chat.completions.with_raw_response.create(
        model="default", messages=[{"role": "user", "content": "be patient"}]
    )
    elapsed = time.monotonic() - started
    assert raw.headers["x-sluice-provider"] == "oa"
    assert raw.parse().choices[0].message.content == hello(OA, "be patient")
    paths = [r["path"] for r in fresh_mock.requests()]
    assert paths == ["/v1/chat/completions"] * 2
    # backoff_max_ms is 50: only honouring Retry-After: 1 makes the retry wait ~1 s
    assert elapsed >= 0.9, f"retry came after {elapsed:.3f}s, Retry-After: 1 was not honoured"
    assert elapsed < 5


def test_retry_after_429_direct_model(fresh_oai: openai.OpenAI, fresh_mock) -> None:
    """No alias, no fallback: after the 429 the only way to succeed is a retry on oa."""
    fresh_mock.push_faults(["status=429;retry_after=1"])
    started = time.monotonic()
    raw = fresh_oai.chat.completions.with_raw_response.create(
        model=OA, messages=[{"role": "user", "content": "retry me"}]
    )
    elapsed = time.monotonic() - started
    assert raw.headers["x-sluice-provider"] == "oa"
    assert raw.parse().choices[0].message.content == hello(OA, "retry me")
    assert [r["path"] for r in fresh_mock.requests()] == ["/v1/chat/completions"] * 2
    assert 0.9 <= elapsed < 5


def test_non_retryable_400_is_not_retried(fresh_oai: openai.OpenAI, fresh_mock) -> None:
    fresh_mock.push_faults(["status=400"])
    with pytest.raises(openai.BadRequestError) as info:
        fresh_oai.chat.completions.create(
            model=OA, messages=[{"role": "user", "content": "bad"}]
        )
    assert "injected by mock" in info.value.message
    assert [r["path"] for r in fresh_mock.requests()] == ["/v1/chat/completions"]


# ---------------------------------------------------------------------------
# 11. Unknown fields pass through


def test_extra_body_passes_through(fresh_oai: openai.OpenAI, fresh_mock) -> None:
    completion = fresh_oai.chat.completions.create(
        model=OA,
        messages=[{"role": "user", "content": "extra"}],
        extra_body={"seed": 7, "x_custom": {"a": 1}},
    )
    assert completion.choices[0].message.content == hello(OA, "extra")
    [req] = fresh_mock.requests("/v1/chat/completions")
    body = req["body"]
    assert body["seed"] == 7
    assert body["x_custom"] == {"a": 1}
    assert body["model"] == "gpt-4o-mini"
    assert body["messages"] == [{"role": "user", "content": "extra"}]
    assert req["headers"]["authorization"] == f"Bearer {MOCK_KEY}"
    assert_no_client_key([req])
