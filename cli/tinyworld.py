"""`probexit tinyworld build`: rebuild the embedded default from nothing."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from probexit.cli.flags import add_config_flags, config_values

NAME, HELP = "tinyworld", "the tiny world: the embedded default model, probe and reward model"


@dataclass(frozen=True)
class BuildRun:
    """What `tinyworld build` writes and how."""

    out: Path = field(metadata={"help": "Output folder (assets/tinyworld to refresh the committed default)."})
    seed: int = field(default=0, metadata={"help": "Seed of every random choice."})
    sft_steps: int | None = field(
        default=None, metadata={"help": "Override the policy's SFT steps and run them whole (for quick trials)."}
    )
    empo_baseline: bool = field(
        default=False,
        metadata={"help": "Also train EMPO's supervised GRPO baseline, for empo_metrics.json's comparison (+29 min)."},
    )

    def __post_init__(self):
        if self.sft_steps is not None and self.sft_steps < 1:
            raise ValueError("--sft-steps must be positive")
        if self.out.exists() and not self.out.is_dir():
            raise ValueError(f"--out {self.out} exists and is not a folder")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(NAME, help=HELP)
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    build = actions.add_parser("build", help="rebuild the embedded default deterministically (resumes if interrupted)")
    add_config_flags(build.add_argument_group("build"), BuildRun)
    build.set_defaults(run=run_build)


def run_build(args) -> int:
    import dataclasses

    from probexit.training.tinyworld.build import Build, BuildConfig

    run = BuildRun(**config_values(args, BuildRun))
    config = BuildConfig(seed=run.seed)
    if run.sft_steps is not None:
        config = dataclasses.replace(
            config, policy=dataclasses.replace(config.policy, steps=run.sft_steps, stop_at=None)
        )
    config = dataclasses.replace(config, empo_baseline=run.empo_baseline)
    Build(run.out, config).run()
    print(f"tinyworld: built into {run.out}")
    return 0
