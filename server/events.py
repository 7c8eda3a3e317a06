"""The channel that carries early-exit decisions from the engine's worker process to the API process.

The worker PUSHes one small message per decode step that had something to say (evaluations, and the
step's probe time); the API process PULLs them on a daemon thread into per-request records. Records exist
only for requests the API registered (`expect`) and are removed when it collects them, so memory is
bounded by the requests in flight. Sending never blocks the engine: if the API process stops reading,
messages beyond the high-water mark are dropped, never the decode step.
"""
from __future__ import annotations

import json
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import zmq

from probexit.probes.runtime import Evaluation

HIGH_WATER_MARK = 10_000
FLUSH_EVERY_STEPS, FLUSH_EVERY_SECONDS = 64, 0.5
IDLE_SLEEP_SECONDS = 0.005  # the collector thread's wait between empty receives


def new_address() -> str:
    return f"ipc://{tempfile.gettempdir()}/probexit-events-{os.getpid()}-{uuid.uuid4().hex[:12]}"


class EventPublisher:
    """Worker side. Batches step timings; sends evaluations the step they happen."""

    def __init__(self, address: str):
        self._context = zmq.Context.instance()
        self._socket = self._context.socket(zmq.PUSH)
        self._socket.setsockopt(zmq.SNDHWM, HIGH_WATER_MARK)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.connect(address)
        self._step_seconds: list[float] = []
        self._last_flush = time.monotonic()

    def publish(self, evaluations: list[Evaluation], step_seconds: float) -> None:
        self._step_seconds.append(step_seconds)
        now = time.monotonic()
        if not evaluations and len(self._step_seconds) < FLUSH_EVERY_STEPS and now - self._last_flush < FLUSH_EVERY_SECONDS:
            return
        message = {"evals": [[e.rid, e.boundary_index, e.token_index, e.thinking_tokens, e.score, e.exit,
                              e.hidden, e.end_prob] for e in evaluations], "step_seconds": self._step_seconds}
        try:
            self._socket.send(json.dumps(message).encode(), zmq.NOBLOCK)
        except zmq.Again:
            pass  # the API process is not reading: drop, never stall the decode step
        self._step_seconds, self._last_flush = [], now

    def close(self) -> None:
        self._socket.close(0)


@dataclass
class RequestRecord:
    """What the engine decided for one engine request."""

    evaluations: list[Evaluation] = field(default_factory=list)

    @property
    def exit(self) -> Evaluation | None:
        return next((e for e in self.evaluations if e.exit), None)

    @property
    def last_score(self) -> float | None:
        scored = [e.score for e in self.evaluations if e.score is not None]
        return scored[-1] if scored else None


class EventCollector:
    """API side. Owns the socket address; the engine must be started after this binds."""

    def __init__(self, on_evaluation: Callable[[Evaluation], None] | None = None,
                 on_step: Callable[[float], None] | None = None):
        self.address = new_address()
        self._socket = zmq.Context.instance().socket(zmq.PULL)
        self._socket.setsockopt(zmq.RCVHWM, HIGH_WATER_MARK)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.bind(self.address)
        self._records: dict[str, RequestRecord] = {}
        # Two locks, so that the API's event loop never waits on the socket: `_lock` is the socket's (zmq
        # sockets are not thread-safe) and is held only while receiving; `_records_lock` guards the records.
        self._lock = threading.Lock()
        self._records_lock = threading.Lock()
        self._on_evaluation, self._on_step = on_evaluation, on_step
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="probexit-events", daemon=True)
        self._thread.start()

    def expect(self, rid: str) -> None:
        with self._records_lock:
            self._records[rid] = RequestRecord()

    def collect(self, rid: str) -> RequestRecord:
        """The record of a finished request (removed from the collector)."""
        self._drain_now()
        with self._records_lock:
            return self._records.pop(rid, None) or RequestRecord()

    def peek(self, rid: str) -> RequestRecord:
        self._drain_now()
        with self._records_lock:
            return self._records.get(rid) or RequestRecord()

    def forget(self, rid: str) -> None:
        with self._records_lock:
            self._records.pop(rid, None)

    @property
    def pending(self) -> int:
        with self._records_lock:
            return len(self._records)

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=2)
        self._socket.close(0)
        path = self.address.removeprefix("ipc://")
        if os.path.exists(path):
            os.unlink(path)

    def _run(self) -> None:
        # Waiting happens in sleep, outside the socket's lock (a poll would have to hold it, and then
        # expect/collect on the event loop waited for the poll's timeout: about 2 ms per call on average).
        while not self._closed.is_set():
            if not self._drain_now():
                time.sleep(IDLE_SLEEP_SECONDS)

    def _drain_now(self) -> bool:
        """Receive whatever has arrived; True if anything did. Called before reading a record, so that
        decisions sent during a step are seen even if the engine's own output for that step won the race
        to the API process."""
        received = False
        with self._lock:
            while True:
                try:
                    payload = self._socket.recv(zmq.NOBLOCK)
                except (zmq.Again, zmq.ContextTerminated, zmq.ZMQError):
                    return received
                received = True
                self._handle(json.loads(payload))

    def _handle(self, message: dict) -> None:
        for fields in message.get("evals", []):
            evaluation = Evaluation(*fields)
            rid = evaluation.rid
            with self._records_lock:
                record = self._records.get(rid)
                if record is not None:
                    record.evaluations.append(evaluation)
            if self._on_evaluation:
                self._on_evaluation(evaluation)
        if self._on_step:
            for seconds in message.get("step_seconds", []):
                self._on_step(seconds)
