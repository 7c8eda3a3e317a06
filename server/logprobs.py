"""Token log-probabilities in OpenAI's two shapes: chat's `logprobs.content` and completions' parallel lists.

The engine reports, for each sampled token, its own log-probability and those of the `k` most likely tokens, all
read from the model's logits before any logits processor: a `</think>` that early exit forced is reported with
the probability the model itself gave it. A log-probability of minus infinity is sent as -9999.0, as vLLM's
server does (JSON has no infinity).
"""

from __future__ import annotations

import math

from probexit.server.protocol import ChatLogprobs, CompletionLogprobs, TokenLogprob, TopLogprob

FLOOR = -9999.0


def chat_logprobs(token_ids: list[int], steps: list, top: int, tokenizer) -> ChatLogprobs:
    """`steps[i]` is the engine's {token id: Logprob} for `token_ids[i]`; `top` alternatives per token."""
    content = []
    for token_id, step in zip(token_ids, steps):
        token, logprob = _entry(token_id, step, tokenizer)
        alternatives = [
            TopLogprob(token=text, logprob=value, bytes=list(text.encode()))
            for text, value in _top(step, top, tokenizer)
        ]
        content.append(
            TokenLogprob(token=token, logprob=logprob, bytes=list(token.encode()), top_logprobs=alternatives)
        )
    return ChatLogprobs(content=content)


def completion_logprobs(token_ids: list[int], steps: list, top: int, tokenizer, offset: int) -> CompletionLogprobs:
    """The same for completions; `offset` is where this piece's text starts in the choice's whole text. Every
    field is set explicitly: streamed chunks leave out the fields that were never set."""
    tokens, values, alternatives, offsets = [], [], [], []
    for token_id, step in zip(token_ids, steps):
        token, logprob = _entry(token_id, step, tokenizer)
        tokens.append(token)
        values.append(logprob)
        alternatives.append(dict(_top(step, top, tokenizer)) if top else None)
        offsets.append(offset)
        offset += len(token)
    return CompletionLogprobs(text_offset=offsets, token_logprobs=values, tokens=tokens, top_logprobs=alternatives)


def _entry(token_id: int, step: dict, tokenizer) -> tuple[str, float]:
    logprob = step.get(token_id) if step else None
    return _text(token_id, logprob, tokenizer), _finite(logprob.logprob if logprob is not None else -math.inf)


def _top(step: dict, top: int, tokenizer) -> list[tuple[str, float]]:
    ranked = sorted(
        (entry.rank, token_id, entry)
        for token_id, entry in (step or {}).items()
        if entry.rank is not None and entry.rank <= top
    )
    return [(_text(token_id, entry, tokenizer), _finite(entry.logprob)) for _, token_id, entry in ranked[:top]]


def _text(token_id: int, entry, tokenizer) -> str:
    decoded = getattr(entry, "decoded_token", None)
    return decoded if decoded is not None else tokenizer.decode([token_id])


def _finite(value: float) -> float:
    return max(value, FLOOR) if not math.isnan(value) else FLOOR
