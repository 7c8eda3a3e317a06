"""vLLM's own engine flags on probexit's command lines: the parser that knows them, and the engine arguments
they make. Importing vLLM takes seconds, so only the commands that start an engine call these."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from argparse import ArgumentParser, Namespace


def engine_flag_parser(**kwargs) -> ArgumentParser:
    """An argument parser of vLLM's kind (it reads `--help=GROUP` and config files as `vllm serve` does)."""
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    return FlexibleArgumentParser(**kwargs)


def add_engine_flags(parser: ArgumentParser, model_help: str) -> None:
    """vLLM's engine flags, with `--model` optional (None: the caller picks a default) and explained by
    `model_help`."""
    from vllm.engine.arg_utils import AsyncEngineArgs

    AsyncEngineArgs.add_cli_args(parser)
    model = next((action for action in parser._actions if "--model" in action.option_strings), None)
    if model is None:  # vLLM leaves --model out of `serve --help`, expecting a positional model
        model = parser.add_argument("--model", default=None)
    model.default, model.help = None, model_help


def engine_args_from_flags(options: Namespace):
    """vLLM's `AsyncEngineArgs` from parsed flags."""
    from vllm.engine.arg_utils import AsyncEngineArgs

    return AsyncEngineArgs.from_cli_args(options)


def engine_flag_defaults(model: str) -> dict:
    """What each engine flag is when the user does not give it, by attribute name."""
    from vllm.engine.arg_utils import AsyncEngineArgs

    return vars(AsyncEngineArgs(model=model))
