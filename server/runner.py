"""Running the app under uvicorn: the line logged when the port opens, and how the server shuts down.

On SIGTERM uvicorn stops accepting connections and waits for the requests in flight. Those still running
after `ServerConfig.shutdown_grace_s` end with an error the clients see (an error event, then `[DONE]`) rather
than a stream cut mid-way; uvicorn's own deadline comes `SHUTDOWN_DELIVERY_S` later, so that those errors
reach the clients before it closes the connections.
"""

from __future__ import annotations

import asyncio
import logging
import socket

from probexit.server.config import ServerConfig
from probexit.server.errors import shutting_down

SHUTDOWN_DELIVERY_S = 5.0  # after the grace time: for the error events to reach the clients


async def serve(app, config: ServerConfig, listener: socket.socket) -> int:
    """Serve `app` on `listener` (a socket already bound to the configured address, listening once the lifespan has
    started the engine) until it is told to stop; 0, or 1 when it never started (the lifespan failed)."""
    import uvicorn

    class Server(uvicorn.Server):
        async def startup(self, sockets=None) -> None:
            await super().startup(sockets)  # the lifespan (engine start), then the port opens
            if self.started:
                _log_listening(app, config, self)

        async def shutdown(self, sockets=None) -> None:
            closing = asyncio.get_running_loop().call_later(config.shutdown_grace_s, _close_requests, app)
            try:
                await super().shutdown(sockets)
            finally:
                closing.cancel()

    server = Server(
        uvicorn.Config(
            app,
            host=config.host,
            port=config.port,
            log_level="info",
            access_log=False,
            timeout_graceful_shutdown=config.shutdown_grace_s + SHUTDOWN_DELIVERY_S,
        )
    )
    await server.serve(sockets=[listener])
    return 0 if server.started else 1


def _close_requests(app) -> None:
    if app.state.core is not None:
        app.state.core.close(shutting_down())


def _log_listening(app, config: ServerConfig, server) -> None:
    port = server.servers[0].sockets[0].getsockname()[1] if server.servers else config.port
    probe = f"probe {config.probe}" if app.state.setup.probe is not None else "no probe"
    reward = f"reward model {config.reward_model}" if app.state.rewards.ensemble is not None else "no reward model"
    early_exit = "on" if app.state.core.exit_defaults.enabled else "off"
    logging.getLogger("uvicorn.error").info(
        "probexit: listening on http://%s:%d, serving %s (%s, %s, %s; early exit %s by default)",
        config.host,
        port,
        config.served_model_name,
        config.model,
        probe,
        reward,
        early_exit,
    )
