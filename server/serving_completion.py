"""`/v1/completions`: raw prompts (text or token ids, one or several), raw text back.

The text is the engine's, thinking markers included, as a completion client expects; each choice still
reports `early_exit`, and the usage counts reasoning tokens.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from functools import partial

from probexit.server.errors import APIError
from probexit.server.generation import Delta, GenerationJob
from probexit.server.logprobs import completion_logprobs
from probexit.server.protocol import CompletionChoice, CompletionRequest, CompletionResponse
from probexit.server.serving import OpenAIServing, choice_done


class ServingCompletion(OpenAIServing):
    id_prefix, prompt_field = "cmpl", "prompt"

    def prompts(self, body: CompletionRequest) -> list[list[int]]:
        if body.echo:
            raise APIError(400, "echo: not supported (the prompt is not sent back)", param="echo")
        if body.suffix:
            raise APIError(400, "suffix: not supported (no insertion after the completion)", param="suffix")
        if body.best_of is not None and body.best_of != body.n:
            raise APIError(400, "best_of: not supported beyond n (every choice sampled is returned)", param="best_of")
        return tokenize_prompts(self.core.tokenizer, body.prompt, self.core.setup.vocab_size)

    def plan_options(self, body: CompletionRequest) -> dict:
        return {"logprobs": body.logprobs}

    async def complete(self, job: GenerationJob, body: CompletionRequest) -> CompletionResponse:
        joined = await self.core.collect(job)
        choices = [
            CompletionChoice(
                index=choice.index,
                text=joined[choice.index].text,
                finish_reason=choice.finish_reason,
                early_exit=choice.report,
                logprobs=self._logprobs(choice, joined[choice.index].token_ids, joined[choice.index].logprobs, 0),
            )
            for choice in job.choices
        ]
        return CompletionResponse(id=job.request_id, model=job.model, choices=choices, usage=job.usage())

    def stream(self, job: GenerationJob, body: CompletionRequest) -> AsyncIterator[CompletionResponse]:
        make_chunk = partial(
            CompletionResponse, id=job.request_id, object="text_completion", created=int(time.time()), model=job.model
        )
        return self.stream_chunks(job, body.include_usage, make_chunk, self._chunk_choice)

    def _chunk_choice(self, delta: Delta) -> CompletionChoice | None:
        choice = delta.choice
        offset, choice.text_length = choice.text_length, choice.text_length + len(delta.text)
        if not (delta.text or choice.done or delta.logprobs):
            return None
        extra = {"logprobs": self._logprobs(choice, delta.token_ids, delta.logprobs, offset)} if delta.logprobs else {}
        return CompletionChoice(
            index=choice.index, text=delta.text, finish_reason=choice.finish_reason, **choice_done(delta), **extra
        )

    def _logprobs(self, choice, token_ids: list[int], steps: list | None, offset: int):
        if steps is None:
            return None
        return completion_logprobs(token_ids, steps, choice.params.logprobs, self.core.tokenizer, offset)


def tokenize_prompts(tokenizer, prompt, vocab_size: int) -> list[list[int]]:
    """OpenAI's four prompt forms -> one token list per prompt. Text gets the tokenizer's special tokens
    (a BOS where the model wants one), as vLLM does for completions."""
    if isinstance(prompt, str):
        prompt = [prompt]
    if not prompt:
        raise APIError(400, "prompt: give at least one prompt", param="prompt")
    if all(isinstance(item, int) for item in prompt):
        prompt = [prompt]
    prompts = [tokenizer.encode(item) if isinstance(item, str) else list(item) for item in prompt]
    for ids in prompts:
        if any(not 0 <= token_id < vocab_size for token_id in ids):
            raise APIError(400, f"prompt: token ids must lie in [0, {vocab_size})", param="prompt")
    return prompts
