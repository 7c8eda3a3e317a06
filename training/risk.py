"""Risk control: thresholds with a finite-sample guarantee on the share of answers early exit breaks.

The risk of a threshold λ is its *harm rate*: the share of requests whose answer early exit turns from right
into wrong, compared with the same request thinking to its end. A request is harmed when its first boundary
scoring at least λ is labelled wrong while the full trace's final answer is right; the label is the answer
the user gets there (forced labels: the answer the model writes when its thinking is ended there) or, with
reader labels, the answer the chunk states. A request
the model gets wrong anyway is not harmed by stopping early, and one whose exit lands on a right answer that
the full trace would have lost is helped. The denominator is every request, exiting or not. A final answer is
read as a client reads it (`probes.answers.final_answer`), the very reading shadow mode and `bench savings`
measure harm with.

For a tolerated harm rate ε (`max_risk`), Learn-then-Test (Angelopoulos et al., 2021) certifies thresholds so
that, with probability at least 1 - δ over the calibration draw, the harm rate at every certified threshold
is at most ε, for requests exchangeable with the calibration problems (the same distribution of problems,
the same model and sampling). Each threshold of a fixed grid (0.99, 0.98, ..., 0.01) is one null hypothesis
"the harm rate at λ exceeds ε", tested with the exact binomial p-value P(Bin(n, ε) <= harms) at level δ, n
being the number of calibration traces; the hypotheses are tested from the most conservative down and the
first failure ends the sequence (fixed-sequence testing: no multiplicity correction, because the order is
fixed before the data are seen). The certified threshold is the last one passed.

Why every request in the denominator, and why then no threshold is passed over for having few exits: a
strict threshold exits rarely, so it can harm only a few of the n requests and its test passes easily; one
harmful exit among the handful at 0.99 cannot end the sequence. Only a calibration split too small for even
a flawless record to pass ((1 - ε)^n > δ) certifies nothing. Why a fixed grid and a sequence rather than
every observed score with a Bonferroni correction: the per-test level δ/100 needs far more calibration
traces for the same ε. The exit simulated for a threshold is the server's: the first boundary of a trace
whose score reaches it; the exit is credited with that boundary's answer (the model writes it as its final
answer after the forced end of thinking).

Not covered: another problem distribution, another model or other sampling settings (the exchangeability
fails), and, with reader labels only, a final answer written after a forced exit that differs from the answer
the boundary stated (forced labels measure that answer itself).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import binom

from probexit.probes.rules import NEVER

DEFAULT_RISKS = (0.005, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3)
DEFAULT_DELTA = 0.1  # the certificate fails with probability at most this, over the calibration draw
GRID = np.round(np.arange(0.99, 0.0, -0.01), 2)  # the hypotheses in testing order, fixed before any data


@dataclass(frozen=True)
class TraceScores:
    """One trace (one request): its boundaries' probe scores, whether each intermediate answer was right, and
    whether its own final answer, thinking to the end, was right."""

    scores: np.ndarray  # (B,)
    correct: np.ndarray  # (B,) bool
    final_correct: bool


@dataclass(frozen=True)
class Outcomes:
    """What exiting at one threshold does to a set of requests, each compared with itself thinking to its end."""

    n: int  # requests
    exits: int
    wrong_exits: int  # exits on a wrong intermediate answer (premature exits)
    harms: int  # right -> wrong
    helps: int  # wrong -> right

    @property
    def harm_rate(self) -> float:
        return self.harms / self.n if self.n else 0.0

    @property
    def help_rate(self) -> float:
        return self.helps / self.n if self.n else 0.0

    @property
    def accuracy_change(self) -> float:
        return self.help_rate - self.harm_rate

    @property
    def premature_exit_rate(self) -> float:
        return self.wrong_exits / self.exits if self.exits else 0.0

    def summary(self) -> dict:
        return {
            "exits": self.exits,
            "harms": self.harms,
            "helps": self.helps,
            "harm_rate": self.harm_rate,
            "help_rate": self.help_rate,
            "accuracy_change": self.accuracy_change,
            "premature_exit_rate": self.premature_exit_rate,
        }


def outcomes(traces: list[TraceScores], threshold: float) -> Outcomes:
    """Each trace exits at its first boundary scoring >= threshold, with that boundary's answer."""
    exits = wrong = harms = helps = 0
    for trace in traces:
        hits = np.nonzero(trace.scores >= threshold)[0]
        if not len(hits):
            continue
        exits += 1
        exit_right = bool(trace.correct[hits[0]])
        wrong += not exit_right
        harms += trace.final_correct and not exit_right
        helps += exit_right and not trace.final_correct
    return Outcomes(len(traces), exits, wrong, harms, helps)


def certify(sweep: list[Outcomes], max_risk: float, delta: float = DEFAULT_DELTA) -> float:
    """The smallest threshold of GRID certified for a harm rate `max_risk` at confidence 1 - delta, from the
    outcomes at each threshold of GRID in order (NEVER if none is)."""
    n = sweep[0].n if sweep else 0
    if binom.cdf(0, n, max_risk) > delta:  # too few requests for even a flawless record to pass
        return NEVER
    certified = NEVER
    for threshold, result in zip(GRID, sweep):
        if binom.cdf(result.harms, n, max_risk) > delta:  # P(this few harms if the rate were max_risk)
            break
        certified = float(threshold)
    return certified


def certify_threshold(traces: list[TraceScores], max_risk: float, delta: float = DEFAULT_DELTA) -> float:
    return certify([outcomes(traces, float(t)) for t in GRID], max_risk, delta)


def calibration_table(traces: list[TraceScores], risks=DEFAULT_RISKS, delta: float = DEFAULT_DELTA) -> list[dict]:
    """One row per tolerated harm rate: the certified threshold and the harm it realised on these traces."""
    sweep = [outcomes(traces, float(t)) for t in GRID]
    table = []
    for risk in risks:
        threshold = certify(sweep, risk, delta)
        table.append(
            {"max_risk": risk, "threshold": threshold, "harm_calibration": outcomes(traces, threshold).harm_rate}
        )
    return table
