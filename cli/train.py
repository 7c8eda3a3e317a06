"""`probexit train probe|empo|advrm`: the training jobs. Each writes DIR/metrics.json."""
from __future__ import annotations

import json
import os
from pathlib import Path

from probexit.cli.errors import CLIError


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("train", help="training jobs: probe, empo, advrm")
    jobs = parser.add_subparsers(dest="job", required=True, metavar="JOB")
    add_probe_parser(jobs)
    for name, help_text in (
        ("empo", "EMPO: unsupervised RL that rewards semantic agreement"),
        ("advrm", "Adv-RM: reward models hardened with adversarial examples"),
    ):
        job = jobs.add_parser(name, help=help_text)
        job.set_defaults(run=_not_yet)


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
                     help="answer extractors, in order (comma-separated)")
    job.add_argument("--think-start", default="<think>")
    job.add_argument("--think-end", default="</think>")
    job.add_argument("--quick", action="store_true", help="a small grid (for smoke tests)")
    add_engine_flags(job)
    job.set_defaults(run=run_probe)


def run_probe(args) -> int:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from probexit.probes.boundary import BoundaryPolicyConfig
    from probexit.training.equivalence import make_equivalence
    from probexit.training.probe_fit import FitGrid
    from probexit.training.probe_job import ProbeJobConfig, run_probe_job
    from probexit.training.problem_files import load_problems
    from probexit.training.trace_cache import SamplingConfig

    if args.samples_per_problem < 1 or args.max_tokens < 1:
        raise CLIError("--samples-per-problem and --max-tokens must be positive")
    problems = load_problems(args.problems)
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


def _not_yet(args) -> int:
    raise CLIError(f"`probexit train {args.job}` is not available yet")
