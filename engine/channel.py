"""Where the decision channel listens and who may use it: the light half of the event channel (`events.py` holds
what travels on it), importable without torch or vLLM so that the server's configuration can check a bind.

The channel is authenticated and encrypted with ZeroMQ's CURVE. The collector makes a fresh server keypair and
one worker keypair when it opens, and answers libzmq's authentication requests (ZAP) itself, accepting only the
worker key. Workers get the collector's address and public key and the worker keypair in one environment variable
(a `ChannelTicket`): local processes inherit it and vLLM's Ray executors copy it to their workers
(`export_ticket`). A ZeroMQ peer that fails the handshake (no key, a key of its own, another server key) never
delivers a message and is counted by reason, as is a delivered message that is not a report; bytes that are not
ZeroMQ at all fail its greeting and are dropped by libzmq before any handshake (nothing to count).
"""

from __future__ import annotations

import hmac
import json
import os
import tempfile
import uuid
from dataclasses import asdict, dataclass, field
from urllib.parse import urlsplit

import zmq
import zmq.utils.z85
from zmq.utils.monitor import recv_monitor_message

from probexit.engine.constants import EVENTS_CHANNEL_ENV, RAY_ENV_COPY_VAR

IPC = "ipc"  # the default bind: a fresh socket file in the temp folder, for every worker on this machine
ZAP_ENDPOINT = "inproc://zeromq.zap.01"  # where libzmq asks a context's authentication handler (ZeroMQ RFC 27)
WILDCARD_HOSTS = ("", "*", "0.0.0.0", "::")
# Why something was turned away: a connection that is not a CURVE client of this collector (no key, another
# server key, not ZeroMQ), a CURVE client whose key is not the workers', a message that is not a report.
HANDSHAKE, UNKNOWN_KEY, MALFORMED = "handshake", "unknown_key", "malformed"
REJECTION_REASONS = (HANDSHAKE, UNKNOWN_KEY, MALFORMED)
FAILED_HANDSHAKES = {
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: HANDSHAKE,
    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: HANDSHAKE,
    zmq.EVENT_HANDSHAKE_FAILED_AUTH: UNKNOWN_KEY,
}
TICKET_FIELDS = ("address", "server_key", "public_key", "secret_key")


@dataclass(frozen=True)
class ChannelTicket:
    """What a worker needs to report: where the collector listens, the collector's public key (a worker talks to
    no other server) and the worker keypair the collector accepts; keys in Z85 text."""

    address: str
    server_key: str
    public_key: str
    secret_key: str = field(repr=False)

    def to_env(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_env(cls, text: str) -> ChannelTicket:
        try:
            values = json.loads(text)
            return cls(**{name: text_field(values[name]) for name in TICKET_FIELDS})
        except (ValueError, TypeError, KeyError) as error:
            raise ValueError(f"${EVENTS_CHANNEL_ENV} is not an event-channel ticket ({error!r})") from None

    @classmethod
    def from_environment(cls) -> ChannelTicket | None:
        """The ticket this process inherited (None: nobody collects, e.g. an engine started without probexit)."""
        text = os.environ.get(EVENTS_CHANNEL_ENV)
        return cls.from_env(text) if text else None

    def connect(self, socket: zmq.Socket) -> None:
        """Connect a worker's socket to the collector as the worker key."""
        socket.curve_serverkey = self.server_key.encode()
        socket.curve_publickey = self.public_key.encode()
        socket.curve_secretkey = self.secret_key.encode()
        socket.ipv6 = self.address.startswith("tcp://[")
        socket.connect(self.address)


def text_field(value) -> str:
    if not isinstance(value, str) or not value:
        raise TypeError(f"expected a non-empty string, got {value!r}")
    return value


def bind_endpoint(bind: str) -> str:
    """The endpoint the collector binds for `bind`: "ipc" (a fresh socket file), "tcp://HOST" (a free port) or
    "tcp://HOST:PORT", HOST being the address of an interface the workers reach. A wildcard host is refused:
    the channel listens only where it must."""
    if bind == IPC:
        return f"ipc://{tempfile.gettempdir()}/probexit-events-{os.getpid()}-{uuid.uuid4().hex[:12]}"
    parts = urlsplit(bind)
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"the event channel's port must be a number from 0 to 65535 in {bind}") from None
    if parts.scheme != "tcp" or parts.path or parts.query or parts.fragment:
        raise ValueError(f"the event channel binds to 'ipc' or tcp://HOST[:PORT], not {bind!r}")
    host = parts.hostname or ""
    if host in WILDCARD_HOSTS:
        raise ValueError(
            f"the event channel does not listen on every interface ({bind}): name the address of the interface "
            "the workers reach, e.g. tcp://10.0.0.5"
        )
    host = f"[{host}]" if ":" in host else host
    return f"tcp://{host}:{port if port else '*'}"


def export_ticket(ticket: ChannelTicket) -> None:
    """Put the ticket where the engine's workers find it: this process's environment, which the engine's local
    processes inherit, and the list of variables vLLM's Ray executors copy to their workers."""
    os.environ[EVENTS_CHANNEL_ENV] = ticket.to_env()
    copied = [name.strip() for name in os.environ.get(RAY_ENV_COPY_VAR, "").split(",") if name.strip()]
    if EVENTS_CHANNEL_ENV not in copied:
        os.environ[RAY_ENV_COPY_VAR] = ",".join([*copied, EVENTS_CHANNEL_ENV])


class Gatekeeper:
    """The collector's side of CURVE: binds `socket` (a PULL socket of `context`) as a CURVE server at `bind`, makes
    the ticket, answers authentication requests and reports failed handshakes. Call `poll` from one thread only."""

    def __init__(self, context: zmq.Context, socket: zmq.Socket, bind: str):
        endpoint = bind_endpoint(bind)
        server_public, server_secret = zmq.curve_keypair()
        worker_public, worker_secret = zmq.curve_keypair()
        self._worker_key = zmq.utils.z85.decode(worker_public)  # as authentication requests carry it: raw bytes
        self._zap = context.socket(zmq.REP)  # a context has one handler: the collector's context is its own
        self._zap.bind(ZAP_ENDPOINT)
        socket.curve_server = True
        socket.curve_secretkey = server_secret
        socket.ipv6 = endpoint.startswith("tcp://[")
        self._monitor = socket.get_monitor_socket(sum(FAILED_HANDSHAKES))
        try:
            socket.bind(endpoint)
        except zmq.ZMQError as error:
            raise ValueError(f"cannot open the event channel on {endpoint}: {error}") from None
        keys = (server_public.decode(), worker_public.decode(), worker_secret.decode())
        self.ticket = ChannelTicket(socket.last_endpoint.decode(), *keys)

    def poll(self) -> list[str]:
        """Answer the pending authentication requests (only the worker key passes); the reasons of the handshakes
        that failed since the last call."""
        self._authenticate()
        failed = []
        while True:
            try:
                event = recv_monitor_message(self._monitor, zmq.NOBLOCK)
            except zmq.Again:
                return failed
            if event["event"] in FAILED_HANDSHAKES:
                failed.append(FAILED_HANDSHAKES[event["event"]])

    def _authenticate(self) -> None:
        while True:
            try:
                version, request_id, *frames = self._zap.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            mechanism, credentials = (frames[3], frames[4:]) if len(frames) >= 4 else (b"", [])
            allowed = mechanism == b"CURVE" and len(credentials) == 1
            allowed = allowed and hmac.compare_digest(credentials[0], self._worker_key)
            status = (b"200", b"OK") if allowed else (b"400", b"not a worker of this server")
            self._zap.send_multipart([version, request_id, *status, b"", b""])
