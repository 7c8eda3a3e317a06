"""`probexit train probe|empo|advrm`: the training jobs. Each writes DIR/metrics.json."""
from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import fields
from pathlib import Path

from probexit.cli.errors import CLIError


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("train", help="training jobs: probe, empo, advrm")
    jobs = parser.add_subparsers(dest="job", required=True, metavar="JOB")
    add_probe_parser(jobs)
    add_empo_parser(jobs)
    add_advrm_parser(jobs)


def add_engine_flags(parser) -> None:
    """The vLLM engine settings a training job most often needs; any other through --engine-arg."""
    group = parser.add_argument_group("engine (vLLM)")
    group.add_argument("--dtype", default="auto", help="model dtype (float32 on CPU for exact numbers)")
    group.add_argument("--tensor-parallel-size", type=int, default=1)
    group.add_argument("--max-model-len", type=int, default=None)
    group.add_argument("--gpu-memory-utilization", type=float, default=None)
    group.add_argument("--enforce-eager", action="store_true", help="skip torch.compile/CUDA graphs (faster start)")
    group.add_argument("--engine-arg", action="append", default=[], metavar="KEY=JSON",
                       help="any other vLLM engine argument, e.g. --engine-arg max_num_seqs=64")


def engine_kwargs(args) -> dict:
    kwargs = {"dtype": args.dtype, "tensor_parallel_size": args.tensor_parallel_size,
              "enforce_eager": args.enforce_eager}
    if args.max_model_len:
        kwargs["max_model_len"] = args.max_model_len
    if args.gpu_memory_utilization:
        kwargs["gpu_memory_utilization"] = args.gpu_memory_utilization
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
    job = jobs.add_parser("probe", help="train an early-exit probe from the model's own traces")
    job.add_argument("--model", required=True, help="model folder (Hugging Face format) or hub id")
    job.add_argument("--problems", required=True, type=Path, help='JSONL of {"question", "answer"}')
    job.add_argument("--out", required=True, type=Path, help="output folder: metrics.json, probe/, traces/")
    job.add_argument("--samples-per-problem", type=int, default=4)
    job.add_argument("--temperature", type=float, default=0.6)
    job.add_argument("--top-p", type=float, default=0.95)
    job.add_argument("--max-tokens", type=int, default=2048)
    job.add_argument("--seed", type=int, default=0)
    job.add_argument("--labeler", choices=("math", "exact", "judge"), default="math",
                     help="how an intermediate answer is compared with the gold one")
    job.add_argument("--judge-url", help="OpenAI-compatible endpoint of the LLM judge (--labeler judge)")
    job.add_argument("--judge-model", help="the judge's model name")
    job.add_argument("--extractors", default="tinyworld,boxed,answer_is",
                     help="answer extractors, in order (comma-separated): the tiny world's tinyworld,boxed,answer_is "
                          "(default), or reasoning for a real reasoning model's prose")
    job.add_argument("--think-start", default="<think>")
    job.add_argument("--think-end", default="</think>")
    job.add_argument("--quick", action="store_true", help="a small grid (for smoke tests)")
    add_engine_flags(job)
    job.set_defaults(run=run_probe)


def run_probe(args) -> int:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from probexit.training.problem_files import load_problems

    if args.samples_per_problem < 1 or args.max_tokens < 1:
        raise CLIError("--samples-per-problem and --max-tokens must be positive")
    problems = load_problems(args.problems)  # before the heavy imports: a bad file fails fast and quietly
    from probexit.probes.boundary import BoundaryPolicyConfig
    from probexit.training.equivalence import make_equivalence
    from probexit.training.probe_fit import FitGrid
    from probexit.training.probe_job import ProbeJobConfig, run_probe_job
    from probexit.training.trace_cache import SamplingConfig

    equivalence = make_equivalence(args.labeler, args.judge_url, args.judge_model,
                                   os.environ.get("PROBEXIT_JUDGE_API_KEY", "EMPTY"))
    policy = BoundaryPolicyConfig(think_start=args.think_start, think_end=args.think_end,
                                  extractors=tuple(e.strip() for e in args.extractors.split(",") if e.strip()))
    grid = FitGrid(widths=(0, 32), learning_rates=(3e-3,), weight_decays=(0.0,), alphas=(1.0,), max_epochs=50) \
        if args.quick else FitGrid()
    config = ProbeJobConfig(
        sampling=SamplingConfig(args.samples_per_problem, args.temperature, args.top_p, args.max_tokens, args.seed),
        grid=grid, boundary_policy=policy, split_seed=args.seed)
    model_dir = resolve_model_dir(args.model)
    from probexit.server.offline import OfflineEngine

    with OfflineEngine(model_dir, boundary_policy=policy.to_json(), seed=args.seed, **engine_kwargs(args)) as engine:
        metrics = run_probe_job(engine, model_dir, problems, equivalence, args.out, config, model_name=args.model)
    print(f"probe: ROC-AUC {metrics['roc_auc']:.3f}, ECE {metrics['ece']:.3f} on {metrics['n_test']} held-out "
          f"boundaries; written to {args.out / 'probe'}")
    return 0


def add_empo_parser(jobs) -> None:
    from probexit.training.empo import EMPOConfig
    from probexit.training.empo_eval import EvalConfig

    d, e = EMPOConfig(), EvalConfig()
    job = jobs.add_parser("empo", help="EMPO: unsupervised RL that rewards semantic agreement",
                          description="Train a policy with EMPO (no gold answers), evaluate it before and after "
                                      "through vLLM, and compare with supervised GRPO at the same settings.")
    job.add_argument("--model", required=True, help="base policy: model folder (Hugging Face format) or hub id")
    job.add_argument("--problems", required=True, type=Path,
                     help='JSONL of {"question"} (answers, when present, only feed the supervised baseline)')
    job.add_argument("--out", required=True, type=Path,
                     help="output folder: metrics.json, policy/, checkpoints/ (a rerun resumes), supervised/")
    job.add_argument("--eval-problems", type=Path,
                     help='held-out JSONL of {"question", "answer"} for the before/after evaluation (none: skipped)')
    group = job.add_argument_group("EMPO")
    group.add_argument("--num-generations", type=int, default=d.num_generations, help="G, answers per question")
    group.add_argument("--questions-per-step", type=int, default=d.questions_per_step)
    group.add_argument("--steps", type=int, default=d.steps, help="optimisation steps (more on a rerun continue)")
    group.add_argument("--learning-rate", type=float, default=d.learning_rate)
    group.add_argument("--warmup-steps", type=int, default=d.warmup_steps)
    group.add_argument("--beta", type=float, default=d.beta, help="KL coefficient (EMPO: 0)")
    group.add_argument("--temperature", type=float, default=d.temperature, help="training sampling temperature")
    group.add_argument("--top-p", type=float, default=d.top_p, help="training nucleus sampling")
    group.add_argument("--max-completion-length", type=int, default=d.max_completion_length)
    group.add_argument("--min-entropy-ratio", type=float, default=d.min_entropy_ratio,
                       help="skip questions with semantic entropy <= this * log G")
    group.add_argument("--max-entropy-ratio", type=float, default=d.max_entropy_ratio,
                       help="skip questions with semantic entropy >= this * log G")
    group.add_argument("--equivalence", choices=("math", "exact", "judge"), default=d.equivalence,
                       help="how answers are clustered (and compared with gold answers in evaluation)")
    group.add_argument("--judge-url", help="OpenAI-compatible endpoint of the judge (--equivalence judge; key in "
                                           "PROBEXIT_JUDGE_API_KEY)")
    group.add_argument("--judge-model", help="the judge's model name")
    group.add_argument("--think-end", default=d.think_end, help="end-of-thinking marker")
    group.add_argument("--loss-type", default=d.loss_type, help="TRL's GRPO loss aggregation")
    group.add_argument("--scale-rewards", choices=("group", "batch", "none"), default=d.scale_rewards,
                       help="GRPO advantage scaling")
    group.add_argument("--seed", type=int, default=d.seed)
    group.add_argument("--save-steps", type=int, default=d.save_steps)
    group.add_argument("--logging-steps", type=int, default=d.logging_steps)
    group.add_argument("--collapse-window", type=int, default=d.collapse_window, help="steps the collapse guard judges")
    group.add_argument("--collapse-min-format-valid", type=float, default=d.collapse_min_format_valid)
    group.add_argument("--collapse-min-answer-diversity", type=float, default=d.collapse_min_answer_diversity)
    group.add_argument("--no-supervised-baseline", dest="supervised_baseline", action="store_false",
                       help="skip the supervised GRPO baseline")
    group.add_argument("--use-vllm", action="store_true", help="GPU: generate with TRL's colocated vLLM engine")
    group.add_argument("--vllm-gpu-memory-utilization", type=float, default=d.vllm_gpu_memory_utilization)
    group.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None,
                       help="bfloat16 training (default: on where a CUDA GPU supports it)")
    group.add_argument("--gradient-checkpointing", action="store_true")
    evaluation = job.add_argument_group("evaluation")
    evaluation.add_argument("--eval-limit", type=int, default=e.limit, help="held-out problems used (0: all)")
    evaluation.add_argument("--eval-samples", type=int, default=e.samples, help="sampled answers per problem")
    evaluation.add_argument("--eval-max-tokens", type=int, default=e.max_tokens)
    add_engine_flags(job)
    job.set_defaults(run=run_empo)


def run_empo(args) -> int:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from probexit.training.empo import EMPOConfig, TrainingCollapsed
    from probexit.training.empo_eval import EvalConfig
    from probexit.training.empo_job import EMPOJob
    from probexit.training.problem_files import load_problems

    # Every EMPO flag is named after its EMPOConfig field; the config validates them together.
    config = EMPOConfig(**{f.name: getattr(args, f.name) for f in fields(EMPOConfig) if hasattr(args, f.name)})
    eval_config = EvalConfig(limit=args.eval_limit or None, samples=args.eval_samples, max_tokens=args.eval_max_tokens,
                             seed=args.seed, think_end=args.think_end)
    eval_problems = load_problems(args.eval_problems, require_answers=False) if args.eval_problems else None
    job = EMPOJob(resolve_model_dir(args.model), load_problems(args.problems, require_answers=False), args.out,
                  config, eval_problems, eval_config, engine_kwargs(args), args.supervised_baseline,
                  os.environ.get("PROBEXIT_JUDGE_API_KEY", "EMPTY"))
    try:
        metrics = job.run()
    except TrainingCollapsed as collapse:
        print(f"probexit: {collapse}", file=sys.stderr)
        return 3
    print(f"empo: {metrics['steps']} steps; greedy accuracy {_pct(metrics['accuracy_before'])} -> "
          f"{_pct(metrics['accuracy_after'])} (supervised GRPO {_pct(metrics['accuracy_supervised_grpo'])}); "
          f"written to {args.out / 'metrics.json'}")
    for warning in metrics["warnings"]:
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
ADVRM_GROUPS = (("", "AdvRMConfig"), ("rm-", "reward_models"), ("attack-", "attack"), ("rlhf-", "rlhf"))


def add_advrm_parser(jobs) -> None:
    job = jobs.add_parser("advrm", help="Adv-RM: reward models hardened with adversarial examples",
                          description="Train a target reward model and its ensemble from the policy's graded answers, "
                                      "attack it with an adversarial policy (GRPO), add what the attack finds as "
                                      "rejected answers, repeat; then compare RLHF against the standard and the "
                                      "hardened reward model. Writes DIR/metrics.json, DIR/reward/ and DIR/rlhf.png.")
    job.add_argument("--policy", required=True, help="the policy: model folder (Hugging Face format) or hub id")
    job.add_argument("--problems", required=True, type=Path, help='train JSONL of {"question", "answer"}')
    job.add_argument("--eval-problems", required=True, type=Path,
                     help='held-out JSONL of {"question", "answer"} (accuracy, calibration, attack evaluation)')
    job.add_argument("--out", required=True, type=Path,
                     help="output folder: metrics.json, reward/, rlhf.png, work/ (a rerun resumes)")
    for prefix, name in ADVRM_GROUPS:
        cls = _advrm_settings_class(name)
        group = job.add_argument_group(name if prefix else "Adv-RM")
        for item in fields(cls):
            if item.name in ("reward_models", "attack", "rlhf", "seed"):
                continue
            flag = "--" + prefix + item.name.replace("_", "-")
            default = item.default
            if isinstance(default, bool):
                group.add_argument(flag, dest=prefix + item.name, action=argparse.BooleanOptionalAction,
                                   default=default, help=_field_doc(cls, item.name))
            else:
                group.add_argument(flag, dest=prefix + item.name, type=type(default), default=default,
                                   metavar=type(default).__name__.upper(),
                                   help=f"{_field_doc(cls, item.name)} (default: {default})")
    job.add_argument("--seed", type=int, default=0, help="seed of data, sampling and training (every part)")
    add_engine_flags(job)
    job.set_defaults(run=run_advrm)


def run_advrm(args) -> int:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from probexit.training.advrm import AdvRMConfig
    from probexit.training.advrm import run_advrm as run_job
    from probexit.training.problem_files import load_problems

    parts = {name: _advrm_settings_class(name)(**_values(args, prefix, _advrm_settings_class(name)), seed=args.seed)
             for prefix, name in ADVRM_GROUPS[1:]}
    config = AdvRMConfig(**{**_values(args, "", AdvRMConfig), "seed": args.seed}, **parts)
    metrics = run_job(resolve_model_dir(args.policy), load_problems(args.problems), load_problems(args.eval_problems),
                      args.out, config, engine_kwargs(args))
    before, after = metrics["attack_success_before"], metrics["attack_success_after"]
    print(f"advrm: attack success {_pct(before['standard'])} before, "
          f"{' -> '.join(_pct(r['standard']) for r in after) or 'n/a'} after hardening; preference accuracy "
          f"{_pct(metrics['preference_accuracy_before'])} -> {_pct(metrics['preference_accuracy_after'])}; hacking "
          f"step {metrics['hacking_step_standard']} (standard) vs {metrics['hacking_step_advrm']} (Adv-RM); "
          f"written to {args.out / 'metrics.json'}")
    for warning in metrics["warnings"]:
        print(f"probexit: warning: {warning}", file=sys.stderr)
    return 0


def _advrm_settings_class(name: str):
    from probexit.training.advrm import AdvRMConfig

    return AdvRMConfig if name == "AdvRMConfig" else type(getattr(AdvRMConfig(), name))


def _values(args, prefix: str, cls) -> dict:
    return {item.name: getattr(args, prefix + item.name) for item in fields(cls) if hasattr(args, prefix + item.name)}


def _field_doc(cls, name: str) -> str:
    """The docstring written under a dataclass field (the config classes document every field that way)."""
    import ast
    import inspect
    import textwrap

    body = ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0].body
    for statement, following in zip(body, body[1:]):
        if isinstance(statement, ast.AnnAssign) and getattr(statement.target, "id", None) == name \
                and isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant):
            return " ".join(str(following.value.value).split()).replace("%", "%%")
    return ""
