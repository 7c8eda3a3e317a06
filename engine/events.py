"""The channel that carries early-exit decisions from the engine's workers to the API process.

The workers PUSH small messages; the API process PULLs them on a daemon thread into per-request records.
Records exist only for requests the API registered (`expect`) and are removed when it collects them, so
memory is bounded by the requests in flight. Sending never blocks the engine: if the API process stops
reading, messages beyond the high-water mark are dropped, never the decode step.

Where the workers run decides the transport: a local `ipc://` socket serves every worker on this machine (the
engine's own processes, data-parallel engines, another process tree); workers on other nodes (Ray) need
`tcp://` on an interface they reach. Either way the channel is authenticated and encrypted, and what it turns away
is counted (`channel.py`: the ticket a worker needs, the bind, the handshake's gatekeeper; `rejected` here).

Messages are batched, because each one wakes a thread in both processes, and on a small machine those
wake-ups compete with the engine for its cores. A request's record must nevertheless be whole when the API
reports it, so the worker marks each record complete as soon as no more evaluations can come for it and sends that at
once, within the step, before the engine's own output for the step exists:
- the request exits, or its thinking ends (`</think>`), or its next token is its last (`max_tokens`);
- it leaves the batch (finished or preempted; a preempted request that comes back is reopened at once).
Everything else rides along, or waits: up to `FLUSH_BUSY_SECONDS` while steps keep coming (a record's
completion, sent at once, carries what waits before it), and `FLUSH_AFTER_SECONDS` after the last step, sent
then by the publisher's thread (the engine has gone idle). A record that is not complete when its request
finishes (one that ended inside its thinking, through an end-of-sequence or a stop string) is completed by
the next step, which sees the request leave; on an engine that then went idle it is waited for at most
`FLUSH_AFTER_SECONDS + COMPLETE_MARGIN_SECONDS`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import operator
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, fields

import zmq

from probexit.engine.channel import IPC, MALFORMED, ChannelTicket, Gatekeeper, export_ticket, text_field
from probexit.probes.runtime import Evaluation

HIGH_WATER_MARK = 10_000
FLUSH_AFTER_SECONDS = 0.05  # the longest an evaluation waits in the worker once no step follows
# ... and while steps keep coming: each message wakes a thread in both processes, and on a small machine
# those wake-ups (and the encryption) cost the decode steps more than the evaluations' own work
FLUSH_BUSY_SECONDS = 0.25
FLUSH_AT_EVALUATIONS = 512  # or this many are waiting (record mode carries hidden states)
FLUSH_EVERY_STEPS, FLUSH_EVERY_SECONDS = 64, 0.5  # step timings alone (metrics) are sent this often
COMPLETE_MARGIN_SECONDS = 0.05  # transit allowance when waiting for an incomplete record
IDLE_SLEEP_SECONDS = 0.02  # the collector thread's wait between empty receives (collect drains by itself)
EVALUATION_FIELDS = [item.name for item in fields(Evaluation)]  # the wire order: Evaluation(*values)
_EVALUATION_VALUES = operator.attrgetter(*EVALUATION_FIELDS)


class EventPublisher:
    """Worker side. Buffers evaluations; sends completions, reopenings and exits the step they happen."""

    def __init__(self, ticket: ChannelTicket):
        self._socket = zmq.Context.instance().socket(zmq.PUSH)
        self._socket.setsockopt(zmq.SNDHWM, HIGH_WATER_MARK)
        self._socket.setsockopt(zmq.LINGER, 0)
        ticket.connect(self._socket)
        self._lock = threading.Lock()  # the buffers and the socket, shared with the idle-flush thread
        self._evaluations: list[Evaluation] = []
        self._marks: list[tuple[str, bool]] = []  # (rid, complete) in the order they happened
        self._step_seconds: list[float] = []
        self._oldest: float | None = None  # when the oldest buffered evaluation was published
        self._last_flush = self._last_publish = time.monotonic()
        self._wake = threading.Condition(self._lock)
        self._closed = False
        self._thread = threading.Thread(target=self._flush_when_idle, name="probexit-events-flush", daemon=True)
        self._thread.start()

    @classmethod
    def from_environment(cls) -> EventPublisher | None:
        """A publisher to the collector whose ticket this process inherited; None when there is none."""
        ticket = ChannelTicket.from_environment()
        return cls(ticket) if ticket is not None else None

    def publish(
        self, evaluations: list[Evaluation], step_seconds: float | None, marks: list[tuple[str, bool]] | tuple = ()
    ) -> None:
        """One decode step's output: its evaluations, its marks (rid, complete: True when no more
        evaluations can come for the request, False when it was reopened) and the early-exit work's time
        (None: not a step's, e.g. the marks of requests leaving the batch)."""
        now = time.monotonic()
        with self._lock:
            self._last_publish = now
            if not (self._evaluations or self._step_seconds):
                self._wake.notify()  # the idle-flush thread has a deadline to keep again
            if step_seconds is not None:
                self._step_seconds.append(step_seconds)
            if evaluations:
                self._evaluations += evaluations
                self._oldest = now if self._oldest is None else self._oldest
            self._marks += marks
            urgent = bool(marks) or any(e.exit for e in evaluations)
            due = (
                urgent
                or len(self._evaluations) >= FLUSH_AT_EVALUATIONS
                or (self._oldest is not None and now - self._oldest >= FLUSH_BUSY_SECONDS)
                or len(self._step_seconds) >= FLUSH_EVERY_STEPS
                or now - self._last_flush >= FLUSH_EVERY_SECONDS
            )
            if due:
                self._send(now)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._wake.notify()
            if self._evaluations or self._marks or self._step_seconds:
                self._send(time.monotonic())
        self._thread.join(timeout=1)
        self._socket.close(0)

    def _send(self, now: float) -> None:
        """Send everything buffered; the caller holds the lock."""
        message = {
            "evals": list(map(_EVALUATION_VALUES, self._evaluations)),
            "marks": self._marks,
            "step_seconds": self._step_seconds,
        }
        with contextlib.suppress(zmq.Again):  # the API process is not reading: drop, never stall the decode step
            self._socket.send(json.dumps(message).encode(), zmq.NOBLOCK)
        self._evaluations, self._marks, self._step_seconds = [], [], []
        self._oldest, self._last_flush = None, now

    def _flush_when_idle(self) -> None:
        """Sends what no later step came to send: evaluations FLUSH_AFTER_SECONDS after the last step (the
        engine went idle) or FLUSH_BUSY_SECONDS after the oldest, step timings after FLUSH_EVERY_SECONDS."""
        with self._lock:
            while not self._closed:
                deadlines = (
                    [min(self._oldest + FLUSH_BUSY_SECONDS, self._last_publish + FLUSH_AFTER_SECONDS)]
                    if self._oldest is not None
                    else []
                ) + ([self._last_flush + FLUSH_EVERY_SECONDS] if self._step_seconds else [])
                if not deadlines:
                    self._wake.wait()
                    continue
                remaining = min(deadlines) - time.monotonic()
                if remaining > 0:
                    self._wake.wait(remaining)
                else:
                    self._send(time.monotonic())


@dataclass
class RequestRecord:
    """What the engine decided for one engine request."""

    evaluations: list[Evaluation] = field(default_factory=list)
    complete: bool = False  # the worker said no more evaluations can come

    @property
    def exit(self) -> Evaluation | None:
        return next((e for e in self.evaluations if e.exit), None)

    @property
    def last_score(self) -> float | None:
        scored = [e.score for e in self.evaluations if e.score is not None]
        return scored[-1] if scored else None


class EventCollector:
    """API side. Owns the socket, its keys and its authentication handler; the engine must be started after this
    binds and `export_to_workers` has run. `bind`: "ipc" or tcp://HOST[:PORT] (see `bind_endpoint`)."""

    def __init__(
        self,
        on_evaluation: Callable[[Evaluation], None] | None = None,
        on_step: Callable[[float], None] | None = None,
        *,
        bind: str = IPC,
        on_rejected: Callable[[str], None] | None = None,
    ):
        self._context = zmq.Context()  # its own: a context has one authentication handler
        self._socket = self._context.socket(zmq.PULL)
        self._socket.setsockopt(zmq.RCVHWM, HIGH_WATER_MARK)
        self._socket.setsockopt(zmq.LINGER, 0)
        try:
            self._gate = Gatekeeper(self._context, self._socket, bind)
        except BaseException:
            self._context.destroy(linger=0)
            raise
        self.ticket = self._gate.ticket
        self.address = self.ticket.address
        self.rejected: Counter[str] = Counter()  # by reason (REJECTION_REASONS)
        self._records: dict[str, RequestRecord] = {}
        # Two locks, so that the API's event loop never waits on the socket: `_lock` is the socket's (zmq
        # sockets are not thread-safe) and is held only while receiving; `_records_lock` guards the records.
        self._lock = threading.Lock()
        self._records_lock = threading.Lock()
        self._on_evaluation, self._on_step, self._on_rejected = on_evaluation, on_step, on_rejected
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="probexit-events", daemon=True)
        self._thread.start()

    def export_to_workers(self) -> None:
        """Hand the ticket to the engine's workers (`channel.export_ticket`); call before the engine starts."""
        export_ticket(self.ticket)

    def expect(self, rid: str) -> None:
        with self._records_lock:
            self._records[rid] = RequestRecord()

    def collect(self, rid: str, finished_at: float | None = None) -> RequestRecord:
        """The record of a finished request (removed from the collector), waiting, if the worker has not
        yet said it is complete, until `finished_at` (when the request was seen to finish; monotonic clock)
        plus the worker's flush delay. Blocks: the server's event loop uses `collect_async`."""
        finished_at = time.monotonic() if finished_at is None else finished_at
        while not self._complete_or_due(rid, finished_at):
            time.sleep(0.002)
        return self._pop(rid)

    async def collect_async(self, rid: str, finished_at: float | None = None) -> RequestRecord:
        """`collect` for the event loop: waits without blocking it."""
        finished_at = time.monotonic() if finished_at is None else finished_at
        while not self._complete_or_due(rid, finished_at):
            await asyncio.sleep(0.002)
        return self._pop(rid)

    def _complete_or_due(self, rid: str, finished_at: float) -> bool:
        self._drain_now()
        with self._records_lock:
            record = self._records.get(rid)
            if record is None or record.complete:
                return True
        return time.monotonic() >= finished_at + FLUSH_AFTER_SECONDS + COMPLETE_MARGIN_SECONDS

    def _pop(self, rid: str) -> RequestRecord:
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
        with self._lock:
            self._context.destroy(linger=0)
        path = self.address.removeprefix("ipc://")
        if self.address.startswith("ipc://") and os.path.exists(path):
            os.unlink(path)

    def _run(self) -> None:
        # Waiting happens in sleep, outside the socket's lock (a poll would have to hold it, and then
        # expect/collect on the event loop waited for the poll's timeout: about 2 ms per call on average).
        # A connecting worker waits as long for its authentication, once.
        while not self._closed.is_set():
            for reason in self._gate.poll():
                self._reject(reason)
            if not self._drain_now():
                time.sleep(IDLE_SLEEP_SECONDS)

    def _reject(self, reason: str) -> None:
        with self._records_lock:
            self.rejected[reason] += 1
        if self._on_rejected:
            self._on_rejected(reason)

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
                self._handle(payload)

    def _handle(self, payload: bytes) -> None:
        try:
            evaluations, marks, steps = _parse(payload)
        except (ValueError, TypeError, AttributeError):
            self._reject(MALFORMED)  # only this server's workers hold the key: a bug, never applied
            return
        for evaluation in evaluations:
            with self._records_lock:
                record = self._records.get(evaluation.rid)
                if record is not None:
                    record.evaluations.append(evaluation)
            if self._on_evaluation:
                self._on_evaluation(evaluation)
        with self._records_lock:
            for rid, complete in marks:
                record = self._records.get(rid)
                if record is not None:
                    record.complete = complete
        if self._on_step:
            for seconds in steps:
                self._on_step(seconds)


def _parse(payload: bytes) -> tuple[list[Evaluation], list[tuple[str, bool]], list[float]]:
    """A publisher's message, checked whole before any of it is applied."""
    message = json.loads(payload)
    evaluations = [Evaluation(*values) for values in message.get("evals", [])]
    if not all(isinstance(e.rid, str) and isinstance(e.exit, bool) for e in evaluations):
        raise TypeError("an evaluation's rid is not a string or its exit not a boolean")
    marks = [(text_field(rid), bool(complete)) for rid, complete in message.get("marks", [])]
    return evaluations, marks, [float(seconds) for seconds in message.get("step_seconds", [])]
