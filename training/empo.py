"""EMPO (arXiv 2504.05812): unsupervised RL that rewards an answer with the share of its semantic cluster.

For each question GRPO samples G answers; the final answers (the last `\\boxed{...}` after the end of
thinking) are clustered by meaning with a pluggable `Equivalence` (math-verify, normalised exact match or
an LLM judge), and each answer is rewarded with its cluster's share of the group. GRPO's group advantages
then push the policy towards its own most consistent answer, which minimises the semantic entropy of its
answers; no gold answer is read. Questions whose semantic entropy is at the top (every answer differs:
the model has no idea) or at the bottom (every answer agrees: nothing to learn) are skipped: the whole
group gets the same reward, so its advantages are zero.

This module holds what training decides per group: the config, the two reward functions (EMPO's and
the supervised baseline's, plain functions in TRL's reward signature), the entropy filter, the running
statistics they leave behind and the collapse rule that reads them. The job itself is in `empo_job`.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from probexit.probes.answers import final_answer
from probexit.probes.equivalence import EQUIVALENCES, Equivalence, MathEquivalence
from probexit.probes.markers import THINK_END, split_thinking
from probexit.training.grpo import GRPOSettings, completion_text


class TrainingCollapsed(RuntimeError):
    """Training stopped because the policy collapsed (one line, naming the step and the reason)."""


@dataclass(frozen=True)
class EMPOConfig(GRPOSettings):
    """Settings of an EMPO run: GRPO's, and how answers are clustered, filtered and watched for collapse. The
    supervised GRPO baseline runs with the very same ones."""

    min_entropy_ratio: float = field(
        default=0.0,
        metadata={
            "help": (
                "Groups whose semantic entropy is at or below min_entropy_ratio * log G are skipped (0: all agree)."
            )
        },
    )
    max_entropy_ratio: float = field(
        default=1.0,
        metadata={
            "help": (
                "Groups whose semantic entropy is at or above max_entropy_ratio * log G are skipped (1: all differ)."
            )
        },
    )
    equivalence: str = field(
        default="math",
        metadata={
            "choices": EQUIVALENCES,
            "help": (
                "How two answers are compared: `math` (math-verify), `exact` (normalised text) or `judge` (an LLM)."
            ),
        },
    )
    judge_url: str | None = field(
        default=None,
        metadata={"help": "OpenAI-compatible endpoint of the judge (equivalence `judge`)."},
    )
    judge_model: str | None = field(default=None, metadata={"help": "The judge's model name (equivalence `judge`)."})
    think_end: str = field(
        default=THINK_END,
        metadata={"help": "The end-of-thinking marker; a valid completion has it once and a boxed answer after it."},
    )
    collapse_window: int = field(
        default=10,
        metadata={"help": "The collapse guard judges the last this many reward calls (one per step by default)."},
    )
    collapse_min_format_valid: float = field(
        default=0.5,
        metadata={"help": "Stop when fewer than this share of completions is well-formed over the window."},
    )
    collapse_min_answer_diversity: float = field(
        default=0.1,
        metadata={
            "help": (
                "Stop when the majority answers of the window's questions are this un-diverse (distinct / "
                "questions): the policy answers every question alike. 0 turns the check off (e.g. yes/no "
                "questions)."
            )
        },
    )

    def __post_init__(self):
        if self.num_generations < 2:
            raise ValueError(
                f"num_generations is {self.num_generations}: EMPO needs at least 2 answers per "
                "question to form clusters"
            )
        super().__post_init__()
        if self.collapse_window < 1:
            raise ValueError(f"collapse_window must be at least 1, got {self.collapse_window}")
        if not 0 <= self.min_entropy_ratio < self.max_entropy_ratio <= 1:
            raise ValueError(
                f"entropy ratios must satisfy 0 <= min ({self.min_entropy_ratio}) < max "
                f"({self.max_entropy_ratio}) <= 1; they are fractions of log G"
            )
        if self.equivalence not in EQUIVALENCES:
            raise ValueError(f"unknown equivalence {self.equivalence!r}: use {', '.join(EQUIVALENCES)}")
        if self.equivalence == "judge" and not (self.judge_url and self.judge_model):
            raise ValueError("equivalence 'judge' needs judge_url and judge_model (an OpenAI-compatible endpoint)")
        if not self.think_end:
            raise ValueError("think_end must name the end-of-thinking marker, e.g. </think>")
        for name in ("collapse_min_format_valid", "collapse_min_answer_diversity"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} is a share in [0, 1], got {getattr(self, name)}")


# -- one completion ----------------------------------------------------------------------------------------
def well_formed_answer(text: str, think_end: str = THINK_END) -> str | None:
    """The answer EMPO rewards: the final answer (`probes.answers.final_answer`) of a well-formed completion,
    one whose thinking ended exactly once and whose answer is boxed (the format EMPO trains and its collapse
    rule watches); None for any other.

    >>> well_formed_answer("So the answer is 3.</think> The answer is \\\\boxed{3}.")
    '3'
    >>> well_formed_answer("\\\\boxed{3} before the marker </think>") is None
    True
    >>> well_formed_answer("</think></think>\\\\boxed{3}") is None, well_formed_answer("</think> It is 3.") is None
    (True, True)
    """
    if text.count(think_end) != 1:
        return None
    return final_answer(split_thinking(text, think_end)[1], extractors=("boxed",))


# -- one group ---------------------------------------------------------------------------------------------
def cluster_answers(answers: list[str | None], equivalence: Equivalence) -> list[int]:
    """Cluster ids by meaning: each answer joins the first cluster whose representative (its first member)
    it equals, else opens one; a missing answer (None) is a cluster of its own (it agrees with nothing).

    >>> cluster_answers(["2", "2.0", None, "3", None], MathEquivalence())
    [0, 0, 1, 2, 3]
    """
    representatives: list[str | None] = []
    ids = []
    for answer in answers:
        match = (
            None
            if answer is None
            else next(
                (
                    index
                    for index, rep in enumerate(representatives)
                    if rep is not None and equivalence.same(answer, rep)
                ),
                None,
            )
        )
        if match is None:
            representatives.append(answer)
            match = len(representatives) - 1
        ids.append(match)
    return ids


def semantic_entropy(cluster_ids: list[int]) -> float:
    """Entropy (nats) of the cluster shares.

    >>> round(semantic_entropy([0, 0, 1, 2]), 4)  # shares 1/2, 1/4, 1/4
    1.0397
    """
    n = len(cluster_ids)
    return -sum(c / n * math.log(c / n) for c in Counter(cluster_ids).values())


def keep_group(entropy: float, group_size: int, min_ratio: float = 0.0, max_ratio: float = 1.0) -> bool:
    """The entropy filter: train on a group only when min_ratio*log G < entropy < max_ratio*log G.

    >>> keep_group(0.0, 4), keep_group(math.log(4), 4), keep_group(1.04, 4), keep_group(1.04, 4, max_ratio=0.5)
    (False, False, True, False)
    """
    top = math.log(group_size)
    tolerance = 1e-9  # shares are ratios of small integers: compare entropies with a margin
    return min_ratio * top + tolerance < entropy < max_ratio * top - tolerance


@dataclass
class GroupOutcome:
    rewards: list[float]
    entropy: float
    skipped: str | None  # "low" or "high" entropy when the filter skipped the group
    valid: int  # well-formed completions
    clusters: int
    majority: str | None  # the largest cluster's answer


def score_group(
    answers: list[str | None], equivalence: Equivalence, min_ratio: float = 0.0, max_ratio: float = 1.0
) -> GroupOutcome:
    """EMPO's rewards for one question's answers: each valid answer earns its cluster's share of the group,
    an invalid one 0; a skipped group earns 0 throughout, so its advantages are zero."""
    ids = cluster_answers(answers, equivalence)
    sizes = Counter(ids)
    entropy = semantic_entropy(ids)
    skipped = None
    if not keep_group(entropy, len(answers), min_ratio, max_ratio):
        skipped = "low" if entropy < (min_ratio + max_ratio) / 2 * math.log(len(answers)) else "high"
    rewards = [sizes[i] / len(answers) if skipped is None and a is not None else 0.0 for a, i in zip(answers, ids)]
    valid = [(sizes[i], a) for a, i in zip(answers, ids) if a is not None]
    return GroupOutcome(
        rewards,
        entropy,
        skipped,
        len(valid),
        len({i for a, i in zip(answers, ids) if a is not None}),
        max(valid, key=lambda pair: pair[0])[1] if valid else None,
    )


# -- running statistics and the collapse guard --------------------------------------------------------------
@dataclass
class RewardStats:
    """What the EMPO reward saw, per call (one call scores one generation batch of whole groups)."""

    history: deque = field(default_factory=lambda: deque(maxlen=1000))

    def record(self, outcomes: list[GroupOutcome]) -> dict[str, float]:
        n, completions = len(outcomes), sum(len(o.rewards) for o in outcomes)
        row = {
            "groups": n,
            "kept": sum(o.skipped is None for o in outcomes) / n,
            "skipped_low_entropy": sum(o.skipped == "low" for o in outcomes) / n,
            "skipped_high_entropy": sum(o.skipped == "high" for o in outcomes) / n,
            "single_cluster": sum(o.clusters == 1 and o.valid == len(o.rewards) for o in outcomes) / n,
            "semantic_entropy": sum(o.entropy for o in outcomes) / n,
            "format_valid": sum(o.valid for o in outcomes) / completions,
        }
        self.history.append({**row, "majorities": [o.majority for o in outcomes]})
        return row

    def window(self, calls: int) -> dict | None:
        """Means over the last `calls` calls, or None before that many were made."""
        if len(self.history) < calls:
            return None
        rows = list(self.history)[-calls:]
        majorities = [m for row in rows for m in row["majorities"]]
        return {
            "format_valid": sum(r["format_valid"] for r in rows) / calls,
            "single_cluster": sum(r["single_cluster"] for r in rows) / calls,
            "answer_diversity": len(set(majorities)) / len(majorities),
        }


def collapse_reason(window: dict | None, config: EMPOConfig) -> str | None:
    """Why the policy looks collapsed over the window, or None.

    >>> collapse_reason({"format_valid": 0.3, "single_cluster": 0.1, "answer_diversity": 0.5}, EMPOConfig())
    'format broke: 30% of completions end thinking once with a boxed answer after it (limit 50%)'
    >>> collapse_reason({"format_valid": 0.9, "single_cluster": 0.1, "answer_diversity": 0.5}, EMPOConfig()) is None
    True
    """
    if window is None:
        return None
    if window["format_valid"] < config.collapse_min_format_valid:
        return (
            f"format broke: {window['format_valid']:.0%} of completions end thinking once with a boxed answer "
            f"after it (limit {config.collapse_min_format_valid:.0%})"
        )
    if window["answer_diversity"] < config.collapse_min_answer_diversity:
        return (
            f"entropy collapsed to one answer for all questions: distinct majority answers per question "
            f"{window['answer_diversity']:.2f} (limit {config.collapse_min_answer_diversity:.2f}), "
            f"{window['single_cluster']:.0%} of groups unanimous"
        )
    return None


# -- the reward functions (TRL's signature: completions plus dataset columns and trainer kwargs) -----------
def semantic_cluster_reward(
    completions: list,
    prompts: list | None = None,
    *,
    num_generations: int,
    equivalence: Equivalence | None = None,
    think_end: str = THINK_END,
    min_entropy_ratio: float = 0.0,
    max_entropy_ratio: float = 1.0,
    stats: RewardStats | None = None,
    log_metric: Callable[[str, float], None] | None = None,
    **kwargs,
) -> list[float]:
    """EMPO's reward: the share of the group in the answer's semantic cluster (0 for an answer that is not
    well-formed; 0 for every answer of a group the entropy filter skips). Completions arrive in groups of
    `num_generations` consecutive ones; under accelerate a group may span processes, so the whole batch is
    gathered before clustering and this process's slice returned. No gold answer may reach it.

    >>> done = lambda a: f"So the answer is {a}.</think> The answer is \\\\boxed{{{a}}}."
    >>> semantic_cluster_reward([done(2), done(2), done(3), "no end of thinking"], num_generations=4)
    [0.5, 0.5, 0.25, 0.0]
    >>> semantic_cluster_reward([done(1), done(2), done(3), done(4)], num_generations=4)  # all differ: skipped
    [0.0, 0.0, 0.0, 0.0]
    >>> semantic_cluster_reward([done(7)] * 4, num_generations=4)  # all agree: nothing to learn, skipped
    [0.0, 0.0, 0.0, 0.0]
    """
    if "answer" in kwargs:
        raise ValueError("a gold 'answer' column reached the EMPO reward: EMPO trains without gold answers")
    equivalence = equivalence or MathEquivalence()
    keys = [repr(p) for p in prompts] if prompts is not None else [None] * len(completions)
    local = [(key, well_formed_answer(completion_text(c, think_end), think_end)) for key, c in zip(keys, completions)]
    everything, offset = _gather(local)
    if len(everything) % num_generations:
        raise ValueError(f"{len(everything)} completions do not form whole groups of {num_generations}")
    outcomes = []
    for start in range(0, len(everything), num_generations):
        group = everything[start : start + num_generations]
        if len({key for key, _ in group}) != 1:
            raise ValueError(
                "a group of completions mixes prompts: completions must come in groups of "
                f"num_generations={num_generations} consecutive answers to one prompt"
            )
        outcomes.append(score_group([answer for _, answer in group], equivalence, min_entropy_ratio, max_entropy_ratio))
    if stats is not None:
        row = stats.record(outcomes)
        for name, value in row.items():
            if log_metric is not None and name != "groups":
                log_metric(f"empo/{name}", value)
    rewards = [reward for outcome in outcomes for reward in outcome.rewards]
    return rewards[offset : offset + len(local)]


def gold_reward(
    completions: list,
    answer: list[str],
    *,
    equivalence: Equivalence | None = None,
    think_end: str = THINK_END,
    **kwargs,
) -> list[float]:
    """The supervised GRPO baseline's reward: 1 when the final answer equals the gold answer, else 0.

    >>> gold_reward(["</think> \\\\boxed{4}", "</think> \\\\boxed{5}", "\\\\boxed{4}"], answer=["4", "4", "4"])
    [1.0, 0.0, 0.0]
    """
    equivalence = equivalence or MathEquivalence()
    rewards = []
    for completion, gold in zip(completions, answer):
        guess = well_formed_answer(completion_text(completion, think_end), think_end)
        rewards.append(float(guess is not None and equivalence.same(guess, str(gold))))
    return rewards


def _gather(local: list) -> tuple[list, int]:
    """The whole batch across processes and where this process's part starts (a no-op on one process)."""
    from accelerate import PartialState
    from accelerate.utils import gather_object

    state = PartialState()
    if state.num_processes == 1:
        return local, 0
    return gather_object(local), state.process_index * len(local)
