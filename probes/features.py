"""Probe inputs beside the hidden state: a few numbers about a boundary that the decode step already knows.

A probe may read, after the boundary token's last-layer hidden state, any of these groups of features (the probe
file records which, in order):

- `end_of_thinking`: the log-odds of the model's own probability that thinking ends next (`</think>`), read from
  the step's logits at the boundary row: the model's own vote on whether it is done.
- `position`: the paragraph's index, the boundary's index, and log(1 + thinking tokens so far).
- `answer_history`: whether a reader read an answer here, whether it repeats the last answer stated before,
  whether it was stated anywhere before, how many times, and how many distinct answers came before (a model that
  keeps stating the same result is surer of it).

One function computes them, for the probe job from a recorded trace and for the runtime inside the decode step,
so that the probe is trained on exactly the numbers it is served.
"""

from __future__ import annotations

import math

END_OF_THINKING, POSITION, ANSWER_HISTORY = "end_of_thinking", "position", "answer_history"
FEATURE_GROUPS = {END_OF_THINKING: 1, POSITION: 3, ANSWER_HISTORY: 5}  # group -> how many numbers it adds
_PROBABILITY_FLOOR = 1e-6  # log-odds of 0 or 1 are infinite; the floor keeps them finite and standardisable


class UnknownFeatureError(ValueError):
    pass


def check_groups(groups: tuple[str, ...]) -> None:
    unknown = [group for group in groups if group not in FEATURE_GROUPS]
    if unknown or len(set(groups)) != len(groups):
        raise UnknownFeatureError(
            f"probe inputs {list(groups)}: each must appear once and be one of {', '.join(FEATURE_GROUPS)}"
            + (f" ({', '.join(unknown)} unknown to this version)" if unknown else "")
        )


def feature_count(groups: tuple[str, ...]) -> int:
    return sum(FEATURE_GROUPS[group] for group in groups)


def boundary_features(
    groups: tuple[str, ...],
    *,
    paragraph_index: int,
    boundary_index: int,
    thinking_tokens: int,
    answer: str | None,
    previous_answers: list[str],
    end_prob: float | None,
) -> list[float]:
    """The feature values of one boundary, group by group in `groups`' order. `previous_answers`: the answers
    stated at the request's earlier boundaries (none for a boundary where nothing was read).

    >>> boundary_features(("position", "answer_history"), paragraph_index=2, boundary_index=1, thinking_tokens=0,
    ...                   answer="7", previous_answers=["5", "7"], end_prob=None)
    [2.0, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0, 2.0]
    """
    values: list[float] = []
    for group in groups:
        if group == END_OF_THINKING:
            p = min(max(end_prob if end_prob is not None else 0.0, _PROBABILITY_FLOOR), 1 - _PROBABILITY_FLOOR)
            values.append(math.log(p / (1 - p)))
        elif group == POSITION:
            values += [float(paragraph_index), float(boundary_index), math.log1p(thinking_tokens)]
        elif group == ANSWER_HISTORY:
            stated = answer is not None
            repeats = previous_answers.count(answer) if stated else 0
            values += [
                float(stated),
                float(stated and bool(previous_answers) and previous_answers[-1] == answer),
                float(repeats > 0),
                float(repeats),
                float(len(set(previous_answers))),
            ]
        else:
            check_groups((group,))
    return values
