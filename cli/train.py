"""`probexit train probe|empo|advrm`: the training jobs. Each writes DIR/metrics.json."""

from __future__ import annotations

import json
import os
import sys
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


def add_engine_flags(parser) -> None:
    """The vLLM engine settings a training job most often needs (vLLM's defaults where not given); any other
    through --engine-arg."""
    group = parser.add_argument_group("engine (vLLM)")
    group.add_argument("--dtype", help="model dtype (float32 on CPU for exact numbers)")
    group.add_argument("--tensor-parallel-size", type=int)
    group.add_argument("--max-model-len", type=int)
    group.add_argument("--gpu-memory-utilization", type=float)
    group.add_argument(
        "--enforce-eager", action="store_true", default=None, help="skip torch.compile/CUDA graphs (faster start)"
    )
    group.add_argument(
        "--engine-arg",
        action="append",
        default=[],
        metavar="KEY=JSON",
        help="any other vLLM engine argument, e.g. --engine-arg max_num_seqs=64",
    )


ENGINE_FLAGS = ("dtype", "tensor_parallel_size", "max_model_len", "gpu_memory_utilization", "enforce_eager")


def engine_kwargs(args) -> dict:
    kwargs = {name: getattr(args, name) for name in ENGINE_FLAGS if getattr(args, name) is not None}
    for item in args.engine_arg:
        key, _, value = item.partition("=")
        if not key or not value:
            raise CLIError(f"--engine-arg {item!r} is not KEY=VALUE")
        try:
            kwargs[key.replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            kwargs[key.replace("-", "_")] = value
    return kwargs


def add_probe_parser(jobs) -> None:
    from probexit.probes.boundary import BoundaryPolicyConfig
    from probexit.training.probe_job import ProbeJobConfig
    from probexit.training.trace_cache import SamplingConfig

    job = jobs.add_parser("probe", help="train an early-exit probe from the model's own traces")
    job.add_argument("--model", required=True, help="model folder (Hugging Face format) or hub id")
    job.add_argument("--problems", required=True, type=Path, help='JSONL of {"question", "answer"}')
    job.add_argument("--out", required=True, type=Path, help="output folder: metrics.json, probe/, traces/")
    job.add_argument("--quick", action="store_true", help="a small grid (for smoke tests)")
    add_config_flags(job.add_argument_group("traces"), SamplingConfig)
    add_config_flags(job.add_argument_group("labels"), ProbeJobConfig)
    add_config_flags(job.add_argument_group("boundaries"), BoundaryPolicyConfig)
    add_engine_flags(job)
    job.set_defaults(run=run_probe)


def run_probe(args) -> int:
    from probexit.training.problem_files import load_problems

    problems = load_problems(args.problems)  # before the heavy imports: a bad file fails fast and quietly
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
        grid=QUICK_GRID if args.quick else FitGrid(),
        boundary_policy=policy,
        split_seed=sampling.seed,
    )
    equivalence = make_equivalence(
        config.labeler, config.judge_url, config.judge_model, os.environ.get(JUDGE_API_KEY_ENV, "EMPTY")
    )
    model_dir = resolve_model_dir(args.model)
    from probexit.engine.offline import OfflineEngine

    with OfflineEngine(
        model_dir, boundary_policy=policy.to_json(), seed=sampling.seed, **engine_kwargs(args)
    ) as engine:
        metrics = run_probe_job(engine, model_dir, problems, equivalence, args.out, config, model_name=args.model)
    print(
        f"probe: ROC-AUC {metrics['roc_auc']:.3f}, ECE {metrics['ece']:.3f} on {metrics['n_test']} held-out "
        f"boundaries; written to {args.out / 'probe'}"
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
    job.add_argument("--model", required=True, help="base policy: model folder (Hugging Face format) or hub id")
    job.add_argument(
        "--problems",
        required=True,
        type=Path,
        help='JSONL of {"question"} (answers, when present, only feed the supervised baseline)',
    )
    job.add_argument(
        "--out",
        required=True,
        type=Path,
        help="output folder: metrics.json, policy/, checkpoints/ (a rerun resumes), supervised/",
    )
    job.add_argument(
        "--eval-problems",
        type=Path,
        help='held-out JSONL of {"question", "answer"} for the before/after evaluation (none: skipped)',
    )
    job.add_argument(
        "--no-supervised-baseline",
        dest="supervised_baseline",
        action="store_false",
        help="skip the supervised GRPO baseline",
    )
    add_config_flags(job.add_argument_group("EMPO"), EMPOConfig)
    add_config_flags(job.add_argument_group("evaluation"), EvalConfig, prefix="eval-", exclude=("seed", "think_end"))
    add_engine_flags(job)
    job.set_defaults(run=run_empo)


def run_empo(args) -> int:
    from probexit.probes.equivalence import JUDGE_API_KEY_ENV
    from probexit.training.empo import EMPOConfig, TrainingCollapsed
    from probexit.training.empo_eval import EvalConfig
    from probexit.training.empo_job import EMPOJob
    from probexit.training.problem_files import load_problems

    config = EMPOConfig(**config_values(args, EMPOConfig))
    eval_config = EvalConfig(
        **config_values(args, EvalConfig, prefix="eval-"), seed=config.seed, think_end=config.think_end
    )
    eval_problems = load_problems(args.eval_problems, require_answers=False) if args.eval_problems else None
    job = EMPOJob(
        resolve_model_dir(args.model),
        load_problems(args.problems, require_answers=False),
        args.out,
        config,
        eval_problems,
        eval_config,
        engine_kwargs(args),
        args.supervised_baseline,
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
        f"written to {args.out / 'metrics.json'}",
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
    job.add_argument("--policy", required=True, help="the policy: model folder (Hugging Face format) or hub id")
    job.add_argument("--problems", required=True, type=Path, help='train JSONL of {"question", "answer"}')
    job.add_argument(
        "--eval-problems",
        required=True,
        type=Path,
        help='held-out JSONL of {"question", "answer"} (accuracy, calibration, attack evaluation)',
    )
    job.add_argument(
        "--out",
        required=True,
        type=Path,
        help="output folder: metrics.json, reward/, rlhf.png, work/ (a rerun resumes)",
    )
    parts, config_class = _advrm_parts()
    add_config_flags(job.add_argument_group("Adv-RM"), config_class)
    for prefix, name, cls in parts:
        add_config_flags(job.add_argument_group(name), cls, prefix=prefix, exclude=("seed",))
    job.add_argument("--seed", type=int, default=0, help="seed of data, sampling and training (every part)")
    add_engine_flags(job)
    job.set_defaults(run=run_advrm)


def run_advrm(args) -> int:
    from probexit.training.advrm import AdvRMJob
    from probexit.training.problem_files import load_problems

    parts, config_class = _advrm_parts()
    settings = {name: cls(**config_values(args, cls, prefix=prefix), seed=args.seed) for prefix, name, cls in parts}
    config = config_class(**config_values(args, config_class), seed=args.seed, **settings)
    metrics = AdvRMJob(
        resolve_model_dir(args.policy),
        load_problems(args.problems),
        load_problems(args.eval_problems),
        args.out,
        config,
        engine_kwargs(args),
    ).run()
    before, after = metrics["attack_success_before"], metrics["attack_success_after"]
    return _summary(
        f"advrm: attack success {_pct(before['standard'])} before, "
        f"{' -> '.join(_pct(r['standard']) for r in after) or 'n/a'} after hardening; preference accuracy "
        f"{_pct(metrics['preference_accuracy_before'])} -> {_pct(metrics['preference_accuracy_after'])}; hacking "
        f"step {metrics['hacking_step_standard']} (standard) vs {metrics['hacking_step_advrm']} (Adv-RM); "
        f"written to {args.out / 'metrics.json'}",
        metrics["warnings"],
    )
