"""End to end against one real `probexit serve` process (see conftest.py), with the official openai client.

The probe fires at every boundary (score about 1.0); the server's default threshold is 0.5, so a request
without settings exits at its first boundary, and `{"threshold": 1.01}` never exits. The `budget` rule
forces `</think>` after a fixed number of thinking tokens on any model.
"""

from __future__ import annotations

import time

import httpx
import openai
import pytest

QUESTION = "What is 3 + 14 - 7?"
MESSAGES = [{"role": "user", "content": QUESTION}]
NEVER = {"early_exit": {"threshold": 1.01}}  # extra_body: the probe never passes it
BUDGET = {"early_exit": {"rule": "budget", "budget": 4}}  # extra_body: </think> after 4 thinking tokens


def chat(client, **kwargs):
    return client.chat.completions.create(
        model=kwargs.pop("model", "tinyworld-test"),
        messages=MESSAGES,
        max_tokens=kwargs.pop("max_tokens", 200),
        **kwargs,
    )


def streamed_chat(client, **kwargs) -> tuple[dict, list]:
    """Joined reasoning and content per choice, and the chunks."""
    chunks = list(chat(client, stream=True, **kwargs))
    joined: dict[int, dict] = {}
    for chunk in chunks:
        for choice in chunk.choices:
            part = joined.setdefault(choice.index, {"reasoning": "", "content": ""})
            part["reasoning"] += getattr(choice.delta, "reasoning_content", None) or ""
            part["content"] += choice.delta.content or ""
            if choice.finish_reason is not None:
                part["finish_reason"], part["early_exit"] = choice.finish_reason, choice.early_exit
    return joined, chunks


def assert_usage_adds_up(usage, choices_reasoning_tokens: list[int]) -> None:
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert usage.completion_tokens_details.reasoning_tokens == sum(choices_reasoning_tokens)
    assert 0 <= usage.completion_tokens_details.reasoning_tokens <= usage.completion_tokens


# -- the OpenAI surface ---------------------------------------------------------------------------------------
def test_models_lists_the_served_model(client, server):
    from probexit.probes.fingerprint import model_identity

    models = client.models.list().data
    assert [model.id for model in models] == [server.model]
    identity = models[0].probexit  # what a caching client (the savings benchmark) keys its results on
    assert identity["model_fingerprint"] == model_identity(server.model_dir).fingerprint
    assert len(identity["probe_fingerprint"]) == 16


def test_chat_sync_reports_reasoning_answer_and_usage(client):
    response = chat(client, extra_body=NEVER, seed=1)
    choice = response.choices[0]
    assert response.object == "chat.completion" and choice.finish_reason in ("stop", "length")
    assert choice.message.reasoning_content and "</think>" not in choice.message.reasoning_content
    assert choice.early_exit == {
        "triggered": False,
        "score": pytest.approx(1.0, abs=1e-3),
        "boundary": None,
        "reasoning_tokens": choice.early_exit["reasoning_tokens"],
        "reason": None,
    }
    assert_usage_adds_up(response.usage, [choice.early_exit["reasoning_tokens"]])


async def test_chat_async(async_client):
    response = await async_client.chat.completions.create(
        model="tinyworld-test", messages=MESSAGES, max_tokens=40, seed=2
    )
    assert response.choices[0].message.reasoning_content
    assert response.usage.completion_tokens <= 40


def test_chat_streaming_deltas_final_chunk_and_usage(client):
    joined, chunks = streamed_chat(client, seed=3, stream_options={"include_usage": True}, extra_body=NEVER)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(chunk.object == "chat.completion.chunk" for chunk in chunks)
    assert joined[0]["reasoning"] and joined[0]["finish_reason"] in ("stop", "length")
    assert joined[0]["early_exit"]["triggered"] is False
    usage_chunks = [chunk for chunk in chunks if chunk.usage is not None]
    assert len(usage_chunks) == 1 and usage_chunks[0] is chunks[-1] and not chunks[-1].choices
    assert_usage_adds_up(chunks[-1].usage, [joined[0]["early_exit"]["reasoning_tokens"]])


def test_completions_plain_and_streamed(client):
    prompt = f"<|im_start|>user\n{QUESTION}<|im_end|>\n<|im_start|>assistant\n<think>\n"
    response = client.completions.create(model="tinyworld-test", prompt=prompt, max_tokens=30, seed=4, extra_body=NEVER)
    choice = response.choices[0]
    assert response.object == "text_completion" and choice.text
    assert choice.early_exit["triggered"] is False
    assert_usage_adds_up(response.usage, [choice.early_exit["reasoning_tokens"]])
    streamed = client.completions.create(
        model="tinyworld-test", prompt=prompt, max_tokens=30, seed=4, stream=True, extra_body=NEVER
    )
    assert "".join(chunk.choices[0].text for chunk in streamed if chunk.choices) == choice.text


def test_completions_take_token_ids_and_several_prompts(client, server):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(server.model_dir)
    prompts = [
        tokenizer.encode(f"<|im_start|>user\nWhat is {a} + 2?<|im_end|>\n<|im_start|>assistant\n<think>\n")
        for a in (1, 5)
    ]
    response = client.completions.create(
        model="tinyworld-test", prompt=prompts, n=2, max_tokens=8, seed=1, extra_body=BUDGET
    )
    assert [choice.index for choice in response.choices] == [0, 1, 2, 3]
    assert response.usage.prompt_tokens == sum(map(len, prompts))


def test_stop_string_ends_the_answer(client):
    # The session probe fires at the first boundary, where the thinking holds an answer, so the model goes on
    # to write its boxed one (cut off after 4 tokens by a budget, the tiny policy answers nothing).
    fires = {"early_exit": {"threshold": 0.5}}
    choice = chat(client, seed=12, temperature=0.0, stop=["boxed"], extra_body=fires).choices[0]
    assert choice.early_exit["triggered"] is True
    assert choice.finish_reason == "stop" and "boxed" not in choice.message.content


def test_n_2_gives_two_choices_each_with_its_own_report(client):
    response = chat(client, n=2, seed=5, max_tokens=60, extra_body=BUDGET)
    assert [choice.index for choice in response.choices] == [0, 1]
    for choice in response.choices:
        assert choice.early_exit["triggered"] is True and choice.early_exit["reasoning_tokens"] == 4
    assert_usage_adds_up(response.usage, [4, 4])
    joined, _ = streamed_chat(client, n=2, seed=5, max_tokens=60, extra_body=BUDGET)
    assert sorted(joined) == [0, 1]
    assert [joined[i]["content"] for i in (0, 1)] == [choice.message.content for choice in response.choices]


@pytest.mark.parametrize(
    "extra",
    [pytest.param(NEVER, id="no-exit"), pytest.param(BUDGET, id="budget-exit"), pytest.param({}, id="probe-exit")],
)
def test_streaming_and_non_streaming_agree_for_a_seed(client, extra):
    whole = chat(client, seed=11, temperature=1.0, extra_body=extra or None).choices[0]
    joined, _ = streamed_chat(client, seed=11, temperature=1.0, extra_body=extra or None)
    assert joined[0]["reasoning"] == (whole.message.reasoning_content or "")
    assert joined[0]["content"] == whole.message.content
    assert joined[0]["early_exit"] == whole.early_exit


# -- early exit --------------------------------------------------------------------------------------------
def test_budget_exit_splits_reasoning_from_content(client):
    choice = chat(client, seed=6, max_tokens=60, extra_body=BUDGET).choices[0]
    assert choice.early_exit == {
        "triggered": True,
        "score": None,
        "boundary": None,
        "reasoning_tokens": 4,
        "reason": "budget",
    }
    assert choice.message.reasoning_content and choice.message.content
    assert "</think>" not in choice.message.reasoning_content + choice.message.content


def test_probe_exit_at_the_first_boundary(client):
    choice = chat(client, seed=7, temperature=0.0).choices[0]
    report = choice.early_exit
    assert report["triggered"] is True and report["boundary"] == 0 and report["score"] > 0.99
    assert report["reason"] == "probe"
    assert choice.message.reasoning_content.rstrip().endswith(".")  # the paragraph that stated an answer
    assert "boxed" in choice.message.content


def test_disabled_early_exit_reports_no_exit_only_the_cut(client):
    choice = chat(client, seed=8, max_tokens=40, extra_body={"early_exit": {"enabled": False}}).choices[0]
    assert choice.early_exit == {
        "triggered": False,
        "score": None,
        "boundary": None,
        "reasoning_tokens": 40,
        "reason": "length",  # 40 tokens end the thinking of every model these tests serve
    }


def test_enable_thinking_false_skips_the_reasoning(client):
    no_thinking = {"chat_template_kwargs": {"enable_thinking": False}}
    choice = chat(client, seed=9, max_tokens=30, extra_body=no_thinking).choices[0]
    assert choice.message.reasoning_content is None and choice.early_exit["reasoning_tokens"] == 0


@pytest.mark.parametrize(
    "early_exit, field",
    [
        pytest.param({"threshold": 2}, "early_exit.threshold", id="threshold-range"),
        pytest.param({"threshold": 0.5, "max_risk": 0.1}, "early_exit.max_risk", id="threshold-and-max-risk"),
        pytest.param({"max_risk": 0.1}, "early_exit.max_risk", id="no-calibration"),
        pytest.param({"rule": "telepathy"}, "early_exit.rule", id="rule"),
        pytest.param({"thresold": 0.5}, "early_exit.thresold", id="misspelt"),
        pytest.param({"min_thinking_tokens": -1}, "early_exit.min_thinking_tokens", id="negative"),
        pytest.param({"enabled": "yes"}, "early_exit.enabled", id="not-a-bool"),
    ],
)
def test_invalid_early_exit_is_a_400_naming_the_field(server, early_exit, field):
    response = server.post("/v1/chat/completions", {"messages": MESSAGES, "early_exit": early_exit})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == field and field in error["message"] and error["type"] == "invalid_request_error"


# -- errors and access ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "body, param",
    [
        pytest.param({}, "messages", id="no-messages"),
        pytest.param({"messages": MESSAGES, "n": 0}, "n", id="n"),
        pytest.param({"messages": MESSAGES, "top_logprobs": 2}, "top_logprobs", id="top-logprobs-without-logprobs"),
        pytest.param(
            {"messages": MESSAGES, "chat_template_kwargs": {"tokenize": True}}, "chat_template_kwargs", id="kwargs"
        ),
    ],
)
def test_bad_requests_get_openai_400_bodies(server, body, param):
    response = server.post("/v1/chat/completions", body)
    assert response.status_code == 400 and response.json()["error"]["param"] == param


def test_openai_client_raises_bad_request(client):
    with pytest.raises(openai.BadRequestError) as error:
        chat(client, extra_body={"early_exit": {"threshold": 5}})
    assert error.value.body["param"] == "early_exit.threshold"


@pytest.mark.parametrize("key", [None, "wrong-key"], ids=["missing", "wrong"])
def test_v1_needs_the_key_but_health_and_metrics_do_not(server, key):
    for path, body in (("/v1/chat/completions", {"messages": MESSAGES}), ("/v1/completions", {"prompt": "x"})):
        response = server.post(path, body, key=key)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "invalid_api_key"
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    assert server.get("/v1/models", headers=headers).status_code == 401
    assert server.get("/health").status_code == 200 and server.get("/metrics").status_code == 200


def test_unknown_model_and_route_are_404(server, client):
    with pytest.raises(openai.NotFoundError):
        chat(client, model="gpt-4")
    response = server.get("/v1/nowhere", headers={"Authorization": f"Bearer {server.api_key}"})
    assert response.status_code == 404 and set(response.json()["error"]) == {"message", "type", "param", "code"}


# -- disconnects and metrics --------------------------------------------------------------------------------
def _running(server) -> int:
    return server.get("/health").json()["requests_running"]


def test_disconnect_mid_stream_aborts_the_engine_request(server):
    aborted_before = server.metric("probexit:requests_total", outcome="aborted")
    body = {
        "messages": MESSAGES,
        "max_tokens": 900,
        "ignore_eos": True,
        "stream": True,
        "early_exit": {"enabled": False},
    }
    with (
        httpx.Client(timeout=60) as http,
        http.stream(
            "POST",
            server.base_url + "/v1/chat/completions",
            json=body,
            headers={"Authorization": f"Bearer {server.api_key}"},
        ) as response,
    ):
        lines = response.iter_lines()
        for _ in range(5):
            next(lines)
        assert _running(server) == 1
        assert server.metric("vllm:num_requests_running") == 1
    deadline = time.monotonic() + 3
    while _running(server) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _running(server) == 0, "the engine kept generating for a client that left"
    assert server.metric("probexit:requests_total", outcome="aborted") == aborted_before + 1


def test_disconnect_while_waiting_for_a_whole_answer_aborts_too(server):
    aborted_before = server.metric("probexit:requests_total", outcome="aborted")
    body = {"messages": MESSAGES, "max_tokens": 900, "ignore_eos": True, "early_exit": {"enabled": False}}
    with pytest.raises(httpx.ReadTimeout):
        server.post("/v1/chat/completions", body, timeout=0.5)  # the client gives up and closes the connection
    deadline = time.monotonic() + 3
    while _running(server) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _running(server) == 0
    assert server.metric("probexit:requests_total", outcome="aborted") == aborted_before + 1


def test_metrics_move_after_requests(server, client):
    before = {
        name: server.metric(name, **labels)
        for name, labels in (
            ("probexit:requests_total", {"outcome": "success"}),
            ("probexit:early_exits_total", {"rule": "probe"}),
            ("probexit:probe_evaluations_total", {}),
            ("probexit:thinking_tokens_count", {}),
            ("probexit:probe_score_count", {}),
            ("vllm:request_success_total", {}),
        )
    }
    chat(client, seed=10, temperature=0.0)
    after = {
        name: server.metric(name, **labels)
        for name, labels in (
            ("probexit:requests_total", {"outcome": "success"}),
            ("probexit:early_exits_total", {"rule": "probe"}),
            ("probexit:probe_evaluations_total", {}),
            ("probexit:thinking_tokens_count", {}),
            ("probexit:probe_score_count", {}),
            ("vllm:request_success_total", {}),
        )
    }
    assert all(after[name] == before[name] + 1 for name in after), (before, after)
    assert server.metric("probexit:probe_step_seconds_count") > 0
