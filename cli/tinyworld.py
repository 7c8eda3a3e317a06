"""`probexit tinyworld build`: rebuild the embedded default from nothing."""
from __future__ import annotations

from probexit.cli.errors import CLIError


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("tinyworld", help="the tiny world: the embedded default model, probe and reward model")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    build = actions.add_parser("build", help="rebuild the embedded default deterministically")
    build.add_argument("--out", required=True, help="output folder")
    build.set_defaults(run=_not_yet)


def _not_yet(args) -> int:
    raise CLIError("`probexit tinyworld build` is not available yet")
