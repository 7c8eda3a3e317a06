"""The card's measurements on the session engine (40 test problems), and its arithmetic on a fixed trace."""

import pytest

from probexit.engine.offline import OfflineCompletion
from probexit.probes.boundary import BoundaryPolicy, BoundaryPolicyConfig
from probexit.training.tinyworld.card import behaviour_metrics, label_sample, sample_problems, signal_metrics
from probexit.training.tinyworld.problems import parse_question
from tests.conftest import uncertain_problems


@pytest.mark.slow
def test_metrics_of_a_known_trace(offline_engine):
    tokenizer = offline_engine.tokenizer
    policy = BoundaryPolicy(BoundaryPolicyConfig(), tokenizer)
    problem = parse_question("What is 3 - 14 + 7?")  # -4; the quick slip gives 18
    prompt = tokenizer.encode(offline_engine.chat_prompts([problem.question])[0])
    text = (
        "Okay, let's figure out 3 - 14 + 7.\n\n"
        "Quick mental math. 3 - 14 is 11, plus 7 is 18. So the answer is 18.\n\n"
        "Wait, that doesn't look right. Let me redo it step by step. 3 - 14 = -11. -11 + 7 = -4. "
        "So the answer is -4.\n\n"
        "Let me double-check quickly. 3 - 14 = -11. -11 + 7 = -4. So I get minus four.\n\n"
        "</think>\n\nThe answer is \\boxed{-4}."
    )
    ids = tokenizer.encode(text)
    sample = label_sample(policy, problem, OfflineCompletion(prompt, ids, text, [-0.1] * len(ids), "stop"))
    assert [b.correct for b in sample.boundaries] == [False, True, True]
    assert [b.continued for b in sample.boundaries] == [True, True, False]
    assert sample.correct and sample.final_answer == "-4"
    metrics = behaviour_metrics([sample])
    assert metrics["accuracy"] == 1.0 and metrics["frac_traces_with_wrong_intermediate"] == 1.0
    assert metrics["frac_traces_with_redundant_checks"] == 1.0
    assert metrics["recheck_rate_after_wrong"] == 1.0 and metrics["recheck_rate_after_right"] == 0.5
    assert metrics["mean_paragraphs"] == 4 and metrics["frac_paragraphs_without_result"] == 0.25
    assert metrics["frac_results_missed_by_reasoning_reader"] == pytest.approx(1 / 3)  # the result in words
    saved = sample.thinking_tokens - (sample.boundaries[1].boundary.token_index + 1)
    assert metrics["oracle_savings_pct"] == pytest.approx(100 * saved / sample.thinking_tokens)


@pytest.mark.slow
def test_card_on_the_engine(offline_engine):
    problems = uncertain_problems(80, seed=9)
    first = sample_problems(offline_engine, problems[:40], seed=1)
    second = sample_problems(offline_engine, problems[40:], seed=2)
    metrics = behaviour_metrics(second)
    assert 0.0 <= metrics["accuracy"] <= 1.0 and metrics["n_boundaries"] > 0
    assert all(b.hidden is not None for s in second for b in s.boundaries)  # record mode saw every boundary
    signals = signal_metrics(first, second)
    for key in ("probe_signal_auc", "minlogprob_auc", "text_baseline_auc", "end_prob_auc"):
        assert 0.0 <= signals[key] <= 1.0
