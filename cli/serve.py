"""`probexit serve`: the OpenAI-compatible server, with vLLM's own engine flags passed through.

The subcommand collects its arguments unparsed (its parser has no options of its own), and `run` parses
them with a parser that holds probexit's flags plus vLLM's engine arguments: adding vLLM's arguments
needs `import vllm` (seconds), which `probexit --help` and the other subcommands must not pay.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket

from probexit.cli.errors import CLIError

NO_DEFAULT = "%(default).0s"  # a help-string format that prints nothing
SHUTDOWN_DELIVERY_S = 5.0  # after the grace time: for the error events to reach the clients


def add_parser(subparsers) -> None:
    # prefix_chars="+": nothing looks like an option to this parser, so every flag reaches `run` as is.
    parser = subparsers.add_parser(
        "serve", help="serve a reasoning model with probe early exit (OpenAI API); `serve --help` for flags",
        prefix_chars="+", add_help=False)
    parser.add_argument("argv", nargs="*", help=argparse.SUPPRESS)
    parser.set_defaults(run=run)


def run(args) -> int:
    # Before torch starts OpenMP: spinning worker threads slow torch several-fold on shared cores (PLATFORM.md).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    options = build_serve_parser().parse_args(args.argv)
    config = config_from_args(options)
    from probexit.server.app import build_app
    from probexit.server.config import ConfigError

    _check_port_free(config.host, config.port)
    try:
        app = build_app(config)  # every check that can fail on the user's input, before the port opens
    except ConfigError as error:
        raise CLIError(str(error)) from error
    try:
        return asyncio.run(_serve(app, config))
    except SystemExit:  # uvicorn exits this way when the lifespan (the engine's start) failed
        error = app.state.startup_error
        if error is None:
            raise
        raise CLIError(f"the engine failed to start: {' '.join(str(error).split()) or type(error).__name__}") from None


def build_serve_parser():
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    from probexit.server.config import KERNEL_BACKENDS, MAX_REQUEST_BYTES

    parser = FlexibleArgumentParser(
        prog="probexit serve",
        description="Serve a reasoning model behind an OpenAI-compatible API, ending its thinking early when "
                    "the probe says the answer so far is right. With no arguments: the embedded tiny-world "
                    "default on 127.0.0.1:8000. Every vLLM engine flag (--tensor-parallel-size, --dtype, ...) "
                    "is accepted too.",
        epilog="`probexit serve --help=probexit` lists probexit's own flags, --help=GROUP one group's, "
               "--help=all every flag, --help=WORD the flags whose names contain WORD.")
    group = parser.add_argument_group("probexit", "What to serve, where, and the early-exit defaults.")
    # vLLM's help formatter appends "(default: None)" to every flag; NO_DEFAULT renders as nothing instead,
    # for the flags whose default the help text explains.
    group.add_argument("--probe", help="probe folder (default: the embedded probe without --model)" + NO_DEFAULT)
    group.add_argument("--reward-model", help="reward model folder (default: the embedded one without --model)"
                       + NO_DEFAULT)
    group.add_argument("--host", default="127.0.0.1", help="address to listen on")
    group.add_argument("--port", type=int, default=8000, help="port to listen on")
    group.add_argument("--api-key", help="require `Authorization: Bearer KEY` on /v1 routes "
                                         "(default: $PROBEXIT_API_KEY; none when unset)" + NO_DEFAULT)
    group.add_argument("--early-exit", action=argparse.BooleanOptionalAction, default=None,
                       help="end thinking early unless a request says otherwise (default: on with a probe)"
                       + NO_DEFAULT)
    group.add_argument("--threshold", type=float, help="default probe threshold (default: the probe's own)"
                       + NO_DEFAULT)
    group.add_argument("--min-thinking-tokens", type=int, default=0, help="default thinking tokens before any exit")
    group.add_argument("--kernel-backend", default="auto", choices=KERNEL_BACKENDS,
                       help="how the engine scores probe rows (auto: Triton on GPUs, numpy on CPU)")
    group.add_argument("--max-request-bytes", type=int, default=MAX_REQUEST_BYTES,
                       help="largest request body accepted (larger: 413)")
    group.add_argument("--shutdown-grace", type=float, default=5.0, metavar="SECONDS",
                       help="on SIGTERM, how long requests in flight may finish before each gets an error")
    AsyncEngineArgs.add_cli_args(parser)
    model = next((action for action in parser._actions if "--model" in action.option_strings), None)
    if model is None:  # vLLM leaves --model out of `serve --help`, expecting a positional model
        group.add_argument("--model", default=None)
    else:
        model.default = None  # no model means the embedded default, not vLLM's
    for action in parser._actions:
        if "--model" in action.option_strings:
            action.help = "model folder or hub id (default: the embedded tiny-world policy)"
    return parser


def config_from_args(options):
    """The parsed flags -> ServerConfig (the embedded default filled in where --model is absent)."""
    from vllm.engine.arg_utils import AsyncEngineArgs

    from probexit.server.config import API_KEY_ENV, ConfigError, ServerConfig
    from probexit.server.defaults import (EMBEDDED_ENGINE_DEFAULTS, EMBEDDED_NAME, MissingAssetsError,
                                          require_default_paths)

    probe, reward, name = options.probe, options.reward_model, options.served_model_name
    if options.model is None:
        try:
            paths = require_default_paths()
        except MissingAssetsError as error:
            raise CLIError(str(error)) from error
        options.model = str(paths.policy)
        probe = probe or (str(paths.probe) if paths.probe.is_dir() else None)
        reward = reward or (str(paths.reward) if paths.reward.is_dir() else None)
        name = name or EMBEDDED_NAME
        defaults = AsyncEngineArgs(model=options.model)
        for key, value in EMBEDDED_ENGINE_DEFAULTS.items():
            if getattr(options, key) == getattr(defaults, key):
                setattr(options, key, value)
    if isinstance(name, list):
        name = name[0] if name else None
    try:
        return ServerConfig(
            model=options.model, served_model_name=name, probe=probe, reward_model=reward, host=options.host,
            port=options.port, api_key=options.api_key or os.environ.get(API_KEY_ENV) or None,
            early_exit=options.early_exit, threshold=options.threshold,
            min_thinking_tokens=options.min_thinking_tokens, kernel_backend=options.kernel_backend,
            max_request_bytes=options.max_request_bytes, shutdown_grace_s=options.shutdown_grace,
            engine_args=AsyncEngineArgs.from_cli_args(options))
    except ConfigError as error:
        raise CLIError(str(error)) from error


def _check_port_free(host: str, port: int) -> None:
    """Fail in a second, not after the engine's minute of start-up."""
    if port == 0:
        return
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe_socket:
            probe_socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe_socket.bind((host, port))
    except OSError as error:
        raise CLIError(f"cannot listen on {host}:{port} ({error.strerror}); pick another --port or --host") from error


async def _serve(app, config) -> int:
    import uvicorn

    class Server(uvicorn.Server):
        async def startup(self, sockets=None) -> None:
            await super().startup(sockets)  # the lifespan (engine start), then the port opens
            if self.started:
                _log_listening(app, config, self)

        async def shutdown(self, sockets=None) -> None:
            # uvicorn stops accepting, then waits for the requests in flight; past the grace time they end with
            # an error the clients see (an error event, then [DONE]) instead of a stream cut mid-way
            closing = asyncio.get_running_loop().call_later(config.shutdown_grace_s, _close_requests, app)
            try:
                await super().shutdown(sockets)
            finally:
                closing.cancel()

    server = Server(uvicorn.Config(app, host=config.host, port=config.port, log_level="info", access_log=False,
                                   timeout_graceful_shutdown=config.shutdown_grace_s + SHUTDOWN_DELIVERY_S))
    await server.serve()
    return 0 if server.started else 1


def _close_requests(app) -> None:
    from probexit.server.errors import shutting_down

    if app.state.core is not None:
        app.state.core.close(shutting_down())


def _log_listening(app, config, server) -> None:
    port = server.servers[0].sockets[0].getsockname()[1] if server.servers else config.port
    probe = f"probe {config.probe}" if app.state.setup.probe is not None else "no probe"
    reward = f"reward model {config.reward_model}" if app.state.reward_model is not None else "no reward model"
    early_exit = "on" if app.state.core.exit_defaults.enabled else "off"
    logging.getLogger("uvicorn.error").info(
        "probexit: listening on http://%s:%d, serving %s (%s, %s, %s; early exit %s by default)", config.host, port,
        config.served_model_name, config.model, probe, reward, early_exit)
