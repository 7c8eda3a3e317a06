"""`probexit bench replay`: what early exit could save on a model's own recorded traces, with no engine.

Each trace's thinking runs through the boundary policy's tracker (the one the server and the training
jobs use, fed a token at a time), every boundary's intermediate answer is graded against the gold answer
with math-verify, and the text-only exit rules are replayed over the boundaries: `oracle` (the first
boundary whose answer is right: what is there to save), `first`, `consistency` (the last k answers agree)
and `budget` (a fixed thinking length). An exit at a boundary is credited with that boundary's answer (the
model is assumed to write it as its final answer); a budget exit with the last answer stated before the cut,
or none; a trace left to think to its end with its own final answer.

A trace line may carry the question it answers (`question`, or the `prompt` as text or chat messages): the reader
is then bound to the multiple-choice options the question lists, as the engine binds it to a request's prompt,
so that a conclusion naming an option by its content reads as that option's letter.

Without a tokenizer lengths are in characters (each character is fed as one token); with one, in its
tokens. Boundary `end` is always the character offset in the thinking text just past the boundary.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from probexit.probes.answers import final_answer
from probexit.probes.boundary import ANSWER, BoundaryPolicy, BoundaryPolicyConfig
from probexit.probes.equivalence import Equivalence, MathEquivalence
from probexit.probes.markers import THINK_END, THINK_START, split_thinking
from probexit.probes.rules import answers_agree

CONSISTENCY_KS = (2, 3)
BUDGET_FRACTIONS = (0.2, 0.35, 0.5, 0.65, 0.8)  # of the mean thinking length


@dataclass(frozen=True)
class Trace:
    """One recorded generation: its thinking, the answer written after it (None: cut off), the gold one, and the
    question it answers (None: not given)."""

    id: str
    thinking: str
    final: str | None
    gold: str
    question: str | None = None


@dataclass(frozen=True)
class ReplayedBoundary:
    end: int  # character offset in the thinking just past the boundary
    end_units: int  # the same in the report's unit (characters or tokens)
    answer: str | None  # None: a paragraph boundary whose paragraph states nothing a reader reads
    correct: bool


@dataclass(frozen=True)
class Replayed:
    trace: Trace
    length: int  # thinking length in the report's unit
    paragraphs: int  # paragraph breaks in the thinking
    boundaries: list[ReplayedBoundary]
    correct: bool  # the final answer against gold


# -- input -------------------------------------------------------------------------------------------------
def load_traces(path: Path) -> list[Trace]:
    """JSON lines of `{"completion", "answer", "id"?, "question"?}` (a completion that may open with `<think>`) or
    chat responses (`reasoning_content` or `reasoning` beside `content`, as a message, a choice, or a whole
    response with `choices`) carrying the gold `answer`, and optionally the `question` (text) or the `prompt`
    (text, or the chat messages of the request). A bad line raises ValueError naming it."""
    traces: list[Trace] = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if line.strip():
                try:
                    traces += _parse_line(json.loads(line), str(number))
                except (json.JSONDecodeError, TypeError, ValueError) as error:
                    raise ValueError(f"{path}:{number}: {_reason(error)}") from None
    if not traces:
        raise ValueError(f"{path}: no traces")
    return traces


def _reason(error: Exception) -> str:
    return f"not valid JSON ({error.msg})" if isinstance(error, json.JSONDecodeError) else str(error)


def _parse_line(record, line_id: str) -> list[Trace]:
    if not isinstance(record, dict):
        raise ValueError("expected a JSON object")
    gold = record.get("answer")
    if gold is None or isinstance(gold, (dict, list)) or not str(gold).strip():
        raise ValueError('missing the gold "answer"')
    trace_id = str(record.get("id", line_id))
    messages = _messages(record)
    if not messages:
        raise ValueError('no "completion", and no chat message with "reasoning_content", "reasoning" or "content"')
    ids = [trace_id] if len(messages) == 1 else [f"{trace_id}:{i}" for i in range(len(messages))]
    question = _question(record)
    return [Trace(i, *split_message(message), str(gold).strip(), question) for i, message in zip(ids, messages)]


def _question(record: dict) -> str | None:
    """The text of the line's `question`, or of its `prompt` (chat messages: their text contents, in order)."""
    if "question" in record:
        if not isinstance(record["question"], str):
            raise ValueError('"question" must be text')
        return record["question"]
    prompt = record.get("prompt")
    if prompt is None or isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and all(isinstance(m, dict) for m in prompt):
        return "\n".join(_message_text(m.get("content")) for m in prompt)
    raise ValueError('"prompt" must be text or a list of chat messages')


def _message_text(content) -> str:
    """A chat message's text: its content, or the text of its content parts."""
    if isinstance(content, list):
        return "\n".join(p["text"] for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return content if isinstance(content, str) else ""


def _messages(record: dict) -> list[dict]:
    if isinstance(record.get("completion"), str):
        return [{"content": record["completion"]}]
    response = record.get("response", record)
    if isinstance(response, dict) and isinstance(response.get("choices"), list):
        return [c.get("message") or c.get("delta") or {} for c in response["choices"] if isinstance(c, dict)]
    message = record.get("message", record)
    keys = ("reasoning_content", "reasoning", "content")
    return [message] if isinstance(message, dict) and any(isinstance(message.get(k), str) for k in keys) else []


def split_message(message: dict) -> tuple[str, str | None]:
    """(thinking, final answer text) of a chat message or a raw completion (`content` only), the completion cut
    by `split_thinking`: its thinking runs from after an opening `<think>` (or its start) to the first
    `</think>`; without `</think>` it was cut off."""
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    content = message.get("content") or ""
    if isinstance(reasoning, str) and reasoning:
        return reasoning, content
    return split_thinking(content)


# -- tokens and characters ---------------------------------------------------------------------------------
class CharTokenizer:
    """One token per character of the texts it is built for, plus the thinking markers: replaying with it
    measures in characters through the very tracker the engine uses."""

    def __init__(self, texts: list[str]):
        self.markers = (THINK_START, THINK_END)
        self.vocab = {char: i for i, char in enumerate(sorted(set("".join(texts)) | {"\n"}))}
        for marker in self.markers:
            self.vocab[marker] = len(self.vocab)
        self.pieces = sorted(self.vocab, key=self.vocab.get)
        self.added_tokens_decoder = {self.vocab[m]: _Added(m) for m in self.markers}

    def __len__(self) -> int:
        return len(self.vocab)

    def get_vocab(self) -> dict[str, int]:
        return dict(self.vocab)

    def convert_ids_to_tokens(self, ids: list[int]) -> list[str]:
        return [self.pieces[i] for i in ids]

    def decode(self, ids: list[int], **_) -> str:
        return "".join(self.pieces[i] for i in ids)

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        if text in self.markers:
            return [self.vocab[text]]
        return [self.vocab[char] for char in text]


@dataclass(frozen=True)
class _Added:
    content: str


def token_ends(tokenizer, text: str) -> tuple[list[int], list[int]]:
    """The token ids of `text` and, for each token, the character offset just past it."""
    if isinstance(tokenizer, CharTokenizer):
        return tokenizer.encode(text), list(range(1, len(text) + 1))
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("--tokenizer needs a fast (Rust) tokenizer, which reports character offsets")
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ends, furthest = [], 0
    for _, end in encoded["offset_mapping"]:
        furthest = max(furthest, end)
        ends.append(furthest)
    return list(encoded["input_ids"]), ends


# -- replay ------------------------------------------------------------------------------------------------
def replay_trace(trace: Trace, policy: BoundaryPolicy, tokenizer, equivalence: Equivalence) -> Replayed:
    ids, ends = token_ends(tokenizer, trace.thinking)
    tracker = policy.thinking_tracker(trace.question)
    boundaries = []
    for token_id in ids:
        boundary = tracker.feed(token_id)
        if boundary is not None:
            boundaries.append(
                ReplayedBoundary(
                    ends[boundary.token_index],
                    boundary.token_index + 1,
                    boundary.answer,
                    boundary.answer is not None and equivalence.same(boundary.answer, trace.gold),
                )
            )
    final = final_answer(trace.final) if trace.final is not None else None
    correct = final is not None and equivalence.same(final, trace.gold)
    return Replayed(trace, len(ids), tracker.n_paragraphs, boundaries, correct)


def exit_at(replayed: Replayed, index: int | None) -> tuple[int, bool]:
    """(thinking length used, answer right) when exiting at boundary `index` (None: thinking to the end)."""
    if index is None:
        return replayed.length, replayed.correct
    boundary = replayed.boundaries[index]
    return boundary.end_units, boundary.correct


def exit_at_budget(replayed: Replayed, budget: int) -> tuple[int, bool]:
    if budget >= replayed.length:
        return replayed.length, replayed.correct
    stated = [b for b in replayed.boundaries if b.end_units <= budget]
    return budget, bool(stated) and stated[-1].correct


def first_exit(replayed: Replayed, rule: str, k: int = 0) -> int | None:
    """The boundary at which a text rule exits (None: it never does): `oracle` (the first right answer),
    `first` (the first answer), `consistency` (the last k answers agree, as the decode step compares them)."""
    answers: list[str] = []
    for index, boundary in enumerate(replayed.boundaries):
        if boundary.answer is None:
            continue  # a paragraph boundary that states nothing: no text rule can decide there
        answers.append(boundary.answer)
        if (
            rule == "first"
            or rule == "oracle"
            and boundary.correct
            or rule == "consistency"
            and answers_agree(answers, k)
        ):
            return index
    return None


def summarize(name: str, param: str, outcomes: list[tuple[int, bool]], replays: list[Replayed]) -> dict:
    """A policy's row: accuracy, the share of all thinking saved, and the mean per-trace saving over the
    traces whose own final answer is right (how the gap between answer and end of thinking is usually read)."""
    total = sum(r.length for r in replays)
    kept = [1 - used / r.length for (used, _), r in zip(outcomes, replays) if r.correct and r.length]
    return {
        "name": name,
        "param": param,
        "accuracy": sum(ok for _, ok in outcomes) / len(outcomes),
        "saved_pct": 100.0 * (1 - sum(used for used, _ in outcomes) / total) if total else 0.0,
        "saved_pct_correct_traces": 100.0 * sum(kept) / len(kept) if kept else None,
    }


def build_report(replays: list[Replayed], unit: str, policy: BoundaryPolicyConfig, traces_file: str) -> dict:
    def rule_row(rule: str, k: int = 0) -> dict:
        outcomes = [exit_at(r, first_exit(r, rule, k)) for r in replays]
        return summarize(rule, f"k={k}" if k else "-", outcomes, replays)

    mean_length = sum(r.length for r in replays) / len(replays)
    budgets = sorted({max(1, int(f * mean_length)) for f in BUDGET_FRACTIONS})
    policies = [rule_row("first")] + [rule_row("consistency", k) for k in CONSISTENCY_KS]
    policies += [summarize("budget", f"{unit}={b}", [exit_at_budget(r, b) for r in replays], replays) for b in budgets]
    paragraphs = sum(r.paragraphs for r in replays)
    boundaries = sum(len(r.boundaries) for r in replays)
    return {
        "traces_file": traces_file,
        "unit": unit,
        "boundary_mode": policy.mode,
        "extractors": list(policy.extractors),
        "n_traces": len(replays),
        "n_correct": sum(r.correct for r in replays),
        "paragraphs": paragraphs,
        "boundaries": boundaries,
        "boundaries_per_paragraph": boundaries / paragraphs if paragraphs else 0.0,
        "baseline": summarize("none", "-", [exit_at(r, None) for r in replays], replays),
        "oracle": rule_row("oracle"),
        "policies": policies,
        "traces": [_trace_json(r, unit) for r in replays],
    }


def _trace_json(replayed: Replayed, unit: str) -> dict:
    boundaries = []
    for b in replayed.boundaries:
        row = {"end": b.end, "answer": b.answer, "answer_correct": b.correct}
        boundaries.append({**row, "end_tokens": b.end_units} if unit == "tokens" else row)
    return {
        "id": replayed.trace.id,
        "correct": replayed.correct,
        "thinking_length": replayed.length,
        "boundaries": boundaries,
    }


def run_replay(
    traces_file: Path,
    out: Path,
    extractors: tuple[str, ...],
    tokenizer_name: str | None = None,
    mode: str = ANSWER,
) -> dict:
    """Replay every trace of `traces_file` at the boundaries of `mode`; write `out/report.json` and
    `out/replay.png`."""
    traces = load_traces(traces_file)
    if tokenizer_name is None:
        tokenizer, unit = CharTokenizer([t.thinking for t in traces]), "chars"
    else:
        from transformers import AutoTokenizer

        tokenizer, unit = AutoTokenizer.from_pretrained(tokenizer_name), "tokens"
    policy = BoundaryPolicy(BoundaryPolicyConfig(mode=mode, extractors=extractors), tokenizer)
    equivalence = MathEquivalence()
    replays = [replay_trace(trace, policy, tokenizer, equivalence) for trace in traces]
    if not any(r.paragraphs for r in replays):
        raise ValueError(
            f"{traces_file}: no trace's thinking has a paragraph break (a blank line), so there is no boundary to "
            "exit at; early exit reads thinking written in paragraphs"
        )
    report = build_report(replays, unit, policy.config, str(traces_file))
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    plot(report, out / "replay.png")
    return report


def summary_lines(report: dict) -> list[str]:
    oracle, baseline = report["oracle"], report["baseline"]
    lines = [
        f"{report['n_traces']} traces ({report['n_correct']} right), {report['boundaries']} boundaries in "
        f"{report['paragraphs']} paragraphs ({report['boundaries_per_paragraph']:.1%}), unit: {report['unit']}",
        f"no early exit: accuracy {baseline['accuracy']:.3f}",
        f"oracle (first right boundary): accuracy {oracle['accuracy']:.3f}, saves {oracle['saved_pct']:.1f}%",
    ]
    lines += [
        f"{row['name']} {row['param']}: accuracy {row['accuracy']:.3f}, saves {row['saved_pct']:.1f}%"
        for row in report["policies"]
    ]
    return lines


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 5))
    for family, style in (("budget", "s--"), ("consistency", "^--"), ("first", "P")):
        points = sorted((r["saved_pct"], r["accuracy"]) for r in report["policies"] if r["name"] == family)
        axes.plot(*zip(*points), style, label=family, markersize=7)
    axes.plot(0, report["baseline"]["accuracy"], "k*", markersize=14, label="no early exit")
    axes.plot(
        report["oracle"]["saved_pct"],
        report["oracle"]["accuracy"],
        "D",
        color="gold",
        markeredgecolor="black",
        markersize=10,
        label="oracle",
    )
    axes.set_xlabel(f"thinking saved (% of {report['unit']})")
    axes.set_ylabel("accuracy")
    axes.set_title(f"Replayed exits, {report['n_traces']} traces (up and right is better)")
    axes.grid(alpha=0.3)
    axes.legend(loc="lower left")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
