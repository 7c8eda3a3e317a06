"""Adv-RM's reward models on the tiny-world policy: a round trained with TRL's RewardTrainer on synthetic
tiny-world traces (2 steps a model), with either head, becomes a servable folder; the folder loads, scores
batch-invariantly on the ids training used, is calibrated, small, and every broken folder is one clear error."""

from __future__ import annotations

import json
import random
import shutil

import pytest

from probexit.rewards.ensemble import RewardEnsemble
from probexit.rewards.manifest import HEADS, LAST_TOKEN, TOKEN_SURPRISE, RewardModelError, read_manifest
from probexit.rewards.render import render_ids
from probexit.training.advrm_rewards import (
    RewardModelSettings,
    Sample,
    backbone,
    pair_accuracy,
    preference_pairs,
    train_round,
)
from probexit.training.tinyworld.grading import grade
from probexit.training.tinyworld.problems import random_problem
from probexit.training.tinyworld.traces import TraceStyle, sample_trace

SETTINGS = {head: RewardModelSettings(head=head, ensemble_size=3, epochs=1, batch_size=16) for head in HEADS}


def tinyworld_samples(n_problems: int, per_problem: int, seed: int) -> list[Sample]:
    """Graded tiny-world traces; a style that often stops on a slip (a quick result left unchecked), so that many are
    wrong."""
    rng, samples, style = random.Random(seed), [], TraceStyle(continue_after_wrong=0.5, quick_results_checked=False)
    for _ in range(n_problems):
        problem = random_problem(rng)
        for _ in range(per_problem):
            text = sample_trace(problem, style, rng).completion
            samples.append(Sample(problem.question, str(problem.answer), text, grade(text, str(problem.answer)).gold))
    return samples


def _train(test_model_dir, tmp_path_factory, head):
    out = tmp_path_factory.mktemp("advrm") / "reward"
    samples = tinyworld_samples(40, 4, seed=0)
    pairs = preference_pairs(samples, per_question=2, seed=0)[:32]  # 2 steps of 16 pairs per model
    logged: list[str] = []
    ensemble = train_round(test_model_dir, pairs, samples[:48], out, SETTINGS[head], {"test": True}, logged.append)
    return ensemble, pairs, samples, logged


@pytest.fixture(scope="module", params=HEADS)
def trained(test_model_dir, tmp_path_factory, request):
    return _train(test_model_dir, tmp_path_factory, request.param)


@pytest.fixture(scope="module")
def last_token(test_model_dir, tmp_path_factory, trained):
    """The last-token round (reused when `trained` is that one)."""
    return trained if trained[0].manifest.head == LAST_TOKEN else _train(test_model_dir, tmp_path_factory, LAST_TOKEN)


@pytest.fixture(scope="module")
def token_surprise(test_model_dir, tmp_path_factory, trained):
    """The token-surprise round (reused when `trained` is that one)."""
    if trained[0].manifest.head == TOKEN_SURPRISE:
        return trained
    return _train(test_model_dir, tmp_path_factory, TOKEN_SURPRISE)


def test_synthetic_traces_are_well_formed_and_graded_by_their_answer():
    for sample in tinyworld_samples(50, 2, seed=1):
        graded = grade(sample.text, sample.answer)
        assert graded.well_formed and graded.gold == float(graded.answer == sample.answer)


@pytest.mark.slow
def test_a_round_is_a_servable_folder(trained, test_model_dir):
    ensemble, _, _, logged = trained
    folder = ensemble.folder
    manifest = read_manifest(folder)
    assert manifest.target.path == "target" and [m.path for m in manifest.ensemble] == ["member1", "member2", "member3"]
    assert manifest.notes == {"test": True} and str(test_model_dir) in manifest.target.initialised_from
    assert manifest.name == "reward"  # train_round's default, not the last member's folder name
    for card in (manifest.target, *manifest.ensemble):
        if manifest.head == LAST_TOKEN:
            config = json.loads((folder / card.path / "config.json").read_text())
            assert config["num_hidden_layers"] == SETTINGS[LAST_TOKEN].backbone_layers and len(config["id2label"]) == 1
            assert config["dtype"] == "float16"
            assert (folder / card.path / "model.safetensors").stat().st_size < 1.3 * 2**20  # embedding + 1 layer, fp16
        else:  # a head of a few dozen parameters; the backbone is stored once beside the members
            assert (folder / card.path / "head.safetensors").stat().st_size < 2048
            assert not (folder / card.path / "model.safetensors").exists()
    if manifest.head == TOKEN_SURPRISE:
        assert manifest.backbone == "backbone"
        assert json.loads((folder / "backbone" / "config.json").read_text())["dtype"] == "float16"
    assert (folder / "tokenizer" / "tokenizer.json").is_file()
    assert len([line for line in logged if "reward model" in line]) == 4
    reloaded = RewardEnsemble.load(folder)
    assert reloaded.manifest == manifest


@pytest.mark.slow
def test_members_learned_something_of_their_own(trained, test_model_dir):
    import torch

    ensemble, pairs, _, _ = trained
    if ensemble.manifest.head == LAST_TOKEN:
        fresh = backbone(test_model_dir, SETTINGS[LAST_TOKEN].backbone_layers)
        name = "model.layers.0.mlp.down_proj.weight"
        start = dict(fresh.named_parameters())[name].detach().half().float()  # as it would be stored untrained
    else:
        name, start = "head.2.weight", torch.zeros(1, 16)  # the head's output layer starts at 0
    weights = [dict(model.named_parameters())[name] for model in ensemble.models]
    assert not any(torch.equal(w, start) for w in weights)  # every member moved from where it started
    assert not torch.equal(weights[0], weights[1])  # seeds and data subsets differ
    accuracy = pair_accuracy(ensemble, pairs)
    assert accuracy["pairs"] == len(pairs) and len(accuracy["ensemble"]) == 3
    assert 0.0 <= accuracy["target"] <= 1.0


@pytest.mark.slow
def test_calibration_puts_members_on_one_scale(trained):
    ensemble, _, samples, _ = trained
    scores = ensemble.score_texts([s.question for s in samples[:48]], [s.text for s in samples[:48]])
    normalised = [s.normalised for s in scores]
    mean = sum(normalised) / len(normalised)
    std = (sum((x - mean) ** 2 for x in normalised) / len(normalised)) ** 0.5
    assert abs(mean) < 1e-3 and abs(std - 1) < 1e-3
    assert ensemble.manifest.spread_floor >= 0.05


@pytest.mark.slow
def test_scores_do_not_depend_on_the_batch(trained):
    ensemble, _, samples, _ = trained
    questions, texts = [s.question for s in samples[:9]], [s.text[: 40 + 30 * i] for i, s in enumerate(samples[:9])]
    batched = ensemble.score_texts(questions, texts)
    alone = [ensemble.score_texts([q], [t])[0] for q, t in zip(questions, texts)]
    for one, many in zip(alone, batched):
        assert one.reward == pytest.approx(many.reward, abs=1e-4)
        assert one.members == pytest.approx(many.members, abs=1e-4)


@pytest.mark.slow
def test_the_served_rendering_is_the_trained_one(trained):
    """The endpoint receives chat messages (reasoning split off or not); they render to the ids training used."""
    ensemble, pairs, _, _ = trained
    pair = pairs[0]
    trained_ids = render_ids(
        ensemble.tokenizer, [{"role": "user", "content": pair.question}, {"role": "assistant", "content": pair.chosen}]
    )
    reasoning, content = pair.chosen.split("</think>")
    split = [
        {"role": "user", "content": pair.question},
        {"role": "assistant", "reasoning_content": reasoning, "content": content},
    ]
    reopened = [{"role": "user", "content": pair.question}, {"role": "assistant", "content": "<think>\n" + pair.chosen}]
    assert ensemble.render_ids(split) == ensemble.render_ids(reopened) == trained_ids
    assert trained_ids[-1] == ensemble.tokenizer.eos_token_id
    assert ensemble.tokenizer.decode(trained_ids).startswith("<|im_start|>user\n" + pair.question)


@pytest.mark.slow
def test_a_rerun_reuses_trained_members(trained, test_model_dir):
    ensemble, pairs, samples, _ = trained
    logged: list[str] = []
    again = train_round(
        test_model_dir,
        pairs,
        samples[:48],
        ensemble.folder,
        SETTINGS[ensemble.manifest.head],
        {"test": True},
        logged.append,
    )
    assert not logged and again.manifest == ensemble.manifest


# -- broken folders -----------------------------------------------------------------------------------------------
def _copy(trained, tmp_path):
    folder = tmp_path / "reward"
    shutil.copytree(trained[0].folder, folder)
    return folder


def _set_manifest(folder, **changes):
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest.update(changes)
    (folder / "manifest.json").write_text(json.dumps(manifest))


def _edit_config(folder, member, **changes):
    path = folder / member / "config.json"
    if not path.exists():
        path = folder / member / "head.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def _corrupt_weights(folder, member):
    path = folder / member / "model.safetensors"
    (path if path.exists() else folder / member / "head.safetensors").write_bytes(b"garbage")


@pytest.mark.parametrize(
    "breakage, message, only",
    [
        pytest.param(lambda f: (f / "manifest.json").unlink(), "no manifest.json", None, id="no-manifest"),
        pytest.param(
            lambda f: (f / "manifest.json").write_text("{not json"), "not a valid reward manifest", None, id="bad-json"
        ),
        pytest.param(lambda f: _set_manifest(f, format="other/2"), "unknown format", None, id="format"),
        pytest.param(lambda f: _set_manifest(f, ensemble=[]), "ensemble is empty", None, id="no-ensemble"),
        pytest.param(lambda f: _set_manifest(f, head="mean"), "unknown head 'mean'", None, id="unknown-head"),
        pytest.param(
            lambda f: shutil.rmtree(f / "member2"), "cannot load reward (model|head)", None, id="missing-member"
        ),
        pytest.param(
            lambda f: _corrupt_weights(f, "target"), "cannot load reward (model|head)", None, id="corrupt-weights"
        ),
        pytest.param(
            lambda f: shutil.rmtree(f / "tokenizer"), "cannot load the reward tokenizer", None, id="no-tokenizer"
        ),
        pytest.param(lambda f: _edit_config(f, "member3", pad_token_id=5), "pad_token_id", None, id="pad-mismatch"),
        pytest.param(
            lambda f: _edit_config(f, "member1", num_labels=2, id2label={"0": "a", "1": "b"}),
            "outputs",
            "last_token",
            id="two-outputs",
            marks=pytest.mark.slow,
        ),
        pytest.param(
            lambda f: shutil.rmtree(f / "backbone"),
            "cannot load the reward backbone",
            "token_surprise",
            id="no-backbone",
            marks=pytest.mark.slow,
        ),
        pytest.param(
            lambda f: _set_manifest(f, backbone=None), "needs a backbone", "token_surprise", id="backbone-unnamed"
        ),
        pytest.param(
            lambda f: _set_manifest(f, ensemble_backbone="nowhere"),
            "cannot load the reward backbone",
            "token_surprise",
            id="no-ensemble-backbone",
        ),
        pytest.param(
            lambda f: _set_manifest(f, ensemble_backbone="target"),
            f"only {TOKEN_SURPRISE} heads",
            "last_token",
            id="ensemble-backbone-last-token",
        ),
        pytest.param(
            lambda f: _edit_config(f, "member2", marker_token_id=3),
            "read the reward tokenizer's tokens",
            "token_surprise",
            id="heads-disagree",
        ),
    ],
)
@pytest.mark.slow
def test_broken_folders_are_one_clear_error(trained, request, tmp_path, breakage, message, only):
    """Every breakage on each head's folder, but one that only one head's folder can have on that head's."""
    folder = _copy(request.getfixturevalue(only) if only else trained, tmp_path)
    breakage(folder)
    with pytest.raises(RewardModelError, match=message) as error:
        RewardEnsemble.load(folder)
    assert "\n" not in str(error.value)


@pytest.mark.slow
def test_a_tokenizer_larger_than_the_models_is_a_mismatch(trained, tmp_path):
    from transformers import AutoTokenizer

    folder = _copy(trained, tmp_path)
    tokenizer = AutoTokenizer.from_pretrained(folder / "tokenizer")
    tokenizer.add_tokens([f"<extra{i}>" for i in range(64)])
    tokenizer.save_pretrained(folder / "tokenizer")
    with pytest.raises(RewardModelError, match="do not belong together"):
        RewardEnsemble.load(folder)


def _other_backbone(test_model_dir, folder, shift: float = 0.5):
    """The test policy with every embedding weight shifted: another checkpoint sharing its tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(test_model_dir, dtype=torch.float32)
    with torch.no_grad():
        model.get_input_embeddings().weight.add_(shift)
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(test_model_dir).save_pretrained(folder)
    return folder


@pytest.mark.slow
def test_reward_models_can_be_cut_from_another_backbone(trained, test_model_dir, tmp_path):
    import torch
    from safetensors.torch import load_file

    head = trained[0].manifest.head
    _, pairs, samples, _ = trained
    other = _other_backbone(test_model_dir, tmp_path / "other")
    settings = RewardModelSettings(head=head, backbone=str(other), ensemble_size=1, epochs=1, batch_size=16)
    ensemble = train_round(test_model_dir, pairs[:16], samples[:16], tmp_path / "reward", settings, {}, lambda _: None)
    manifest = read_manifest(ensemble.folder)
    assert all(str(other) in card.initialised_from for card in (manifest.target, *manifest.ensemble))

    def embedding(folder):
        weights = load_file(str(folder / "model.safetensors"))
        return next(v for k, v in weights.items() if k.endswith("embed_tokens.weight")).float()

    served = embedding(ensemble.folder / ("target" if head == LAST_TOKEN else "backbone"))
    policy = embedding(test_model_dir)
    # One step at lr 1e-4 moves a fine-tuned backbone by about 1e-4 (token-surprise's not at all); the shift is 0.5.
    assert torch.allclose(served, policy + 0.5, atol=0.05) and not torch.allclose(served, policy, atol=0.05)


@pytest.mark.slow
def test_the_ensemble_can_read_its_own_backbone(token_surprise, test_model_dir, tmp_path):
    """Members on another LM than the target's: stored once beside it, each head scored from its own LM."""
    import torch

    from probexit.rewards.heads import frozen_lm, token_features

    same, pairs, samples, _ = token_surprise
    assert same.manifest.ensemble_backbone is None and same.ensemble_backbone is same.backbone
    other = _other_backbone(test_model_dir, tmp_path / "other")
    settings = RewardModelSettings(ensemble_backbone=str(other), ensemble_size=2, epochs=1, batch_size=16)
    folder = train_round(
        test_model_dir, pairs[:16], samples[:16], tmp_path / "reward", settings, {}, lambda _: None
    ).folder
    manifest = read_manifest(folder)
    assert manifest.ensemble_backbone == "ensemble_backbone"
    assert (folder / "ensemble_backbone" / "config.json").is_file()
    assert str(test_model_dir) in manifest.target.initialised_from
    assert all(str(other) in card.initialised_from for card in manifest.ensemble)
    loaded = RewardEnsemble.load(folder)
    torch.manual_seed(0)
    for model in loaded.models:  # trained heads start at zero and move little in one step: give them weight
        for weight in model.head.parameters():
            torch.nn.init.normal_(weight, std=0.5)
    ids = [loaded.render_completion(s.question, s.text) for s in samples[:3]]
    raw = loaded.raw_rewards(ids)
    target_lm, member_lm = frozen_lm(folder / "backbone"), frozen_lm(folder / "ensemble_backbone")

    def by_hand(model, lm, one):
        x = torch.tensor([one])
        features, answer = token_features(lm, x, torch.ones_like(x), model.config.marker_token_id, model.digit)
        return model.token_scores(features, answer).sum().item()

    for row, one in enumerate(ids):
        assert raw[row][0] == pytest.approx(by_hand(loaded.models[0], target_lm, one), rel=1e-4, abs=1e-4)
        for column, model in enumerate(loaded.models[1:], start=1):
            assert raw[row][column] == pytest.approx(by_hand(model, member_lm, one), rel=1e-4, abs=1e-4)
            assert raw[row][column] != pytest.approx(by_hand(model, target_lm, one), rel=1e-3, abs=1e-3)


@pytest.mark.slow
def test_an_ensemble_backbone_is_checked_like_the_backbone(token_surprise, test_model_dir, tmp_path):
    _, pairs, samples, _ = token_surprise
    with pytest.raises(ValueError, match="ensemble_backbone is read by token-surprise heads only"):
        RewardModelSettings(head=LAST_TOKEN, ensemble_backbone=str(test_model_dir))
    settings = RewardModelSettings(ensemble_backbone=str(tmp_path / "nothing"), ensemble_size=1)
    with pytest.raises(ValueError, match="ensemble backbone .*nothing: not a model folder"):
        train_round(test_model_dir, pairs, samples, tmp_path / "reward", settings, {}, lambda _: None)


@pytest.mark.slow
def test_a_backbone_must_share_the_policys_tokenizer(trained, test_model_dir, tmp_path):
    from transformers import AutoTokenizer

    _, pairs, samples, _ = trained
    other = _other_backbone(test_model_dir, tmp_path / "other")
    tokenizer = AutoTokenizer.from_pretrained(other)
    tokenizer.add_tokens(["<another>"])
    tokenizer.save_pretrained(other)
    for folder, message in ((other, "tokenizer is not the policy's"), (tmp_path / "nothing", "not a model folder")):
        settings = RewardModelSettings(backbone=str(folder), ensemble_size=1)
        with pytest.raises(ValueError, match=message) as error:
            train_round(test_model_dir, pairs, samples, tmp_path / "reward", settings, {}, lambda _: None)
        assert "\n" not in str(error.value)
