"""The policy's model card: its behaviour on test problems, sampled through vLLM as the server samples.

Beside accuracy and length it measures what early exit needs from a world: wrong intermediate answers,
redundant checks after right ones, the saving an oracle could make, whether re-checking depends on
correctness, and whether the boundary hidden states carry that correctness (a logistic-regression probe
trained on validation traces, scored on test traces) better than two signals that need no training.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from probexit.engine.constants import EVAL_TEMPERATURE, EVAL_TOP_P
from probexit.engine.offline import OfflineCompletion, OfflineEngine
from probexit.probes.answers import final_answer, get_extractor
from probexit.probes.boundary import Boundary, BoundaryPolicy, BoundaryPolicyConfig
from probexit.probes.markers import split_thinking
from probexit.probes.rules import ExitSettings
from probexit.training.tinyworld.problems import Problem
from probexit.training.tinyworld.traces import PARAGRAPH_BREAK, TRACE_MAX_TOKENS

SAMPLING = {"temperature": EVAL_TEMPERATURE, "top_p": EVAL_TOP_P, "max_tokens": TRACE_MAX_TOKENS}


@dataclass
class LabelledBoundary:
    boundary: Boundary
    correct: bool
    continued: bool  # thinking went on after it
    min_logprob: float  # the chunk's lowest sampled-token log-probability
    hidden: list[float] | None
    end_prob: float | None
    previous_answers: list[str]


@dataclass
class Sample:
    problem: Problem
    generation: OfflineCompletion
    boundaries: list[LabelledBoundary]
    thinking_tokens: int
    final_answer: str | None

    @property
    def correct(self) -> bool:
        return self.final_answer == str(self.problem.answer)


def sample_problems(engine: OfflineEngine, problems: list[Problem], seed: int) -> list[Sample]:
    prompts = engine.chat_prompts([p.question for p in problems])
    generations = engine.generate(
        prompts, **SAMPLING, seed=seed, logprobs=True, settings=ExitSettings(rule="none", record=True)
    )
    policy = BoundaryPolicy(BoundaryPolicyConfig(), engine.tokenizer)
    return [label_sample(policy, problem, generation) for problem, generation in zip(problems, generations)]


def label_sample(policy: BoundaryPolicy, problem: Problem, generation: OfflineCompletion) -> Sample:
    ids = generation.token_ids
    boundaries = policy.segment(generation.prompt_ids, ids)
    recorded = generation.recorded()
    think_end = ids.index(policy.think_end_id) if policy.think_end_id in ids else len(ids)
    labelled, start, previous = [], 0, []
    for boundary in boundaries:
        position = boundary.token_index
        continued = position + 1 < len(ids) and ids[position + 1] != policy.think_end_id
        logprobs = (generation.logprobs or [0.0] * len(ids))[start : position + 1]
        record = recorded.get(position)
        labelled.append(
            LabelledBoundary(
                boundary,
                boundary.answer == str(problem.answer),
                continued,
                min(logprobs) if logprobs else 0.0,
                record.hidden if record else None,
                record.end_prob if record else None,
                list(previous),
            )
        )
        previous.append(boundary.answer)
        start = position + 1
    return Sample(problem, generation, labelled, think_end, final_answer(split_thinking(generation.text)[1]))


def text_features(boundary: LabelledBoundary) -> list[float]:
    """Text-only signals: where the boundary sits and whether it agrees with earlier answers."""
    previous = boundary.previous_answers
    return [
        boundary.boundary.paragraph_index,
        boundary.boundary.boundary_index,
        float(bool(previous) and previous[-1] == boundary.boundary.answer),
        float(boundary.boundary.answer in previous),
        float(len(set(previous))),
    ]


# The general reader of reasoning prose: the results it misses are where only an exit at any paragraph can help.
_GENERAL_READER = get_extractor(("reasoning",))


def _last_paragraph(chunk: str) -> str:
    return chunk.rstrip("\n").rsplit(PARAGRAPH_BREAK, 1)[-1] + PARAGRAPH_BREAK


def behaviour_metrics(samples: list[Sample]) -> dict:
    n = len(samples)
    after_wrong = [b.continued for s in samples for b in s.boundaries if not b.correct]
    after_right = [b.continued for s in samples for b in s.boundaries if b.correct]
    saved = total = 0
    redundant = 0
    for sample in samples:
        first_right = next((b for b in sample.boundaries if b.correct), None)
        if first_right is not None and first_right is not sample.boundaries[-1]:
            redundant += 1
        if sample.correct and first_right is not None:
            saved += max(0, sample.thinking_tokens - (first_right.boundary.token_index + 1))
            total += sample.thinking_tokens
    stated = [b for s in samples for b in s.boundaries]
    missed = sum(_GENERAL_READER.extract(_last_paragraph(b.boundary.chunk_text)) != b.boundary.answer for b in stated)
    paragraphs = sum(split_thinking(s.generation.text)[0].count(PARAGRAPH_BREAK) for s in samples)
    return {
        "n_problems": n,
        "accuracy": sum(s.correct for s in samples) / n,
        # How the thinking reads: paragraphs in all, the share that state no result for the whole problem (an
        # opening, the first half of an attempt), and the share of stated results a general prose reader misses.
        "mean_paragraphs": paragraphs / n,
        "frac_paragraphs_without_result": 1.0 - len(stated) / max(1, paragraphs),
        "frac_results_missed_by_reasoning_reader": missed / max(1, len(stated)),
        "mean_reasoning_tokens": float(np.mean([s.thinking_tokens for s in samples])),
        "frac_traces_with_wrong_intermediate": sum(any(not b.correct for b in s.boundaries) for s in samples) / n,
        "frac_traces_with_redundant_checks": redundant / n,
        "oracle_savings_pct": 100.0 * saved / max(1, total),
        "recheck_rate_after_wrong": float(np.mean(after_wrong)) if after_wrong else 0.0,
        "recheck_rate_after_right": float(np.mean(after_right)) if after_right else 0.0,
        "n_boundaries": len(after_wrong) + len(after_right),
        "boundary_accuracy": len(after_right) / max(1, len(after_wrong) + len(after_right)),
    }


def signal_metrics(train: list[Sample], test: list[Sample]) -> dict:
    """ROC-AUC for "this intermediate answer is right" on held-out boundaries."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def rows(samples):
        return [b for s in samples for b in s.boundaries if b.hidden is not None]

    train_rows, test_rows = rows(train), rows(test)
    y_train = np.array([b.correct for b in train_rows])
    y_test = np.array([b.correct for b in test_rows])
    if len(set(y_train)) < 2 or len(set(y_test)) < 2:
        raise ValueError("the signal check needs right and wrong intermediate answers in both splits")

    def fitted_auc(features) -> float:
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
        model.fit(np.array([features(b) for b in train_rows]), y_train)
        return float(roc_auc_score(y_test, model.predict_proba(np.array([features(b) for b in test_rows]))[:, 1]))

    return {
        "probe_signal_auc": fitted_auc(lambda b: b.hidden),
        "minlogprob_auc": float(roc_auc_score(y_test, [b.min_logprob for b in test_rows])),
        "text_baseline_auc": fitted_auc(text_features),
        "end_prob_auc": float(roc_auc_score(y_test, [b.end_prob or 0.0 for b in test_rows])),
        "n_signal_train": len(train_rows),
        "n_signal_test": len(test_rows),
    }
