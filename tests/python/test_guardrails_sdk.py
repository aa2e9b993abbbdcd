"""Guardrails through the official OpenAI and Anthropic Python SDKs: what an application
actually sees when Sluice blocks a request, redacts an answer, or stops a stream.

The mock echoes the last user text (``Hello from mock <model>! You said: <text>``), one
SSE event per word, so an output-only rule sees the value the user sent, split across
events.
"""

from __future__ import annotations

import anthropic
import openai
import pytest

from conftest import CLIENT_KEY, MOCK_KEY, binary, gateway_config, start_mock, start_server

AWS_KEY = "AKIA4QWERTYUIOPASDFG"
CARD = "4539 1488 0343 6467"

GUARDRAILS = """
[guardrails.detectors.payment_card]
direction = "output"
[guardrails.detectors.in_aadhaar]
direction = "output"

[[guardrails.rules]]
id = "codename"
description = "an internal project code name"
keywords = ["blue falcon"]
action = "block"
direction = "output"
"""


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    mock = start_mock()
    config = tmp_path_factory.mktemp("guarded") / "sluice.toml"
    config.write_text(gateway_config(mock.url) + GUARDRAILS)
    gw = start_server(
        "gateway",
        [str(binary("sluice-gateway")), "serve", "--config", str(config)],
        env={"MOCK_KEY": MOCK_KEY},
    )
    yield gw
    gw.stop()
    mock.stop()


@pytest.fixture
def oai(guarded) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{guarded.url}/v1", api_key=CLIENT_KEY, max_retries=0)


@pytest.fixture
def ant(guarded) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=f"{guarded.url}/anthropic", api_key=CLIENT_KEY, max_retries=0
    )


def test_openai_blocked_request_is_a_bad_request_naming_the_rule(oai) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        oai.chat.completions.create(
            model="oa/gpt-4o-mini",
            messages=[{"role": "user", "content": f"use {AWS_KEY}"}],
        )
    assert info.value.code == "guardrail_blocked"
    assert "aws_access_key" in info.value.message
    assert AWS_KEY not in info.value.message


def test_anthropic_blocked_request_is_a_bad_request(ant) -> None:
    with pytest.raises(anthropic.BadRequestError) as info:
        ant.messages.create(
            model="an/claude-haiku-4-5",
            max_tokens=50,
            messages=[{"role": "user", "content": f"use {AWS_KEY}"}],
        )
    assert "aws_access_key" in str(info.value)


def test_openai_stream_redacts_a_value_split_across_events(oai) -> None:
    stream = oai.chat.completions.create(
        model="oa/gpt-4o-mini",
        messages=[{"role": "user", "content": f"charge {CARD} now"}],
        stream=True,
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "Hello from mock gpt-4o-mini! You said: charge [REDACTED:payment_card_1] now"


def test_anthropic_stream_redacts_a_value_split_across_events(ant) -> None:
    with ant.messages.stream(
        model="an/claude-haiku-4-5",
        max_tokens=50,
        messages=[{"role": "user", "content": f"charge {CARD} now"}],
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert "[REDACTED:payment_card_1]" in text
    assert "4539" not in text
    assert final.stop_reason == "end_turn"


def test_openai_blocked_answer_is_a_content_filter_finish(oai) -> None:
    completion = oai.chat.completions.create(
        model="oa/gpt-4o-mini",
        messages=[{"role": "user", "content": "news on blue falcon?"}],
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "content_filter"
    assert "codename" in choice.message.content
    assert "falcon" not in choice.message.content


def test_openai_stream_blocked_midway_raises_with_the_message(oai) -> None:
    stream = oai.chat.completions.create(
        model="oa/gpt-4o-mini",
        messages=[{"role": "user", "content": "tell me about blue falcon please"}],
        stream=True,
    )
    received = []
    with pytest.raises(openai.APIError) as info:
        for chunk in stream:
            if chunk.choices:
                received.append(chunk.choices[0].delta.content or "")
    assert "codename" in info.value.message
    assert "falcon" not in "".join(received)


def test_anthropic_stream_blocked_midway_raises_with_the_message(ant) -> None:
    received = []
    with pytest.raises(anthropic.APIError) as info:
        with ant.messages.stream(
            model="an/claude-haiku-4-5",
            max_tokens=50,
            messages=[{"role": "user", "content": "tell me about blue falcon please"}],
        ) as stream:
            for text in stream.text_stream:
                received.append(text)
    assert "codename" in str(info.value)
    assert "falcon" not in "".join(received)
