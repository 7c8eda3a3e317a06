"""The tiny world's tokenizer: byte-level BPE with exactly Qwen2's pre-tokenizer, trained on traces.

Training with Qwen2's own split matters: once `config.json` says `qwen2`, loaders may rebuild the
tokenizer as `Qwen2Tokenizer` with that split, and any other split would silently change token ids
(docs/platform-notes.md). `<think>`/`</think>` are added tokens that are not special, so that decoding with
`skip_special_tokens=True` (TRL, vLLM) keeps them.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, pre_tokenizers, trainers

from probexit.probes.markers import THINK_END, THINK_START

END_OF_TEXT, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
SPECIAL_TOKENS = (END_OF_TEXT, IM_START, IM_END)
THINK_TOKENS = (THINK_START, THINK_END)

# A user's sum is written the way the model learned it: `+` and `-` with one space each side (`2+2`, `8 -3` and
# `2 plus 2` become `2 + 2`, `8 - 3`, `2 + 2`; runs of spaces become one), and a bare sum is asked (`7+8?` becomes
# `What is 7 + 8?`). The world's own questions are already written so, and pass unchanged. Only the user's
# messages: the model's own turns are its own text.
_SPACED_OPERATORS = (
    "|replace('  ', ' ')|replace('  ', ' ')|replace(' plus ', '+')|replace(' minus ', '-')"
    "|replace(' +', '+')|replace('+ ', '+')|replace('+', ' + ')"
    "|replace(' -', '-')|replace('- ', '-')|replace('-', ' - ')"
)

# The generation prompt opens the thinking section itself, as DeepSeek-R1 distills do.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- set content = message['content'] -%}"
    "{%- if message['role'] == 'user' -%}{%- set content = content" + _SPACED_OPERATORS + " -%}"
    "{%- if content[:1] and content[:1] in '0123456789' -%}{%- set content = 'What is ' + content -%}{%- endif -%}"
    "{%- endif -%}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + content + '<|im_end|>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{ '<|im_start|>assistant\\n<think>\\n' }}"
    "{%- if enable_thinking is defined and not enable_thinking -%}{{ '\\n</think>\\n\\n' }}{%- endif -%}"
    "{%- endif -%}"
)


def train_tokenizer(texts: Iterable[str], vocab_size: int, out_dir: Path) -> None:
    """Train BPE on `texts` and save a Qwen2-style tokenizer (tokenizer.json + config) into `out_dir`."""
    from transformers import Qwen2Tokenizer  # the class loaders will build, so its split is the one we train with

    seed = Qwen2Tokenizer()  # an empty vocabulary, but Qwen2's normalizer, pre-tokenizer and decoder
    backend: Tokenizer = seed.backend_tokenizer
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator((_without_markers(text) for text in texts), trainer=trainer)
    vocab = backend.get_vocab()
    merges = _merges_of(backend)
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=merges, eos_token=IM_END, pad_token=END_OF_TEXT)
    tokenizer.add_special_tokens({"additional_special_tokens": [IM_START, IM_END]})
    tokenizer.add_tokens(list(THINK_TOKENS), special_tokens=False)
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.model_max_length = 1024
    tokenizer.save_pretrained(out_dir)


def _without_markers(text: str) -> str:
    """Markers become single added tokens later, so BPE should spend no merges on their characters."""
    for marker in SPECIAL_TOKENS + THINK_TOKENS:
        text = text.replace(marker, "\n")
    return text


def render_chat(messages: list[dict], add_generation_prompt: bool = True) -> str:
    """The chat template applied without a tokenizer (needed before the tokenizer exists)."""
    import jinja2

    return jinja2.Template(CHAT_TEMPLATE).render(messages=messages, add_generation_prompt=add_generation_prompt)


def _merges_of(backend: Tokenizer) -> list[tuple[str, str]]:
    import json

    model = json.loads(backend.to_str())["model"]
    return [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
