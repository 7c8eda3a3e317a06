"""`probexit serve`: the OpenAI-compatible server, with vLLM's own engine flags passed through.

The subcommand collects its arguments unparsed (its parser has no options of its own), and `run` parses
them with a parser that holds probexit's flags plus vLLM's engine arguments: adding vLLM's arguments
means importing vLLM (seconds), which `probexit --help` and the other subcommands must not pay.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket

from probexit.cli.errors import CLIError
from probexit.cli.flags import add_config_flags, config_values

NAME, HELP = "serve", "serve a reasoning model with probe early exit (OpenAI API); `serve --help` for flags"


def add_parser(subparsers) -> None:
    # prefix_chars="+": nothing looks like an option to this parser, so every flag reaches `run` as is.
    parser = subparsers.add_parser(NAME, help=HELP, prefix_chars="+", add_help=False)
    parser.add_argument("argv", nargs="*", help=argparse.SUPPRESS)
    parser.set_defaults(run=run)


def run(args) -> int:
    options = build_serve_parser().parse_args(args.argv)
    config = config_from_args(options)
    from probexit.server.app import build_app
    from probexit.server.config import ConfigError
    from probexit.server.runner import serve

    with _bind_listener(config.host, config.port) as listener:
        try:
            app = build_app(config)  # every check that can fail on the user's input, before the port opens
        except ConfigError as error:
            raise CLIError(str(error)) from error
        try:
            return asyncio.run(serve(app, config, listener))
        except SystemExit:  # uvicorn exits this way when the lifespan (the engine's start) failed
            error = app.state.startup_error
            if error is None:
                raise
            message = " ".join(str(error).split()) or type(error).__name__
            raise CLIError(f"the engine failed to start: {message}") from None


def build_serve_parser():
    from probexit.engine.cli_args import add_engine_flags, engine_flag_parser
    from probexit.server.config import ServerConfig

    parser = engine_flag_parser(
        prog="probexit serve",
        description="Serve a reasoning model behind an OpenAI-compatible API, ending its thinking early when "
        "the probe says the answer so far is right. With no arguments: the embedded tiny-world "
        "default on 127.0.0.1:8000. Every vLLM engine flag (--tensor-parallel-size, --dtype, ...) "
        "is accepted too.",
        epilog="`probexit serve --help=probexit` lists probexit's own flags, --help=GROUP one group's, "
        "--help=all every flag, --help=WORD the flags whose names contain WORD.",
    )
    add_config_flags(
        parser.add_argument_group("probexit", "What to serve, where, and the early-exit defaults."), ServerConfig
    )
    add_engine_flags(parser, model_help="model folder or hub id (default: the embedded tiny-world policy)")
    return parser


def config_from_args(options):
    """The parsed flags -> ServerConfig (the embedded default filled in where --model is absent)."""
    from probexit.assets import EMBEDDED_ENGINE_DEFAULTS, EMBEDDED_NAME, MissingAssetsError, require_default_paths
    from probexit.engine.cli_args import engine_args_from_flags, engine_flag_defaults
    from probexit.server.config import API_KEY_ENV, ConfigError, ServerConfig

    values = config_values(options, ServerConfig)
    name = options.served_model_name
    if options.model is None:
        try:
            paths = require_default_paths()
        except MissingAssetsError as error:
            raise CLIError(str(error)) from error
        options.model = str(paths.policy)
        values["probe"] = values["probe"] or (str(paths.probe) if paths.probe.is_dir() else None)
        values["reward_model"] = values["reward_model"] or (str(paths.reward) if paths.reward.is_dir() else None)
        name = name or EMBEDDED_NAME
        defaults = engine_flag_defaults(options.model)
        for key, value in EMBEDDED_ENGINE_DEFAULTS.items():
            if getattr(options, key) == defaults[key]:
                setattr(options, key, value)
    if isinstance(name, list):
        name = name[0] if name else None
    try:
        return ServerConfig(
            **{**values, "api_key": values["api_key"] or os.environ.get(API_KEY_ENV) or None},
            model=options.model,
            served_model_name=name,
            engine_args=engine_args_from_flags(options),
        )
    except ConfigError as error:
        raise CLIError(str(error)) from error


def _bind_listener(host: str, port: int) -> socket.socket:
    """The server's socket, bound now and listening once the engine has started. Bound first, so that a port in
    use fails in a second, not after the engine's minute of start-up, and so that nothing the engine starts (its
    processes pick free ports of their own) can take the port meanwhile."""
    listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
    except OSError as error:
        listener.close()
        raise CLIError(f"cannot listen on {host}:{port} ({error.strerror}); pick another --port or --host") from error
    return listener
