"""A vLLM engine for batch jobs (training, model cards) that reads boundaries exactly as the server does.

Training jobs must see hidden states at the same positions and through the same engine path as serving
(train where you serve): this wraps vLLM's offline `LLM` with the same early-exit logits
processor and event channel as `probexit serve`, and returns each generation together with what the
processor recorded at its boundaries.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from probexit.engine.adapter import platform_engine_defaults, require_supported_vllm, shutdown_offline_engine
from probexit.engine.client import token_prompt
from probexit.engine.constants import ensure_cpu_kv_cache
from probexit.engine.events import EventCollector
from probexit.engine.requests import early_exit_engine_options, sampling_params
from probexit.probes.fingerprint import model_identity
from probexit.probes.probe import Probe
from probexit.probes.rules import ExitSettings
from probexit.probes.runtime import Evaluation


@dataclass
class OfflineCompletion:
    """One finished generation of the offline engine, with what the early-exit processor recorded for it."""

    prompt_ids: list[int]
    token_ids: list[int]
    text: str
    logprobs: list[float] | None  # the sampled tokens' log-probabilities, when asked for
    finish_reason: str | None
    evaluations: list[Evaluation] = field(default_factory=list)

    def recorded(self) -> dict[int, Evaluation]:
        """Recorded boundaries by token index."""
        return {e.token_index: e for e in self.evaluations if e.hidden is not None}


class OfflineEngine:
    def __init__(
        self,
        model: str | Path,
        probe: str | Path | None = None,
        boundary_policy: dict | None = None,
        seed: int = 0,
        on_step=None,
        **vllm_kwargs,
    ):
        """`on_step(seconds)` receives the early-exit work of every decode step that had a tracked request."""
        require_supported_vllm()
        ensure_cpu_kv_cache()
        if probe is not None:  # refuse a wrong probe here, in one sentence, not as a worker traceback
            loaded = Probe.load(probe)
            loaded.check_compatible(model_identity(model))
            boundary_policy = boundary_policy or loaded.config.boundary_policy.to_json()
        from vllm import LLM

        self.collector = EventCollector(on_step=on_step)
        self.collector.export_to_workers()
        options = early_exit_engine_options(probe, boundary_policy or {})
        try:
            self.llm = LLM(model=str(model), seed=seed, **options, **platform_engine_defaults(vllm_kwargs))
        except BaseException:
            self.collector.close()
            raise
        self.tokenizer = self.llm.get_tokenizer()

    def chat_prompts(self, questions: list[str]) -> list[str]:
        return [
            self.tokenizer.apply_chat_template(
                [{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True
            )
            for q in questions
        ]

    def generate(
        self,
        prompts: list[str] | list[list[int]],
        *,
        temperature: float,
        top_p: float = 1.0,
        max_tokens: int = 512,
        seed: int | None = None,
        logprobs: bool = False,
        settings: ExitSettings | list[ExitSettings | None] | None = None,
        progress: bool = True,
    ) -> list[OfflineCompletion]:
        """One generation per prompt (text, or token ids taken as they are), all in one batch. `settings` (one for
        all, or one per prompt, None meaning untouched) turn early exit or record mode on; request `i` gets seed
        `seed + i`."""
        per_prompt = settings if isinstance(settings, list) else [settings] * len(prompts)
        if len(per_prompt) != len(prompts):
            raise ValueError(f"{len(per_prompt)} settings for {len(prompts)} prompts")
        rids, params = [], []
        for index, request_settings in enumerate(per_prompt):
            rid = uuid.uuid4().hex
            if request_settings is not None:
                self.collector.expect(rid)
            rids.append(rid)
            params.append(
                sampling_params(
                    rid=rid,
                    settings=request_settings,
                    temperature=temperature,
                    top_p=top_p,
                    max_tokens=max_tokens,
                    seed=None if seed is None else seed + index,
                    logprobs=0 if logprobs else None,
                )
            )
        inputs = [prompt if isinstance(prompt, str) else token_prompt(prompt) for prompt in prompts]
        outputs = self.llm.generate(inputs, params, use_tqdm=progress)
        finished_at = time.monotonic()  # every request had finished by now
        return [
            self._generation(output, rid, tracked is not None, finished_at)
            for output, rid, tracked in zip(outputs, rids, per_prompt)
        ]

    def _generation(self, output, rid: str, tracked: bool, finished_at: float) -> OfflineCompletion:
        completion = output.outputs[0]
        token_ids = list(completion.token_ids)
        logprobs = None
        if completion.logprobs is not None:
            logprobs = [step[token].logprob for step, token in zip(completion.logprobs, token_ids)]
        evaluations = self.collector.collect(rid, finished_at).evaluations if tracked else []
        return OfflineCompletion(
            list(output.prompt_token_ids), token_ids, completion.text, logprobs, completion.finish_reason, evaluations
        )

    def close(self) -> None:
        shutdown_offline_engine(self.llm)
        del self.llm
        self.collector.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
