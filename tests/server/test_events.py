import threading
import time

from probexit.probes.runtime import Evaluation
from probexit.server.events import EventCollector, EventPublisher


def test_published_evaluations_reach_the_record_and_the_callbacks():
    seen, steps = [], []
    collector = EventCollector(on_evaluation=seen.append, on_step=steps.append)
    publisher = EventPublisher(collector.address)
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
