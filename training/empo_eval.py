"""A policy's scorecard before and after EMPO, sampled through the engine path the server uses.

On held-out problems: greedy accuracy, sampled accuracy (`engine.constants`' evaluation sampling, `samples` answers
per problem), the mean semantic entropy of those samples (clustered exactly as EMPO's reward clusters
them, a missing answer counting as a cluster of its own), format validity (the end-of-thinking marker
once and a boxed answer after it) and the mean number of reasoning tokens. Accuracy needs gold answers;
the other numbers do not, so a problem file without answers still gets them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from probexit.engine.constants import EVAL_TEMPERATURE, EVAL_TOP_P
from probexit.probes.equivalence import Equivalence
from probexit.probes.markers import THINK_END, single_token_id
from probexit.training.empo import cluster_answers, score_group, semantic_entropy, well_formed_answer
from probexit.training.problem_files import ProblemRecord


@dataclass(frozen=True)
class EvalConfig:
    """How a policy is scored (the same settings before and after training, with the same seeds)."""

    limit: int = field(default=200, metadata={"help": "Held-out problems used (the first ones of the file); 0: all."})
    samples: int = field(
        default=8,
        metadata={"help": "Sampled answers per problem (sampled accuracy and semantic entropy)."},
    )
    temperature: float = field(default=EVAL_TEMPERATURE, metadata={"help": "Temperature of the sampled answers."})
    top_p: float = field(default=EVAL_TOP_P, metadata={"help": "Nucleus sampling of the sampled answers."})
    max_tokens: int = field(default=512, metadata={"help": "Longest completion in tokens."})
    seed: int = field(
        default=0,
        metadata={"help": "Request i is sampled with seed + i: before and after see the same random numbers."},
    )
    think_end: str = field(default=THINK_END, metadata={"help": "The end-of-thinking marker."})

    def __post_init__(self):
        if self.samples < 2:
            raise ValueError(f"samples is {self.samples}: semantic entropy needs at least 2 answers per problem")
        if self.limit < 0 or self.max_tokens < 1:
            raise ValueError("limit must not be negative (0: all) and max_tokens must be positive")
        if self.temperature <= 0 or not 0 < self.top_p <= 1:
            raise ValueError("the sampled evaluation needs a positive temperature and top_p in (0, 1]")


@dataclass
class Answered:
    """One completion, reduced to what the scorecard needs."""

    answer: str | None  # the final answer of a well-formed completion
    reasoning_tokens: int


def evaluate_policy(
    engine, problems: list[ProblemRecord], equivalence: Equivalence, config: EvalConfig, progress: bool = True
) -> dict:
    """Sample greedy and `config.samples` answers per problem through an `OfflineEngine`; the scorecard."""
    problems = problems[: config.limit] if config.limit else problems
    prompts = engine.chat_prompts([p.question for p in problems])
    end_id = single_token_id(engine.tokenizer, config.think_end)
    greedy = engine.generate(prompts, temperature=0.0, max_tokens=config.max_tokens, progress=progress)
    sampled = engine.generate(
        [p for p in prompts for _ in range(config.samples)],
        temperature=config.temperature,
        top_p=config.top_p,
        max_tokens=config.max_tokens,
        seed=config.seed,
        progress=progress,
    )

    def reduce(generation) -> Answered:
        return Answered(
            well_formed_answer(generation.text, config.think_end), reasoning_tokens(generation.token_ids, end_id)
        )

    groups = [[reduce(g) for g in sampled[i * config.samples : (i + 1) * config.samples]] for i in range(len(problems))]
    card = scorecard(problems, [reduce(g) for g in greedy], groups, equivalence)
    card["config"] = asdict(config)
    card["examples"] = [{"question": p.question, "greedy": g.text} for p, g in zip(problems[:3], greedy)]
    return card


def scorecard(
    problems: list[ProblemRecord], greedy: list[Answered], sampled: list[list[Answered]], equivalence: Equivalence
) -> dict:
    """The numbers, from reduced completions (accuracy only when every problem has a gold answer).

    >>> from probexit.probes.equivalence import ExactEquivalence
    >>> sampled = [[Answered("4", 8), Answered("5", 9), Answered(None, 12), Answered("4", 11)]]
    >>> card = scorecard([ProblemRecord("q", "4")], [Answered("4", 10)], sampled, ExactEquivalence())
    >>> card["accuracy_greedy"], card["accuracy_sampled"], card["accuracy_majority"], card["format_valid"]
    (1.0, 0.5, 1.0, 0.75)
    >>> round(card["semantic_entropy"], 3)
    1.04
    """
    flat = [a for group in sampled for a in group]
    card = {
        "n_problems": len(problems),
        "samples": len(sampled[0]) if sampled else 0,
        "semantic_entropy": _mean(
            [semantic_entropy(cluster_answers([a.answer for a in g], equivalence)) for g in sampled]
        ),
        "format_valid": _mean([a.answer is not None for a in flat]),
        "format_valid_greedy": _mean([a.answer is not None for a in greedy]),
        "reasoning_tokens": _mean([a.reasoning_tokens for a in flat]),
        "reasoning_tokens_greedy": _mean([a.reasoning_tokens for a in greedy]),
        "accuracy_greedy": None,
        "accuracy_sampled": None,
        "accuracy_majority": None,  # the largest cluster's answer: what EMPO pulls the policy towards
    }
    if problems and all(p.answer is not None for p in problems):
        right = lambda a, p: a.answer is not None and equivalence.same(a.answer, p.answer)  # noqa: E731
        card["accuracy_greedy"] = _mean([right(a, p) for a, p in zip(greedy, problems)])
        card["accuracy_sampled"] = _mean([right(a, p) for g, p in zip(sampled, problems) for a in g])
        card["accuracy_majority"] = _mean(
            [right(Answered(_majority(g, equivalence), 0), p) for g, p in zip(sampled, problems)]
        )
    return card


def reasoning_tokens(token_ids: list[int], end_id: int | None) -> int:
    """Tokens before the end-of-thinking marker (all of them when it never came, or the model has none).

    >>> reasoning_tokens([5, 6, 9, 7], end_id=9), reasoning_tokens([5, 6], end_id=9)
    (2, 2)
    """
    return token_ids.index(end_id) if end_id is not None and end_id in token_ids else len(token_ids)


def _majority(group: list[Answered], equivalence: Equivalence) -> str | None:
    return score_group([a.answer for a in group], equivalence).majority


def _mean(values: list) -> float:
    return float(sum(values) / len(values)) if values else 0.0
