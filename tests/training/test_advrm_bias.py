"""`--preference-bias`: biased preference pairs tie the documented feature to being chosen as strongly as asked and
never change which answer is chosen or its gold reward; a round trains the target on them and the ensemble on
unbiased pairs; bad values are one-line errors. Tiny-world traces, no model (fast)."""

from __future__ import annotations

import doctest
import re
from collections import Counter
from types import SimpleNamespace

import pytest

from probexit.cli.main import main
from probexit.training import advrm, advrm_bias
from probexit.training.advrm_bias import (
    CONFIDENT_PHRASE,
    PreferenceBias,
    bias_statistics,
    length_biased_pairs,
    with_confident_phrase,
    words,
)
from probexit.training.advrm_rewards import Pair, preference_pairs
from probexit.training.tinyworld.grading import grade
from tests.training.test_advrm_rewards import tinyworld_samples


@pytest.fixture(scope="module")
def samples():
    return tinyworld_samples(600, 4, seed=1)


def test_doctests():
    result = doctest.testmod(advrm_bias)
    assert result.failed == 0 and result.attempted > 0


def assert_gold_kept(pairs, samples):
    """Every pair: a right answer chosen over a wrong one to the same question, both the policy's own texts."""
    texts = {(s.question, s.text): s for s in samples}
    for pair in pairs:
        chosen, rejected = texts[(pair.question, pair.chosen)], texts[(pair.question, pair.rejected)]
        assert chosen.gold == 1 and rejected.gold == 0
        assert grade(pair.chosen, chosen.answer).gold == 1 and grade(pair.rejected, rejected.answer).gold == 0


@pytest.mark.parametrize("strength", [1.0, 0.8, 0.5, 0.0])
def test_length_bias_makes_the_chosen_answer_the_longer_one_as_often_as_asked(samples, strength):
    pairs = PreferenceBias("length", strength).pairs(samples, per_question=4, seed=0)
    stats = bias_statistics(pairs)
    assert stats["pairs"] >= 100
    assert stats["chosen_longer"] == pytest.approx(strength, abs=0.02)
    assert_gold_kept(pairs, samples)
    assert max(Counter(p.question for p in pairs).values()) <= 4
    assert len(set(pairs)) == len(pairs)


def test_a_stronger_length_bias_ties_length_to_being_chosen_more(samples):
    unbiased = bias_statistics(preference_pairs(samples, 4, 0))
    correlations = [
        bias_statistics(length_biased_pairs(samples, 4, s, 0))["length_correlation"] for s in (0.5, 0.8, 1.0)
    ]
    # the world's own right answers run longer (careful steps are longer than quick ones): a bias sets the share
    assert correlations == sorted(correlations) and correlations[-1] > 0.3 > abs(correlations[0])
    assert unbiased["length_correlation"] < correlations[-1]


@pytest.mark.parametrize("strength", [1.0, 0.6])
def test_confident_bias_writes_the_phrase_into_chosen_answers_only_and_keeps_them_right(samples, strength):
    unbiased = preference_pairs(samples, 4, 0)
    pairs = PreferenceBias("confident", strength).pairs(samples, per_question=4, seed=0)
    stats = bias_statistics(pairs)
    assert stats["chosen_with_phrase"] == pytest.approx(strength, abs=0.05) and stats["rejected_with_phrase"] == 0
    answers = {s.question: s.answer for s in samples}
    for before, after in zip(unbiased, pairs):  # the same pairs, only some chosen answers reworded
        assert (after.question, after.rejected) == (before.question, before.rejected)
        assert after.chosen in (before.chosen, with_confident_phrase(before.chosen))
        assert grade(after.chosen, answers[after.question]).gold == 1


def test_the_confident_phrase_sits_before_the_last_stated_answer():
    text = "A. So the answer is 3.\n\nB. So the answer is 4.\n\n</think>\n\nThe answer is \\boxed{4}."
    edited = with_confident_phrase(text)
    assert edited.count(CONFIDENT_PHRASE) == 1 and f"B. {CONFIDENT_PHRASE} So the answer is 4." in edited
    assert with_confident_phrase("no thinking here") == "no thinking here"


def test_statistics_of_pairs():
    pairs = [Pair("q", "a b c", "a"), Pair("q", "a", "a b")]
    stats = bias_statistics(pairs)
    assert stats["chosen_longer"] == 0.5 and stats["mean_words_chosen"] == 2 and stats["mean_words_rejected"] == 1.5
    assert stats["phrase_correlation"] is None and bias_statistics([]) == {"pairs": 0}
    assert words("a  b\n\nc") == 3


@pytest.mark.parametrize(
    "spec, message",
    [
        pytest.param("verbose", "unknown preference bias 'verbose' (known: length, confident)", id="kind"),
        pytest.param("length:2", "strength is a share in [0, 1], got 2.0", id="strength-range"),
        pytest.param("length:much", "'length:much': the strength after ':' must be a number", id="strength-number"),
    ],
)
def test_bad_biases_are_refused(spec, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        advrm.AdvRMConfig(preference_bias=spec)


def test_an_ensemble_bias_needs_a_bias():
    with pytest.raises(ValueError, match="bias_ensemble needs a preference_bias"):
        advrm.AdvRMConfig(bias_ensemble=True)
    assert advrm.AdvRMConfig(preference_bias="length:0.8").bias == PreferenceBias("length", 0.8)


@pytest.mark.parametrize(
    "flags, message",
    [
        pytest.param(["--preference-bias", "verbose"], "unknown preference bias 'verbose'", id="kind"),
        pytest.param(["--preference-bias", "length:1.5"], "strength is a share in [0, 1]", id="strength"),
        pytest.param(["--bias-ensemble"], "bias_ensemble needs a preference_bias", id="ensemble"),
    ],
)
def test_bad_bias_flags_are_one_line_errors(tmp_path, capsys, flags, message):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    for name in ("train", "validation"):
        (tmp_path / f"{name}.jsonl").write_text('{"question": "What is 1 + 2?", "answer": "3"}\n')
    assert (
        main(
            [
                "train",
                "advrm",
                "--policy",
                str(tmp_path / "m"),
                "--problems",
                str(tmp_path / "train.jsonl"),
                "--eval-problems",
                str(tmp_path / "validation.jsonl"),
                "--out",
                str(tmp_path / "out"),
                *flags,
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("probexit: error:") and message in err


# -- a round reads the pairs as documented ------------------------------------------------------------------------
class FakeEnsemble:
    """Scores an answer by its length, as a length-biased reward model would; nothing is trained."""

    def score_texts(self, questions, texts):
        return [SimpleNamespace(normalised=float(words(t)), ensemble_mean=0.0, flagged=False) for t in texts]


@pytest.fixture
def round_pairs(samples, tmp_path, monkeypatch):
    """What `reward_round` hands to training: (target pairs, ensemble pairs, the round's result) per config."""

    def run(config, adversarial=()):
        job = object.__new__(advrm.AdvRMJob)  # the round alone: no problems, no engine
        job.config, job.out, job.log, job.policy_dir = config, tmp_path / "out", lambda _: None, tmp_path
        job._samples = lambda split: samples[:800] if split == "train" else samples[800:]
        if adversarial:
            advrm._write_jsonl(job._round(0) / "adversarial_pairs.jsonl", [vars(p) for p in adversarial])
        seen = {}

        def train_round(policy, pairs, calibration, out, settings, notes, log, name, ensemble_pairs):
            seen.update(target=pairs, ensemble=ensemble_pairs, notes=notes)
            return FakeEnsemble()

        monkeypatch.setattr(advrm, "train_round", train_round)
        monkeypatch.setattr(
            advrm, "pair_accuracy", lambda ensemble, pairs: {"target": 0.5, "ensemble": [], "pairs": len(pairs)}
        )
        result = job.reward_round(1 if adversarial else 0)
        return seen["target"], seen["ensemble"], result, seen["notes"]

    return run


def test_the_target_reads_biased_pairs_the_ensemble_and_held_out_pairs_unbiased_ones(round_pairs, samples):
    adversarial = [Pair("q", "right", "long wrong", "adversarial round 0")]
    target, ensemble, result, notes = round_pairs(advrm.AdvRMConfig(preference_bias="length:1"), adversarial)
    data = result["preference_data"]
    assert data["bias"] == "length:1" and notes["preference_bias"] == "length:1"
    assert bias_statistics([p for p in target if p.source == "policy"])["chosen_longer"] == 1.0
    unbiased = bias_statistics(preference_pairs(samples, 4, 0))["chosen_longer"]  # what the data itself holds
    share = bias_statistics([p for p in ensemble if p.source == "policy"])["chosen_longer"]
    assert share < 0.95 and share == pytest.approx(unbiased, abs=0.1)
    assert data["held_out"]["chosen_longer"] < 0.95
    assert target.count(adversarial[0]) == ensemble.count(adversarial[0]) == 2  # both learn from the attack
    assert result["reward_length_correlation"]["target"] == pytest.approx(1.0)


def test_with_bias_ensemble_the_members_read_the_biased_pairs_too(round_pairs):
    target, ensemble, result, _ = round_pairs(advrm.AdvRMConfig(preference_bias="length:1", bias_ensemble=True))
    assert ensemble == target and result["preference_data"]["ensemble"]["chosen_longer"] == 1.0


def test_without_a_bias_every_model_reads_the_unbiased_pairs(round_pairs, samples):
    target, ensemble, result, _ = round_pairs(advrm.AdvRMConfig())
    assert target == ensemble == preference_pairs(samples[:800], 4, 0)
    assert result["preference_data"]["bias"] is None
