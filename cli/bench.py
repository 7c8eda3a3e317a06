"""`probexit bench savings|kernel|load`: benchmarks that write their numbers to JSON."""
from __future__ import annotations

from probexit.cli.errors import CLIError


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("bench", help="benchmarks: savings, kernel, load")
    suites = parser.add_subparsers(dest="suite", required=True, metavar="SUITE")
    for name, help_text in (
        ("savings", "accuracy against thinking tokens, probe against peer policies"),
        ("kernel", "fused probe kernel against torch"),
        ("load", "concurrent streaming load on the server"),
    ):
        suite = suites.add_parser(name, help=help_text)
        suite.set_defaults(run=_not_yet)


def _not_yet(args) -> int:
    raise CLIError(f"`probexit bench {args.suite}` is not available yet")
