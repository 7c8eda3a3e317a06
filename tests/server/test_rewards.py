"""`POST /v1/rewards` against the session server (a real `probexit serve --reward-model`): rewards and
uncertainty for one and for several conversations, the chat endpoint's split answer scored like the raw
one, OpenAI error bodies for bad input, the API key, and reward folders refused before the port opens."""

from __future__ import annotations

import asyncio
import json
import math

import httpx
import pytest

from probexit.server.errors import APIError
from tests.server.harness import API_KEY, Server, free_port

REWARD_NAME = "test-rm"
QUESTION = "What is 3 + 14 - 7?"
ANSWER = (
    "Let me work it out step by step. 3 + 14 = 17. 17 - 7 = 10. So the answer is 10.\n\n"
    "</think>\n\nThe answer is \\boxed{10}."
)


def conversation(answer: str = ANSWER, question: str = QUESTION) -> list[dict]:
    return [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]


def make_reward_folder(model_dir, out, max_length: int = 256):
    """Untrained members (different seeds, so they disagree) on a 1-layer backbone of the test policy."""
    import torch
    from transformers import AutoTokenizer

    from probexit.rewards.manifest import MemberCard, RewardManifest, write_manifest
    from probexit.training.advrm_rewards import backbone

    AutoTokenizer.from_pretrained(model_dir).save_pretrained(out / "tokenizer")
    names = ["target", "member1", "member2", "member3"]
    for seed, name in enumerate(names):
        torch.manual_seed(seed)
        backbone(model_dir, 1).half().save_pretrained(out / name)
    cards = [MemberCard(name, f"{model_dir} (layer 0), untrained", seed=seed) for seed, name in enumerate(names)]
    write_manifest(out, RewardManifest(cards[0], tuple(cards[1:]), name=REWARD_NAME, max_length=max_length))
    return out


@pytest.fixture(scope="module")
def model_dir(test_model_dir):
    return test_model_dir


@pytest.fixture(scope="module")
def reward_dir(model_dir, tmp_path_factory):
    return make_reward_folder(model_dir, tmp_path_factory.mktemp("rm") / "reward")


@pytest.fixture(scope="module")
def rm_server(server) -> Server:
    """The session server: it serves `make_reward_folder`'s models beside the test policy."""
    return server


def rewards(server: Server, body: dict, **kwargs) -> httpx.Response:
    return server.post("/v1/rewards", body, **kwargs)


def assert_consistent(item: dict, spread_floor: float) -> None:
    """The uncertainty numbers say what docs/serving.md says they are."""
    u = item["uncertainty"]
    values = [
        item["reward"],
        item["normalized_reward"],
        u["ensemble_mean"],
        u["ensemble_std"],
        u["z"],
        *item["ensemble"],
    ]
    assert all(math.isfinite(v) for v in values)
    assert len(item["ensemble"]) == 3
    mean = sum(item["ensemble"]) / 3  # calibration is the identity in this folder
    std = math.sqrt(sum((x - mean) ** 2 for x in item["ensemble"]) / 2)
    assert u["ensemble_mean"] == pytest.approx(mean, abs=1e-5) and u["ensemble_std"] == pytest.approx(std, abs=1e-5)
    assert u["z"] == pytest.approx((item["normalized_reward"] - mean) / max(std, spread_floor), rel=1e-4, abs=1e-5)
    assert u["out_of_distribution"] == (u["z"] >= u["z_threshold"]) and u["z_threshold"] == 1.96


# -- scoring --------------------------------------------------------------------------------------------------------
def test_one_conversation_gets_a_reward_and_the_ensembles_uncertainty(rm_server):
    response = rewards(rm_server, {"messages": conversation()})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "list" and body["model"] == REWARD_NAME and body["id"].startswith("rwd-")
    assert len(body["data"]) == 1 and body["data"][0]["index"] == 0 and body["data"][0]["object"] == "reward"
    assert_consistent(body["data"][0], spread_floor=0.1)
    assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] > 20


def test_a_batch_scores_each_conversation_as_alone(rm_server):
    answers = [ANSWER, ANSWER.replace("10", "11"), "</think>\n\nThe answer is \\boxed{10}.", "So."]
    batch = rewards(rm_server, {"conversations": [conversation(a) for a in answers]}).json()["data"]
    assert [item["index"] for item in batch] == [0, 1, 2, 3]
    for answer, item in zip(answers, batch):
        alone = rewards(rm_server, {"messages": conversation(answer)}).json()["data"][0]
        assert item["reward"] == pytest.approx(alone["reward"], abs=1e-4)
        assert item["ensemble"] == pytest.approx(alone["ensemble"], abs=1e-4)
        assert_consistent(item, spread_floor=0.1)
    assert len({round(item["reward"], 5) for item in batch}) > 1


def test_the_chat_endpoints_split_answer_scores_like_the_raw_one(rm_server):
    reasoning, content = ANSWER.split("</think>")
    split = [
        {"role": "user", "content": QUESTION},
        {"role": "assistant", "reasoning_content": reasoning, "content": content},
    ]
    parts = [
        {"role": "user", "content": [{"type": "text", "text": QUESTION}]},
        {"role": "assistant", "content": [{"type": "text", "text": ANSWER}]},
    ]
    scores = [rewards(rm_server, {"messages": m}).json()["data"][0]["reward"] for m in (conversation(), split, parts)]
    assert scores[0] == pytest.approx(scores[1], abs=1e-5) == pytest.approx(scores[2], abs=1e-5)


def test_the_model_may_be_named(rm_server):
    for name in (REWARD_NAME, rm_server.model):
        assert rewards(rm_server, {"model": name, "messages": conversation()}).status_code == 200


# -- errors ---------------------------------------------------------------------------------------------------------
USER_ONLY = [{"role": "user", "content": QUESTION}]


@pytest.mark.parametrize(
    "body, param",
    [
        pytest.param({}, "messages", id="nothing"),
        pytest.param({"messages": conversation(), "conversations": [conversation()]}, "messages", id="both"),
        pytest.param({"messages": USER_ONLY}, "messages", id="no-answer"),
        pytest.param({"messages": conversation()[1:]}, "messages", id="answer-alone"),
        pytest.param({"messages": "hi"}, "messages", id="not-a-list"),
        pytest.param({"conversations": []}, "conversations", id="empty-batch"),
        pytest.param({"conversations": [conversation()] * 65}, "conversations", id="batch-too-large"),
        pytest.param({"conversations": [conversation(), USER_ONLY]}, "conversations.1", id="second-has-no-answer"),
        pytest.param(
            {
                "messages": [
                    {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]},
                    conversation()[1],
                ]
            },
            "messages.0.content",
            id="image-part",
        ),
        pytest.param(
            {"messages": [conversation()[0], {"role": "assistant", "content": "a", "reasoning_content": 3}]},
            "messages.1.reasoning_content",
            id="reasoning-not-text",
        ),
        pytest.param({"messages": conversation(), "temperature": 1}, "temperature", id="unknown-field"),
        pytest.param({"messages": conversation("1 + 1 = 2. " * 200)}, "messages", id="too-long"),
    ],
)
def test_bad_input_gets_an_openai_400_naming_the_field(rm_server, body, param):
    response = rewards(rm_server, body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error" and error["param"] == param and error["message"]


def test_too_long_says_so_in_the_code(rm_server):
    error = rewards(rm_server, {"messages": conversation("1 + 1 = 2. " * 200)}).json()["error"]
    assert error["code"] == "context_length_exceeded" and "at most 256" in error["message"]


def test_invalid_json_is_a_400(rm_server):
    response = httpx.post(
        rm_server.base_url + "/v1/rewards",
        content=b"{nope",
        headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"},
    )
    assert response.status_code == 400 and "not valid JSON" in response.json()["error"]["message"]


def test_unknown_model_is_a_404(rm_server):
    response = rewards(rm_server, {"model": "gpt-4", "messages": conversation()})
    assert response.status_code == 404 and response.json()["error"]["code"] == "model_not_found"


@pytest.mark.parametrize("key", [None, "wrong-key"], ids=["no-key", "wrong-key"])
def test_rewards_need_the_api_key(rm_server, key):
    response = rewards(rm_server, {"messages": conversation()}, key=key)
    assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key"


def test_a_server_without_a_reward_model_answers_404():
    from probexit.server.protocol_rewards import RewardRequest
    from probexit.server.serving_rewards import ServingRewards

    with pytest.raises(APIError) as error:
        asyncio.run(ServingRewards(None, "m").handle(RewardRequest(messages=conversation())))
    assert error.value.status == 404 and error.value.code == "reward_model_not_loaded"
    assert "--reward-model" in error.value.message


# -- start-up ---------------------------------------------------------------------------------------------------------
def _break_member(folder):
    config = json.loads((folder / "member2" / "config.json").read_text())
    (folder / "member2" / "config.json").write_text(
        json.dumps({**config, "num_labels": 3, "id2label": {str(i): str(i) for i in range(3)}})
    )


@pytest.mark.parametrize(
    "breakage, message",
    [
        pytest.param(lambda f: (f / "manifest.json").unlink(), "no manifest.json", id="missing-manifest"),
        pytest.param(
            lambda f: (f / "target" / "model.safetensors").write_bytes(b"\0" * 64),
            "cannot load reward model",
            id="corrupt-weights",
        ),
        pytest.param(_break_member, "3 outputs", id="mismatched-member"),
    ],
)
def test_a_bad_reward_folder_fails_in_one_line_before_the_port_opens(
    model_dir, reward_dir, tmp_path, capsys, breakage, message
):
    import shutil

    from probexit.cli.main import main

    folder = tmp_path / "reward"
    shutil.copytree(reward_dir, folder)
    breakage(folder)
    port = free_port()
    assert (
        main(
            [
                "serve",
                "--model",
                str(model_dir),
                "--reward-model",
                str(folder),
                "--port",
                str(port),
                "--dtype",
                "float32",
                "--max-model-len",
                "1024",
            ]
        )
        == 2
    )
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("probexit: error: --reward-model:") and message in last
