"""Building the engine's configuration: everything checked before the port opens.

`prepare` does every check that can fail because of the user's input (vLLM version, probe file, probe
against model, thinking markers, vLLM's own validation of the engine flags) and raises `ConfigError` with
one line; `client.start_engine` then only builds the engine from the prepared configuration.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from probexit.engine.adapter import UnsupportedVLLMError, platform_engine_defaults, require_supported_vllm
from probexit.engine.config import ConfigError, EngineConfig
from probexit.engine.constants import ensure_cpu_kv_cache
from probexit.engine.requests import early_exit_engine_options
from probexit.engine.structured import with_answer_grammar
from probexit.engine.tools import tool_parser_class
from probexit.probes.boundary import BoundaryPolicyConfig
from probexit.probes.fingerprint import ModelIdentity, model_identity
from probexit.probes.markers import ThinkingMarkers, find_markers
from probexit.probes.probe import Probe, ProbeFileError


@dataclass
class EngineSetup:
    """What `prepare` found: the engine's configuration and what the API process needs beside it."""

    vllm_config: Any  # vllm.config.VllmConfig
    engine_args: Any  # the AsyncEngineArgs the config was made from
    probe: Probe | None
    markers: ThinkingMarkers | None  # None: the model has no thinking markers (no split, no early exit)
    default_sampling: dict  # the model's generation-config defaults (temperature, top_p, ...)
    identity: dict = dataclasses.field(default_factory=dict)  # what is served, for /v1/models (see served_identity)
    tool_parser: Any = None  # vLLM's tool parser class for `tool_choice: auto` (None: answers are not read for calls)

    @property
    def max_model_len(self) -> int:
        return self.vllm_config.model_config.max_model_len

    @property
    def vocab_size(self) -> int:
        return self.vllm_config.model_config.get_vocab_size()


def prepare(config: EngineConfig) -> EngineSetup:
    """Every start-up check, in the order a user would fix them; raises ConfigError."""
    try:
        require_supported_vllm()
    except UnsupportedVLLMError as error:
        raise ConfigError(str(error)) from error
    ensure_cpu_kv_cache()
    from vllm.engine.arg_utils import AsyncEngineArgs

    args = config.engine_args or AsyncEngineArgs(model=config.model)
    args = dataclasses.replace(args, model=config.model, served_model_name=config.served_model_name)
    args = platform_engine_defaults(args)
    # A local folder's identity (its weights' fingerprint, ~1 MiB read) serves the probe check and /v1/models.
    local = _local_identity(Path(args.model))
    probe = _load_probe(config, args, local)
    markers = _find_markers(args, probe)
    if markers is not None:
        args = _with_early_exit(args, config, probe, markers)
    args = with_answer_grammar(args, markers)  # structured outputs: on the answer, compact
    tool_parser = tool_parser_class(config.tool_call_parser) if config.tool_call_parser else None
    vllm_config = _engine_config(args)
    return EngineSetup(
        vllm_config,
        args,
        probe,
        markers,
        vllm_config.model_config.get_diff_sampling_param(),
        served_identity(config, local),
        tool_parser,
    )


def served_identity(config: EngineConfig, model: ModelIdentity | None) -> dict:
    """Fingerprints of the served weights and probe, so that a client that caches results (the savings
    benchmark) can tell when the server behind the same name changed. The model's is read only from a
    local folder (a hub id names its revision already); the probe's hashes its files."""
    identity = {"model_fingerprint": model.fingerprint if model is not None else None, "probe_fingerprint": None}
    if config.probe is not None:
        digest = hashlib.sha256()
        for path in sorted(Path(config.probe).glob("probe.*")):
            digest.update(path.name.encode() + path.read_bytes())
        identity["probe_fingerprint"] = digest.hexdigest()[:16]
    return identity


def _local_identity(model: Path) -> ModelIdentity | None:
    """The identity of a local model folder; None for a hub id or a folder it cannot fingerprint (e.g. .bin
    weights: vLLM serves them, /v1/models then names no fingerprint, and a probe is refused below)."""
    try:
        return model_identity(model) if model.is_dir() else None
    except ValueError:
        return None


def _load_probe(config: EngineConfig, args, local: ModelIdentity | None) -> Probe | None:
    if config.probe is None:
        return None
    try:
        probe = Probe.load(config.probe)
        probe.check_compatible(local or model_identity(_local_model_dir(args)))
    except (ProbeFileError, ValueError) as error:
        raise ConfigError(f"--probe {config.probe}: {error}") from error
    return probe


def _local_model_dir(args) -> Path:
    """The folder holding the model's weights (a hub id is fetched into the local cache first, which the
    engine would do anyway) so that the probe's fingerprint can be checked against them."""
    if Path(args.model).is_dir():
        return Path(args.model)
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(args.model, revision=args.revision, allow_patterns=["*.json", "*.safetensors"]))


def _find_markers(args, probe: Probe | None) -> ThinkingMarkers | None:
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(
            args.tokenizer or args.model,
            revision=args.tokenizer_revision or args.revision,
            trust_remote_code=args.trust_remote_code,
        )
    except (OSError, ValueError) as error:
        raise ConfigError(f"cannot load the tokenizer of {args.tokenizer or args.model}: {_one_line(error)}") from error
    policy = probe.config.boundary_policy if probe is not None else None
    try:
        return find_markers(tokenizer, (policy.think_start, policy.think_end) if policy else None)
    except ValueError as error:
        raise ConfigError(f"--probe: {error}") from error


def _with_early_exit(args, config: EngineConfig, probe: Probe | None, markers: ThinkingMarkers):
    """Add the early-exit logits processor, with the boundary policy the probe was trained with (or the
    default policy over this model's own markers), to whatever processors the user configured."""
    policy = probe.config.boundary_policy if probe is not None else BoundaryPolicyConfig(markers.start, markers.end)
    options = early_exit_engine_options(
        config.probe if probe is not None else None, policy.to_json(), config.kernel_backend
    )
    return dataclasses.replace(
        args,
        logits_processors=[*(args.logits_processors or []), *options["logits_processors"]],
        additional_config={**(args.additional_config or {}), **options["additional_config"]},
    )


def _engine_config(args):
    from vllm.usage.usage_lib import UsageContext

    try:
        return args.create_engine_config(UsageContext.OPENAI_API_SERVER)
    except Exception as error:  # vLLM validates with ValueError, pydantic, OSError and its own types
        raise ConfigError(f"vLLM cannot build an engine from these flags: {_one_line(error)}") from error


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__
