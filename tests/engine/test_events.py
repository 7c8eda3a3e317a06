import json
import threading
import time

import pytest

from probexit.engine.events import EventCollector, EventPublisher
from probexit.probes.runtime import Evaluation


def test_published_evaluations_reach_the_record_and_the_callbacks():
    seen, steps = [], []
    collector = EventCollector(on_evaluation=seen.append, on_step=steps.append)
    publisher = EventPublisher(collector.ticket)
    try:
        collector.expect("a")
        publisher.publish([Evaluation("a", 0, 9, 10, 0.9, True), Evaluation("other", 0, 3, 4, 0.1, False)], 0.001)
        deadline = time.monotonic() + 5
        while not collector.peek("a").evaluations and time.monotonic() < deadline:
            time.sleep(0.01)
        record = collector.collect("a")
        assert record.exit == Evaluation("a", 0, 9, 10, 0.9, True) and record.last_score == 0.9
        assert len(seen) == 2 and steps == [0.001]
        assert collector.pending == 0
    finally:
        publisher.close()
        collector.close()


def test_bookkeeping_never_waits_for_the_socket():
    """expect/forget/pending run on the server's event loop: they must not wait while the collector's
    thread holds the socket (a receive in progress)."""
    collector = EventCollector()
    done = threading.Event()

    def bookkeeping():
        collector.expect("r")
        collector.forget("r")
        assert collector.pending == 0
        done.set()

    try:
        with collector._lock:  # as if the collector thread were receiving
            threading.Thread(target=bookkeeping, daemon=True).start()
            assert done.wait(timeout=2), "expect/forget waited for the socket's lock"
    finally:
        collector.close()


def _eventually(predicate, seconds=5.0):
    deadline = time.monotonic() + seconds
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.005)
    return predicate()


def test_evaluations_are_batched_into_few_messages(monkeypatch):
    """Each message wakes a thread in both processes: ordinary evaluations wait, up to FLUSH_AFTER_SECONDS,
    and then go together (here sent by the publisher's own thread: no later step comes to send them)."""
    import json

    from probexit.engine import events

    monkeypatch.setattr(events, "FLUSH_AFTER_SECONDS", 0.5)
    monkeypatch.setattr(events, "FLUSH_BUSY_SECONDS", 5.0)
    receiver, ticket = _curve_receiver()
    publisher = EventPublisher(ticket)
    try:
        started = time.monotonic()
        for index in range(10):
            publisher.publish([Evaluation("a", index, 10 * index, 10 * index, 0.2, False)], 0.001)
        assert receiver.poll(2000), "the idle flush never came"
        waited = time.monotonic() - started
        message = json.loads(receiver.recv())
        assert [e[1] for e in message["evals"]] == list(range(10)) and message["step_seconds"] == [0.001] * 10
        assert waited >= 0.4 and not receiver.poll(300)
    finally:
        publisher.close()
        receiver.close(0)


def test_while_steps_keep_coming_evaluations_wait_longer(monkeypatch):
    """A busy engine sends ordinary evaluations every FLUSH_BUSY_SECONDS (not at FLUSH_AFTER_SECONDS, which the
    steps here are closer than); FLUSH_AFTER_SECONDS after its last step it sends what is left."""
    from probexit.engine import events

    monkeypatch.setattr(events, "FLUSH_AFTER_SECONDS", 0.2)
    monkeypatch.setattr(events, "FLUSH_BUSY_SECONDS", 0.3)
    receiver, ticket = _curve_receiver()
    publisher = EventPublisher(ticket)
    try:
        arrivals = []

        def receive_for(seconds):
            deadline = time.monotonic() + seconds
            while receiver.poll(max(1, int(1000 * (deadline - time.monotonic())))):
                arrivals.append((time.monotonic(), [e[1] for e in json.loads(receiver.recv())["evals"]]))

        started = time.monotonic()
        index = 0
        while time.monotonic() - started < 1.0:  # steps every 50 ms, each with an evaluation
            publisher.publish([Evaluation("a", index, index, index, 0.2, False)], None)
            index += 1
            receive_for(0.05)
        stopped = time.monotonic()
        receive_for(1.0)
        assert [i for _, sent in arrivals for i in sent] == list(range(index))
        times = [started] + [t for t, _ in arrivals]
        assert all(later - earlier >= 0.25 for earlier, later in zip(times, times[1:])), "sent before they were due"
        assert 2 <= len(arrivals) <= 4 and times[-1] - stopped < 0.5
    finally:
        publisher.close()
        receiver.close(0)


def _curve_receiver():
    """A bare CURVE server socket (no collector around it) and the ticket a publisher needs to reach it."""
    import zmq

    from probexit.engine.channel import ChannelTicket, bind_endpoint

    server_public, server_secret = zmq.curve_keypair()
    worker_public, worker_secret = zmq.curve_keypair()
    receiver = zmq.Context.instance().socket(zmq.PULL)
    receiver.curve_server, receiver.curve_secretkey = True, server_secret
    receiver.bind(bind_endpoint("ipc"))
    keys = (server_public.decode(), worker_public.decode(), worker_secret.decode())
    return receiver, ChannelTicket(receiver.last_endpoint.decode(), *keys)


@pytest.fixture
def channel(monkeypatch, request):
    """A connected collector and publisher; an indirect parameter sets FLUSH_AFTER_SECONDS."""
    from probexit.engine import events

    if hasattr(request, "param"):
        monkeypatch.setattr(events, "FLUSH_AFTER_SECONDS", request.param)
    collector = EventCollector()
    publisher = EventPublisher(collector.ticket)
    collector.expect("a")
    yield collector, publisher
    publisher.close()
    collector.close()


@pytest.mark.parametrize("channel", [5.0], indirect=True)
def test_a_complete_mark_is_sent_at_once_and_ends_the_wait(channel):
    collector, publisher = channel
    publisher.publish([Evaluation("a", 0, 9, 10, 0.3, False)], 0.001)
    publisher.publish([], 0.001, [("a", True)])
    started = time.monotonic()
    record = collector.collect("a", finished_at=started)
    assert time.monotonic() - started < 2.0, "collect waited although the record was complete"
    assert record.complete and record.last_score == 0.3


@pytest.mark.parametrize("channel", [0.3], indirect=True)
def test_an_incomplete_record_is_waited_for_then_given_as_it_is(channel):
    """A request that finished inside its thinking on an idle engine gets no mark: collect waits for the
    worker's flush delay (plus transit), and gets the evaluations the idle flush sent meanwhile."""
    collector, publisher = channel
    publisher.publish([Evaluation("a", 0, 9, 10, 0.7, False)], 0.001)
    started = time.monotonic()
    record = collector.collect("a", finished_at=started)
    assert time.monotonic() - started >= 0.3 and not record.complete and record.last_score == 0.7


def test_marks_apply_in_order_and_a_reopened_record_is_incomplete(channel):
    collector, publisher = channel
    publisher.publish([], None, [("a", True), ("a", False)])  # preempted, then resumed still thinking
    assert not _eventually(lambda: collector.peek("a").complete, seconds=0.3)
    publisher.publish([], None, [("a", True)])
    assert _eventually(lambda: collector.peek("a").complete)
