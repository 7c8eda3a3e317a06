"""`ServerConfig`: everything `build_app` needs, validated on construction.

The command line (`cli/serve.py`) is the only place that parses flags; tests and embedding code build a
`ServerConfig` directly. vLLM's own engine arguments travel as an `AsyncEngineArgs` object, untouched
except for what early exit must add to it (see `server/engine.py`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from probexit.kernels.probe_score import BACKENDS as KERNEL_BACKENDS  # the dispatcher's own list

API_KEY_ENV = "PROBEXIT_API_KEY"  # read by the CLI when --api-key is not given
MAX_REQUEST_BYTES = 1 << 20  # 1 MiB: about 250k tokens of text; raise it for longer contexts


class ConfigError(ValueError):
    """A server setting that cannot work; the message says which flag and how to fix it."""


@dataclass
class ServerConfig:
    """How to serve.

    model: a Hugging Face model folder or hub id (vLLM's `--model`).
    served_model_name: the name clients use in `model` and see in `/v1/models`.
    probe: a probe folder; None serves without the probe rule (the text rules still work).
    reward_model: a reward model folder, kept on `app.state` for the rewards endpoint (None: none).
    host, port: where to listen. The default binds to this machine only.
    api_key: when set, every /v1 route needs `Authorization: Bearer <api_key>`. Never printed.
    early_exit: the default for requests that do not say; None means on exactly when a probe is loaded.
    threshold: the default probe threshold; None takes the probe's own default.
    min_thinking_tokens: the default number of thinking tokens before any exit.
    kernel_backend: how the engine scores probe rows ("auto" picks Triton on GPU, torch elsewhere).
    max_request_bytes: the largest request body accepted; a larger one is a 413 before it is parsed.
    shutdown_grace_s: on SIGTERM, how long requests in flight may still run; then each gets an error.
    engine_args: vLLM's `AsyncEngineArgs` (None: vLLM's defaults for `model`); its `model` is replaced
        by `model` above.
    """

    model: str
    served_model_name: str | None = None
    probe: Path | None = None
    reward_model: Path | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = field(default=None, repr=False)
    early_exit: bool | None = None
    threshold: float | None = None
    min_thinking_tokens: int = 0
    kernel_backend: str = "auto"
    max_request_bytes: int = MAX_REQUEST_BYTES
    shutdown_grace_s: float = 5.0
    engine_args: Any = None

    def __post_init__(self):
        if not self.model:
            raise ConfigError("--model must name a model folder or hub id")
        self.served_model_name = self.served_model_name or self.model
        self.probe = Path(self.probe) if self.probe is not None else None
        self.reward_model = Path(self.reward_model) if self.reward_model is not None else None
        if self.probe is not None and not self.probe.is_dir():
            raise ConfigError(f"--probe {self.probe}: no such folder "
                              "(a probe folder holds probe.json and probe.safetensors)")
        if self.reward_model is not None and not self.reward_model.is_dir():
            raise ConfigError(f"--reward-model {self.reward_model}: no such folder")
        if not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            raise ConfigError(f"--port must be a number from 0 to 65535, got {self.port!r}")
        if not self.host:
            raise ConfigError("--host must not be empty")
        if self.api_key is not None and not self.api_key.strip():
            raise ConfigError("--api-key must not be empty (leave it out to serve without a key)")
        if self.early_exit and self.probe is None:
            raise ConfigError("--early-exit needs --probe: the default rule is the probe's (requests may still "
                              "ask for the text rules through their early_exit object)")
        if self.threshold is not None and not (math.isfinite(self.threshold) and 0.0 <= self.threshold <= 1.01):
            raise ConfigError(f"--threshold must lie in [0, 1.01] (above 1 never exits), got {self.threshold}")
        if not isinstance(self.min_thinking_tokens, int) or self.min_thinking_tokens < 0:
            raise ConfigError(f"--min-thinking-tokens must be a non-negative integer, got {self.min_thinking_tokens!r}")
        if self.kernel_backend not in KERNEL_BACKENDS:
            raise ConfigError(f"--kernel-backend must be one of {', '.join(KERNEL_BACKENDS)}, "
                              f"got {self.kernel_backend!r}")
        if not isinstance(self.max_request_bytes, int) or self.max_request_bytes < 1:
            raise ConfigError(f"--max-request-bytes must be a positive integer, got {self.max_request_bytes!r}")
        if not (math.isfinite(self.shutdown_grace_s) and self.shutdown_grace_s >= 0):
            raise ConfigError(f"--shutdown-grace must be a non-negative number of seconds, got {self.shutdown_grace_s}")

    @property
    def early_exit_default(self) -> bool:
        return self.probe is not None if self.early_exit is None else self.early_exit
