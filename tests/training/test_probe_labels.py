"""Labelling boundaries (no engine): reader and forced labels, and the probe's inputs beside the hidden state."""

import math

import torch

from probexit.probes.equivalence import MathEquivalence
from probexit.probes.features import feature_count
from probexit.training.probe_job import label, label_agreement
from probexit.training.problem_files import ProblemRecord
from probexit.training.trace_cache import BoundaryRecord, TraceRecord

PROBLEMS = [ProblemRecord("What is 2 + 2?", "4")]


def boundary(index: int, answer: str | None, end_prob: float = 0.5) -> BoundaryRecord:
    return BoundaryRecord(
        10 * index, index, index, 10 * index + 1, answer, torch.full((4,), float(index)), end_prob, -1.0, -0.5
    )


def trace() -> TraceRecord:
    text = "x\n\n</think>\n\nThe answer is \\boxed{4}."
    return TraceRecord(0, 0, [1], [2], text, "stop", [boundary(0, None, 0.1), boundary(1, "5"), boundary(2, "4", 0.9)])


def test_reader_labels_grade_the_answer_read_and_a_paragraph_without_one_is_wrong():
    data = label([trace()], PROBLEMS, MathEquivalence())
    assert data.correct.tolist() == [False, False, True] and data.final_correct.tolist() == [True]
    assert data.features.shape == (3, 0) and torch.equal(data.probe_inputs, data.hidden)


def test_forced_labels_grade_the_answer_the_model_gives_at_each_boundary():
    data = label([trace()], PROBLEMS, MathEquivalence(), forced={(0, 0): ["4", None, "4"]})
    assert data.correct.tolist() == [True, False, True]
    assert data.reader_correct.tolist() == [False, False, True] and data.reader_answered.tolist() == [False, True, True]
    assert label_agreement([data]) == {"boundaries": 3, "with_a_read_answer": 2, "agreement": 1.0}


def test_the_probe_reads_its_inputs_after_the_hidden_state():
    inputs = ("end_of_thinking", "answer_history")
    data = label([trace()], PROBLEMS, MathEquivalence(), inputs=inputs)
    assert data.probe_inputs.shape == (3, 4 + feature_count(inputs))
    last = data.features[2].tolist()
    assert math.isclose(last[0], math.log(0.9 / 0.1), rel_tol=1e-5)
    assert last[1:] == [1.0, 0.0, 0.0, 0.0, 1.0]  # "4" is read, differs from "5" before it, first time, 1 distinct
