"""`probexit tinyworld build`: rebuild the embedded default from nothing; `probexit tinyworld fresh`: draw problems
that none of its splits holds, to measure on."""

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


@dataclass(frozen=True)
class FreshRun:
    """What `tinyworld fresh` draws and where it writes it."""

    out: Path = field(metadata={"help": 'JSONL file to write ({"question", "answer"} per line).'})
    count: int = field(default=300, metadata={"help": "How many problems."})
    seed: int = field(default=20261205, metadata={"help": "Seed of the draw (the splits' own seed is 0)."})
    splits: Path | None = field(
        default=None,
        metadata={"help": "Folder of the split files the problems must avoid. Default: the embedded default's."},
    )

    def __post_init__(self):
        if self.count < 1:
            raise ValueError("--count must be positive")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(NAME, help=HELP)
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    build = actions.add_parser("build", help="rebuild the embedded default deterministically (resumes if interrupted)")
    add_config_flags(build.add_argument_group("build"), BuildRun)
    build.set_defaults(run=run_build)
    fresh = actions.add_parser("fresh", help="draw problems that no split of the tiny world holds, to measure on")
    add_config_flags(fresh.add_argument_group("fresh"), FreshRun)
    fresh.set_defaults(run=run_fresh)


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


def run_fresh(args) -> int:
    from probexit.assets import default_paths
    from probexit.cli.errors import CLIError
    from probexit.training.problem_files import load_problems
    from probexit.training.tinyworld.problems import fresh_problems, parse_question, write_jsonl

    run = FreshRun(**config_values(args, FreshRun))
    folder = run.splits or default_paths().policy.parent / "problems"
    files = sorted(folder.glob("*.jsonl"))
    if not files:
        raise CLIError(f"no split files (*.jsonl) in {folder}; give --splits DIR")
    used = []
    for path in files:
        try:
            records = load_problems(path, require_answers=False)
        except ValueError as error:
            raise CLIError(str(error)) from None
        for record in records:
            try:
                used.append(parse_question(record.question))
            except ValueError as error:
                raise CLIError(f"{path}: {error}") from None
    write_jsonl(fresh_problems(run.count, run.seed, used), run.out)
    print(f"tinyworld: {run.count} problems none of the {len(used)} in {folder} holds -> {run.out}")
    return 0
