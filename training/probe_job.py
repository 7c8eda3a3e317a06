"""`probexit train probe`: from the model's own traces to a calibrated probe with a risk guarantee.

1. sample k traces per problem through the engine path the server uses (cached; a rerun resumes);
2. segment them with the shared boundary policy and label each intermediate answer against the gold one;
3. take each boundary's hidden state as the engine recorded it;
4. fit linear and MLP probes on a grid, split by problem, pick the best on validation, and rescale its
   logit on validation (Platt) so that its scores are calibrated probabilities;
5. report ROC-AUC, ECE, Brier, accuracy and a reliability diagram on held-out problems, beside signals
   that need no probe (chunk log-probabilities, the model's own P(</think>), text features);
6. certify thresholds for tolerated harm rates (answers early exit turns from right into wrong) on a
   calibration split (Learn-then-Test), and report the harm each realises on the calibration and test splits;
7. write the probe in the format `probexit serve --probe` loads.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from probexit.probes.answers import final_answer
from probexit.probes.boundary import BoundaryPolicy, BoundaryPolicyConfig
from probexit.probes.equivalence import EQUIVALENCES, Equivalence
from probexit.probes.features import ANSWER_HISTORY, POSITION, boundary_features, feature_count
from probexit.probes.fingerprint import model_identity
from probexit.probes.markers import THINK_END, split_thinking
from probexit.probes.probe import FORCED_LABELS, LABEL_KINDS, READER_LABELS, CalibrationPoint, Probe, ProbeConfig
from probexit.training.forced_answers import force_answers
from probexit.training.probe_fit import (
    FitGrid,
    expected_calibration_error,
    fit_grid,
    platt_calibrate,
    predict,
    reliability_diagram,
)
from probexit.training.problem_files import ProblemRecord
from probexit.training.risk import (
    DEFAULT_DELTA,
    DEFAULT_RISKS,
    NEVER,
    TraceScores,
    calibration_table,
    outcomes,
)
from probexit.training.trace_cache import SamplingConfig, TraceRecord, sample_traces, seconds_before

SPLITS = {"train": 0.6, "validation": 0.1, "calibration": 0.15, "test": 0.15}
TEXT_FEATURES = (POSITION, ANSWER_HISTORY)  # the text-only baseline's inputs


@dataclass(frozen=True)
class ProbeJobConfig:
    labeler: str = field(
        default="math",
        metadata={
            "choices": EQUIVALENCES,
            "help": "How an intermediate answer is compared with the gold one: math "
            "(math-verify), exact (normalised text) or judge (an LLM).",
        },
    )
    judge_url: str | None = field(
        default=None,
        metadata={
            "help": "OpenAI-compatible endpoint of the LLM judge (labeler judge; key in PROBEXIT_JUDGE_API_KEY)."
        },
    )
    judge_model: str | None = field(default=None, metadata={"help": "The judge's model name (labeler judge)."})
    labels: str = field(
        default=READER_LABELS,
        metadata={
            "choices": LABEL_KINDS,
            "help": "What makes a boundary right: reader (the answer read in its chunk equals the gold one) or "
            "forced (the answer the model gives when its thinking is ended there, what the user gets).",
        },
    )
    inputs: tuple[str, ...] = field(
        default=(),
        metadata={
            "flag": "--probe-inputs",
            "help": "What the probe reads beside the boundary's hidden state (comma-separated, in order): "
            "end_of_thinking (the model's own P(</think>)), position, answer_history. Default: nothing else.",
        },
    )
    forced_answer_tokens: int = field(
        default=64, metadata={"help": "With --labels forced: the longest answer generated after a forced end."}
    )
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    grid: FitGrid = field(default_factory=FitGrid)
    boundary_policy: BoundaryPolicyConfig = field(default_factory=BoundaryPolicyConfig)
    risks: tuple[float, ...] = DEFAULT_RISKS  # tolerated harm rates, fixed before any data
    risk_delta: float = DEFAULT_DELTA  # each certificate fails with probability at most this
    # The probe's default is the most-saving threshold certified for a harm rate of at most default_max_risk whose
    # accuracy change on the calibration split loses at most default_max_loss. Harm alone would be too strict a
    # guide: exiting also rescues answers that thinking on would have spoilt, so a threshold certified for 2% harm
    # can lose nothing, while one certified for 0.5% may have to forgo a third of the saving.
    default_max_risk: float = 0.02
    default_max_loss: float = 0.005
    split_seed: int = 0


@dataclass
class LabelledBoundaries:
    """Every boundary of a set of traces, as arrays, with the trace it came from."""

    hidden: torch.Tensor  # (N, H) float32
    correct: np.ndarray  # (N,) bool
    trace: np.ndarray  # (N,) index into the traces list
    final_correct: np.ndarray  # (T,) bool: each trace's own final answer (thinking to its end) is right
    min_logprob: np.ndarray
    mean_logprob: np.ndarray
    end_prob: np.ndarray
    text: np.ndarray  # (N, 5) text-only features
    reader_answered: np.ndarray  # (N,) bool: a text reader read an answer in the boundary's chunk
    reader_correct: np.ndarray  # (N,) bool: that answer was right (False where none was read)
    features: torch.Tensor  # (N, K) the probe's inputs beside the hidden state (K = 0: none)

    @property
    def probe_inputs(self) -> torch.Tensor:
        """(N, H + K): what the probe reads, the hidden state followed by its other inputs."""
        return torch.cat([self.hidden, self.features], dim=1)


def run_probe_job(
    engine,
    model_dir: Path,
    problems: list[ProblemRecord],
    equivalence: Equivalence,
    out: Path,
    config: ProbeJobConfig,
    model_name: str | None = None,
) -> dict:
    started, started_at = time.monotonic(), time.time()
    out.mkdir(parents=True, exist_ok=True)
    policy = BoundaryPolicy(config.boundary_policy, engine.tokenizer)
    traces = sample_traces(
        engine,
        policy,
        [p.question for p in problems],
        config.sampling,
        out / "traces",
        model_identity(model_dir).fingerprint,
    )
    forced = None
    if config.labels == FORCED_LABELS:
        forced = force_answers(engine, traces, policy.think_end_id, config.forced_answer_tokens, out / "forced")
    forced_by_trace = {(t.problem, t.sample): answers for t, answers in zip(traces, forced.answers)} if forced else None
    splits = split_by_problem(len(problems), config.split_seed)
    by_split = {name: [t for t in traces if t.problem in members] for name, members in splits.items()}
    think_end = config.boundary_policy.think_end
    data = {
        name: label(split, problems, equivalence, think_end, forced_by_trace, config.inputs)
        for name, split in by_split.items()
    }
    best, grid_summary = fit_grid(
        data["train"].probe_inputs,
        torch.tensor(data["train"].correct, dtype=torch.float32),
        data["validation"].probe_inputs,
        torch.tensor(data["validation"].correct, dtype=torch.float32),
        config.grid,
    )
    recalibration = platt_calibrate(
        best.model, data["validation"].probe_inputs, torch.tensor(data["validation"].correct, dtype=torch.float32)
    )
    scores = {name: predict(best.model, split.probe_inputs) for name, split in data.items()}
    requests = {name: trace_scores(data[name], scores[name]) for name in ("calibration", "test")}
    table = calibration_table(requests["calibration"], config.risks, config.risk_delta)
    for point in table:
        point["harm_test"] = outcomes(requests["test"], point["threshold"]).harm_rate
    metrics = evaluate(data, scores)
    metrics.update(
        baselines=baseline_aucs(data),
        grid=grid_summary,
        chosen=best.summary(),
        recalibration=recalibration,
        n_traces=len(traces),
        n_problems=len(problems),
        sampling=asdict(config.sampling),
        calibration=table,
        risk=risk_report(table, requests, config.risk_delta),
        boundaries=config.boundary_policy.mode,
        labels=config.labels,
        label_agreement=label_agreement(list(data.values())),
        **(
            {
                "forced_labels_cost": forced.cost(),
                "oracle_reach": oracle_reach([(by_split[name], data[name]) for name in data], policy.think_end_id),
            }
            if forced
            else {}
        ),
    )
    this_run = time.monotonic() - started
    earlier = sum(seconds_before(out / cache, started_at) for cache in ("traces", "forced"))
    metrics.update(wall_s=round(this_run + earlier, 1), wall_s_this_run=round(this_run, 1))
    reliability_diagram(
        data["test"].correct.astype(float),
        scores["test"],
        out / "reliability.png",
        f"probe on held-out problems (ECE {metrics['ece']:.3f})",
    )
    default_risk, default_threshold = default_operating_point(
        table, metrics["risk"]["calibration"]["at_max_risk"], config.default_max_risk, config.default_max_loss
    )
    metrics.update(default_threshold=default_threshold, default_threshold_max_risk=default_risk)
    probe_config = ProbeConfig(
        kind="linear" if best.config.width == 0 else "mlp",
        hidden_size=data["train"].hidden.shape[1],
        width=best.config.width,
        model=model_identity(model_dir, model_name),
        boundary_policy=config.boundary_policy,
        labels=config.labels,
        inputs=config.inputs,
        default_threshold=default_threshold,
        calibration=[
            CalibrationPoint(p["max_risk"], p["threshold"], p["harm_calibration"], p["harm_test"]) for p in table
        ],
        calibration_method=f"learn-then-test on the harm rate, exact binomial p-values, fixed sequence, "
        f"delta={config.risk_delta}",
        training={k: metrics[k] for k in ("roc_auc", "ece", "brier", "n_train", "n_test")},
    )
    Probe(probe_config, best.model.weights(feature_count(config.inputs))).save(out / "probe")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def default_operating_point(
    table: list[dict], on_calibration: dict[str, dict], max_risk: float, max_loss: float
) -> tuple[float | None, float]:
    """(max_risk, threshold) the probe serves by default: of the levels certified for a harm rate of at most
    `max_risk`, the one with the lowest threshold (it exits soonest) whose accuracy change on the calibration split
    (`on_calibration`, by level) is a loss of at most `max_loss`; else the strictest level that certified a
    threshold at all (a probe that never fires would serve no purpose); else (None, NEVER).

    >>> table = [{"max_risk": 0.005, "threshold": 0.97}, {"max_risk": 0.02, "threshold": 0.56},
    ...          {"max_risk": 0.05, "threshold": 0.37}]
    >>> on_calibration = {"0.005": {"accuracy_change": 0.003}, "0.02": {"accuracy_change": -0.004},
    ...                   "0.05": {"accuracy_change": -0.03}}
    >>> default_operating_point(table, on_calibration, 0.02, 0.005)
    (0.02, 0.56)
    >>> default_operating_point(table, on_calibration, 0.02, 0.001)  # 0.02 loses 0.4 points: too many
    (0.005, 0.97)
    >>> default_operating_point([{"max_risk": 0.005, "threshold": NEVER}, {"max_risk": 0.1, "threshold": 0.7}],
    ...                         {"0.1": {"accuracy_change": -0.08}}, 0.02, 0.005)
    (0.1, 0.7)
    """
    certified = sorted((p for p in table if p["threshold"] < NEVER), key=lambda p: p["max_risk"])
    within = [
        p
        for p in certified
        if p["max_risk"] <= max_risk and on_calibration[str(p["max_risk"])]["accuracy_change"] >= -max_loss
    ]
    if within:
        chosen = min(within, key=lambda p: p["threshold"])
    elif certified:
        chosen = certified[0]
    else:
        return None, NEVER
    return chosen["max_risk"], chosen["threshold"]


def split_by_problem(n_problems: int, seed: int) -> dict[str, set[int]]:
    """Disjoint problem sets: no problem's traces sit in two splits."""
    order = list(range(n_problems))
    random.Random(seed).shuffle(order)
    splits, start = {}, 0
    names = list(SPLITS)
    for index, name in enumerate(names):
        size = n_problems - start if index == len(names) - 1 else max(1, round(SPLITS[name] * n_problems))
        splits[name] = set(order[start : start + size])
        start += size
    if any(not members for members in splits.values()):
        raise ValueError(f"{n_problems} problems are too few to split into {', '.join(names)}; give at least 20")
    return splits


def label(
    traces: list[TraceRecord],
    problems: list[ProblemRecord],
    equivalence: Equivalence,
    think_end: str = THINK_END,
    forced: dict[tuple[int, int], list[str | None]] | None = None,
    inputs: tuple[str, ...] = (),
) -> LabelledBoundaries:
    """Each boundary labelled right or wrong: by the answer its chunk states (reader labels), or, with `forced`
    answers per (problem, sample), by the answer the model gives when its thinking is ended there."""
    hidden, correct, trace_index, min_lp, mean_lp, end_prob, text = [], [], [], [], [], [], []
    reader_answered, reader_correct, features = [], [], []
    final_correct = [
        final_right(trace.text, problems[trace.problem].answer, equivalence, think_end) for trace in traces
    ]
    for index, trace in enumerate(traces):
        previous: list[str] = []
        gold = problems[trace.problem].answer
        user_answers = forced[(trace.problem, trace.sample)] if forced is not None else None
        for position, boundary in enumerate(trace.boundaries):
            hidden.append(boundary.hidden.float())
            read_right = boundary.answer is not None and equivalence.same(boundary.answer, gold)
            reader_answered.append(boundary.answer is not None)
            reader_correct.append(read_right)
            if user_answers is None:
                correct.append(read_right)
            else:
                correct.append(user_answers[position] is not None and equivalence.same(user_answers[position], gold))
            trace_index.append(index)
            min_lp.append(boundary.min_logprob)
            mean_lp.append(boundary.mean_logprob)
            end_prob.append(boundary.end_prob)
            known = {
                "paragraph_index": boundary.paragraph_index,
                "boundary_index": boundary.boundary_index,
                "thinking_tokens": boundary.thinking_tokens,
                "answer": boundary.answer,
                "previous_answers": previous,
                "end_prob": boundary.end_prob,
            }
            text.append(boundary_features(TEXT_FEATURES, **known))
            features.append(boundary_features(inputs, **known))
            if boundary.answer is not None:  # a paragraph boundary may state none
                previous.append(boundary.answer)
    if not hidden:
        raise ValueError(
            "no boundaries in these traces: the model never stated an intermediate answer the "
            "boundary policy recognises (check the answer extractors and the thinking markers; a "
            "real reasoning model wants --extractors reasoning)"
        )
    return LabelledBoundaries(
        torch.stack(hidden),
        np.array(correct, dtype=bool),
        np.array(trace_index),
        np.array(final_correct, dtype=bool),
        np.array(min_lp),
        np.array(mean_lp),
        np.array(end_prob),
        np.array(text, dtype=float),
        np.array(reader_answered, dtype=bool),
        np.array(reader_correct, dtype=bool),
        torch.tensor(features, dtype=torch.float32).reshape(len(hidden), feature_count(inputs)),
    )


def label_agreement(splits: list[LabelledBoundaries]) -> dict:
    """Where a reader read an answer: how often its label equals the one used (the same labels for reader labels;
    with forced labels, whether the answer the model gives there is right exactly when the one it stated is)."""
    answered = np.concatenate([s.reader_answered for s in splits])
    used = np.concatenate([s.correct for s in splits])[answered]
    read = np.concatenate([s.reader_correct for s in splits])[answered]
    return {
        "boundaries": int(sum(len(s.correct) for s in splits)),
        "with_a_read_answer": int(answered.sum()),
        "agreement": float((used == read).mean()) if answered.any() else None,
    }


def oracle_reach(splits: list[tuple[list[TraceRecord], LabelledBoundaries]], think_end_id: int) -> dict:
    """The oracle's saving (share of all thinking tokens) when it exits at the first boundary whose forced answer is
    right, against exiting only where a reader reads a right answer: the difference is the share of what is there
    to save that sits in paragraphs the reader cannot read, reachable only by a probe that decides without it.
    `splits`: each split's traces with their labelled boundaries (forced labels).

    >>> from probexit.probes.equivalence import MathEquivalence
    >>> from probexit.training.trace_cache import BoundaryRecord
    >>> def at(tokens, answer):
    ...     return BoundaryRecord(tokens, 0, 0, tokens, answer, torch.zeros(2), 0.5, -1.0, -0.5)
    >>> trace = TraceRecord(0, 0, [1], [5] * 99 + [7], "", "stop", [at(20, None), at(60, "4"), at(90, "4")])
    >>> data = label([trace], [ProblemRecord("What is 2 + 2?", "4")], MathEquivalence(), forced={(0, 0): ["4"] * 3})
    >>> oracle_reach([([trace], data)], 7)
    {'thinking_tokens': 99, 'saved_forced': 0.798, 'saved_reader': 0.3939, 'share_beyond_reader': 0.5063}
    """
    total = saved_forced = saved_reader = 0
    for traces, data in splits:
        for index, trace in enumerate(traces):
            ids = trace.token_ids
            thinking = ids.index(think_end_id) if think_end_id in ids else len(ids)
            at = np.array([b.thinking_tokens for b in trace.boundaries] + [thinking])
            rows = data.trace == index  # this trace's boundaries, in order
            first_forced = at[np.argmax(np.append(data.correct[rows], True))]
            first_read = at[np.argmax(np.append(data.reader_correct[rows], True))]
            total += thinking
            saved_forced += max(0, thinking - int(first_forced))
            saved_reader += max(0, thinking - int(first_read))
    return {
        "thinking_tokens": total,
        "saved_forced": round(saved_forced / max(1, total), 4),
        "saved_reader": round(saved_reader / max(1, total), 4),
        "share_beyond_reader": round(1 - saved_reader / saved_forced, 4) if saved_forced else None,
    }


def final_right(text: str, gold: str, equivalence: Equivalence, think_end: str = THINK_END) -> bool:
    """Whether a trace that thought to its end answered right (a trace cut off inside its thinking has no answer).

    >>> from probexit.probes.equivalence import MathEquivalence
    >>> final_right("So the answer is 4.\\n\\n</think>\\n\\nThe answer is \\\\boxed{4}.", "4", MathEquivalence())
    True
    >>> final_right("So the answer is 4.\\n\\n", "4", MathEquivalence())
    False
    """
    answer = final_answer(split_thinking(text, think_end)[1])
    return answer is not None and equivalence.same(answer, gold)


def trace_scores(data: LabelledBoundaries, scores: np.ndarray) -> list[TraceScores]:
    """Every trace of a split as one request, those that stated no intermediate answer included."""
    return [
        TraceScores(scores[data.trace == t], data.correct[data.trace == t], bool(data.final_correct[t]))
        for t in range(len(data.final_correct))
    ]


def risk_report(table: list[dict], requests: dict[str, list[TraceScores]], delta: float) -> dict:
    """Per split: the full traces' accuracy, and at each certified threshold what early exit does to it."""
    report = {
        "measure": "harm: the share of requests whose answer early exit turns from right into wrong",
        "delta": delta,
    }
    for name, traces in requests.items():
        report[name] = {
            "n_traces": len(traces),
            "full_trace_accuracy": float(np.mean([t.final_correct for t in traces])) if traces else 0.0,
            "at_max_risk": {
                str(p["max_risk"]): {"threshold": p["threshold"], **outcomes(traces, p["threshold"]).summary()}
                for p in table
            },
        }
    return report


def evaluate(data: dict[str, LabelledBoundaries], scores: dict[str, np.ndarray]) -> dict:
    from sklearn.metrics import brier_score_loss, roc_auc_score

    test, p = data["test"], scores["test"]
    y = test.correct.astype(float)
    if len(set(y)) < 2:
        raise ValueError("the test split holds only right (or only wrong) intermediate answers: ROC-AUC is undefined")
    return {
        "roc_auc": float(roc_auc_score(y, p)),
        "ece": expected_calibration_error(y, p),
        "brier": float(brier_score_loss(y, p)),
        "accuracy": float(((p >= 0.5) == test.correct).mean()),
        "positive_rate": float(y.mean()),
        "n_train": int(len(data["train"].correct)),
        "n_validation": int(len(data["validation"].correct)),
        "n_calibration": int(len(data["calibration"].correct)),
        "n_test": int(len(y)),
    }


def baseline_aucs(data: dict[str, LabelledBoundaries]) -> dict:
    """Signals that need no probe, on the same test boundaries (text features need a small fit)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    test, y = data["test"], data["test"].correct
    text_model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    text_model.fit(data["train"].text, data["train"].correct)
    return {
        "min_logprob_auc": float(roc_auc_score(y, test.min_logprob)),
        "mean_logprob_auc": float(roc_auc_score(y, test.mean_logprob)),
        "end_of_thinking_prob_auc": float(roc_auc_score(y, test.end_prob)),
        "text_features_auc": float(roc_auc_score(y, text_model.predict_proba(test.text)[:, 1])),
    }
