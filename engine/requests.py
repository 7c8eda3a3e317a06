"""What one engine request carries: sampling values and, for early exit, the request's id and `ExitSettings`.

The server and the offline engine build every request through `sampling_params`, so a request's early-exit
arguments have one shape wherever it runs. Light at import: vLLM is imported only when a request is built.
"""

from __future__ import annotations

from probexit.engine.constants import EXTRA_ARGS_KEY, PROCESSOR_FQCN
from probexit.probes.rules import ExitSettings


def request_extra_args(rid: str, settings: ExitSettings) -> dict:
    """What a request carries in SamplingParams.extra_args to ask for early exit."""
    return {EXTRA_ARGS_KEY: {"rid": rid, "settings": settings.to_json()}}


def parse_request_args(request: dict) -> tuple[str, ExitSettings]:
    """extra_args["probexit"] = {"rid": str, "settings": {...ExitSettings}} -> (rid, ExitSettings)."""
    if not isinstance(request, dict) or not isinstance(request.get("rid"), str):
        raise ValueError("extra_args.probexit must be an object with a string 'rid' and a 'settings' object")
    return request["rid"], ExitSettings.from_json(dict(request.get("settings") or {}))


def early_exit_engine_options(probe_dir: str | None, boundary_policy: dict, kernel_backend: str = "auto") -> dict:
    """The keyword arguments that turn a vLLM engine into an early-exit engine."""
    options = {
        "probe": str(probe_dir) if probe_dir else None,
        "boundary_policy": boundary_policy,
        "kernel_backend": kernel_backend,
    }
    return {"logits_processors": [PROCESSOR_FQCN], "additional_config": {EXTRA_ARGS_KEY: options}}


def sampling_params(*, rid: str, settings: ExitSettings | None, stream: bool = False, **values):
    """vLLM's `SamplingParams` for one engine request: the sampling `values`, and early exit's arguments when
    `settings` is given (None leaves the request untouched by the processor). `stream` asks for each step's
    new tokens only. vLLM's own checks raise ValueError or TypeError with a message fit for the client."""
    from vllm import SamplingParams
    from vllm.sampling_params import RequestOutputKind

    kind = RequestOutputKind.DELTA if stream else RequestOutputKind.FINAL_ONLY
    extra_args = request_extra_args(rid, settings) if settings is not None else None
    return SamplingParams(**values, extra_args=extra_args, output_kind=kind)
