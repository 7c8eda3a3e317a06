"""What the HTTP layer needs from vLLM's engine while it serves, as small functions: start the engine, build
a request's sampling parameters and token prompt, read the engine's metrics, and tell its errors apart."""

from __future__ import annotations

from probexit.server.engine.setup import EngineSetup

# What `engine_error_kind` names.
ENGINE_DEAD, NOT_FOUND, CLIENT_ERROR = "engine_dead", "not_found", "client_error"


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


def sampling_params(*, stream: bool, **values):
    """vLLM's `SamplingParams` from keyword values; `stream` asks for each step's new tokens only. vLLM's own
    checks raise ValueError or TypeError with a message fit for the client."""
    from vllm import SamplingParams
    from vllm.sampling_params import RequestOutputKind

    kind = RequestOutputKind.DELTA if stream else RequestOutputKind.FINAL_ONLY
    return SamplingParams(**values, output_kind=kind)


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
