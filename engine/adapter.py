"""Every touch point between probexit and vLLM's internals, pinned to vLLM 0.32.0.

Three touch points, each checked at start-up so that an upgrade that moves them fails loudly:
1. Hidden-state capture. vLLM's model runner passes the hidden states at the positions it samples from
   (one row per request, batch order, after the final norm) to the model's `LogitsProcessor` layer. We
   register an out-of-tree replacement of that layer (`PluggableLayer.register_oot`) that keeps a
   reference to its input before computing logits. It runs outside torch.compile and CUDA graphs.
2. The decision. A vLLM v1 custom logits processor runs right after, in the same step, sees each row's
   output token ids, and asks the probe runtime which rows exit; those rows' logits are masked so that
   the next token is `</think>`.
3. Per-request settings arrive in `SamplingParams.extra_args["probexit"]`; decisions leave through the
   event channel (`events.py`), since the worker may live in another process.

GPU notes (read from the 0.32 source; this project's CI has no GPU). With asynchronous scheduling the
input batch writes the real sampled ids over the -1 placeholders right before custom logits processors
run (`update_async_output_token_ids`); should a placeholder ever remain, the runtime skips that row.
`compute_logits` runs after the CUDA-graph-captured forward, so the captured rows are real. If the
captured rows do not line up one-to-one with the logits rows (speculative decoding, which is refused
at start-up, or any future change), no row exits: the failure mode is "never early", not "wrong".
"""

from __future__ import annotations

import time

import torch

from probexit.engine.constants import EXTRA_ARGS_KEY, SUPPORTED_VLLM_VERSION
from probexit.engine.requests import parse_request_args


class UnsupportedVLLMError(RuntimeError):
    pass


def vllm_version() -> str:
    import vllm

    return vllm.__version__


def require_supported_vllm() -> None:
    installed = vllm_version()
    if installed != SUPPORTED_VLLM_VERSION:
        raise UnsupportedVLLMError(
            f"probexit needs vLLM {SUPPORTED_VLLM_VERSION} (it reaches into vLLM internals that move between "
            f"versions), but vLLM {installed} is installed; install vllm=={SUPPORTED_VLLM_VERSION}"
        )


# -- 1. hidden-state capture --------------------------------------------------------------------------------
class _HiddenStateTap:
    """The latest input of the logits layer in this process: the sampled-position hidden states."""

    hidden: torch.Tensor | None = None
    installed: bool = False


TAP = _HiddenStateTap()


def install_hidden_state_tap() -> None:
    """Replace vLLM's logits layer with one that records its input. Must run before the model is built
    in this process; idempotent."""
    if TAP.installed:
        return
    from vllm.model_executor.custom_op import op_registry_oot
    from vllm.model_executor.layers.logits_processor import LogitsProcessor as LogitsLayer

    if "LogitsProcessor" in op_registry_oot:
        TAP.installed = True
        return

    @LogitsLayer.register_oot(name="LogitsProcessor")
    class HiddenStateTapLogitsLayer(LogitsLayer):
        def forward(self, lm_head, hidden_states, *args, **kwargs):
            TAP.hidden = hidden_states  # (num_sampled_rows, H), batch order
            return super().forward(lm_head, hidden_states, *args, **kwargs)

    TAP.installed = True


# -- 2. the decision ---------------------------------------------------------------------------------------
def _processor_base():
    from vllm.v1.sample.logits_processor import LogitsProcessor

    return LogitsProcessor


class EarlyExitLogitsProcessor(_processor_base()):
    """vLLM v1 logits processor: early exit for the requests whose extra_args ask for it, nothing else."""

    @classmethod
    def validate_params(cls, sampling_params) -> None:
        request = (sampling_params.extra_args or {}).get(EXTRA_ARGS_KEY)
        if request is not None:
            parse_request_args(request)

    def __init__(self, vllm_config, device: torch.device, is_pin_memory: bool):
        require_supported_vllm()
        options = (vllm_config.additional_config or {}).get(EXTRA_ARGS_KEY)
        self.runtime = None
        self.states: dict = {}
        self.publisher = None
        if options is None:
            return  # loaded without probexit configuration: a no-op
        if vllm_config.speculative_config is not None:
            raise UnsupportedVLLMError("probexit early exit does not support speculative decoding")
        install_hidden_state_tap()
        self.runtime = _build_runtime(vllm_config, options, device)
        if _is_reporting_rank():
            from probexit.engine.events import EventPublisher

            self.publisher = EventPublisher.from_environment()  # None when no collector handed a ticket down

    def is_argmax_invariant(self) -> bool:
        return False  # forcing </think> changes greedy decoding too

    def update_state(self, batch_update) -> None:
        if not batch_update or self.runtime is None:
            return
        from vllm.v1.sample.logits_processor import MoveDirectionality

        marks = []  # sent at once: the API may be waiting for a finished request's record
        for index in batch_update.removed:
            state = self.states.pop(index, None)
            if state is not None and not state.complete:
                marks.append((state.rid, True))  # finished or preempted: nothing more for now
        for index, params, prompt_ids, output_ids in batch_update.added:
            request = (params.extra_args or {}).get(EXTRA_ARGS_KEY) if params is not None else None
            if request is None:
                self.states.pop(index, None)
                continue
            rid, settings = parse_request_args(request)
            state = self.runtime.new_request(rid, settings, prompt_ids, output_ids, max_tokens=params.max_tokens)
            self.states[index] = state
            if output_ids:  # resumed after preemption: its leaving marked the record complete
                marks.append((rid, state.complete))
        for source, target, direction in batch_update.moved:
            moving, displaced = self.states.pop(source, None), self.states.pop(target, None)
            if moving is not None:
                self.states[target] = moving
            if displaced is not None and direction == MoveDirectionality.SWAP:
                self.states[source] = displaced
        if marks and self.publisher is not None:
            self.publisher.publish([], None, marks)

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        if not self.states:
            return logits
        started = time.perf_counter()
        evaluations = self.runtime.step(self.states, TAP.hidden, logits)
        marks = self.runtime.pop_marks()  # taken every step, or a rank that reports nothing would keep them forever
        if self.publisher is not None:
            self.publisher.publish(evaluations, time.perf_counter() - started, marks)
        return logits


def _build_runtime(vllm_config, options: dict, device: torch.device):
    from transformers import AutoTokenizer

    from probexit.probes.boundary import BoundaryPolicy, BoundaryPolicyConfig
    from probexit.probes.probe import Probe
    from probexit.probes.runtime import EarlyExitRuntime

    model_config = vllm_config.model_config
    tokenizer = AutoTokenizer.from_pretrained(
        model_config.tokenizer,
        revision=model_config.tokenizer_revision,
        trust_remote_code=model_config.trust_remote_code,
    )
    policy = BoundaryPolicy(BoundaryPolicyConfig.from_json(options.get("boundary_policy", {})), tokenizer)
    if policy.think_end_id is None:
        raise ValueError(f"the tokenizer has no single token for {policy.config.think_end!r}; early exit needs one")
    probe = Probe.load(options["probe"]) if options.get("probe") else None
    return EarlyExitRuntime(policy, probe, device, backend=options.get("kernel_backend", "auto"))


def _is_reporting_rank() -> bool:
    """Only one tensor-parallel rank reports, or every decision would arrive once per rank."""
    try:
        from vllm.distributed import get_tensor_model_parallel_rank

        return get_tensor_model_parallel_rank() == 0
    except (AssertionError, RuntimeError):
        return True  # no distributed group: a single worker


# -- 3. engine construction --------------------------------------------------------------------------------
def shutdown_offline_engine(llm) -> None:
    """Stop an offline `LLM`'s engine processes now (vLLM 0.32 has no public call for it)."""
    engine_core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
    if engine_core is not None:
        engine_core.shutdown()


def platform_engine_defaults(engine_args):
    """Engine settings this vLLM needs on this platform, unless the caller chose otherwise; takes and
    returns either a dict of engine keyword arguments or a vLLM `EngineArgs`.

    vLLM 0.32 on CPU: when a request that carries a seed is only partly prefilled in a step, the runner
    rewinds its sampling generator with `set_offset`, which CPU generators do not have, and the engine
    dies (`_bookkeeping_sync` in vllm/v1/worker/gpu_model_runner.py). Prefilling every prompt whole (no
    chunked prefill) never takes that path.
    """
    from vllm.platforms import current_platform

    is_dict = isinstance(engine_args, dict)
    get = engine_args.get if is_dict else (lambda key: getattr(engine_args, key, None))
    overrides = {}
    if current_platform.is_cpu() and get("enable_chunked_prefill") is None:
        overrides["enable_chunked_prefill"] = False
        if get("max_num_batched_tokens") is None and get("max_model_len"):
            overrides["max_num_batched_tokens"] = max(8192, int(get("max_model_len")))
    if is_dict:
        return {**engine_args, **overrides}
    import dataclasses

    return dataclasses.replace(engine_args, **overrides)
