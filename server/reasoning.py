"""Thinking markers and the split of a completion into reasoning and answer.

The markers are read from the model's tokenizer (or the probe's boundary policy, which names the markers
the probe was trained with), never assumed: DeepSeek-R1 distills and Qwen3 use `<think>`/`</think>`,
other families use other pairs, and a model without any is served without a split.

Thinking is everything before the first `</think>`. A prompt whose chat template already opened
`<think>` (the tiny world, recent R1 distills) starts the completion inside thinking; otherwise the model
may open it with its first token (Qwen3), and anything else starts the answer. The markers themselves
appear in neither part. Token ids decide the phase (and count reasoning tokens); the engine's detokenized
text is then cut where the marker text appears, which keeps stop strings and multi-byte characters exactly
as the engine produced them, whether the text arrives whole or in streamed deltas.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

# Pairs seen in released reasoning models, tried in this order after any pair the chat template names.
KNOWN_MARKERS = (("<think>", "</think>"), ("<seed:think>", "</seed:think>"), ("◁think▷", "◁/think▷"),
                 ("<|begin_of_thought|>", "<|end_of_thought|>"))

BEFORE, THINKING, ANSWER = "before", "thinking", "answer"


@dataclass(frozen=True)
class ThinkingMarkers:
    start: str
    end: str
    start_id: int | None  # None: the model cannot open thinking itself (the template must)
    end_id: int
    special: bool  # the tokenizer calls a marker special: keep special tokens in the text to find it

    def opened_by(self, prompt_ids: list[int]) -> bool:
        """True when the prompt leaves the model inside its thinking."""
        for token_id in reversed(prompt_ids):
            if token_id == self.end_id:
                return False
            if token_id == self.start_id:
                return True
        return False


def find_markers(tokenizer, preferred: tuple[str, str] | None = None) -> ThinkingMarkers | None:
    """The model's thinking markers. `preferred` (the probe's) must exist; otherwise the first known pair
    that the tokenizer spells as single tokens, pairs its chat template mentions first; None if none."""
    if preferred is not None:
        markers = _markers(tokenizer, *preferred)
        if markers is None:
            raise ValueError(f"the probe's thinking end marker {preferred[1]!r} is not a single token of this "
                             "model's tokenizer: the probe was made for another model family")
        return markers
    template = str(getattr(tokenizer, "chat_template", "") or "")
    for start, end in sorted(KNOWN_MARKERS, key=lambda pair: pair[1] not in template):
        markers = _markers(tokenizer, start, end)
        if markers is not None:
            return markers
    return None


def _markers(tokenizer, start: str, end: str) -> ThinkingMarkers | None:
    start_id, end_id = _single_token_id(tokenizer, start), _single_token_id(tokenizer, end)
    if end_id is None:
        return None
    special_ids = set(getattr(tokenizer, "all_special_ids", []) or [])
    return ThinkingMarkers(start, end, start_id, end_id, special=bool({start_id, end_id} & special_ids))


def _single_token_id(tokenizer, text: str) -> int | None:
    ids = tokenizer.encode(text, add_special_tokens=False)
    return ids[0] if len(ids) == 1 else None


class ReasoningSplitter:
    """Routes one choice's output, fed in deltas or whole, to (reasoning, content)."""

    def __init__(self, markers: ThinkingMarkers | None, prompt_ids: list[int]):
        self.markers = markers
        if markers is None:
            self.phase = ANSWER
        else:
            self.phase = THINKING if markers.opened_by(prompt_ids) else BEFORE
        self.reasoning_tokens = 0
        self._text_in_reasoning = self.phase == THINKING
        self._pending: deque[tuple[str, bool]] = deque()  # (marker text, text goes to reasoning after it)
        self._carry = ""  # a text tail that may be the start of a pending marker

    @property
    def saw_think_end(self) -> bool:
        return self.phase == ANSWER and self.markers is not None

    def feed(self, token_ids, text: str, final: bool = False) -> tuple[str, str]:
        """New tokens and the text the engine made of them -> (reasoning text, content text)."""
        for token_id in token_ids:
            self._advance(token_id)
        return self._route(text, final)

    def _advance(self, token_id: int) -> None:
        markers = self.markers
        if self.phase == ANSWER or markers is None:
            return
        if token_id == markers.end_id:
            self.phase = ANSWER
            self._pending.append((markers.end, False))
        elif token_id == markers.start_id and (self.phase == BEFORE or self.reasoning_tokens == 0):
            self.phase = THINKING  # the model opened thinking (again, right after the template did): hide it
            self._pending.append((markers.start, True))
        elif self.phase == THINKING:
            self.reasoning_tokens += 1
        else:
            self.phase = ANSWER  # the first token is not a marker: this completion does not think

    def _route(self, text: str, final: bool) -> tuple[str, str]:
        text, self._carry = self._carry + text, ""
        parts: dict[bool, list[str]] = {True: [], False: []}
        while self._pending:
            marker, to_reasoning = self._pending[0]
            position = text.find(marker)
            if position < 0:
                keep = 0 if final else _prefix_overlap(text, marker)
                parts[self._text_in_reasoning].append(text[:len(text) - keep])
                self._carry, text = text[len(text) - keep:], ""
                break
            parts[self._text_in_reasoning].append(text[:position])
            text = text[position + len(marker):]
            self._text_in_reasoning = to_reasoning
            self._pending.popleft()
        parts[self._text_in_reasoning].append(text)
        return "".join(parts[True]), "".join(parts[False])


def _prefix_overlap(text: str, marker: str) -> int:
    """The length of the longest tail of `text` that begins `marker` (text held back for the next delta)."""
    for size in range(min(len(text), len(marker) - 1), 0, -1):
        if marker.startswith(text[-size:]):
            return size
    return 0
