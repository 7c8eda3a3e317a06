"""The engine layer: everything that touches vLLM. Importing this package, its constants and its request
arguments (`engine.constants`, `engine.requests`, `engine.config`) loads neither vLLM nor torch."""

from probexit.engine.config import ConfigError, EngineConfig
from probexit.engine.constants import (
    CPU_KV_CACHE_ENV,
    CPU_KV_CACHE_GIB,
    EVAL_TEMPERATURE,
    EVAL_TOP_P,
    EVENTS_CHANNEL_ENV,
    EXTRA_ARGS_KEY,
    PROCESSOR_FQCN,
    SUPPORTED_VLLM_VERSION,
)
from probexit.engine.requests import request_extra_args, sampling_params

__all__ = [
    "CPU_KV_CACHE_ENV",
    "CPU_KV_CACHE_GIB",
    "EVAL_TEMPERATURE",
    "EVAL_TOP_P",
    "EVENTS_CHANNEL_ENV",
    "EXTRA_ARGS_KEY",
    "PROCESSOR_FQCN",
    "SUPPORTED_VLLM_VERSION",
    "ConfigError",
    "EngineConfig",
    "request_extra_args",
    "sampling_params",
]
