"""The reasoning API as clients speak it: `reasoning` beside `reasoning_content`, reasoning on input,
`reasoning_effort`, `thinking_token_budget`, why thinking ended, logprobs, and the fields clients send by default.

Against the session server (conftest.py): its probe fires at every boundary (default threshold 0.5) and has no
calibration table.
"""

from __future__ import annotations

import math

import openai
import pytest

from probexit.server.early_exit import EFFORTS
from probexit.server.protocol import REASONING_EFFORTS
from tests.server.test_server import MESSAGES, NEVER, chat

MODEL = "tinyworld-test"


def post_chat(server, **fields):
    return server.post("/v1/chat/completions", {"messages": MESSAGES, "max_tokens": 120, **fields})


def joined_stream(client, **kwargs) -> dict:
    parts = {"reasoning_content": "", "reasoning": "", "content": "", "logprobs": [], "chunks": []}
    for chunk in chat(client, stream=True, **kwargs):
        parts["chunks"].append(chunk)
        for choice in chunk.choices:
            delta = choice.delta.model_extra or {}
            parts["reasoning_content"] += delta.get("reasoning_content") or ""
            parts["reasoning"] += delta.get("reasoning") or ""
            parts["content"] += choice.delta.content or ""
            if choice.logprobs is not None:
                parts["logprobs"] += choice.logprobs.content
            if choice.finish_reason is not None:
                parts["early_exit"] = choice.early_exit
    return parts


# -- the thinking on output --------------------------------------------------------------------------------
def test_reasoning_and_reasoning_content_carry_the_same_text(client):
    response = chat(client, seed=21, max_tokens=400, extra_body=NEVER)
    message = response.choices[0].message
    assert message.reasoning_content and message.model_extra["reasoning"] == message.reasoning_content
    streamed = joined_stream(client, seed=21, max_tokens=400, extra_body=NEVER)
    assert streamed["reasoning"] == streamed["reasoning_content"] == message.reasoning_content
    assert streamed["content"] == message.content
    details = response.usage.completion_tokens_details
    assert details.reasoning_tokens == response.choices[0].early_exit["reasoning_tokens"]  # counted once
    assert details.reasoning_tokens < response.usage.completion_tokens


# -- the thinking on input ---------------------------------------------------------------------------------
def history(**assistant) -> list[dict]:
    return [
        {"role": "user", "content": "What is 1 + 2?"},
        {"role": "assistant", "content": "3", **assistant},
        {"role": "user", "content": "What is 3 + 14 - 7?"},
    ]


@pytest.mark.parametrize(
    "assistant",
    [
        pytest.param({"reasoning_content": "1 + 2 = 3."}, id="reasoning_content"),
        pytest.param({"reasoning": "1 + 2 = 3."}, id="reasoning"),
        pytest.param({"reasoning": "1 + 2 = 3.", "reasoning_content": "1 + 2 = 3."}, id="both-the-same"),
    ],
)
def test_assistant_turns_may_carry_their_thinking_in_either_field(server, assistant):
    response = server.post("/v1/chat/completions", {"messages": history(**assistant), "max_tokens": 8})
    assert response.status_code == 200, response.text


def test_the_prompt_renders_thinking_as_the_template_says(server):
    from transformers import AutoTokenizer

    from probexit.server.protocol import ChatCompletionRequest
    from probexit.server.serving_chat import render_prompt

    tokenizer = AutoTokenizer.from_pretrained(server.model_dir)
    with_reasoning = render_prompt(tokenizer, ChatCompletionRequest(messages=history(reasoning="1 + 2 = 3.")))
    without = render_prompt(tokenizer, ChatCompletionRequest(messages=history()))
    template_reads_it = "reasoning_content" in tokenizer.chat_template
    assert (with_reasoning != without) == template_reads_it


@pytest.mark.parametrize(
    "messages, param",
    [
        pytest.param(
            history(reasoning="a", reasoning_content="b"), "messages.1.reasoning", id="two-different-thoughts"
        ),
        pytest.param(
            [{"role": "user", "content": "hi", "reasoning": "x"}], "messages.0.reasoning", id="user-reasoning"
        ),
        pytest.param([{"role": "user", "content": "hi", "colour": "red"}], "messages.0.colour", id="unknown-field"),
        pytest.param([{"role": "wizard", "content": "hi"}], "messages.0.role", id="unknown-role"),
        pytest.param(
            [{"role": "user", "content": [{"type": "text", "text": "hi", "x": 1}]}],
            "messages.0.content",
            id="part-with-unknown-field",
        ),
        pytest.param(
            [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x"}}]}],
            "messages.0.content",
            id="image-part",
        ),
        pytest.param(
            [{"role": "user", "content": "hi"}, {"role": "tool", "content": "x"}],
            "messages.1.tool_call_id",
            id="tool-without-call-id",
        ),
    ],
)
def test_messages_are_checked_as_strictly_as_openai_does(server, messages, param):
    response = server.post("/v1/chat/completions", {"messages": messages, "max_tokens": 8})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"].startswith(param)


# -- reasoning_effort ------------------------------------------------------------------------------------------
def test_every_effort_is_mapped_and_an_unknown_one_is_a_400_naming_them(server):
    assert tuple(EFFORTS) == REASONING_EFFORTS
    response = post_chat(server, reasoning_effort="extreme")
    assert response.status_code == 400 and response.json()["error"]["param"] == "reasoning_effort"
    assert all(name in response.json()["error"]["message"] for name in REASONING_EFFORTS)


def test_effort_none_turns_thinking_off_through_the_templates_switch(client):
    choice = chat(client, seed=22, extra_body={"reasoning_effort": "none"}).choices[0]  # the tiny template has one
    assert choice.early_exit["reasoning_tokens"] == 0 and not choice.message.reasoning_content


@pytest.mark.parametrize("effort", ["xhigh", "max"])
def test_the_highest_efforts_think_to_the_end(client, effort):
    choice = chat(client, seed=23, max_tokens=400, extra_body={"reasoning_effort": effort}).choices[0]
    assert choice.early_exit["triggered"] is False and choice.early_exit["reason"] is None


@pytest.mark.parametrize("effort", ["minimal", "low", "medium", "high"])
def test_risk_levels_fall_back_to_the_servers_default_without_a_calibration_table(client, effort):
    default = chat(client, seed=24, temperature=0.0).choices[0]
    choice = chat(client, seed=24, temperature=0.0, extra_body={"reasoning_effort": effort}).choices[0]
    assert choice.early_exit == default.early_exit and choice.early_exit["reason"] == "probe"


def test_an_explicit_early_exit_object_wins_over_the_effort(client):
    choice = chat(client, seed=25, extra_body={"reasoning_effort": "none", **NEVER}).choices[0]
    assert choice.early_exit["triggered"] is False and choice.early_exit["reasoning_tokens"] > 1


# -- thinking_token_budget and why thinking ended ----------------------------------------------------------
@pytest.mark.parametrize(
    "early_exit",
    [
        pytest.param(NEVER, id="probe-never-fires"),
        pytest.param({"early_exit": {"enabled": False}}, id="early-exit-off"),
    ],
)
def test_a_thinking_budget_caps_every_choice(client, early_exit):
    response = chat(client, n=3, seed=26, max_tokens=100, extra_body={"thinking_token_budget": 6, **early_exit})
    for choice in response.choices:
        report = choice.early_exit
        assert report["reasoning_tokens"] <= 6
        assert report["reason"] == ("budget" if report["reasoning_tokens"] == 6 else None)
    assert any(choice.early_exit["reason"] == "budget" for choice in response.choices)


def test_the_probe_may_end_the_thinking_before_the_budget(client):
    choice = chat(client, seed=27, temperature=0.0, max_tokens=300, extra_body={"thinking_token_budget": 250}).choices[
        0
    ]
    assert choice.early_exit["reason"] == "probe" and choice.early_exit["reasoning_tokens"] < 250


def test_a_budget_that_leaves_no_room_for_the_answer_is_refused(server):
    response = post_chat(server, max_tokens=20, thinking_token_budget=20)
    assert response.status_code == 400 and response.json()["error"]["param"] == "thinking_token_budget"


def test_max_tokens_inside_the_thinking_says_length(client):
    choice = chat(client, seed=28, max_tokens=5, extra_body=NEVER).choices[0]
    assert choice.finish_reason == "length" and choice.early_exit["reason"] == "length"


def test_max_completion_tokens_bounds_thinking_and_answer(client):
    response = client.chat.completions.create(
        model=MODEL, messages=MESSAGES, max_completion_tokens=30, seed=29, extra_body=NEVER
    )
    assert response.usage.completion_tokens <= 30


# -- logprobs ----------------------------------------------------------------------------------------------------
def test_chat_logprobs_cover_every_token_and_stream_alike(client):
    response = chat(client, seed=30, max_tokens=60, logprobs=True, top_logprobs=2, extra_body=NEVER)
    content = response.choices[0].logprobs.content
    assert len(content) == response.usage.completion_tokens
    for entry in content:
        assert entry.logprob <= 0 and len(entry.top_logprobs) <= 2 and entry.bytes == list(entry.token.encode())
        assert all(entry.logprob <= top.logprob + 1e-6 or entry.token != top.token for top in entry.top_logprobs)
    streamed = joined_stream(client, seed=30, max_tokens=60, logprobs=True, top_logprobs=2, extra_body=NEVER)
    assert [entry.token for entry in streamed["logprobs"]] == [entry.token for entry in content]


def test_a_forced_think_end_is_reported_with_the_models_own_probability(client, server, reference_model):
    import torch
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(server.model_dir)
    response = chat(client, seed=31, temperature=0.0, max_tokens=120, logprobs=True)
    choice = response.choices[0]
    assert choice.early_exit["reason"] == "probe"
    tokens = [entry.token for entry in choice.logprobs.content]
    forced = tokens.index("</think>")
    prompt = tokenizer.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True)
    ids = tokenizer.encode(prompt + "".join(tokens[:forced]), add_special_tokens=False)
    with torch.no_grad():
        logits = reference_model(torch.tensor([ids])).logits[0, -1].float()
    own = torch.log_softmax(logits, -1)[tokenizer.convert_tokens_to_ids("</think>")].item()
    reported = choice.logprobs.content[forced].logprob
    assert reported < -1e-3 and math.isclose(reported, own, abs_tol=2e-3)


def test_completion_logprobs_with_offsets(client):
    prompt = "<|im_start|>user\nWhat is 3 + 14 - 7?<|im_end|>\n<|im_start|>assistant\n<think>\n"
    whole = client.completions.create(model=MODEL, prompt=prompt, max_tokens=20, seed=32, logprobs=2, extra_body=NEVER)
    logprobs = whole.choices[0].logprobs
    assert len(logprobs.tokens) == whole.usage.completion_tokens == len(logprobs.token_logprobs)
    assert "".join(logprobs.tokens) == whole.choices[0].text
    assert logprobs.text_offset == sorted(logprobs.text_offset) and logprobs.text_offset[0] == 0
    assert all(len(top) <= 2 for top in logprobs.top_logprobs)
    streamed = client.completions.create(
        model=MODEL, prompt=prompt, max_tokens=20, seed=32, logprobs=2, stream=True, extra_body=NEVER
    )
    offsets = [
        offset
        for chunk in streamed
        for choice in chunk.choices
        if choice.logprobs
        for offset in choice.logprobs.text_offset
    ]
    assert offsets == logprobs.text_offset


# -- what clients send by default -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "fields",
    [
        pytest.param(
            {"store": False, "metadata": {"team": "x"}, "user": "u1", "service_tier": "auto"}, id="bookkeeping"
        ),
        pytest.param({"parallel_tool_calls": True, "tool_choice": "none"}, id="no-tools"),
        pytest.param({"response_format": {"type": "text"}, "modalities": ["text"]}, id="text"),
        pytest.param({"logit_bias": {"5": -100}, "frequency_penalty": 0, "presence_penalty": 0}, id="penalties"),
    ],
)
def test_fields_clients_send_by_default_are_accepted(server, fields):
    response = post_chat(server, max_tokens=8, **fields)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    "path, fields, param",
    [
        pytest.param(  # the deprecated form of `tools`, which are served (tests/server/test_tools.py)
            "/v1/chat/completions", {"functions": [{"name": "f"}]}, "functions", id="functions"
        ),
        pytest.param("/v1/chat/completions", {"audio": {"voice": "alloy", "format": "wav"}}, "audio", id="audio"),
        pytest.param("/v1/chat/completions", {"modalities": ["text", "audio"]}, "modalities", id="modalities"),
        pytest.param("/v1/completions", {"prompt": "hi", "best_of": 3}, "best_of", id="best-of"),
        pytest.param("/v1/completions", {"prompt": "hi", "suffix": "x"}, "suffix", id="suffix"),
        pytest.param("/v1/completions", {"prompt": "hi", "echo": True}, "echo", id="echo"),
        pytest.param("/v1/chat/completions", {"temperture": 0.5}, "temperture", id="truly-unknown"),
    ],
)
def test_fields_that_would_change_the_answer_are_refused_with_a_reason(server, path, fields, param):
    body = fields if path.endswith("/completions") and "prompt" in fields else {"messages": MESSAGES, **fields}
    response = server.post(path, {**body, "max_tokens": 8})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param and len(error["message"]) > len(param) + 5


def test_logit_bias_is_used(client, server):
    from transformers import AutoTokenizer

    seven = AutoTokenizer.from_pretrained(server.model_dir).convert_tokens_to_ids("7")  # digits are single tokens
    plain = chat(client, seed=33, max_tokens=60, extra_body=NEVER).choices[0].message
    biased = chat(client, seed=33, max_tokens=60, logit_bias={str(seven): -100}, extra_body=NEVER).choices[0].message
    assert "7" in plain.reasoning_content  # the question's "- 7" is restated
    assert "7" not in biased.reasoning_content + biased.content


def test_the_openai_client_sees_a_bad_effort_as_bad_request(client):
    with pytest.raises(openai.BadRequestError):
        chat(client, extra_body={"reasoning_effort": "ultra"})
