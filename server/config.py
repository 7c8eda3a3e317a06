"""`ServerConfig`: everything `build_app` needs, validated on construction.

The command line (`cli/serve.py`) is the only place that parses flags; tests and embedding code build a
`ServerConfig` directly. vLLM's own engine arguments travel as an `AsyncEngineArgs` object, untouched
except for what early exit must add to it (see `engine/setup.py`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from probexit.engine.config import ConfigError, EngineConfig
from probexit.kernels import BACKENDS as KERNEL_BACKENDS  # the dispatcher's own list
from probexit.probes.rules import DEFAULT_THRESHOLD, ExitSettings, SettingsError

API_KEY_ENV = "PROBEXIT_API_KEY"  # read by the CLI when --api-key is not given
MAX_REQUEST_BYTES = 1 << 20  # 1 MiB: about 250k tokens of text; raise it for longer contexts


@dataclass
class ServerConfig:
    """How to serve. Every field with a help text is a `probexit serve` flag of the same name; `model` and
    `served_model_name` are vLLM's own flags, and `engine_args` holds the rest of vLLM's (None: vLLM's
    defaults for `model`; its `model` is replaced by `model`)."""

    model: str
    served_model_name: str | None = None  # the name clients use in `model` and see in /v1/models
    probe: Path | None = field(
        default=None,
        metadata={
            "help": "Probe folder; without one the probe rule is off (the text rules still work). "
            "Default: the embedded probe when --model is not given."
        },
    )
    reward_model: Path | None = field(
        default=None,
        metadata={
            "help": "Reward model folder served at /v1/rewards. Default: the embedded one when --model is not given."
        },
    )
    host: str = field(default="127.0.0.1", metadata={"help": "Address to listen on (this machine only by default)."})
    port: int = field(default=8000, metadata={"help": "Port to listen on."})
    api_key: str | None = field(
        default=None,
        repr=False,
        metadata={
            "help": f"Require `Authorization: Bearer KEY` on /v1 routes (default: ${API_KEY_ENV}; none when unset)."
        },
    )
    early_exit: bool | None = field(
        default=None,
        metadata={"help": "End thinking early unless a request says otherwise (default: on with a probe)."},
    )
    threshold: float | None = field(
        default=None, metadata={"help": "Default probe threshold (default: the probe's own)."}
    )
    min_thinking_tokens: int = field(default=0, metadata={"help": "Default thinking tokens before any exit."})
    shadow_rate: float = field(
        default=0.0,
        metadata={
            "help": "Share of requests run in shadow mode: they think to the end, and the early_exit report and the "
            "probexit:shadow_* metrics say what early exit would have saved and changed (docs/serving.md)."
        },
    )
    kernel_backend: str = field(
        default="auto",
        metadata={
            "choices": KERNEL_BACKENDS,
            "help": "How the engine scores probe rows (auto: Triton on GPUs, numpy on CPU).",
        },
    )
    max_request_bytes: int = field(
        default=MAX_REQUEST_BYTES, metadata={"help": "Largest request body accepted (larger: 413 before it is parsed)."}
    )
    shutdown_grace_s: float = field(
        default=5.0,
        metadata={
            "flag": "--shutdown-grace",
            "metavar": "SECONDS",
            "help": "On SIGTERM, how long requests in flight may finish before each gets an error.",
        },
    )
    events_bind: str = field(
        default="ipc",
        metadata={
            "metavar": "ipc|tcp://HOST[:PORT]",
            "help": "Where the decision channel from the engine's workers listens: ipc (a local socket; every worker "
            "on this machine) or tcp on the address of an interface that workers on other nodes reach (Ray). "
            "Authenticated and encrypted either way (docs/deployment.md).",
        },
    )
    enable_auto_tool_choice: bool = field(
        default=False,
        metadata={
            "help": "Read tool calls out of answers when a request lets the model choose (tool_choice auto), with "
            "--tool-call-parser; as `vllm serve` takes it (docs/serving.md)."
        },
    )
    tool_call_parser: str | None = field(
        default=None,
        metadata={
            "metavar": "NAME",
            "help": "vLLM's tool parser for the model's own call format (hermes, llama3_json, mistral, pythonic, ...).",
        },
    )
    engine_args: Any = None

    def __post_init__(self):
        if not self.model:
            raise ConfigError("--model must name a model folder or hub id")
        self.served_model_name = self.served_model_name or self.model
        self.probe = Path(self.probe) if self.probe is not None else None
        self.reward_model = Path(self.reward_model) if self.reward_model is not None else None
        if self.probe is not None and not self.probe.is_dir():
            raise ConfigError(
                f"--probe {self.probe}: no such folder (a probe folder holds probe.json and probe.safetensors)"
            )
        if self.reward_model is not None and not self.reward_model.is_dir():
            raise ConfigError(f"--reward-model {self.reward_model}: no such folder")
        if not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            raise ConfigError(f"--port must be a number from 0 to 65535, got {self.port!r}")
        if not self.host:
            raise ConfigError("--host must not be empty")
        if self.api_key is not None and not self.api_key.strip():
            raise ConfigError("--api-key must not be empty (leave it out to serve without a key)")
        if self.early_exit and self.probe is None:
            raise ConfigError(
                "--early-exit needs --probe: the default rule is the probe's (requests may still "
                "ask for the text rules through their early_exit object)"
            )
        if not (isinstance(self.shadow_rate, (int, float)) and 0.0 <= self.shadow_rate <= 1.0):
            raise ConfigError(f"--shadow-rate is a share of requests in [0, 1], got {self.shadow_rate!r}")
        try:
            self.exit_settings()  # the early-exit defaults are ExitSettings' fields, checked by it
        except SettingsError as error:
            raise ConfigError(f"--{error.field.replace('_', '-')} {error.reason}") from None
        if self.kernel_backend not in KERNEL_BACKENDS:
            raise ConfigError(
                f"--kernel-backend must be one of {', '.join(KERNEL_BACKENDS)}, got {self.kernel_backend!r}"
            )
        if not isinstance(self.max_request_bytes, int) or self.max_request_bytes < 1:
            raise ConfigError(f"--max-request-bytes must be a positive integer, got {self.max_request_bytes!r}")
        from probexit.engine.channel import bind_endpoint

        try:
            bind_endpoint(self.events_bind)
        except ValueError as error:
            raise ConfigError(f"--events-bind: {error}") from None
        if self.enable_auto_tool_choice != (self.tool_call_parser is not None):
            raise ConfigError("--enable-auto-tool-choice and --tool-call-parser NAME go together, as in `vllm serve`")
        if not (math.isfinite(self.shutdown_grace_s) and self.shutdown_grace_s >= 0):
            raise ConfigError(f"--shutdown-grace must be a non-negative number of seconds, got {self.shutdown_grace_s}")

    def exit_settings(self, probe_threshold: float = DEFAULT_THRESHOLD) -> ExitSettings:
        """The server's default early-exit settings; `probe_threshold` (the probe's own) applies when no
        --threshold was given."""
        threshold = probe_threshold if self.threshold is None else self.threshold
        return ExitSettings(threshold=threshold, min_thinking_tokens=self.min_thinking_tokens)

    @property
    def early_exit_default(self) -> bool:
        return self.probe is not None if self.early_exit is None else self.early_exit

    def engine_config(self) -> EngineConfig:
        return EngineConfig(
            self.model,
            self.served_model_name,
            self.probe,
            self.kernel_backend,
            self.engine_args,
            tool_call_parser=self.tool_call_parser,
        )
