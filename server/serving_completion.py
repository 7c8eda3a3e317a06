"""`/v1/completions`: raw prompts (text or token ids, one or several), raw text back.

The text is the engine's, thinking markers included, as a completion client expects; each choice still
reports `early_exit`, and the usage counts reasoning tokens.
"""
from __future__ import annotations

import time
from collections.abc import AsyncIterator
from functools import partial

from probexit.server.errors import APIError
from probexit.server.generation import Delta, Generation, GenerationCore, stream_chunks
from probexit.server.protocol import CompletionChoice, CompletionRequest, CompletionResponse


def plan_completion(core: GenerationCore, request: CompletionRequest) -> Generation:
    prompts = tokenize_prompts(core.tokenizer, request.prompt, core.setup.vllm_config.model_config.get_vocab_size())
    return core.plan(request, prompts, request.max_tokens, id_prefix="cmpl", prompt_field="prompt")


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


async def complete(core: GenerationCore, generation: Generation) -> CompletionResponse:
    joined = await core.collect(generation)
    choices = [CompletionChoice(index=choice.index, text=joined[choice.index].text,
                                finish_reason=choice.finish_reason, early_exit=choice.report)
               for choice in generation.choices]
    return CompletionResponse(id=generation.request_id, model=generation.model, choices=choices,
                              usage=generation.usage())


def stream(core: GenerationCore, generation: Generation, include_usage: bool) -> AsyncIterator[CompletionResponse]:
    make_chunk = partial(CompletionResponse, id=generation.request_id, object="text_completion",
                         created=int(time.time()), model=generation.model)
    return stream_chunks(core, generation, include_usage, make_chunk, _chunk_choice)


def _chunk_choice(delta: Delta) -> CompletionChoice | None:
    choice = delta.choice
    if not (delta.text or choice.done):
        return None
    final = {"early_exit": choice.report} if choice.done else {}
    return CompletionChoice(index=choice.index, text=delta.text, finish_reason=choice.finish_reason, **final)
