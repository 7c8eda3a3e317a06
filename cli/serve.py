"""`probexit serve`: the OpenAI-compatible server (the server issue fills in the handler)."""
from __future__ import annotations

from probexit.cli.errors import CLIError


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("serve", help="serve a reasoning model with probe early exit (OpenAI API)")
    parser.set_defaults(run=run)


def run(args) -> int:
    raise CLIError("`probexit serve` is not available yet")
