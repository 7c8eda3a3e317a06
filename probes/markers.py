"""Thinking markers: the tokens that open and close a model's thinking, and the one state machine that
follows a completion through them.

The markers are read from the model's tokenizer (or from the probe's boundary policy, which names the markers
the probe was trained with), never assumed: DeepSeek-R1 distills and Qwen3 use `<think>`/`</think>`, other
families other pairs, and a model without any is served without a split.

Thinking is everything before the first end marker. A prompt whose chat template already opened the thinking
(the tiny world, recent R1 distills) starts the completion inside it; otherwise the model may open it with
its first token (Qwen3), and any other first token starts the answer. `ThinkingPhase` is that rule, token
by token; the boundary tracker (which reads chunks of thinking) and the reasoning splitter (which cuts the
text the client gets) both follow it, so a token is a thinking token for one exactly when it is for the other.
"""

from __future__ import annotations

from dataclasses import dataclass

THINK_START, THINK_END = "<think>", "</think>"
# Pairs seen in released reasoning models, tried in this order after any pair the chat template names.
KNOWN_MARKERS = (
    (THINK_START, THINK_END),
    ("<seed:think>", "</seed:think>"),
    ("◁think▷", "◁/think▷"),
    ("<|begin_of_thought|>", "<|end_of_thought|>"),
)
# Where assistant messages carry their thinking beside `content`: DeepSeek, SGLang and TRL's response parsers
# name it `reasoning_content`, vLLM and OpenRouter `reasoning`.
REASONING_FIELDS = ("reasoning_content", "reasoning")

# What a token did (ThinkingPhase.advance).
OPENED, CLOSED, THOUGHT, OUTSIDE = "opened", "closed", "thought", "outside"
BEFORE, THINKING, ANSWER = "before", "thinking", "answer"


@dataclass(frozen=True)
class ThinkingMarkers:
    start: str
    end: str
    start_id: int | None  # None: the model cannot open thinking itself (the template must)
    end_id: int
    special: bool  # the tokenizer calls a marker special: keep special tokens in the text to find it

    @classmethod
    def from_tokenizer(cls, tokenizer, start: str, end: str) -> ThinkingMarkers | None:
        """The pair as this tokenizer spells it; None when the end marker is not a single token."""
        start_id, end_id = single_token_id(tokenizer, start), single_token_id(tokenizer, end)
        if end_id is None:
            return None
        special_ids = set(getattr(tokenizer, "all_special_ids", []) or [])
        return cls(start, end, start_id, end_id, special=bool({start_id, end_id} & special_ids))

    def opened_by(self, prompt_ids: list[int] | None) -> bool:
        """True when the prompt leaves the model inside its thinking (its last marker is the start marker)."""
        return opened_by(prompt_ids, self.start_id, self.end_id)

    def phase(self, prompt_ids: list[int] | None) -> ThinkingPhase:
        """The state machine of a completion that follows `prompt_ids`."""
        return ThinkingPhase(self.start_id, self.end_id, self.opened_by(prompt_ids))


def opened_by(prompt_ids: list[int] | None, start_id: int | None, end_id: int | None) -> bool:
    for token_id in reversed(prompt_ids or []):
        if token_id == end_id:
            return False
        if token_id == start_id:
            return True
    return False


class ThinkingPhase:
    """Where one completion is: before its thinking, in it, or in its answer; fed one token at a time.

    >>> phase = ThinkingPhase(start_id=1, end_id=2, opened=False)
    >>> [phase.advance(t) for t in (1, 7, 7, 2, 7, 1)], phase.thinking_tokens
    (['opened', 'thought', 'thought', 'closed', 'outside', 'outside'], 2)
    >>> phase = ThinkingPhase(start_id=1, end_id=2, opened=False)
    >>> [phase.advance(t) for t in (7, 1, 2)], phase.state  # a first token that is no marker starts the answer
    (['outside', 'outside', 'outside'], 'answer')
    """

    __slots__ = ("start_id", "end_id", "state", "thinking_tokens")

    def __init__(self, start_id: int | None, end_id: int, opened: bool):
        self.start_id, self.end_id = start_id, end_id
        self.state = THINKING if opened else BEFORE
        self.thinking_tokens = 0

    @property
    def thinking(self) -> bool:
        return self.state == THINKING

    def advance(self, token_id: int) -> str:
        state = self.state
        if state == ANSWER:
            return OUTSIDE
        if token_id == self.end_id:
            self.state = ANSWER
            return CLOSED
        if token_id == self.start_id and (state == BEFORE or self.thinking_tokens == 0):
            self.state = THINKING  # the model opened its thinking (again, right after the template did)
            return OPENED
        if state == THINKING:
            self.thinking_tokens += 1
            return THOUGHT
        self.state = ANSWER  # the first token is not a marker: this completion does not think
        return OUTSIDE

    def advance_unmarked(self, count: int) -> bool:
        """`count` (at least 1) tokens none of which is a marker, at once: the state `advance` leaves after
        them. True when they are all thought (the phase is thinking)."""
        if self.state == THINKING:
            self.thinking_tokens += count
            return True
        if self.state == BEFORE:
            self.state = ANSWER
        return False


def find_markers(tokenizer, preferred: tuple[str, str] | None = None) -> ThinkingMarkers | None:
    """The model's thinking markers. `preferred` (the probe's) must exist; otherwise the first known pair
    that the tokenizer spells as single tokens, pairs its chat template mentions first; None if none."""
    if preferred is not None:
        markers = ThinkingMarkers.from_tokenizer(tokenizer, *preferred)
        if markers is None:
            raise ValueError(
                f"the probe's thinking end marker {preferred[1]!r} is not a single token of this "
                "model's tokenizer: the probe was made for another model family"
            )
        return markers
    template = str(getattr(tokenizer, "chat_template", "") or "")
    for start, end in sorted(KNOWN_MARKERS, key=lambda pair: pair[1] not in template):
        markers = ThinkingMarkers.from_tokenizer(tokenizer, start, end)
        if markers is not None:
            return markers
    return None


def single_token_id(tokenizer, text: str) -> int | None:
    ids = tokenizer.encode(text, add_special_tokens=False)
    return ids[0] if len(ids) == 1 else None


def split_thinking(text: str, end: str = THINK_END, start: str = THINK_START) -> tuple[str, str | None]:
    """A completion's text as (thinking, answer): the thinking runs from its beginning, or from just after a
    start marker that opens it (blanks before the marker allowed), to the first end marker; the answer is
    everything after that marker, None when no end marker came (the completion was cut off inside its thinking).

    The text is read as a completion whose thinking the prompt opened or the model opens first, the rule
    `ThinkingPhase` follows token by token: an end marker written again after the first is part of the answer
    (a caller that demands a single one counts them). Every job that cuts a completion's text cuts it here.

    >>> split_thinking("<think>\\nA\\n\\n</think>\\n\\nB"), split_thinking("A</think>B</think>C")
    (('\\nA\\n\\n', '\\n\\nB'), ('A', 'B</think>C'))
    >>> split_thinking("A, cut off")
    ('A, cut off', None)
    """
    opened = text.lstrip()
    if start and opened.startswith(start):
        text = opened[len(start) :]
    thinking, marker, answer = text.partition(end)
    return thinking, answer if marker else None


def message_reasoning(message: dict) -> str | None:
    """An assistant message's thinking, under whichever of `REASONING_FIELDS` carries it (None: none does)."""
    return next((message[name] for name in REASONING_FIELDS if message.get(name) is not None), None)


def as_written(message: dict, think_end: str | None = THINK_END) -> str:
    """An assistant message as the model wrote it after its generation prompt: the thinking a chat endpoint
    split off put back before the end marker, then the answer.

    >>> as_written({"role": "assistant", "reasoning_content": "r", "content": "\\n\\nc"})
    'r</think>\\n\\nc'
    >>> as_written({"role": "assistant", "reasoning": "r", "content": "c"}), as_written({"content": "x</think>y"})
    ('r</think>c', 'x</think>y')
    """
    content = message.get("content") or ""
    reasoning = message_reasoning(message)
    return f"{reasoning}{think_end}{content}" if reasoning is not None and think_end else content
