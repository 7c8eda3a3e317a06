"""The token-surprise reward head on the tiny-world policy: it reads the answer's tokens only, its features are
the backbone's own log-probabilities, its reward is their pooled score, and it saves and loads without the
backbone."""

from __future__ import annotations

import doctest

import pytest
import torch

from probexit.rewards import heads as reward_heads
from probexit.rewards.heads import TokenSurpriseRewardModel, answer_mask, frozen_lm, head_config, token_features
from probexit.rewards.render import render_ids


def test_doctests():
    assert doctest.testmod(reward_heads).failed == 0


@pytest.fixture(scope="module")
def parts(test_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(test_model_dir)
    return tokenizer, frozen_lm(test_model_dir)


def _conversation(tokenizer, answer: str) -> list[int]:
    return render_ids(
        tokenizer, [{"role": "user", "content": "What is 12 + 30?"}, {"role": "assistant", "content": answer}]
    )


def test_the_config_names_the_turn_opening_token_and_the_digits(parts):
    tokenizer, _ = parts
    config = head_config(tokenizer)
    assert tokenizer.convert_ids_to_tokens(config.marker_token_id) == "<|im_start|>"
    assert sorted(tokenizer.decode([i]).strip() for i in config.digit_token_ids) == list("0123456789")
    assert config.pad_token_id == tokenizer.pad_token_id and config.num_labels == 1


def test_features_are_the_backbones_log_probabilities_over_the_answer_only(parts):
    tokenizer, lm = parts
    config = head_config(tokenizer)
    ids = _conversation(tokenizer, "12 + 30 = 42. So the answer is 42.\n\n</think>\n\nThe answer is \\boxed{42}.")
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is 12 + 30?"}], tokenize=False, add_generation_prompt=True
    )
    n_prompt = len(tokenizer.encode(prompt, add_special_tokens=False))
    model = TokenSurpriseRewardModel(config, lm)
    features, answer = token_features(
        lm, torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.long), config.marker_token_id, model.digit
    )
    # the answer starts after "<|im_start|>" opening the assistant's turn: "assistant\n<think>\n" and what follows
    opening = len(tokenizer.encode("<|im_start|>assistant\n<think>\n", add_special_tokens=False))
    assert answer[0].sum().item() == len(ids) - (n_prompt - opening) - 1
    expected = torch.log_softmax(lm(torch.tensor([ids])).logits[0, :-1].float(), -1).gather(
        1, torch.tensor(ids[1:])[:, None]
    )[:, 0]
    assert torch.allclose(features[0, 1:, 0], expected, atol=1e-5)
    assert features[0, :, 2].tolist() == [float(tokenizer.decode([i]).strip().isdigit()) for i in ids]


def test_an_untrained_head_scores_zero_and_a_set_one_sums_the_digits_surprise(parts):
    tokenizer, lm = parts
    model = TokenSurpriseRewardModel(head_config(tokenizer), lm)
    right, wrong = (
        _conversation(tokenizer, f"12 + 30 = {n}. So the answer is {n}.\n\n</think>\n\nThe answer is \\boxed{{{n}}}.")
        for n in (42, 47)
    )
    batch = torch.full((2, max(len(right), len(wrong))), tokenizer.pad_token_id)
    mask = torch.zeros_like(batch)
    for row, ids in enumerate((right, wrong)):
        batch[row, : len(ids)], mask[row, : len(ids)] = torch.tensor(ids), 1
    assert model(batch, mask).logits.tolist() == [[0.0], [0.0]]  # the output layer starts at 0
    with torch.no_grad():  # hidden unit 0 = gelu(-log-prob) of a digit token (gelu(< -90) = 0 for the others)
        model.head[0].weight.zero_(), model.head[0].bias.zero_(), model.head[2].weight.zero_()
        model.head[0].weight[0] = torch.tensor([-1.0, 0.0, 100.0])
        model.head[0].bias[0] = -100.0
        model.head[2].weight[0, 0] = -1.0  # the reward: minus the digits' summed surprise
    rewards = model(batch, mask).logits[:, 0]
    features, answer = token_features(lm, batch, mask, model.config.marker_token_id, model.digit)
    gelu = torch.nn.functional.gelu
    expected = -(gelu(-features[..., 0] + 100 * features[..., 2] - 100) * answer).sum(1)
    assert torch.allclose(rewards, expected, atol=1e-4)
    assert rewards[0] > rewards[1]  # 42 is what the policy expects after "12 + 30 =", 47 is a slip


def test_a_saved_head_loads_without_its_backbone(parts, tmp_path):
    tokenizer, lm = parts
    model = TokenSurpriseRewardModel(head_config(tokenizer), lm)
    with torch.no_grad():
        for parameter in model.head.parameters():
            parameter.normal_()
    model.save_head(tmp_path / "head")
    loaded = TokenSurpriseRewardModel.load_head(tmp_path / "head", lm)
    ids = torch.tensor([_conversation(tokenizer, "42. So the answer is 42.\n\n</think>\n\n\\boxed{42}")])
    assert torch.allclose(loaded(ids).logits, model(ids).logits)
    assert sorted(p.name for p in (tmp_path / "head").iterdir()) == ["head.json", "head.safetensors"]


def test_the_mask_ignores_padding_and_a_row_without_marker_reads_everything():
    ids = torch.tensor([[3, 4, 5, 0], [7, 1, 8, 9]])
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    assert answer_mask(ids, mask, 1).tolist() == [[1.0, 1.0, 1.0, 0.0], [0.0, 0.0, 1.0, 1.0]]


def test_cached_features_score_alike_and_spare_the_backbone(parts):
    tokenizer, lm = parts
    calls = []

    def counting(**inputs):
        calls.append(inputs["input_ids"].shape[0])
        return lm(**inputs)

    model = TokenSurpriseRewardModel(head_config(tokenizer), counting)
    with torch.no_grad():
        for parameter in model.head.parameters():
            parameter.normal_()
    short, long = (
        _conversation(tokenizer, text)
        for text in ("7.\n\n</think>\n\n\\boxed{7}", "12 + 30 = 42. So the answer is 42.\n\n</think>\n\n42")
    )
    batch = torch.full((2, len(long)), tokenizer.pad_token_id)
    mask = torch.zeros_like(batch)
    for row, ids in enumerate((short, long)):
        batch[row, : len(ids)], mask[row, : len(ids)] = torch.tensor(ids), 1
    plain = model(batch, mask).logits
    model.cache_features()
    first, again = model(batch, mask).logits, model(batch.flip(0), mask.flip(0)).logits.flip(0)
    assert torch.allclose(first, plain, atol=1e-5) and torch.allclose(again, plain, atol=1e-5)
    assert calls == [2, 2]  # uncached, then filling the cache; the reordered batch was read from it


@pytest.mark.gpu
def test_a_head_on_the_gpu_reads_a_backbone_left_on_the_cpu(parts):
    """The trainer moves the head to the GPU, not the backbone (not a sub-module): the features cross over."""
    tokenizer, lm = parts
    model = TokenSurpriseRewardModel(head_config(tokenizer), lm)
    with torch.no_grad():
        for parameter in model.head.parameters():
            parameter.normal_()
    ids = torch.tensor([_conversation(tokenizer, "42. So the answer is 42.\n\n</think>\n\n\\boxed{42}")])
    on_cpu = model(ids).logits
    on_gpu = model.to("cuda")(ids.to("cuda")).logits
    assert on_gpu.device.type == "cuda" and torch.allclose(on_gpu.cpu(), on_cpu, atol=1e-4)
