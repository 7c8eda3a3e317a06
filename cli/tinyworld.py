"""`probexit tinyworld build`: rebuild the embedded default from nothing."""

from __future__ import annotations

from pathlib import Path

NAME, HELP = "tinyworld", "the tiny world: the embedded default model, probe and reward model"


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(NAME, help=HELP)
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    build = actions.add_parser("build", help="rebuild the embedded default deterministically (resumes if interrupted)")
    build.add_argument(
        "--out", required=True, type=Path, help="output folder (assets/tinyworld to refresh the committed default)"
    )
    build.add_argument("--seed", type=int, default=0, help="seed of every random choice (default 0)")
    build.add_argument("--sft-steps", type=int, default=None, help="override the policy's SFT steps (for quick trials)")
    build.add_argument(
        "--empo-baseline",
        action="store_true",
        help="also train EMPO's supervised GRPO baseline, for empo_metrics.json's comparison (+29 minutes)",
    )
    build.set_defaults(run=run_build)


def run_build(args) -> int:
    import dataclasses

    from probexit.training.tinyworld.build import Build, BuildConfig

    config = BuildConfig(seed=args.seed)
    if args.sft_steps is not None:
        if args.sft_steps < 1:
            raise ValueError("--sft-steps must be positive")
        config = dataclasses.replace(
            config, policy=dataclasses.replace(config.policy, steps=args.sft_steps, stop_at=None)
        )
    config = dataclasses.replace(config, empo_baseline=args.empo_baseline)
    if args.out.exists() and not args.out.is_dir():
        raise ValueError(f"--out {args.out} exists and is not a folder")
    Build(args.out, config).run()
    print(f"tinyworld: built into {args.out}")
    return 0
