"""What the engine is built from, and the error a setting that cannot work raises. Light on purpose: the command
line and the server's config read it without importing vLLM."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """A setting that cannot work; the message says which flag and how to fix it."""


@dataclass(frozen=True)
class EngineConfig:
    """What the engine is built from.

    model: a Hugging Face model folder or hub id (vLLM's `--model`).
    served_model_name: the name clients use.
    probe: a probe folder; None runs without the probe rule (the text rules still work).
    kernel_backend: how the engine scores probe rows ("auto": Triton on GPU, numpy elsewhere).
    tool_call_parser: vLLM's tool parser that reads the model's own tool calls (`tool_choice: auto`); None: none.
    engine_args: vLLM's `AsyncEngineArgs` (None: vLLM's defaults for `model`); its `model` is replaced by `model`.
    """

    model: str
    served_model_name: str
    probe: Path | None = None
    kernel_backend: str = "auto"
    engine_args: Any = None
    tool_call_parser: str | None = None
