"""How a conversation becomes the token ids a reward model reads: one rendering for training and serving."""

from __future__ import annotations

from probexit.probes.markers import THINK_END, THINK_START, as_written


def render_ids(
    tokenizer, messages: list[dict], think_start: str | None = THINK_START, think_end: str | None = THINK_END
) -> list[int]:
    """The token ids of a conversation whose last message is the assistant's answer: the messages before it
    through the chat template with its generation prompt, the answer (its `content`, with the thinking a chat
    endpoint split off put back before the end marker), then the end-of-turn token."""
    *context, answer = messages
    prompt = tokenizer.apply_chat_template(context, tokenize=False, add_generation_prompt=True)
    text = answer_text(answer, think_start, think_end, prompt)
    return tokenizer.encode(prompt + text, add_special_tokens=False) + [tokenizer.eos_token_id]


def answer_text(message: dict, think_start: str | None, think_end: str | None, prompt: str = "") -> str:
    """The assistant's answer as the model wrote it after the generation prompt.

    >>> answer_text({"role": "assistant", "reasoning_content": "r", "content": "\\n\\nc"}, "<think>", "</think>")
    'r</think>\\n\\nc'
    >>> answer_text({"role": "assistant", "content": "<think>\\nr</think>c"}, "<think>", "</think>", "<think>\\n")
    'r</think>c'
    """
    text = as_written(message, think_end)
    if think_start and prompt.rstrip().endswith(think_start) and text.startswith(think_start):
        text = text[len(think_start) :].removeprefix("\n")  # the template already opened the thinking
    return text
