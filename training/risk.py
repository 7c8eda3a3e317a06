"""Risk control: thresholds with a finite-sample guarantee on the rate of premature exits.

For a tolerated rate δ (the share of exits whose intermediate answer is wrong), Learn-then-Test (Angelopoulos
et al., 2021) picks the smallest threshold λ such that, with probability at least 1 - ε over the calibration
split, the premature-exit rate at every certified threshold is at most δ. Each threshold of a fixed grid
(0.99, 0.98, ..., 0.01) is one null hypothesis "the rate at λ exceeds δ", tested with the exact binomial
p-value P(Bin(n_exits, δ) <= n_wrong_exits) at level ε, from the most conservative down; the first failure
ends the sequence (fixed-sequence testing: no multiplicity correction, because the order is fixed before
the data are seen). A threshold with too few exits for even a flawless record to pass ((1 - δ)^n_exits > ε,
no exit at all included) gives no evidence either way: the sequence passes over it and never returns it.
Which thresholds are passed over depends on the scores alone, never on whether the answers were right, so
the guarantee stands; a single wrong exit among the few at the strictest thresholds cannot end it.

Why a fixed grid and not every observed score: above 0.99 only a handful of traces exit, and a p-value from
one or two exits can never fall below ε. Why a sequence and not a Bonferroni correction over the grid: its
per-test level (ε/100) needs far more calibration traces for the same δ. The exit simulated for a threshold
is the server's: the first boundary of a trace whose score reaches it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import binom

from probexit.probes.rules import NEVER

DEFAULT_RISKS = (0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3)
GRID = np.round(np.arange(0.99, 0.0, -0.01), 2)  # the hypotheses in testing order, fixed before any data


@dataclass(frozen=True)
class TraceScores:
    """One trace: its boundaries' probe scores and whether each intermediate answer was right."""

    scores: np.ndarray  # (B,)
    correct: np.ndarray  # (B,) bool


def exit_outcomes(traces: list[TraceScores], threshold: float) -> tuple[int, int]:
    """(exits, wrong exits) when each trace exits at its first boundary scoring >= threshold."""
    exits = wrong = 0
    for trace in traces:
        hits = np.nonzero(trace.scores >= threshold)[0]
        if len(hits):
            exits += 1
            wrong += int(not trace.correct[hits[0]])
    return exits, wrong


def certify_threshold(traces: list[TraceScores], max_risk: float, epsilon: float = 0.1) -> float:
    """The smallest threshold of GRID certified for `max_risk` at confidence 1 - epsilon (NEVER if none)."""
    certified = NEVER
    for threshold in GRID:
        exits, wrong = exit_outcomes(traces, float(threshold))
        if binom.cdf(0, exits, max_risk) > epsilon:  # too few exits (or none) for even a flawless record
            continue
        if binom.cdf(wrong, exits, max_risk) > epsilon:  # P(this few wrong exits if the rate were max_risk)
            break
        certified = float(threshold)
    return certified


def calibration_table(traces: list[TraceScores], risks=DEFAULT_RISKS, epsilon: float = 0.1) -> list[dict]:
    return [{"max_risk": risk, "threshold": certify_threshold(traces, risk, epsilon)} for risk in risks]
