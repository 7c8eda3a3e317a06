"""A vLLM reasoning parser over the served model's own thinking markers, for structured outputs.

vLLM applies a request's grammar (a JSON schema, a forced tool call) only once its reasoning parser says the
thinking has ended, so that the thinking itself stays free. Its built-in parsers each hard-code one model family's
markers; this one takes the marker token ids per request (`reasoning_parser_kwargs`), so that the grammar starts
right after whichever end marker the server found for the model (or the probe was trained with), whether the model
wrote it or early exit forced it. vLLM imports this module in its engine process (`reasoning_parser_plugin`), which
registers the parser under `THINKING_PARSER_NAME`.

The engine asks it two things: whether a prompt leaves the thinking closed (its last marker is the end marker: the
grammar applies from the first token), and whether newly sampled tokens hold the end marker.
"""

from __future__ import annotations

from vllm.reasoning import ReasoningParser, ReasoningParserManager
from vllm.reasoning.basic_parsers import BaseThinkingReasoningParser

from probexit.engine.structured import THINKING_PARSER_NAME


@ReasoningParserManager.register_module(THINKING_PARSER_NAME)
class MarkerReasoningParser(BaseThinkingReasoningParser):
    """`BaseThinkingReasoningParser`'s rules over token ids given by the caller rather than looked up by the
    marker's text (a model may spell a marker as a single token that its vocabulary lists under another string,
    and a model whose template opens the thinking may have no start token at all: `start_id` None)."""

    def __init__(self, tokenizer, *args, start_id: int | None = None, end_id: int | None = None, **kwargs):
        if end_id is None:
            raise ValueError("the thinking parser needs the end marker's token id (reasoning_parser_kwargs end_id)")
        ReasoningParser.__init__(self, tokenizer, *args, **kwargs)  # the base class's own looks markers up by text
        self.start_token_id, self.end_token_id = start_id, end_id

    @property
    def start_token(self) -> str:
        return "" if self.start_token_id is None else self.model_tokenizer.decode([self.start_token_id])

    @property
    def end_token(self) -> str:
        return self.model_tokenizer.decode([self.end_token_id])
