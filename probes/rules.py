"""Per-request early-exit settings and the exit rules that read them.

`probe` is probexit's own rule; the others are the peers' signals read at the same boundaries, so that a
benchmark compares decisions, not engines: `consistency` (the last k intermediate answers agree, the
text-only form of Dynasor's certainty rule), `confidence` (the chunk's lowest token probability passes a
threshold, DEER's confidence family without its extra trial generation), `first` (exit at the first
intermediate answer) and `budget` (a fixed thinking-token budget, as engines offer natively). `oracle` exits
at the first intermediate answer equal to a gold `answer` the request supplies (the benchmark's upper bound,
run live so that the model still writes its own final answer). `none` never exits; with `record` it only
reports boundaries, which is how the training jobs read hidden states from exactly the engine path the server
uses.

Two settings apply to every rule. `budget` caps the thinking (a request's `thinking_token_budget`): at that
many thinking tokens it ends, whatever the rule says. `shadow` consults the rule at every boundary and reports
what it would do, but never ends the thinking for it (the budget still does): the answer is the one without
early exit, and the report says where the rule would have ended it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

RULES = ("probe", "consistency", "confidence", "first", "budget", "oracle", "none")
NEVER = 1.01  # a threshold that no score reaches (scores are probabilities): the rule never exits
DEFAULT_THRESHOLD = 0.85  # when neither the request, the server nor the probe file names one
# Shadow mode judges each request's own setting and the probe at these thresholds (from the same scores).
SHADOW_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.97, 0.99)
REQUEST_SETTING = "request"  # the label of a shadow request's own setting


class SettingsError(ValueError):
    """An invalid early-exit setting; `field` names it (as in the request body's `early_exit` object)."""

    def __init__(self, field: str, message: str):
        super().__init__(f"early_exit.{field}: {message}")
        self.field, self.reason = field, message


@dataclass(frozen=True)
class ExitSettings:
    """What one request asked for, resolved against the server's defaults."""

    rule: str = "probe"
    threshold: float = DEFAULT_THRESHOLD  # probe: score; confidence: lowest token probability in the chunk
    min_thinking_tokens: int = 0  # no exit before this many thinking tokens
    k: int = 2  # consistency: how many agreeing answers in a row
    budget: int = 0  # thinking tokens allowed (0: no cap); the budget rule exits there only
    shadow: bool = False  # consult the rule at every boundary and report, but never exit for it
    record: bool = False  # report each boundary's hidden state and P(</think>) (training, analysis)
    answer: str | None = None  # oracle: the gold answer

    def __post_init__(self):
        if self.rule not in RULES:
            raise SettingsError("rule", f"must be one of {', '.join(RULES)}, got {self.rule!r}")
        if not isinstance(self.threshold, (int, float)) or not math.isfinite(self.threshold):
            raise SettingsError("threshold", "must be a finite number")
        if not 0.0 <= self.threshold <= NEVER:
            raise SettingsError("threshold", f"must lie in [0, {NEVER}] (above 1 never exits), got {self.threshold}")
        if not isinstance(self.min_thinking_tokens, int) or self.min_thinking_tokens < 0:
            raise SettingsError("min_thinking_tokens", "must be a non-negative integer")
        if not isinstance(self.k, int) or self.k < 1:
            raise SettingsError("k", "must be a positive integer")
        if not isinstance(self.record, bool):
            raise SettingsError("record", "must be true or false")
        if self.rule == "oracle" and not (isinstance(self.answer, str) and self.answer.strip()):
            raise SettingsError("answer", "must be the gold answer (a non-empty string) when rule is 'oracle'")
        if not isinstance(self.budget, int) or self.budget < 0:
            raise SettingsError("budget", "must be a non-negative integer (0: no cap)")
        if self.rule == "budget" and self.budget < 1:
            raise SettingsError("budget", "must be a positive integer when rule is 'budget'")
        if not isinstance(self.shadow, bool):
            raise SettingsError("shadow", "must be true or false")

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> ExitSettings:
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise SettingsError(sorted(unknown)[0], "unknown setting")
        return cls(**data)


def same_answer(a: str, b: str) -> bool:
    """Cheap equality for the decode step: text without spaces or a trailing period, or equal numbers."""
    a, b = a.strip().rstrip(".").replace(" ", ""), b.strip().rstrip(".").replace(" ", "")
    if a == b:
        return True
    try:
        return float(a.replace(",", "")) == float(b.replace(",", ""))
    except ValueError:
        return False


def answers_agree(answers: list[str], k: int) -> bool:
    """True when the last k answers are the same."""
    return len(answers) >= k and all(same_answer(answer, answers[-1]) for answer in answers[-k:])
