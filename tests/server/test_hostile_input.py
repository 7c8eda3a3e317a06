"""Hostile input against the session server: each malformed request gets a clear 4xx in OpenAI's error body,
and a property-based fuzzer (Schemathesis over the server's own OpenAPI schema) finds no 5xx and no crash."""

from __future__ import annotations

import json
import math
import time
from collections import Counter

import httpx
import pytest

MESSAGES = [{"role": "user", "content": "What is 3 + 14 - 7?"}]
CONTEXT = 1024  # the session server's --max-model-len
LIMIT = 1 << 20  # the default --max-request-bytes
FUZZ_CASES = 800  # over all /v1 POST routes together: about a hundred bad bodies per route
FUZZ_TOKENS, FUZZ_N = 8, 2  # what a fuzzed request that the server accepts may cost the engine


def send(server, path: str, content, headers: dict | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {server.api_key}", "Content-Type": "application/json", **(headers or {})}
    return httpx.post(server.base_url + path, content=content, headers=headers, timeout=60)


def body(**fields) -> bytes:
    return json.dumps({"messages": MESSAGES, **fields}).encode()


def nested(depth: int) -> bytes:
    return b'{"messages": [{"role": "user", "content": "hi"}], "x": ' + b"[" * depth + b"]" * depth + b"}"


def chunks(data: bytes, size: int = 65536):
    """A body without Content-Length: httpx sends an iterator chunked."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


CHAT, COMPLETIONS, REWARDS = "/v1/chat/completions", "/v1/completions", "/v1/rewards"
RESPONSES = "/v1/responses"
GENERATION = (CHAT, COMPLETIONS, RESPONSES)
HOSTILE = [
    pytest.param(CHAT, body(x="a" * (LIMIT + 1)), {}, 413, None, "larger than", id="oversized"),
    pytest.param(CHAT, None, {}, 413, None, "--max-request-bytes", id="oversized-chunked"),
    pytest.param(CHAT, body(max_tokens=CONTEXT + 1), {}, 400, "max_tokens", "context", id="max-tokens-beyond-context"),
    pytest.param(
        CHAT,
        body(max_completion_tokens=10**9),
        {},
        400,
        "max_completion_tokens",
        "context",
        id="max-completion-tokens-beyond-context",
    ),
    pytest.param(
        COMPLETIONS,
        json.dumps({"prompt": "hi", "max_tokens": 10**12}).encode(),
        {},
        400,
        "max_tokens",
        "context",
        id="completion-max-tokens-beyond-context",
    ),
    pytest.param(
        CHAT,
        json.dumps({"messages": [{"role": "user", "content": "What is 1 + 2? " * 300}]}).encode(),
        {},
        400,
        "messages",
        "context",
        id="prompt-beyond-context",
    ),
    pytest.param(
        COMPLETIONS,
        json.dumps({"prompt": [5] * (CONTEXT + 1)}).encode(),
        {},
        400,
        "prompt",
        "context",
        id="token-ids-beyond-context",
    ),
    pytest.param(
        CHAT,
        b'{"messages": [{"role": "user", "content": "\xff\xfe"}]}',
        {},
        400,
        None,
        "UnicodeDecodeError",
        id="not-utf8",
    ),
    pytest.param(CHAT, b'{"messages": [}', {}, 400, None, "not valid JSON", id="broken-json"),
    pytest.param(CHAT, nested(100_000), {}, 400, None, "not valid JSON", id="nested-100k"),
    pytest.param(
        CHAT,
        json.dumps({"messages": [{"role": "user", "content": [[[[[["deep"]]]]]]}]}).encode(),
        {},
        400,
        "messages.0.content",
        None,
        id="nested-in-a-field",
    ),
    pytest.param(CHAT, b"[]", {}, 400, None, "send a JSON object", id="array-body"),
    pytest.param(CHAT, b"", {}, 400, None, "the request body is missing", id="empty-body"),
    pytest.param(
        CHAT,
        body(max_tokens=4),
        {"Content-Type": "text/plain"},
        400,
        None,
        "send a JSON object",
        id="not-json-content-type",
    ),
    pytest.param(
        CHAT, body(temperature=0.5, tempreature=0.5), {}, 400, "tempreature", "unknown field", id="unknown-field"
    ),
    pytest.param(
        CHAT,
        body(early_exit={"threshold": 0.5, "treshold": 1}),
        {},
        400,
        "early_exit.treshold",
        "unknown field",
        id="unknown-early-exit-field",
    ),
    pytest.param(CHAT, body(n=129), {}, 400, "n", "128", id="n-too-large"),
    pytest.param(
        COMPLETIONS, json.dumps({"prompt": [[5]] * 1100, "n": 2}).encode(), {}, 400, "n", "2048", id="too-many-choices"
    ),
    pytest.param(CHAT, body(seed=2**64), {}, 400, "seed", None, id="seed-beyond-int64"),
    pytest.param(CHAT, body(top_k=10**30), {}, 400, "top_k", None, id="top-k-beyond-int64"),
    pytest.param(
        CHAT,
        body(early_exit={"rule": "budget", "budget": 10**20}),
        {},
        400,
        "early_exit.budget",
        None,
        id="budget-beyond-int64",
    ),
    pytest.param(
        CHAT,
        b'{"messages": [{"role": "user", "content": "hi"}], "temperature": NaN}',
        {},
        400,
        "temperature",
        None,
        id="nan",
    ),
    pytest.param(CHAT, body(repetition_penalty=math.inf), {}, 400, None, "repetition_penalty", id="infinity"),
    pytest.param(
        CHAT, json.dumps({"messages": "What is 1 + 1?"}).encode(), {}, 400, "messages", None, id="messages-not-a-list"
    ),
    pytest.param(CHAT, json.dumps({"messages": []}).encode(), {}, 400, "messages", None, id="no-messages"),
    pytest.param(RESPONSES, b'{"input": [}', {}, 400, None, "not valid JSON", id="responses-broken-json"),
    pytest.param(
        RESPONSES,
        json.dumps({"input": [{"type": "mcp_call", "id": "m"}]}).encode(),
        {},
        400,
        "input.0.type",
        "mcp_call",
        id="responses-unknown-item",
    ),
    pytest.param(
        RESPONSES,
        json.dumps({"input": "hi", "max_output_tokens": 10**9}).encode(),
        {},
        400,
        "max_output_tokens",
        "context",
        id="responses-max-output-tokens-beyond-context",
    ),
]


@pytest.mark.parametrize("path, content, headers, status, param, words", HOSTILE)
def test_hostile_request_gets_a_clear_4xx_in_openai_form(server, path, content, headers, status, param, words):
    if content is None:  # oversized and chunked: no Content-Length to refuse it by
        content = chunks(body(x="a" * (LIMIT + 1)))
    response = send(server, path, content, headers)
    assert response.status_code == status, response.text[:500]
    error = response.json()["error"]
    assert set(response.json()) == {"error"} and set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error" and error["message"]
    assert error["param"] == param
    if words:
        assert words in error["message"]


def test_context_errors_say_context_length_exceeded(server):
    too_long = json.dumps({"prompt": [5] * 2000}).encode()
    for path, content in ((CHAT, body(max_tokens=CONTEXT + 1)), (COMPLETIONS, too_long)):
        assert send(server, path, content).json()["error"]["code"] == "context_length_exceeded"


def test_max_tokens_within_the_context_is_cut_to_the_room_left(server):
    """A limit that fits the context but not beside this prompt is cut to the room, as vLLM's server does."""
    prompt = [5] * (CONTEXT - 3)
    response = send(
        server,
        COMPLETIONS,
        json.dumps(
            {"prompt": prompt, "max_tokens": CONTEXT, "ignore_eos": True, "early_exit": {"enabled": False}}
        ).encode(),
    )
    assert response.status_code == 200 and response.json()["usage"]["completion_tokens"] == 3


# -- the fuzzer -----------------------------------------------------------------------------------------------
def cheap(case, context: int = CONTEXT) -> None:
    """Keeps an accepted request cheap for the engine: a valid `n` or token limit is lowered, a missing limit
    set; anything invalid is left alone, so that the server still has to refuse it. A model name is dropped:
    the schema cannot say which one exists (a wrong one is a 404, tested in test_server.py)."""
    if not isinstance(case.body, dict):
        return
    if isinstance(case.body.get("model"), str):
        del case.body["model"]
    if type(case.body.get("n")) is int and 1 <= case.body["n"] <= 128:
        case.body["n"] = min(case.body["n"], FUZZ_N)
    from probexit.server.protocol_responses import MIN_OUTPUT_TOKENS

    responses = "input" in case.body
    names = ("max_output_tokens",) if responses else ("max_tokens", "max_completion_tokens")
    tokens = MIN_OUTPUT_TOKENS if responses else FUZZ_TOKENS  # the Responses API's smallest budget
    limits = [key for key in names if key in case.body]
    if not limits:
        case.body[names[0]] = tokens
    for key in limits:
        value = case.body[key]
        if type(value) is int and 1 <= value <= context:
            case.body[key] = min(value, tokens)
    if "messages" in case.body:  # a chat request
        answerable(case.body)
    elif "input" in case.body:  # a Responses request
        responses_answerable(case.body)


def answerable(body: dict) -> None:
    """A chat request the schema accepts is made one the handler answers (the schema cannot say that it refuses
    tools, a JSON response format, audio or non-text parts by design, which fields each role may carry, or that
    a thinking budget must leave room for the answer), so that fuzzed text reaches the chat template and the
    engine; a body the schema refuses is left alone. Tools and response formats stay: the handler checks their
    schemas itself."""
    from pydantic import ValidationError

    from probexit.server.protocol import REASONING_EFFORTS, ChatCompletionRequest
    from probexit.server.serving_chat import UNSUPPORTED

    try:
        ChatCompletionRequest.model_validate(body)
    except ValidationError:
        return
    for key in (*UNSUPPORTED, "modalities", "top_logprobs", "logit_bias"):
        body.pop(key, None)
    if body.get("reasoning_effort") not in (None, *REASONING_EFFORTS):
        del body["reasoning_effort"]
    if body.get("thinking_token_budget") is not None:
        body["thinking_token_budget"] = 1
        body["max_tokens"] = max(body.get("max_tokens") or 0, 2)
        body.pop("max_completion_tokens", None)
    well_formed(body["messages"])


def well_formed(messages: list[dict]) -> None:
    """Each message keeps only the fields its role may carry and text parts, as the handlers require; a tool
    message answers the first call made before it (with none, it becomes a user message)."""
    from probexit.server.messages import ROLE_FIELDS

    calls = []
    for message in messages:
        for name in [name for name in message if name not in ("role", "content", *ROLE_FIELDS[message["role"]])]:
            del message[name]
        calls += [call["id"] for call in message.get("tool_calls") or []]
        if message["role"] == "tool" and calls:
            message["tool_call_id"] = calls[0]
        elif message["role"] == "tool":
            message["role"] = "user"
            message.pop("tool_call_id", None)
        if isinstance(message.get("content"), list):
            message["content"] = [{"type": "text", "text": str(part.get("text") or "")} for part in message["content"]]
        if message.get("reasoning") is not None and message.get("reasoning_content") is not None:
            message["reasoning"] = message["reasoning_content"]


def responses_answerable(body: dict) -> None:
    """A Responses request the schema accepts is made one the handler answers: no stored state asked for, and the
    input items of the types it takes (the schema leaves items to the handler); a body the schema refuses is left
    alone."""
    from pydantic import ValidationError

    from probexit.server.protocol_responses import MessageItem, ResponsesRequest

    try:
        ResponsesRequest.model_validate(body)
    except ValidationError:
        return
    for key in ("previous_response_id", "conversation", "background", "prompt", "max_tool_calls", "top_logprobs"):
        body.pop(key, None)
    if isinstance(body["input"], list):
        messages = []
        for item in body["input"]:
            try:
                messages.append(MessageItem.model_validate(item))
            except ValidationError:
                continue
        body["input"] = [
            {"role": item.role, "content": item.content} for item in messages if isinstance(item.content, str)
        ] or "What is 1 + 2?"


def scoreable(case) -> None:
    """A rewards request that the schema accepts is made one the reward model can score (the schema cannot
    say that a conversation ends with the assistant's answer, which fields each role may carry, nor which model
    names exist), so that the fuzzed text reaches the chat template and the ensemble; anything invalid is left
    alone."""
    from pydantic import ValidationError

    from probexit.server.protocol_rewards import RewardRequest

    try:
        RewardRequest.model_validate(case.body)
    except ValidationError:
        return
    case.body.pop("model", None)
    if case.body.get("messages") is not None:
        case.body.pop("conversations", None)  # one of the two, as the handler requires
    for key in ("messages", "conversations"):
        value = case.body.get(key)
        conversations = [value] if key == "messages" and value is not None else (value or [])[:FUZZ_N]
        for messages in conversations:
            if messages and isinstance(messages[0], dict):
                well_formed(messages)
                messages[:0] = [{"role": "user", "content": "What is 1 + 2?"}]
                messages.append({"role": "assistant", "content": "1 + 2 = 3. So the answer is 3."})
        if key == "conversations" and value is not None:
            case.body[key] = conversations


def fuzz_operation(server, operation, examples: int, failures: list) -> Counter:
    """Runs `examples` generated cases (valid and invalid, half each) against one operation; returns how many
    got each status and appends (operation, status, body, response) for every 5xx or in-stream server error."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import strategies as st
    from schemathesis import GenerationMode

    statuses: Counter = Counter()
    strategy = st.one_of(
        operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
        operation.as_strategy(generation_mode=GenerationMode.NEGATIVE),
    )

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )
    @given(case=strategy)
    def run(case):
        (cheap if operation.path in GENERATION else scoreable)(case)
        response = case.call(
            base_url=server.base_url, headers={"Authorization": f"Bearer {server.api_key}"}, timeout=120
        )
        statuses[response.status_code] += 1
        if response.status_code >= 500 or '"type":"server_error"' in response.text.replace(" ", ""):
            failures.append((operation.label, response.status_code, case.body, response.text[:500]))

    run()
    return statuses


@pytest.mark.slow
def test_fuzzed_requests_get_no_5xx_and_do_not_crash_the_server(server):
    import schemathesis

    schema = schemathesis.openapi.from_url(server.base_url + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    operations = [op for op in operations if op.method.upper() == "POST" and op.path.startswith("/v1/")]
    assert {op.path for op in operations} == {CHAT, COMPLETIONS, RESPONSES, REWARDS}
    failures: list = []
    began = time.monotonic()
    statuses = {
        op.path: fuzz_operation(server, op, math.ceil(FUZZ_CASES / len(operations)), failures) for op in operations
    }
    ran = sum(sum(counts.values()) for counts in statuses.values())
    print(f"fuzzed {ran} cases in {time.monotonic() - began:.0f} s: {statuses}")
    assert ran >= 500, f"only {ran} cases ran"
    # The fuzzer reached the engine (or reward model), not only validation. Hypothesis draws different cases
    # from run to run even derandomized (seen: /v1/rewards 7 and 14 accepted of 200), so the floor is 5.
    for path, counts in statuses.items():
        assert counts[200] >= 5 and sum(n for status, n in counts.items() if 400 <= status < 500) >= 10, (path, counts)
    assert not failures, f"{len(failures)} of {ran} cases got a server error; first ones: {failures[:3]}"
    assert server.process.poll() is None and server.get("/health").status_code == 200
    deadline = time.monotonic() + 30
    while server.get("/health").json()["requests_running"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert server.get("/health").json()["requests_running"] == 0


def test_hostile_input_leaves_the_server_healthy(server):
    health = server.get("/health")
    assert health.status_code == 200 and health.json()["requests_running"] == 0
