"""The `probexit` command line: one entry point, one module per subcommand group.

Every subcommand module exposes `NAME`, `HELP` and `add_parser(subparsers)`; the parser it adds carries a
`run(args)` handler in its defaults. Only the command being run gets its whole parser (some read their flags
from config classes that import torch); the others are listed by name, so `probexit --help` is quick. Heavy
imports (vLLM, TRL) happen inside the handlers, and serving never imports training code.
"""

from __future__ import annotations

import argparse
import os
import sys

from probexit.cli import bench, serve, tinyworld, train
from probexit.cli.errors import CLIError

SUBCOMMAND_MODULES = (serve, train, bench, tinyworld)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser for `argv` (None: every command's whole parser)."""
    parser = argparse.ArgumentParser(
        prog="probexit",
        description="Serve reasoning models that stop thinking when a hidden-state probe says the answer is right.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    command = next((word for word in argv if not word.startswith("-")), "") if argv is not None else None
    for module in SUBCOMMAND_MODULES:
        if command is None or command == module.NAME:
            module.add_parser(subparsers)
        else:
            subparsers.add_parser(module.NAME, help=module.HELP)
    return parser


def main(argv: list[str] | None = None) -> int:
    # Before torch starts OpenMP: OpenMP threads that spin while they wait slow torch several-fold when a few
    # cores are shared with other processes (docs/platform-notes.md).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv).parse_args(argv)
    try:
        result = args.run(args)
    except KeyboardInterrupt:
        print("probexit: interrupted", file=sys.stderr)
        return 130
    except (CLIError, ValueError, OSError) as error:
        # Bad input is a one-line message and a non-zero exit, not a traceback (PROBEXIT_DEBUG=1 shows it).
        if os.environ.get("PROBEXIT_DEBUG"):
            raise
        print(f"probexit: error: {error}", file=sys.stderr)
        return 2
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
