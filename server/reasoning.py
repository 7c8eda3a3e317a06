"""The split of a completion into reasoning and answer, as the chat endpoint returns them.

Token ids decide the phase (`probes.markers.ThinkingPhase`, which also counts the reasoning tokens); the
engine's detokenized text is then cut where the marker text appears, which keeps stop strings and multi-byte
characters exactly as the engine produced them, whether the text arrives whole or in streamed deltas. The
markers themselves appear in neither part.
"""

from __future__ import annotations

from collections import deque

from probexit.probes.markers import CLOSED, OPENED, OUTSIDE, ThinkingMarkers


class ReasoningSplitter:
    """Routes one choice's output, fed in deltas or whole, to (reasoning, content)."""

    def __init__(self, markers: ThinkingMarkers | None, prompt_ids: list[int]):
        self.markers = markers
        self.phase = markers.phase(prompt_ids) if markers is not None else None  # None: everything is content
        self._text_in_reasoning = self.phase is not None and self.phase.thinking
        self._pending: deque[tuple[str, bool]] = deque()  # (marker text, text goes to reasoning after it)
        self._carry = ""  # a text tail that may be the start of a pending marker
        self.content_ids: list[int] = []  # the answer's token ids among those fed last (tool parsers read them)

    @property
    def reasoning_tokens(self) -> int:
        return self.phase.thinking_tokens if self.phase is not None else 0

    @property
    def thinking(self) -> bool:
        """Still inside the thinking (its end marker has not come)."""
        return self.phase is not None and self.phase.thinking

    def feed(self, token_ids, text: str, final: bool = False) -> tuple[str, str]:
        """New tokens and the text the engine made of them -> (reasoning text, content text)."""
        if self.phase is None:
            self.content_ids = list(token_ids)
            return self._route(text, final)
        self.content_ids = []
        for token_id in token_ids:
            event = self.phase.advance(token_id)
            if event == OPENED:  # the marker is hidden and the text after it is reasoning
                self._pending.append((self.markers.start, True))
            elif event == CLOSED:
                self._pending.append((self.markers.end, False))
            elif event == OUTSIDE:
                self.content_ids.append(token_id)
        return self._route(text, final)

    def _route(self, text: str, final: bool) -> tuple[str, str]:
        text, self._carry = self._carry + text, ""
        parts: dict[bool, list[str]] = {True: [], False: []}
        while self._pending:
            marker, to_reasoning = self._pending[0]
            position = text.find(marker)
            if position < 0:
                keep = 0 if final else _prefix_overlap(text, marker)
                parts[self._text_in_reasoning].append(text[: len(text) - keep])
                self._carry, text = text[len(text) - keep :], ""
                break
            parts[self._text_in_reasoning].append(text[:position])
            text = text[position + len(marker) :]
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
