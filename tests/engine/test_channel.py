"""The decision channel's gate: only this server's workers reach the collector, over ipc or tcp; strangers are
turned away, counted by reason, and nothing they send is applied."""

import json
import socket
import time

import pytest
import zmq

from probexit.engine.channel import (
    HANDSHAKE,
    MALFORMED,
    UNKNOWN_KEY,
    ChannelTicket,
    bind_endpoint,
    export_ticket,
)
from probexit.engine.constants import EVENTS_CHANNEL_ENV, RAY_ENV_COPY_VAR
from probexit.engine.events import EventCollector, EventPublisher
from probexit.probes.runtime import Evaluation

EXIT_FOR_A = {"evals": [["a", 0, 9, 10, 0.99, True, None, None, "3"]], "marks": [["a", True]], "step_seconds": []}


def _eventually(predicate, seconds=5.0):
    deadline = time.monotonic() + seconds
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.01)
    return predicate()


@pytest.fixture(params=["ipc", "tcp://127.0.0.1"])
def collector(request):
    seen, rejected = [], []
    collector = EventCollector(on_evaluation=seen.append, bind=request.param, on_rejected=rejected.append)
    collector.seen, collector.rejected_calls = seen, rejected
    collector.expect("a")
    yield collector
    collector.close()


def _stranger(address: str, server_key: bytes | None = None, keypair: tuple[bytes, bytes] | None = None):
    """A PUSH socket of another process's making: no CURVE at all, or CURVE with keys of its own."""
    stranger = zmq.Context.instance().socket(zmq.PUSH)
    stranger.linger = 0
    if server_key is not None:
        stranger.curve_serverkey = server_key
        stranger.curve_publickey, stranger.curve_secretkey = keypair or zmq.curve_keypair()
    stranger.connect(address)
    stranger.send(json.dumps(EXIT_FOR_A).encode())
    return stranger


def _publish_exit(ticket: ChannelTicket) -> EventPublisher:
    """A worker's publisher that has sent an exit for "a" (close it once the message had time to arrive)."""
    publisher = EventPublisher(ticket)
    publisher.publish([Evaluation("a", 0, 9, 10, 0.99, True, answer="3")], 0.001, [("a", True)])
    return publisher


@pytest.mark.parametrize(
    "stranger, reason",
    [
        pytest.param(lambda ticket: _stranger(ticket.address), HANDSHAKE, id="no-key"),
        pytest.param(lambda ticket: _stranger(ticket.address, ticket.server_key.encode()), UNKNOWN_KEY, id="own-key"),
        pytest.param(  # the workers' public key without their secret: the handshake's proof fails
            lambda ticket: _stranger(
                ticket.address, ticket.server_key.encode(), (ticket.public_key.encode(), zmq.curve_keypair()[1])
            ),
            HANDSHAKE,
            id="workers-public-key",
        ),
        pytest.param(
            lambda ticket: _stranger(ticket.address, zmq.curve_keypair()[0]), HANDSHAKE, id="another-server-key"
        ),
    ],
)
def test_a_strangers_report_is_rejected_counted_and_never_applied(collector, stranger, reason):
    sock = stranger(collector.ticket)
    try:
        assert _eventually(lambda: collector.rejected[reason] >= 1), dict(collector.rejected)
        time.sleep(0.1)
        record = collector.peek("a")
        assert record.evaluations == [] and not record.complete and collector.seen == []
        assert reason in collector.rejected_calls
        publisher = _publish_exit(collector.ticket)  # the workers still get through, and theirs is applied
        assert _eventually(lambda: collector.peek("a").complete)
        assert collector.peek("a").exit.score == 0.99 and len(collector.seen) == 1
        publisher.close()
    finally:
        sock.close(0)


def test_bytes_that_are_not_zeromq_never_reach_a_record():
    """A scanner's bytes fail ZeroMQ's greeting before any message exists (libzmq drops the connection without a
    handshake event, so there is nothing to count); the workers' reports still arrive."""
    seen = []
    collector = EventCollector(on_evaluation=seen.append, bind="tcp://127.0.0.1")
    collector.expect("a")
    try:
        port = int(collector.address.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as raw:
            raw.sendall(b"POST /report HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}" * 4)
            time.sleep(0.2)
        assert collector.peek("a").evaluations == [] and seen == []
        publisher = _publish_exit(collector.ticket)
        assert _eventually(lambda: collector.peek("a").complete)
        publisher.close()
    finally:
        collector.close()


def test_a_workers_malformed_message_is_counted_and_the_channel_lives_on(collector):
    worker = zmq.Context.instance().socket(zmq.PUSH)
    worker.linger = 0
    collector.ticket.connect(worker)
    try:
        worker.send(b'{"evals": [["a", "too few"]]}')
        worker.send(b"not json")
        assert _eventually(lambda: collector.rejected[MALFORMED] == 2)
        assert collector.peek("a").evaluations == []
        worker.send(json.dumps(EXIT_FOR_A).encode())
        assert _eventually(lambda: collector.peek("a").complete)
    finally:
        worker.close(0)


def test_a_worker_reports_to_no_other_server():
    """A collector impersonated at the workers' address, with its own keys, receives nothing from them."""
    real = EventCollector()
    impostor = zmq.Context.instance().socket(zmq.PULL)
    impostor.curve_server, impostor.curve_secretkey = True, zmq.curve_keypair()[1]
    impostor.bind("tcp://127.0.0.1:*")
    try:
        ticket = ChannelTicket(impostor.last_endpoint.decode(), real.ticket.server_key, *_worker_keys(real))
        publisher = _publish_exit(ticket)
        assert not impostor.poll(500)
        publisher.close()
    finally:
        impostor.close(0)
        real.close()


def _worker_keys(collector) -> tuple[str, str]:
    return collector.ticket.public_key, collector.ticket.secret_key


@pytest.mark.parametrize(
    "bind, expected",
    [
        ("ipc", "ipc://"),
        ("tcp://127.0.0.1", "tcp://127.0.0.1:*"),
        ("tcp://10.1.2.3:7000", "tcp://10.1.2.3:7000"),
        ("tcp://[::1]:7000", "tcp://[::1]:7000"),
    ],
)
def test_bind_endpoints(bind, expected):
    assert bind_endpoint(bind).startswith(expected)


@pytest.mark.parametrize(
    "bind, message",
    [
        ("tcp://0.0.0.0:7000", "every interface"),
        ("tcp://*", "every interface"),
        ("tcp://:7000", "every interface"),
        ("tcp://127.0.0.1:port", "port must be a number"),
        ("udp://127.0.0.1", "'ipc' or tcp://"),
        ("ipc:///tmp/x", "'ipc' or tcp://"),
    ],
)
def test_bad_binds_are_refused_in_one_sentence(bind, message):
    with pytest.raises(ValueError, match=message):
        bind_endpoint(bind)


def test_the_ticket_travels_in_one_variable_that_vllms_ray_executors_copy(monkeypatch):
    monkeypatch.setenv(RAY_ENV_COPY_VAR, "MY_VAR")
    monkeypatch.delenv(EVENTS_CHANNEL_ENV, raising=False)
    ticket = ChannelTicket("tcp://10.0.0.5:7000", "s" * 40, "p" * 40, "k" * 40)
    export_ticket(ticket)
    export_ticket(ticket)  # idempotent: listed once
    assert ChannelTicket.from_environment() == ticket
    assert "k" * 40 not in repr(ticket)
    import os

    assert os.environ[RAY_ENV_COPY_VAR] == f"MY_VAR,{EVENTS_CHANNEL_ENV}"
    from vllm.ray.ray_env import get_env_vars_to_copy

    assert EVENTS_CHANNEL_ENV in get_env_vars_to_copy(), "vLLM's Ray executors would not copy the ticket"


@pytest.mark.parametrize("text", ["", "{}", '{"address": "ipc://x"}', "[1]", '{"address": 1, "server_key": "a"}'])
def test_a_bad_ticket_is_one_sentence(text):
    with pytest.raises(ValueError, match=EVENTS_CHANNEL_ENV):
        ChannelTicket.from_env(text or "not json")
