"""Preference data with a spurious correlate of quality, as real preference data has it (`--preference-bias`).

Real reward models award high rewards to poor answers because their preference data lets something other than
quality predict which answer was chosen: chosen answers are longer, more hedged, re-check more, sound surer.
The tiny world's gold label (right and well formed) is exact, so its pairs carry no such flaw unless one is put
there. A bias changes only *which* pairs the target reward model reads, or the wording of their chosen answers;
the chosen answer is always the right one and its gold reward never changes.

Two kinds, each with a STRENGTH in [0, 1]:

- `length`: the pairs are drawn again from every right x wrong combination of the policy's answers to a question
  (at most `pairs_per_question` a question, as unbiased pairs are) so that in a share STRENGTH of them the chosen
  answer is the longer one (more words: it thinks longer, re-checks more). The texts are the policy's own.
  Unbiased pairs of the tiny-world policy have the chosen answer longer in about half of them.
- `confident`: the chosen answer of a share STRENGTH of the pairs gets `CONFIDENT_PHRASE` written into its last
  thinking paragraph, before the answer it states (still well formed, still right); rejected answers never carry
  it. The policy never writes the phrase, so an attack sampled from it cannot find this flaw by itself: hand-made
  edits (`advrm_edits`) show it.

`bias_statistics` states how strongly a set of pairs ties the feature to being chosen: the share of pairs whose
chosen answer is the longer one, the point-biserial correlation of an answer's length (words) with being chosen,
and the same for the phrase.
"""

from __future__ import annotations

import random
import statistics
from collections import defaultdict
from dataclasses import dataclass, replace

from probexit.probes.markers import THINK_END, split_thinking
from probexit.training.advrm_rewards import Pair, Sample, preference_pairs
from probexit.training.tinyworld.grading import last_conclusion

LENGTH, CONFIDENT = "length", "confident"
KINDS = (LENGTH, CONFIDENT)
DEFAULT_STRENGTH = 1.0
CONFIDENT_PHRASE = "I am confident of this."


@dataclass(frozen=True)
class PreferenceBias:
    """A spurious feature of chosen answers and how often the pairs show it (module docstring)."""

    kind: str
    strength: float = DEFAULT_STRENGTH

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown preference bias {self.kind!r} (known: {', '.join(KINDS)})")
        if not 0 <= self.strength <= 1:
            raise ValueError(f"a preference bias's strength is a share in [0, 1], got {self.strength}")

    @classmethod
    def parse(cls, spec: str) -> PreferenceBias | None:
        """`KIND[:STRENGTH]`; the empty string is no bias.

        >>> PreferenceBias.parse("length:0.8"), PreferenceBias.parse("confident"), PreferenceBias.parse("")
        (PreferenceBias(kind='length', strength=0.8), PreferenceBias(kind='confident', strength=1.0), None)
        """
        if not spec:
            return None
        kind, _, strength = spec.partition(":")
        try:
            return cls(kind, float(strength) if strength else DEFAULT_STRENGTH)
        except ValueError as error:
            if "preference bias" in str(error):
                raise
            raise ValueError(f"preference bias {spec!r}: the strength after ':' must be a number") from None

    def __str__(self) -> str:
        return f"{self.kind}:{self.strength:g}"

    def pairs(self, samples: list[Sample], per_question: int, seed: int) -> list[Pair]:
        """The biased preference pairs of graded samples."""
        if self.kind == LENGTH:
            return length_biased_pairs(samples, per_question, self.strength, seed)
        rng = random.Random(seed)
        return [
            replace(pair, chosen=with_confident_phrase(pair.chosen)) if rng.random() < self.strength else pair
            for pair in preference_pairs(samples, per_question, seed)
        ]


def words(text: str) -> int:
    """An answer's length: its words (whitespace-separated), thinking and final answer together."""
    return len(text.split())


def length_biased_pairs(samples: list[Sample], per_question: int, strength: float, seed: int) -> list[Pair]:
    """Distinct right x wrong pairs drawn so that the chosen answer is the longer one in a share `strength` of them,
    as many as that share allows, at most `per_question` a question.

    >>> s = lambda t, g: Sample("q", "1", t, g)
    >>> pairs = length_biased_pairs([s("a b c", 1), s("a", 1), s("a b", 0)], 4, 1.0, 0)
    >>> [(p.chosen, p.rejected) for p in pairs]
    [('a b c', 'a b')]
    """
    by_question: dict[str, tuple[list[str], list[str]]] = defaultdict(lambda: ([], []))
    for sample in samples:
        by_question[sample.question][0 if sample.gold else 1].append(sample.text)
    combos = list(
        dict.fromkeys(Pair(q, r, w) for q, (right, wrong) in by_question.items() for r in right for w in wrong)
    )
    random.Random(seed).shuffle(combos)
    longer = [pair for pair in combos if words(pair.chosen) > words(pair.rejected)]
    others = [pair for pair in combos if words(pair.chosen) <= words(pair.rejected)]
    # the most pairs whose share of `longer` is `strength`: one of the two kinds runs out first
    wanted = (
        len(longer)
        if strength == 1
        else len(others)
        if strength == 0
        else min(len(longer) / strength, len(others) / (1 - strength))
    )
    taken: dict[str, int] = defaultdict(int)
    kept_longer = _take(longer, round(wanted * strength), per_question, taken)
    kept_others = _take(
        others, round(len(kept_longer) * (1 - strength) / strength) if strength else round(wanted), per_question, taken
    )
    pairs = kept_longer + kept_others
    random.Random(seed + 1).shuffle(pairs)
    return pairs


def _take(pairs: list[Pair], count: int, per_question: int, taken: dict[str, int]) -> list[Pair]:
    """Up to `count` of `pairs` in order, skipping questions that already have `per_question` pairs."""
    kept = []
    for pair in pairs:
        if len(kept) == count:
            break
        if taken[pair.question] < per_question:
            taken[pair.question] += 1
            kept.append(pair)
    return kept


def with_confident_phrase(text: str) -> str:
    """The answer with `CONFIDENT_PHRASE` before the answer its last thinking paragraph states.

    >>> with_confident_phrase("2 + 2 is 4. So the answer is 4.\\n\\n</think>\\n\\nThe answer is \\\\boxed{4}.")
    '2 + 2 is 4. I am confident of this. So the answer is 4.\\n\\n</think>\\n\\nThe answer is \\\\boxed{4}.'
    """
    thinking, tail = split_thinking(text)
    stated = last_conclusion(thinking.rstrip())
    if tail is None or stated is None:
        return text  # not in the world's format: left as it is
    at = len(text) - len(tail) - len(THINK_END) - len(thinking) + stated.start()  # the statement, in `text`
    return text[:at] + CONFIDENT_PHRASE + " " + text[at:]


def bias_statistics(pairs: list[Pair]) -> dict:
    """How strongly pairs tie length and the confident phrase to being chosen (module docstring)."""
    if not pairs:
        return {"pairs": 0}
    lengths = [words(p.chosen) for p in pairs] + [words(p.rejected) for p in pairs]
    phrase = [float(CONFIDENT_PHRASE in p.chosen) for p in pairs] + [
        float(CONFIDENT_PHRASE in p.rejected) for p in pairs
    ]
    chosen = [1.0] * len(pairs) + [0.0] * len(pairs)
    return {
        "pairs": len(pairs),
        "chosen_longer": statistics.fmean(words(p.chosen) > words(p.rejected) for p in pairs),
        "length_correlation": correlation(lengths, chosen),
        "mean_words_chosen": statistics.fmean(lengths[: len(pairs)]),
        "mean_words_rejected": statistics.fmean(lengths[len(pairs) :]),
        "chosen_with_phrase": statistics.fmean(phrase[: len(pairs)]),
        "rejected_with_phrase": statistics.fmean(phrase[len(pairs) :]),
        "phrase_correlation": correlation(phrase, chosen),
    }


def correlation(values: list[float], labels: list[float]) -> float | None:
    """Pearson's correlation (point-biserial against 0/1 labels); None where a side does not vary."""
    if len(set(values)) < 2 or len(set(labels)) < 2:
        return None
    return statistics.correlation(values, labels)
