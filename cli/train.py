"""`probexit train probe|empo|advrm`: the training jobs."""
from __future__ import annotations

from probexit.cli.errors import CLIError


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("train", help="training jobs: probe, empo, advrm")
    jobs = parser.add_subparsers(dest="job", required=True, metavar="JOB")
    for name, help_text in (
        ("probe", "train an early-exit probe from the model's own traces"),
        ("empo", "EMPO: unsupervised RL that rewards semantic agreement"),
        ("advrm", "Adv-RM: reward models hardened with adversarial examples"),
    ):
        job = jobs.add_parser(name, help=help_text)
        job.set_defaults(run=_not_yet)


def _not_yet(args) -> int:
    raise CLIError(f"`probexit train {args.job}` is not available yet")
