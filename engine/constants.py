"""The engine layer's names that other layers use without starting, or even importing, vLLM or torch."""

from __future__ import annotations

import os

SUPPORTED_VLLM_VERSION = "0.32.0"
EXTRA_ARGS_KEY = "probexit"  # SamplingParams.extra_args key, and additional_config key
# The event channel's ticket (address and keys, engine/events.py) reaches the workers in this variable, not in
# additional_config: that would change vLLM's compile-cache hash at every start (fresh keys).
EVENTS_CHANNEL_ENV = "PROBEXIT_EVENTS_CHANNEL"
# vLLM 0.32's Ray executors copy to their workers only the variables vLLM knows or that carry one of its prefixes,
# plus those this one lists (comma-separated; vllm/ray/ray_env.py, get_env_vars_to_copy).
RAY_ENV_COPY_VAR = "VLLM_RAY_EXTRA_ENV_VARS_TO_COPY"
PROCESSOR_FQCN = "probexit.engine.adapter:EarlyExitLogitsProcessor"

# vLLM on CPU refuses to start without a KV-cache size; 1 GiB serves small models well.
CPU_KV_CACHE_ENV, CPU_KV_CACHE_GIB = "VLLM_CPU_KVCACHE_SPACE", "1"

# The sampling reasoning models are evaluated at (DeepSeek-R1's recommendation; the tiny world's policy is trained
# and measured at it): traces, the model card, EMPO's evaluation and the benchmarks sample with it by default.
EVAL_TEMPERATURE, EVAL_TOP_P = 0.6, 0.95

# What `engine.client.engine_error_kind` names.
ENGINE_DEAD, NOT_FOUND, CLIENT_ERROR = "engine_dead", "not_found", "client_error"


def ensure_cpu_kv_cache() -> None:
    """Give vLLM's CPU platform its KV-cache size unless the user set one (GPU platforms never read it)."""
    os.environ.setdefault(CPU_KV_CACHE_ENV, CPU_KV_CACHE_GIB)
