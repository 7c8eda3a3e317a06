"""Risk control: thresholds with a finite-sample guarantee on the rate of premature exits.

For a tolerated rate δ (the share of exits whose intermediate answer is wrong), Learn-then-Test (Angelopoulos
et al., 2021) picks the smallest threshold λ such that, with probability at least 1 - ε over the calibration
split, the premature-exit rate at every certified threshold is at most δ. Candidate thresholds are tested from
the most conservative down (fixed-sequence testing, so no multiplicity correction is needed); each test uses
the exact binomial p-value P(Bin(n_exits, δ) <= n_wrong_exits). The exit simulated for a threshold is the
server's: the first boundary of a trace whose score reaches it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import binom

DEFAULT_RISKS = (0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3)
NEVER = 1.01


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
    """The smallest threshold certified for `max_risk` at confidence 1 - epsilon (NEVER if none)."""
    candidates = np.unique(np.concatenate([t.scores for t in traces] + [np.linspace(0, 1, 101)]))[::-1]
    certified = NEVER
    for threshold in candidates:
        exits, wrong = exit_outcomes(traces, float(threshold))
        if exits == 0:
            continue  # nothing exits yet: no evidence either way, go lower
        if binom.cdf(wrong, exits, max_risk) > epsilon:
            break  # the first failure ends a fixed-sequence test
        certified = float(threshold)
    return certified


def calibration_table(traces: list[TraceScores], risks=DEFAULT_RISKS, epsilon: float = 0.1) -> list[dict]:
    return [{"max_risk": risk, "threshold": certify_threshold(traces, risk, epsilon)} for risk in risks]
