"""`probexit train probe|empo|advrm`: the training jobs. Each writes DIR/metrics.json."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from probexit.cli.errors import CLIError
from probexit.cli.flags import add_config_flags, config_values

NAME, HELP = "train", "training jobs: probe, empo, advrm"


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(NAME, help=HELP)
    jobs = parser.add_subparsers(dest="job", required=True, metavar="JOB")
    add_probe_parser(jobs)
    add_empo_parser(jobs)
    add_advrm_parser(jobs)


@dataclass(frozen=True)
class EngineFlags:
    """The vLLM engine settings a training job most often needs (vLLM's own defaults where not given); any
    other through --engine-arg."""

    dtype: str | None = field(default=None, metadata={"help": "Model dtype (float32 on CPU for exact numbers)."})
    tensor_parallel_size: int | None = field(default=None, metadata={"help": "GPUs the model is split over."})
    max_model_len: int | None = field(default=None, metadata={"help": "Longest prompt and completion, in tokens."})
    gpu_memory_utilization: float | None = field(
        default=None, metadata={"help": "Share of each GPU's memory the engine may take."}
    )
    enforce_eager: bool | None = field(
        default=None, metadata={"help": "Skip torch.compile and CUDA graphs (a faster start)."}
    )
    engine_arg: tuple[str, ...] = field(
        default=(),
        metadata={
            "action": "append",
            "metavar": "KEY=JSON",
            "help": "Any other vLLM engine argument, e.g. --engine-arg max_num_seqs=64 (repeat for more).",
        },
    )

    def kwargs(self) -> dict:
        """The engine's keyword arguments: the flags given, then each --engine-arg."""
        kwargs = {name: value for name, value in vars(self).items() if name != "engine_arg" and value is not None}
        for item in self.engine_arg:
            key, _, value = item.partition("=")
            if not key or not value:
                raise CLIError(f"--engine-arg {item!r} is not KEY=VALUE")
            try:
                kwargs[key.replace("-", "_")] = json.loads(value)
            except json.JSONDecodeError:
                kwargs[key.replace("-", "_")] = value
        return kwargs


def add_engine_flags(parser) -> None:
    add_config_flags(parser.add_argument_group("engine (vLLM)"), EngineFlags)


def engine_kwargs(args) -> dict:
    return EngineFlags(**config_values(args, EngineFlags)).kwargs()


@dataclass(frozen=True)
class ProbeRun:
    """What `train probe` reads and writes."""

    model: str = field(metadata={"help": "Model folder (Hugging Face format) or hub id."})
    problems: Path = field(metadata={"help": 'JSONL of {"question", "answer"}.'})
    out: Path = field(metadata={"help": "Output folder: metrics.json, probe/, traces/."})
    quick: bool = field(default=False, metadata={"help": "A small grid (for smoke tests)."})


@dataclass(frozen=True)
class EMPORun:
    """What `train empo` reads and writes."""

    model: str = field(metadata={"help": "Base policy: model folder (Hugging Face format) or hub id."})
    problems: Path = field(
        metadata={"help": 'JSONL of {"question"} (answers, when present, only feed the supervised baseline).'}
    )
    out: Path = field(
        metadata={"help": "Output folder: metrics.json, policy/, checkpoints/ (a rerun resumes), supervised/."}
    )
    eval_problems: Path | None = field(
        default=None,
        metadata={"help": 'Held-out JSONL of {"question", "answer"} for the before/after evaluation (none: skipped).'},
    )
    supervised_baseline: bool = field(
        default=True, metadata={"help": "Also train the supervised GRPO baseline at the same settings."}
    )


@dataclass(frozen=True)
class AdvRMRun:
    """What `train advrm` reads and writes."""

    policy: str = field(metadata={"help": "The policy: model folder (Hugging Face format) or hub id."})
    problems: Path = field(metadata={"help": 'Train JSONL of {"question", "answer"}.'})
    eval_problems: Path = field(
        metadata={"help": 'Held-out JSONL of {"question", "answer"} (accuracy, calibration, attack evaluation).'}
    )
    out: Path = field(metadata={"help": "Output folder: metrics.json, reward/, rlhf.png, work/ (a rerun resumes)."})
    seed: int = field(default=0, metadata={"help": "Seed of data, sampling and training (every part)."})


def add_probe_parser(jobs) -> None:
    from probexit.probes.boundary import BoundaryPolicyConfig
    from probexit.training.probe_job import ProbeJobConfig
    from probexit.training.trace_cache import SamplingConfig

    job = jobs.add_parser("probe", help="train an early-exit probe from the model's own traces")
    add_config_flags(job.add_argument_group("run"), ProbeRun)
    add_config_flags(job.add_argument_group("traces"), SamplingConfig)
    add_config_flags(job.add_argument_group("labels"), ProbeJobConfig)
    add_config_flags(job.add_argument_group("boundaries"), BoundaryPolicyConfig)
    add_engine_flags(job)
    job.set_defaults(run=run_probe)


def run_probe(args) -> int:
    run = ProbeRun(**config_values(args, ProbeRun))
    from probexit.training.problem_files import load_problems

    problems = load_problems(run.problems)  # before the heavy imports: a bad file fails fast and quietly
    from probexit.probes.boundary import BoundaryPolicyConfig
    from probexit.probes.equivalence import JUDGE_API_KEY_ENV, make_equivalence
    from probexit.training.probe_fit import QUICK_GRID, FitGrid
    from probexit.training.probe_job import ProbeJobConfig, run_probe_job
    from probexit.training.trace_cache import SamplingConfig

    sampling = SamplingConfig(**config_values(args, SamplingConfig))
    policy = BoundaryPolicyConfig(**config_values(args, BoundaryPolicyConfig))
    config = ProbeJobConfig(
        **config_values(args, ProbeJobConfig),
        sampling=sampling,
        grid=QUICK_GRID if run.quick else FitGrid(),
        boundary_policy=policy,
        split_seed=sampling.seed,
    )
    equivalence = make_equivalence(
        config.labeler, config.judge_url, config.judge_model, os.environ.get(JUDGE_API_KEY_ENV, "EMPTY")
    )
    model_dir = resolve_model_dir(run.model)
    check_thinking_markers(model_dir, policy)  # in one line now, not after the engine has started
    from probexit.engine.offline import OfflineEngine

    with OfflineEngine(
        model_dir, boundary_policy=policy.to_json(), seed=sampling.seed, **engine_kwargs(args)
    ) as engine:
        metrics = run_probe_job(engine, model_dir, problems, equivalence, run.out, config, model_name=run.model)
    print(
        f"probe: ROC-AUC {metrics['roc_auc']:.3f}, ECE {metrics['ece']:.3f} on {metrics['n_test']} held-out "
        f"boundaries; written to {run.out / 'probe'}"
    )
    if metrics["default_threshold_max_risk"] is None:
        print(
            "probexit: warning: no threshold could be certified for any max_risk (too few calibration traces or "
            "too much harm), so the probe's default never exits; give more problems",
            file=sys.stderr,
        )
    else:
        print(
            f"default threshold {metrics['default_threshold']} (certified for max_risk "
            f"{metrics['default_threshold_max_risk']}: answers turned from right into wrong)"
        )
    return 0


def add_empo_parser(jobs) -> None:
    from probexit.training.empo import EMPOConfig
    from probexit.training.empo_eval import EvalConfig

    job = jobs.add_parser(
        "empo",
        help="EMPO: unsupervised RL that rewards semantic agreement",
        description="Train a policy with EMPO (no gold answers), evaluate it before and after "
        "through vLLM, and compare with supervised GRPO at the same settings.",
    )
    add_config_flags(job.add_argument_group("run"), EMPORun)
    add_config_flags(job.add_argument_group("EMPO"), EMPOConfig)
    add_config_flags(job.add_argument_group("evaluation"), EvalConfig, prefix="eval-", exclude=("seed", "think_end"))
    add_engine_flags(job)
    job.set_defaults(run=run_empo)


def run_empo(args) -> int:
    run = EMPORun(**config_values(args, EMPORun))
    from probexit.probes.equivalence import JUDGE_API_KEY_ENV
    from probexit.training.empo import EMPOConfig, TrainingCollapsed
    from probexit.training.empo_eval import EvalConfig
    from probexit.training.empo_job import EMPOJob
    from probexit.training.problem_files import load_problems

    config = EMPOConfig(**config_values(args, EMPOConfig))
    eval_config = EvalConfig(
        **config_values(args, EvalConfig, prefix="eval-"), seed=config.seed, think_end=config.think_end
    )
    eval_problems = load_problems(run.eval_problems, require_answers=False) if run.eval_problems else None
    job = EMPOJob(
        resolve_model_dir(run.model),
        load_problems(run.problems, require_answers=False),
        run.out,
        config,
        eval_problems,
        eval_config,
        engine_kwargs(args),
        run.supervised_baseline,
        os.environ.get(JUDGE_API_KEY_ENV, "EMPTY"),
    )
    try:
        metrics = job.run()
    except TrainingCollapsed as collapse:
        print(f"probexit: {collapse}", file=sys.stderr)
        return 3
    return _summary(
        f"empo: {metrics['steps']} steps; greedy accuracy {_pct(metrics['accuracy_before'])} -> "
        f"{_pct(metrics['accuracy_after'])} (supervised GRPO {_pct(metrics['accuracy_supervised_grpo'])}); "
        f"written to {run.out / 'metrics.json'}",
        metrics["warnings"],
    )


def _summary(line: str, warnings: list[str]) -> int:
    """A job's one-line summary, then its warnings on standard error."""
    print(line)
    for warning in warnings:
        print(f"probexit: warning: {warning}", file=sys.stderr)
    return 0


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def check_thinking_markers(model_dir: Path, policy) -> None:
    """Boundaries, and an answer forced at one, need the thinking markers as single tokens of the model's
    tokenizer."""
    from transformers import AutoTokenizer

    from probexit.probes.boundary import BoundaryPolicy

    try:
        BoundaryPolicy(policy, AutoTokenizer.from_pretrained(model_dir))
    except ValueError as error:
        raise CLIError(f"{model_dir}: {error} (set --think-start / --think-end to the model's own markers)") from None


def resolve_model_dir(model: str) -> Path:
    """A local folder as is; a hub id through the local Hugging Face cache (the fingerprint reads files)."""
    path = Path(model)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise CLIError(f"{path} is not a model folder (no config.json)")
        return path
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(model, allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt"]))
    except Exception as error:
        raise CLIError(f"cannot find model {model!r} locally or on the hub: {error}") from error


# -- advrm ------------------------------------------------------------------------------------------------------
def _advrm_parts():
    """Each part of an Adv-RM run's settings: its flag prefix, its AdvRMConfig field and its class."""
    from probexit.training.advrm import AdvRMConfig
    from probexit.training.advrm_attack import AttackSettings
    from probexit.training.advrm_rewards import RewardModelSettings
    from probexit.training.advrm_rlhf import RLHFSettings

    return (
        ("rm-", "reward_models", RewardModelSettings),
        ("attack-", "attack", AttackSettings),
        ("rlhf-", "rlhf", RLHFSettings),
    ), AdvRMConfig


def add_advrm_parser(jobs) -> None:
    job = jobs.add_parser(
        "advrm",
        help="Adv-RM: reward models hardened with adversarial examples",
        description="Train a target reward model and its ensemble from the policy's graded answers, "
        "attack it with an adversarial policy (GRPO), add what the attack finds as "
        "rejected answers, repeat; then compare RLHF against the standard and the "
        "hardened reward model. Writes DIR/metrics.json, DIR/reward/ and DIR/rlhf.png.",
    )
    add_config_flags(job.add_argument_group("run"), AdvRMRun)
    parts, config_class = _advrm_parts()
    add_config_flags(job.add_argument_group("Adv-RM"), config_class)
    for prefix, name, cls in parts:
        add_config_flags(job.add_argument_group(name), cls, prefix=prefix, exclude=("seed",))
    add_engine_flags(job)
    job.set_defaults(run=run_advrm)


def run_advrm(args) -> int:
    run = AdvRMRun(**config_values(args, AdvRMRun))
    from probexit.training.advrm import AdvRMJob
    from probexit.training.problem_files import load_problems

    parts, config_class = _advrm_parts()
    settings = {name: cls(**config_values(args, cls, prefix=prefix), seed=run.seed) for prefix, name, cls in parts}
    config = config_class(**config_values(args, config_class), seed=run.seed, **settings)
    metrics = AdvRMJob(
        resolve_model_dir(run.policy),
        load_problems(run.problems),
        load_problems(run.eval_problems),
        run.out,
        config,
        engine_kwargs(args),
    ).run()
    before, after = metrics["attack_success_before"], metrics["attack_success_after"]
    return _summary(
        f"advrm: attack success {_pct(before['standard'])} before, "
        f"{' -> '.join(_pct(r['standard']) for r in after) or 'n/a'} after hardening; preference accuracy "
        f"{_pct(metrics['preference_accuracy_before'])} -> {_pct(metrics['preference_accuracy_after'])}; hacking "
        f"step {metrics['hacking_step_standard']} (standard) vs {metrics['hacking_step_advrm']} (Adv-RM); "
        f"written to {run.out / 'metrics.json'}",
        metrics["warnings"],
    )
