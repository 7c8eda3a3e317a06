"""The request fields behave as OpenAI's API does (docs/openai-conformance.md): what OpenAI accepts is served, what it
refuses is a 400 in its error body naming the field, null is unset. One row a case, against the session server."""

from __future__ import annotations

import pytest

from probexit.server.protocol import (
    MAX_STOP_SEQUENCES,
    METADATA_KEY_LENGTH,
    METADATA_MAX_PAIRS,
    METADATA_VALUE_LENGTH,
    SERVICE_TIERS,
    USER_ID_LENGTH,
)
from probexit.server.protocol_responses import MAX_TOP_LOGPROBS, MIN_OUTPUT_TOKENS

CHAT, COMPLETIONS, RESPONSES = "/v1/chat/completions", "/v1/completions", "/v1/responses"
MESSAGES = [{"role": "user", "content": "What is 3 + 14 - 7?"}]


def chat(**fields) -> dict:
    return {"messages": MESSAGES, "max_tokens": 2, **fields}


def completion(**fields) -> dict:
    return {"prompt": "What is 2 + 2?", "max_tokens": 2, **fields}


def responses(**fields) -> dict:
    return {"input": "What is 2 + 2?", "max_output_tokens": MIN_OUTPUT_TOKENS, **fields}


def full_metadata() -> dict[str, str]:
    keys = [f"k{i}".ljust(METADATA_KEY_LENGTH, "x") for i in range(METADATA_MAX_PAIRS)]
    return {key: "v" * METADATA_VALUE_LENGTH for key in keys}


ACCEPTED = [
    pytest.param(CHAT, chat(stream=None), id="stream-null"),
    pytest.param(CHAT, chat(top_p=0), id="top-p-zero"),
    pytest.param(CHAT, chat(top_p=1, temperature=2), id="top-p-one-temperature-two"),
    pytest.param(CHAT, chat(metadata=full_metadata()), id="metadata-at-every-limit"),
    *[pytest.param(CHAT, chat(service_tier=tier), id=f"service-tier-{tier}") for tier in SERVICE_TIERS],
    pytest.param(CHAT, chat(stop=["a", "b", "c", "d"][:MAX_STOP_SEQUENCES]), id="four-stop-sequences"),
    pytest.param(CHAT, chat(stop="a long single stop sequence"), id="one-long-stop-string"),
    pytest.param(CHAT, chat(user="u" * USER_ID_LENGTH, safety_identifier="s" * USER_ID_LENGTH), id="user-ids"),
    pytest.param(CHAT, chat(presence_penalty=-2, frequency_penalty=2), id="penalties-at-the-edges"),
    pytest.param(CHAT, chat(logit_bias={"5": -100, "6": 100}), id="logit-bias-at-the-edges"),
    pytest.param(CHAT, chat(logprobs=True, top_logprobs=20), id="top-logprobs-20"),
    pytest.param(
        CHAT,
        chat(n=None, seed=None, temperature=None, tools=None, metadata=None, stream_options=None),
        id="nulls-are-unset",
    ),
    pytest.param(
        CHAT,
        chat(prompt_cache_key="k", prompt_cache_retention="24h", verbosity="low", store=False),
        id="hints-that-change-nothing",
    ),
    pytest.param(COMPLETIONS, completion(logprobs=5), id="completion-logprobs-5"),
    pytest.param(COMPLETIONS, completion(stream=None, top_p=0, echo=None, suffix=None), id="completion-nulls"),
    pytest.param(
        RESPONSES,
        responses(stream=None, temperature=None, tools=None, metadata=None, store=None, instructions=None),
        id="responses-nulls-are-unset",
    ),
    pytest.param(RESPONSES, responses(top_p=0, temperature=2), id="responses-top-p-zero-temperature-two"),
    pytest.param(RESPONSES, responses(metadata=full_metadata()), id="responses-metadata-at-every-limit"),
    *[pytest.param(RESPONSES, responses(service_tier=t), id=f"responses-service-tier-{t}") for t in SERVICE_TIERS],
    pytest.param(
        RESPONSES,
        responses(user="u" * USER_ID_LENGTH, safety_identifier="s" * USER_ID_LENGTH, top_logprobs=0),
        id="responses-user-ids-no-logprobs",
    ),
    pytest.param(
        RESPONSES,
        responses(store=True, truncation="auto", prompt_cache_key="k", text={"verbosity": "low"}),
        id="responses-hints-that-change-nothing",
    ),
]

REFUSED = [
    pytest.param(CHAT, chat(metadata={f"k{i}": "v" for i in range(METADATA_MAX_PAIRS + 1)}), "metadata", id="17-pairs"),
    pytest.param(CHAT, chat(metadata={"k" * (METADATA_KEY_LENGTH + 1): "v"}), "metadata", id="metadata-key-too-long"),
    pytest.param(CHAT, chat(metadata={"k": "v" * (METADATA_VALUE_LENGTH + 1)}), "metadata", id="metadata-value-long"),
    pytest.param(CHAT, chat(metadata={"k": 1}), "metadata.k", id="metadata-value-not-a-string"),
    pytest.param(CHAT, chat(service_tier="ultra"), "service_tier", id="unknown-service-tier"),
    pytest.param(CHAT, chat(stop=["a", "b", "c", "d", "e"]), "stop", id="five-stop-sequences"),
    pytest.param(CHAT, chat(top_p=-0.1), "top_p", id="top-p-negative"),
    pytest.param(CHAT, chat(top_p=1.01), "top_p", id="top-p-above-one"),
    pytest.param(CHAT, chat(temperature=2.01), "temperature", id="temperature-above-two"),
    pytest.param(CHAT, chat(n=0), "n", id="n-zero"),
    pytest.param(CHAT, chat(n=129), "n", id="n-above-128"),
    pytest.param(CHAT, chat(presence_penalty=2.5), "presence_penalty", id="presence-penalty"),
    pytest.param(CHAT, chat(frequency_penalty=-2.5), "frequency_penalty", id="frequency-penalty"),
    pytest.param(CHAT, chat(logit_bias={"5": 101}), "logit_bias", id="logit-bias-above-100"),
    pytest.param(CHAT, chat(logprobs=True, top_logprobs=21), "top_logprobs", id="top-logprobs-21"),
    pytest.param(CHAT, chat(user="u" * (USER_ID_LENGTH + 1)), "user", id="user-too-long"),
    pytest.param(CHAT, chat(prompt_cache_retention="forever"), "prompt_cache_retention", id="cache-retention"),
    pytest.param(CHAT, chat(verbosity="extreme"), "verbosity", id="verbosity"),
    pytest.param(CHAT, chat(web_search_options={}), "web_search_options", id="web-search-cannot-be-honoured"),
    pytest.param(CHAT, {"messages": None}, "messages", id="messages-null-is-missing"),
    pytest.param(CHAT, chat(stream_options={"include_usage": True}), "stream_options", id="stream-options-unstreamed"),
    pytest.param(
        COMPLETIONS, completion(stream=False, stream_options={}), "stream_options", id="completion-stream-options"
    ),
    pytest.param(COMPLETIONS, completion(logprobs=6), "logprobs", id="completion-logprobs-6"),
    pytest.param(COMPLETIONS, completion(best_of=129), "best_of", id="best-of-above-128"),
    pytest.param(COMPLETIONS, completion(stop=["a", "b", "c", "d", "e"]), "stop", id="completion-five-stops"),
    pytest.param(
        RESPONSES, responses(max_output_tokens=MIN_OUTPUT_TOKENS - 1), "max_output_tokens", id="responses-15-tokens"
    ),
    pytest.param(
        RESPONSES,
        responses(metadata={f"k{i}": "v" for i in range(METADATA_MAX_PAIRS + 1)}),
        "metadata",
        id="responses-17-pairs",
    ),
    pytest.param(
        RESPONSES, responses(metadata={"k": "v" * (METADATA_VALUE_LENGTH + 1)}), "metadata", id="responses-long-value"
    ),
    pytest.param(RESPONSES, responses(service_tier="ultra"), "service_tier", id="responses-unknown-service-tier"),
    pytest.param(RESPONSES, responses(temperature=2.01), "temperature", id="responses-temperature-above-two"),
    pytest.param(RESPONSES, responses(top_p=1.01), "top_p", id="responses-top-p-above-one"),
    pytest.param(
        RESPONSES, responses(top_logprobs=MAX_TOP_LOGPROBS + 1), "top_logprobs", id="responses-top-logprobs-21"
    ),
    pytest.param(RESPONSES, responses(top_logprobs=3), "top_logprobs", id="responses-logprobs-not-served"),
    pytest.param(RESPONSES, responses(max_tool_calls=0), "max_tool_calls", id="responses-max-tool-calls-zero"),
    pytest.param(RESPONSES, responses(max_tool_calls=2), "max_tool_calls", id="responses-max-tool-calls-not-served"),
    pytest.param(RESPONSES, responses(prompt={"id": "pmpt_1"}), "prompt", id="responses-stored-prompt"),
    pytest.param(RESPONSES, responses(user="u" * (USER_ID_LENGTH + 1)), "user", id="responses-user-too-long"),
    pytest.param(RESPONSES, responses(truncation="middle"), "truncation", id="responses-unknown-truncation"),
    pytest.param(RESPONSES, {"input": None}, "input", id="responses-input-null-is-missing"),
    pytest.param(RESPONSES, responses(stream_options={}), "stream_options", id="responses-stream-options-unstreamed"),
]


@pytest.mark.parametrize("path, body", ACCEPTED)
def test_what_openai_accepts_is_served(server, path, body):
    response = server.post(path, body)
    assert response.status_code == 200, response.text[:500]
    assert response.json()["output" if path == RESPONSES else "choices"]


@pytest.mark.parametrize("path, body, param", REFUSED)
def test_what_openai_refuses_is_a_400_naming_the_field(server, path, body, param):
    response = server.post(path, body)
    assert response.status_code == 400, response.text[:500]
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["type"] == "invalid_request_error"
    assert error["param"] == param and error["message"]


def test_top_p_zero_is_greedy(server):
    """The smallest nucleus holds the most likely token alone: the same text as temperature 0, whatever the seed."""
    greedy = server.post(CHAT, chat(temperature=0, max_tokens=12)).json()["choices"][0]["message"]
    for seed in (1, 2):
        nucleus = server.post(CHAT, chat(top_p=0, temperature=1.5, seed=seed, max_tokens=12)).json()
        assert nucleus["choices"][0]["message"] == greedy
