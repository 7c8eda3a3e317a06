"""What the HTTP layer needs from vLLM's engine while it serves, as small functions: start the engine, build
a request's sampling parameters and token prompt, read the engine's metrics, and tell its errors apart."""

from __future__ import annotations

from probexit.engine.constants import CLIENT_ERROR, ENGINE_DEAD, NOT_FOUND
from probexit.engine.setup import EngineSetup


def start_engine(setup: EngineSetup):
    """vLLM's AsyncLLM for the prepared configuration (tens of seconds: weights, KV cache, compilation)."""
    from vllm.usage.usage_lib import UsageContext
    from vllm.v1.engine.async_llm import AsyncLLM

    return AsyncLLM.from_vllm_config(
        setup.vllm_config,
        usage_context=UsageContext.OPENAI_API_SERVER,
        enable_log_requests=setup.engine_args.enable_log_requests,
        disable_log_stats=setup.engine_args.disable_log_stats,
    )


def engine_metrics() -> bytes:
    """The engine's own Prometheus metrics (vLLM registers them in its registry)."""
    from prometheus_client import generate_latest
    from vllm.v1.metrics.prometheus import get_prometheus_registry

    return generate_latest(get_prometheus_registry())


def token_prompt(token_ids: list[int]):
    """A prompt the engine takes as token ids, not text."""
    from vllm.inputs import tokens_input

    return tokens_input(token_ids)


def engine_error_kind(error: BaseException) -> str | None:
    """ENGINE_DEAD when the engine's process is gone, NOT_FOUND or CLIENT_ERROR for what vLLM blames on the
    request, None for anything else."""
    from vllm.exceptions import VLLMClientError, VLLMNotFoundError
    from vllm.v1.engine.exceptions import EngineDeadError

    if isinstance(error, EngineDeadError):
        return ENGINE_DEAD
    if isinstance(error, VLLMNotFoundError):
        return NOT_FOUND
    if isinstance(error, VLLMClientError):
        return CLIENT_ERROR
    return None
